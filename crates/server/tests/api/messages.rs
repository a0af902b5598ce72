//! Posting and reading history.

use std::collections::BTreeSet;

use nebula_wire::{Message, MessagePage, MessageWindow};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    messages_get_consecutive_seqs_and_come_back_in_history,
    history_pages_count_from_the_newest,
    keyset_windows_walk_history_both_ways,
    history_queries_are_validated,
    keyset_cursors_combine_into_a_range,
    a_repeated_client_msg_id_returns_the_original,
    content_limits_count_characters,
    members_only_may_read_and_post,
    concurrent_posters_get_exactly_seq_1_to_1000,
    posting_is_rate_limited_per_user,
    stored_messages_survive_a_restart,
);

async fn messages_get_consecutive_seqs_and_come_back_in_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let first = alice.say(room.id, "hello").await;
    let second = alice.say(room.id, "  spaces kept exactly  \n").await;
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.sender_id, alice.user.id);
    assert_eq!(first.sender_username, "alice");
    assert_eq!(first.room_id, room.id);
    assert_eq!(first.client_msg_id, None);
    assert_eq!(second.content, "  spaces kept exactly  \n");

    let page: MessagePage = alice.history(room.id, "").await.json();
    assert_eq!(page.messages, [first, second]);
    assert_eq!((page.page, page.page_size, page.total), (1, 50, 2));
    // Seq restarts in every room.
    let other = alice.create_room("Other", false).await;
    assert_eq!(alice.say(other.id, "first here").await.seq, 1);
}

async fn history_pages_count_from_the_newest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    for n in 1..=7 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    let seqs = |page: MessagePage| page.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let newest: MessagePage = alice.history(room.id, "?page=1&page_size=3").await.json();
    assert_eq!(newest.total, 7);
    assert_eq!(seqs(newest), [5, 6, 7]);
    assert_eq!(
        seqs(alice.history(room.id, "?page=2&page_size=3").await.json()),
        [2, 3, 4]
    );
    assert_eq!(
        seqs(alice.history(room.id, "?page=3&page_size=3").await.json()),
        [1]
    );
    assert!(seqs(alice.history(room.id, "?page=4&page_size=3").await.json()).is_empty());
    assert!(
        seqs(
            alice
                .history(room.id, "?page=9223372036854775807")
                .await
                .json()
        )
        .is_empty()
    );
    // Beyond int64, as the OpenAPI document says.
    alice
        .history(room.id, "?page=18446744073709551615")
        .await
        .assert_problem(400, "invalid_query");
}

async fn keyset_windows_walk_history_both_ways(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    for n in 1..=10 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    let window = |query: &'static str| {
        let alice = alice.clone();
        async move {
            let w: MessageWindow = alice.history(room.id, query).await.json();
            (
                w.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
                w.has_more,
            )
        }
    };
    assert_eq!(window("?before_seq=8&limit=3").await, (vec![5, 6, 7], true));
    assert_eq!(
        window("?before_seq=4&limit=3").await,
        (vec![1, 2, 3], false)
    );
    assert_eq!(window("?after_seq=6&limit=3").await, (vec![7, 8, 9], true));
    assert_eq!(
        window("?after_seq=7&limit=3").await,
        (vec![8, 9, 10], false)
    );
    assert_eq!(window("?after_seq=10").await, (vec![], false));
    assert_eq!(
        window("?limit=2").await,
        (vec![9, 10], true),
        "a bare limit is the newest window"
    );
    assert_eq!(window("?after_seq=0&limit=100").await.0.len(), 10);
}

async fn history_queries_are_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    for query in [
        "?limit=0",
        "?limit=101",
        "?page_size=101",
        "?page=0",
        "?before_seq=abc",
        "?before_seq=99999999999999999999999",
        // Page parameters are not used beside a keyset cursor, but still checked.
        "?limit=28&after_seq=3&page_size=30911444418278",
        "?before_seq=5&page=0",
    ] {
        alice
            .history(room.id, query)
            .await
            .assert_problem(400, "invalid_query");
    }
}

/// Both cursors make a range; any keyset parameter makes (valid) page parameters irrelevant.
async fn keyset_cursors_combine_into_a_range(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    for n in 1..=10 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    let window = |query: &'static str| {
        let alice = alice.clone();
        async move {
            let window: MessageWindow = alice.history(room.id, query).await.json();
            (
                window.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
                window.has_more,
            )
        }
    };
    assert_eq!(
        window("?after_seq=1&before_seq=5").await,
        (vec![2, 3, 4], false)
    );
    assert_eq!(
        window("?after_seq=1&before_seq=9&limit=3").await,
        (vec![2, 3, 4], true)
    );
    assert_eq!(window("?after_seq=5&before_seq=3").await, (vec![], false));
    assert_eq!(
        window("?page=1&page_size=2&before_seq=3").await,
        (vec![1, 2], false)
    );
}

async fn a_repeated_client_msg_id_returns_the_original(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;

    let first = alice
        .post_message(room.id, json!({"content": "once", "client_msg_id": "c-1"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = alice
        .post_message(
            room.id,
            json!({"content": "once (retried)", "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.json::<Message>(), first.json::<Message>());
    let bobs = bob
        .post_message(room.id, json!({"content": "mine", "client_msg_id": "c-1"}))
        .await;
    assert_eq!(bobs.status, StatusCode::CREATED, "ids are per sender");
    assert_eq!(bobs.json::<Message>().seq, 2);
    let page: MessagePage = alice.history(room.id, "").await.json();
    assert_eq!(page.total, 2);
    alice
        .post_message(room.id, json!({"content": "x", "client_msg_id": ""}))
        .await
        .assert_problem(422, "validation_failed");
}

async fn content_limits_count_characters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let longest = "é".repeat(4000);
    assert_eq!(alice.say(room.id, &longest).await.content, longest);
    assert_eq!(alice.say(room.id, "👍🏽").await.content, "👍🏽");
    for content in ["", "   ", "\n\t", &"a".repeat(4001) as &str, "nul\u{0}byte"] {
        alice
            .post_message(room.id, json!({"content": content}))
            .await
            .assert_problem(422, "validation_failed");
    }
    alice
        .post_message(room.id, json!({"content": 42}))
        .await
        .assert_problem(422, "invalid_body");
    alice
        .post_message(room.id, json!({}))
        .await
        .assert_problem(422, "invalid_body");
}

async fn members_only_may_read_and_post(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.history(room.id, "")
        .await
        .assert_problem(403, "not_a_member");
    bob.post_message(room.id, json!({"content": "hi"}))
        .await
        .assert_problem(403, "not_a_member");
    bob.join(room.id).await;
    assert_eq!(bob.say(room.id, "hi").await.seq, 1);
    bob.leave(room.id).await;
    bob.post_message(room.id, json!({"content": "again"}))
        .await
        .assert_problem(403, "not_a_member");
}

/// 20 concurrent posters × 50 messages into one room: seq is exactly 1..=1000, no gap, no
/// duplicate, and history agrees.
async fn concurrent_posters_get_exactly_seq_1_to_1000(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.register("owner").await;
    let room = owner.create_room("Busy", false).await;
    let mut posters = tokio::task::JoinSet::new();
    for n in 0..20 {
        let user = app.register(&format!("poster{n}")).await;
        user.join(room.id).await;
        posters.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(user.say(room.id, &format!("{n}/{i}")).await.seq);
            }
            seqs
        });
    }
    let mut all = Vec::new();
    while let Some(seqs) = posters.join_next().await {
        let seqs = seqs.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one poster's messages are ordered"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1000).collect::<Vec<i64>>());

    let mut stored = BTreeSet::new();
    let mut after = 0;
    loop {
        let window: MessageWindow = owner
            .history(room.id, &format!("?after_seq={after}&limit=100"))
            .await
            .json();
        for message in &window.messages {
            assert!(stored.insert(message.seq));
        }
        after = window.messages.last().map_or(after, |m| m.seq);
        if !window.has_more {
            break;
        }
    }
    assert_eq!(
        stored.into_iter().collect::<Vec<_>>(),
        (1..=1000).collect::<Vec<i64>>()
    );
}

async fn posting_is_rate_limited_per_user(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |config| config.rate_limit_messages_per_second = 2).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    // A burst of three times the rate passes, then the limit holds. (A token may come back
    // while the burst is being sent, hence "6 or 7".)
    let mut accepted = 0;
    let limited = loop {
        let reply = alice
            .post_message(room.id, json!({"content": "burst"}))
            .await;
        if reply.status != StatusCode::CREATED {
            break reply;
        }
        accepted += 1;
        assert!(accepted <= 7, "the limit never held");
    };
    assert!((6..=7).contains(&accepted), "accepted {accepted}");
    limited.assert_problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    bob.say(room.id, "bob is not limited by alice").await;
}

async fn stored_messages_survive_a_restart(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let before: Vec<Message> = [
        alice.say(room.id, "one").await,
        alice.say(room.id, "two").await,
    ]
    .into();
    app.restart().await;
    let alice = app.session(alice.token.clone(), alice.user.clone());
    let page: MessagePage = alice.history(room.id, "").await.json();
    assert_eq!(page.messages, before);
    assert_eq!(
        alice.say(room.id, "three").await.seq,
        3,
        "seq continues after a restart"
    );
}
