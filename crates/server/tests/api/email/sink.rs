//! A real SMTP server for the tests: Debian's aiosmtpd (`python3 -m aiosmtpd`) on a free
//! loopback port, with `tests/fixtures/mail_sink.py` writing each message it receives, parsed,
//! as a JSON file into a directory of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};

/// One received message.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub content_type: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub struct SmtpSink {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a sink on a free port and waits until it accepts connections.
    pub async fn start() -> SmtpSink {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("addr").port()
        };
        let mut sink = SmtpSink {
            port,
            child: None,
            dir: tempfile::tempdir().expect("a mail directory"),
        };
        sink.resume().await;
        sink
    }

    /// `smtp://127.0.0.1:PORT` (plain: the sink speaks no TLS).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops the server (the port stays ours to resume on).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// (Re)starts the server on the same port, waiting until it accepts connections.
    pub async fn resume(&mut self) {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "mail_sink.DirSink"])
            .arg(self.dir.path())
            .env("PYTHONPATH", fixtures)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3-aiosmtpd is installed (apt-get install python3-aiosmtpd)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the SMTP sink did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("the mail directory")
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|path| {
                serde_json::from_slice(&std::fs::read(path).expect("a mail file"))
                    .expect("a mail record")
            })
            .collect()
    }

    /// Waits until `count` messages have arrived and returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} mails; got {}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
