//! Messages people can change, over REST: replies, edits and their history, deletes, and who
//! may do what (the contract's lifecycle table, row by row).

use nebula_wire::{Message, MessageHistory, MessagePage};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_new_message_carries_the_lifecycle_fields,
    replies_name_a_message_of_the_same_room,
    unknown_attachments_are_refused,
    the_sender_edits_and_earlier_versions_are_kept,
    edits_are_refused_to_others_and_for_bad_input,
    edits_close_after_the_edit_window,
    one_message_is_read_by_id,
    a_deleted_message_keeps_its_seq_and_loses_its_content_everywhere,
    owners_and_admins_delete_others_messages_members_do_not,
    every_new_route_needs_a_token,
);

async fn a_new_message_carries_the_lifecycle_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let reply = alice
        .post_message(room.id, json!({"content": "hello"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let raw: serde_json::Value = reply.json();
    for (field, value) in [
        ("reply_to", json!(null)),
        ("edited_at", json!(null)),
        ("deleted_at", json!(null)),
        ("reactions", json!([])),
        ("attachments", json!([])),
        ("rev", json!(1)),
    ] {
        assert_eq!(raw[field], value, "{field} in {raw}");
    }
    // Each new message takes the next rev, as it takes the next seq.
    let second = alice.say(room.id, "again").await;
    assert_eq!((second.seq, second.rev), (2, 2));
}

async fn replies_name_a_message_of_the_same_room(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let other = alice.create_room("Elsewhere", false).await;
    let original = alice.say(room.id, "question?").await;
    let elsewhere = alice.say(other.id, "not here").await;

    let reply = alice
        .post_message(
            room.id,
            json!({"content": "answer", "reply_to": original.id}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer: Message = reply.json();
    let target = answer.reply_to.expect("a reply");
    assert_eq!((target.id, target.seq), (original.id, original.seq));
    let page: MessagePage = alice.history(room.id, "").await.json();
    assert_eq!(page.messages[1], answer, "history carries the reply");

    for bad in [
        json!(elsewhere.id),
        json!(Uuid::new_v4()),
        json!("not-a-uuid"),
        json!(""),
    ] {
        alice
            .post_message(room.id, json!({"content": "answer", "reply_to": bad}))
            .await
            .assert_problem(422, "invalid_reply");
    }
    alice
        .post_message(room.id, json!({"content": "answer", "reply_to": 5}))
        .await
        .assert_problem(422, "invalid_body");
    // A deleted message can still be answered: it keeps its place in history.
    alice.delete_message(room.id, original.id).await;
    let late = alice
        .post_message(
            room.id,
            json!({"content": "late answer", "reply_to": original.id}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CREATED);
}

async fn unknown_attachments_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let ok = alice
        .post_message(room.id, json!({"content": "hi", "attachments": []}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    alice
        .post_message(
            room.id,
            json!({"content": "hi", "attachments": [Uuid::new_v4()]}),
        )
        .await
        .assert_problem(422, "invalid_attachment");
    let eleven: Vec<Uuid> = (0..11).map(|_| Uuid::new_v4()).collect();
    alice
        .post_message(room.id, json!({"content": "hi", "attachments": eleven}))
        .await
        .assert_problem(422, "invalid_attachment");
    // Without attachments, content is required and not blank, as before.
    alice
        .post_message(room.id, json!({"content": "", "attachments": []}))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .post_message(room.id, json!({"content": "hi", "attachments": "x"}))
        .await
        .assert_problem(422, "invalid_body");
}

async fn the_sender_edits_and_earlier_versions_are_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let posted = alice.say(room.id, "frist").await;
    let other = alice.say(room.id, "unrelated").await;

    let reply = alice.edit(room.id, posted.id, "first").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let edited: Message = reply.json();
    assert_eq!(edited.content, "first");
    assert_eq!(edited.seq, posted.seq, "an edit keeps the seq");
    assert!(edited.rev > other.rev, "an edit takes the room's next rev");
    let edited_at = edited.edited_at.expect("edited_at is set");
    assert!(edited_at >= posted.created_at);
    assert_eq!(alice.message(room.id, posted.id).await, edited);

    let again: Message = alice.edit(room.id, posted.id, "first, really").await.json();
    assert!(again.rev > edited.rev);
    // Editing to the same content is no change (a retried PATCH does not add a version).
    let same = alice.edit(room.id, posted.id, "first, really").await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.json::<Message>(), again);

    let history: MessageHistory = alice
        .get(&format!(
            "/rooms/{}/messages/{}/history",
            room.id, posted.id
        ))
        .await
        .json();
    let contents: Vec<&str> = history
        .versions
        .iter()
        .map(|v| v.content.as_str())
        .collect();
    assert_eq!(
        contents,
        ["frist", "first"],
        "earlier contents, oldest first"
    );
    assert_eq!(history.versions[0].edited_at, edited_at);
    assert_eq!(Some(history.versions[1].edited_at), again.edited_at);
    // Stored exactly as sent, like a post.
    let spaced: Message = alice.edit(room.id, posted.id, "  spaced  \n").await.json();
    assert_eq!(spaced.content, "  spaced  \n");
    let unedited: MessageHistory = alice
        .get(&format!("/rooms/{}/messages/{}/history", room.id, other.id))
        .await
        .json();
    assert!(unedited.versions.is_empty());
}

async fn edits_are_refused_to_others_and_for_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = alice.create_room("Lobby", false).await;
    let den = alice.create_room("Den", true).await;
    bob.join(room.id).await;
    let posted = alice.say(room.id, "mine").await;
    let secret = alice.say(den.id, "secret").await;

    // Only the sender, not even the room's owner on someone else's message.
    bob.edit(room.id, posted.id, "hijacked")
        .await
        .assert_problem(403, "not_message_author");
    let bobs = bob.say(room.id, "bob's").await;
    alice
        .edit(room.id, bobs.id, "owner edit")
        .await
        .assert_problem(403, "not_message_author");
    // Outsiders: a public room's non-member, a private room's.
    carol
        .edit(room.id, posted.id, "x")
        .await
        .assert_problem(403, "not_a_member");
    carol
        .edit(den.id, secret.id, "x")
        .await
        .assert_problem(404, "room_not_found");
    // Unknown ids, or a message of another room.
    alice
        .edit(room.id, Uuid::new_v4(), "x")
        .await
        .assert_problem(404, "message_not_found");
    alice
        .edit(room.id, secret.id, "x")
        .await
        .assert_problem(404, "message_not_found");
    alice
        .edit(Uuid::new_v4(), posted.id, "x")
        .await
        .assert_problem(404, "room_not_found");
    alice
        .patch(
            &format!("/rooms/{}/messages/nope", room.id),
            json!({"content": "x"}),
        )
        .await
        .assert_problem(400, "invalid_path");
    // The content limits of posting.
    for (body, code) in [
        (json!({"content": "   "}), "validation_failed"),
        (json!({"content": "a".repeat(4001)}), "validation_failed"),
        (json!({"content": "a\u{0}b"}), "validation_failed"),
        (json!({}), "invalid_body"),
        (json!({"content": 5}), "invalid_body"),
    ] {
        alice
            .patch(&format!("/rooms/{}/messages/{}", room.id, posted.id), body)
            .await
            .assert_problem(422, code);
    }
    let malformed = alice
        .http
        .patch(format!(
            "{}/rooms/{}/messages/{}",
            alice.base, room.id, posted.id
        ))
        .bearer_auth(&alice.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(alice.message(room.id, posted.id).await, posted, "untouched");
}

async fn edits_close_after_the_edit_window(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.message_edit_window_seconds = 3600;
    })
    .await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let fresh = alice.say(room.id, "fresh").await;
    let old = alice.say(room.id, "old").await;
    assert_eq!(alice.edit(room.id, fresh.id, "fresh!").await.status, 200);
    // Posted two hours ago, as far as the database knows.
    app.execute_sql(&format!(
        "UPDATE messages SET created_at = '2000-01-01T00:00:00Z' WHERE seq = {}",
        old.seq
    ))
    .await;
    alice
        .edit(room.id, old.id, "too late")
        .await
        .assert_problem(403, "edit_window_expired");
    // Deleting has no window.
    assert_eq!(alice.delete_message(room.id, old.id).await.status, 204);
}

async fn one_message_is_read_by_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    let den = alice.create_room("Den", true).await;
    let posted = alice.say(room.id, "hello").await;
    let secret = alice.say(den.id, "secret").await;
    assert_eq!(alice.message(room.id, posted.id).await, posted);
    let path = |room: Uuid, message: Uuid| format!("/rooms/{room}/messages/{message}");
    alice
        .get(&path(room.id, Uuid::new_v4()))
        .await
        .assert_problem(404, "message_not_found");
    alice
        .get(&path(room.id, secret.id))
        .await
        .assert_problem(404, "message_not_found");
    bob.get(&path(room.id, posted.id))
        .await
        .assert_problem(403, "not_a_member");
    bob.get(&path(den.id, secret.id))
        .await
        .assert_problem(404, "room_not_found");
    for sub in ["history", "reactions"] {
        bob.get(&format!("{}/{sub}", path(den.id, secret.id)))
            .await
            .assert_problem(404, "room_not_found");
        bob.get(&format!("{}/{sub}", path(room.id, posted.id)))
            .await
            .assert_problem(403, "not_a_member");
        alice
            .get(&format!("{}/{sub}", path(room.id, Uuid::new_v4())))
            .await
            .assert_problem(404, "message_not_found");
    }
}

async fn a_deleted_message_keeps_its_seq_and_loses_its_content_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let before = alice.say(room.id, "before").await;
    let doomed = alice.say(room.id, "a secret first draft").await;
    let after = alice.say(room.id, "after").await;
    alice
        .edit(room.id, doomed.id, "a secret second draft")
        .await;
    assert_eq!(bob.react(room.id, doomed.id, "👍").await.status, 204);

    let reply = alice.delete_message(room.id, doomed.id).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let tombstone = alice.message(room.id, doomed.id).await;
    assert_eq!(tombstone.seq, doomed.seq);
    assert_eq!(tombstone.content, "");
    assert!(tombstone.deleted_at.is_some());
    assert!(tombstone.reactions.is_empty() && tombstone.attachments.is_empty());
    let page: MessagePage = bob.history(room.id, "").await.json();
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        [before.seq, doomed.seq, after.seq],
        "still in history"
    );
    assert_eq!(page.messages[1], tombstone);
    let history: MessageHistory = alice
        .get(&format!(
            "/rooms/{}/messages/{}/history",
            room.id, doomed.id
        ))
        .await
        .json();
    assert!(history.versions.is_empty());
    let reactions: serde_json::Value = bob
        .get(&format!(
            "/rooms/{}/messages/{}/reactions",
            room.id, doomed.id
        ))
        .await
        .json();
    assert_eq!(reactions, json!({"reactions": []}));

    // Gone from the database, not hidden: no row anywhere holds the text any more.
    for table in ["messages", "message_versions"] {
        let holding = app
            .query_i64(&format!(
                "SELECT COUNT(*) FROM {table} WHERE content LIKE '%secret%'"
            ))
            .await;
        assert_eq!(holding, 0, "{table} still holds the content");
    }
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM message_reactions")
            .await,
        0
    );

    // Deleting again is fine; changing it is not; removing a reaction is nothing to do.
    assert_eq!(alice.delete_message(room.id, doomed.id).await.status, 204);
    let again = alice.message(room.id, doomed.id).await;
    assert_eq!(again, tombstone, "a repeated delete changes nothing");
    alice
        .edit(room.id, doomed.id, "resurrected")
        .await
        .assert_problem(409, "message_deleted");
    bob.react(room.id, doomed.id, "❤️")
        .await
        .assert_problem(409, "message_deleted");
    assert_eq!(bob.unreact(room.id, doomed.id, "👍").await.status, 204);
    alice
        .delete_message(room.id, Uuid::new_v4())
        .await
        .assert_problem(404, "message_not_found");
    assert_eq!(alice.message(room.id, doomed.id).await, tombstone);
}

async fn owners_and_admins_delete_others_messages_members_do_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.register("owner").await;
    let admin = app.register("admin").await;
    let member = app.register("member").await;
    let outsider = app.register("outsider").await;
    let room = owner.create_room("Moderated", false).await;
    let den = owner.create_room("Den", true).await;
    for user in [&admin, &member] {
        user.join(room.id).await;
    }
    let promoted = owner
        .patch(
            &format!("/rooms/{}/members/{}", room.id, admin.user.id),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text());
    let by_member = member.say(room.id, "spam").await;
    let by_admin = admin.say(room.id, "admin speaking").await;
    let by_owner = owner.say(room.id, "owner speaking").await;
    let secret = owner.say(den.id, "secret").await;

    member
        .delete_message(room.id, by_admin.id)
        .await
        .assert_problem(403, "forbidden");
    outsider
        .delete_message(room.id, by_member.id)
        .await
        .assert_problem(403, "not_a_member");
    outsider
        .delete_message(den.id, secret.id)
        .await
        .assert_problem(404, "room_not_found");
    assert_eq!(
        admin.delete_message(room.id, by_member.id).await.status,
        204
    );
    assert_eq!(admin.delete_message(room.id, by_owner.id).await.status, 204);
    assert_eq!(owner.delete_message(room.id, by_admin.id).await.status, 204);
    // A member deletes their own; the forbidden one stays forbidden even once deleted.
    let own = member.say(room.id, "oops").await;
    assert_eq!(member.delete_message(room.id, own.id).await.status, 204);
    member
        .delete_message(room.id, by_admin.id)
        .await
        .assert_problem(403, "forbidden");
    for id in [by_member.id, by_admin.id, by_owner.id, own.id] {
        assert!(owner.message(room.id, id).await.deleted_at.is_some());
    }
}

async fn every_new_route_needs_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let message = alice.say(room.id, "hello").await;
    let one = format!("/rooms/{}/messages/{}", room.id, message.id);
    let routes = [
        (reqwest::Method::GET, one.clone()),
        (reqwest::Method::PATCH, one.clone()),
        (reqwest::Method::DELETE, one.clone()),
        (reqwest::Method::GET, format!("{one}/history")),
        (reqwest::Method::GET, format!("{one}/reactions")),
        (
            reqwest::Method::PUT,
            format!("{one}/reactions/%F0%9F%91%8D"),
        ),
        (
            reqwest::Method::DELETE,
            format!("{one}/reactions/%F0%9F%91%8D"),
        ),
        (reqwest::Method::GET, format!("/rooms/{}/changes", room.id)),
    ];
    for (method, path) in routes {
        let reply = crate::helpers::send(
            app.http
                .request(method.clone(), app.url(&path))
                .json(&json!({"content": "x"})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(reply.problem().code, "unauthorized", "{method} {path}");
    }
    assert_eq!(alice.message(room.id, message.id).await, message);
}
