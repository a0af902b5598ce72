//! E-mail addresses: `POST /me/email/verify` mails a code, `POST /me/email/confirm` checks
//! it; `/email/unsubscribe` is the signed one-click link of notification mail (RFC 8058).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use nebula_wire::{Account, ConfirmEmailRequest, Problem};
use rand::Rng as _;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::client_ip::ClientIp;
use super::extract::{Json, Query};
use crate::auth::{AuthUser, totp};
use crate::error::ApiError;
use crate::mail::escape;
use crate::state::AppState;
use crate::store::mail::EmailConfirmation;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(confirm))
        .routes(routes!(unsubscribe_page, unsubscribe))
}

/// Mail a 6-digit verification code to the caller's address (valid 30 minutes, 5 guesses;
/// a new request replaces the code).
#[utoipa::path(post, path = "/me/email/verify", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 202, description = "the code is on its way"),
        (status = 401, body = Problem),
        (status = 409, body = Problem, description = "`no_email`: the account has no address"),
        (status = 429, body = Problem, description = "`rate_limited`"),
    ))]
#[tracing::instrument(skip_all)]
async fn verify(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
) -> Result<StatusCode, ApiError> {
    state.limits.check_auth(ip).await?;
    let account = state
        .store
        .account(caller.id)
        .await?
        .ok_or(ApiError::Unauthorized {
            code: "invalid_token",
            detail: "the account of this token does not exist",
        })?;
    let email = account.email.ok_or(ApiError::NoEmail)?;
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    let mail = state.mail.verification(&account.username, &email, &code);
    state
        .store
        .start_email_verification(caller.id, &email, &totp::digest(&code), &mail)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Confirm the caller's address with the mailed code; answers the account, now with
/// `email_verified: true`.
#[utoipa::path(post, path = "/me/email/confirm", tag = "auth", security(("bearer" = [])),
    request_body = ConfirmEmailRequest,
    responses(
        (status = 200, body = Account),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`invalid_verification_code` (wrong, expired, used up, or sent to an address the account no longer has) / `invalid_body`"),
        (status = 429, body = Problem, description = "`rate_limited`"),
    ))]
#[tracing::instrument(skip_all)]
async fn confirm(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Json(request): Json<ConfirmEmailRequest>,
) -> Result<axum::Json<Account>, ApiError> {
    state.limits.check_auth(ip).await?;
    if request.code.len() > 32 || request.code.contains('\0') {
        return Err(ApiError::InvalidVerificationCode);
    }
    match state
        .store
        .confirm_email(caller.id, &totp::digest(&request.code))
        .await?
    {
        EmailConfirmation::Confirmed(account) => Ok(axum::Json(account)),
        EmailConfirmation::Invalid => Err(ApiError::InvalidVerificationCode),
    }
}

/// The link in a notification mail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UnsubscribeLink {
    user: Uuid,
    /// HMAC of `user`, 64 hex digits.
    #[param(max_length = 64)]
    token: String,
}

/// A page with one button, for people who open the link (a GET must change nothing: mail
/// scanners follow links).
#[utoipa::path(get, path = "/email/unsubscribe", tag = "auth", params(UnsubscribeLink),
    responses(
        (status = 200, description = "a page asking to confirm", content_type = "text/html"),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 422, body = Problem, description = "`invalid_unsubscribe_link`"),
    ))]
async fn unsubscribe_page(
    State(state): State<AppState>,
    Query(link): Query<UnsubscribeLink>,
) -> Result<Response, ApiError> {
    if !state.mail.unsubscribe_token_valid(link.user, &link.token) {
        return Err(ApiError::InvalidUnsubscribeLink);
    }
    let action = format!("/email/unsubscribe?user={}&token={}", link.user, link.token);
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <form method=post action=\"{}\"><p>Stop Nebula's notification e-mail?</p>\
         <button name=List-Unsubscribe value=One-Click>Unsubscribe</button></form>",
        escape(&action)
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}

/// One-click unsubscribe (RFC 8058: mail clients POST `List-Unsubscribe=One-Click` to the
/// `List-Unsubscribe` URL): turns notification e-mail off for the link's user. Needs no
/// login; the link is signed. Repeating it is harmless.
#[utoipa::path(post, path = "/email/unsubscribe", tag = "auth", params(UnsubscribeLink),
    responses(
        (status = 200, description = "notification e-mail is off", content_type = "text/html"),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 422, body = Problem, description = "`invalid_unsubscribe_link`"),
    ))]
#[tracing::instrument(skip_all)]
async fn unsubscribe(
    State(state): State<AppState>,
    Query(link): Query<UnsubscribeLink>,
) -> Result<Response, ApiError> {
    if !state.mail.unsubscribe_token_valid(link.user, &link.token) {
        return Err(ApiError::InvalidUnsubscribeLink);
    }
    state.store.unsubscribe_email(link.user).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Html("<!doctype html><meta charset=utf-8><title>Unsubscribed</title><p>You will get no more notification e-mail from Nebula.</p>"),
    )
        .into_response())
}
