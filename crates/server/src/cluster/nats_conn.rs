//! The NATS engine's connection: one client (core pub/sub, reconnecting by itself and
//! re-subscribing what it had) and JetStream key-value buckets for presence and rate limits.
//!
//! Buckets are created on first use rather than at start, so a node starts while NATS is down;
//! a failed operation forgets its bucket handle so the next one recreates it (a NATS restarted
//! without its store has lost the buckets). Bucket names are the cluster prefix, cleaned to the
//! characters JetStream allows, plus a suffix: several clusters may share one NATS.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;

use super::EngineError;

/// How long one key-value operation may take before the caller falls back to local behaviour.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);

/// The client's connection as the bus follows it: `epoch` counts (re)connections, so a
/// subscriber that saw epoch 3 knows a change to 4 means "reconnected; reconcile".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connection {
    pub connected: bool,
    pub epoch: u64,
}

pub struct NatsEngine {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    bucket_prefix: String,
    buckets: Mutex<HashMap<&'static str, kv::Store>>,
    connection: watch::Receiver<Connection>,
}

impl NatsEngine {
    /// Returns at once; the client connects (and reconnects) in the background.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EngineError> {
        let (events, connection) = watch::channel(Connection::default());
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            // Fast redelivery matters more here than politeness to a restarting server: events
            // missed while away are repaired, but only after reconnecting.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts.max(1) as u64).min(2000))
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => events.send_modify(|state| {
                            state.connected = true;
                            state.epoch += 1;
                        }),
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            events.send_modify(|state| state.connected = false);
                        }
                        other => tracing::debug!(event = %other, "NATS connection event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(EngineError::nats)?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(COMMAND_TIMEOUT);
        let bucket_prefix = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(NatsEngine {
            client,
            jetstream,
            bucket_prefix,
            buckets: Mutex::new(HashMap::new()),
            connection,
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Follows (re)connections; see [`Connection`].
    pub fn connection(&self) -> watch::Receiver<Connection> {
        self.connection.clone()
    }

    pub async fn ping(&self) -> Result<(), String> {
        if !self.connected() {
            return Err("disconnected".to_owned());
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// Publishes now, or fails while disconnected: the client would otherwise buffer the
    /// message and deliver it late after a reconnect, when receivers have already repaired
    /// from the database (Redis's behaviour, which the rest of the cluster code assumes).
    pub async fn publish(&self, subject: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        if !self.connected() {
            return Err(EngineError::Nats("disconnected".to_owned()));
        }
        self.client
            .publish(subject.to_owned(), bytes.into())
            .await
            .map_err(EngineError::nats)
    }

    /// Subscribes and waits for the server to have it (a flush is a round trip after the SUB).
    pub async fn subscribe(&self, subject: &str) -> Result<BoxStream<'static, Bytes>, EngineError> {
        let subscriber = self
            .client
            .subscribe(subject.to_owned())
            .await
            .map_err(EngineError::nats)?;
        self.confirm().await?;
        Ok(subscriber.map(|message| message.payload).boxed())
    }

    /// Returns once the server has processed everything sent before (e.g. a SUB).
    pub async fn confirm(&self) -> Result<(), EngineError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, self.client.flush()).await {
            Ok(result) => result.map_err(EngineError::nats),
            Err(_) => Err(EngineError::Nats("flush timed out".to_owned())),
        }
    }

    /// The bucket `{prefix}_{suffix}`, created if missing, its values expiring `max_age`
    /// after their last write (`ZERO`: never).
    pub async fn bucket(
        &self,
        suffix: &'static str,
        max_age: Duration,
    ) -> Result<kv::Store, EngineError> {
        if let Some(store) = self.lock().get(suffix) {
            return Ok(store.clone());
        }
        let name = format!("{}_{suffix}", self.bucket_prefix);
        // The bucket's stream, as async-nats's `create_key_value` would make it; created here
        // because that call first reads the account's info, whose nats-server 2.9 form the
        // client no longer parses.
        let config = jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            duplicate_window: if max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                max_age.min(Duration::from_secs(120))
            },
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        let create = async {
            if let Err(err) = self.jetstream.create_stream(config).await {
                // Created by another node with other settings (say, another TTL): use it.
                tracing::debug!(error = %err, bucket = %name, "creating a bucket failed; opening it");
            }
            self.jetstream
                .get_key_value(name)
                .await
                .map_err(EngineError::nats)
        };
        let store = tokio::time::timeout(COMMAND_TIMEOUT * 2, create)
            .await
            .map_err(|_| EngineError::Nats("creating a bucket timed out".to_owned()))??;
        self.lock().insert(suffix, store.clone());
        Ok(store)
    }

    /// Forgets a bucket handle after a failed operation (see the module docs).
    pub fn forget_bucket(&self, suffix: &'static str) {
        self.lock().remove(suffix);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, kv::Store>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs one key-value operation with the command timeout, mapping every failure.
pub async fn timed<T, E: std::fmt::Display>(
    operation: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, operation).await {
        Ok(result) => result.map_err(EngineError::nats),
        Err(_) => Err(EngineError::Nats("timed out".to_owned())),
    }
}

/// What [`compare_and_swap`] does with a key, given its current value.
pub enum Swap<T> {
    /// Leave it; the result is `T`.
    Keep(T),
    /// Write this value.
    Put(Bytes, T),
    /// Delete the key.
    Delete(T),
}

/// Conflicting writers retried before giving up (they only collide on one key: one user's
/// bucket, one user's presence in one room).
const CAS_ATTEMPTS: usize = 16;

/// Reads `key` and applies `change` to its value (`None`: no value, or deleted), writing only
/// if nobody wrote the key in between, and retrying otherwise: the key-value equivalent of the
/// Redis scripts, atomic per key.
pub async fn compare_and_swap<T>(
    kv: &kv::Store,
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Swap<T>,
) -> Result<T, EngineError> {
    for _ in 0..CAS_ATTEMPTS {
        let entry = timed(kv.entry(key)).await?;
        let revision = entry.as_ref().map(|entry| entry.revision);
        let value = entry
            .as_ref()
            .filter(|entry| entry.operation == kv::Operation::Put)
            .map(|entry| entry.value.as_ref());
        match change(value) {
            Swap::Keep(result) => return Ok(result),
            Swap::Put(bytes, result) => {
                let written = match revision {
                    Some(revision) => {
                        tokio::time::timeout(COMMAND_TIMEOUT, kv.update(key, bytes, revision))
                            .await
                            .map(|done| {
                                done.map_err(|err| {
                                    err.kind() == kv::UpdateErrorKind::WrongLastRevision
                                })
                            })
                    }
                    None => tokio::time::timeout(COMMAND_TIMEOUT, kv.create(key, bytes))
                        .await
                        .map(|done| {
                            done.map_err(|err| err.kind() == kv::CreateErrorKind::AlreadyExists)
                        }),
                };
                match written {
                    Ok(Ok(_)) => return Ok(result),
                    Ok(Err(true)) => continue,
                    Ok(Err(false)) => return Err(EngineError::Nats("write failed".to_owned())),
                    Err(_) => return Err(EngineError::Nats("timed out".to_owned())),
                }
            }
            Swap::Delete(result) => {
                if revision.is_none() {
                    return Ok(result);
                }
                // A failed conditional delete does not say why: read again, which fails
                // properly if NATS is away.
                if let Ok(Ok(())) =
                    tokio::time::timeout(COMMAND_TIMEOUT, kv.delete_expect_revision(key, revision))
                        .await
                {
                    return Ok(result);
                }
            }
        }
    }
    Err(EngineError::Nats(format!(
        "{key}: too many conflicting writers"
    )))
}

/// The current value of every key of `kv` matching `filter` (a key pattern: `*` one token,
/// `>` the rest), deleted keys left out. One ephemeral ordered consumer that delivers the last
/// message per key and stops at the end; costs the number of matching keys.
pub async fn list(
    nats: &NatsEngine,
    kv: &kv::Store,
    filter: &str,
) -> Result<Vec<(String, Bytes)>, EngineError> {
    if !nats.connected() {
        return Err(EngineError::Nats("disconnected".to_owned()));
    }
    let read = async {
        let consumer = kv
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: nats.client.new_inbox(),
                filter_subject: format!("{}{filter}", kv.prefix),
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(EngineError::nats)?;
        let mut found = Vec::new();
        let name = consumer.cached_info().name.clone();
        // Done with it as soon as it is read: left alone, the server keeps an ephemeral
        // consumer for its inactivity threshold, and this runs on every room subscription.
        let stream = kv.stream.clone();
        let _cleanup = scopeguard(move || {
            tokio::spawn(async move {
                let _ = stream.delete_consumer(&name).await;
            });
        });
        if consumer.cached_info().num_pending == 0 {
            return Ok(found);
        }
        let mut messages = consumer.messages().await.map_err(EngineError::nats)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(EngineError::nats)?;
            let pending = message.info().map_err(EngineError::nats)?.pending;
            let deleted = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("KV-Operation"))
                .is_some();
            if !deleted && let Some(key) = message.subject.strip_prefix(kv.prefix.as_str()) {
                found.push((key.to_owned(), message.payload.clone()));
            }
            if pending == 0 {
                break;
            }
        }
        Ok(found)
    };
    tokio::time::timeout(COMMAND_TIMEOUT * 3, read)
        .await
        .map_err(|_| EngineError::Nats("listing keys timed out".to_owned()))?
}

/// Runs a closure when dropped (on every way out of a scope, including a timeout's).
fn scopeguard(run: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(run) = self.0.take() {
                run();
            }
        }
    }
    Guard(Some(run))
}
