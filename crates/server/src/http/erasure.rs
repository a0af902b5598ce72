//! Leaving: `GET /me/export`, `DELETE /me`, and password resets by e-mail.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{DeleteAccountRequest, PasswordResetConfirm, PasswordResetRequest, Problem};
use rand::Rng as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::account::confirm_password;
use super::client_ip::ClientIp;
use super::extract::Json;
use crate::auth::{AuthUser, totp};
use crate::domain::{Password, Username};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Action, Audit, NewChange};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export))
        .routes(routes!(delete_me))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

/// Everything the server holds about the caller, as one JSON document: the account, rooms,
/// contacts, blocks, messages sent, reports filed and the audit entries about them.
#[utoipa::path(get, path = "/me/export", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = Object, description = "`{account, rooms, contacts, blocks, messages, reports, audit}`"),
        (status = 401, body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn export(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let account = state
        .store
        .account(caller.id)
        .await?
        .ok_or(ApiError::Unauthorized {
            code: "invalid_token",
            detail: "the account of this token does not exist",
        })?;
    let rooms = state
        .store
        .rooms_of(caller.id, state.config.unread_window())
        .await?;
    let contacts = state.store.contacts_of(caller.id).await?;
    let blocks = state.store.blocked_by(caller.id).await?;
    let mut document = state.store.export_of(caller.id).await?;
    if let Some(object) = document.as_object_mut() {
        let to_value = |value| serde_json::to_value(value).unwrap_or_default();
        object.insert(
            "account".into(),
            serde_json::to_value(&account).unwrap_or_default(),
        );
        object.insert("rooms".into(), to_value(&rooms));
        object.insert(
            "contacts".into(),
            serde_json::to_value(&contacts).unwrap_or_default(),
        );
        object.insert(
            "blocks".into(),
            serde_json::to_value(&blocks).unwrap_or_default(),
        );
    }
    Ok(axum::Json(document))
}

/// Delete the caller's account: it can no longer log in, every token stops working, its
/// username shows as `deleted-…`, and its messages are deleted as by `DELETE …/messages/{id}`.
#[utoipa::path(delete, path = "/me", tag = "auth", security(("bearer" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`invalid_password`"),
        (status = 422, body = Problem, description = "`invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn delete_me(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Json(request): Json<DeleteAccountRequest>,
) -> Result<StatusCode, ApiError> {
    let record =
        state
            .store
            .user_credentials_by_id(caller.id)
            .await?
            .ok_or(ApiError::Unauthorized {
                code: "invalid_token",
                detail: "the account of this token does not exist",
            })?;
    confirm_password(&state, &record, &request.password).await?;
    let audit = Audit::own(caller.id, "account_deleted", Some(ip.to_string()));
    let standing = state.store.delete_account(caller.id, &audit).await?;
    state.standings.changed(caller.id, standing);
    // Each delete goes through the room's writer, so subscribers get `message.updated`.
    for (room_id, message_id) in state.store.undeleted_messages_of(caller.id).await? {
        let change = NewChange {
            room_id,
            message_id,
            actor: caller.id,
            action: Action::DeleteAsModerator,
        };
        if let Err(refused) = state.writers.change(change).await? {
            tracing::debug!(?refused, %message_id, "message of a deleted account not deleted");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Ask for a password reset by username or e-mail. Always 202, whether or not such an account
/// exists (nobody learns who has an account); an account with an e-mail address is sent a
/// single-use token valid for one hour.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "if the account exists and has an e-mail address, a token is on its way"),
        (status = 422, body = Problem, description = "`invalid_body`"),
        (status = 429, body = Problem, description = "`rate_limited` (per client address)"),
    ))]
#[tracing::instrument(skip_all)]
async fn request_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<PasswordResetRequest>,
) -> Result<StatusCode, ApiError> {
    state.limits.check_auth(ip).await?;
    let username = request
        .username
        .as_deref()
        .and_then(|name| Username::parse(name).ok())
        .map(|name| name.key());
    let email = request
        .email
        .as_deref()
        .filter(|email| !email.contains('\0'));
    if username.is_none() && email.is_none() {
        return Ok(StatusCode::ACCEPTED);
    }
    for (user_id, username, address) in state
        .store
        .reset_recipients(username.as_deref(), email)
        .await?
    {
        let Some(to) = address else { continue };
        let bytes: [u8; 32] = rand::rng().random();
        let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let mail = state.mail.password_reset(&username, &to, &token);
        state
            .store
            .create_password_reset(user_id, &totp::digest(&token), &mail)
            .await?;
    }
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with a reset token. The token is used up, every other reset token and
/// every access token of the account stop working.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth",
    request_body = PasswordResetConfirm,
    responses(
        (status = 204, description = "the password is changed"),
        (status = 422, body = Problem, description = "`invalid_reset_token` (unknown, used or expired) / `validation_failed` (the new password) / `invalid_body`"),
        (status = 429, body = Problem, description = "`rate_limited` (per client address)"),
    ))]
#[tracing::instrument(skip_all)]
async fn confirm_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<PasswordResetConfirm>,
) -> Result<StatusCode, ApiError> {
    state.limits.check_auth(ip).await?;
    let password = Password::parse(&request.new_password)?;
    if request.token.len() > 256 {
        return Err(ApiError::InvalidResetToken);
    }
    let hash = state.passwords.hash(password.expose().to_owned()).await?;
    let (user_id, standing) = state
        .store
        .confirm_password_reset(&totp::digest(&request.token), &hash)
        .await?
        .ok_or(ApiError::InvalidResetToken)?;
    state.standings.changed(user_id, standing);
    Ok(StatusCode::NO_CONTENT)
}
