//! The store's one place for encryption at rest: text columns are sealed here on their way
//! in and opened here on their way out (see `crate::at_rest`). Call sites bind what these
//! return and never see an envelope.

use std::borrow::Cow;

use uuid::Uuid;

use super::rows::MessageRow;
use super::{Store, StoreError, StoreResult};
use crate::at_rest::{Aad, Undecryptable};

/// Which stored value failed to open, for the log (never its bytes).
fn undecryptable(what: &'static str, id: Uuid, cause: Undecryptable) -> StoreError {
    StoreError::Undecryptable {
        row: format!("{what} of message {id}"),
        cause,
    }
}

impl Store {
    /// `messages.content` to store for a message's text.
    pub(super) fn seal_content<'a>(
        &self,
        room_id: Uuid,
        message_id: Uuid,
        text: &'a str,
    ) -> Cow<'a, str> {
        self.keyring.seal_text(
            text,
            Aad::Content {
                room_id,
                message_id,
            },
        )
    }

    /// `message_versions.content` to store for the text a message had before the edit at `rev`.
    pub(super) fn seal_version<'a>(
        &self,
        room_id: Uuid,
        message_id: Uuid,
        rev: i64,
        text: &'a str,
    ) -> Cow<'a, str> {
        self.keyring.seal_text(
            text,
            Aad::Version {
                room_id,
                message_id,
                rev,
            },
        )
    }

    /// A version's text as stored, opened.
    pub(super) fn open_version(
        &self,
        room_id: Uuid,
        message_id: Uuid,
        rev: i64,
        stored: String,
    ) -> StoreResult<String> {
        let aad = Aad::Version {
            room_id,
            message_id,
            rev,
        };
        open(self, stored, aad)
            .map_err(|cause| undecryptable("an edit-history version", message_id, cause))
    }

    /// `messages.content` as stored, opened.
    pub(super) fn open_content(
        &self,
        room_id: Uuid,
        message_id: Uuid,
        stored: String,
    ) -> StoreResult<String> {
        let aad = Aad::Content {
            room_id,
            message_id,
        };
        open(self, stored, aad).map_err(|cause| undecryptable("the content", message_id, cause))
    }

    /// A row as read, with its content opened.
    pub(super) fn open_row(&self, mut row: MessageRow) -> StoreResult<MessageRow> {
        let stored = std::mem::take(&mut row.content);
        row.content = self.open_content(row.room_id, row.id, stored)?;
        Ok(row)
    }

    /// Rows as read, with their content opened.
    pub(super) fn open_rows(&self, rows: Vec<MessageRow>) -> StoreResult<Vec<MessageRow>> {
        rows.into_iter().map(|row| self.open_row(row)).collect()
    }
}

/// Opens a stored text, reusing its allocation when it was plaintext (the common case
/// without keys: no copy).
fn open(store: &Store, stored: String, aad: Aad<'_>) -> Result<String, Undecryptable> {
    let opened = match store.keyring.open_text(&stored, aad) {
        Ok(Cow::Owned(text)) => Some(Ok(text)),
        Ok(Cow::Borrowed(text)) if text.len() == stored.len() => None,
        Ok(Cow::Borrowed(text)) => Some(Ok(text.to_owned())),
        Err(cause) => Some(Err(cause)),
    };
    opened.unwrap_or(Ok(stored))
}
