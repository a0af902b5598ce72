//! The `nebula` binary: parse the config, bind, serve until SIGTERM or ctrl-c.

use std::process::ExitCode;

use clap::Parser;
use nebula::Server;
use nebula::config::{Command, Config};
use nebula::store::Store;
use tokio::net::TcpListener;

/// With `--features dhat-heap`, every allocation is recorded (see docs/BENCHMARKS.md).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// With `--features mimalloc`, mimalloc instead of the system allocator.
#[cfg(all(feature = "mimalloc", not(feature = "dhat-heap")))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Written to dhat-heap.json when dropped, i.e. after a graceful shutdown.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    // A `.env` file is optional; real environment variables win over it.
    let _ = dotenvy::dotenv();
    if let Some(code) = nebula::backup::run_if_requested().await {
        return code;
    }
    let config = Config::parse();
    let _traces = nebula::telemetry::init_logging(config.log_format);
    raise_file_limit();
    match start(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("nebula: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    if let Some(Command::Admin { action }) = &config.command {
        let store = Store::connect(&config.database_url, 1).await?;
        let message = nebula::admins::run(&store, action).await;
        store.close().await;
        println!("{}", message?);
        return Ok(());
    }
    if let Some(Command::Rekey { batch }) = &config.command {
        return rekey(&config, *batch).await;
    }
    let config = config.validate()?;
    let addr = config.config.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr} (BACKEND_ADDR): {err}"))?;
    let server = Server::build(config).await?;
    server.serve(listener, shutdown_signal()).await
}

/// `nebula rekey`: needs only the database, the media store and the keys.
async fn rekey(config: &Config, batch: i64) -> anyhow::Result<()> {
    let keyring = config.keyring()?;
    let store = Store::connect(&config.database_url, 2)
        .await?
        .with_keyring(keyring.clone());
    let storage = nebula::media::MediaStorage::open(config)?.with_keyring(keyring);
    let done = nebula::at_rest::rekey::run(&store, &storage, batch, |progress| {
        eprintln!("nebula rekey: {progress}");
    })
    .await;
    store.close().await;
    println!("re-encrypted: {}", done?);
    Ok(())
}

/// Every WebSocket is a file descriptor, and the usual soft limit (1024) would cap a node at
/// about a thousand clients: raise it to the hard limit.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open file limit"),
    }
}

/// Resolves on ctrl-c or SIGTERM (what orchestrators send before killing a container).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
