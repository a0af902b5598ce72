//! The WebSocket handshake and the socket behind it.
//!
//! The server takes the upgraded connection itself instead of axum's `WebSocket`, because
//! events are written to it from two places (see `outbound`): tungstenite still does all the
//! protocol work on the way in (parsing, unmasking, UTF-8 checks, limits, pings and the closing
//! handshake), reading through the [`Outbound`] that owns the socket and writing its control
//! frames there, while data frames go out through the [`Outbound`] directly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::outbound::{Io, Outbound};
use crate::error::ApiError;

/// A valid WebSocket upgrade request (RFC 6455 §4.2.1), not yet answered.
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let refuse = |why: &str| ApiError::NotWebSocket(why.to_owned());
        if parts.version != Version::HTTP_11 || parts.method != Method::GET {
            return Err(refuse("an HTTP/1.1 GET with the WebSocket upgrade headers"));
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refuse("`Connection: upgrade` is missing"));
        }
        if !header_has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse("`Upgrade: websocket` is missing"));
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|version| version.as_bytes() != b"13")
        {
            return Err(refuse("`Sec-WebSocket-Version: 13` is missing"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or_else(|| refuse("`Sec-WebSocket-Key` is missing"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse("this connection cannot be upgraded"))?;
        Ok(WsUpgrade { key, on_upgrade })
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

impl WsUpgrade {
    /// Answers 101 and runs `callback` with the connection once hyper hands it over.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(Io) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => callback(TokioIo::new(upgraded)).await,
                Err(err) => tracing::debug!(error = %err, "websocket upgrade failed"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// What tungstenite reads from and writes its control frames to: the connection's
/// [`Outbound`], which owns the socket (so its pongs and close frames stay in order with the
/// data frames written there).
pub struct Transport {
    out: Arc<Outbound>,
}

impl Transport {
    /// The WebSocket protocol over an upgraded connection, with the server's limits.
    pub async fn websocket(
        out: Arc<Outbound>,
        config: WebSocketConfig,
    ) -> WebSocketStream<Transport> {
        WebSocketStream::from_raw_socket(Transport { out }, Role::Server, Some(config)).await
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.out.poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    /// Always accepts everything: what the socket does not take now waits in the backlog,
    /// which the connection's task writes out.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.out.send_raw(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
