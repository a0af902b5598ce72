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
    pub(crate) fn at(&self, route: Route, args: &[&(dyn Display + Sync)]) -> RequestBuilder {
        self.request(route.method(), &route.fill(args))
    }

    /// A request to `route` with `query` (a flat struct) as its query string.
    pub(crate) fn at_query(
        &self,
        route: Route,
        args: &[&(dyn Display + Sync)],
        query: &impl Serialize,
    ) -> RequestBuilder {
        let path = route.fill(args);
        self.request(route.method(), &format!("{path}{}", query_string(query)))
    }

    /// Sends `request` and reads a JSON answer, or the problem of a refusal.
    pub(crate) async fn fetch<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = succeeded(request.send().await?).await?;
        Ok(response.json().await?)
    }

    /// Sends `request` and expects a success without a body worth reading (204, 202).
    pub(crate) async fn fetch_empty(&self, request: RequestBuilder) -> Result<()> {
        let response = succeeded(request.send().await?).await?;
        // Read to the end, so the connection goes back to the pool.
        response.bytes().await?;
        Ok(())
    }

    /// Sends `request` and returns the raw body of a success (files, metrics).
    pub(crate) async fn fetch_bytes(&self, request: RequestBuilder) -> Result<Vec<u8>> {
        let response = succeeded(request.send().await?).await?;
        Ok(response.bytes().await?.to_vec())
    }
}

/// The response if it succeeded, else [`Error::Api`] with its problem document (one made up
/// from the status when the body is not one, e.g. a proxy's error page).
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
