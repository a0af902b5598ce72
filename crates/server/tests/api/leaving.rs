//! Leaving: exporting one's data, deleting one's account, and password resets.

use nebula_wire::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::email::sink::SmtpSink;
use crate::email::{MAIL_WAIT, mail_to, reset_token, wait_no_mail_pending};
use crate::helpers::{Backend, TestApp, password_of};
use crate::on_both_backends;
use crate::ws_client::Ended;

on_both_backends!(
    the_export_holds_what_the_server_knows_about_the_caller,
    a_deleted_account_cannot_log_in_and_its_messages_are_deleted,
    password_resets_are_single_use_and_reveal_no_accounts,
);

async fn the_export_holds_what_the_server_knows_about_the_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    let room = alice.create_room("Mine", true).await;
    alice.say(room.id, "my words").await;
    alice.put(&format!("/blocks/{}", bob.user.id)).await;
    alice
        .post(
            &format!("/users/{}/report", bob.user.id),
            json!({"reason": "rude"}),
        )
        .await;
    let reply = alice.get("/me/export").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let export: Value = reply.json();
    assert_eq!(export["account"]["email"], "alice@example.com");
    assert_eq!(export["rooms"][0]["id"], json!(room.id));
    assert_eq!(export["messages"][0]["content"], "my words");
    assert_eq!(export["blocks"][0]["id"], json!(bob.user.id));
    assert_eq!(export["reports"][0]["reason"], "rude");
    assert!(export["contacts"].as_array().unwrap().is_empty());
    // Bob's export holds none of it.
    let theirs: Value = bob.get("/me/export").await.json();
    assert!(theirs["messages"].as_array().unwrap().is_empty());
    assert!(theirs["reports"].as_array().unwrap().is_empty());
    app.get("/me/export")
        .await
        .assert_problem(401, "unauthorized");
}

async fn a_deleted_account_cannot_log_in_and_its_messages_are_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = bob.create_room("Shared", false).await;
    alice.join(room.id).await;
    let said = alice.say(room.id, "goodbye").await;
    let mut watcher = bob.subscribed(room.id).await;
    let mut own = alice.ws("/ws").await;

    alice
        .delete_with("/me", json!({"password": "wrong password"}))
        .await
        .assert_problem(403, "invalid_password");
    alice
        .delete_with("/me", json!({}))
        .await
        .assert_problem(422, "invalid_body");
    let reply = alice
        .delete_with("/me", json!({"password": password_of("alice")}))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());

    let (ended, _) = own.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(4001))), "{ended:?}");
    alice
        .get("/me")
        .await
        .assert_problem(401, "account_deactivated");
    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "alice", "password": password_of("alice")}),
        )
        .await;
    let unknown = app
        .post_json(
            "/auth/login",
            json!({"username": "nobody", "password": password_of("alice")}),
        )
        .await;
    assert_eq!(
        (login.status, login.text()),
        (unknown.status, unknown.text())
    );

    let updated = watcher.next_updated().await;
    assert_eq!(updated.id, said.id);
    assert!(updated.deleted_at.is_some() && updated.content.is_empty());
    let message: Message = bob.message(room.id, said.id).await;
    assert!(
        message.sender_username.starts_with("deleted-"),
        "{}",
        message.sender_username
    );
    let user: Value = bob.get(&format!("/users/{}", alice.user.id)).await.json();
    assert!(user["username"].as_str().unwrap().starts_with("deleted-"));
    let found: Value = bob.get("/users?q=alice").await.json();
    assert!(found["users"].as_array().unwrap().is_empty());
    // The name is free again.
    assert_eq!(
        app.post_json(
            "/auth/register",
            json!({"username": "alice", "password": "another one"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
}

async fn password_resets_are_single_use_and_reveal_no_accounts(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| mail_to(config, &sink)).await;
    let alice = app.register("alice").await;
    alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    app.register("bob").await; // no e-mail address

    let mut answers = Vec::new();
    for body in [
        json!({"username": "alice"}),
        json!({"email": "ALICE@example.com"}),
        json!({"username": "bob"}),
        json!({"username": "nobody"}),
        json!({"email": "nobody@example.com"}),
        json!({"username": "not a name!"}),
    ] {
        let reply = app.post_json("/auth/password-reset", body.clone()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{body}");
        answers.push(reply.text());
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    let empty = app.post_json("/auth/password-reset", json!({})).await;
    assert_eq!(
        empty.status,
        StatusCode::ACCEPTED,
        "nothing asked, nothing sent"
    );
    app.post_json("/auth/password-reset", json!({"username": 5}))
        .await
        .assert_problem(422, "invalid_body");

    let mails = sink.wait_for(2, MAIL_WAIT).await;
    let mut tokens = Vec::new();
    for mail in &mails {
        assert_eq!(mail.rcpt_tos, ["alice@example.com"]);
        assert!(mail.text.as_deref().unwrap().contains("Hello alice"));
        tokens.push(reset_token(mail));
    }
    // Nobody else is sent anything: the outbox is empty once both mails are out.
    wait_no_mail_pending(&app).await;
    assert_eq!(sink.received().len(), 2);

    let mut socket = alice.ws("/ws").await;
    let confirm = |token: &str, password: &str| {
        app.post_json(
            "/auth/password-reset/confirm",
            json!({"token": token, "new_password": password}),
        )
    };
    confirm("bogus", "new password 1")
        .await
        .assert_problem(422, "invalid_reset_token");
    confirm(&tokens[1], "short")
        .await
        .assert_problem(422, "validation_failed");
    let done = confirm(&tokens[1], "new password 1").await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text());
    confirm(&tokens[1], "new password 2")
        .await
        .assert_problem(422, "invalid_reset_token");
    confirm(&tokens[0], "new password 2")
        .await
        .assert_problem(422, "invalid_reset_token");
    alice.get("/me").await.assert_problem(401, "token_revoked");
    let (ended, _) = socket.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(4001))), "{ended:?}");
    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "alice", "password": "new password 1"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    // Expired tokens are refused too.
    app.post_json("/auth/password-reset", json!({"username": "alice"}))
        .await;
    let token = reset_token(&sink.wait_for(3, MAIL_WAIT).await[2]);
    app.execute_sql("UPDATE password_resets SET expires_at = created_at")
        .await;
    confirm(&token, "new password 3")
        .await
        .assert_problem(422, "invalid_reset_token");
}
