//! A private RabbitMQ node on free ports, for tests that stop and restart the broker.
//! The machine's shared broker (5672) is never touched.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::process::{Child, Command};

/// One node; stopped (and its files removed) when dropped.
pub struct RabbitNode {
    bin: PathBuf,
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    dist_port: u16,
    child: Option<Child>,
}

/// Where the real start scripts live. The `/usr/sbin` wrappers switch to the `rabbitmq`
/// user, which could not write our temporary directory.
fn scripts() -> Option<PathBuf> {
    ["/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("rabbitmq-server").exists() && dir.join("rabbitmqctl").exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RabbitNode {
    /// Starts a node, or returns why it cannot.
    pub async fn start() -> Result<RabbitNode, String> {
        let bin = scripts().ok_or("rabbitmq-server is not installed")?;
        let dir = tempfile::Builder::new()
            .prefix("nebula-rabbit-")
            .tempdir()
            .map_err(|err| err.to_string())?;
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")
            .map_err(|err| err.to_string())?;
        // Our own config file: the system one pins the listener to 5672.
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .map_err(|err| err.to_string())?;
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").map_err(|err| err.to_string())?;
        let mut node = RabbitNode {
            bin,
            node: format!("nebula-test-{}@localhost", uuid::Uuid::new_v4().simple()),
            dir,
            port,
            dist_port,
            child: None,
        };
        node.boot().await?;
        Ok(node)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn command(&self, script: &str) -> Command {
        let dir: &Path = self.dir.path();
        let mut command = Command::new(self.bin.join(script));
        command
            .current_dir(dir)
            // The Erlang cookie lives in $HOME; server and rabbitmqctl share it.
            .env("HOME", dir)
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
        command
    }

    /// Starts the node (again, on the same data) and waits until it accepts AMQP.
    pub async fn boot(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("server.out"))
            .map_err(|err| err.to_string())?;
        let log2 = log.try_clone().map_err(|err| err.to_string())?;
        let child = self
            .command("rabbitmq-server")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("cannot run rabbitmq-server: {err}"))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Ok(connection)) = tokio::time::timeout(
                Duration::from_secs(2),
                Connection::connect(&self.url(), ConnectionProperties::default()),
            )
            .await
            {
                let _ = connection.close(200, "OK".into()).await;
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "rabbitmq-server exited with {status}; see {}",
                    self.dir.path().display()
                ));
            }
            if tokio::time::Instant::now() > deadline {
                return Err("rabbitmq-server did not accept connections within 90 s".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the node the way an operator would, and waits for it to be gone.
    pub async fn stop(&mut self) {
        let _ = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .arg("stop")
            .output()
            .await;
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if self.child.is_some() {
            let mut command = self.command("rabbitmqctl").into_std();
            let _ = command.arg("-n").arg(&self.node).arg("stop").output();
            if let Some(child) = self.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
