//! A private `s3s-fs` (a local S3-compatible server that checks SigV4 signatures) on a free
//! port, for one test. Found through `NEBULA_TEST_S3FS_BIN` or on `PATH`; without it the S3
//! variants are skipped with a reason, or fail under `NEBULA_TEST_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::services_required;

pub const BUCKET: &str = "nebula-media";
pub const ACCESS_KEY: &str = "nebula-test-access";
pub const SECRET_KEY: &str = "nebula-test-secret-key-0123456789";

pub struct S3Server {
    pub endpoint: String,
    _child: Child,
}

fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("NEBULA_TEST_S3FS_BIN")
        && !path.is_empty()
    {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
}

impl S3Server {
    /// Starts a server storing under `root` with one bucket, and waits until it accepts
    /// connections.
    pub async fn start(root: &Path) -> Option<S3Server> {
        let Some(binary) = binary() else {
            if services_required() {
                panic!(
                    "NEBULA_TEST_REQUIRE_SERVICES=1 but s3s-fs was not found (set NEBULA_TEST_S3FS_BIN or install it: cargo install s3s-fs --features binary --locked)"
                );
            }
            eprintln!("skipped: s3s-fs not found (NEBULA_TEST_S3FS_BIN or PATH); S3 tests need it");
            return None;
        };
        let data = root.join("s3");
        std::fs::create_dir_all(data.join(BUCKET)).expect("bucket directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "s3s-fs did not start listening on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: child,
        })
    }
}
