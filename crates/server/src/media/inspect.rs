//! What an upload is, from its bytes alone (never from the declared `Content-Type` or the
//! file name), and for images: dimensions and a thumbnail, under decoding limits.
//!
//! Decompression bombs: dimensions come from the image header without decoding pixels; an
//! image is decoded (for its thumbnail) only if it has at most [`MAX_DECODE_PIXELS`] pixels,
//! and then under `image::Limits` that cap the decoder's allocations too. A 20000 × 20000 PNG
//! of a few KB keeps its dimensions and gets no thumbnail. Decoding runs on the blocking pool,
//! a few at a time (see [`Inspector`]).

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use image::{ImageFormat, ImageReader, Limits};
use tokio::sync::Semaphore;

/// Longer side of a thumbnail.
pub const THUMBNAIL_SIDE: u32 = 320;

/// Largest image decoded for a thumbnail: 40 megapixels (a large phone photo), 160 MB as RGBA.
pub const MAX_DECODE_PIXELS: u64 = 40_000_000;

/// Bytes the decoder may allocate.
const MAX_DECODE_ALLOC: u64 = 200 * 1024 * 1024;

/// Bytes of the start of an upload kept in memory for type detection.
pub const SNIFF_BYTES: usize = 8192;

/// Image types served inline (`Content-Disposition: inline`); everything else is an attachment.
pub fn is_inline_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// The type of an upload from its first bytes.
pub fn detect_type(head: &[u8]) -> String {
    // infer's text matchers (HTML, XML, shell) are guesses like ours below; binary formats
    // are not.
    if let Some(kind) = infer::get(head).filter(|kind| !kind.mime_type().starts_with("text/")) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A multi-byte character cut at the end of the sniffed prefix is still text.
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&head[..err.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return "application/octet-stream".into(),
    };
    let lower = text.trim_start().to_ascii_lowercase();
    if lower.contains("<svg") {
        "image/svg+xml".into()
    } else if lower.starts_with("<!doctype html")
        || lower.contains("<html")
        || lower.contains("<script")
    {
        "text/html".into()
    } else if lower.starts_with("<?xml") {
        "text/xml".into()
    } else {
        "text/plain".into()
    }
}

/// What decoding found out about an image.
#[derive(Debug, Default, Clone)]
pub struct ImageFacts {
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// A PNG at most [`THUMBNAIL_SIDE`] on its longer side.
    pub thumbnail: Option<Vec<u8>>,
}

fn format_of(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(20_000);
    limits.max_image_height = Some(20_000);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

fn reader(
    path: &Path,
    format: ImageFormat,
) -> std::io::Result<ImageReader<BufReader<std::fs::File>>> {
    let mut reader = ImageReader::new(BufReader::new(std::fs::File::open(path)?));
    reader.set_format(format);
    reader.limits(limits());
    Ok(reader)
}

/// Dimensions and thumbnail of the image in `path` (blocking). Anything broken, truncated or
/// too large yields less, never an error.
pub fn image_facts(path: &Path, content_type: &str) -> ImageFacts {
    let Some(format) = format_of(content_type) else {
        return ImageFacts::default();
    };
    let Ok(Ok((width, height))) = reader(path, format).map(|r| r.into_dimensions()) else {
        return ImageFacts::default();
    };
    let mut facts = ImageFacts {
        width: Some(i64::from(width)),
        height: Some(i64::from(height)),
        thumbnail: None,
    };
    if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS || width == 0 || height == 0 {
        return facts;
    }
    let Ok(Ok(image)) = reader(path, format).map(|r| r.decode()) else {
        return facts;
    };
    // Smaller images are kept at their size, not enlarged.
    let thumbnail = if width <= THUMBNAIL_SIDE && height <= THUMBNAIL_SIDE {
        image
    } else {
        image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    };
    let mut png = std::io::Cursor::new(Vec::new());
    if thumbnail.write_to(&mut png, ImageFormat::Png).is_ok() {
        facts.thumbnail = Some(png.into_inner());
    }
    facts
}

/// Runs [`image_facts`] on the blocking pool, at most a few at once: each decode may hold up
/// to `MAX_DECODE_ALLOC` bytes, and they must not add up.
#[derive(Debug, Clone)]
pub struct Inspector {
    permits: Arc<Semaphore>,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            permits: Arc::new(Semaphore::new(2)),
        }
    }
}

impl Inspector {
    pub async fn image_facts(&self, path: &Path, content_type: &str) -> ImageFacts {
        if format_of(content_type).is_none() {
            return ImageFacts::default();
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return ImageFacts::default();
        };
        let (path, content_type) = (path.to_owned(), content_type.to_owned());
        tokio::task::spawn_blocking(move || image_facts(&path, &content_type))
            .await
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(detect_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(detect_type(b"<html><script>alert(1)</script>"), "text/html");
        assert_eq!(
            detect_type(b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"),
            "image/svg+xml"
        );
        assert_eq!(detect_type(b"hello"), "text/plain");
        assert_eq!(
            detect_type(&[0xff, 0x00, 0xfe, 0x01]),
            "application/octet-stream"
        );
        assert!(!is_inline_image("image/svg+xml"));
        assert!(is_inline_image("image/webp"));
    }

    #[test]
    fn thumbnails_shrink_large_images_and_keep_small_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        for ((w, h), want) in [((640, 480), (320, 240)), ((40, 30), (40, 30))] {
            let path = dir.path().join(format!("{w}x{h}.png"));
            image::RgbImage::new(w, h).save(&path).expect("write a png");
            let facts = image_facts(&path, "image/png");
            assert_eq!(
                (facts.width, facts.height),
                (Some(i64::from(w)), Some(i64::from(h)))
            );
            let thumbnail =
                image::load_from_memory(&facts.thumbnail.expect("a thumbnail")).expect("a png");
            assert_eq!((thumbnail.width(), thumbnail.height()), want, "{w}x{h}");
        }
    }
}
