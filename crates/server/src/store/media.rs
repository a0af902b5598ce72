//! Uploads: their records, who may read them, the quota, and what can be collected.

use chrono::{DateTime, Utc};
use nebula_wire::Media;
use uuid::Uuid;

use super::{Store, StoreResult, with_pool, with_writer};

/// One upload as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaRecord {
    pub id: Uuid,
    pub uploader_id: Uuid,
    pub content_type: String,
    pub size: i64,
    pub filename: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub has_thumbnail: bool,
    pub created_at: DateTime<Utc>,
}

impl MediaRecord {
    /// The wire object with unsigned paths (see [`Store::sign_media`]).
    pub fn to_media(&self) -> Media {
        Media {
            id: self.id,
            content_type: self.content_type.clone(),
            size: self.size,
            filename: self.filename.clone(),
            width: self.width,
            height: self.height,
            created_at: self.created_at,
            url: Some(format!("/media/{}", self.id)),
            thumbnail_url: self
                .has_thumbnail
                .then(|| format!("/media/{}/thumbnail", self.id)),
        }
    }
}

const MEDIA_COLUMNS: &str =
    "id, uploader_id, content_type, size, filename, width, height, has_thumbnail, created_at";

/// Media nothing references: no message and no story (expired stories are deleted first).
const UNREFERENCED: &str =
    "NOT EXISTS (SELECT 1 FROM message_media mm WHERE mm.media_id = media.id)
     AND NOT EXISTS (SELECT 1 FROM stories s WHERE s.media_id = media.id)";

impl Store {
    /// Signs the paths of media objects for `<img>` (no-op without a signer).
    pub fn sign_media<'a>(&self, media: impl IntoIterator<Item = &'a mut Media>) {
        if let Some(urls) = &self.media_urls {
            let now = Utc::now().timestamp();
            for item in media {
                urls.sign_media(item, now);
            }
        }
    }

    /// Signs the attachments of a message.
    pub fn sign_message(&self, message: &mut nebula_wire::Message) {
        self.sign_media(message.attachments.iter_mut());
    }

    /// A stored row as a message with its content opened and signed attachment URLs.
    pub(super) fn message_from(
        &self,
        row: super::rows::MessageRow,
    ) -> super::StoreResult<nebula_wire::Message> {
        let mut message = nebula_wire::Message::from(self.open_row(row)?);
        self.sign_message(&mut message);
        Ok(message)
    }

    #[tracing::instrument(skip_all, fields(media_id = %record.id))]
    pub async fn insert_media(&self, record: &MediaRecord) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO media (id, uploader_id, content_type, size, filename, width, height,
                   has_thumbnail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(record.id)
            .bind(record.uploader_id)
            .bind(&record.content_type)
            .bind(record.size)
            .bind(&record.filename)
            .bind(record.width)
            .bind(record.height)
            .bind(record.has_thumbnail)
            .bind(record.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Bytes of uploads a user keeps (the quota counts them).
    pub async fn media_bytes_of(&self, user: Uuid) -> StoreResult<i64> {
        let total: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT CAST(SUM(size) AS BIGINT) FROM media WHERE uploader_id = $1")
                .bind(user)
                .fetch_one(pool)
                .await?
        });
        Ok(total.unwrap_or(0))
    }

    pub async fn media(&self, id: Uuid) -> StoreResult<Option<MediaRecord>> {
        let sql = format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, MediaRecord>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Media `reader` may fetch: their own uploads, media attached to a message of a room they
    /// are a member of, and the media of an unexpired story they may see.
    pub async fn readable_media(&self, id: Uuid, reader: Uuid) -> StoreResult<Option<MediaRecord>> {
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1 AND (uploader_id = $2
               OR EXISTS (SELECT 1 FROM message_media mm JOIN room_members rm
                            ON rm.room_id = mm.room_id AND rm.user_id = $2
                          WHERE mm.media_id = media.id)
               OR EXISTS (SELECT 1 FROM stories s WHERE s.media_id = media.id AND s.expires_at > $3
                            AND (s.user_id = $2 OR EXISTS (SELECT 1 FROM contacts c
                                   WHERE c.user_id = $2 AND c.contact_id = s.user_id))))"
        );
        let now = super::now();
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, MediaRecord>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(reader)
                .bind(now)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The records of `ids` if every one is an upload of `uploader`, in the order given;
    /// `None` if any is not.
    pub async fn own_media(
        &self,
        ids: &[Uuid],
        uploader: Uuid,
    ) -> StoreResult<Option<Vec<MediaRecord>>> {
        let mut records = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.media(id).await? {
                Some(record) if record.uploader_id == uploader => records.push(record),
                _ => return Ok(None),
            }
        }
        Ok(Some(records))
    }

    /// Up to `limit` media nothing references that may go: those attached once (their message
    /// or story is gone), and those never attached, uploaded before `orphan_before`.
    pub async fn collectable_media(
        &self,
        orphan_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let sql = format!(
            "SELECT id FROM media WHERE (attached_at IS NOT NULL OR created_at < $1) AND {UNREFERENCED}
             LIMIT $2"
        );
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(orphan_before)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Deletes a media record if still nothing references it; whether it did.
    pub async fn delete_unreferenced_media(&self, id: Uuid) -> StoreResult<bool> {
        let sql = format!("DELETE FROM media WHERE id = $1 AND {UNREFERENCED}");
        let deleted = with_writer!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }
}
