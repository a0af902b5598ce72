//! Argon2id password hashing, run on the blocking pool so a login never stalls the async
//! workers that carry everyone's messages.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier, phc::PasswordHash};

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    /// A hash of a random password nobody knows, made with the same parameters as real ones:
    /// logins for unknown users verify against it, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub async fn new() -> anyhow::Result<Self> {
        let unguessable = uuid::Uuid::new_v4().to_string();
        Ok(Passwords {
            dummy_hash: hash(unguessable).await?.into(),
        })
    }

    /// Hashes with Argon2id and the crate's recommended parameters.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        hash(password).await
    }

    /// Checks a password against a stored hash, or against the dummy for an unknown user.
    pub async fn verify(
        &self,
        password: String,
        stored_hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let known_user = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| self.dummy_hash.to_string());
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|err| anyhow::anyhow!("stored hash unreadable: {err}"))?;
            let matches = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(known_user && matches)
        })
        .await?
    }
}

async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("hashing password: {err}"))
    })
    .await?
}
