//! `/auth/register`, `/auth/login`, `/me`.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{AuthResponse, LoginRequest, Problem, RegisterRequest, User};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::client_ip::ClientIp;
use super::extract::Json;
use crate::auth::AuthUser;
use crate::domain::{PASSWORD_MAX_CHARS, Password, Username, parse_email};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::StoreError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
}

fn issue(state: &AppState, user: User) -> Result<AuthResponse, ApiError> {
    Ok(AuthResponse {
        token: state.tokens.issue(user.id, &user.username)?,
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
    Ok((StatusCode::CREATED, axum::Json(issue(&state, user)?)))
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
        (status = 401, body = Problem, description = "`invalid_credentials`"),
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
    if let Some(charge) = charge
        && !matches!(verdict, Ok(None))
    {
        // A success, or the server's own failure: not a failed login.
        state.limits.refund_login_failure(charge).await;
    }
    match verdict? {
        Some(user) => Ok(axum::Json(issue(&state, user)?)),
        None => Err(ApiError::InvalidCredentials),
    }
}

/// The account if `password` is its password. A name that matches no account still pays for
/// one verification, so both failures take the same time.
async fn check_password(
    state: &AppState,
    username: Option<&Username>,
    password: String,
) -> Result<Option<User>, ApiError> {
    let record = match username {
        Some(username) => state.store.user_credentials(&username.key()).await?,
        None => None,
    };
    let hash = record.as_ref().map(|r| r.password_hash.clone());
    let valid = state.passwords.verify(password, hash).await?;
    Ok(record.filter(|_| valid).map(|record| record.into_user()))
}

/// The caller's own account.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(caller.load(&state.store).await?))
}
