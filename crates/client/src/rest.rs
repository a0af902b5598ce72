//! [`Client`]: the REST half. One `reqwest::Client` (one connection pool) shared by every
//! clone; a clone [`with_token`](Client::with_token) acts as another user on the same pool.

use std::fmt::Display;

use nebula_wire::Problem;
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::routes::{Route, percent_encode};
use crate::{Error, Result};

/// Typed calls of every REST route of `/openapi.json` (see [`crate::routes::ALL`]), as one
/// user (or anonymously until [`register`](Client::register)/[`login`](Client::login)).
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base_url` (`http://host:port`), with a pool of its own.
    pub fn new(base_url: &str) -> Self {
        Self::with_http(reqwest::Client::new(), base_url)
    }

    /// A client on a `reqwest::Client` the caller configured (timeouts, pool size, TLS).
    pub fn with_http(http: reqwest::Client, base_url: &str) -> Self {
        Client {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            token: None,
        }
    }

    /// The same server and pool, acting as the holder of `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    /// `http://host:port`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to any path, with this client's token: the escape hatch for what the typed
    /// calls do not express (odd headers, malformed bodies, routes newer than this crate).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request to `route` with its parameters filled in.
    pub(crate) fn at(&self, route: Route, args: &[&(dyn Display + Sync)]) -> Call {
        Call {
            route,
            request: self.request(route.method(), &route.fill(args)),
        }
    }

    /// A request to `route` with `query` (a flat struct) as its query string.
    pub(crate) fn at_query(
        &self,
        route: Route,
        args: &[&(dyn Display + Sync)],
        query: &impl Serialize,
    ) -> Call {
        let path = route.fill(args);
        Call {
            route,
            request: self.request(route.method(), &format!("{path}{}", query_string(query))),
        }
    }

    /// Sends `call` and reads a JSON answer, or the problem of a refusal.
    pub(crate) async fn fetch<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let response = call.send().await?;
        Ok(response.json().await?)
    }

    /// Sends `call` and expects a success without a body worth reading (204, 202).
    pub(crate) async fn fetch_empty(&self, call: Call) -> Result<()> {
        let response = call.send().await?;
        // Read to the end, so the connection goes back to the pool.
        response.bytes().await?;
        Ok(())
    }

    /// Sends `call` and returns the raw body of a success (files, metrics).
    pub(crate) async fn fetch_bytes(&self, call: Call) -> Result<Vec<u8>> {
        let response = call.send().await?;
        Ok(response.bytes().await?.to_vec())
    }
}

/// A request to one route of the table, sent by the typed calls: the answer must have one of
/// the route's success statuses. A 2xx the OpenAPI document does not give for the route (a
/// 200 where a creation answers 201) means client and server disagree about what happened, so
/// it is an error too, not a silent success.
pub(crate) struct Call {
    route: Route,
    request: RequestBuilder,
}

impl Call {
    pub(crate) fn json<T: Serialize + ?Sized>(self, body: &T) -> Call {
        self.map(|request| request.json(body))
    }

    /// The request with more set on it (headers, a raw body).
    pub(crate) fn map(self, f: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Call {
        Call {
            route: self.route,
            request: f(self.request),
        }
    }

    async fn send(self) -> Result<Response> {
        let response = succeeded(self.request.send().await?).await?;
        let status = response.status().as_u16();
        if !self.route.success.contains(&status) {
            return Err(Error::UnexpectedStatus {
                method: self.route.method,
                path: self.route.path,
                status,
                expected: self.route.success,
            });
        }
        Ok(response)
    }
}

/// The response if it succeeded (any 2xx), else [`Error::Api`] with its problem document (one
/// made up from the status when the body is not one, e.g. a proxy's error page).
async fn succeeded(response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await?;
    let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("error").into(),
        status: status.as_u16(),
        detail: String::from_utf8_lossy(&body).chars().take(500).collect(),
        code: format!("http_{}", status.as_u16()),
    });
    Err(Error::Api {
        status: status.as_u16(),
        problem: Box::new(problem),
    })
}

/// `?a=1&b=x` from a flat struct's fields that are set (`None` fields are left out).
fn query_string(query: &impl Serialize) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(query) else {
        return String::new();
    };
    let pairs: Vec<String> = fields
        .into_iter()
        .filter_map(|(key, value)| {
            let value = match value {
                serde_json::Value::Null => return None,
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            Some(format!("{key}={}", percent_encode(&value)))
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_leave_out_unset_fields_and_encode_values() {
        let query = nebula_wire::PublicRoomQuery {
            q: Some("a b&c".into()),
            page: None,
            page_size: Some(10),
        };
        let text = query_string(&query);
        let mut pairs: Vec<&str> = text.trim_start_matches('?').split('&').collect();
        pairs.sort_unstable();
        assert!(text.starts_with('?'), "{text}");
        assert_eq!(pairs, ["page_size=10", "q=a%20b%26c"]);
        assert_eq!(query_string(&nebula_wire::ChangesQuery::default()), "");
    }

    /// A stand-in for a server that disagrees with the OpenAPI document (the real one cannot be
    /// made to): on port 0, it answers every request with `status` and `body`.
    async fn answering(status: u16, body: &'static str) -> Client {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        // The workspace's reqwest has no TLS provider of its own (see the crate's docs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // The request: headers, then as many body bytes as Content-Length says.
                    let mut seen = Vec::new();
                    let mut buf = [0_u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Client::new(&format!("http://127.0.0.1:{port}")).with_token("t")
    }

    const ROOM: &str = r#"{"id":"0193a1b2-0000-7000-8000-000000000001","name":"r","description":null,
        "is_private":false,"owner_id":"0193a1b2-0000-7000-8000-000000000002","member_count":1,
        "created_at":"2024-01-01T00:00:00Z"}"#;

    #[tokio::test]
    async fn a_typed_call_accepts_only_the_statuses_the_openapi_document_gives_its_route() {
        let room = uuid::Uuid::nil();
        // Creating a room answers 201; a 200 means something else happened.
        let created = answering(201, ROOM).await.create_room("r").await;
        assert!(created.is_ok(), "{created:?}");
        match answering(200, ROOM).await.create_room("r").await {
            Err(Error::UnexpectedStatus {
                method: "POST",
                path: "/rooms",
                status: 200,
                expected: [201],
            }) => {}
            other => panic!("a 200 for POST /rooms must be refused: {other:?}"),
        }
        // Leaving answers 204 (no body).
        assert!(answering(204, "").await.leave(room).await.is_ok());
        let leave = answering(200, "").await.leave(room).await;
        assert!(
            matches!(leave, Err(Error::UnexpectedStatus { status: 200, .. })),
            "{leave:?}"
        );
        // Joining answers 201, or 200 when already a member: both are fine, 202 is not.
        let member = r#"{"user_id":"0193a1b2-0000-7000-8000-000000000002","username":"u",
            "role":"member","joined_at":"2024-01-01T00:00:00Z"}"#;
        assert!(answering(200, member).await.join(room).await.is_ok());
        assert!(answering(201, member).await.join(room).await.is_ok());
        let odd = answering(202, member).await.join(room).await;
        assert!(
            matches!(odd, Err(Error::UnexpectedStatus { status: 202, .. })),
            "{odd:?}"
        );
        // Refusals are still problems.
        let refused = answering(404, r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no","code":"room_not_found"}"#)
            .await
            .room(room)
            .await;
        assert_eq!(
            refused.err().as_ref().and_then(Error::code),
            Some("room_not_found")
        );
    }

    /// Calls are awaited inside `tokio::spawn`ed tasks: their futures must be `Send`.
    #[allow(dead_code)]
    fn calls_are_send(client: &Client, room: uuid::Uuid) {
        fn send<T: Send>(_: T) {}
        send(client.post_message(room, "hi"));
        send(client.react(room, room, "👍"));
        send(client.history(room, &nebula_wire::HistoryQuery::default()));
        send(client.connect("/ws"));
    }
}
