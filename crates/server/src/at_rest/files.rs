//! Stored files (uploads and thumbnails) as a chunked AEAD stream, so a 25 MiB upload is
//! encrypted and served part by part, never whole in memory.
//!
//! Layout: a header — [`MAGIC`], the key id's length (one byte) and the key id, a random 7-byte
//! nonce prefix — then the plaintext in [`CHUNK`]-byte pieces, each sealed with
//! AES-256-GCM under the nonce `prefix || counter (u32, big-endian) || last (0 or 1)`. This is
//! the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): the counter stops
//! chunks being reordered or repeated, the last flag stops a file being cut short at a
//! chunk boundary, and every chunk carries the file's associated data (its storage key).
//!
//! A file that does not start with [`MAGIC`] is plaintext (stored before keys were set).

use aes_gcm::Aes256Gcm;
use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Payload};

use super::{Aad, Keyring, NONCE_BYTES, TAG_BYTES, Undecryptable};

/// First bytes of an encrypted file: not text, not a known file format's signature (PNG-style:
/// a high byte, then a name, then bytes that line-ending conversions would damage).
pub const MAGIC: [u8; 8] = *b"\x89NBF1\r\n\x1a";
/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// Bytes of the nonce prefix in the header.
const PREFIX_BYTES: usize = NONCE_BYTES - 5;

/// What the first bytes of a stored object say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// More bytes are needed to tell.
    Incomplete,
    /// Stored in the clear.
    Plain,
    /// Encrypted: the header is `len` bytes, the key is `key_id`.
    Sealed { len: usize, key_id: String },
}

/// Reads the header at the start of `head`; `at_end`: no more bytes will come.
pub fn parse_header(head: &[u8], at_end: bool) -> Header {
    let shown = head.len().min(MAGIC.len());
    if head[..shown] != MAGIC[..shown] {
        return Header::Plain;
    }
    let incomplete = if at_end {
        // A plaintext file that is a prefix of the magic (or a truncated header): plaintext
        // is the only reading that does not fail a file that may be legitimate.
        Header::Plain
    } else {
        Header::Incomplete
    };
    let Some(&id_len) = head.get(MAGIC.len()) else {
        return incomplete;
    };
    let len = MAGIC.len() + 1 + usize::from(id_len) + PREFIX_BYTES;
    if head.len() < len {
        return incomplete;
    }
    let id = &head[MAGIC.len() + 1..MAGIC.len() + 1 + usize::from(id_len)];
    Header::Sealed {
        len,
        key_id: String::from_utf8_lossy(id).into_owned(),
    }
}

/// The plaintext length of an encrypted object of `total` bytes with a `header`-byte header.
pub fn plaintext_len(total: u64, header: usize) -> Option<u64> {
    let body = total.checked_sub(header as u64)?;
    let sealed_chunk = (CHUNK + TAG_BYTES) as u64;
    let (full, rest) = (body / sealed_chunk, body % sealed_chunk);
    match rest {
        0 if full > 0 => Some(full * CHUNK as u64),
        r if r >= TAG_BYTES as u64 => Some(full * CHUNK as u64 + r - TAG_BYTES as u64),
        _ => None,
    }
}

/// The running state of one file's chunks, in either direction.
struct Chunks {
    cipher: Aes256Gcm,
    prefix: [u8; PREFIX_BYTES],
    counter: u32,
    aad: Vec<u8>,
}

impl Chunks {
    fn nonce(&self, last: bool) -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..PREFIX_BYTES].copy_from_slice(&self.prefix);
        nonce[PREFIX_BYTES..NONCE_BYTES - 1].copy_from_slice(&self.counter.to_be_bytes());
        nonce[NONCE_BYTES - 1] = u8::from(last);
        nonce
    }
}

/// Encrypts one file, chunk by chunk.
pub struct Sealer {
    chunks: Chunks,
    header: Vec<u8>,
}

impl Sealer {
    /// The header to write first.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Seals the next chunk: exactly [`CHUNK`] bytes unless it is the `last` (which may be
    /// shorter, or empty for an empty file).
    pub fn seal(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        let nonce = self.chunks.nonce(last);
        self.chunks.counter = self.chunks.counter.wrapping_add(1);
        self.chunks
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: chunk,
                    aad: &self.chunks.aad,
                },
            )
            // AES-GCM refuses only messages over 64 GiB; a chunk is 64 KiB.
            .unwrap_or_default()
    }
}

/// Decrypts one file as its bytes arrive.
pub struct Opener {
    chunks: Chunks,
    pending: Vec<u8>,
    finished: bool,
}

impl Opener {
    /// Takes the next stored bytes; returns the plaintext of every chunk now complete. A chunk
    /// is opened only once a byte after it arrived, because only the end of the file says
    /// which chunk is the last.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Undecryptable> {
        self.pending.extend_from_slice(bytes);
        let sealed_chunk = CHUNK + TAG_BYTES;
        let mut plain = Vec::new();
        let mut start = 0;
        while self.pending.len() - start > sealed_chunk {
            plain.extend(self.open(start..start + sealed_chunk, false)?);
            start += sealed_chunk;
        }
        self.pending.drain(..start);
        Ok(plain)
    }

    /// The end of the stored bytes: opens the last chunk.
    pub fn finish(&mut self) -> Result<Vec<u8>, Undecryptable> {
        if self.finished || self.pending.len() < TAG_BYTES {
            return Err(Undecryptable::Malformed);
        }
        self.finished = true;
        let plain = self.open(0..self.pending.len(), true)?;
        self.pending.clear();
        Ok(plain)
    }

    fn open(
        &mut self,
        range: std::ops::Range<usize>,
        last: bool,
    ) -> Result<Vec<u8>, Undecryptable> {
        let nonce = self.chunks.nonce(last);
        self.chunks.counter = self.chunks.counter.wrapping_add(1);
        self.chunks
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &self.pending[range],
                    aad: &self.chunks.aad,
                },
            )
            .map_err(|_| Undecryptable::Forged)
    }
}

impl Keyring {
    /// A sealer for the object stored under `key`, with the current key; `None` without keys.
    pub fn file_sealer(&self, key: &str) -> Option<Sealer> {
        use rand::Rng as _;
        let current = self.current()?;
        let prefix: [u8; PREFIX_BYTES] = rand::rng().random();
        let mut header = Vec::with_capacity(MAGIC.len() + 1 + current.id.len() + PREFIX_BYTES);
        header.extend_from_slice(&MAGIC);
        // Ids are at most MAX_KEY_ID (32) bytes: always one byte.
        header.push(u8::try_from(current.id.len()).unwrap_or(u8::MAX));
        header.extend_from_slice(current.id.as_bytes());
        header.extend_from_slice(&prefix);
        Some(Sealer {
            chunks: Chunks {
                cipher: current.cipher.clone(),
                prefix,
                counter: 0,
                aad: Aad::File(key).bytes(),
            },
            header,
        })
    }

    /// An opener for the object stored under `key` whose header is `header` (as
    /// [`parse_header`] measured it).
    pub fn file_opener(
        &self,
        key: &str,
        header: &[u8],
        key_id: &str,
    ) -> Result<Opener, Undecryptable> {
        let found = self.key(key_id)?;
        let mut prefix = [0u8; PREFIX_BYTES];
        let start = header
            .len()
            .checked_sub(PREFIX_BYTES)
            .ok_or(Undecryptable::Malformed)?;
        prefix.copy_from_slice(&header[start..]);
        Ok(Opener {
            chunks: Chunks {
                cipher: found.cipher.clone(),
                prefix,
                counter: 0,
                aad: Aad::File(key).bytes(),
            },
            pending: Vec::new(),
            finished: false,
        })
    }

    /// Whether `nebula rekey` must rewrite an object with this header.
    pub fn file_needs_rekey(&self, header: &Header) -> bool {
        match (self.current_id(), header) {
            (None, _) | (Some(_), Header::Incomplete) => false,
            (Some(_), Header::Plain) => true,
            (Some(current), Header::Sealed { key_id, .. }) => key_id != current,
        }
    }

    /// Seals a whole small object (a thumbnail) in memory; `None` without keys.
    pub fn seal_file(&self, key: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let mut sealer = self.file_sealer(key)?;
        let mut out = sealer.header().to_vec();
        let mut pieces = plain.chunks(CHUNK).peekable();
        if pieces.peek().is_none() {
            out.extend(sealer.seal(&[], true));
        }
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            out.extend(sealer.seal(piece, last));
        }
        Some(out)
    }

    /// Opens a whole stored object (tests, small objects); plaintext objects come back as they are.
    pub fn open_file(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, Undecryptable> {
        match parse_header(stored, true) {
            Header::Plain | Header::Incomplete => Ok(stored.to_vec()),
            Header::Sealed { len, key_id } => {
                let mut opener = self.file_opener(key, &stored[..len], &key_id)?;
                let mut plain = opener.push(&stored[len..])?;
                plain.extend(opener.finish()?);
                Ok(plain)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::keyring;
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn files_of_every_size_round_trip_and_their_length_is_known_without_decrypting() {
        let ring = keyring(&["k1"]);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
            let plain = sample(len);
            let stored = ring.seal_file("media/x", &plain).expect("keys");
            let Header::Sealed {
                len: header,
                key_id,
            } = parse_header(&stored, false)
            else {
                panic!("no header for {len}");
            };
            assert_eq!(key_id, "k1");
            assert_eq!(plaintext_len(stored.len() as u64, header), Some(len as u64));
            assert_eq!(ring.open_file("media/x", &stored).unwrap(), plain, "{len}");
            // Fed in odd pieces, as a network stream would.
            let mut opener = ring
                .file_opener("media/x", &stored[..header], "k1")
                .unwrap();
            let mut out = Vec::new();
            for piece in stored[header..].chunks(1000) {
                out.extend(opener.push(piece).unwrap());
            }
            out.extend(opener.finish().unwrap());
            assert_eq!(out, plain);
        }
    }

    #[test]
    fn moved_truncated_reordered_or_extended_files_do_not_open() {
        let ring = keyring(&["k1"]);
        let plain = sample(2 * CHUNK + 10);
        let stored = ring.seal_file("media/a", &plain).unwrap();
        assert_eq!(
            ring.open_file("media/b", &stored),
            Err(Undecryptable::Forged),
            "another media id"
        );
        assert!(ring.open_file("media/a.thumb.png", &stored).is_err());
        let Header::Sealed { len: header, .. } = parse_header(&stored, true) else {
            panic!()
        };
        let sealed_chunk = CHUNK + TAG_BYTES;
        // Cut at a chunk boundary: the new last chunk was not sealed as last.
        assert!(
            ring.open_file("media/a", &stored[..header + 2 * sealed_chunk])
                .is_err()
        );
        // Two chunks swapped.
        let mut swapped = stored[..header].to_vec();
        swapped.extend(&stored[header + sealed_chunk..header + 2 * sealed_chunk]);
        swapped.extend(&stored[header..header + sealed_chunk]);
        swapped.extend(&stored[header + 2 * sealed_chunk..]);
        assert!(ring.open_file("media/a", &swapped).is_err());
        // A byte flipped.
        let mut flipped = stored.clone();
        flipped[header + 5] ^= 1;
        assert!(ring.open_file("media/a", &flipped).is_err());
        // Another key.
        assert_eq!(
            keyring(&["k2"]).open_file("media/a", &stored),
            Err(Undecryptable::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn plaintext_files_are_recognised_and_rotation_knows_what_to_rewrite() {
        let ring = keyring(&["new", "old"]);
        assert_eq!(parse_header(b"\x89PNG\r\n", false), Header::Plain);
        assert_eq!(parse_header(&MAGIC[..3], false), Header::Incomplete);
        assert_eq!(parse_header(&MAGIC[..3], true), Header::Plain);
        assert_eq!(ring.open_file("media/p", b"hello").unwrap(), b"hello");
        assert!(ring.file_needs_rekey(&Header::Plain));
        let old = keyring(&["old"]).seal_file("media/p", b"hi").unwrap();
        let header = parse_header(&old, true);
        assert!(ring.file_needs_rekey(&header));
        assert_eq!(ring.open_file("media/p", &old).unwrap(), b"hi");
        let new = ring.seal_file("media/p", b"hi").unwrap();
        assert!(!ring.file_needs_rekey(&parse_header(&new, true)));
        assert!(Keyring::default().seal_file("media/p", b"hi").is_none());
        assert!(!Keyring::default().file_needs_rekey(&Header::Plain));
    }
}
