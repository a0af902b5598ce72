//! One's own account: e-mail, password change and logout everywhere (with the revocation of
//! tokens and sockets they imply), and TOTP two-factor authentication.

use nebula_wire::{Account, AuthResponse, RecoveryCodes, TotpSetup};
use reqwest::StatusCode;
use serde_json::json;
use totp_rs::{Builder, Secret};

use crate::helpers::{Backend, Reply, Session, TestApp, password_of};
use crate::on_both_backends;
use crate::ws_client::Ended;

on_both_backends!(
    me_shows_email_admin_and_two_factor_and_patch_changes_the_email,
    a_password_change_revokes_every_earlier_token_and_socket,
    logout_all_revokes_tokens_and_closes_sockets,
    two_factor_setup_login_and_single_use_codes,
);

async fn login(app: &TestApp, username: &str, password: &str, extra: serde_json::Value) -> Reply {
    let mut body = json!({"username": username, "password": password});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    app.post_json("/auth/login", body).await
}

async fn me_shows_email_admin_and_two_factor_and_patch_changes_the_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let me: Account = alice.get("/me").await.json();
    assert_eq!(
        (me.email, me.is_admin, me.totp_enabled),
        (None, false, false)
    );

    let reply = alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json::<Account>().email.as_deref(),
        Some("alice@example.com")
    );
    // An absent field changes nothing; null removes the address.
    let unchanged: Account = alice.patch("/me", json!({})).await.json();
    assert_eq!(unchanged.email.as_deref(), Some("alice@example.com"));
    let removed: Account = alice.patch("/me", json!({"email": null})).await.json();
    assert_eq!(removed.email, None);

    for bad in [
        json!({"email": "no-at-sign"}),
        json!({"email": "a b@c"}),
        json!({"email": 5}),
    ] {
        let reply = alice.patch("/me", bad.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let reply = alice
        .patch("/me", json!({"email": format!("{}@x.io", "a".repeat(260))}))
        .await;
    reply.assert_problem(422, "validation_failed");
    // Other people's `user` objects stay {id, username, created_at}.
    let bob = app.register("bob").await;
    let seen = bob.get(&format!("/users/{}", alice.user.id)).await;
    assert_eq!(
        seen.json::<serde_json::Value>().as_object().unwrap().len(),
        3
    );
}

async fn a_password_change_revokes_every_earlier_token_and_socket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let second = session_of(
        &app,
        &alice,
        login(&app, "alice", &password_of("alice"), json!({})).await,
    );
    let mut socket = alice.ws("/ws").await;

    let wrong = alice
        .post(
            "/me/password",
            json!({"current_password": "nope-nope", "new_password": "new password 1"}),
        )
        .await;
    wrong.assert_problem(403, "invalid_password");
    let short = alice
        .post(
            "/me/password",
            json!({"current_password": password_of("alice"), "new_password": "short"}),
        )
        .await;
    short.assert_problem(422, "validation_failed");
    let missing = alice
        .post("/me/password", json!({"new_password": "new password 1"}))
        .await;
    missing.assert_problem(422, "invalid_body");
    assert_eq!(
        alice.get("/me").await.status,
        StatusCode::OK,
        "failed attempts revoke nothing"
    );

    let changed = alice
        .post(
            "/me/password",
            json!({"current_password": password_of("alice"), "new_password": "new password 1"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    alice.get("/me").await.assert_problem(401, "token_revoked");
    second
        .get("/rooms")
        .await
        .assert_problem(401, "token_revoked");
    let (ended, _) = socket.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(4001))), "{ended:?}");
    assert!(
        alice.try_ws("/ws").await.is_err(),
        "a revoked token opens no socket"
    );

    login(&app, "alice", &password_of("alice"), json!({}))
        .await
        .assert_problem(401, "invalid_credentials");
    let fresh = login(&app, "alice", "new password 1", json!({})).await;
    assert_eq!(fresh.status, StatusCode::OK);
    let fresh = session_of(&app, &alice, fresh);
    assert_eq!(fresh.get("/me").await.status, StatusCode::OK);
    let mut socket = fresh.ws("/ws").await;
    socket.send(nebula_wire::ClientEvent::Ping).await;
    assert!(matches!(
        socket.next_event().await,
        nebula_wire::ServerEvent::Pong
    ));
}

async fn logout_all_revokes_tokens_and_closes_sockets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut alice_socket = alice.ws("/ws").await;
    let mut bob_socket = bob.ws("/ws").await;
    let reply = alice.post("/auth/logout-all", json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    alice.get("/me").await.assert_problem(401, "token_revoked");
    let (ended, _) = alice_socket.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(4001))), "{ended:?}");
    // Only the caller's tokens.
    assert_eq!(bob.get("/me").await.status, StatusCode::OK);
    bob_socket.send(nebula_wire::ClientEvent::Ping).await;
    assert!(matches!(
        bob_socket.next_event().await,
        nebula_wire::ServerEvent::Pong
    ));
    // Without a token there is nothing to log out.
    let anonymous = app.post_json("/auth/logout-all", json!({})).await;
    anonymous.assert_problem(401, "unauthorized");
    // A new login works again.
    let again = login(&app, "alice", &password_of("alice"), json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
}

/// The code an authenticator app shows `offset` steps from now.
fn code(secret: &str, offset: i64) -> String {
    let totp = Builder::new()
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .with_account_name("x")
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp() + offset * 30;
    totp.generate(u64::try_from(now).unwrap()).to_string()
}

async fn two_factor_setup_login_and_single_use_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let password = password_of("alice");
    alice
        .post("/me/2fa/enable", json!({"code": "123456"}))
        .await
        .assert_problem(409, "totp_state");
    let setup: TotpSetup = alice.post("/me/2fa/setup", json!({})).await.json();
    assert!(
        setup
            .otpauth_url
            .starts_with("otpauth://totp/Nebula:alice?"),
        "{}",
        setup.otpauth_url
    );
    alice
        .post("/me/2fa/enable", json!({"code": "000000x"}))
        .await
        .assert_problem(422, "invalid_totp");
    alice
        .post("/me/2fa/enable", json!({}))
        .await
        .assert_problem(422, "invalid_body");
    let enabled = alice
        .post("/me/2fa/enable", json!({"code": code(&setup.secret, 0)}))
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text());
    let codes = enabled.json::<RecoveryCodes>().recovery_codes;
    assert_eq!(codes.len(), 10);
    assert!(alice.get("/me").await.json::<Account>().totp_enabled);
    alice
        .post("/me/2fa/setup", json!({}))
        .await
        .assert_problem(409, "totp_state");

    login(&app, "alice", &password, json!({}))
        .await
        .assert_problem(401, "totp_required");
    login(&app, "alice", &password, json!({"totp_code": "000000"}))
        .await
        .assert_problem(401, "invalid_totp");
    // The code that enabled 2FA was used already: accepted once.
    login(
        &app,
        "alice",
        &password,
        json!({"totp_code": code(&setup.secret, 0)}),
    )
    .await
    .assert_problem(401, "invalid_totp");
    // A wrong password with a right code is the ordinary failure, byte for byte.
    let wrong = login(
        &app,
        "alice",
        "wrong password",
        json!({"totp_code": code(&setup.secret, 1)}),
    )
    .await;
    let unknown = login(&app, "nobody", "wrong password", json!({})).await;
    assert_eq!(
        (wrong.status, wrong.text()),
        (unknown.status, unknown.text())
    );
    let next = code(&setup.secret, 1);
    let ok = login(&app, "alice", &password, json!({"totp_code": next})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    login(&app, "alice", &password, json!({"totp_code": next}))
        .await
        .assert_problem(401, "invalid_totp");
    let recovered = login(&app, "alice", &password, json!({"recovery_code": codes[0]})).await;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.text());
    login(&app, "alice", &password, json!({"recovery_code": codes[0]}))
        .await
        .assert_problem(401, "invalid_totp");

    alice
        .post(
            "/me/2fa/disable",
            json!({"password": "wrong password", "code": codes[1]}),
        )
        .await
        .assert_problem(403, "invalid_password");
    alice
        .post(
            "/me/2fa/disable",
            json!({"password": password, "code": "999999"}),
        )
        .await
        .assert_problem(422, "invalid_totp");
    let off = alice
        .post(
            "/me/2fa/disable",
            json!({"password": password, "code": codes[1]}),
        )
        .await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.text());
    assert!(!alice.get("/me").await.json::<Account>().totp_enabled);
    assert_eq!(
        login(&app, "alice", &password, json!({})).await.status,
        StatusCode::OK
    );
    alice
        .post(
            "/me/2fa/disable",
            json!({"password": password, "code": "123456"}),
        )
        .await
        .assert_problem(409, "totp_state");
}

fn session_of(app: &TestApp, like: &Session, reply: Reply) -> Session {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let auth: AuthResponse = reply.json();
    app.session(auth.token, like.user.clone())
}
