//! `/stories`: posts that disappear after `STORY_TTL_SECONDS`, seen by their author and the
//! author's contacts. An expired story answers 404 `story_not_found` everywhere, from the
//! moment it expires (every query compares `expires_at`), whenever the janitor deletes it.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{CreateStoryRequest, Problem, Story, StoryList, StoryViews};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::StoryRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_story, list_stories))
        .routes(routes!(delete_story))
        .routes(routes!(view_story, story_views))
}

/// Largest story text, in characters.
const MAX_TEXT_CHARS: usize = 4000;

/// Post a story with text, media the caller uploaded, or both.
#[utoipa::path(post, path = "/stories", tag = "stories", request_body = CreateStoryRequest, security(("bearer" = [])),
    responses(
        (status = 201, body = Story),
        (status = 422, body = Problem, description = "`validation_failed` (no text and no media, text too long) or `invalid_attachment` (`media_id` is not media the caller uploaded)"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn create_story(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(request): Json<CreateStoryRequest>,
) -> Result<(StatusCode, axum::Json<Story>), ApiError> {
    let text = request.text.filter(|text| !text.trim().is_empty());
    if let Some(text) = &text
        && (text.chars().count() > MAX_TEXT_CHARS || text.contains('\0'))
    {
        return Err(ApiError::validation(
            "text",
            format!("must be at most {MAX_TEXT_CHARS} characters, without NUL"),
        ));
    }
    let media = match request.media_id.as_deref() {
        None => None,
        Some(raw) => {
            let id = Uuid::parse_str(raw)
                .map_err(|_| ApiError::InvalidAttachment("media_id is not a media id".into()))?;
            match state.store.own_media(&[id], caller.id).await? {
                Some(mut records) => records.pop(),
                None => {
                    return Err(ApiError::InvalidAttachment(
                        "media_id must be media you uploaded".into(),
                    ));
                }
            }
        }
    };
    if text.is_none() && media.is_none() {
        return Err(ApiError::validation("text", "a story needs text or media"));
    }
    let ttl = chrono::Duration::seconds(
        i64::try_from(state.config.config.story_ttl_seconds).unwrap_or(i64::MAX / 1000),
    );
    let story = state
        .store
        .create_story(caller.id, text.as_deref(), media.as_ref(), ttl)
        .await?
        // Expired in the instant since it was written (a TTL of a second and a slow disk).
        .ok_or(ApiError::StoryNotFound)?;
    Ok((StatusCode::CREATED, axum::Json(story.story)))
}

/// The caller's and their contacts' unexpired stories, newest first.
#[utoipa::path(get, path = "/stories", tag = "stories", security(("bearer" = [])),
    responses((status = 200, body = StoryList)))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn list_stories(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<StoryList>, ApiError> {
    let stories = state.store.visible_stories(caller.id).await?;
    Ok(axum::Json(StoryList { stories }))
}

/// A story the caller may see, or 404 `story_not_found` (also once expired).
async fn visible(state: &AppState, id: Uuid, caller: &AuthUser) -> Result<StoryRecord, ApiError> {
    state
        .store
        .visible_story(id, caller.id)
        .await?
        .ok_or(ApiError::StoryNotFound)
}

/// A story of the caller's own, or 404 (someone else's story is not the caller's to manage,
/// and whether it exists is not theirs to learn).
async fn own(state: &AppState, id: Uuid, caller: &AuthUser) -> Result<StoryRecord, ApiError> {
    let story = visible(state, id, caller).await?;
    if story.author_id != caller.id {
        return Err(ApiError::Forbidden("only the author may do this"));
    }
    Ok(story)
}

/// Mark a story seen by the caller (once; the first view counts).
#[utoipa::path(post, path = "/stories/{story_id}/views", tag = "stories", security(("bearer" = [])),
    params(("story_id" = Uuid, Path)),
    responses(
        (status = 204, description = "recorded"),
        (status = 404, body = Problem, description = "`story_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %story_id))]
async fn view_story(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(story_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    visible(&state, story_id, &caller).await?;
    state.store.view_story(story_id, caller.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who viewed the caller's story, most recent first (author only).
#[utoipa::path(get, path = "/stories/{story_id}/views", tag = "stories", security(("bearer" = [])),
    params(("story_id" = Uuid, Path)),
    responses(
        (status = 200, body = StoryViews),
        (status = 403, body = Problem, description = "`forbidden`: not the author"),
        (status = 404, body = Problem, description = "`story_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %story_id))]
async fn story_views(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(story_id): Path<Uuid>,
) -> Result<axum::Json<StoryViews>, ApiError> {
    own(&state, story_id, &caller).await?;
    let views = state.store.story_views(story_id).await?;
    Ok(axum::Json(StoryViews { views }))
}

/// Delete the caller's story (its media is removed soon after, unless used elsewhere).
#[utoipa::path(delete, path = "/stories/{story_id}", tag = "stories", security(("bearer" = [])),
    params(("story_id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, body = Problem, description = "`forbidden`: not the author"),
        (status = 404, body = Problem, description = "`story_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %story_id))]
async fn delete_story(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(story_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    own(&state, story_id, &caller).await?;
    state.store.delete_story(story_id).await?;
    state.media_janitor.wake();
    Ok(StatusCode::NO_CONTENT)
}
