//! Text columns (`messages.content`, `message_versions.content`) as stored.
//!
//! An encrypted value is one string in the same column: `\u{1}nbe1:{key id}:{base64(nonce ||
//! ciphertext || tag)}`. U+0001 starts no ordinary text, `nbe1` is the format version, and the
//! key id says which key opens it. Anything not starting with U+0001 is plaintext, which is
//! what every row written without keys is: no migration, no format change, no cost.
//!
//! The one ambiguity is plaintext that itself starts with a marker (a client may send
//! U+0001). Written without keys, such text is escaped as `\u{1}nbp:{text}`, so it can never
//! pass for an envelope; values starting with U+0001 but no marker are plaintext as they are.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::{Aad, Keyring, NONCE_BYTES, Undecryptable, random_nonce};

/// Starts every value that is not plain text.
const MARK: char = '\u{1}';
/// An encrypted value, format 1.
const SEALED: &str = "\u{1}nbe1:";
/// Plaintext that happened to start with U+0001.
const ESCAPED: &str = "\u{1}nbp:";

/// How a stored value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// In the clear (written without keys, or empty).
    Plain,
    /// Encrypted with the key of this id.
    Sealed(&'a str),
}

/// How `stored` is kept, without decrypting it.
pub fn stored_as(stored: &str) -> Stored<'_> {
    match stored.strip_prefix(SEALED) {
        Some(rest) => Stored::Sealed(rest.split_once(':').map_or(rest, |(id, _)| id)),
        None => Stored::Plain,
    }
}

impl Keyring {
    /// The value to store for `plain` at `aad`: an envelope under the current key, or (without
    /// keys) the text itself. Empty text (a deleted message) stays empty: nothing to hide.
    pub fn seal_text<'a>(&self, plain: &'a str, aad: Aad<'_>) -> Cow<'a, str> {
        let Some(key) = self.current() else {
            return if plain.starts_with(MARK) {
                Cow::Owned(format!("{ESCAPED}{plain}"))
            } else {
                Cow::Borrowed(plain)
            };
        };
        if plain.is_empty() {
            return Cow::Borrowed(plain);
        }
        let sealed = key.seal(&random_nonce(), plain.as_bytes(), &aad.bytes());
        Cow::Owned(format!(
            "{SEALED}{}:{}",
            key.id,
            STANDARD_NO_PAD.encode(sealed)
        ))
    }

    /// The text `stored` at `aad` holds.
    pub fn open_text<'a>(
        &self,
        stored: &'a str,
        aad: Aad<'_>,
    ) -> Result<Cow<'a, str>, Undecryptable> {
        if let Some(escaped) = stored.strip_prefix(ESCAPED) {
            return Ok(Cow::Borrowed(escaped));
        }
        let Some(rest) = stored.strip_prefix(SEALED) else {
            return Ok(Cow::Borrowed(stored));
        };
        let (id, encoded) = rest.split_once(':').ok_or(Undecryptable::Malformed)?;
        let key = self.key(id)?;
        let bytes = STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| Undecryptable::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(Undecryptable::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plain = key.open(nonce, ciphertext, &aad.bytes())?;
        String::from_utf8(plain)
            .map(Cow::Owned)
            .map_err(|_| Undecryptable::Malformed)
    }

    /// Whether `nebula rekey` must rewrite `stored`: it is not (empty or) under the current key.
    pub fn text_needs_rekey(&self, stored: &str) -> bool {
        match (self.current_id(), stored_as(stored)) {
            (None, _) => false,
            (Some(_), Stored::Plain) => !stored.is_empty(),
            (Some(current), Stored::Sealed(id)) => id != current,
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::tests::keyring;
    use super::*;

    fn content() -> Aad<'static> {
        Aad::Content {
            room_id: Uuid::from_u128(1),
            message_id: Uuid::from_u128(2),
        }
    }

    #[test]
    fn sealed_text_hides_the_plaintext_and_opens_at_its_place_only() {
        let ring = keyring(&["k1"]);
        let stored = ring.seal_text("meet at noon", content());
        assert!(stored.starts_with("\u{1}nbe1:k1:"), "{stored}");
        assert!(!stored.contains("noon"));
        assert_eq!(stored_as(&stored), Stored::Sealed("k1"));
        assert_eq!(ring.open_text(&stored, content()).unwrap(), "meet at noon");
        // Two seals of the same text differ (fresh nonce), both open.
        let again = ring.seal_text("meet at noon", content());
        assert_ne!(stored, again);
        assert_eq!(ring.open_text(&again, content()).unwrap(), "meet at noon");
        // Copied to another message, or to an edit-history version: refused.
        let elsewhere = Aad::Content {
            room_id: Uuid::from_u128(1),
            message_id: Uuid::from_u128(3),
        };
        assert_eq!(
            ring.open_text(&stored, elsewhere),
            Err(Undecryptable::Forged)
        );
        let version = Aad::Version {
            room_id: Uuid::from_u128(1),
            message_id: Uuid::from_u128(2),
            rev: 1,
        };
        assert_eq!(ring.open_text(&stored, version), Err(Undecryptable::Forged));
    }

    #[test]
    fn rotation_reads_old_keys_and_plaintext_and_knows_what_to_rewrite() {
        let old = keyring(&["a"]);
        let rotated = keyring(&["b", "a"]);
        let only_new = keyring(&["b"]);
        let under_a = old.seal_text("hello", content());
        assert_eq!(rotated.open_text(&under_a, content()).unwrap(), "hello");
        assert!(rotated.text_needs_rekey(&under_a));
        assert!(rotated.text_needs_rekey("written before keys"));
        assert!(!rotated.text_needs_rekey(""));
        let under_b = rotated.seal_text("hello", content());
        assert!(!rotated.text_needs_rekey(&under_b));
        assert_eq!(only_new.open_text(&under_b, content()).unwrap(), "hello");
        assert_eq!(
            only_new.open_text(&under_a, content()),
            Err(Undecryptable::UnknownKey("a".into()))
        );
        assert_eq!(
            only_new
                .open_text("written before keys", content())
                .unwrap(),
            "written before keys"
        );
        assert!(!Keyring::default().text_needs_rekey("anything"));
    }

    #[test]
    fn without_keys_text_is_stored_as_is_and_a_lookalike_cannot_pass_for_an_envelope() {
        let none = Keyring::default();
        assert!(matches!(
            none.seal_text("plain", content()),
            Cow::Borrowed("plain")
        ));
        let lookalike = "\u{1}nbe1:k1:AAAA";
        let stored = none.seal_text(lookalike, content());
        assert_eq!(stored_as(&stored), Stored::Plain);
        assert_eq!(none.open_text(&stored, content()).unwrap(), lookalike);
        // With keys it is simply encrypted, and comes back the same.
        let ring = keyring(&["k1"]);
        let sealed = ring.seal_text(lookalike, content());
        assert_eq!(ring.open_text(&sealed, content()).unwrap(), lookalike);
        // U+0001 without a marker is plain text.
        assert_eq!(none.open_text("\u{1}hi", content()).unwrap(), "\u{1}hi");
    }

    #[test]
    fn damaged_envelopes_are_errors_not_text() {
        let ring = keyring(&["k1"]);
        let stored = ring.seal_text("hello", content()).into_owned();
        for bad in [
            "\u{1}nbe1:k1".to_owned(),
            "\u{1}nbe1:k1:***".to_owned(),
            "\u{1}nbe1:k1:AAAA".to_owned(),
            {
                // The last base64 character changed: the tag no longer matches.
                let (head, last) = stored.split_at(stored.len() - 1);
                format!("{head}{}", if last == "A" { "B" } else { "A" })
            },
        ] {
            assert!(ring.open_text(&bad, content()).is_err(), "{bad:?}");
        }
        assert_eq!(ring.seal_text("", content()), "");
    }
}
