//! The simulator spread over two nodes of one cluster (`--urls`): users connect round-robin,
//! so most deliveries cross the Redis bus, and every one must still arrive exactly once, in
//! order. Needs `NEBULA_TEST_DATABASE_URL` (a PostgreSQL server: nodes share a database, which
//! SQLite cannot do across servers) and `NEBULA_TEST_REDIS_URL`; skipped without them unless
//! services are required.

use std::time::Duration;

use common::spawn_node;
use nebula_bench::{Options, Scenario};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_run_over_two_nodes_delivers_everything_in_order() {
    let var = |name: &str| std::env::var(name).ok().filter(|url| !url.is_empty());
    let (Some(postgres), Some(redis)) = (
        var("NEBULA_TEST_DATABASE_URL"),
        var("NEBULA_TEST_REDIS_URL"),
    ) else {
        assert!(
            var("NEBULA_TEST_REQUIRE_SERVICES").is_none(),
            "NEBULA_TEST_REQUIRE_SERVICES is set but NEBULA_TEST_DATABASE_URL or \
             NEBULA_TEST_REDIS_URL is not"
        );
        eprintln!("skipped: NEBULA_TEST_DATABASE_URL or NEBULA_TEST_REDIS_URL is unset");
        return;
    };
    let database = Database::create(&postgres).await;
    let db = database.url.clone();
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let (first, stop_first) = spawn_node(&db, &redis, &prefix).await;
    let (second, stop_second) = spawn_node(&db, &redis, &prefix).await;

    let mut options = Options::new(first.clone(), Scenario::Chat);
    options.urls = vec![first, second];
    options.users = 9;
    options.rooms = 3;
    options.senders = 4;
    options.rate = 10.0;
    options.duration = Duration::from_secs(3);
    options.message_size = 64;
    // Both nodes run in this process: one PID twice, enough to see per-node figures listed.
    options.server_pids = vec![std::process::id(), std::process::id()];
    let report = nebula_bench::run(options, std::future::pending())
        .await
        .expect("the run completes");
    println!("{report}");

    assert_eq!(report.connections, 9, "{report}");
    assert!(report.sent >= 40, "{report}");
    assert_eq!(report.acked, report.sent, "{report}");
    let delivery = report.delivery;
    assert_eq!(
        (delivery.missing, delivery.duplicates, delivery.out_of_order),
        (0, 0, 0),
        "{report}"
    );
    // Rooms of 3 (user i in room i % 3, on node i % 2: room 0 is users 0, 3, 6 on nodes 0,
    // 1, 0): every room has members on both nodes, and every message reaches all 3.
    assert_eq!(delivery.expected, report.sent * 3, "{report}");
    assert_eq!(delivery.delivered, delivery.expected, "{report}");
    assert!(report.timings.drained && report.is_clean(), "{report}");
    assert_eq!(report.resources.per_server_cpu_s.len(), 2, "{report}");
    assert!(report.to_string().contains("per node"), "{report}");

    let _ = stop_first.send(());
    let _ = stop_second.send(());
    database.drop().await;
}

/// A fresh PostgreSQL database on the test server.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin_url: &str) -> Database {
        let name = format!("nebula_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .expect("PostgreSQL at NEBULA_TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create the test database");
        admin.close().await;
        // postgres://user@host:port/db?params → the same server, this database.
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url, None), |(base, query)| (base, Some(query)));
        let server_end = base.find("://").map_or(0, |i| i + 3);
        let server = base[server_end..]
            .find('/')
            .map_or(base, |slash| &base[..server_end + slash]);
        let url = match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        };
        Database {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }

    /// Drops it (FORCE: the stopped nodes' pools may still hold connections).
    async fn drop(self) {
        if let Ok(admin) = sqlx::PgPool::connect(&self.admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
            admin.close().await;
        }
    }
}
