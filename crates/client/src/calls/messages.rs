//! A room's messages, their versions and reactions (`/rooms/{room_id}/messages`).

use nebula_wire::{
    EditMessageRequest, History, HistoryQuery, Message, MessageHistory, PostMessageRequest,
    ReactionList, ReportReceipt, ReportRequest,
};
use uuid::Uuid;

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    /// A page (page/page_size) or a keyset window (before_seq/after_seq/limit) of messages.
    pub async fn history(&self, room_id: Uuid, query: &HistoryQuery) -> Result<History> {
        self.fetch(self.at_query(HISTORY, &[&room_id], query)).await
    }

    /// Posts `content`; for sends that must survive retries use
    /// [`post_message_with`](Client::post_message_with) and a `client_msg_id`.
    pub async fn post_message(&self, room_id: Uuid, content: &str) -> Result<Message> {
        self.post_message_with(
            room_id,
            &PostMessageRequest {
                content: content.to_owned(),
                client_msg_id: None,
                reply_to: None,
                attachments: None,
            },
        )
        .await
    }

    /// Posts a message with every field; a repeated `client_msg_id` answers the stored one.
    pub async fn post_message_with(
        &self,
        room_id: Uuid,
        request: &PostMessageRequest,
    ) -> Result<Message> {
        self.fetch(self.at(POST_MESSAGE, &[&room_id]).json(request))
            .await
    }

    pub async fn message(&self, room_id: Uuid, message_id: Uuid) -> Result<Message> {
        self.fetch(self.at(MESSAGE, &[&room_id, &message_id])).await
    }

    /// Replaces a message's content (its author only); answers the new version (`rev`).
    pub async fn edit_message(&self, room_id: Uuid, id: Uuid, content: &str) -> Result<Message> {
        let body = EditMessageRequest {
            content: content.to_owned(),
        };
        self.fetch(self.at(EDIT_MESSAGE, &[&room_id, &id]).json(&body))
            .await
    }

    pub async fn delete_message(&self, room_id: Uuid, message_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(DELETE_MESSAGE, &[&room_id, &message_id]))
            .await
    }

    /// The earlier versions of an edited message.
    pub async fn message_history(&self, room_id: Uuid, message_id: Uuid) -> Result<MessageHistory> {
        self.fetch(self.at(MESSAGE_HISTORY, &[&room_id, &message_id]))
            .await
    }

    /// Who reacted with what.
    pub async fn reactions(&self, room_id: Uuid, message_id: Uuid) -> Result<ReactionList> {
        self.fetch(self.at(REACTIONS, &[&room_id, &message_id]))
            .await
    }

    /// Adds the caller's `emoji` reaction (idempotent).
    pub async fn react(&self, room_id: Uuid, message_id: Uuid, emoji: &str) -> Result<()> {
        self.fetch_empty(self.at(REACT, &[&room_id, &message_id, &emoji]))
            .await
    }

    pub async fn unreact(&self, room_id: Uuid, message_id: Uuid, emoji: &str) -> Result<()> {
        self.fetch_empty(self.at(UNREACT, &[&room_id, &message_id, &emoji]))
            .await
    }

    /// Reports a message to the server's moderators.
    pub async fn report_message(
        &self,
        room_id: Uuid,
        message_id: Uuid,
        reason: &str,
    ) -> Result<ReportReceipt> {
        let body = ReportRequest {
            reason: reason.to_owned(),
        };
        self.fetch(
            self.at(REPORT_MESSAGE, &[&room_id, &message_id])
                .json(&body),
        )
        .await
    }
}
