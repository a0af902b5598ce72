//! Signed media URLs, so that a browser's `<img>` can load an image without an
//! `Authorization` header and without a long-lived credential in the URL.
//!
//! A URL is `/media/{id}?exp=…&sig=…` (or `/media/{id}/thumbnail?…`): `sig` is an
//! HMAC-SHA256 over the id, the variant and `exp`, keyed from `JWT_SECRET` (every node of a
//! cluster shares it, so any node accepts any node's URLs). It grants reading that one object
//! until `exp`, nothing else. `exp` is rounded up to the end of the next `MEDIA_URL_TTL_SECONDS`
//! period: a URL is valid one to two periods, and stays the same within a period, so browsers
//! cache the image instead of fetching it again with every history page.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Which object of an upload a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Original,
    Thumbnail,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Original => "original",
            Variant::Thumbnail => "thumbnail",
        }
    }
}

/// Signs and checks media URLs.
#[derive(Clone)]
pub struct MediaUrls {
    key: [u8; 32],
    ttl: i64,
}

impl std::fmt::Debug for MediaUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaUrls").field("ttl", &self.ttl).finish()
    }
}

impl MediaUrls {
    /// A key derived from the token secret (never the secret itself: a media signature must
    /// not be usable as, or reveal anything about, a token signature).
    pub fn new(jwt_secret: &str, ttl_seconds: u64) -> Self {
        let mut mac = hmac_of(jwt_secret.as_bytes());
        mac.update(b"nebula media url key v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        MediaUrls {
            key,
            ttl: i64::try_from(ttl_seconds.max(1)).unwrap_or(i64::MAX / 4),
        }
    }

    /// The signed path of an object, valid until the end of the period after the current one.
    pub fn sign(&self, id: Uuid, variant: Variant, now: i64) -> String {
        let exp = (now.div_euclid(self.ttl) + 2).saturating_mul(self.ttl);
        let path = match variant {
            Variant::Original => format!("/media/{id}"),
            Variant::Thumbnail => format!("/media/{id}/thumbnail"),
        };
        format!("{path}?exp={exp}&sig={}", self.signature(id, variant, exp))
    }

    /// Signs the paths a media object carries (`url`, and `thumbnail_url` when it has one).
    pub fn sign_media(&self, media: &mut nebula_wire::Media, now: i64) {
        if media.url.is_some() {
            media.url = Some(self.sign(media.id, Variant::Original, now));
        }
        if media.thumbnail_url.is_some() {
            media.thumbnail_url = Some(self.sign(media.id, Variant::Thumbnail, now));
        }
    }

    /// Whether `sig` signs this object until `exp`, and `exp` has not passed.
    pub fn verify(&self, id: Uuid, variant: Variant, exp: i64, sig: &str, now: i64) -> bool {
        if exp <= now {
            return false;
        }
        let Some(given) = decode_hex(sig) else {
            return false;
        };
        let mut mac = hmac_of(&self.key);
        mac.update(message(id, variant, exp).as_bytes());
        // Constant-time comparison of the full tag.
        mac.verify_slice(&given).is_ok()
    }

    fn signature(&self, id: Uuid, variant: Variant, exp: i64) -> String {
        let mut mac = hmac_of(&self.key);
        mac.update(message(id, variant, exp).as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn hmac_of(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

fn message(id: Uuid, variant: Variant, exp: i64) -> String {
    format!("{id}:{}:{exp}", variant.label())
}

fn decode_hex(raw: &str) -> Option<Vec<u8>> {
    if raw.len() != 64 || !raw.is_ascii() {
        return None;
    }
    (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_valid_for_its_object_and_time_only() {
        let urls = MediaUrls::new("secret", 3600);
        let id = Uuid::now_v7();
        let now = 1_000_000;
        let url = urls.sign(id, Variant::Original, now);
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let mut exp = 0;
        let mut sig = "";
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = v.parse().unwrap_or_default(),
                Some(("sig", v)) => sig = v,
                _ => {}
            }
        }
        assert!(exp > now + 3600 && exp <= now + 7200, "{exp}");
        assert!(urls.verify(id, Variant::Original, exp, sig, now));
        assert!(!urls.verify(id, Variant::Thumbnail, exp, sig, now));
        assert!(!urls.verify(Uuid::now_v7(), Variant::Original, exp, sig, now));
        assert!(!urls.verify(id, Variant::Original, exp + 1, sig, now));
        assert!(!urls.verify(id, Variant::Original, exp, sig, exp));
        assert!(!MediaUrls::new("other", 3600).verify(id, Variant::Original, exp, sig, now));
        assert_eq!(
            url,
            urls.sign(id, Variant::Original, now + 1),
            "stable within a period"
        );
    }
}
