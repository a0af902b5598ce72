//! `nebula-notifier`: parse config, bind, run until SIGTERM or ctrl-c.

use std::process::ExitCode;

use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;
use nebula_notifier::config::{Cli, Command, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; values in the environment win over it.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Some(Command::GenerateVapidKeys) = cli.command {
        let keys = nebula_notifier::generate_vapid_keys();
        println!("WEBPUSH_VAPID_PUBLIC_KEY={}", keys.public_key);
        println!("WEBPUSH_VAPID_PRIVATE_KEY={}", keys.private_key);
        return ExitCode::SUCCESS;
    }
    let _traces = init_logging(cli.config.log_format);

    let config = match cli.config.validate() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::from(2);
        }
    };
    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(err) => {
            tracing::error!(error = %err, "cannot install the metrics recorder");
            return ExitCode::FAILURE;
        }
    };
    nebula_notifier::metrics::describe();

    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", config.config.http_port)).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, port = config.config.http_port, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match nebula_notifier::app::run(listener, config, metrics, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "notifier failed");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, and traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see
/// `nebula_notifier::otel`); the guard flushes the last spans on exit.
fn init_logging(format: LogFormat) -> nebula_notifier::otel::Guard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,nebula_notifier=info,lapin=warn"));
    let (otel, guard) = nebula_notifier::otel::layer("nebula-notifier");
    let registry = tracing_subscriber::registry().with(otel).with(filter);
    match format {
        LogFormat::Human => registry.with(tracing_subscriber::fmt::layer()).init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .init(),
    }
    guard
}

/// Cancels `shutdown` on SIGTERM (how containers are stopped) or ctrl-c.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
