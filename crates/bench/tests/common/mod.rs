//! The real server, in-process on port 0, for the tests that run the simulator against it.

use nebula::Server;
use nebula::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const JWT_SECRET: &str = "bench-test-secret-bench-test-secret-0123456789";

/// Starts a server on a fresh SQLite database; returns its base URL and a stop switch.
#[allow(dead_code)] // The cluster test starts nodes instead.
pub async fn spawn_server(dir: &tempfile::TempDir) -> (String, oneshot::Sender<()>) {
    let mut config = Config::for_database(format!("sqlite://{}/t.db", dir.path().display()));
    config.jwt_secret = Some(JWT_SECRET.to_owned());
    config.dev_mode = false;
    config.rate_limit_auth_per_minute = 0;
    config.rate_limit_messages_per_second = 0;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::build(config.validate().expect("valid config"))
        .await
        .expect("server builds");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}

/// Starts one node of a cluster: a server on the database `db` sharing Redis (`redis_url`,
/// keys under `prefix`) with the other nodes; returns its base URL and a stop switch.
#[allow(dead_code)] // Not every test binary that includes this module starts a cluster.
pub async fn spawn_node(db: &str, redis_url: &str, prefix: &str) -> (String, oneshot::Sender<()>) {
    let mut config = Config::for_database(db.to_owned());
    config.jwt_secret = Some(JWT_SECRET.to_owned());
    config.dev_mode = false;
    config.rate_limit_auth_per_minute = 0;
    config.rate_limit_messages_per_second = 0;
    config.redis_url = Some(redis_url.to_owned());
    config.redis_prefix = prefix.to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::build(config.validate().expect("valid config"))
        .await
        .expect("server builds");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}
