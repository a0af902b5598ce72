//! Uploaded files: where their bytes live ([`storage`]), what they are ([`inspect`]), how a
//! browser's `<img>` fetches them without a bearer token ([`urls`]), and the background job
//! that removes what nothing references any more ([`janitor`]).

pub mod inspect;
pub mod janitor;
pub mod storage;
pub mod urls;

pub use storage::{MediaStorage, S3Settings, StoreLocation};
pub use urls::MediaUrls;

/// The storage key of an upload's bytes.
pub fn object_key(id: uuid::Uuid) -> String {
    format!("media/{id}")
}

/// The storage key of an image's thumbnail.
pub fn thumbnail_key(id: uuid::Uuid) -> String {
    format!("media/{id}.thumb.png")
}

/// The media objects of a message's `attachments`: every id must name an upload of `sender`
/// (else 422 `invalid_attachment`, the same whether it does not exist or is someone else's).
pub async fn attachments(
    store: &crate::store::Store,
    ids: &[uuid::Uuid],
    sender: uuid::Uuid,
) -> Result<Vec<nebula_wire::Media>, crate::error::ApiError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match store.own_media(ids, sender).await? {
        Some(records) => Ok(records.iter().map(|r| r.to_media()).collect()),
        None => Err(crate::error::ApiError::InvalidAttachment(
            "every attachment must be media you uploaded".into(),
        )),
    }
}
