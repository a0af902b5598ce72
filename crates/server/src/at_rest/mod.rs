//! Encryption at rest: message content, edit history and stored files, under the keys of
//! `ENCRYPTION_KEYS` (`id:base64key,…`; the first encrypts, every one decrypts).
//!
//! The cipher is AES-256-GCM (RustCrypto's `aes-gcm`, already in the tree for Web Push) with a
//! random 96-bit nonce per value. Random nonces are safe for about 2³² values per key, which
//! key rotation (`nebula rekey`) keeps far away; XChaCha20-Poly1305's longer nonce would buy
//! margin we do not need at the price of a second cipher crate.
//!
//! Every ciphertext is bound to where it belongs by its associated data ([`Aad`]): a message's
//! room and id, an edit-history version's rev too, a file's storage key. A value copied to
//! another row does not decrypt. Stored values carry the key id and a format version, so rows
//! written before keys were configured still read, and keys can rotate.
//!
//! Text is one envelope string in the same column ([`text`]); files are a chunked stream
//! ([`files`]), so an upload is never whole in memory.

pub mod files;
pub mod rekey;
pub mod text;

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a GCM nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of a GCM tag.
pub const TAG_BYTES: usize = 16;
/// Longest key id: ids are stored in every row, so short ones are better.
pub const MAX_KEY_ID: usize = 32;

/// How to make a key, for error messages and the README.
const KEY_HINT: &str = "generate one with `head -c 32 /dev/urandom | base64`";

/// What a ciphertext is bound to. Two values with different `Aad`s never decrypt as each other.
#[derive(Debug, Clone, Copy)]
pub enum Aad<'a> {
    /// `messages.content` of one message.
    Content { room_id: Uuid, message_id: Uuid },
    /// `message_versions.content`: the text a message had before the edit at `rev`.
    Version {
        room_id: Uuid,
        message_id: Uuid,
        rev: i64,
    },
    /// A stored object (an upload's bytes or its thumbnail), by its storage key, which names
    /// the media id and the variant.
    File(&'a str),
}

impl Aad<'_> {
    /// A domain tag per kind, then the ids: unambiguous because every part has a fixed length
    /// except the last.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Aad::Content {
                room_id,
                message_id,
            } => {
                out.extend_from_slice(b"nebula/content/1\0");
                out.extend_from_slice(room_id.as_bytes());
                out.extend_from_slice(message_id.as_bytes());
            }
            Aad::Version {
                room_id,
                message_id,
                rev,
            } => {
                out.extend_from_slice(b"nebula/version/1\0");
                out.extend_from_slice(room_id.as_bytes());
                out.extend_from_slice(message_id.as_bytes());
                out.extend_from_slice(&rev.to_be_bytes());
            }
            Aad::File(key) => {
                out.extend_from_slice(b"nebula/file/1\0");
                out.extend_from_slice(key.as_bytes());
            }
        }
        out
    }
}

/// Why a stored value could not be read. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecryptable {
    #[error("encrypted with key `{0}`, which ENCRYPTION_KEYS does not list")]
    UnknownKey(String),
    #[error("not a well-formed encrypted value")]
    Malformed,
    #[error("authentication failed (wrong key, or a value moved from another row or file)")]
    Forged,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The configured keys; empty means encryption is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Keyring {
    /// The first encrypts; all decrypt.
    keys: Arc<Vec<Key>>,
}

impl fmt::Debug for Keyring {
    /// Ids only: key material never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.id))
            .finish()
    }
}

impl Keyring {
    /// Parses `id:base64key,…`. An empty or blank value is no keys. Errors name the entry by
    /// its id or position, never the key material.
    pub fn parse(raw: &str) -> Result<Keyring, String> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, entry) in raw.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let position = index + 1;
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err(format!(
                    "entry {position} is not `id:base64key` (e.g. `k1:…`; {KEY_HINT})"
                ));
            };
            let id = id.trim();
            let id_ok = (1..=MAX_KEY_ID).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !id_ok {
                return Err(format!(
                    "entry {position}: a key id must be 1–{MAX_KEY_ID} letters, digits, '-', '_' or '.'"
                ));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(format!("key id `{id}` is listed twice"));
            }
            let material = STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("key `{id}` is not valid base64 ({KEY_HINT})"))?;
            if material.len() != KEY_BYTES {
                return Err(format!(
                    "key `{id}` is {} bytes; AES-256-GCM needs {KEY_BYTES} ({KEY_HINT})",
                    material.len()
                ));
            }
            let cipher = Aes256Gcm::new_from_slice(&material)
                .map_err(|_| format!("key `{id}` cannot be used"))?;
            keys.push(Key {
                id: id.to_owned(),
                cipher,
            });
        }
        Ok(Keyring {
            keys: Arc::new(keys),
        })
    }

    /// Whether new values are encrypted.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The id of the key new values are encrypted with.
    pub fn current_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// The key ids, current first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    fn current(&self) -> Option<&Key> {
        self.keys.first()
    }

    fn key(&self, id: &str) -> Result<&Key, Undecryptable> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| Undecryptable::UnknownKey(id.to_owned()))
    }
}

impl Key {
    /// `nonce || ciphertext || tag`.
    fn seal(&self, nonce: &[u8; NONCE_BYTES], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let sealed = self.cipher.encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        );
        // AES-GCM refuses only plaintexts over 64 GiB; nothing stored comes near that.
        let mut out = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed.unwrap_or_default());
        out
    }

    fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Undecryptable> {
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Undecryptable::Malformed)?;
        if ciphertext.len() < TAG_BYTES {
            return Err(Undecryptable::Malformed);
        }
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Undecryptable::Forged)
    }
}

/// A fresh random nonce.
fn random_nonce() -> [u8; NONCE_BYTES] {
    use rand::Rng as _;
    rand::rng().random()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A keyring of fixed test keys, `ids` in order (the first encrypts).
    pub(crate) fn keyring(ids: &[&str]) -> Keyring {
        let spec: Vec<String> = ids
            .iter()
            .map(|id| {
                let byte = id
                    .bytes()
                    .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
                format!("{id}:{}", STANDARD.encode([byte; KEY_BYTES]))
            })
            .collect();
        Keyring::parse(&spec.join(",")).expect("test keys")
    }

    #[test]
    fn keys_are_parsed_first_encrypts_and_blanks_mean_none() {
        let ring = keyring(&["new", "old"]);
        assert_eq!(ring.current_id(), Some("new"));
        assert_eq!(ring.ids(), ["new", "old"]);
        assert!(!Keyring::parse("").expect("empty").is_enabled());
        assert!(!Keyring::parse(" , ").expect("blank").is_enabled());
        assert_eq!(format!("{ring:?}"), r#"["new", "old"]"#, "no key material");
    }

    #[test]
    fn bad_key_lists_are_refused_with_the_reason_and_never_the_key() {
        let good = STANDARD.encode([1u8; 32]);
        let short = STANDARD.encode([1u8; 16]);
        for (raw, expected) in [
            ("k1".to_owned(), "not `id:base64key`"),
            (format!("k1:{good},k1:{good}"), "listed twice"),
            ("k1:not base64!".to_owned(), "not valid base64"),
            (format!("k1:{short}"), "16 bytes; AES-256-GCM needs 32"),
            (format!(":{good}"), "key id must be"),
            (format!("a,b:{good}"), "entry 1"),
            (format!("k/1:{good}"), "key id must be"),
        ] {
            let err = Keyring::parse(&raw).expect_err(&raw);
            assert!(err.contains(expected), "{raw}: {err}");
            assert!(!err.contains(&good) && !err.contains(&short), "{err}");
        }
    }

    #[test]
    fn associated_data_tells_every_place_apart() {
        let (room, message) = (Uuid::now_v7(), Uuid::now_v7());
        let places = [
            Aad::Content {
                room_id: room,
                message_id: message,
            }
            .bytes(),
            Aad::Content {
                room_id: message,
                message_id: room,
            }
            .bytes(),
            Aad::Version {
                room_id: room,
                message_id: message,
                rev: 1,
            }
            .bytes(),
            Aad::Version {
                room_id: room,
                message_id: message,
                rev: 2,
            }
            .bytes(),
            Aad::File("media/a").bytes(),
            Aad::File("media/a.thumb.png").bytes(),
        ];
        for (i, a) in places.iter().enumerate() {
            for b in &places[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
