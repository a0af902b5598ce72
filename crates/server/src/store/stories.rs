//! Stories: short-lived posts seen by their author and the author's contacts.

use chrono::{DateTime, Utc};
use nebula_wire::{Story, StoryView, User};
use uuid::Uuid;

use super::media::MediaRecord;
use super::{Store, StoreResult, with_pool, with_writer};

#[derive(sqlx::FromRow)]
struct StoryRow {
    id: Uuid,
    text: Option<String>,
    media_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_id: Uuid,
    username: String,
    user_created_at: DateTime<Utc>,
}

const STORY_SELECT: &str = "SELECT s.id, s.text, s.media_id, s.created_at, s.expires_at,
       u.id AS user_id, u.username, u.created_at AS user_created_at
     FROM stories s JOIN users u ON u.id = s.user_id";

/// Stories `$2` may see (their own and their contacts'), unexpired at `$3`.
const VISIBLE: &str = "s.expires_at > $3 AND (s.user_id = $2 OR EXISTS (
       SELECT 1 FROM contacts c WHERE c.user_id = $2 AND c.contact_id = s.user_id))";

/// A story as the author and its viewers see it.
#[derive(Debug, Clone)]
pub struct StoryRecord {
    pub story: Story,
    pub author_id: Uuid,
}

impl Store {
    async fn story_from(&self, row: StoryRow) -> StoreResult<StoryRecord> {
        let media = match row.media_id {
            Some(id) => self.media(id).await?.map(|record| {
                let mut media = record.to_media();
                self.sign_media([&mut media]);
                media
            }),
            None => None,
        };
        Ok(StoryRecord {
            author_id: row.user_id,
            story: Story {
                id: row.id,
                user: User {
                    id: row.user_id,
                    username: row.username,
                    created_at: row.user_created_at,
                },
                text: row.text,
                media,
                created_at: row.created_at,
                expires_at: row.expires_at,
            },
        })
    }

    /// Stores a story (its media, if any, checked by the caller to be the author's).
    #[tracing::instrument(skip_all, fields(user_id = %author))]
    pub async fn create_story(
        &self,
        author: Uuid,
        text: Option<&str>,
        media: Option<&MediaRecord>,
        ttl: chrono::Duration,
    ) -> StoreResult<Option<StoryRecord>> {
        let id = Uuid::now_v7();
        let now = super::now();
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO stories (id, user_id, text, media_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(author)
            .bind(text)
            .bind(media.map(|m| m.id))
            .bind(now)
            .bind(now + ttl)
            .execute(&mut *tx)
            .await?;
            if let Some(media) = media {
                sqlx::query("UPDATE media SET attached_at = COALESCE(attached_at, $2) WHERE id = $1")
                    .bind(media.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        self.visible_story(id, author).await
    }

    /// A story `viewer` may see, unexpired.
    pub async fn visible_story(&self, id: Uuid, viewer: Uuid) -> StoreResult<Option<StoryRecord>> {
        let sql = format!("{STORY_SELECT} WHERE s.id = $1 AND {VISIBLE}");
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, StoryRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(viewer)
                .bind(super::now())
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some(row) => Ok(Some(self.story_from(row).await?)),
            None => Ok(None),
        }
    }

    /// The caller's and their contacts' unexpired stories, newest first.
    pub async fn visible_stories(&self, viewer: Uuid) -> StoreResult<Vec<Story>> {
        let visible = VISIBLE.replace("$2", "$1").replace("$3", "$2");
        let sql = format!(
            "{STORY_SELECT} WHERE {visible} ORDER BY s.created_at DESC, s.id DESC LIMIT 500"
        );
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, StoryRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(viewer)
                .bind(super::now())
                .fetch_all(pool)
                .await?
        });
        let mut stories = Vec::with_capacity(rows.len());
        for row in rows {
            stories.push(self.story_from(row).await?.story);
        }
        Ok(stories)
    }

    /// Records that `viewer` saw a story (once; the first time counts).
    pub async fn view_story(&self, story: Uuid, viewer: Uuid) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO story_views (story_id, user_id, viewed_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(story)
            .bind(viewer)
            .bind(super::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Who viewed a story, most recent first.
    pub async fn story_views(&self, story: Uuid) -> StoreResult<Vec<StoryView>> {
        let rows: Vec<(Uuid, String, DateTime<Utc>, DateTime<Utc>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.id, u.username, u.created_at, v.viewed_at FROM story_views v
                 JOIN users u ON u.id = v.user_id WHERE v.story_id = $1
                 ORDER BY v.viewed_at DESC",
            )
            .bind(story)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, username, created_at, viewed_at)| StoryView {
                user: User {
                    id,
                    username,
                    created_at,
                },
                viewed_at,
            })
            .collect())
    }

    pub async fn delete_story(&self, story: Uuid) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("DELETE FROM stories WHERE id = $1")
                .bind(story)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes the stories expired at `now` (their views go with them); how many.
    pub async fn delete_expired_stories(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        Ok(with_writer!(self, pool => {
            sqlx::query("DELETE FROM stories WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
