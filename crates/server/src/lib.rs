//! Nebula: a real-time chat server.
//!
//! The layout follows the path of a message:
//! - [`http`]: the REST API, one module per resource;
//! - [`writer`]: group commit of messages into the [`store`] (SQLite or PostgreSQL);
//! - [`bus`]: carries events between nodes; [`hub`]: fans them out to this node's sockets.
//!
//! `main` parses the [`config::Config`] and calls [`Server::build`] then [`Server::serve`];
//! integration tests do the same on port 0.

pub mod access;
pub mod auth;
pub mod bus;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod rate_limit;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{Passwords, Tokens};
use crate::bus::Bus;
use crate::config::ValidConfig;
use crate::hub::Hub;
use crate::rate_limit::RateLimits;
use crate::state::AppState;
use crate::store::Store;
use crate::writer::Writers;

/// A server whose dependencies are connected, ready to serve.
pub struct Server {
    state: AppState,
    /// Writers and other background work, awaited on shutdown.
    tasks: JoinSet<()>,
}

impl Server {
    /// Connects to the database (running migrations) and starts the background tasks.
    pub async fn build(config: ValidConfig) -> anyhow::Result<Self> {
        let settings = &config.config;
        let store =
            Store::connect(&settings.database_url, settings.database_max_connections).await?;
        let mut tasks = JoinSet::new();
        let bus = Bus::local(Arc::new(Hub::default()));
        let writer_count = match (settings.writers, store.kind()) {
            (0, "sqlite") => 1,
            (0, _) => 4,
            (n, _) => n,
        };
        let writers = Writers::start(
            store.clone(),
            bus.clone(),
            writer_count,
            settings.write_batch_max,
            &mut tasks,
        );
        let limits = Arc::new(RateLimits::new(
            settings.rate_limit_auth_per_minute,
            settings.rate_limit_messages_per_second,
        ));
        let shutdown = CancellationToken::new();
        tasks.spawn(forget_idle_rate_limits(limits.clone(), shutdown.clone()));
        tracing::info!(
            database = store.kind(),
            writers = writer_count,
            "store ready"
        );
        let state = AppState {
            tokens: Tokens::new(
                &config.jwt_secret,
                Duration::from_secs(settings.jwt_ttl_seconds),
            ),
            passwords: Passwords::new().await?,
            config: Arc::new(config),
            store,
            writers,
            bus,
            limits,
            metrics: telemetry::metrics_handle(),
            shutdown,
        };
        Ok(Server { state, tasks })
    }

    /// The application state (for embedding and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting, lets in-flight requests
    /// finish, waits for the writers to commit what they hold, and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server { state, mut tasks } = self;
        let grace = Duration::from_secs(state.config.config.shutdown_grace_seconds);
        let store = state.store.clone();
        let token = state.shutdown.clone();
        let app = http::router(state, axum::Router::new());
        tracing::info!(addr = %listener.local_addr()?, "listening");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await?;
        // The router (and with it the last writer handle) is gone: writers drain and stop.
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not finish within the grace period");
        }
        store.close().await;
        tracing::info!("shut down");
        Ok(())
    }
}

async fn forget_idle_rate_limits(limits: Arc<RateLimits>, shutdown: CancellationToken) {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every_minute.tick() => limits.forget_idle(),
            () = shutdown.cancelled() => return,
        }
    }
}
