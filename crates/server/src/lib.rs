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
pub mod admins;
pub mod at_rest;
pub mod auth;
pub mod backup;
pub mod bus;
pub mod calls;
pub mod cluster;
pub mod config;
pub mod digest;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod mail;
pub mod media;
pub mod mentions;
pub mod outbox;
pub mod presence;
pub mod rate_limit;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod user_events;
pub mod web;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Passwords, Standings, Tokens};
use crate::bus::Bus;
use crate::bus::{NatsBus, RedisBus};
use crate::calls::Calls;
use crate::cluster::{Cluster, Engine};
use crate::config::ValidConfig;
use crate::gateway::registry::UserConnections;
use crate::gateway::typing::TypingRelay;
use crate::hub::Hub;
use crate::presence::Presence;
use crate::presence::cluster::ClusterPresence;
use crate::rate_limit::RateLimits;
use crate::state::{AppState, Services};
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
        let media_urls = media::MediaUrls::new(&config.jwt_secret, settings.media_url_ttl_seconds);
        let store = Store::connect(&settings.database_url, settings.database_max_connections)
            .await?
            .with_media_urls(media_urls.clone())
            .with_keyring(config.keyring.clone());
        let media_storage =
            media::MediaStorage::open(settings)?.with_keyring(config.keyring.clone());
        let mut tasks = JoinSet::new();
        let shutdown = CancellationToken::new();
        let metrics = telemetry::metrics_handle();
        telemetry::register_metrics();
        let cluster = match settings.cluster_url() {
            Some((url, prefix)) => Some(Cluster::connect(url, prefix).await?),
            None => None,
        };
        let hub = Arc::new(Hub::default());
        let bus = match &cluster {
            Some(cluster) => match cluster.engine() {
                Engine::Redis(redis) => Bus::Redis(RedisBus::start(
                    hub,
                    cluster.clone(),
                    redis.clone(),
                    store.clone(),
                    Duration::from_secs(settings.bus_reconcile_seconds),
                    shutdown.clone(),
                    &mut tasks,
                )),
                Engine::Nats(nats) => Bus::Nats(NatsBus::start(
                    hub,
                    cluster.clone(),
                    nats.clone(),
                    store.clone(),
                    Duration::from_secs(settings.bus_reconcile_seconds),
                    shutdown.clone(),
                    &mut tasks,
                )),
            },
            None => {
                // In one process the bus is a function call: always connected.
                metrics::gauge!("nebula_bus_connected").set(1.0);
                Bus::local(hub)
            }
        };
        let presence = Arc::new(Presence::new(
            bus.clone(),
            cluster.as_ref().map(|cluster| {
                ClusterPresence::start(
                    cluster.clone(),
                    bus.clone(),
                    Duration::from_secs(settings.presence_ttl_seconds),
                    shutdown.clone(),
                    &mut tasks,
                )
            }),
        ));
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
            Duration::from_millis(settings.ws_write_delay_ms),
            &mut tasks,
        );
        let mut limits = RateLimits::new(
            settings.rate_limit_auth_per_minute,
            settings.rate_limit_messages_per_second,
        )
        .with_frames(settings.ws_user_frames_per_second)
        .with_login_failures(settings.rate_limit_login_failures_per_account_per_hour);
        if let Some(cluster) = &cluster {
            limits = limits.shared(cluster.clone());
        }
        let limits = Arc::new(limits);
        let typing = TypingRelay::new(bus.clone());
        tasks.spawn(forget_idle(
            limits.clone(),
            typing.clone(),
            shutdown.clone(),
        ));
        let outbox = outbox::start(
            &config,
            &store,
            presence.clone(),
            shutdown.clone(),
            &mut tasks,
        )
        .await?;
        digest::start(
            &config,
            &store,
            presence.clone(),
            shutdown.clone(),
            &mut tasks,
        );
        let calls = Calls::start(
            cluster.as_ref(),
            presence.clone(),
            config.call_ring_timeout(),
            shutdown.clone(),
            &mut tasks,
        )
        .await;
        let user_events =
            user_events::UserEvents::start(cluster.as_ref(), shutdown.clone(), &mut tasks).await;
        let media_janitor = media::janitor::JanitorHandle::default();
        tasks.spawn(media::janitor::run(
            store.clone(),
            media_storage.clone(),
            Duration::from_secs(settings.media_sweep_seconds),
            Duration::from_secs(settings.media_orphan_seconds),
            media_janitor.clone(),
            shutdown.clone(),
        ));
        let standings = Standings::start(cluster.as_ref(), shutdown.clone(), &mut tasks).await;
        admins::apply_admin_usernames(&store, &settings.admin_usernames).await?;
        tracing::info!(
            database = store.kind(),
            writers = writer_count,
            cluster = cluster.as_ref().map(Cluster::engine_name),
            "store ready"
        );
        let state = AppState::new(Services {
            tokens: Tokens::new(
                &config.jwt_secret,
                Duration::from_secs(settings.jwt_ttl_seconds),
            ),
            passwords: Passwords::new(settings.password_hash_queue).await?,
            standings,
            mail: crate::mail::Mails::new(&config.public_url(), &config.jwt_secret),
            config: Arc::new(config),
            store,
            writers,
            bus,
            limits,
            metrics,
            presence,
            shutdown,
            connections: TaskTracker::new(),
            outbox,
            typing,
            user_connections: UserConnections::default(),
            calls,
            user_events,
            media_storage,
            media_urls,
            media_inspector: media::inspect::Inspector::default(),
            media_janitor,
        });
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
        let connections = state.connections.clone();
        let app = http::router(state);
        tracing::info!(addr = %listener.local_addr()?, "listening");
        // Events are small frames written one at a time: with Nagle's algorithm a frame written
        // while the previous one is unacknowledged would wait for the peer's (delayed) ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await?;
        // WebSocket tasks outlive the HTTP server: they are closing with 1012 and answering
        // their in-flight messages. Once they and the router are gone, the writers drain and stop.
        connections.close();
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("WebSocket connections did not finish within the grace period");
        }
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

/// Forgets idle rate-limit buckets and typing entries now and then, so their memory follows
/// active clients, not every client ever seen.
async fn forget_idle(limits: Arc<RateLimits>, typing: TypingRelay, shutdown: CancellationToken) {
    let mut every_ten_seconds = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = every_ten_seconds.tick() => {
                limits.forget_idle();
                typing.forget_idle();
            }
            () = shutdown.cancelled() => return,
        }
    }
}
