//! Reactions: idempotent, counted most used first, limited, listed with who reacted; and what
//! history pages carry.

use nebula_wire::{Message, MessagePage, MessageWindow, ReactionList};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    reacting_twice_is_one_reaction_and_counts_are_most_used_first,
    reactions_are_listed_with_who_reacted,
    emoji_are_validated_and_limited_to_20_per_message,
    reactions_need_membership_and_a_message,
    history_pages_carry_reactions_and_edits,
);

fn counts(message: &Message) -> Vec<(String, i64)> {
    message
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.count))
        .collect()
}

async fn reacting_twice_is_one_reaction_and_counts_are_most_used_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    carol.join(room.id).await;
    let message = alice.say(room.id, "react to me").await;

    for (who, emoji) in [
        (&alice, "🎉"),
        (&bob, "👍"),
        (&bob, "👍"),
        (&carol, "👍"),
        (&carol, "❤️"),
    ] {
        let reply = who.react(room.id, message.id, emoji).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    }
    let now = alice.message(room.id, message.id).await;
    // Most used first; ties in the order the emoji were first reacted with.
    assert_eq!(
        counts(&now),
        [("👍".into(), 2), ("🎉".into(), 1), ("❤️".into(), 1)]
    );
    // Bob's repeat took no rev: four changes after the message.
    assert_eq!(now.rev, message.rev + 4);

    assert_eq!(bob.unreact(room.id, message.id, "👍").await.status, 204);
    assert_eq!(bob.unreact(room.id, message.id, "👍").await.status, 204);
    assert_eq!(alice.unreact(room.id, message.id, "👍").await.status, 204);
    let now = alice.message(room.id, message.id).await;
    assert_eq!(
        counts(&now),
        [("🎉".into(), 1), ("👍".into(), 1), ("❤️".into(), 1)]
    );
    assert_eq!(
        now.rev,
        message.rev + 5,
        "only bob's first removal changed it"
    );
    // Gone to zero, then back: it is a new emoji on the message, reacted with last.
    alice.unreact(room.id, message.id, "🎉").await;
    alice.react(room.id, message.id, "🎉").await;
    let now = alice.message(room.id, message.id).await;
    assert_eq!(
        counts(&now),
        [("👍".into(), 1), ("❤️".into(), 1), ("🎉".into(), 1)]
    );
}

async fn reactions_are_listed_with_who_reacted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let message = alice.say(room.id, "react to me").await;
    bob.react(room.id, message.id, "❤️").await;
    alice.react(room.id, message.id, "👍").await;
    bob.react(room.id, message.id, "👍").await;

    let list: ReactionList = bob
        .get(&format!(
            "/rooms/{}/messages/{}/reactions",
            room.id, message.id
        ))
        .await
        .json();
    let summary: Vec<(String, i64, Vec<String>)> = list
        .reactions
        .into_iter()
        .map(|r| {
            let users = r.users.into_iter().map(|u| u.username).collect();
            (r.emoji, r.count, users)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("👍".into(), 2, vec!["alice".into(), "bob".into()]),
            ("❤️".into(), 1, vec!["bob".into()]),
        ]
    );
}

async fn emoji_are_validated_and_limited_to_20_per_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let message = alice.say(room.id, "react to me").await;
    let base = format!("/rooms/{}/messages/{}/reactions", room.id, message.id);

    // Percent-encoded in the path: spaces, control characters and 17 characters are refused.
    for bad in [
        "%20",
        "a%20b",
        "%07",
        "%C2%85",
        "%E3%80%80",
        &"x".repeat(17),
    ] {
        alice
            .put(&format!("{base}/{bad}"))
            .await
            .assert_problem(422, "validation_failed");
        alice
            .delete(&format!("{base}/{bad}"))
            .await
            .assert_problem(422, "validation_failed");
    }
    // Invalid UTF-8 is not a path at all.
    alice
        .put(&format!("{base}/%FF"))
        .await
        .assert_problem(400, "invalid_path");
    // Joined sequences and plain text are emoji enough.
    for good in ["👨‍👩‍👧", "🇫🇷", "+1", &"x".repeat(16)] {
        assert_eq!(alice.react(room.id, message.id, good).await.status, 204);
    }
    for n in 4..20 {
        let emoji = format!("e{n}");
        assert_eq!(alice.react(room.id, message.id, &emoji).await.status, 204);
    }
    assert_eq!(alice.message(room.id, message.id).await.reactions.len(), 20);
    alice
        .react(room.id, message.id, "one-too-many")
        .await
        .assert_problem(409, "too_many_reactions");
    // One of the twenty is still fine (by someone else, too), and a freed slot can be taken.
    let bob = app.register("bob").await;
    bob.join(room.id).await;
    assert_eq!(bob.react(room.id, message.id, "e4").await.status, 204);
    alice.unreact(room.id, message.id, "e5").await;
    assert_eq!(
        alice
            .react(room.id, message.id, "one-too-many")
            .await
            .status,
        204
    );
}

async fn reactions_need_membership_and_a_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    let den = alice.create_room("Den", true).await;
    let message = alice.say(room.id, "hello").await;
    let secret = alice.say(den.id, "secret").await;
    bob.react(room.id, message.id, "👍")
        .await
        .assert_problem(403, "not_a_member");
    bob.unreact(room.id, message.id, "👍")
        .await
        .assert_problem(403, "not_a_member");
    bob.react(den.id, secret.id, "👍")
        .await
        .assert_problem(404, "room_not_found");
    alice
        .react(room.id, Uuid::new_v4(), "👍")
        .await
        .assert_problem(404, "message_not_found");
    alice
        .unreact(room.id, secret.id, "👍")
        .await
        .assert_problem(404, "message_not_found");
    // After leaving, no more reacting.
    bob.join(room.id).await;
    assert_eq!(bob.react(room.id, message.id, "👍").await.status, 204);
    bob.leave(room.id).await;
    bob.react(room.id, message.id, "❤️")
        .await
        .assert_problem(403, "not_a_member");
}

async fn history_pages_carry_reactions_and_edits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut posted = Vec::new();
    for n in 1..=6 {
        posted.push(alice.say(room.id, &format!("m{n}")).await);
    }
    alice.react(room.id, posted[1].id, "👍").await;
    alice.react(room.id, posted[4].id, "🎉").await;
    alice.edit(room.id, posted[4].id, "m5, edited").await;

    let page: MessagePage = alice.history(room.id, "?page_size=3").await.json();
    let window: MessageWindow = alice.history(room.id, "?before_seq=4").await.json();
    for message in page.messages.iter().chain(&window.messages) {
        assert_eq!(message, &alice.message(room.id, message.id).await);
    }
    assert_eq!(window.messages[1].reactions[0].emoji, "👍");
    assert_eq!(page.messages[1].content, "m5, edited");
    assert_eq!(page.messages[1].reactions[0].emoji, "🎉");
}
