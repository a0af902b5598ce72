//! Accounts.

use chrono::{DateTime, Utc};
use nebula_wire::User;
use uuid::Uuid;

use super::rows::UserRow;
use super::{Store, StoreError, StoreResult, is_unique_violation, with_pool, with_writer};

/// A user with the credentials only login may see.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub token_generation: i64,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub totp_secret: Option<String>,
}

impl UserRecord {
    pub fn into_user(self) -> User {
        User {
            id: self.id,
            username: self.username,
            created_at: self.created_at,
        }
    }
}

impl Store {
    /// Creates an account; `Conflict` when the username is taken in any letter case.
    #[tracing::instrument(skip(self, email, password_hash))]
    pub async fn create_user(
        &self,
        username: &str,
        username_key: &str,
        email: Option<&str>,
        password_hash: &str,
    ) -> StoreResult<User> {
        let user = User {
            id: Uuid::now_v7(),
            username: username.to_owned(),
            created_at: super::now(),
        };
        let inserted = with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO users (id, username, username_key, email, password_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user.id)
            .bind(&user.username)
            .bind(username_key)
            .bind(email)
            .bind(password_hash)
            .bind(user.created_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match inserted {
            Ok(_) => Ok(user),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict("username_taken")),
            Err(err) => Err(err.into()),
        }
    }

    /// The account with this (lowercased) username, with its password hash.
    pub async fn user_credentials(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, UserRecord>(
                "SELECT id, username, password_hash, created_at, token_generation, deactivated_at,
                        deleted_at, totp_secret
                 FROM users WHERE username_key = $1",
            )
            .bind(username_key)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The account with this id, with its password hash.
    pub async fn user_credentials_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, UserRecord>(
                "SELECT id, username, password_hash, created_at, token_generation, deactivated_at,
                        deleted_at, totp_secret
                 FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>("SELECT id, username, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(User::from))
    }

    pub async fn user_by_username(&self, username_key: &str) -> StoreResult<Option<User>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>("SELECT id, username, created_at FROM users WHERE username_key = $1")
                .bind(username_key)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(User::from))
    }
}
