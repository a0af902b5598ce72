//! `TestApp`: the real server on port 0, on a fresh database, with typed helpers.
//!
//! Requests go through `nebula-client`: typed calls where a helper answers a typed value,
//! [`nebula_client::Client::request`] on the crate's route table where a test wants the
//! whole response ([`Reply`]) to look at its status and problem document.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nebula::Server;
use nebula::auth::Passwords;
use nebula::config::Config;
use nebula::rate_limit::RateLimits;
use nebula_client::Client;
use nebula_client::routes::{self, Route};
use nebula_wire::{AddMemberRequest, CreateRoomRequest, Message, Problem, Room, User};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The secret test servers sign with, so tests can forge expired or foreign tokens.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// An admin URL of a PostgreSQL server; each test creates its own database on it.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL from `NEBULA_TEST_DATABASE_URL`, or `None` (with the reason printed) when it
    /// is not configured. With `NEBULA_TEST_REQUIRE_SERVICES=1` a missing URL is a failure.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("NEBULA_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ if services_required() => {
                panic!("NEBULA_TEST_REQUIRE_SERVICES=1 but NEBULA_TEST_DATABASE_URL is unset")
            }
            _ => {
                eprintln!("skipped: NEBULA_TEST_DATABASE_URL is unset (PostgreSQL tests need it)");
                None
            }
        }
    }
}

pub fn services_required() -> bool {
    std::env::var("NEBULA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Runs an async test body once per backend: `sqlite` always, `postgres` when configured.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(backend) = $crate::helpers::Backend::postgres() {
                    super::$name(backend).await
                }
            }
        }
    )*};
}

/// A database that exists for one test and is removed after it.
pub enum TestDb {
    Sqlite { _dir: tempfile::TempDir },
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub async fn create(backend: &Backend) -> (TestDb, String) {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/nebula.db", dir.path().display());
                (TestDb::Sqlite { _dir: dir }, url)
            }
            Backend::Postgres(admin_url) => {
                let name = format!("nebula_test_{}", Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(admin_url)
                    .await
                    .unwrap_or_else(|err| {
                        panic!("PostgreSQL at NEBULA_TEST_DATABASE_URL unreachable: {err}")
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = with_database(admin_url, &name);
                (
                    TestDb::Postgres {
                        admin_url: admin_url.clone(),
                        name,
                    },
                    url,
                )
            }
        }
    }
}

/// `postgres://host/db?opts` with `db` replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime, which cannot block on async work: use a
            // private one on its own thread.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    config: Config,
    pub http: reqwest::Client,
    pub database_url: String,
    /// The running server's rate limiters and password hashing (only these: a handle on the
    /// whole state would keep its writers alive past shutdown).
    pub limits: Arc<RateLimits>,
    pub passwords: Passwords,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Declared last: dropped after the server has stopped.
    _db: TestDb,
}

impl TestApp {
    /// A server with test defaults (rate limits off, a known JWT secret).
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server with test defaults, then `configure` applied.
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        let (db, database_url) = TestDb::create(&backend).await;
        Self::spawn_on(db, database_url, configure).await
    }

    /// A server on a database the test prepared (e.g. written by an older schema).
    pub async fn spawn_on(
        db: TestDb,
        database_url: String,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = test_config(&database_url);
        configure(&mut config);
        let (addr, shutdown, server, (limits, passwords)) = launch(config.clone()).await;
        TestApp {
            base: format!("http://{addr}"),
            config,
            http: http_client(),
            database_url,
            limits,
            passwords,
            shutdown: Some(shutdown),
            server: Some(server),
            _db: db,
        }
    }

    /// Shuts the server down gracefully and waits for it to finish.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
        }
    }

    /// Stops the server gracefully and starts a new one on the same database (new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let (addr, shutdown, server, (limits, passwords)) = launch(self.config.clone()).await;
        self.base = format!("http://{addr}");
        self.limits = limits;
        self.passwords = passwords;
        self.shutdown = Some(shutdown);
        self.server = Some(server);
    }

    /// Stops the server and starts a new one on the same database with its settings changed
    /// by `configure` (e.g. new encryption keys), as an operator's restart would.
    pub async fn restart_with(&mut self, configure: impl FnOnce(&mut Config)) {
        configure(&mut self.config);
        self.restart().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `id` as a literal of this server's database: a blob on SQLite, a quoted UUID on
    /// PostgreSQL (for statements written into tests by hand).
    pub fn sql_uuid(&self, id: Uuid) -> String {
        if self.database_url.starts_with("sqlite:") {
            format!("X'{}'", id.simple())
        } else {
            format!("'{id}'")
        }
    }

    /// Runs one SQL statement on the server's database behind its back (to break or rig it).
    pub async fn execute_sql(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    /// One integer from the server's database behind its back (e.g. `SELECT COUNT(*) …`).
    pub async fn query_i64(&self, query: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            let value = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
            pool.close().await;
            value
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            let value = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
            pool.close().await;
            value
        }
    }

    /// The database's plan for a statement, as text (`EXPLAIN QUERY PLAN` / `EXPLAIN`).
    pub async fn query_plan(&self, statement: &str) -> String {
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            let sql = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}"));
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.into_iter()
                .map(|row| row.3)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            let sql = sqlx::AssertSqlSafe(format!("EXPLAIN {statement}"));
            let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.join("\n")
        }
    }

    /// An anonymous client of this server (sharing the test's connection pool).
    pub fn client(&self) -> Client {
        Client::with_http(self.http.clone(), &self.base)
    }

    /// An anonymous request.
    pub async fn get(&self, path: &str) -> Reply {
        send(self.client().request(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        send(self.client().request(Method::POST, path).json(&body)).await
    }

    /// Registers `username` (password `password-<username>`) and returns their session.
    pub async fn register(&self, username: &str) -> Session {
        let auth = self
            .client()
            .register(username, &password_of(username))
            .await
            .unwrap_or_else(|err| panic!("register {username}: {err}"));
        self.session(auth.token, auth.user)
    }

    /// A session for an already issued token.
    pub fn session(&self, token: String, user: User) -> Session {
        Session {
            http: self.http.clone(),
            base: self.base.clone(),
            token,
            user,
        }
    }
}

impl TestApp {
    /// Removes a member in the database only, as a removal whose events never reached this
    /// node would look (a lost bus message): no `member.left` is published.
    pub async fn remove_member_silently(&self, room_id: Uuid, user_id: Uuid) {
        const DELETE: &str = "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2";
        const BUMP: &str = "UPDATE rooms SET member_rev = member_rev + 1, \
                            member_count = member_count - 1 WHERE id = $1";
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url)
                .await
                .expect("sqlite");
            let mut tx = pool.begin().await.expect("begin");
            let query = sqlx::query(DELETE).bind(room_id).bind(user_id);
            query.execute(&mut *tx).await.expect(DELETE);
            let query = sqlx::query(BUMP).bind(room_id);
            query.execute(&mut *tx).await.expect(BUMP);
            tx.commit().await.expect("commit");
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url)
                .await
                .expect("postgres");
            let mut tx = pool.begin().await.expect("begin");
            let query = sqlx::query(DELETE).bind(room_id).bind(user_id);
            query.execute(&mut *tx).await.expect(DELETE);
            let query = sqlx::query(BUMP).bind(room_id);
            query.execute(&mut *tx).await.expect(BUMP);
            tx.commit().await.expect("commit");
            pool.close().await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Every byte that is not unreserved in a URL as `%XX`.
pub fn percent_encode(raw: &str) -> String {
    routes::percent_encode(raw)
}

pub fn password_of(username: &str) -> String {
    format!("password-{username}")
}

pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::for_database(database_url);
    config.jwt_secret = Some(JWT_SECRET.to_owned());
    config.dev_mode = false;
    config.rate_limit_auth_per_minute = 0;
    config.rate_limit_messages_per_second = 0;
    config.rate_limit_login_failures_per_account_per_hour = 0;
    config.database_max_connections = 5;
    // Uploads of tests that do not choose a store: one shared scratch directory (ids are
    // unique), not `./media` in the source tree.
    config.media_store = format!(
        "fs://{}",
        std::env::temp_dir().join("nebula-test-media").display()
    );
    config
}

/// Builds and starts a server on a free loopback port.
pub async fn start_server(
    config: Config,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
) {
    let (addr, shutdown, handle, _) = launch(config).await;
    (addr, shutdown, handle)
}

/// [`start_server`], also returning the server's rate limiters (to look at their memory) and
/// password hashing (to see how busy it is).
async fn launch(
    config: Config,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
    (Arc<RateLimits>, Passwords),
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::build(config.validate().expect("valid config"))
        .await
        .expect("server builds");
    let probes = (
        server.state().limits.clone(),
        server.state().passwords.clone(),
    );
    let (shutdown, stop) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.serve(listener, async move {
        let _ = stop.await;
    }));
    (addr, shutdown, handle, probes)
}

/// A logged-in user.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub user: User,
}

impl Session {
    /// This user's `nebula-client` (sharing the test's connection pool).
    pub fn client(&self) -> Client {
        Client::with_http(self.http.clone(), &self.base).with_token(&self.token)
    }

    /// A request to a route of the client's table with its parameters filled in.
    fn at(
        &self,
        route: Route,
        args: &[&(dyn std::fmt::Display + Sync)],
    ) -> reqwest::RequestBuilder {
        let method = Method::from_bytes(route.method.as_bytes()).expect("an HTTP method");
        self.client().request(method, &route.fill(args))
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.client().request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        send(self.client().request(Method::POST, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        send(self.client().request(Method::PATCH, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        send(self.client().request(Method::DELETE, path)).await
    }

    /// `DELETE` with a JSON body (`DELETE /me`).
    pub async fn delete_with(&self, path: &str, body: Value) -> Reply {
        send(self.client().request(Method::DELETE, path).json(&body)).await
    }

    pub async fn put(&self, path: &str) -> Reply {
        send(self.client().request(Method::PUT, path)).await
    }

    /// `PATCH …/messages/{message}` with new content.
    pub async fn edit(&self, room: Uuid, message: Uuid, content: &str) -> Reply {
        let body = json!({"content": content});
        send(
            self.at(routes::EDIT_MESSAGE, &[&room, &message])
                .json(&body),
        )
        .await
    }

    pub async fn delete_message(&self, room: Uuid, message: Uuid) -> Reply {
        send(self.at(routes::DELETE_MESSAGE, &[&room, &message])).await
    }

    /// `PUT …/reactions/{emoji}`, the emoji percent-encoded.
    pub async fn react(&self, room: Uuid, message: Uuid, emoji: &str) -> Reply {
        send(self.at(routes::REACT, &[&room, &message, &emoji])).await
    }

    pub async fn unreact(&self, room: Uuid, message: Uuid, emoji: &str) -> Reply {
        send(self.at(routes::UNREACT, &[&room, &message, &emoji])).await
    }

    /// `GET …/messages/{message}`, expecting 200.
    pub async fn message(&self, room: Uuid, message: Uuid) -> Message {
        self.client()
            .message(room, message)
            .await
            .unwrap_or_else(|err| panic!("message {message}: {err}"))
    }

    pub async fn create_room(&self, name: &str, is_private: bool) -> Room {
        let request = CreateRoomRequest {
            name: name.to_owned(),
            is_private: Some(is_private),
            description: None,
        };
        self.client()
            .create_room_with(&request)
            .await
            .unwrap_or_else(|err| panic!("create room: {err}"))
    }

    pub async fn join(&self, room: Uuid) -> Reply {
        let body = AddMemberRequest::default();
        send(self.at(routes::ADD_MEMBER, &[&room]).json(&body)).await
    }

    /// An owner or admin adds `username` to the room.
    pub async fn add(&self, room: Uuid, username: &str) -> Reply {
        let body = AddMemberRequest {
            user_id: None,
            username: Some(username.to_owned()),
        };
        send(self.at(routes::ADD_MEMBER, &[&room]).json(&body)).await
    }

    pub async fn leave(&self, room: Uuid) -> Reply {
        send(self.at(routes::LEAVE, &[&room])).await
    }

    /// Posts and expects 201.
    pub async fn say(&self, room: Uuid, content: &str) -> Message {
        self.client()
            .post_message(room, content)
            .await
            .unwrap_or_else(|err| panic!("post: {err}"))
    }

    pub async fn post_message(&self, room: Uuid, body: Value) -> Reply {
        send(self.at(routes::POST_MESSAGE, &[&room]).json(&body)).await
    }

    pub async fn history(&self, room: Uuid, query: &str) -> Reply {
        let path = routes::HISTORY.fill(&[&room]);
        send(
            self.client()
                .request(Method::GET, &format!("{path}{query}")),
        )
        .await
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("unexpected body ({err}): {}", self.text()))
    }

    /// The problem document, checking its content type and that its status matches.
    pub fn problem(&self) -> Problem {
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(
            content_type,
            "application/problem+json",
            "body: {}",
            self.text()
        );
        let problem: Problem = self.json();
        assert_eq!(problem.status, self.status.as_u16());
        problem
    }

    /// Asserts the status and the problem `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.problem().code, code, "body: {}", self.text());
    }
}

/// Sends a request and reads the whole response.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// An HTTP client for tests (plain HTTP; a TLS provider is still required to build one).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
