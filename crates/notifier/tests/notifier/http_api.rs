//! The subscription API over HTTP, as a browser's page uses it.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nebula_notifier::{ApiState, EndpointPolicy, SubscriptionRules, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::push_endpoint::Browser;
use crate::support::{JWT_SECRET, Pipeline, token, token_with, user};

struct Api {
    app: Router,
    pipeline: Pipeline,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Api {
    /// The API accepting the loopback push service's endpoints, as with
    /// `WEBPUSH_ALLOW_PRIVATE_ENDPOINTS=true`.
    async fn start() -> Api {
        let rules = SubscriptionRules {
            endpoints: EndpointPolicy::new(true),
            ..SubscriptionRules::default()
        };
        Api::start_with(Pipeline::sqlite().await, rules).await
    }

    async fn start_with(pipeline: Pipeline, rules: SubscriptionRules) -> Api {
        let state = ApiState::new(
            pipeline.store().clone(),
            JWT_SECRET,
            pipeline.vapid.public_key(),
        )
        .with_rules(rules);
        Api {
            app: router(state),
            pipeline,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Reply {
            status,
            content_type,
            body,
        }
    }

    async fn subscribe(&self, token: &str, body: Value) -> Reply {
        self.call(
            "POST",
            "/webpush/subscribe",
            Some(token),
            Some(body.to_string()),
        )
        .await
    }
}

fn subscription_json(browser: &Browser) -> Value {
    json!({"endpoint": browser.endpoint, "expirationTime": null, "keys": {"p256dh": browser.p256dh, "auth": browser.auth}})
}

fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.body["code"], code, "body: {}", reply.body);
    assert_eq!(reply.body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(
            reply.body[field].is_string(),
            "problem without {field}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn a_logged_in_user_subscribes_a_browser() {
    let api = Api::start().await;
    let alice = user("alice");
    let browser = api.pipeline.endpoint.new_browser();

    let reply = api
        .subscribe(&token(&alice), subscription_json(&browser))
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["endpoint"], browser.endpoint);
    let stored = api
        .pipeline
        .store()
        .subscriptions_of(alice.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].p256dh.as_str(), stored[0].auth.as_str()),
        (browser.p256dh.as_str(), browser.auth.as_str())
    );
}

#[tokio::test]
async fn subscribing_an_endpoint_again_refreshes_it_instead_of_duplicating() {
    let api = Api::start().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browser = api.pipeline.endpoint.new_browser();

    assert_eq!(
        api.subscribe(&token(&alice), subscription_json(&browser))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.subscribe(&token(&alice), subscription_json(&browser))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .len(),
        1
    );

    // Bob signs in on the same browser profile: the endpoint is his now.
    assert_eq!(
        api.subscribe(&token(&bob), subscription_json(&browser))
            .await
            .status,
        StatusCode::CREATED
    );
    assert!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        api.pipeline
            .store()
            .subscriptions_of(bob.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn padded_base64url_keys_are_accepted_and_stored_unpadded() {
    let api = Api::start().await;
    let alice = user("alice");
    let browser = api.pipeline.endpoint.new_browser();
    let body = json!({"endpoint": browser.endpoint, "keys": {"p256dh": format!("{}=", browser.p256dh), "auth": format!("{}==", browser.auth)}});

    assert_eq!(
        api.subscribe(&token(&alice), body).await.status,
        StatusCode::CREATED
    );
    let stored = api
        .pipeline
        .store()
        .subscriptions_of(alice.id)
        .await
        .unwrap();
    assert_eq!(stored[0].auth, browser.auth);
}

#[tokio::test]
async fn invalid_subscriptions_are_refused_with_422() {
    let api = Api::start().await;
    let alice = user("alice");
    let browser = api.pipeline.endpoint.new_browser();
    let keys = json!({"p256dh": browser.p256dh, "auth": browser.auth});
    let p256dh_not_on_curve = format!("BA{}", "A".repeat(85));
    let cases = [
        (
            "not a URL",
            json!({"endpoint": "not a url", "keys": keys}),
            "invalid_subscription",
        ),
        (
            "ftp endpoint",
            json!({"endpoint": "ftp://push.example/abc", "keys": keys}),
            "invalid_subscription",
        ),
        (
            "credentials in URL",
            json!({"endpoint": "https://u:p@push.example/abc", "keys": keys}),
            "invalid_subscription",
        ),
        (
            "endpoint too long",
            json!({"endpoint": format!("https://push.example/{}", "a".repeat(3000)), "keys": keys}),
            "invalid_subscription",
        ),
        (
            "p256dh not base64url",
            json!({"endpoint": browser.endpoint, "keys": {"p256dh": "***", "auth": browser.auth}}),
            "validation_failed",
        ),
        (
            "p256dh too short",
            json!({"endpoint": browser.endpoint, "keys": {"p256dh": "BAAA", "auth": browser.auth}}),
            "validation_failed",
        ),
        (
            "p256dh not on the curve",
            json!({"endpoint": browser.endpoint, "keys": {"p256dh": p256dh_not_on_curve, "auth": browser.auth}}),
            "validation_failed",
        ),
        (
            "auth of 8 bytes",
            json!({"endpoint": browser.endpoint, "keys": {"p256dh": browser.p256dh, "auth": "AAAAAAAAAAA"}}),
            "validation_failed",
        ),
        (
            "keys missing",
            json!({"endpoint": browser.endpoint}),
            "invalid_body",
        ),
        (
            "endpoint is a number",
            json!({"endpoint": 42, "keys": keys}),
            "invalid_body",
        ),
        ("body is an array", json!([1, 2]), "invalid_body"),
    ];
    for (case, body, code) in cases {
        let reply = api.subscribe(&token(&alice), body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {}",
            reply.body
        );
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    assert!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn broken_json_gets_400_and_huge_bodies_413() {
    let api = Api::start().await;
    let alice = user("alice");
    let reply = api
        .call(
            "POST",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some("{\"endpoint\": ".into()),
        )
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "malformed_json");
    let reply = api
        .call("POST", "/webpush/subscribe", Some(&token(&alice)), None)
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "malformed_json");
    let huge = json!({"endpoint": "x".repeat(100_000)}).to_string();
    let reply = api
        .call(
            "POST",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some(huge),
        )
        .await;
    assert_problem(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let api = Api::start().await;
    let alice = user("alice");
    let browser = api.pipeline.endpoint.new_browser();
    let body = subscription_json(&browser).to_string();

    let reply = api
        .call("POST", "/webpush/subscribe", None, Some(body.clone()))
        .await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    for (case, bad, code) in [
        ("garbage", "not-a-jwt".to_owned(), "invalid_token"),
        (
            "wrong secret",
            token_with("some-other-secret-some-other-secret!!", &alice, 3600),
            "invalid_token",
        ),
        (
            "expired",
            token_with(JWT_SECRET, &alice, -10),
            "token_expired",
        ),
    ] {
        let reply = api
            .call("POST", "/webpush/subscribe", Some(&bad), Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}");
        assert_problem(&reply, StatusCode::UNAUTHORIZED, code);
        let reply = api
            .call(
                "DELETE",
                "/webpush/subscribe",
                Some(&bad),
                Some(json!({"endpoint": browser.endpoint}).to_string()),
            )
            .await;
        assert_problem(&reply, StatusCode::UNAUTHORIZED, code);
    }
    assert!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unsubscribing_removes_only_the_callers_own_subscription() {
    let api = Api::start().await;
    let (alice, mallory) = (user("alice"), user("mallory"));
    let browser = api.pipeline.endpoint.new_browser();
    api.subscribe(&token(&alice), subscription_json(&browser))
        .await;
    let unsubscribe = json!({"endpoint": browser.endpoint}).to_string();

    let reply = api
        .call(
            "DELETE",
            "/webpush/subscribe",
            Some(&token(&mallory)),
            Some(unsubscribe.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .len(),
        1,
        "mallory removed alice's subscription"
    );

    let reply = api
        .call(
            "DELETE",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some(unsubscribe.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Idempotent: a retried unsubscribe is still fine.
    let reply = api
        .call(
            "DELETE",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some(unsubscribe),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = api
        .call(
            "DELETE",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some("{}".into()),
        )
        .await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

#[tokio::test]
async fn the_vapid_public_key_is_public() {
    let api = Api::start().await;
    let reply = api
        .call("GET", "/webpush/vapid-public-key", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"public_key": api.pipeline.vapid.public_key()})
    );
}

#[tokio::test]
async fn with_default_settings_non_public_endpoints_are_refused_at_subscribe() {
    let api = Api::start_with(Pipeline::sqlite().await, SubscriptionRules::default()).await;
    let alice = user("alice");
    let browser = api.pipeline.endpoint.new_browser();
    let keys = json!({"p256dh": browser.p256dh, "auth": browser.auth});

    for endpoint in [
        // The loopback push service itself, as the report had it.
        browser.endpoint.as_str(),
        "http://push.example.com/x",
        "https://127.0.0.1/internal-admin",
        "https://127.1/x",
        "https://2130706433/x",
        "https://0.0.0.0/x",
        "https://10.0.0.7/x",
        "https://172.16.5.4/x",
        "https://192.168.1.1/x",
        "https://100.64.0.1/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://224.0.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[fe80::1]/x",
        "https://[fd00::1]/x",
        "https://[ff02::1]/x",
        "https://localhost/x",
        "https://push.localhost./x",
    ] {
        let reply = api
            .subscribe(&token(&alice), json!({"endpoint": endpoint, "keys": keys}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{endpoint}: {}",
            reply.body
        );
        assert_problem(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_subscription",
        );
    }
    assert!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .is_empty()
    );

    // A public https endpoint is fine; its host is resolved (and checked) when pushing.
    let reply = api
        .subscribe(
            &token(&alice),
            json!({"endpoint": "https://fcm.googleapis.com/fcm/send/abc", "keys": keys}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

#[tokio::test]
async fn endpoints_are_normalized_before_the_uniqueness_check() {
    let api = Api::start_with(Pipeline::sqlite().await, SubscriptionRules::default()).await;
    let alice = user("alice");
    let browser = api.pipeline.endpoint.new_browser();
    let keys = json!({"p256dh": browser.p256dh, "auth": browser.auth});

    for endpoint in [
        "https://push.example.com/send/AbC",
        "HTTPS://Push.EXAMPLE.com:443/send/AbC",
        "https://push.example.com/send/AbC#again",
    ] {
        let reply = api
            .subscribe(&token(&alice), json!({"endpoint": endpoint, "keys": keys}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["endpoint"], "https://push.example.com/send/AbC");
    }
    let stored = api
        .pipeline
        .store()
        .subscriptions_of(alice.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");

    // Unsubscribing with another spelling of it removes it too.
    let reply = api
        .call(
            "DELETE",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some(json!({"endpoint": "https://PUSH.example.com/send/AbC#x"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_user_may_subscribe_at_most_the_configured_number_of_browsers() {
    let rules = SubscriptionRules {
        endpoints: EndpointPolicy::new(true),
        max_per_user: 2,
    };
    let api = Api::start_with(Pipeline::sqlite().await, rules).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browsers: Vec<_> = (0..3)
        .map(|_| api.pipeline.endpoint.new_browser())
        .collect();

    for browser in &browsers[..2] {
        let reply = api
            .subscribe(&token(&alice), subscription_json(browser))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let reply = api
        .subscribe(&token(&alice), subscription_json(&browsers[2]))
        .await;
    assert_problem(&reply, StatusCode::CONFLICT, "too_many_subscriptions");

    // Subscribing a browser again is a refresh, not a new subscription.
    let reply = api
        .subscribe(&token(&alice), subscription_json(&browsers[0]))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    // Other users have their own allowance.
    let reply = api
        .subscribe(&token(&bob), subscription_json(&browsers[2]))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    // After unsubscribing one, there is room again.
    let reply = api
        .call(
            "DELETE",
            "/webpush/subscribe",
            Some(&token(&alice)),
            Some(json!({"endpoint": browsers[1].endpoint}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let newer = api.pipeline.endpoint.new_browser();
    let reply = api
        .subscribe(&token(&alice), subscription_json(&newer))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(
        api.pipeline
            .store()
            .subscriptions_of(alice.id)
            .await
            .unwrap()
            .len(),
        2
    );
}
