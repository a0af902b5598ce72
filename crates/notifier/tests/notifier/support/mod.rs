//! Shared test fixtures: databases, a loopback push service, tokens, events, brokers.

pub mod ece;
pub mod push_endpoint;
pub mod rabbit;
pub mod rabbit_node;

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header};
use nebula_notifier::{
    Dispatcher, EndpointPolicy, NewSubscription, PushSender, PushStore, VapidKeys,
};
use nebula_wire::User;
use nebula_wire::notify::{MemberChange, MemberNotification};
use push_endpoint::{Browser, PushEndpoint};
use serde_json::json;
use sqlx::Connection as _;
use uuid::Uuid;

pub const JWT_SECRET: &str = "notifier-tests-secret-0123456789abcdef";
pub const SUBJECT: &str = "mailto:tests@nebula.invalid";

/// Whether missing services fail the run instead of skipping (CI sets it).
pub fn services_required() -> bool {
    std::env::var("NEBULA_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Skips (returns `None`, printing why) or, when services are required, panics.
pub fn unavailable<T>(test: &str, why: &str) -> Option<T> {
    assert!(
        !services_required(),
        "{test}: {why} (NEBULA_TEST_REQUIRE_SERVICES=1)"
    );
    eprintln!("skipping {test}: {why}");
    None
}

/// A store and whatever keeps its database alive.
pub struct TestDb {
    pub store: PushStore,
    url: String,
    _sqlite_dir: Option<tempfile::TempDir>,
    _postgres: Option<PgDatabase>,
}

impl TestDb {
    /// The database's URL, for a second pool on it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("notifier.db").display());
        let store = PushStore::connect(&url, 4).await.unwrap();
        TestDb {
            store,
            url,
            _sqlite_dir: Some(dir),
            _postgres: None,
        }
    }

    /// A fresh PostgreSQL database on `NEBULA_TEST_DATABASE_URL`, dropped afterwards.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("NEBULA_TEST_DATABASE_URL") else {
            return unavailable(test, "NEBULA_TEST_DATABASE_URL is not set");
        };
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(admin) => admin,
            Err(err) => return unavailable(test, &format!("cannot reach PostgreSQL: {err}")),
        };
        let name = format!("nebula_notifier_test_{}", Uuid::new_v4().simple());
        // The name is ours: "nebula_notifier_test_" + hex.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let guard = PgDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = with_database(&admin_url, &name);
        let store = PushStore::connect(&url, 4).await.unwrap();
        Some(TestDb {
            store,
            url,
            _sqlite_dir: None,
            _postgres: Some(guard),
        })
    }
}

fn with_database(url: &str, name: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// Drops its database when the test ends, passed or failed.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Store + dispatcher + loopback push service, all real. Unless built `with_policy`, the
/// sender is allowed to push to private endpoints (`WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`): the push
/// service is on 127.0.0.1.
pub struct Pipeline {
    pub db: TestDb,
    pub vapid: VapidKeys,
    pub dispatcher: Dispatcher,
    pub endpoint: PushEndpoint,
}

impl Pipeline {
    pub async fn sqlite() -> Pipeline {
        Pipeline::over(TestDb::sqlite().await).await
    }

    /// A pipeline whose sender may push to the loopback push service.
    pub async fn over(db: TestDb) -> Pipeline {
        Pipeline::with_policy(db, EndpointPolicy::new(true)).await
    }

    /// A pipeline whose sender pushes where `policy` allows.
    pub async fn with_policy(db: TestDb, policy: EndpointPolicy) -> Pipeline {
        let keys = nebula_notifier::generate_vapid_keys();
        let vapid =
            VapidKeys::from_base64(&keys.private_key, Some(&keys.public_key), SUBJECT).unwrap();
        let endpoint = PushEndpoint::start(vapid.public_key(), SUBJECT).await;
        let sender = PushSender::new(vapid.clone(), Duration::from_secs(3600), policy).unwrap();
        let dispatcher = Dispatcher::new(db.store.clone(), sender);
        Pipeline {
            db,
            vapid,
            dispatcher,
            endpoint,
        }
    }

    pub fn store(&self) -> &PushStore {
        &self.db.store
    }

    /// A browser of `user` that subscribed (stored directly, as the HTTP API would).
    pub async fn subscribe(&self, user: &User) -> Browser {
        let browser = self.endpoint.new_browser();
        let new = NewSubscription {
            endpoint: browser.endpoint.clone(),
            p256dh: browser.p256dh.clone(),
            auth: browser.auth.clone(),
        };
        self.store()
            .upsert_subscription(user.id, &new)
            .await
            .unwrap();
        browser
    }
}

pub fn user(name: &str) -> User {
    User {
        id: Uuid::now_v7(),
        username: name.to_owned(),
        created_at: Utc::now(),
    }
}

/// A version-1 event of `actor` in a room whose other members are `recipients`.
pub fn event(change: MemberChange, actor: &User, recipients: &[&User]) -> MemberNotification {
    MemberNotification {
        version: MemberNotification::VERSION,
        event_id: Uuid::now_v7(),
        change,
        room_id: Uuid::now_v7(),
        room_name: "general".to_owned(),
        user: actor.clone(),
        recipients: recipients.iter().map(|user| user.id).collect(),
        occurred_at: Utc::now(),
    }
}

/// An access token as the chat server issues it, expiring `ttl_secs` from now.
pub fn token_with(secret: &str, user: &User, ttl_secs: i64) -> String {
    let now = Utc::now().timestamp();
    let claims =
        json!({"sub": user.id, "username": user.username, "iat": now, "exp": now + ttl_secs});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn token(user: &User) -> String {
    token_with(JWT_SECRET, user, 3600)
}
