//! Rate limits: auth attempts per client address, failed logins per account, messages per user.
//!
//! Token buckets (GCRA) keyed per client. On one node they live in memory; in a cluster they
//! live in the cluster engine (Redis, or a NATS key-value bucket; see `shared`), so a user cannot
//! multiply their limit by connecting to several nodes. When the engine is unreachable a node falls back to its own buckets: limits stay enforced per node
//! rather than failing open or refusing everyone.
//!
//! Memory follows active clients, not every client ever seen: a bucket that has refilled is
//! indistinguishable from a new one and is dropped by a sweep that runs periodically and after
//! every [`SWEEP_EVERY_CHECKS`] checks of a limiter, so a client rotating through addresses
//! leaves at most that many idle buckets behind between sweeps.

mod logins;
mod shared;

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use logins::FailedLogins;
pub use logins::FailureCharge;

use crate::cluster::Cluster;
use crate::error::ApiError;

/// Checks of one limiter between two sweeps of its idle keys (a power of two, so the sweep
/// cadence survives the counter wrapping).
pub const SWEEP_EVERY_CHECKS: u32 = 4096;

/// The limiters of one server. A disabled limit (`0` in the config) is `None`.
#[derive(Debug)]
pub struct RateLimits {
    auth: Option<Keyed<IpAddr>>,
    messages: Option<Keyed<Uuid>>,
    /// WebSocket frames other than messages, per user.
    frames: Option<Keyed<Uuid>>,
    login_failures: Option<FailedLogins>,
    cluster: Option<Cluster>,
}

/// A bucket as the cluster engine keeps it.
#[derive(Debug, Clone, Copy)]
struct SharedQuota {
    /// Microseconds per token.
    interval_us: u64,
    /// Tokens a full bucket holds.
    burst: u64,
}

impl SharedQuota {
    fn new(per_period: NonZeroU32, period_us: u64, burst: u64) -> Self {
        SharedQuota {
            interval_us: period_us / u64::from(per_period.get()),
            burst,
        }
    }
}

/// The bucket an address counts against: an IPv4 address (also when written IPv4-mapped), or
/// the /64 network of an IPv6 address. A /64 is one subscriber's link, and a host on it can
/// pick any of its 2^64 addresses; keyed per address, IPv6 clients would have no limit at all.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

impl RateLimits {
    pub fn new(auth_per_minute: u32, messages_per_second: u32) -> Self {
        let auth = NonZeroU32::new(auth_per_minute).map(|n| {
            let shared = SharedQuota::new(n, 60_000_000, u64::from(n.get()));
            Keyed::new("auth", Quota::per_minute(n), shared)
        });
        let messages = NonZeroU32::new(messages_per_second).map(|n| {
            // The contract allows bursts of three times the rate.
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(2));
            let shared = SharedQuota::new(n, 1_000_000, u64::from(burst.get()));
            Keyed::new("messages", Quota::per_second(n).allow_burst(burst), shared)
        });
        RateLimits {
            auth,
            messages,
            frames: None,
            login_failures: None,
            cluster: None,
        }
    }

    /// Limits WebSocket frames other than messages to `per_second` per user, bursts of 5×
    /// (0: no limit).
    pub fn with_frames(mut self, per_second: u32) -> Self {
        self.frames = NonZeroU32::new(per_second).map(|n| {
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(4));
            let shared = SharedQuota::new(n, 1_000_000, u64::from(burst.get()));
            Keyed::new("ws_frames", Quota::per_second(n).allow_burst(burst), shared)
        });
        self
    }

    /// Limits failed logins per account to `per_hour`, all of which may come at once (0: no
    /// limit).
    pub fn with_login_failures(mut self, per_hour: u32) -> Self {
        self.login_failures = NonZeroU32::new(per_hour).map(FailedLogins::new);
        self
    }

    /// Shares the buckets through the cluster engine with every node of the cluster.
    pub fn shared(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// One register or login attempt from `ip` (an IPv6 address counts for its /64).
    pub async fn check_auth(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limit) = &self.auth else {
            return Ok(());
        };
        let key = address_key(ip);
        let shared_key = match key {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("{v6}/64"),
        };
        if let Some(verdict) = self
            .check_shared(limit.shared, limit.name, &shared_key)
            .await
        {
            return verdict;
        }
        limit.check(&key)
    }

    /// One message from `user`.
    pub async fn check_message(&self, user: Uuid) -> Result<(), ApiError> {
        let Some(limit) = &self.messages else {
            return Ok(());
        };
        // Boxed, and only in a cluster: this runs inside every WebSocket task, whose resting
        // size would otherwise include the engine call's state (see `gateway::connection`).
        if self.cluster.is_some()
            && let Some(verdict) =
                Box::pin(self.check_shared(limit.shared, limit.name, &user.to_string())).await
        {
            return verdict;
        }
        limit.check(&user)
    }

    /// One WebSocket frame other than a message from `user` (any of their connections).
    pub async fn check_frame(&self, user: Uuid) -> Result<(), ApiError> {
        let Some(limit) = &self.frames else {
            return Ok(());
        };
        // Boxed and only in a cluster, as for messages.
        if self.cluster.is_some()
            && let Some(verdict) =
                Box::pin(self.check_shared(limit.shared, limit.name, &user.to_string())).await
        {
            return verdict;
        }
        limit.check(&user)
    }

    /// Charges one failed login to `account` (a normalized username) before its password is
    /// checked, or refuses with `rate_limited` when its failures are used up. Charging first
    /// means concurrent guesses cannot overtake the count; a login that turns out not to be
    /// a failure gives the charge back with [`RateLimits::refund_login_failure`].
    ///
    /// Unknown usernames are charged exactly like existing ones, so the limit's answers say
    /// nothing about which accounts exist.
    pub async fn charge_login_failure(&self, account: &str) -> Result<FailureCharge, ApiError> {
        let Some(limit) = &self.login_failures else {
            return Ok(FailureCharge::none());
        };
        // Normalized usernames are `[a-z0-9_.-]`: safe as part of a Redis key (NATS keys are encoded).
        if let Some(verdict) = self.check_shared(limit.shared, limit.name, account).await {
            return verdict.map(|()| FailureCharge::shared(account.to_owned()));
        }
        limit.charge(account)
    }

    /// Gives back a charge: the login succeeded, or failed for the server's own reasons.
    pub async fn refund_login_failure(&self, charge: FailureCharge) {
        let Some(limit) = &self.login_failures else {
            return;
        };
        match charge.into_parts() {
            None => {}
            Some((key, true)) => {
                if let Some(cluster) = &self.cluster
                    && let Err(err) =
                        shared::refund(cluster, limit.name, &key, limit.shared.interval_us).await
                {
                    tracing::debug!(error = %err, "shared login-failure refund lost");
                }
            }
            Some((account, false)) => limit.refund(&account),
        }
    }

    /// The cluster-wide verdict, or `None` to decide locally (no cluster, or the engine
    /// unreachable).
    async fn check_shared(
        &self,
        quota: SharedQuota,
        name: &'static str,
        key: &str,
    ) -> Option<Result<(), ApiError>> {
        let cluster = self.cluster.as_ref()?;
        let wait_us = shared::take(cluster, name, key, quota)
            .await
            .inspect_err(|err| tracing::debug!(error = %err, "shared rate limit unavailable"))
            .ok()?;
        if wait_us == 0 {
            return Some(Ok(()));
        }
        Some(Err(limited(name, wait_us.div_ceil(1_000_000))))
    }

    /// Drops the buckets that have refilled (called periodically; checks also sweep every
    /// [`SWEEP_EVERY_CHECKS`]) and gives their memory back.
    pub fn forget_idle(&self) {
        if let Some(limit) = &self.auth {
            limit.sweep();
            limit.local.shrink_to_fit();
        }
        for limit in [&self.messages, &self.frames].into_iter().flatten() {
            limit.sweep();
            limit.local.shrink_to_fit();
        }
        if let Some(limit) = &self.login_failures {
            limit.sweep(true);
        }
    }

    /// Buckets held in this node's memory, over all limiters (for tests and diagnostics).
    pub fn tracked_keys(&self) -> usize {
        self.auth.as_ref().map_or(0, |l| l.local.len())
            + self.messages.as_ref().map_or(0, |l| l.local.len())
            + self.frames.as_ref().map_or(0, |l| l.local.len())
            + self.login_failures.as_ref().map_or(0, FailedLogins::len)
    }
}

/// The refusal, counted by limit.
fn limited(name: &'static str, retry_after_secs: u64) -> ApiError {
    metrics::counter!("nebula_rate_limited_total", "limit" => name).increment(1);
    ApiError::RateLimited { retry_after_secs }
}

/// One in-memory keyed limiter and its shared twin's quota.
#[derive(Debug)]
struct Keyed<K: Hash + Eq + Clone> {
    name: &'static str,
    local: DefaultKeyedRateLimiter<K>,
    shared: SharedQuota,
    /// Checks so far (wrapping), to sweep every `SWEEP_EVERY_CHECKS`.
    checks: AtomicU32,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(name: &'static str, quota: Quota, shared: SharedQuota) -> Self {
        Keyed {
            name,
            local: DefaultKeyedRateLimiter::keyed(quota),
            shared,
            checks: AtomicU32::new(0),
        }
    }

    fn check(&self, key: &K) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY_CHECKS
            == SWEEP_EVERY_CHECKS - 1
        {
            self.sweep();
        }
        self.local.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            limited(
                self.name,
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            )
        })
    }

    fn sweep(&self) {
        self.local.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn allowed(limits: &RateLimits, user: Uuid, tries: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..tries {
            if limits.check_message(user).await.is_ok() {
                allowed += 1;
            }
        }
        allowed
    }

    #[tokio::test]
    async fn messages_allow_a_burst_of_three_times_the_rate() {
        let limits = RateLimits::new(0, 10);
        let user = Uuid::new_v4();
        assert_eq!(allowed(&limits, user, 100).await, 30);
        assert!(matches!(
            limits.check_message(user).await,
            Err(ApiError::RateLimited {
                retry_after_secs: 1
            })
        ));
        assert!(
            limits.check_message(Uuid::new_v4()).await.is_ok(),
            "limits are per user"
        );
    }

    #[tokio::test]
    async fn zero_disables_a_limit() {
        let limits = RateLimits::new(0, 0).with_login_failures(0);
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..1000 {
            assert!(limits.check_auth(ip).await.is_ok());
            assert!(limits.charge_login_failure("alice").await.is_ok());
        }
        assert_eq!(limits.tracked_keys(), 0);
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let key = |text: &str| address_key(text.parse().expect("address"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2::"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.7"), key("203.0.113.7"));
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
    }

    #[tokio::test]
    async fn idle_buckets_are_swept_so_rotation_cannot_grow_memory() {
        // 6000 a minute: a bucket used once is full again after 10 ms.
        let limits = RateLimits::new(6000, 0);
        let addresses = (0..1000u32).map(|n| {
            IpAddr::from(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | (u128::from(n) << 64),
            ))
        });
        for ip in addresses {
            assert!(limits.check_auth(ip).await.is_ok());
        }
        assert_eq!(limits.tracked_keys(), 1000, "one bucket per /64");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        limits.forget_idle();
        assert_eq!(limits.tracked_keys(), 0);
        // Without waiting for the timer: the checks themselves sweep.
        for n in 0..(3 * SWEEP_EVERY_CHECKS) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert!(limits.check_auth(ip).await.is_ok());
            if n % 1024 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        assert!(
            limits.tracked_keys() < SWEEP_EVERY_CHECKS as usize,
            "{} buckets kept",
            limits.tracked_keys()
        );
    }

    /// The engines to share limits through, from `NEBULA_TEST_REDIS_URL` and
    /// `NEBULA_TEST_NATS_URL` (each skipped with a reason when unset).
    fn engine_urls(name: &str) -> Vec<String> {
        let mut urls = Vec::new();
        for var in ["NEBULA_TEST_REDIS_URL", "NEBULA_TEST_NATS_URL"] {
            match std::env::var(var) {
                Ok(url) if !url.is_empty() => urls.push(url),
                _ => {
                    assert!(
                        std::env::var("NEBULA_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                        "{var} is required"
                    );
                    eprintln!("skipping {name} on one engine: {var} is not set");
                }
            }
        }
        urls
    }

    /// Connects two limiters to a fresh namespace of the engine at `url`.
    async fn pair(url: &str, make: impl Fn() -> RateLimits) -> (RateLimits, RateLimits, Cluster) {
        let prefix = format!("test-{}", Uuid::new_v4());
        let cluster = Cluster::connect(url, &prefix).await.expect("engine url");
        let other = Cluster::connect(url, &prefix).await.expect("engine url");
        for _ in 0..100 {
            if cluster.ping().await.is_ok() && other.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(cluster.ping().await.is_ok(), "{url} must answer");
        (
            make().shared(cluster.clone()),
            make().shared(other),
            cluster,
        )
    }

    /// Two nodes sharing an engine share one bucket per user.
    #[tokio::test]
    async fn nodes_sharing_an_engine_share_the_limit() {
        for url in engine_urls("nodes_sharing_an_engine_share_the_limit") {
            let (one, two, _cluster) = pair(&url, || RateLimits::new(0, 10)).await;
            let user = Uuid::new_v4();
            let total = allowed(&one, user, 20).await + allowed(&two, user, 20).await;
            // 30 tokens in the bucket, plus at most a few refilled while the loop ran.
            assert!(
                (30..=33).contains(&total),
                "{url}: {total} messages allowed across two nodes"
            );
            assert_eq!(
                one.tracked_keys() + two.tracked_keys(),
                0,
                "{url}: all shared"
            );
        }
    }

    /// Failed logins per account, shared by the nodes: charges count, refunds give back.
    #[tokio::test]
    async fn nodes_sharing_an_engine_share_login_failures() {
        for url in engine_urls("nodes_sharing_an_engine_share_login_failures") {
            let (one, two, _cluster) =
                pair(&url, || RateLimits::new(0, 0).with_login_failures(3)).await;
            // Successful logins give their charge back, on whichever node.
            for _ in 0..10 {
                let charge = one
                    .charge_login_failure("carol")
                    .await
                    .expect("not limited");
                two.refund_login_failure(charge).await;
            }
            for limits in [&one, &two, &one] {
                assert!(limits.charge_login_failure("carol").await.is_ok(), "{url}");
            }
            for limits in [&one, &two] {
                assert!(
                    matches!(
                        limits.charge_login_failure("carol").await,
                        Err(ApiError::RateLimited { retry_after_secs }) if (1..=1200).contains(&retry_after_secs)
                    ),
                    "{url}"
                );
            }
            assert!(
                two.charge_login_failure("dave").await.is_ok(),
                "{url}: per account"
            );
            // An IPv6 network's key (`:` and `/`) is a valid key on every engine.
            let auth = pair(&url, || RateLimits::new(1, 0)).await;
            let ip: IpAddr = "2001:db8::1".parse().expect("address");
            assert!(auth.0.check_auth(ip).await.is_ok(), "{url}");
            assert!(
                auth.1.check_auth(ip).await.is_err(),
                "{url}: shared per /64"
            );
            assert_eq!(
                one.tracked_keys() + two.tracked_keys(),
                0,
                "{url}: all shared"
            );
        }
    }
}
