//! Compressed responses (gzip, br) for what the server writes itself: JSON, problem details,
//! the web client's HTML/JS/CSS/SVG and the metrics text, when the client sends
//! `Accept-Encoding` and the body is worth it.
//!
//! Media bytes are never compressed: uploads are mostly already-compressed images and video,
//! and a compressed body would lose its `Content-Length` (which download managers and the
//! signed `<img>` URLs rely on). They are recognised by `Content-Disposition`, which every
//! media response carries and no API response does, so a `text/plain` upload is left alone too.
//! A 101 WebSocket upgrade has no content type and is never touched. `/metrics` is compressed
//! only for a scraper that asks (Prometheus sends `Accept-Encoding: gzip` and decodes it).

use axum::http::{Response, header};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// Bodies smaller than this go out as they are: below about one TCP segment, compressing saves
/// no round trip and costs CPU on both ends.
pub const MIN_COMPRESSED_BYTES: u64 = 1024;

/// Content types the server produces and that shrink well.
const COMPRESSIBLE: &[&str] = &[
    "application/json",
    "application/problem+json",
    "application/yaml",
    "text/",
    "image/svg+xml",
];

/// The layer: gzip or br as the client prefers, at levels meant for on-the-fly use.
pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .no_deflate()
        .no_zstd()
        // tower-http's defaults: gzip 6, and br 4 (not brotli's own default of 11, its
        // archival level, far too slow per request for a few percent). See docs/BENCHMARKS.md.
        .quality(CompressionLevel::Default)
        .compress_when(SizeAbove::new(MIN_COMPRESSED_BYTES).and(OurOwnText))
}

/// Only bodies the server wrote itself, never media (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct OurOwnText;

impl Predicate for OurOwnText {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        if response.headers().contains_key(header::CONTENT_DISPOSITION) {
            return false;
        }
        let Some(content_type) = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let content_type = content_type.trim_start().to_ascii_lowercase();
        COMPRESSIBLE.iter().any(|t| content_type.starts_with(t))
    }
}
