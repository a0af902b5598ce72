//! Joining, adding and leaving.

use nebula_wire::{Member, MemberList, Role, Room};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    anyone_can_join_a_public_room_once,
    owners_add_people_to_private_rooms,
    only_owners_and_admins_add_others,
    leaving_a_room,
    when_the_owner_leaves_the_oldest_member_takes_over,
    owners_and_admins_remove_members,
    only_the_owner_changes_roles,
);

async fn anyone_can_join_a_public_room_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;

    let joined = bob.join(room.id).await;
    assert_eq!(joined.status, StatusCode::CREATED);
    let member: Member = joined.json();
    assert_eq!((member.user_id, member.role), (bob.user.id, Role::Member));
    let again = bob.join(room.id).await;
    assert_eq!(again.status, StatusCode::OK, "already a member");
    assert_eq!(again.json::<Member>(), member);
    // An empty body (no JSON at all) also means "join".
    let carol = app.register("carol").await;
    let empty = crate::helpers::send(
        carol
            .http
            .post(format!("{}/rooms/{}/members", carol.base, room.id))
            .bearer_auth(&carol.token),
    )
    .await;
    assert_eq!(empty.status, StatusCode::CREATED, "{}", empty.text());

    let fetched: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(fetched.member_count, 3);
    let list: MemberList = bob.get(&format!("/rooms/{}/members", room.id)).await.json();
    let names: Vec<_> = list.members.iter().map(|m| m.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
}

async fn owners_add_people_to_private_rooms(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let den = alice.create_room("Den", true).await;

    bob.join(den.id).await.assert_problem(404, "room_not_found");
    let added = alice.add(den.id, "BOB").await;
    assert_eq!(
        added.status,
        StatusCode::CREATED,
        "usernames match ignoring case: {}",
        added.text()
    );
    assert_eq!(added.json::<Member>().user_id, bob.user.id);
    let by_id = alice
        .post(
            &format!("/rooms/{}/members", den.id),
            json!({"user_id": carol.user.id}),
        )
        .await;
    assert_eq!(by_id.status, StatusCode::CREATED);
    assert_eq!(alice.add(den.id, "bob").await.status, StatusCode::OK);

    let seen_by_bob: Room = bob.get(&format!("/rooms/{}", den.id)).await.json();
    assert_eq!(seen_by_bob.member_count, 3);
    alice
        .add(den.id, "nobody")
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post(
            &format!("/rooms/{}/members", den.id),
            json!({"user_id": uuid::Uuid::new_v4()}),
        )
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post(
            &format!("/rooms/{}/members", den.id),
            json!({"user_id": bob.user.id, "username": "bob"}),
        )
        .await
        .assert_problem(422, "validation_failed");
}

async fn only_owners_and_admins_add_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.register("carol").await;
    let lobby = alice.create_room("Lobby", false).await;
    let den = alice.create_room("Den", true).await;

    bob.add(lobby.id, "carol")
        .await
        .assert_problem(403, "not_a_member");
    bob.join(lobby.id).await;
    bob.add(lobby.id, "carol")
        .await
        .assert_problem(403, "forbidden");
    alice.add(den.id, "bob").await;
    bob.add(den.id, "carol")
        .await
        .assert_problem(403, "forbidden");
}

async fn leaving_a_room(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let lobby = alice.create_room("Lobby", false).await;
    let den = alice.create_room("Den", true).await;

    bob.leave(lobby.id)
        .await
        .assert_problem(404, "not_a_member");
    bob.leave(den.id)
        .await
        .assert_problem(404, "room_not_found");
    bob.join(lobby.id).await;
    let left = bob.leave(lobby.id).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    assert!(left.body.is_empty());
    bob.leave(lobby.id)
        .await
        .assert_problem(404, "not_a_member");
    let room: Room = alice.get(&format!("/rooms/{}", lobby.id)).await.json();
    assert_eq!(room.member_count, 1);

    alice.add(den.id, "bob").await;
    assert_eq!(bob.leave(den.id).await.status, StatusCode::NO_CONTENT);
    bob.get(&format!("/rooms/{}", den.id))
        .await
        .assert_problem(404, "room_not_found");
}

async fn when_the_owner_leaves_the_oldest_member_takes_over(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = alice.create_room("Club", true).await;
    alice.add(room.id, "bob").await;
    alice.add(room.id, "carol").await;

    assert_eq!(alice.leave(room.id).await.status, StatusCode::NO_CONTENT);
    let seen: Room = carol.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(seen.owner_id, bob.user.id);
    assert_eq!(seen.member_count, 2);
    let list: MemberList = carol
        .get(&format!("/rooms/{}/members", room.id))
        .await
        .json();
    assert_eq!(list.members[0].role, Role::Owner);
    assert_eq!(
        bob.add(room.id, "alice").await.status,
        StatusCode::CREATED,
        "the new owner can add members"
    );
}

async fn owners_and_admins_remove_members(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    let room = alice.create_room("Club", false).await;
    for user in [&bob, &carol, &dave] {
        user.join(room.id).await;
    }
    let path =
        |user: &crate::helpers::Session| format!("/rooms/{}/members/{}", room.id, user.user.id);

    // A member removes nobody; an outsider is told it is not a member.
    bob.delete(&path(&carol))
        .await
        .assert_problem(403, "forbidden");
    let outsider = app.register("eve").await;
    outsider
        .delete(&path(&carol))
        .await
        .assert_problem(403, "not_a_member");

    // The owner makes bob an admin; an admin removes members, not the owner or other admins.
    let promoted: Member = alice
        .patch(&path(&bob), json!({"role": "admin"}))
        .await
        .json();
    assert_eq!(promoted.role, Role::Admin);
    alice.patch(&path(&carol), json!({"role": "admin"})).await;
    bob.delete(&path(&carol))
        .await
        .assert_problem(403, "forbidden");
    bob.delete(&path(&alice))
        .await
        .assert_problem(403, "forbidden");
    let removed = bob.delete(&path(&dave)).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
    bob.delete(&path(&dave))
        .await
        .assert_problem(404, "member_not_found");
    dave.get(&format!("/rooms/{}/messages", room.id))
        .await
        .assert_problem(403, "not_a_member");

    // The owner removes an admin; removing yourself is leaving.
    assert_eq!(
        alice.delete(&path(&carol)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(bob.delete(&path(&bob)).await.status, StatusCode::NO_CONTENT);
    let list: MemberList = alice
        .get(&format!("/rooms/{}/members", room.id))
        .await
        .json();
    assert_eq!(list.members.len(), 1);

    // A private room stays invisible to outsiders on these routes too.
    let den = alice.create_room("Den", true).await;
    outsider
        .delete(&format!("/rooms/{}/members/{}", den.id, alice.user.id))
        .await
        .assert_problem(404, "room_not_found");
    outsider
        .patch(
            &format!("/rooms/{}/members/{}", den.id, alice.user.id),
            json!({"role": "member"}),
        )
        .await
        .assert_problem(404, "room_not_found");
}

async fn only_the_owner_changes_roles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = alice.create_room("Club", false).await;
    bob.join(room.id).await;
    carol.join(room.id).await;
    let mut carol_ws = carol.subscribed(room.id).await;
    let bob_path = format!("/rooms/{}/members/{}", room.id, bob.user.id);

    let member: Member = alice
        .patch(&bob_path, json!({"role": "admin"}))
        .await
        .json();
    assert_eq!((member.user_id, member.role), (bob.user.id, Role::Admin));
    let event = carol_ws
        .expect(|e| matches!(e, nebula_wire::ServerEvent::MemberUpdated { .. }))
        .await;
    assert!(
        matches!(&event, nebula_wire::ServerEvent::MemberUpdated { member, .. } if member.role == Role::Admin && member.user_id == bob.user.id),
        "{event:?}"
    );
    // Admins are not owners.
    bob.patch(
        &format!("/rooms/{}/members/{}", room.id, carol.user.id),
        json!({"role": "admin"}),
    )
    .await
    .assert_problem(403, "forbidden");
    alice
        .patch(
            &format!("/rooms/{}/members/{}", room.id, alice.user.id),
            json!({"role": "member"}),
        )
        .await
        .assert_problem(403, "forbidden");
    alice
        .patch(&bob_path, json!({"role": "owner"}))
        .await
        .assert_problem(422, "invalid_body");
    alice
        .patch(&bob_path, json!({"role": "emperor"}))
        .await
        .assert_problem(422, "invalid_body");
    alice
        .patch(
            &format!("/rooms/{}/members/{}", room.id, uuid::Uuid::new_v4()),
            json!({"role": "member"}),
        )
        .await
        .assert_problem(404, "member_not_found");
    let back: Member = alice
        .patch(&bob_path, json!({"role": "member"}))
        .await
        .json();
    assert_eq!(back.role, Role::Member);
}
