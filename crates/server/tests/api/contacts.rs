//! Contacts, contact requests and blocks.

use nebula_wire::{
    Contact, ContactList, ContactRequest, ContactRequestList, ContactRequestStatus, UserList,
};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, Session, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_request_accepted_makes_contacts_both_ways,
    asking_someone_who_asked_you_makes_contacts_at_once,
    only_the_recipient_accepts_or_declines,
    contact_requests_refuse_bad_targets,
    removing_a_contact_ends_it_for_both,
    blocking_ends_contacts_and_requests,
    blocks_refuse_bad_targets,
    two_users_asking_each_other_at_once_become_contacts,
);

async fn ask(from: &Session, to: &Session) -> ContactRequest {
    let reply = from
        .post("/contacts/requests", json!({"user_id": to.user.id}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()
}

async fn contacts_of(who: &Session) -> Vec<String> {
    let list: ContactList = who.get("/contacts").await.json();
    list.contacts.into_iter().map(|c| c.user.username).collect()
}

async fn a_request_accepted_makes_contacts_both_ways(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;

    let request = ask(&alice, &bob).await;
    assert_eq!(request.status, ContactRequestStatus::Pending);
    assert_eq!(
        (request.from.id, request.to.id),
        (alice.user.id, bob.user.id)
    );
    let raw: serde_json::Value = alice.get("/contacts/requests").await.json();
    assert_eq!(raw["outgoing"][0]["status"], "pending");

    // Asking again returns the same pending request.
    let again = alice
        .post("/contacts/requests", json!({"username": "BOB"}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json::<ContactRequest>().id, request.id);

    let bobs: ContactRequestList = bob.get("/contacts/requests").await.json();
    assert_eq!(bobs.incoming.len(), 1);
    assert!(bobs.outgoing.is_empty());
    assert_eq!(bobs.incoming[0].id, request.id);
    let alices: ContactRequestList = alice.get("/contacts/requests").await.json();
    assert_eq!((alices.incoming.len(), alices.outgoing.len()), (0, 1));

    let accepted = bob
        .post(
            &format!("/contacts/requests/{}/accept", request.id),
            json!({}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text());
    let contact: Contact = accepted.json();
    assert_eq!(contact.user.id, alice.user.id);

    assert_eq!(contacts_of(&alice).await, ["bob"]);
    assert_eq!(contacts_of(&bob).await, ["alice"]);
    let bobs: ContactRequestList = bob.get("/contacts/requests").await.json();
    assert!(bobs.incoming.is_empty(), "no longer pending");
    // Accepted requests are gone.
    bob.post(
        &format!("/contacts/requests/{}/accept", request.id),
        json!({}),
    )
    .await
    .assert_problem(404, "request_not_found");
    alice
        .post("/contacts/requests", json!({"user_id": bob.user.id}))
        .await
        .assert_problem(409, "already_contacts");
    bob.post("/contacts/requests", json!({"user_id": alice.user.id}))
        .await
        .assert_problem(409, "already_contacts");
}

async fn asking_someone_who_asked_you_makes_contacts_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    ask(&alice, &bob).await;
    let reply = bob
        .post("/contacts/requests", json!({"user_id": alice.user.id}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let request: ContactRequest = reply.json();
    assert_eq!(request.status, ContactRequestStatus::Accepted);
    assert_eq!(
        (request.from.id, request.to.id),
        (bob.user.id, alice.user.id)
    );
    let raw: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(raw["status"], "accepted");
    assert_eq!(contacts_of(&alice).await, ["bob"]);
    assert_eq!(contacts_of(&bob).await, ["alice"]);
    let pending: ContactRequestList = alice.get("/contacts/requests").await.json();
    assert!(pending.incoming.is_empty() && pending.outgoing.is_empty());
}

async fn only_the_recipient_accepts_or_declines(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let request = ask(&alice, &bob).await;
    for who in [&alice, &carol] {
        for action in ["accept", "decline"] {
            who.post(
                &format!("/contacts/requests/{}/{action}", request.id),
                json!({}),
            )
            .await
            .assert_problem(404, "request_not_found");
        }
    }
    bob.post(
        &format!("/contacts/requests/{}/accept", Uuid::now_v7()),
        json!({}),
    )
    .await
    .assert_problem(404, "request_not_found");
    bob.post("/contacts/requests/nope/accept", json!({}))
        .await
        .assert_problem(400, "invalid_path");

    let declined = bob
        .post(
            &format!("/contacts/requests/{}/decline", request.id),
            json!({}),
        )
        .await;
    assert_eq!(
        declined.status,
        StatusCode::NO_CONTENT,
        "{}",
        declined.text()
    );
    assert!(contacts_of(&alice).await.is_empty());
    let pending: ContactRequestList = alice.get("/contacts/requests").await.json();
    assert!(pending.outgoing.is_empty());
    bob.post(
        &format!("/contacts/requests/{}/decline", request.id),
        json!({}),
    )
    .await
    .assert_problem(404, "request_not_found");
    // Alice may ask again.
    ask(&alice, &bob).await;
}

async fn contact_requests_refuse_bad_targets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    alice
        .post("/contacts/requests", json!({"user_id": alice.user.id}))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .post("/contacts/requests", json!({}))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .post("/contacts/requests", json!({"user_id": Uuid::now_v7()}))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post("/contacts/requests", json!({"username": "ghost"}))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post("/contacts/requests", json!({"user_id": 42}))
        .await
        .assert_problem(422, "invalid_body");
}

async fn removing_a_contact_ends_it_for_both(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let request = ask(&alice, &bob).await;
    bob.post(
        &format!("/contacts/requests/{}/accept", request.id),
        json!({}),
    )
    .await;
    let removed = bob.delete(&format!("/contacts/{}", alice.user.id)).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert!(contacts_of(&alice).await.is_empty());
    assert!(contacts_of(&bob).await.is_empty());
    // Again: nothing to end, still 204.
    let again = bob.delete(&format!("/contacts/{}", alice.user.id)).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    bob.delete(&format!("/contacts/{}", Uuid::now_v7()))
        .await
        .assert_problem(404, "user_not_found");
    // Yourself: never a contact, nothing to end.
    let me = bob.delete(&format!("/contacts/{}", bob.user.id)).await;
    assert_eq!(me.status, StatusCode::NO_CONTENT);
}

async fn blocking_ends_contacts_and_requests(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let request = ask(&alice, &bob).await;
    bob.post(
        &format!("/contacts/requests/{}/accept", request.id),
        json!({}),
    )
    .await;
    ask(&carol, &alice).await;

    for blocked in [&bob, &carol] {
        let reply = alice.put(&format!("/blocks/{}", blocked.user.id)).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    }
    // Idempotent.
    let again = alice.put(&format!("/blocks/{}", bob.user.id)).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let blocked: UserList = alice.get("/blocks").await.json();
    let names: Vec<_> = blocked.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["bob", "carol"]);
    let bobs: UserList = bob.get("/blocks").await.json();
    assert!(bobs.users.is_empty(), "blocks are the blocker's own list");

    assert!(contacts_of(&alice).await.is_empty());
    assert!(contacts_of(&bob).await.is_empty());
    let pending: ContactRequestList = alice.get("/contacts/requests").await.json();
    assert!(pending.incoming.is_empty(), "carol's request ended");
    // Neither side may ask.
    bob.post("/contacts/requests", json!({"user_id": alice.user.id}))
        .await
        .assert_problem(403, "cannot_message_user");
    alice
        .post("/contacts/requests", json!({"user_id": carol.user.id}))
        .await
        .assert_problem(403, "cannot_message_user");

    let unblocked = alice.delete(&format!("/blocks/{}", bob.user.id)).await;
    assert_eq!(unblocked.status, StatusCode::NO_CONTENT);
    let blocked: UserList = alice.get("/blocks").await.json();
    assert_eq!(blocked.users.len(), 1);
    // The contact does not come back by itself, but may be asked for again.
    assert!(contacts_of(&alice).await.is_empty());
    ask(&bob, &alice).await;
}

async fn blocks_refuse_bad_targets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let path = |id: Uuid| format!("/blocks/{id}");
    alice
        .put(&path(alice.user.id))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .put(&path(Uuid::now_v7()))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .delete(&path(Uuid::now_v7()))
        .await
        .assert_problem(404, "user_not_found");
    // Yourself: never blocked, nothing to lift.
    let me = alice.delete(&path(alice.user.id)).await;
    assert_eq!(me.status, StatusCode::NO_CONTENT);
    alice
        .put("/blocks/not-a-uuid")
        .await
        .assert_problem(400, "invalid_path");
}

async fn two_users_asking_each_other_at_once_become_contacts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for pair in 0..5 {
        let alice = app.register(&format!("alice{pair}")).await;
        let bob = app.register(&format!("bob{pair}")).await;
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for (me, other) in [(alice.clone(), bob.user.id), (bob.clone(), alice.user.id)] {
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                me.post("/contacts/requests", json!({"user_id": other}))
                    .await
            }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            let reply = task.await.unwrap();
            statuses.push(reply.json::<ContactRequest>().status);
        }
        statuses.sort_by_key(|s| *s == ContactRequestStatus::Accepted);
        assert_eq!(
            statuses,
            [
                ContactRequestStatus::Pending,
                ContactRequestStatus::Accepted
            ],
            "pair {pair}"
        );
        assert_eq!(contacts_of(&alice).await, [format!("bob{pair}")]);
        let pending: ContactRequestList = alice.get("/contacts/requests").await.json();
        assert!(pending.incoming.is_empty() && pending.outgoing.is_empty());
    }
}
