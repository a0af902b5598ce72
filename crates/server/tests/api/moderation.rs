//! Reports of messages and users, the admins' reports queue, and rooms deleted by admins.

use nebula_wire::{AdminRooms, Report, ReportReceipt, ReportStatus, Reports, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, Session, TestApp, password_of};
use crate::on_both_backends;

on_both_backends!(
    messages_and_users_can_be_reported_and_private_rooms_stay_invisible,
    admins_resolve_reports_with_each_action,
    an_admin_deletes_a_room_with_its_history_and_members_hear_of_it,
);

fn nebula_admin_grant(app: &TestApp, username: &str) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nebula"))
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .args(["admin", "grant", username])
        .output()
        .expect("nebula admin grant");
    assert!(output.status.success(), "{output:?}");
}

async fn report(session: &Session, path: &str, reason: &str) -> crate::helpers::Reply {
    session.post(path, json!({"reason": reason})).await
}

async fn messages_and_users_can_be_reported_and_private_rooms_stay_invisible(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = alice.create_room("Open", false).await;
    bob.join(room.id).await;
    let message = alice.say(room.id, "hello").await;
    let path = format!("/rooms/{}/messages/{}/report", room.id, message.id);

    let reply = report(&bob, &path, "spam").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let receipt: ReportReceipt = reply.json();
    assert_eq!(receipt.status, ReportStatus::Open);
    let raw: serde_json::Value = reply.json();
    assert_eq!(
        raw.as_object().unwrap().len(),
        3,
        "{{id, status, created_at}}: {raw}"
    );

    report(&bob, &path, "   ")
        .await
        .assert_problem(422, "validation_failed");
    report(&bob, &path, &"x".repeat(1001))
        .await
        .assert_problem(422, "validation_failed");
    bob.post(&path, json!({}))
        .await
        .assert_problem(422, "invalid_body");
    let unknown = format!("/rooms/{}/messages/{}/report", room.id, Uuid::new_v4());
    report(&bob, &unknown, "spam")
        .await
        .assert_problem(404, "message_not_found");
    report(&eve, &path, "spam")
        .await
        .assert_problem(403, "not_a_member");

    let secret = alice.create_room("Secret", true).await;
    let hidden = alice.say(secret.id, "psst").await;
    let hidden_path = format!("/rooms/{}/messages/{}/report", secret.id, hidden.id);
    report(&eve, &hidden_path, "spam")
        .await
        .assert_problem(404, "room_not_found");

    let user_path = format!("/users/{}/report", alice.user.id);
    assert_eq!(
        report(&eve, &user_path, "rude").await.status,
        StatusCode::CREATED
    );
    report(&alice, &user_path, "me")
        .await
        .assert_problem(422, "validation_failed");
    report(&eve, &format!("/users/{}/report", Uuid::new_v4()), "x")
        .await
        .assert_problem(404, "user_not_found");
    report(&eve, "/users/nope/report", "x")
        .await
        .assert_problem(400, "invalid_path");
    let anonymous = app.post_json(&user_path, json!({"reason": "x"})).await;
    anonymous.assert_problem(401, "unauthorized");
}

async fn admins_resolve_reports_with_each_action(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.register("admin").await;
    nebula_admin_grant(&app, "admin");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Open", false).await;
    bob.join(room.id).await;
    let message = bob.say(room.id, "rude words").await;
    report(
        &alice,
        &format!("/rooms/{}/messages/{}/report", room.id, message.id),
        "rude",
    )
    .await;
    report(&alice, &format!("/users/{}/report", bob.user.id), "spammer").await;
    report(&bob, &format!("/users/{}/report", alice.user.id), "revenge").await;

    bob.get("/admin/reports")
        .await
        .assert_problem(403, "admin_required");
    let open: Reports = admin.get("/admin/reports").await.json();
    assert_eq!(open.reports.len(), 3);
    let (on_message, on_bob, on_alice) = (&open.reports[0], &open.reports[1], &open.reports[2]);
    assert_eq!(on_message.kind, "message");
    assert_eq!(on_message.target_user.id, bob.user.id);
    assert_eq!(on_message.reporter.id, alice.user.id);
    admin
        .get("/admin/reports?status=bogus")
        .await
        .assert_problem(400, "invalid_query");

    let resolve = |id: Uuid| format!("/admin/reports/{id}/resolve");
    admin
        .post(&resolve(on_bob.id), json!({"action": "delete_message"}))
        .await
        .assert_problem(422, "validation_failed");
    admin
        .post(&resolve(on_bob.id), json!({"action": "ban"}))
        .await
        .assert_problem(422, "invalid_body");
    admin
        .post(&resolve(Uuid::new_v4()), json!({"action": "none"}))
        .await
        .assert_problem(404, "report_not_found");

    let done = admin
        .post(
            &resolve(on_message.id),
            json!({"action": "delete_message", "note": "gone"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json::<Report>().status, ReportStatus::Resolved);
    let deleted = alice.message(room.id, message.id).await;
    assert!(deleted.deleted_at.is_some() && deleted.content.is_empty());
    admin
        .post(&resolve(on_message.id), json!({"action": "none"}))
        .await
        .assert_problem(409, "report_resolved");

    let done = admin
        .post(&resolve(on_bob.id), json!({"action": "deactivate_user"}))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    bob.get("/me")
        .await
        .assert_problem(401, "account_deactivated");
    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "bob", "password": password_of("bob")}),
        )
        .await;
    login.assert_problem(401, "account_deactivated");

    assert_eq!(
        admin
            .post(&resolve(on_alice.id), json!({"action": "none"}))
            .await
            .status,
        StatusCode::OK
    );
    let open: Reports = admin.get("/admin/reports?status=open").await.json();
    assert!(open.reports.is_empty());
    let resolved: Reports = admin.get("/admin/reports?status=resolved").await.json();
    assert_eq!(resolved.reports.len(), 3);
    assert_eq!(resolved.reports[2].note.as_deref(), Some("gone"));
    let log: nebula_wire::AuditLog = admin.get("/admin/audit").await.json();
    let resolutions = log
        .entries
        .iter()
        .filter(|e| e.action == "admin.report_resolved")
        .count();
    assert_eq!(resolutions, 3);
}

async fn an_admin_deletes_a_room_with_its_history_and_members_hear_of_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.register("admin").await;
    nebula_admin_grant(&app, "admin");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Doomed", true).await;
    alice.add(room.id, "bob").await;
    alice.say(room.id, "first").await;
    alice.create_room("Dormant", false).await;
    let mut socket = bob.subscribed(room.id).await;

    let rooms: AdminRooms = admin.get("/admin/rooms?q=do").await.json();
    assert_eq!(rooms.total, 2, "private rooms too");
    let page: AdminRooms = admin
        .get("/admin/rooms?q=DOO&page=1&page_size=1")
        .await
        .json();
    assert_eq!((page.total, page.rooms[0].id), (1, room.id));
    admin
        .get("/admin/rooms?page=0")
        .await
        .assert_problem(400, "invalid_query");
    alice
        .get("/admin/rooms")
        .await
        .assert_problem(403, "admin_required");
    alice
        .delete(&format!("/admin/rooms/{}", room.id))
        .await
        .assert_problem(403, "admin_required");

    let reply = admin.delete(&format!("/admin/rooms/{}", room.id)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let left = socket
        .expect(|e| matches!(e, ServerEvent::MemberLeft { user, .. } if user.id == bob.user.id))
        .await;
    assert!(matches!(left, ServerEvent::MemberLeft { room_id, .. } if room_id == room.id));
    alice
        .get(&format!("/rooms/{}", room.id))
        .await
        .assert_problem(404, "room_not_found");
    alice
        .history(room.id, "")
        .await
        .assert_problem(404, "room_not_found");
    // Its one message was the only message on the server.
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM messages").await,
        0,
        "history is gone"
    );
    admin
        .delete(&format!("/admin/rooms/{}", room.id))
        .await
        .assert_problem(404, "room_not_found");
}
