//! The e-mail digest (issue 17): a user with a verified address, notification mail on and no
//! open connection gets at most one digest per interval listing the direct messages and
//! mentions they have not read — not what they read or what was deleted meanwhile — through
//! the outbox to a real SMTP server. The interval is `EMAIL_DIGEST_SECONDS` here so the test
//! runs in seconds.

use std::time::{Duration, Instant};

use nebula_wire::{ClientEvent, Room, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use super::sink::SmtpSink;
use super::{MAIL_WAIT, mail_to, wait_no_mail_pending};
use crate::helpers::{Backend, Session, TestApp};
use crate::on_both_backends;

on_both_backends!(an_offline_user_gets_one_digest_per_interval_of_what_is_still_unread);

/// Several nodes share PostgreSQL only (SQLite is one node, whose single writer serializes the
/// claim; a second process writing the file would only meet SQLite's own locking).
mod two_nodes_composing_at_once_queue_one_digest {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if let Some(backend) = crate::helpers::Backend::postgres() {
            super::two_nodes_composing_at_once_queue_one_digest(backend).await
        }
    }
}

const INTERVAL: Duration = Duration::from_secs(8);

/// Gives `user` a verified address (the verification flow itself is tested in `email`).
async fn verified(app: &TestApp, user: &Session, email: &str) {
    let reply = user.patch("/me", json!({"email": email})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    app.execute_sql(&format!(
        "UPDATE users SET email_verified = TRUE WHERE username = '{}'",
        user.user.username
    ))
    .await;
}

/// Waits until the scheduler has decided about everyone marked pending.
async fn wait_no_digest_pending(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + MAIL_WAIT;
    while app.query_i64("SELECT COUNT(*) FROM digest_pending").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "digests stay pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn an_offline_user_gets_one_digest_per_interval_of_what_is_still_unread(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| {
        mail_to(config, &sink);
        config.public_url = Some("https://chat.nebula.test".into());
        config.email_digest_seconds = Some(INTERVAL.as_secs());
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    for (user, email) in [
        (&bob, "bob@example.com"),
        (&carol, "carol@example.com"),
        (&dave, "dave@example.com"),
    ] {
        verified(&app, user, email).await;
    }
    let room = alice.create_room("Lobby", false).await;
    for member in [&bob, &carol, &dave] {
        assert_eq!(member.join(room.id).await.status, StatusCode::CREATED);
    }
    let dm: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    // Carol stays connected; dave turned notification mail off.
    let mut carols_socket = carol.ws("/ws").await;
    carols_socket.send(ClientEvent::Ping).await;
    carols_socket
        .expect(|event| matches!(event, ServerEvent::Pong))
        .await;
    let settings =
        crate::notification_settings::put_json(&dave, "/me/notifications", json!({"email": false}))
            .await;
    assert_eq!(settings.status, StatusCode::OK);

    let started = Instant::now();
    alice
        .say(room.id, "@bob @carol @dave the build is red")
        .await;
    let read = alice.say(dm.id, "first, which bob reads").await;
    alice.say(dm.id, "second, unread").await;
    let deleted = alice.say(dm.id, "third, deleted").await;
    assert_eq!(
        alice.delete_message(dm.id, deleted.id).await.status,
        StatusCode::NO_CONTENT
    );
    // Bob reads the first direct message on his phone, then closes the app.
    {
        let mut phone = bob.subscribed(dm.id).await;
        phone
            .send(ClientEvent::Read {
                room_id: dm.id,
                seq: read.seq,
            })
            .await;
        let deadline = tokio::time::Instant::now() + MAIL_WAIT;
        loop {
            let seen: Room = bob.get(&format!("/rooms/{}", dm.id)).await.json();
            if seen.last_read_seq == Some(read.seq) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the read is stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        started.elapsed() < INTERVAL,
        "the setup took longer than the interval; the test cannot tell anything"
    );

    let mails = sink.wait_for(1, MAIL_WAIT).await;
    let first_at = Instant::now();
    let digest = &mails[0];
    assert_eq!(digest.rcpt_tos, ["bob@example.com"]);
    assert_eq!(
        digest.header("subject"),
        Some("2 unread messages on Nebula")
    );
    assert!(
        digest.header("list-unsubscribe").is_some(),
        "notification mail can be unsubscribed from"
    );
    let text = digest.text.as_deref().unwrap();
    assert!(
        text.contains("mention in #Lobby, from alice: @bob @carol @dave the build is red"),
        "{text}"
    );
    assert!(
        text.contains("direct message, from alice: second, unread"),
        "{text}"
    );
    assert!(!text.contains("which bob reads"), "read: {text}");
    assert!(!text.contains("deleted"), "deleted: {text}");
    assert!(
        text.contains(&format!("https://chat.nebula.test/?room={}&seq=", room.id)),
        "{text}"
    );
    assert!(digest.html.as_deref().unwrap().contains("the build is red"));
    assert!(
        started.elapsed() >= INTERVAL,
        "not before the first item is one interval old"
    );

    // Carol (connected) and dave (mail off) get none.
    wait_no_digest_pending(&app).await;
    wait_no_mail_pending(&app).await;
    assert_eq!(sink.received().len(), 1, "only bob's digest");

    // A second digest waits for the interval after the first, and lists only what is new.
    alice.say(room.id, "@bob still red").await;
    let mails = sink.wait_for(2, MAIL_WAIT).await;
    let waited = first_at.elapsed();
    assert!(
        waited >= INTERVAL - Duration::from_secs(1),
        "a second digest after {waited:?}"
    );
    assert_eq!(mails[1].rcpt_tos, ["bob@example.com"]);
    let text = mails[1].text.as_deref().unwrap();
    assert!(text.contains("still red"), "{text}");
    assert!(
        !text.contains("the build is red"),
        "already in a digest: {text}"
    );
    wait_no_mail_pending(&app).await;
    drop(carols_socket);
}

/// Two nodes composing the same user's digest at once (every node runs the scheduler): the
/// claim lets exactly one queue it. Driven through two store handles, as two nodes would.
async fn two_nodes_composing_at_once_queue_one_digest(backend: Backend) {
    // No mail configured: this server's own scheduler stays off, the test is the scheduler.
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    verified(&app, &bob, "bob@example.com").await;
    let dm: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    alice.say(dm.id, "are you there?").await;
    let mails = nebula::mail::Mails::new("https://chat.nebula.test", "secret");
    let render =
        |context: &nebula::store::digest::DigestContext| nebula::digest::render(&mails, context);
    let one = nebula::store::Store::connect(&app.database_url, 2)
        .await
        .unwrap();
    let two = nebula::store::Store::connect(&app.database_url, 2)
        .await
        .unwrap();
    let now = chrono::Duration::zero();
    let (first, second) = tokio::join!(
        one.send_digest(bob.user.id, now, render),
        two.send_digest(bob.user.id, now, render)
    );
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    use nebula::store::digest::DigestOutcome;
    assert_eq!(outcomes, [DigestOutcome::NotClaimed, DigestOutcome::Sent]);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM email_digests").await, 1);
    assert_eq!(
        one.send_digest(bob.user.id, now, render).await.unwrap(),
        DigestOutcome::NotClaimed,
        "nothing new is pending"
    );
}
