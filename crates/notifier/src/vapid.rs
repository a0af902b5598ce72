//! VAPID (RFC 8292): the key pair that identifies this application server to push services.
//!
//! Browsers bind each subscription to the public key the page passed as
//! `applicationServerKey`, so the key pair must stay the same across restarts and instances:
//! rotate it and every existing subscription stops working.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use web_push_native::jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};
use web_push_native::jwt_simple::claims::Claims;

use crate::error::{Error, Result};

/// The signing key, its public half as browsers want it, and the contact (`sub` claim).
#[derive(Clone)]
pub struct VapidKeys {
    /// Shared: jwt-simple's key pair is not `Clone`.
    key_pair: Arc<ES256KeyPair>,
    public_key: String,
    subject: String,
}

/// A freshly generated key pair, both halves base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedVapidKeys {
    /// Uncompressed P-256 point (65 bytes): `WEBPUSH_VAPID_PUBLIC_KEY`, and the
    /// `applicationServerKey` browsers subscribe with.
    pub public_key: String,
    /// Private scalar (32 bytes): `WEBPUSH_VAPID_PRIVATE_KEY`. Keep it secret.
    pub private_key: String,
}

/// Generates a new VAPID key pair.
pub fn generate_vapid_keys() -> GeneratedVapidKeys {
    let key_pair = ES256KeyPair::generate();
    GeneratedVapidKeys {
        public_key: public_key_of(&key_pair),
        private_key: URL_SAFE_NO_PAD.encode(key_pair.to_bytes()),
    }
}

fn public_key_of(key_pair: &ES256KeyPair) -> String {
    URL_SAFE_NO_PAD.encode(key_pair.public_key().public_key().to_bytes_uncompressed())
}

/// Decodes base64url with or without padding, as keys are pasted from many tools.
pub(crate) fn decode_base64url(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value.trim().trim_end_matches('='))
        .ok()
}

impl VapidKeys {
    /// Loads the key pair from its base64url private key.
    ///
    /// `public_key`, when given, must match the private key: a mismatch would hand browsers
    /// a key whose pushes the push service then refuses, which is hard to debug later.
    /// `subject` must be a `mailto:` or `https:` URI (RFC 8292 §2.1).
    pub fn from_base64(private_key: &str, public_key: Option<&str>, subject: &str) -> Result<Self> {
        let raw = decode_base64url(private_key)
            .ok_or_else(|| Error::VapidKey("private key is not base64url".into()))?;
        let key_pair = ES256KeyPair::from_bytes(&raw)
            .map_err(|_| Error::VapidKey("private key is not a P-256 scalar".into()))?;
        let derived = public_key_of(&key_pair);
        if let Some(given) = public_key {
            let given = decode_base64url(given)
                .ok_or_else(|| Error::VapidKey("public key is not base64url".into()))?;
            if URL_SAFE_NO_PAD.encode(given) != derived {
                return Err(Error::VapidKey(
                    "public key does not belong to the private key".into(),
                ));
            }
        }
        Self::with_key_pair(key_pair, subject)
    }

    /// A throwaway key pair (development only: subscriptions die with the process).
    pub fn ephemeral(subject: &str) -> Result<Self> {
        Self::with_key_pair(ES256KeyPair::generate(), subject)
    }

    fn with_key_pair(key_pair: ES256KeyPair, subject: &str) -> Result<Self> {
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            return Err(Error::config(
                "WEBPUSH_VAPID_SUBJECT",
                "must be a mailto: or https:// URI",
            ));
        }
        Ok(VapidKeys {
            public_key: public_key_of(&key_pair),
            key_pair: Arc::new(key_pair),
            subject: subject.to_owned(),
        })
    }

    /// The public key browsers pass as `applicationServerKey`, base64url without padding.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The contact URI sent as the JWT `sub`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The `Authorization` header value for a push to `endpoint`: `vapid t=<JWT>, k=<key>`.
    ///
    /// The JWT's `aud` is the endpoint's origin *with* any non-default port. web-push-native
    /// 0.5 drops the port when it builds the claim itself, which a push service (or our
    /// loopback test endpoint) on a non-default port rightly rejects, so we sign here.
    pub fn authorization(&self, endpoint: &Url, valid_for: Duration) -> Result<String> {
        let audience = endpoint.origin().ascii_serialization();
        if audience == "null" {
            return Err(Error::PushBuild("endpoint has no origin".into()));
        }
        let claims = Claims::create(valid_for.into())
            .with_audience(audience)
            .with_subject(&self.subject);
        let token = self
            .key_pair
            .sign(claims)
            .map_err(|err| Error::PushBuild(format!("VAPID signature: {err}")))?;
        Ok(format!("vapid t={token}, k={}", self.public_key))
    }
}

impl std::fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}
