//! Files, stories and call credentials (`/media`, `/stories`, `/voip`).

use nebula_wire::{
    CreateStoryRequest, Media, MediaLimits, SignedQuery, Story, StoryList, StoryViews,
    TurnCredentials, UploadQuery,
};
use uuid::Uuid;

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    /// Uploads a file; attach the answer's `id` to a message or a story.
    pub async fn upload(
        &self,
        filename: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Media> {
        let query = UploadQuery {
            filename: Some(filename.to_owned()),
        };
        let request = self.at_query(UPLOAD, &[], &query).map(|request| {
            request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes)
        });
        self.fetch(request).await
    }

    /// The largest file and the types the server accepts.
    pub async fn media_limits(&self) -> Result<MediaLimits> {
        self.fetch(self.at(MEDIA_LIMITS, &[])).await
    }

    /// A file's bytes (with the token, or with a signed URL's `exp` and `sig`).
    pub async fn download(&self, media_id: Uuid, signed: &SignedQuery) -> Result<Vec<u8>> {
        self.fetch_bytes(self.at_query(DOWNLOAD, &[&media_id], signed))
            .await
    }

    pub async fn media_info(&self, media_id: Uuid) -> Result<Media> {
        self.fetch(self.at(MEDIA_INFO, &[&media_id])).await
    }

    /// An image's thumbnail (PNG).
    pub async fn thumbnail(&self, media_id: Uuid, signed: &SignedQuery) -> Result<Vec<u8>> {
        self.fetch_bytes(self.at_query(THUMBNAIL, &[&media_id], signed))
            .await
    }

    /// The stories of the caller and their contacts that have not expired.
    pub async fn stories(&self) -> Result<StoryList> {
        self.fetch(self.at(STORIES, &[])).await
    }

    pub async fn create_story(&self, request: &CreateStoryRequest) -> Result<Story> {
        self.fetch(self.at(CREATE_STORY, &[]).json(request)).await
    }

    pub async fn delete_story(&self, story_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(DELETE_STORY, &[&story_id])).await
    }

    /// Who has seen one of the caller's stories.
    pub async fn story_views(&self, story_id: Uuid) -> Result<StoryViews> {
        self.fetch(self.at(STORY_VIEWS, &[&story_id])).await
    }

    /// Marks a story seen by the caller.
    pub async fn view_story(&self, story_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(VIEW_STORY, &[&story_id])).await
    }

    /// Time-limited TURN credentials for calls.
    pub async fn turn_credentials(&self) -> Result<TurnCredentials> {
        self.fetch(self.at(TURN, &[])).await
    }
}
