//! `nebula-client` (crates/client) against the real server: the example bot's loop answers
//! `!ping`, and a dropped connection resumes without loss, duplicates or disorder.

use std::time::Duration;

use nebula_client::{Client, Session, SessionEvent};
use nebula_wire::Message;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, http_client};
use crate::on_both_backends;

on_both_backends!(the_rust_client_resumes_and_answers_pings);

/// The next event matching `pick`, logging every event on the way.
async fn until(
    session: &Session,
    seen: &mut Vec<SessionEvent>,
    pick: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, session.next_event())
            .await
            .unwrap_or_else(|_| panic!("no such event in time; seen: {seen:#?}"))
            .expect("session ended");
        seen.push(event.clone());
        if pick(&event) {
            return event;
        }
    }
}

async fn the_rust_client_resumes_and_answers_pings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let _ = http_client(); // installs the TLS provider reqwest needs here
    let mut alice = Client::new(&app.base);
    alice
        .register("sdk_alice", "correct horse battery")
        .await
        .unwrap();
    let mut bob = Client::new(&app.base);
    bob.register("sdk_bob", "correct horse battery")
        .await
        .unwrap();
    let room = alice.create_room("sdk").await.unwrap();
    bob.join(room.id).await.unwrap();

    // Alice's session runs the example bot's loop.
    let bot = alice.session();
    bot.subscribe(room.id);
    let mut bot_seen = Vec::new();
    until(&bot, &mut bot_seen, |e| {
        matches!(
            e,
            SessionEvent::Server(nebula_wire::ServerEvent::Subscribed { .. })
        )
    })
    .await;
    let bot_task = tokio::spawn(async move {
        while let Some(event) = bot.next_event().await {
            if let SessionEvent::Message(message) = event
                && message.content == "!ping"
                && message.sender_username != "sdk_alice"
            {
                let id = Uuid::now_v7().to_string();
                bot.send_with(message.room_id, "pong", id, Some(message.id))
                    .await
                    .unwrap();
            }
        }
    });

    let session = bob.session();
    session.subscribe(room.id);
    let mut seen = Vec::new();
    until(&session, &mut seen, |e| {
        matches!(
            e,
            SessionEvent::Server(nebula_wire::ServerEvent::Subscribed { .. })
        )
    })
    .await;
    let ping = session.send(room.id, "!ping").await.unwrap();
    let pong = until(
        &session,
        &mut seen,
        |e| matches!(e, SessionEvent::Message(m) if m.content == "pong"),
    )
    .await;
    let SessionEvent::Message(pong) = pong else {
        unreachable!()
    };
    assert_eq!(pong.reply_to.map(|r| r.id), Some(ping.id));

    // A dropped connection: what happens meanwhile arrives after the resume, once, in order.
    session.pause();
    until(&session, &mut seen, |e| {
        matches!(e, SessionEvent::Disconnected)
    })
    .await;
    let first = alice.post_message(room.id, "while away 1").await.unwrap();
    alice.post_message(room.id, "while away 2").await.unwrap();
    alice
        .edit_message(room.id, pong.id, "pong (edited)")
        .await
        .unwrap();
    // Sent while offline: it goes out after the resume.
    let queued = {
        let session = session.clone();
        tokio::spawn(async move {
            session
                .send_with(room.id, "queued", "queued-1".into(), None)
                .await
        })
    };
    session.resume();
    let mine = queued.await.unwrap().unwrap();
    let again = session
        .send_with(room.id, "queued", "queued-1".into(), None)
        .await
        .unwrap();
    assert_eq!(again.id, mine.id, "the same client_msg_id is stored once");
    let last = alice.post_message(room.id, "after").await.unwrap();
    until(
        &session,
        &mut seen,
        |e| matches!(e, SessionEvent::Message(m) if m.id == last.id),
    )
    .await;
    assert!(first.seq < last.seq);
    let edited: Vec<&Message> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Updated(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(edited.len(), 1, "{edited:?}");
    assert_eq!(edited[0].id, pong.id);
    assert_eq!(
        edited[0].content, "pong (edited)",
        "the edit made while away"
    );
    let seqs: Vec<i64> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=last.seq).collect::<Vec<_>>(),
        "every message once, in order"
    );
    bot_task.abort();
}
