//! Server admins: `ADMIN_USERNAMES`, `nebula admin grant|revoke`, the `/admin/` API
//! (users, deactivation) and the append-only audit log.

use nebula_wire::{Account, AdminUser, AdminUsers, AuditLog};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, password_of, send};
use crate::on_both_backends;
use crate::ws_client::Ended;

on_both_backends!(
    admin_usernames_apply_only_to_accounts_that_exist_at_start,
    the_admin_cli_grants_and_revokes,
    deactivation_stops_logins_tokens_and_sockets_at_once,
    the_users_list_pages_and_filters,
    the_audit_log_records_and_cannot_be_changed,
    removals_role_changes_and_deletes_by_others_are_audited,
);

async fn admin_usernames_apply_only_to_accounts_that_exist_at_start(backend: Backend) {
    let mut app = TestApp::spawn_with(backend, |config| {
        config.admin_usernames = vec!["Root".into(), "later".into()];
    })
    .await;
    let root = app.register("root").await;
    // Registered after the start: nothing granted.
    root.get("/admin/users")
        .await
        .assert_problem(403, "admin_required");
    assert!(!root.get("/me").await.json::<Account>().is_admin);
    app.restart().await;
    let root = app.session(root.token.clone(), root.user.clone());
    assert!(root.get("/me").await.json::<Account>().is_admin);
    assert_eq!(root.get("/admin/users").await.status, StatusCode::OK);
    // A listed name registered after this start is still nobody.
    let later = app.register("later").await;
    later
        .get("/admin/users")
        .await
        .assert_problem(403, "admin_required");
    later
        .get("/admin/audit")
        .await
        .assert_problem(403, "admin_required");
    app.post_json("/admin/users", json!({}))
        .await
        .assert_problem(405, "method_not_allowed");
    let anonymous = send(app.http.get(app.url("/admin/users"))).await;
    anonymous.assert_problem(401, "unauthorized");
}

fn nebula_admin(database_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nebula"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .arg("admin")
        .args(args)
        .output()
        .expect("run nebula admin")
}

async fn the_admin_cli_grants_and_revokes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bob = app.register("bob").await;
    let granted = nebula_admin(&app.database_url, &["grant", "BOB"]);
    assert!(granted.status.success(), "{granted:?}");
    assert!(String::from_utf8_lossy(&granted.stdout).contains("now a server admin"));
    assert_eq!(
        bob.get("/admin/users").await.status,
        StatusCode::OK,
        "at once, no restart"
    );
    let revoked = nebula_admin(&app.database_url, &["revoke", "bob"]);
    assert!(revoked.status.success(), "{revoked:?}");
    bob.get("/admin/users")
        .await
        .assert_problem(403, "admin_required");
    let unknown = nebula_admin(&app.database_url, &["grant", "nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account named nobody"));
    let invalid = nebula_admin(&app.database_url, &["grant", "no spaces"]);
    assert!(!invalid.status.success());
}

async fn deactivation_stops_logins_tokens_and_sockets_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.register("admin").await;
    assert!(
        nebula_admin(&app.database_url, &["grant", "admin"])
            .status
            .success()
    );
    let bob = app.register("bob").await;
    let mut socket = bob.ws("/ws").await;

    bob.post(
        &format!("/admin/users/{}/deactivate", admin.user.id),
        json!({}),
    )
    .await
    .assert_problem(403, "admin_required");
    let missing = admin
        .post(
            &format!("/admin/users/{}/deactivate", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    missing.assert_problem(404, "user_not_found");
    admin
        .post("/admin/users/not-a-uuid/deactivate", json!({}))
        .await
        .assert_problem(400, "invalid_path");

    let reply = admin
        .post(
            &format!("/admin/users/{}/deactivate", bob.user.id),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.json::<AdminUser>().deactivated_at.is_some());
    let (ended, _) = socket.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(4001))), "{ended:?}");
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
    // A wrong password learns nothing about the account.
    let wrong = app
        .post_json(
            "/auth/login",
            json!({"username": "bob", "password": "wrong password"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/auth/login",
            json!({"username": "nobody", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.text()),
        (unknown.status, unknown.text())
    );

    let reply = admin
        .post(
            &format!("/admin/users/{}/reactivate", bob.user.id),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json::<AdminUser>().deactivated_at.is_none());
    bob.get("/me").await.assert_problem(401, "token_revoked");
    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "bob", "password": password_of("bob")}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
}

async fn the_users_list_pages_and_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.register("admin").await;
    assert!(
        nebula_admin(&app.database_url, &["grant", "admin"])
            .status
            .success()
    );
    for name in ["carol", "Carl", "cat", "dave"] {
        app.register(name).await;
    }
    let all: AdminUsers = admin.get("/admin/users").await.json();
    assert_eq!(all.total, 5);
    assert!(
        all.users
            .iter()
            .any(|u| u.username == "admin" && u.is_admin)
    );
    let page: AdminUsers = admin
        .get("/admin/users?q=CA&page=2&page_size=2")
        .await
        .json();
    assert_eq!(page.total, 3);
    let names: Vec<_> = page.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["cat"]);
    for bad in ["page=0", "page_size=0", "page_size=101", "page=x"] {
        admin
            .get(&format!("/admin/users?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
}

async fn the_audit_log_records_and_cannot_be_changed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.register("admin").await;
    assert!(
        nebula_admin(&app.database_url, &["grant", "admin"])
            .status
            .success()
    );
    let bob = app.register("bob").await;
    app.post_json(
        "/auth/login",
        json!({"username": "bob", "password": "wrong password"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    app.post_json(
        "/auth/login",
        json!({"username": "bob", "password": password_of("bob")}),
    )
    .await;
    bob.post("/auth/logout-all", json!({})).await;
    admin
        .post(
            &format!("/admin/users/{}/deactivate", bob.user.id),
            json!({}),
        )
        .await;
    let log: AuditLog = admin.get("/admin/audit").await.json();
    let actions: Vec<_> = log.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "admin.user_deactivated",
            "logout_all",
            "login",
            "login_failed",
            "admin.granted"
        ],
        "newest first"
    );
    let deactivation = &log.entries[0];
    assert_eq!(
        deactivation.actor.as_ref().map(|a| a.id),
        Some(admin.user.id)
    );
    assert_eq!(deactivation.target, Some(format!("user:{}", bob.user.id)));
    assert_eq!(deactivation.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(log.entries[3].target.as_deref(), Some("username:bob"));
    let older: AuditLog = admin
        .get(&format!(
            "/admin/audit?before={}&limit=2",
            log.entries[1].id
        ))
        .await
        .json();
    let ids: Vec<_> = older.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, [log.entries[2].id, log.entries[3].id]);
    admin
        .get("/admin/audit?limit=0")
        .await
        .assert_problem(400, "invalid_query");
    admin
        .get("/admin/audit?before=x")
        .await
        .assert_problem(400, "invalid_query");
    // No route changes it, and neither does the database.
    admin
        .delete("/admin/audit")
        .await
        .assert_problem(405, "method_not_allowed");
    let sql_refused = try_sql(&app, "DELETE FROM audit_log").await;
    assert!(sql_refused, "the database refuses to delete audit entries");
    let sql_refused = try_sql(&app, "UPDATE audit_log SET action = 'x'").await;
    assert!(sql_refused, "the database refuses to change audit entries");
}

/// Whether the database refused the statement.
async fn try_sql(app: &TestApp, statement: &'static str) -> bool {
    if app.database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        let result = sqlx::query(statement).execute(&pool).await;
        pool.close().await;
        result.is_err()
    } else {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        let result = sqlx::query(statement).execute(&pool).await;
        pool.close().await;
        result.is_err()
    }
}

async fn removals_role_changes_and_deletes_by_others_are_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.register("admin").await;
    assert!(
        nebula_admin(&app.database_url, &["grant", "admin"])
            .status
            .success()
    );
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = owner.create_room("Club", false).await;
    bob.join(room.id).await;
    carol.join(room.id).await;
    let own = bob.say(room.id, "mine").await;
    let other = carol.say(room.id, "theirs").await;
    // Deleting one's own message is not moderation; the owner deleting carol's is.
    assert_eq!(
        bob.delete_message(room.id, own.id).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        owner.delete_message(room.id, other.id).await.status,
        StatusCode::NO_CONTENT
    );
    let role = owner
        .patch(
            &format!("/rooms/{}/members/{}", room.id, bob.user.id),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(role.status, StatusCode::OK, "{}", role.text());
    let removed = owner
        .delete(&format!("/rooms/{}/members/{}", room.id, carol.user.id))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(bob.leave(room.id).await.status, StatusCode::NO_CONTENT);

    let log: AuditLog = admin.get("/admin/audit").await.json();
    let entries: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.actor.as_ref().is_some_and(|a| a.id != admin.user.id))
        .map(|e| {
            (
                e.action.as_str(),
                e.actor.as_ref().map(|a| a.id),
                e.target.clone(),
            )
        })
        .collect();
    let target = |user: Uuid| Some(format!("room:{}/user:{user}", room.id));
    assert_eq!(
        entries,
        [
            ("member_removed", Some(owner.user.id), target(carol.user.id)),
            (
                "member_role_changed",
                Some(owner.user.id),
                target(bob.user.id)
            ),
            (
                "message_deleted_by_other",
                Some(owner.user.id),
                Some(format!("message:{}", other.id))
            ),
        ],
        "leaving and deleting one's own message are not audited"
    );
}
