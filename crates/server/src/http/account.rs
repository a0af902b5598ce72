//! One's own account: `/me`, `PATCH /me`, password change, logout everywhere, two-factor.
//!
//! Every change that should end other sessions bumps the account's token generation in the
//! database (with its audit entry, in one transaction), then tells this node's and the other
//! nodes' standings (`auth::standing`), which refuse older tokens and close their sockets.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{
    Account, ChangePasswordRequest, Problem, RecoveryCodes, TotpCodeRequest, TotpDisableRequest,
    TotpSetup, UpdateAccountRequest,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::client_ip::ClientIp;
use super::extract::Json;
use crate::auth::{AuthUser, totp};
use crate::domain::{Password, parse_email};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Audit, UserRecord};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(logout_all))
        .routes(routes!(totp_setup))
        .routes(routes!(totp_enable))
        .routes(routes!(totp_disable))
}

/// The caller's account with its password hash.
async fn credentials(state: &AppState, caller: &AuthUser) -> Result<UserRecord, ApiError> {
    state
        .store
        .user_credentials_by_id(caller.id)
        .await?
        .ok_or(ApiError::Unauthorized {
            code: "invalid_token",
            detail: "the account of this token does not exist",
        })
}

/// Checks the caller's own password (confirming a sensitive change).
pub(super) async fn confirm_password(
    state: &AppState,
    record: &UserRecord,
    password: &str,
) -> Result<(), ApiError> {
    let valid = state
        .passwords
        .verify(password.to_owned(), Some(record.password_hash.clone()))
        .await?;
    if valid {
        Ok(())
    } else {
        Err(ApiError::WrongPassword)
    }
}

/// The caller's own account, with `email`, `is_admin` and `totp_enabled`.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Account), (status = 401, body = Problem)))]
async fn me(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<Account>, ApiError> {
    let account = state.store.account(caller.id).await?;
    Ok(axum::Json(account.ok_or(ApiError::Unauthorized {
        code: "invalid_token",
        detail: "the account of this token does not exist",
    })?))
}

/// Change the caller's e-mail address (`null` removes it).
#[utoipa::path(patch, path = "/me", tag = "auth", security(("bearer" = [])),
    request_body = UpdateAccountRequest,
    responses(
        (status = 200, body = Account),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`validation_failed` / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(request): Json<UpdateAccountRequest>,
) -> Result<axum::Json<Account>, ApiError> {
    let account = match request.email {
        Some(email) => {
            let email = parse_email(email.as_deref())?;
            state.store.set_email(caller.id, email.as_deref()).await?
        }
        None => state.store.account(caller.id).await?,
    };
    Ok(axum::Json(account.ok_or(ApiError::Unauthorized {
        code: "invalid_token",
        detail: "the account of this token does not exist",
    })?))
}

/// Change the caller's password. Every token issued before stops working (401
/// `token_revoked`), on every node, and open WebSockets close with 4001; log in again.
#[utoipa::path(post, path = "/me/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "changed; every earlier token is revoked"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`invalid_password`: `current_password` is wrong"),
        (status = 422, body = Problem, description = "`validation_failed` (the new password) / `invalid_body`"),
        (status = 503, body = Problem, description = "`service_unavailable`: password hashing is at capacity"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Json(request): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let new_password = Password::parse(&request.new_password)?;
    let record = credentials(&state, &caller).await?;
    confirm_password(&state, &record, &request.current_password).await?;
    let hash = state
        .passwords
        .hash(new_password.expose().to_owned())
        .await?;
    let audit = Audit::own(caller.id, "password_changed", Some(ip.to_string()));
    let standing = state
        .store
        .revoke_tokens(caller.id, Some(&hash), &audit)
        .await?;
    state.standings.changed(caller.id, standing);
    Ok(StatusCode::NO_CONTENT)
}

/// Log out everywhere: every token of the caller issued so far stops working, on every node,
/// and open WebSockets close with 4001.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "every token of the caller is revoked"),
        (status = 401, body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn logout_all(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
) -> Result<StatusCode, ApiError> {
    let audit = Audit::own(caller.id, "logout_all", Some(ip.to_string()));
    let standing = state.store.revoke_tokens(caller.id, None, &audit).await?;
    state.standings.changed(caller.id, standing);
    Ok(StatusCode::NO_CONTENT)
}

/// Start setting up two-factor authentication: a new secret for an authenticator app. It
/// takes effect with `POST /me/2fa/enable`; setting up again replaces the secret.
#[utoipa::path(post, path = "/me/2fa/setup", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = TotpSetup),
        (status = 401, body = Problem),
        (status = 409, body = Problem, description = "`totp_state`: two-factor is on already"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn totp_setup(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<TotpSetup>, ApiError> {
    let secret = totp::new_secret();
    if !state.store.set_pending_totp(caller.id, &secret).await? {
        return Err(ApiError::TotpState("on already; disable it first"));
    }
    let otpauth_url = totp::otpauth_url(&secret, &caller.username)?;
    Ok(axum::Json(TotpSetup {
        secret,
        otpauth_url,
    }))
}

/// Turn two-factor authentication on with a code of the secret from `setup`. Answers the ten
/// recovery codes, shown this once.
#[utoipa::path(post, path = "/me/2fa/enable", tag = "auth", security(("bearer" = [])),
    request_body = TotpCodeRequest,
    responses(
        (status = 200, body = RecoveryCodes),
        (status = 401, body = Problem),
        (status = 409, body = Problem, description = "`totp_state`: not set up, or on already"),
        (status = 422, body = Problem, description = "`invalid_totp`: the code is wrong / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn totp_enable(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Json(request): Json<TotpCodeRequest>,
) -> Result<axum::Json<RecoveryCodes>, ApiError> {
    let (pending, enabled) = state.store.totp_state(caller.id).await?;
    if enabled.is_some() {
        return Err(ApiError::TotpState("on already"));
    }
    let Some(secret) = pending else {
        return Err(ApiError::TotpState("not set up: POST /me/2fa/setup first"));
    };
    let step = totp::matching_step(&secret, &caller.username, &request.code)?
        .ok_or(ApiError::WrongTotpCode)?;
    let codes = totp::new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|code| totp::digest(code)).collect();
    let audit = Audit::own(caller.id, "2fa_enabled", Some(ip.to_string()));
    if !state
        .store
        .enable_totp(caller.id, &secret, step, &hashes, &audit)
        .await?
    {
        return Err(ApiError::TotpState("being set up again; retry"));
    }
    Ok(axum::Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Turn two-factor authentication off, with the password and a current code (or a recovery
/// code).
#[utoipa::path(post, path = "/me/2fa/disable", tag = "auth", security(("bearer" = [])),
    request_body = TotpDisableRequest,
    responses(
        (status = 204, description = "two-factor is off"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`invalid_password`"),
        (status = 409, body = Problem, description = "`totp_state`: two-factor is off"),
        (status = 422, body = Problem, description = "`invalid_totp`: the code is wrong or used / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn totp_disable(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Json(request): Json<TotpDisableRequest>,
) -> Result<StatusCode, ApiError> {
    let record = credentials(&state, &caller).await?;
    let Some(secret) = &record.totp_secret else {
        return Err(ApiError::TotpState("off"));
    };
    confirm_password(&state, &record, &request.password).await?;
    let accepted = match totp::matching_step(secret, &record.username, &request.code)? {
        Some(step) => state.store.accept_totp_step(caller.id, step).await?,
        None => {
            state
                .store
                .use_recovery_code(caller.id, &totp::digest(&request.code))
                .await?
        }
    };
    if !accepted {
        return Err(ApiError::WrongTotpCode);
    }
    let audit = Audit::own(caller.id, "2fa_disabled", Some(ip.to_string()));
    state.store.disable_totp(caller.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
