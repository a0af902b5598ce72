//! Notification settings (issue 17): `GET`/`PUT /me/notifications` and
//! `PUT /rooms/{room_id}/notifications`, with the caller's level shown on the room.

use nebula_wire::{NotificationLevel, NotificationSettings, Room};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, Session, TestApp, send};
use crate::on_both_backends;

on_both_backends!(
    account_switches_default_on_and_change_one_at_a_time,
    room_levels_default_by_kind_and_are_for_members_only,
);

/// `PUT` with a JSON body (the shared helper's `put` sends none).
pub async fn put_json(session: &Session, path: &str, body: Value) -> Reply {
    send(
        session
            .http
            .put(format!("{}{path}", session.base))
            .bearer_auth(&session.token)
            .json(&body),
    )
    .await
}

async fn account_switches_default_on_and_change_one_at_a_time(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.email_digest_minutes = 20).await;
    let alice = app.register("alice").await;
    let settings: NotificationSettings = alice.get("/me/notifications").await.json();
    assert_eq!(
        settings,
        NotificationSettings {
            push: true,
            email: true,
            email_digest_minutes: 20,
        }
    );

    let changed = put_json(&alice, "/me/notifications", json!({"push": false})).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
    let changed = put_json(
        &alice,
        "/me/notifications",
        json!({"email": false, "email_digest_minutes": 60}),
    )
    .await;
    let expected = NotificationSettings {
        push: false,
        email: false,
        email_digest_minutes: 60,
    };
    assert_eq!(changed.json::<NotificationSettings>(), expected);
    assert_eq!(
        alice
            .get("/me/notifications")
            .await
            .json::<NotificationSettings>(),
        expected
    );
    // The e-mail switch is the one the unsubscribe link turns off.
    let me: nebula_wire::Account = alice.get("/me").await.json();
    assert!(!me.email_notifications);

    for minutes in [json!(0), json!(10_081)] {
        put_json(
            &alice,
            "/me/notifications",
            json!({"email_digest_minutes": minutes}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    for bad in [
        json!({"email_digest_minutes": -1}),
        json!({"email_digest_minutes": "often"}),
        json!({"push": "yes"}),
    ] {
        let reply = put_json(&alice, "/me/notifications", bad.clone()).await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 422),
            "{bad}: {}",
            reply.status
        );
        assert!(!reply.problem().code.is_empty());
    }
    // Nothing changed by the refused requests.
    assert_eq!(
        alice
            .get("/me/notifications")
            .await
            .json::<NotificationSettings>(),
        expected
    );
    let anonymous = app.get("/me/notifications").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn room_levels_default_by_kind_and_are_for_members_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let public = alice.create_room("Lobby", false).await;
    let private = alice.create_room("Secret", true).await;
    assert_eq!(public.notification_level, Some(NotificationLevel::Mentions));
    let dm: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    assert_eq!(dm.notification_level, Some(NotificationLevel::All));

    let path = |room: &Room| format!("/rooms/{}/notifications", room.id);
    let set = put_json(&alice, &path(&public), json!({"level": "none"})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let room: Room = alice.get(&format!("/rooms/{}", public.id)).await.json();
    assert_eq!(room.notification_level, Some(NotificationLevel::None));
    put_json(&alice, &path(&dm), json!({"level": "mentions"})).await;
    let rooms: nebula_wire::RoomList = alice.get("/rooms").await.json();
    let levels: Vec<_> = rooms
        .rooms
        .iter()
        .map(|room| (room.id, room.notification_level))
        .collect();
    assert!(
        levels.contains(&(public.id, Some(NotificationLevel::None))),
        "{levels:?}"
    );
    assert!(
        levels.contains(&(dm.id, Some(NotificationLevel::Mentions))),
        "{levels:?}"
    );
    assert!(levels.contains(&(private.id, Some(NotificationLevel::Mentions))));

    // Someone else's level is not shown, nor changed.
    let seen_by_bob: Room = bob.get(&format!("/rooms/{}", public.id)).await.json();
    assert_eq!(seen_by_bob.notification_level, None, "bob is no member");
    put_json(&bob, &path(&public), json!({"level": "all"}))
        .await
        .assert_problem(403, "not_a_member");
    put_json(&bob, &path(&private), json!({"level": "all"}))
        .await
        .assert_problem(404, "room_not_found");
    let missing = format!("/rooms/{}/notifications", uuid::Uuid::now_v7());
    put_json(&bob, &missing, json!({"level": "all"}))
        .await
        .assert_problem(404, "room_not_found");
    for bad in [json!({"level": "loud"}), json!({}), json!({"level": 1})] {
        let reply = put_json(&alice, &path(&public), bad.clone()).await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 422),
            "{bad}: {}",
            reply.status
        );
    }
    let room: Room = alice.get(&format!("/rooms/{}", public.id)).await.json();
    assert_eq!(room.notification_level, Some(NotificationLevel::None));
}
