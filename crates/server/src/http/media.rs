//! `/media`: uploads, and serving them safely.
//!
//! An upload streams into a temporary file (never whole in memory) while its size is counted
//! against `MEDIA_MAX_BYTES` and the uploader's quota; its type is read from its first bytes,
//! images get dimensions and a thumbnail (see `media::inspect`), then the file is copied to
//! the media store part by part.
//!
//! Serving: everything goes out with `X-Content-Type-Options: nosniff` and
//! `Content-Security-Policy: sandbox` (a document opened from here runs no script and has an
//! opaque origin), and as an `attachment` unless it is a PNG, JPEG, GIF or WebP image. So an
//! HTML or SVG upload can never run script in the server's origin.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use nebula_wire::{Media, Problem, SignedQuery, UploadBody, UploadQuery};
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{Path, Query};
use crate::auth::{AuthUser, bearer_token};
use crate::error::ApiError;
use crate::media::inspect::{SNIFF_BYTES, detect_type, is_inline_image};
use crate::media::urls::Variant;
use crate::media::{object_key, thumbnail_key};
use crate::state::AppState;
use crate::store::MediaRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // Uploads have their own limit (MEDIA_MAX_BYTES), enforced while streaming.
        .routes(routes!(upload).layer(axum::extract::DefaultBodyLimit::disable()))
        .routes(routes!(download))
        .routes(routes!(thumbnail))
        .routes(routes!(info))
}

/// Upload a file as the raw request body. Its `content_type` is what the bytes are, whatever
/// was declared. Attach it to a message (`attachments`) or a story (`media_id`) within a day,
/// or it is removed.
#[utoipa::path(post, path = "/media", tag = "media", security(("bearer" = [])),
    params(UploadQuery),
    request_body(content = UploadBody, content_type = "application/octet-stream", description = "the file's bytes (any declared type)"),
    responses(
        (status = 201, body = Media),
        (status = 413, body = Problem, description = "`payload_too_large` (over `MEDIA_MAX_BYTES`) or `quota_exceeded` (over `MEDIA_QUOTA_BYTES` in total)"),
        (status = 422, body = Problem, description = "`validation_failed`: an empty body"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn upload(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<Media>), ApiError> {
    let config = &state.config.config;
    let filename = clean_filename(query.filename.as_deref());
    let max = config.media_max_bytes;
    let used = u64::try_from(state.store.media_bytes_of(caller.id).await?).unwrap_or(0);
    let allowance = config.media_quota_bytes.saturating_sub(used);
    let too_big = |size: u64| {
        if size > max {
            Some(ApiError::PayloadTooLarge)
        } else if size > allowance {
            Some(ApiError::QuotaExceeded)
        } else {
            None
        }
    };
    // A declared length over the limit is refused before reading anything.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if let Some(err) = declared.and_then(too_big) {
        // All the client said it would send (within reason), so it is reading our 413 and
        // not a reset when its last write lands.
        discard_rest(stream, declared.unwrap_or(max).min(max.saturating_mul(4)));
        return Err(err);
    }
    let spool = tempfile::Builder::new()
        .prefix("nebula-upload-")
        .tempfile()
        .map_err(|err| anyhow::anyhow!("cannot create an upload spool file: {err}"))?;
    let mut file = tokio::fs::File::from_std(
        spool
            .reopen()
            .map_err(|err| anyhow::anyhow!("cannot open the upload spool file: {err}"))?,
    );
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        // A client that stops sending mid-body: nothing was stored.
        let chunk =
            chunk.map_err(|err| ApiError::InvalidBody(format!("upload interrupted: {err}")))?;
        size += chunk.len() as u64;
        if let Some(err) = too_big(size) {
            discard_rest(stream, max);
            return Err(err);
        }
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        file.write_all(&chunk)
            .await
            .map_err(|err| anyhow::anyhow!("cannot spool an upload: {err}"))?;
    }
    if size == 0 {
        return Err(ApiError::validation("body", "the file is empty"));
    }
    file.flush()
        .await
        .map_err(|err| anyhow::anyhow!("cannot spool an upload: {err}"))?;
    drop(file);
    let content_type = detect_type(&head);
    let facts = state
        .media_inspector
        .image_facts(spool.path(), &content_type)
        .await;
    let id = Uuid::now_v7();
    state
        .media_storage
        .put_file(&object_key(id), spool.path())
        .await?;
    let has_thumbnail = match facts.thumbnail {
        Some(png) => match state.media_storage.put_bytes(&thumbnail_key(id), png).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "could not store a thumbnail");
                false
            }
        },
        None => false,
    };
    let record = MediaRecord {
        id,
        uploader_id: caller.id,
        content_type,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        filename,
        width: facts.width,
        height: facts.height,
        has_thumbnail,
        created_at: crate::store::now(),
    };
    if let Err(err) = state.store.insert_media(&record).await {
        // Not recorded: nothing would ever collect these objects.
        let _ = state.media_storage.delete(&object_key(id)).await;
        let _ = state.media_storage.delete(&thumbnail_key(id)).await;
        return Err(err.into());
    }
    metrics::counter!("nebula_media_uploaded_bytes_total").increment(size);
    let mut media = record.to_media();
    state.store.sign_media([&mut media]);
    Ok((StatusCode::CREATED, axum::Json(media)))
}

/// Reads and drops what is left of a refused upload, in the background, up to `limit` bytes
/// or 30 s. The 413 goes out at once; without this the server would close the connection on
/// a client still sending, and the kernel's reset can destroy the 413 before the client reads
/// it. Nothing of it is kept.
fn discard_rest(mut stream: axum::body::BodyDataStream, limit: u64) {
    tokio::spawn(async move {
        let mut discarded: u64 = 0;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(Ok(chunk)) = stream.next().await {
                discarded += chunk.len() as u64;
                if discarded > limit {
                    return;
                }
            }
        })
        .await;
    });
}

/// A display name: control characters and path separators replaced, at most 255 characters,
/// `file` when nothing is left.
fn clean_filename(raw: Option<&str>) -> String {
    let cleaned: String = raw
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .take(255)
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The media a request may read: with a valid signed URL for this variant, any existing media;
/// otherwise the bearer's own uploads and those attached where they are a member.
async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    id: Uuid,
    variant: Variant,
    signed: &SignedQuery,
) -> Result<MediaRecord, ApiError> {
    if let (Some(exp), Some(sig)) = (signed.exp, signed.sig.as_deref()) {
        let now = chrono::Utc::now().timestamp();
        if state.media_urls.verify(id, variant, exp, sig, now) {
            return state.store.media(id).await?.ok_or(ApiError::MediaNotFound);
        }
        if bearer_token(headers).is_none() {
            return Err(ApiError::MediaNotFound);
        }
    }
    let token = bearer_token(headers).ok_or(ApiError::Unauthorized {
        code: "unauthorized",
        detail: "an Authorization: Bearer token or a signed URL is required",
    })?;
    let caller = AuthUser::authenticate(state, token).await?;
    state
        .store
        .readable_media(id, caller.id)
        .await?
        .ok_or(ApiError::MediaNotFound)
}

/// Streams a stored object with the protective headers.
async fn serve(
    state: &AppState,
    key: &str,
    content_type: &str,
    filename: &str,
) -> Result<Response, ApiError> {
    let Some(object) = state.media_storage.get(key).await? else {
        // Recorded but gone from the store (collected meanwhile): as if it did not exist.
        return Err(ApiError::MediaNotFound);
    };
    let disposition = if is_inline_image(content_type) {
        "inline"
    } else {
        "attachment"
    };
    let body = Body::from_stream(object.stream.map_err(std::io::Error::other));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "{disposition}; filename*=UTF-8''{}",
            percent_encode(filename)
        ))
        .unwrap_or(HeaderValue::from_static("attachment")),
    );
    // Private: a shared cache must not hand one member's file to someone else.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// RFC 5987 `attr-char`s kept, everything else percent-encoded.
fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'!'
            | b'#'
            | b'$'
            | b'&'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The file's bytes: for its uploader, members of a room where it is attached, viewers of a
/// story that shows it, or anyone holding an unexpired signed URL (a media object's `url`).
#[utoipa::path(get, path = "/media/{media_id}", tag = "media", security((), ("bearer" = [])),
    params(("media_id" = Uuid, Path), SignedQuery),
    responses(
        (status = 200, content_type = "*/*", body = UploadBody, description = "the bytes, with `X-Content-Type-Options: nosniff`, `Content-Security-Policy: sandbox` and `Content-Disposition: attachment` (inline for PNG, JPEG, GIF and WebP); `Content-Type` is the detected type"),
        (status = 401, body = Problem, description = "neither a bearer token nor a signed URL"),
        (status = 404, body = Problem, description = "`media_not_found` (also for a bad or expired signature)"),
    ))]
#[tracing::instrument(skip_all, fields(%media_id))]
async fn download(
    State(state): State<AppState>,
    Path(media_id): Path<Uuid>,
    Query(signed): Query<SignedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = authorized(&state, &headers, media_id, Variant::Original, &signed).await?;
    serve(
        &state,
        &object_key(media_id),
        &record.content_type,
        &record.filename,
    )
    .await
}

/// A PNG at most 320 px on its longer side; images only (and not those too large or broken to
/// decode). Access as for the file.
#[utoipa::path(get, path = "/media/{media_id}/thumbnail", tag = "media", security((), ("bearer" = [])),
    params(("media_id" = Uuid, Path), SignedQuery),
    responses(
        (status = 200, content_type = "image/png", body = UploadBody),
        (status = 401, body = Problem, description = "neither a bearer token nor a signed URL"),
        (status = 404, body = Problem, description = "`media_not_found`: no such media, not readable, or it has no thumbnail"),
    ))]
#[tracing::instrument(skip_all, fields(%media_id))]
async fn thumbnail(
    State(state): State<AppState>,
    Path(media_id): Path<Uuid>,
    Query(signed): Query<SignedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = authorized(&state, &headers, media_id, Variant::Thumbnail, &signed).await?;
    if !record.has_thumbnail {
        return Err(ApiError::MediaNotFound);
    }
    let name = format!("{}.thumbnail.png", record.filename);
    serve(&state, &thumbnail_key(media_id), "image/png", &name).await
}

/// The media object, with fresh signed URLs. Access as for the file (bearer token only).
#[utoipa::path(get, path = "/media/{media_id}/info", tag = "media", security(("bearer" = [])),
    params(("media_id" = Uuid, Path)),
    responses(
        (status = 200, body = Media),
        (status = 404, body = Problem, description = "`media_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %media_id))]
async fn info(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(media_id): Path<Uuid>,
) -> Result<axum::Json<Media>, ApiError> {
    let record = state
        .store
        .readable_media(media_id, caller.id)
        .await?
        .ok_or(ApiError::MediaNotFound)?;
    let mut media = record.to_media();
    state.store.sign_media([&mut media]);
    Ok(axum::Json(media))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_cleaned_not_refused() {
        assert_eq!(clean_filename(None), "file");
        assert_eq!(clean_filename(Some("../../etc/passwd")), ".._.._etc_passwd");
        assert_eq!(clean_filename(Some("a\r\nb.png")), "a__b.png");
        assert_eq!(clean_filename(Some("  ")), "file");
        assert_eq!(clean_filename(Some(&"x".repeat(300))).len(), 255);
    }

    #[test]
    fn disposition_names_are_encoded() {
        assert_eq!(percent_encode("a b\"é.png"), "a%20b%22%C3%A9.png");
    }
}
