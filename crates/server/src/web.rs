//! The browser client: static files embedded in the binary (no build step, works offline).
//!
//! `GET /web/{file}` serves `crates/server/web/<file>` (third-party modules under `vendor/`,
//! each with its licence header; `sdk/index.js` is a copy of the TypeScript client,
//! `clients/typescript/src/index.js`, which the client talks to the server through — a copy
//! because the crate is built alone, e.g. in the Docker image; a test keeps it identical); `index.html` is [`INDEX_HTML`], which the
//! server gives to browsers at `/` (see [`index`] for a ready-made response with the headers).

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// The client's page. Its assets are referenced as `/web/<file>`.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// Content-Security-Policy for the page. `index.html` carries the same policy in a `<meta>`;
/// the header adds `frame-ancestors`, which a `<meta>` cannot express.
pub const INDEX_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// (file name, content type, contents) of every file under `/web/`.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", INDEX_HTML),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/api.js"),
    ),
    (
        "socket.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/socket.js"),
    ),
    (
        "store.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/store.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/ui.js"),
    ),
    (
        "state.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/state.js"),
    ),
    (
        "timeline.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/timeline.js"),
    ),
    (
        "message-view.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/message-view.js"),
    ),
    (
        "reactions.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/reactions.js"),
    ),
    (
        "composer.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/composer.js"),
    ),
    (
        "roomlist.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/roomlist.js"),
    ),
    (
        "uploads.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/uploads.js"),
    ),
    (
        "attachments.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/attachments.js"),
    ),
    (
        "stories.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/stories.js"),
    ),
    (
        "social.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/social.js"),
    ),
    (
        "dms.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/dms.js"),
    ),
    (
        "people.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/people.js"),
    ),
    (
        "profile.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/profile.js"),
    ),
    (
        "contacts.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/contacts.js"),
    ),
    (
        "calls.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/calls.js"),
    ),
    (
        "sdk/index.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/sdk/index.js"),
    ),
    (
        "auth.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/auth.js"),
    ),
    (
        "sending.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/sending.js"),
    ),
    (
        "rooms.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/rooms.js"),
    ),
    (
        "members.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/members.js"),
    ),
    (
        "session.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/session.js"),
    ),
    (
        "connection.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/connection.js"),
    ),
    (
        "feed.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/feed.js"),
    ),
    (
        "history.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/history.js"),
    ),
    (
        "room-view.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/room-view.js"),
    ),
    (
        "events.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/events.js"),
    ),
    (
        "reads.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/reads.js"),
    ),
    (
        "typing.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/typing.js"),
    ),
    (
        "changes.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/changes.js"),
    ),
    (
        "bindings.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/bindings.js"),
    ),
    (
        "announce.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/announce.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/pages.js"),
    ),
    (
        "settings.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/settings.js"),
    ),
    (
        "qr.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/qr.js"),
    ),
    (
        "vendor/qrcode-generator.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/vendor/qrcode-generator.js"),
    ),
    (
        "report.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/report.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/admin.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("../web/icon.svg")),
];

/// The embedded file of that name: `(content type, contents)`.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, content_type, body)| (*content_type, *body))
}

/// Routes `GET /web/{*file}` (and `HEAD`; `vendor/…` included): the embedded file with its content type and
/// `Cache-Control: no-cache`, or 404 for a name that is not one of them.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/web/{*file}", get(serve_file))
}

/// The page for `GET /` when the request's `Accept` includes `text/html`.
pub fn index() -> Response {
    page(INDEX_HTML, "text/html; charset=utf-8", true)
}

/// Does this `Accept` header ask for HTML (a browser navigating to `/`)?
pub fn wants_html(accept: Option<&HeaderValue>) -> bool {
    accept.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',')
            .any(|part| part.trim().starts_with("text/html"))
    })
}

async fn serve_file(Path(file): Path<String>) -> Response {
    match asset(&file) {
        Some((content_type, body)) => page(body, content_type, file == "index.html"),
        None => crate::error::ApiError::NotFound.into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str, csp: bool) -> Response {
    let mut res = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    if csp {
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(INDEX_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn serves_each_file_with_its_type_and_no_cache() {
        for (name, content_type, body) in FILES {
            let res = get(&format!("/web/{name}")).await;
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], *content_type, "{name}");
            assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache", "{name}");
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .expect("body");
            assert_eq!(bytes.as_ref(), body.as_bytes(), "{name}");
        }
    }

    #[tokio::test]
    async fn unknown_names_are_404() {
        for path in [
            "/web/nope.js",
            "/web/..%2FCargo.toml",
            "/web/APP.JS",
            "/web/vendor/../app.js",
            "/web/vendor/nope.js",
        ] {
            let res = get(path).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
    }

    #[test]
    fn every_referenced_asset_is_embedded() {
        // index.html's /web/ references, and the modules' relative imports.
        let mut refs: Vec<String> = Vec::new();
        for (_, _, body) in FILES {
            for part in body.split("/web/").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
                    .collect();
                if !name.is_empty() {
                    refs.push(name);
                }
            }
            for part in body.split("from './").skip(1) {
                if let Some(name) = part.split('\'').next() {
                    refs.push(name.to_owned());
                }
            }
        }
        assert!(refs.iter().any(|r| r == "app.js"));
        for r in refs {
            assert!(asset(&r).is_some(), "referenced but not embedded: {r}");
        }
    }

    #[test]
    fn the_served_sdk_is_the_typescript_client() {
        let served = asset("sdk/index.js").map(|(_, body)| body);
        // Read at test time, not embedded: the server binary (and its Docker build) never needs
        // the SDK's source tree, only this test does.
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../clients/typescript/src/index.js");
        let sdk = std::fs::read_to_string(&source)
            .unwrap_or_else(|err| panic!("reading {}: {err}", source.display()));
        assert!(
            served == Some(sdk.as_str()),
            "crates/server/web/sdk/index.js differs from clients/typescript/src/index.js: \
             cp clients/typescript/src/index.js crates/server/web/sdk/index.js"
        );
    }

    #[test]
    fn accept_detection() {
        let html = HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(wants_html(Some(&html)));
        assert!(!wants_html(Some(&HeaderValue::from_static(
            "application/json"
        ))));
        assert!(!wants_html(Some(&HeaderValue::from_static("*/*"))));
        assert!(!wants_html(None));
    }
}
