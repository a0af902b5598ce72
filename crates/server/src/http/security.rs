//! What browsers may do with the API: which other origins may call it (`CORS_ALLOWED_ORIGINS`,
//! for REST and for WebSocket upgrades alike) and the protective headers on every response.

use std::str::FromStr;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// Web origins other than the server's own that may call it from a browser.
///
/// Tokens travel in headers, never in cookies, so a foreign page can only act for a user whose
/// token it already has; the list is still closed by default, so that an operator opens the
/// API to other sites knowingly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Same origin only (the setting is empty): no CORS headers, foreign WebSocket pages refused.
    #[default]
    SameOrigin,
    /// `*`: any origin.
    Any,
    /// These origins (normalized: lowercase, no default port, no trailing slash).
    List(Vec<String>),
}

impl FromStr for AllowedOrigins {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        match entries.as_slice() {
            [] => Ok(AllowedOrigins::SameOrigin),
            ["*"] => Ok(AllowedOrigins::Any),
            _ if entries.contains(&"*") => Err("`*` must be the only entry".to_owned()),
            _ => entries
                .iter()
                .map(|entry| {
                    normalize_origin(entry).ok_or_else(|| {
                        format!("{entry:?} is not an origin like https://chat.example.com")
                    })
                })
                .collect::<Result<_, _>>()
                .map(AllowedOrigins::List),
        }
    }
}

/// `scheme://host[:port]` in the form browsers send in `Origin`, or `None` if it is not one.
fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(valid) {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// `host[:port]` without a default port, to compare an origin with a `Host` header.
fn authority_of(host_or_origin: &str) -> String {
    let authority = host_or_origin
        .split_once("://")
        .map_or(host_or_origin, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_ascii_lowercase();
    [":80", ":443"]
        .iter()
        .find_map(|port| authority.strip_suffix(port))
        .map_or_else(|| authority.clone(), str::to_owned)
}

impl AllowedOrigins {
    /// Whether a page of `origin` may call the API (the server's own origin aside).
    fn permits(&self, origin: &HeaderValue) -> bool {
        match self {
            AllowedOrigins::SameOrigin => false,
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => origin
                .to_str()
                .ok()
                .and_then(normalize_origin)
                .is_some_and(|origin| list.contains(&origin)),
        }
    }

    /// The CORS layer for REST, or `None` for same origin only (browsers then refuse foreign
    /// pages by themselves). Any headers the page asks for are allowed (`Authorization` is
    /// not covered by a `*`); nothing is allowed with credentials, as nothing uses cookies.
    pub fn cors_layer(&self) -> Option<CorsLayer> {
        let origins = match self {
            AllowedOrigins::SameOrigin => return None,
            AllowedOrigins::Any => AllowOrigin::any(),
            AllowedOrigins::List(_) => {
                let allowed = self.clone();
                AllowOrigin::predicate(move |origin, _| allowed.permits(origin))
            }
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
                .max_age(Duration::from_secs(3600)),
        )
    }

    /// Refuses a WebSocket upgrade from a browser page of a foreign origin. Browsers apply no
    /// CORS to WebSockets, so without this any site could open a socket with a token it got
    /// hold of. Requests without `Origin` are not from a browser page and pass.
    pub fn check_websocket(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let same_origin = match (origin.to_str(), headers.get(header::HOST)) {
            (Ok(origin), Some(host)) => host
                .to_str()
                .is_ok_and(|host| authority_of(origin) == authority_of(host)),
            _ => false,
        };
        if same_origin || self.permits(origin) {
            Ok(())
        } else {
            Err(ApiError::OriginNotAllowed)
        }
    }
}

/// Headers on every response, errors and static files included: no MIME sniffing, no
/// `Referer` (URLs can carry a WebSocket token), and no caching of anything that carries
/// tokens or account data (`/auth/*`, `/me`). Headers a route set itself are kept.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let private = path.starts_with("/auth/")
        || path == "/me"
        || path.starts_with("/me/")
        || path.starts_with("/admin/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    if private {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &str) -> AllowedOrigins {
        list.parse().expect("valid list")
    }

    fn upgrade(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        if let Some(origin) = origin {
            headers.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("origin"),
            );
        }
        headers
    }

    #[test]
    fn parses_the_setting() {
        assert_eq!(origins(""), AllowedOrigins::SameOrigin);
        assert_eq!(origins(" * "), AllowedOrigins::Any);
        assert_eq!(
            origins("https://Chat.Example.com/, http://localhost:5173,https://a.example:443"),
            AllowedOrigins::List(vec![
                "https://chat.example.com".into(),
                "http://localhost:5173".into(),
                "https://a.example".into(),
            ])
        );
        for bad in [
            "chat.example.com",
            "ftp://x.example",
            "*,https://a.example",
            "https://a.example/path",
            "https://",
        ] {
            assert!(bad.parse::<AllowedOrigins>().is_err(), "{bad}");
        }
    }

    #[test]
    fn websocket_origins() {
        let host = "chat.example.com:8443";
        let same = upgrade(Some("https://chat.example.com:8443"), host);
        let foreign = upgrade(Some("https://evil.example"), host);
        let listed = upgrade(Some("https://app.example"), host);
        let none = upgrade(None, host);
        let strict = AllowedOrigins::SameOrigin;
        assert!(strict.check_websocket(&same).is_ok());
        assert!(strict.check_websocket(&none).is_ok());
        assert!(strict.check_websocket(&foreign).is_err());
        assert!(
            strict
                .check_websocket(&upgrade(Some("null"), host))
                .is_err()
        );
        let list = origins("https://app.example");
        assert!(list.check_websocket(&listed).is_ok());
        assert!(list.check_websocket(&foreign).is_err());
        assert!(origins("*").check_websocket(&foreign).is_ok());
        // Default ports are the same origin, written or not.
        let plain = upgrade(Some("http://chat.example.com"), "chat.example.com:80");
        assert!(strict.check_websocket(&plain).is_ok());
        let other_port = upgrade(Some("http://chat.example.com:8080"), "chat.example.com");
        assert!(strict.check_websocket(&other_port).is_err());
    }
}
