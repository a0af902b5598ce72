//! `/rooms/{room_id}/messages`: history and posting.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{
    History, HistoryQuery, Message, MessagePage, MessageWindow, PostMessageRequest, Problem,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path, Query};
use crate::access::{explain_refusal, may_post, member_room, resolve_reply};
use crate::auth::AuthUser;
use crate::domain::{MessageBody, PageRequest, parse_client_msg_id, parse_limit};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Direction, NewMessage, Posted};
use crate::writer::WriteError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(history, post_message))
}

/// Message history, in ascending `seq` either way: by page (`page`, `page_size`; page 1 is the
/// newest) or by keyset cursor (`before_seq` or `after_seq`, with `limit`).
#[utoipa::path(get, path = "/rooms/{room_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), HistoryQuery),
    responses(
        (status = 200, body = History, description = "`MessagePage` for page queries, `MessageWindow` for keyset queries"),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found`"),
    ))]
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<History>, ApiError> {
    // Any keyset parameter selects the keyset form; page parameters are then not used, but
    // still checked: an out-of-range value is a client bug whichever form it rides along with.
    let keyset = query.before_seq.is_some() || query.after_seq.is_some() || query.limit.is_some();
    // Validate everything before touching the database.
    let page = PageRequest::parse(query.page, query.page_size)?;
    let paging = if keyset { None } else { Some(page) };
    let limit = i64::try_from(parse_limit("limit", query.limit)?).unwrap_or(i64::MAX);
    let (room, _) = member_room(&state.store, room_id, caller.id).await?;

    let response = match (paging, query.after_seq) {
        (Some(page), _) => {
            // Seq has no gaps, so page N is a seq range: no OFFSET scan, whatever the depth.
            let newest = room.last_seq.saturating_sub(page.offset()).max(0);
            let size = i64::try_from(page.page_size).unwrap_or(i64::MAX);
            let messages = state
                .store
                .messages_between(room_id, newest.saturating_sub(size).max(0), newest)
                .await?;
            History::Page(MessagePage {
                messages,
                page: page.page,
                page_size: page.page_size,
                total: room.last_seq,
            })
        }
        (None, Some(after)) => {
            let (messages, has_more) = state
                .store
                .messages_window(room_id, after, Direction::After(query.before_seq), limit)
                .await?;
            History::Window(MessageWindow { messages, has_more })
        }
        (None, None) => {
            let before = query.before_seq.unwrap_or(i64::MAX);
            let (messages, has_more) = state
                .store
                .messages_window(room_id, before, Direction::Before, limit)
                .await?;
            History::Window(MessageWindow { messages, has_more })
        }
    };
    Ok(axum::Json(response))
}

/// Post a message, optionally as a reply. Reposting a `client_msg_id` returns the original
/// with status 200.
#[utoipa::path(post, path = "/rooms/{room_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("room_id" = Uuid, Path)), request_body = PostMessageRequest,
    responses(
        (status = 201, body = Message),
        (status = 200, body = Message, description = "the original of a repeated `client_msg_id`"),
        (status = 403, body = Problem, description = "`not_a_member`, or `cannot_message_user` (a direct room whose users are blocked)"),
        (status = 404, body = Problem, description = "`room_not_found`"),
        (status = 422, body = Problem, description = "`validation_failed`, `invalid_reply` (`reply_to` is not a message of this room) or `invalid_attachment`"),
        (status = 429, body = Problem, description = "`rate_limited`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id))]
async fn post_message(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
    Json(request): Json<PostMessageRequest>,
) -> Result<(StatusCode, axum::Json<Message>), ApiError> {
    let body = MessageBody::parse(
        &request.content,
        request.attachments.as_deref(),
        state.config.config.message_max_chars,
    )?;
    let client_msg_id = parse_client_msg_id(request.client_msg_id.as_deref())?;
    let (record, _) = member_room(&state.store, room_id, caller.id).await?;
    may_post(&state.store, &record).await?;
    let reply_to = match request.reply_to.as_deref() {
        Some(raw) => Some(resolve_reply(&state.store, room_id, raw).await?),
        None => None,
    };
    let attachments = crate::media::attachments(&state.store, &body.attachments, caller.id).await?;
    state.limits.check_message(caller.id).await?;
    let content = body.content.into_inner();
    let mentions = crate::mentions::resolve(&state.store, room_id, &content).await?;
    let posted = state
        .writers
        .post(NewMessage {
            room_id,
            sender_id: caller.id,
            sender_username: caller.username.clone(),
            content,
            client_msg_id,
            reply_to,
            attachments,
            mentions,
        })
        .await;
    let posted = explain_refusal(&state.store, room_id, posted).await?;
    Ok(match posted {
        Posted::Created(message) => (StatusCode::CREATED, axum::Json(message)),
        Posted::Existing(message) => (StatusCode::OK, axum::Json(message)),
    })
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Unavailable(cause) => ApiError::Unavailable(cause),
            WriteError::ShuttingDown => ApiError::Unavailable("the server is shutting down".into()),
            WriteError::Failed(cause) => ApiError::Internal(anyhow::anyhow!(cause)),
            WriteError::NotAMember => ApiError::NotAMember {
                status: StatusCode::FORBIDDEN,
            },
            WriteError::Blocked => ApiError::CannotMessageUser,
        }
    }
}
