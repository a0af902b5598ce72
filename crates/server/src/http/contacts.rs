//! `/contacts` and `/blocks`: who is whose contact, and who blocked whom.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{
    Contact, ContactList, ContactRequest, ContactRequestList, Problem, ServerEvent, UserList,
    UserRef,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path};
use super::people::{other_user, other_user_by_id};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::RequestOutcome;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_contact, contact_requests))
        .routes(routes!(accept_request))
        .routes(routes!(decline_request))
        .routes(routes!(contacts))
        .routes(routes!(remove_contact))
        .routes(routes!(block, unblock))
        .routes(routes!(blocks))
}

/// Ask another user (by `user_id` or `username`) to become contacts. If they already asked
/// the caller, the two become contacts at once (200, `status: "accepted"`). Asking again
/// while a request is pending returns it (200).
#[utoipa::path(post, path = "/contacts/requests", tag = "people", request_body = UserRef, security(("bearer" = [])),
    responses(
        (status = 201, body = ContactRequest, description = "pending"),
        (status = 200, body = ContactRequest, description = "accepted at once (the other had asked), or the same request already pending"),
        (status = 403, body = Problem, description = "`cannot_message_user`: either blocked the other"),
        (status = 404, body = Problem, description = "`user_not_found`"),
        (status = 409, body = Problem, description = "`already_contacts`"),
        (status = 422, body = Problem, description = "`validation_failed`: yourself, or no user named"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn request_contact(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(request): Json<UserRef>,
) -> Result<(StatusCode, axum::Json<ContactRequest>), ApiError> {
    let to = other_user(&state.store, &caller, &request).await?;
    let me = caller.load(&state.store).await?;
    match state.store.request_contact(&me, &to).await? {
        RequestOutcome::Created(request) => {
            state.user_events.send(
                to.id,
                &ServerEvent::ContactRequested {
                    request: request.clone(),
                },
            );
            Ok((StatusCode::CREATED, axum::Json(request)))
        }
        RequestOutcome::Accepted(request) => {
            // `to` had asked first: for them, the caller just accepted.
            let contact = Contact {
                user: me,
                since: request.created_at,
            };
            state
                .user_events
                .send(to.id, &ServerEvent::ContactAccepted { contact });
            Ok((StatusCode::OK, axum::Json(request)))
        }
        RequestOutcome::AlreadyPending(request) => Ok((StatusCode::OK, axum::Json(request))),
        RequestOutcome::AlreadyContacts => Err(ApiError::AlreadyContacts),
        RequestOutcome::Blocked => Err(ApiError::CannotMessageUser),
    }
}

/// Pending requests to the caller (`incoming`) and from them (`outgoing`), oldest first.
#[utoipa::path(get, path = "/contacts/requests", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = ContactRequestList), (status = 401, body = Problem)))]
async fn contact_requests(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<ContactRequestList>, ApiError> {
    let (incoming, outgoing) = state.store.contact_requests_of(caller.id).await?;
    Ok(axum::Json(ContactRequestList { incoming, outgoing }))
}

/// Accept a request made to the caller: the two become contacts.
#[utoipa::path(post, path = "/contacts/requests/{request_id}/accept", tag = "people", security(("bearer" = [])),
    params(("request_id" = Uuid, Path)),
    responses(
        (status = 200, body = Contact),
        (status = 404, body = Problem, description = "`request_not_found`: no such pending request to the caller"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %request_id))]
async fn accept_request(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(request_id): Path<Uuid>,
) -> Result<axum::Json<Contact>, ApiError> {
    let contact = state
        .store
        .accept_contact_request(request_id, caller.id)
        .await?
        .ok_or(ApiError::RequestNotFound)?;
    let mine = Contact {
        user: caller.load(&state.store).await?,
        since: contact.since,
    };
    state.user_events.send(
        contact.user.id,
        &ServerEvent::ContactAccepted { contact: mine },
    );
    Ok(axum::Json(contact))
}

/// Decline a request made to the caller.
#[utoipa::path(post, path = "/contacts/requests/{request_id}/decline", tag = "people", security(("bearer" = [])),
    params(("request_id" = Uuid, Path)),
    responses(
        (status = 204, description = "declined"),
        (status = 404, body = Problem, description = "`request_not_found`: no such pending request to the caller"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %request_id))]
async fn decline_request(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(request_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state
        .store
        .decline_contact_request(request_id, caller.id)
        .await?
    {
        return Err(ApiError::RequestNotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's contacts, by username.
#[utoipa::path(get, path = "/contacts", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = ContactList), (status = 401, body = Problem)))]
async fn contacts(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<ContactList>, ApiError> {
    Ok(axum::Json(ContactList {
        contacts: state.store.contacts_of(caller.id).await?,
    }))
}

/// End a contact, for both users (204 also when there was none, and for yourself).
#[utoipa::path(delete, path = "/contacts/{user_id}", tag = "people", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses(
        (status = 204, description = "no longer contacts"),
        (status = 404, body = Problem, description = "`user_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, other = %user_id))]
async fn remove_contact(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(user_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    // Nobody is their own contact: nothing to end.
    if user_id != caller.id {
        let other = other_user_by_id(&state.store, &caller, user_id).await?;
        state.store.remove_contact(caller.id, other.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Block a user: any contact and pending request between the two end, neither can open a
/// direct room or ask to be a contact, and messages into their direct room are refused
/// (403 `cannot_message_user`). Idempotent.
#[utoipa::path(put, path = "/blocks/{user_id}", tag = "people", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses(
        (status = 204, description = "blocked"),
        (status = 404, body = Problem, description = "`user_not_found`"),
        (status = 422, body = Problem, description = "`validation_failed`: yourself"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, blocked = %user_id))]
async fn block(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(user_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let other = other_user_by_id(&state.store, &caller, user_id).await?;
    state.store.block(caller.id, other.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a block (204 also when there was none, and for yourself). Contacts ended by the
/// block stay ended.
#[utoipa::path(delete, path = "/blocks/{user_id}", tag = "people", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses(
        (status = 204, description = "unblocked"),
        (status = 404, body = Problem, description = "`user_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, unblocked = %user_id))]
async fn unblock(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(user_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    // Nobody can block themselves: nothing to lift.
    if user_id != caller.id {
        let other = other_user_by_id(&state.store, &caller, user_id).await?;
        state.store.unblock(caller.id, other.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The users the caller has blocked, by username.
#[utoipa::path(get, path = "/blocks", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = UserList), (status = 401, body = Problem)))]
async fn blocks(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<UserList>, ApiError> {
    Ok(axum::Json(UserList {
        users: state.store.blocked_by(caller.id).await?,
    }))
}
