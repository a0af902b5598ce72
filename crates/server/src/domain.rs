//! Parsed inputs: values that passed the contract's limits and can travel inward safely.
//!
//! Handlers turn raw request fields into these types first, so the store never sees a
//! username with a space or a message of 5000 characters.

use uuid::Uuid;

use crate::error::ApiError;

/// PostgreSQL `TEXT` cannot hold U+0000, so it is refused everywhere (on SQLite too, so both
/// backends accept exactly the same inputs).
fn reject_nul(field: &'static str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::validation(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}

/// 3–32 characters of `[A-Za-z0-9_.-]`, unique ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let valid_chars = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !(3..=32).contains(&raw.len()) || !valid_chars {
            return Err(ApiError::validation(
                "username",
                "must be 3–32 characters of letters, digits, '_', '.' or '-'",
            ));
        }
        Ok(Username(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is checked on: usernames are ASCII, so ASCII folding is exact.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// The longest password the contract allows, in characters.
pub const PASSWORD_MAX_CHARS: usize = 128;

/// 8–128 characters.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let chars = raw.chars().count();
        if !(8..=PASSWORD_MAX_CHARS).contains(&chars) {
            return Err(ApiError::validation("password", "must be 8–128 characters"));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An optional email address; only its shape is checked (delivery would be the real test):
/// `local@domain`, one `@`, no whitespace, at most 254 characters (the OpenAPI pattern).
pub fn parse_email(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    reject_nul("email", raw)?;
    let shaped = raw.chars().count() <= 254
        && !raw.chars().any(char::is_whitespace)
        && raw.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !shaped {
        return Err(ApiError::validation("email", "must be an email address"));
    }
    Ok(Some(raw.to_owned()))
}

/// 1–100 characters, not blank.
#[derive(Debug, Clone)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        reject_nul("name", raw)?;
        if raw.trim().is_empty() || raw.chars().count() > 100 {
            return Err(ApiError::validation(
                "name",
                "must be 1–100 characters and not blank",
            ));
        }
        Ok(RoomName(raw.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Optional room description, at most 1000 characters.
pub fn parse_description(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    reject_nul("description", raw)?;
    if raw.chars().count() > 1000 {
        return Err(ApiError::validation(
            "description",
            "must be at most 1000 characters",
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// Message text: 1–`max_chars` Unicode scalar values, not whitespace-only, kept exactly as sent.
#[derive(Debug, Clone)]
pub struct MessageContent(String);

impl MessageContent {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, ApiError> {
        reject_nul("content", raw)?;
        if raw.trim().is_empty() {
            return Err(ApiError::validation(
                "content",
                "must not be empty or whitespace only",
            ));
        }
        if raw.chars().count() > max_chars {
            return Err(ApiError::validation(
                "content",
                format!("must be at most {max_chars} characters"),
            ));
        }
        Ok(MessageContent(raw.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl MessageContent {
    /// Text beside attachments: may be empty, otherwise as `parse` (minus the blank rule).
    fn parse_beside_attachments(raw: &str, max_chars: usize) -> Result<Self, ApiError> {
        reject_nul("content", raw)?;
        if raw.chars().count() > max_chars {
            return Err(ApiError::validation(
                "content",
                format!("must be at most {max_chars} characters"),
            ));
        }
        Ok(MessageContent(raw.to_owned()))
    }
}

/// Attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// What a message says: its text and the media ids attached to it. The text may be empty only
/// when something is attached.
#[derive(Debug, Clone)]
pub struct MessageBody {
    pub content: MessageContent,
    pub attachments: Vec<Uuid>,
}

impl MessageBody {
    pub fn parse(
        content: &str,
        attachments: Option<&[String]>,
        max_chars: usize,
    ) -> Result<Self, ApiError> {
        let attachments = parse_attachments(attachments.unwrap_or_default())?;
        let content = if attachments.is_empty() {
            MessageContent::parse(content, max_chars)?
        } else {
            MessageContent::parse_beside_attachments(content, max_chars)?
        };
        Ok(MessageBody {
            content,
            attachments,
        })
    }
}

/// Up to `MAX_ATTACHMENTS` distinct media ids; whether the sender uploaded them is checked
/// against the store ([`crate::media::attachments`]).
fn parse_attachments(raw: &[String]) -> Result<Vec<Uuid>, ApiError> {
    if raw.len() > MAX_ATTACHMENTS {
        return Err(ApiError::InvalidAttachment(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    let mut ids = Vec::with_capacity(raw.len());
    for text in raw {
        let id = Uuid::parse_str(text)
            .map_err(|_| ApiError::InvalidAttachment(format!("{text:?} is not a media id")))?;
        if ids.contains(&id) {
            return Err(ApiError::InvalidAttachment(format!("{id} is named twice")));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// A reaction: 1–16 Unicode scalar values, no whitespace or control characters (emoji
/// sequences with joiners and variation selectors are fine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let chars = raw.chars().count();
        if !(1..=16).contains(&chars) || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::validation(
                "emoji",
                "must be 1–16 characters without whitespace or control characters",
            ));
        }
        Ok(Emoji(raw.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A sender-chosen idempotency key: 1–128 characters.
pub fn parse_client_msg_id(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    reject_nul("client_msg_id", raw)?;
    if raw.is_empty() || raw.chars().count() > 128 {
        return Err(ApiError::validation(
            "client_msg_id",
            "must be 1–128 characters",
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// Page size and limit bounds of the contract.
pub const MAX_PAGE_SIZE: u64 = 100;
pub const DEFAULT_PAGE_SIZE: u64 = 50;

/// A validated `page` / `page_size` pair.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub page: u64,
    pub page_size: u64,
}

impl PageRequest {
    pub fn parse(page: Option<u64>, page_size: Option<u64>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        // The schema says int64: refuse what does not fit one, as it does.
        if page == 0 || i64::try_from(page).is_err() {
            return Err(ApiError::InvalidQuery(
                "page must be between 1 and 2^63 - 1".into(),
            ));
        }
        Ok(PageRequest {
            page,
            page_size: parse_limit("page_size", page_size)?,
        })
    }

    /// Rows to skip; saturates instead of overflowing for absurd page numbers.
    pub fn offset(&self) -> i64 {
        i64::try_from((self.page - 1).saturating_mul(self.page_size)).unwrap_or(i64::MAX)
    }
}

/// `limit` / `page_size`: 1–100, default 50.
pub fn parse_limit(name: &str, value: Option<u64>) -> Result<u64, ApiError> {
    match value.unwrap_or(DEFAULT_PAGE_SIZE) {
        n @ 1..=MAX_PAGE_SIZE => Ok(n),
        _ => Err(ApiError::InvalidQuery(format!(
            "{name} must be between 1 and {MAX_PAGE_SIZE}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("alice smith").is_err());
        assert!(Username::parse("ålice").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert_eq!(
            Username::parse("Alice.B-2_x").map(|u| u.key()).ok(),
            Some("alice.b-2_x".into())
        );
    }

    #[test]
    fn content_counts_characters_not_bytes() {
        assert!(MessageContent::parse(&"é".repeat(4000), 4000).is_ok());
        assert!(MessageContent::parse(&"é".repeat(4001), 4000).is_err());
        assert!(MessageContent::parse(" \n\t ", 4000).is_err());
        assert!(MessageContent::parse("a\0b", 4000).is_err());
        assert_eq!(
            MessageContent::parse("  hi  ", 4000)
                .map(|c| c.into_inner())
                .ok(),
            Some("  hi  ".into())
        );
    }

    #[test]
    fn emoji_follow_the_contract() {
        for good in ["👍", "👨‍👩‍👧", "❤️", "+1", "🇫🇷", &"x".repeat(16)] {
            assert!(Emoji::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            " ",
            "👍 ",
            "a\u{7}",
            "\u{85}",
            "\u{3000}",
            &"x".repeat(17),
        ] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attachments_are_ids_and_content_stays_required_without_them() {
        assert!(MessageBody::parse("hi", None, 10).is_ok());
        assert!(MessageBody::parse("hi", Some(&[]), 10).is_ok());
        assert!(MessageBody::parse("", Some(&[]), 10).is_err());
        let one = [Uuid::nil().to_string()];
        assert!(MessageBody::parse("", Some(&one), 10).is_ok());
        let bad = ["nope".to_string()];
        let err = MessageBody::parse("", Some(&bad), 10).err();
        assert_eq!(err.map(|e| e.code()), Some("invalid_attachment"));
        let twice = [Uuid::nil().to_string(), Uuid::nil().to_string()];
        let err = MessageBody::parse("", Some(&twice), 10).err();
        assert_eq!(err.map(|e| e.code()), Some("invalid_attachment"));
    }

    #[test]
    fn absurd_pages_do_not_overflow() {
        let deepest = u64::try_from(i64::MAX).ok();
        let page = PageRequest::parse(deepest, Some(100)).ok();
        assert_eq!(page.map(|p| p.offset()), Some(i64::MAX));
        assert!(
            PageRequest::parse(Some(u64::MAX), None).is_err(),
            "beyond int64"
        );
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(None, Some(101)).is_err());
    }
}
