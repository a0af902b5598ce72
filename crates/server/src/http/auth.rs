//! `/auth/register`, `/auth/login`.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{AuthResponse, LoginRequest, Problem, RegisterRequest, User};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::client_ip::ClientIp;
use super::extract::Json;
use crate::auth::totp;
use crate::domain::{PASSWORD_MAX_CHARS, Password, Username, parse_email};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Audit, StoreError, UserRecord};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
}

fn issue(state: &AppState, user: User, generation: i64) -> Result<AuthResponse, ApiError> {
    Ok(AuthResponse {
        token: state.tokens.issue(user.id, &user.username, generation)?,
        token_type: "Bearer".to_owned(),
        expires_in: state.tokens.ttl().as_secs(),
        user,
    })
}

/// Create an account and get a token.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = AuthResponse),
        (status = 409, body = Problem, description = "`username_taken`"),
        (status = 422, body = Problem, description = "`validation_failed` / `invalid_body`"),
        (status = 429, body = Problem, description = "`rate_limited` (per client address), with `Retry-After`"),
        (status = 503, body = Problem, description = "`service_unavailable`: password hashing is at capacity; `Retry-After` says when to retry"),
    ))]
#[tracing::instrument(skip_all, fields(username = %request.username))]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<AuthResponse>), ApiError> {
    state.limits.check_auth(ip).await?;
    let username = Username::parse(&request.username)?;
    let password = Password::parse(&request.password)?;
    let email = parse_email(request.email.as_deref())?;
    let hash = state.passwords.hash(password.expose().to_owned()).await?;
    let user = match state
        .store
        .create_user(username.as_str(), &username.key(), email.as_deref(), &hash)
        .await
    {
        Err(StoreError::Conflict(_)) => return Err(ApiError::UsernameTaken),
        other => other?,
    };
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, axum::Json(issue(&state, user, 0)?)))
}

/// Exchange a username and password for a token.
///
/// An unknown user and a wrong password get byte-identical answers, in the same time. Failed
/// logins are limited per client address and per account (`RATE_LIMIT_AUTH_PER_MINUTE`,
/// `RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR`), unknown usernames counting like
/// existing ones.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, body = Problem, description = "`invalid_credentials`; `account_deactivated`; with two-factor on, `totp_required` (no code sent) or `invalid_totp` (wrong or used code)"),
        (status = 429, body = Problem, description = "`rate_limited` (per client address, or this account's failed logins), with `Retry-After`"),
        (status = 503, body = Problem, description = "`service_unavailable`: password hashing is at capacity; `Retry-After` says when to retry"),
    ))]
#[tracing::instrument(skip_all)]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<LoginRequest>,
) -> Result<axum::Json<AuthResponse>, ApiError> {
    state.limits.check_auth(ip).await?;
    // No account has a longer password, so none can match: refuse before any hashing, with
    // the answer every failed login gets. (Only the length of the attempt is revealed.)
    if request.password.chars().count() > PASSWORD_MAX_CHARS {
        return Err(ApiError::InvalidCredentials);
    }
    // A name that could never have registered has no account to protect or to reveal.
    let username = Username::parse(&request.username).ok();
    let charge = match &username {
        Some(username) => Some(state.limits.charge_login_failure(&username.key()).await?),
        None => None,
    };
    let verdict = check_password(&state, username.as_ref(), request.password).await;
    let verdict = match verdict {
        Ok(Some(record)) => {
            second_factor(&state, record, &request.totp_code, &request.recovery_code)
                .await
                .map(Some)
        }
        other => other,
    };
    if let Some(charge) = charge
        && !matches!(verdict, Ok(None) | Err(ApiError::InvalidTotp))
    {
        // A success, or the server's own failure: not a failed login.
        state.limits.refund_login_failure(charge).await;
    }
    let ip = Some(ip.to_string());
    match verdict {
        Ok(Some(record)) => {
            state
                .store
                .audit(&Audit::own(record.id, "login", ip))
                .await?;
            let generation = record.token_generation;
            Ok(axum::Json(issue(&state, record.into_user(), generation)?))
        }
        Ok(None) => {
            let target = username.map(|name| format!("username:{}", name.key()));
            let audit = Audit {
                actor: None,
                action: "login_failed",
                target,
                ip,
            };
            state.store.audit(&audit).await?;
            Err(ApiError::InvalidCredentials)
        }
        Err(err) => {
            if matches!(err, ApiError::InvalidTotp | ApiError::AccountDeactivated) {
                let audit = Audit {
                    actor: None,
                    action: "login_failed",
                    target: username.map(|name| format!("username:{}", name.key())),
                    ip,
                };
                state.store.audit(&audit).await?;
            }
            Err(err)
        }
    }
}

/// What a correct password still needs: an active account, and with two-factor on, a code
/// not used before (or an unused recovery code).
async fn second_factor(
    state: &AppState,
    record: UserRecord,
    totp_code: &Option<String>,
    recovery_code: &Option<String>,
) -> Result<UserRecord, ApiError> {
    if record.deactivated_at.is_some() {
        return Err(ApiError::AccountDeactivated);
    }
    let Some(secret) = &record.totp_secret else {
        return Ok(record);
    };
    let accepted = match (totp_code, recovery_code) {
        (Some(code), _) => match totp::matching_step(secret, &record.username, code)? {
            Some(step) => state.store.accept_totp_step(record.id, step).await?,
            None => false,
        },
        (None, Some(code)) => {
            state
                .store
                .use_recovery_code(record.id, &totp::digest(code))
                .await?
        }
        (None, None) => return Err(ApiError::TotpRequired),
    };
    if accepted {
        Ok(record)
    } else {
        Err(ApiError::InvalidTotp)
    }
}

/// The account if `password` is its password. A name that matches no account (or a deleted
/// one) still pays for one verification, so every failure takes the same time.
async fn check_password(
    state: &AppState,
    username: Option<&Username>,
    password: String,
) -> Result<Option<UserRecord>, ApiError> {
    let record = match username {
        Some(username) => state.store.user_credentials(&username.key()).await?,
        None => None,
    }
    .filter(|record| record.deleted_at.is_none());
    let hash = record.as_ref().map(|r| r.password_hash.clone());
    let valid = state.passwords.verify(password, hash).await?;
    Ok(record.filter(|_| valid))
}
