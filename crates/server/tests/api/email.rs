//! E-mail through the outbox to a real SMTP server (aiosmtpd, see `sink`): password resets,
//! address verification, one-click unsubscribe, retries while the relay is down, no second
//! mail for a redelivered event; in-process and through RabbitMQ → the notifier's consumer.

mod digest;
pub mod sink;

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use nebula::config::Config;
use nebula_notifier::{
    ConsumerConfig, Dispatcher, EndpointPolicy, Mailer, PushSender, PushStore, VapidKeys,
};
use nebula_wire::Account;
use nebula_wire::notify::{MailContent, MailNotification, Notification};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{Backend, JWT_SECRET, TestApp, services_required};
use crate::on_both_backends;
use sink::{Received, SmtpSink};

pub const MAIL_WAIT: Duration = Duration::from_secs(30);
const FROM: &str = "Nebula <nebula@nebula.test>";

on_both_backends!(
    a_reset_mail_is_multipart_and_its_token_resets_the_password,
    the_mailed_code_verifies_the_address,
    one_click_unsubscribe_turns_notification_mail_off,
    a_mail_waits_for_the_smtp_server_and_a_redelivered_one_is_not_sent_again,
    through_rabbitmq_the_notifier_mails_once_per_event,
);

/// In-process mail to `sink` (no broker).
pub fn mail_to(config: &mut Config, sink: &SmtpSink) {
    config.rabbit_url = None;
    config.smtp_url = Some(sink.url());
    config.from_email = Some(FROM.to_owned());
}

/// The token in a reset mail's text part (`Reset token: …`).
pub fn reset_token(mail: &Received) -> String {
    field_after(mail.text.as_deref().expect("a text part"), "Reset token: ")
}

fn field_after(text: &str, label: &str) -> String {
    let start = text.find(label).expect(label) + label.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Waits until the outbox is empty: every mail is out (or dead, which the caller checks).
pub async fn wait_no_mail_pending(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + MAIL_WAIT;
    while app.query_i64("SELECT COUNT(*) FROM outbox").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox stays full"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_well_formed(mail: &Received, to: &str) {
    assert_eq!(mail.rcpt_tos, [to]);
    assert_eq!(mail.mail_from, "nebula@nebula.test");
    assert_eq!(mail.header("from"), Some(FROM));
    assert_eq!(mail.header("to"), Some(to));
    assert_eq!(mail.content_type, "multipart/alternative");
    let id = mail.header("message-id").expect("a Message-ID");
    let inner = id
        .strip_prefix('<')
        .and_then(|id| id.strip_suffix("@nebula.test>"))
        .unwrap_or_else(|| panic!("Message-ID {id}"));
    Uuid::parse_str(inner).expect("the Message-ID holds the event id");
    let date = mail.header("date").expect("a Date");
    chrono::DateTime::parse_from_rfc2822(date).expect("an RFC 5322 date");
    assert!(mail.text.is_some() && mail.html.is_some(), "{mail:?}");
}

async fn a_reset_mail_is_multipart_and_its_token_resets_the_password(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| mail_to(config, &sink)).await;
    let alice = app.register("alice").await;
    alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    let asked = app
        .post_json("/auth/password-reset", json!({"username": "alice"}))
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);

    let mails = sink.wait_for(1, MAIL_WAIT).await;
    let mail = &mails[0];
    assert_well_formed(mail, "alice@example.com");
    assert_eq!(mail.header("subject"), Some("Reset your Nebula password"));
    // Mail the account asked for carries no unsubscribe headers.
    assert_eq!(mail.header("list-unsubscribe"), None);
    let token = reset_token(mail);
    assert_eq!(token.len(), 64);
    let html = mail.html.as_deref().unwrap();
    assert!(html.contains(&format!("?reset_token={token}\"")), "{html}");

    let done = app
        .post_json(
            "/auth/password-reset/confirm",
            json!({"token": token, "new_password": "mailed password"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text());
    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "alice", "password": "mailed password"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    wait_no_mail_pending(&app).await;
    assert_eq!(sink.received().len(), 1);
}

async fn the_mailed_code_verifies_the_address(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| mail_to(config, &sink)).await;
    let alice = app.register("alice").await;
    let me: Account = alice.get("/me").await.json();
    assert!(!me.email_verified && me.email_notifications);
    alice
        .post("/me/email/verify", json!({}))
        .await
        .assert_problem(409, "no_email");
    alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    // Online: a push would be skipped for her, a mail is not.
    let mut ws = alice.ws("/ws").await;
    ws.send(nebula_wire::ClientEvent::Ping).await;
    ws.expect(|event| matches!(event, nebula_wire::ServerEvent::Pong))
        .await;
    let sent = alice.post("/me/email/verify", json!({})).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text());

    let mail = sink.wait_for(1, MAIL_WAIT).await.remove(0);
    assert_well_formed(&mail, "alice@example.com");
    let code = field_after(mail.text.as_deref().unwrap(), "verification code is: ");
    assert_eq!(code.len(), 6);
    assert!(mail.html.as_deref().unwrap().contains(&code));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    alice
        .post("/me/email/confirm", json!({"code": wrong}))
        .await
        .assert_problem(422, "invalid_verification_code");
    let confirmed = alice.post("/me/email/confirm", json!({"code": code})).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text());
    assert!(confirmed.json::<Account>().email_verified);
    // Used up.
    alice
        .post("/me/email/confirm", json!({"code": code}))
        .await
        .assert_problem(422, "invalid_verification_code");
    // The same address stays verified; another one is not.
    let same: Account = alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await
        .json();
    assert!(same.email_verified);
    let other: Account = alice
        .patch("/me", json!({"email": "alice@example.org"}))
        .await
        .json();
    assert!(!other.email_verified);

    // A code sent to an address the account no longer has does not verify the new one.
    alice.post("/me/email/verify", json!({})).await;
    let code = field_after(
        sink.wait_for(2, MAIL_WAIT).await[1]
            .text
            .as_deref()
            .unwrap(),
        "verification code is: ",
    );
    alice
        .patch("/me", json!({"email": "mallory@example.com"}))
        .await;
    alice
        .post("/me/email/confirm", json!({"code": code}))
        .await
        .assert_problem(422, "invalid_verification_code");
    let me: Account = alice.get("/me").await.json();
    assert!(!me.email_verified);
}

async fn one_click_unsubscribe_turns_notification_mail_off(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| {
        mail_to(config, &sink);
        config.public_url = Some("https://chat.nebula.test".into());
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    // The link a notification mail carries, made as the server makes it (same secret).
    let mails = nebula::mail::Mails::new("https://chat.nebula.test", JWT_SECRET);
    let link = mails.unsubscribe_url(alice.user.id);

    // The mailer puts it in List-Unsubscribe with the one-click marker (RFC 8058).
    let mailer = Mailer::from_settings(Some(&sink.url()), None, Some(FROM))
        .unwrap()
        .unwrap();
    let notification = MailNotification {
        version: MailNotification::VERSION,
        event_id: Uuid::now_v7(),
        user_id: alice.user.id,
        mail: MailContent {
            to: "alice@example.com".into(),
            subject: "Unread messages".into(),
            text: format!("unsubscribe: {link}"),
            html: format!("<a href=\"{link}\">unsubscribe</a>"),
            unsubscribe_url: Some(link.clone()),
        },
        occurred_at: chrono::Utc::now(),
    };
    assert_eq!(
        mailer.send(&notification).await,
        nebula_notifier::MailOutcome::Sent
    );
    let mail = sink.wait_for(1, MAIL_WAIT).await.remove(0);
    assert_well_formed(&mail, "alice@example.com");
    assert_eq!(
        mail.header("list-unsubscribe"),
        Some(format!("<{link}>").as_str())
    );
    assert_eq!(
        mail.header("list-unsubscribe-post"),
        Some("List-Unsubscribe=One-Click")
    );

    // What a mail client does with it: POST List-Unsubscribe=One-Click to the URL, here on
    // the test server's own address.
    let path = link
        .strip_prefix("https://chat.nebula.test")
        .unwrap()
        .to_owned();
    let one_click = |path: String| {
        app.http
            .post(app.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
    };
    // Opening the link changes nothing (scanners follow links); it shows a button.
    let page = app.http.get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let me: Account = alice.get("/me").await.json();
    assert!(me.email_notifications);
    // Bob's id with Alice's token is refused.
    let forged = path.replace(&alice.user.id.to_string(), &bob.user.id.to_string());
    assert_eq!(
        one_click(forged).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        one_click(path.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let me: Account = alice.get("/me").await.json();
    assert!(!me.email_notifications);
    let bobs: Account = bob.get("/me").await.json();
    assert!(bobs.email_notifications);
    // Again: harmless.
    assert_eq!(one_click(path).await.unwrap().status(), StatusCode::OK);
}

async fn a_mail_waits_for_the_smtp_server_and_a_redelivered_one_is_not_sent_again(
    backend: Backend,
) {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| mail_to(config, &sink)).await;
    let alice = app.register("alice").await;
    alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    sink.stop().await;
    app.post_json("/auth/password-reset", json!({"username": "alice"}))
        .await;
    // The relay tries, fails and schedules a retry.
    let deadline = tokio::time::Instant::now() + MAIL_WAIT;
    while app
        .query_i64("SELECT COUNT(*) FROM outbox WHERE attempts >= 1 AND dead_at IS NULL")
        .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no retry recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Keep a copy of the row, to hand it to the relay again later.
    app.execute_sql("CREATE TABLE saved_outbox AS SELECT * FROM outbox")
        .await;
    sink.resume().await;
    let first = sink.wait_for(1, MAIL_WAIT).await.remove(0);
    wait_no_mail_pending(&app).await;

    // The same event again (as after a crash between sending and deleting the row), then a
    // second reset: the relay takes one user's mails in order, so once the second reset's
    // mail is here the copy has been handled.
    app.execute_sql(
        "INSERT INTO outbox (event_id, room_id, payload, attempts, next_attempt_at, created_at)
         SELECT event_id, room_id, payload, 0, created_at, created_at FROM saved_outbox",
    )
    .await;
    app.post_json("/auth/password-reset", json!({"username": "alice"}))
        .await;
    let mails = sink.wait_for(2, MAIL_WAIT).await;
    wait_no_mail_pending(&app).await;
    assert_eq!(sink.received().len(), 2, "the copy was not sent again");
    assert_ne!(
        mails[1].header("message-id"),
        first.header("message-id"),
        "the second mail is the second reset"
    );
    assert_ne!(reset_token(&mails[1]), reset_token(&first));
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox").await,
        0,
        "nothing dead-lettered"
    );
}

async fn through_rabbitmq_the_notifier_mails_once_per_event(backend: Backend) {
    let url = match std::env::var("NEBULA_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if services_required() => panic!("NEBULA_TEST_AMQP_URL is unset"),
        _ => {
            eprintln!("skipped: NEBULA_TEST_AMQP_URL is unset (RabbitMQ tests need it)");
            return;
        }
    };
    let queue = format!("room_member.notifications.test-{}", Uuid::new_v4().simple());
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, |config| {
        config.rabbit_url = Some(url.clone());
        config.rabbit_queue = queue.clone();
        // The server must not send mail itself in broker mode, even with SMTP configured.
        config.smtp_url = Some(sink.url());
        config.from_email = Some(FROM.to_owned());
    })
    .await;
    let store = PushStore::connect(&app.database_url, 4).await.unwrap();
    let keys = VapidKeys::ephemeral("mailto:tests@nebula.invalid").unwrap();
    let sender = PushSender::new(keys, Duration::from_secs(60), EndpointPolicy::new(true)).unwrap();
    let mailer = Mailer::from_settings(Some(&sink.url()), None, Some(FROM)).unwrap();
    let mut config = ConsumerConfig::new(url.as_str(), queue.as_str());
    config.prefetch = 1;
    config.max_attempts = 3;
    config.retry_base = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(400);
    let consumer = nebula_notifier::Consumer::new(
        config.clone(),
        Dispatcher::new(store.clone(), sender).with_mailer(mailer),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(shutdown.clone()));

    let alice = app.register("alice").await;
    alice
        .patch("/me", json!({"email": "alice@example.com"}))
        .await;
    app.post_json("/auth/password-reset", json!({"username": "alice"}))
        .await;
    let first = sink.wait_for(1, MAIL_WAIT).await.remove(0);
    assert_well_formed(&first, "alice@example.com");
    wait_no_mail_pending(&app).await;

    // Two more copies of a mail event on the queue (a publisher that sent it twice, a
    // redelivery), then a reset behind them: one mail for the copies, one for the reset.
    let event = MailNotification {
        version: MailNotification::VERSION,
        event_id: Uuid::now_v7(),
        user_id: alice.user.id,
        mail: MailContent {
            to: "alice@example.com".into(),
            subject: "Twice published".into(),
            text: "once".into(),
            html: "<p>once</p>".into(),
            unsubscribe_url: None,
        },
        occurred_at: chrono::Utc::now(),
    };
    let payload = Notification::Mail(event).to_json().unwrap().into_bytes();
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    for _ in 0..2 {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    app.post_json("/auth/password-reset", json!({"username": "alice"}))
        .await;
    let mails = sink.wait_for(3, MAIL_WAIT).await;
    wait_no_mail_pending(&app).await;
    let subjects: Vec<_> = mails.iter().map(|mail| mail.header("subject")).collect();
    assert_eq!(
        subjects,
        [
            Some("Reset your Nebula password"),
            Some("Twice published"),
            Some("Reset your Nebula password")
        ]
    );
    // A straggler would have arrived before the last reset (prefetch 1, one queue, in order).
    assert_eq!(sink.received().len(), 3);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let _ = channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = connection.close(200, "OK".into()).await;
    store.close().await;
}
