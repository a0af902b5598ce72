//! Finding people: prefix search by username, and one user by id.

use nebula_wire::{User, UserList};
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    users_are_found_by_username_prefix_ignoring_case,
    user_search_refuses_bad_queries,
    user_search_is_an_index_range_scan,
    a_user_is_fetched_by_id,
);

fn names(list: &UserList) -> Vec<&str> {
    list.users.iter().map(|u| u.username.as_str()).collect()
}

async fn users_are_found_by_username_prefix_ignoring_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    for name in ["Alberto", "al.x", "al_y", "bob", "Alz", "malice"] {
        app.register(name).await;
    }
    let found: UserList = alice.get("/users?q=AL").await.json();
    assert_eq!(names(&found), ["al.x", "al_y", "Alberto", "alice", "Alz"]);
    let found: UserList = alice.get("/users?q=ali").await.json();
    assert_eq!(names(&found), ["alice"]);
    let found: UserList = alice.get("/users?q=zz").await.json();
    assert!(found.users.is_empty());
    // Characters no username has match nobody (and are not patterns).
    for q in ["%25", "a%25", "al~", "al%20", "%00"] {
        let found: UserList = alice.get(&format!("/users?q={q}")).await.json();
        assert!(found.users.is_empty(), "q={q}: {:?}", names(&found));
    }

    // At most 20.
    for i in 0..25 {
        app.register(&format!("many{i:02}")).await;
    }
    let found: UserList = alice.get("/users?q=many").await.json();
    assert_eq!(found.users.len(), 20);
    assert_eq!(found.users[0].username, "many00");
    assert_eq!(found.users[19].username, "many19");
}

async fn user_search_refuses_bad_queries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    alice
        .get("/users")
        .await
        .assert_problem(400, "invalid_query");
    alice
        .get("/users?q=")
        .await
        .assert_problem(400, "invalid_query");
    alice
        .get(&format!("/users?q={}", "a".repeat(33)))
        .await
        .assert_problem(400, "invalid_query");
    app.get("/users?q=al")
        .await
        .assert_problem(401, "unauthorized");
}

async fn user_search_is_an_index_range_scan(backend: Backend) {
    let sqlite = matches!(backend, Backend::Sqlite);
    let app = TestApp::spawn(backend).await;
    app.register("alice").await;
    // Enough rows that a scan would cost more than the index.
    if sqlite {
        app.execute_sql(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000)
             INSERT INTO users (id, username, username_key, password_hash, created_at)
             SELECT randomblob(16), 'user' || i, 'user' || i, 'x', '2026-01-01T00:00:00Z' FROM s",
        )
        .await;
    } else {
        app.execute_sql(
            "INSERT INTO users (id, username, username_key, password_hash, created_at)
             SELECT gen_random_uuid(), 'user' || i, 'user' || i, 'x', now()
             FROM generate_series(1, 5000) i",
        )
        .await;
    }
    app.execute_sql("ANALYZE").await;
    let statement = if sqlite {
        "SELECT id, username, created_at FROM users
         WHERE username_key >= 'us' AND username_key < 'us~' ORDER BY username_key LIMIT 20"
    } else {
        "SELECT id, username, created_at FROM users
         WHERE username_key COLLATE \"C\" >= 'us' AND username_key COLLATE \"C\" < 'us~'
         ORDER BY username_key COLLATE \"C\" LIMIT 20"
    };
    let plan = app.query_plan(statement).await;
    if sqlite {
        assert!(
            plan.contains("SEARCH") && !plan.contains("SCAN") && !plan.contains("TEMP B-TREE"),
            "{plan}"
        );
    } else {
        assert!(
            plan.contains("users_username_prefix") && !plan.contains("Sort"),
            "{plan}"
        );
    }
}

async fn a_user_is_fetched_by_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let reply = alice.get(&format!("/users/{}", bob.user.id)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json::<User>(), bob.user);
    let raw: serde_json::Value = reply.json();
    assert!(raw.get("password_hash").is_none() && raw.get("email").is_none());
    alice
        .get(&format!("/users/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .get("/users/not-a-uuid")
        .await
        .assert_problem(400, "invalid_path");
}
