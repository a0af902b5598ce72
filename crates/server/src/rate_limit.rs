//! Rate limits: auth attempts per client IP, messages per user.
//!
//! Token buckets (GCRA) keyed per client. On one node they live in memory (`governor`); in a
//! cluster they live in Redis, so a user cannot multiply their limit by connecting to several
//! nodes. When Redis is unreachable a node falls back to its own buckets: limits stay enforced
//! per node rather than failing open or refusing everyone. The in-memory tables forget idle
//! keys periodically so memory follows active clients, not every client ever seen.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::error::ApiError;

/// The limiters of one server. A disabled limit (`0` in the config) is `None`.
#[derive(Debug)]
pub struct RateLimits {
    auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    messages: Option<DefaultKeyedRateLimiter<Uuid>>,
    frames: Option<DefaultKeyedRateLimiter<Uuid>>,
    auth_quota: Option<SharedQuota>,
    messages_quota: Option<SharedQuota>,
    frames_quota: Option<SharedQuota>,
    cluster: Option<Cluster>,
}

/// A bucket as the Redis script applies it.
#[derive(Debug, Clone, Copy)]
struct SharedQuota {
    /// Microseconds per token.
    interval_us: u64,
    /// Tokens a full bucket holds.
    burst: u64,
}

/// GCRA over a key holding the bucket's "theoretical arrival time" in microseconds, with
/// Redis's own clock (nodes' clocks may differ). Returns 0 when allowed, else the wait in
/// microseconds. ARGV: interval, burst.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > interval * burst then
  return ahead - interval * burst
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000) + 1000)
return 0
";

impl RateLimits {
    pub fn new(auth_per_minute: u32, messages_per_second: u32) -> Self {
        Self::with_frames(auth_per_minute, messages_per_second, 0)
    }

    /// As [`RateLimits::new`], plus a per-user budget for WebSocket frames other than
    /// messages (`frames_per_second`, bursts of 5×; 0 disables).
    pub fn with_frames(
        auth_per_minute: u32,
        messages_per_second: u32,
        frames_per_second: u32,
    ) -> Self {
        let auth = NonZeroU32::new(auth_per_minute)
            .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)));
        let messages = NonZeroU32::new(messages_per_second).map(|n| {
            // The contract allows bursts of three times the rate.
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(2));
            DefaultKeyedRateLimiter::keyed(Quota::per_second(n).allow_burst(burst))
        });
        let frames = NonZeroU32::new(frames_per_second).map(|n| {
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(4));
            DefaultKeyedRateLimiter::keyed(Quota::per_second(n).allow_burst(burst))
        });
        let frames_quota = (frames_per_second > 0).then(|| SharedQuota {
            interval_us: 1_000_000 / u64::from(frames_per_second),
            burst: 5 * u64::from(frames_per_second),
        });
        let auth_quota = (auth_per_minute > 0).then(|| SharedQuota {
            interval_us: 60_000_000 / u64::from(auth_per_minute),
            burst: u64::from(auth_per_minute),
        });
        let messages_quota = (messages_per_second > 0).then(|| SharedQuota {
            interval_us: 1_000_000 / u64::from(messages_per_second),
            burst: 3 * u64::from(messages_per_second),
        });
        RateLimits {
            auth,
            messages,
            frames,
            auth_quota,
            messages_quota,
            frames_quota,
            cluster: None,
        }
    }

    /// Shares the buckets through Redis with every node of the cluster.
    pub fn shared(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// One register or login attempt from `ip`.
    pub async fn check_auth(&self, ip: IpAddr) -> Result<(), ApiError> {
        if let Some(verdict) = self
            .check_shared(self.auth_quota, "auth", &ip.to_string())
            .await
        {
            return verdict;
        }
        check(self.auth.as_ref(), &ip, "auth")
    }

    /// One message from `user`.
    pub async fn check_message(&self, user: Uuid) -> Result<(), ApiError> {
        // Boxed, and only in a cluster: this runs inside every WebSocket task, whose resting
        // size would otherwise include the Redis call's state (see `gateway::connection`).
        if self.cluster.is_some()
            && let Some(verdict) =
                Box::pin(self.check_shared(self.messages_quota, "messages", &user.to_string()))
                    .await
        {
            return verdict;
        }
        check(self.messages.as_ref(), &user, "messages")
    }

    /// One WebSocket frame other than a message from `user` (any of their connections).
    pub async fn check_frame(&self, user: Uuid) -> Result<(), ApiError> {
        if self.cluster.is_some()
            && let Some(verdict) =
                Box::pin(self.check_shared(self.frames_quota, "ws_frames", &user.to_string())).await
        {
            return verdict;
        }
        check(self.frames.as_ref(), &user, "ws_frames")
    }

    /// The cluster-wide verdict, or `None` to decide locally (no cluster, limit disabled, or
    /// Redis unreachable).
    async fn check_shared(
        &self,
        quota: Option<SharedQuota>,
        name: &'static str,
        key: &str,
    ) -> Option<Result<(), ApiError>> {
        let (cluster, quota) = (self.cluster.as_ref()?, quota?);
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(GCRA));
        let mut conn = cluster.commands();
        let bucket = cluster.key(format_args!("ratelimit:{name}:{key}"));
        let wait_us: u64 = SCRIPT
            .key(bucket)
            .arg(quota.interval_us)
            .arg(quota.burst)
            .invoke_async(&mut conn)
            .await
            .inspect_err(|err| tracing::debug!(error = %err, "shared rate limit unavailable"))
            .ok()?;
        if wait_us == 0 {
            return Some(Ok(()));
        }
        metrics::counter!("nebula_rate_limited_total", "limit" => name).increment(1);
        Some(Err(ApiError::RateLimited {
            retry_after_secs: wait_us.div_ceil(1_000_000),
        }))
    }

    /// Drops keys whose buckets are full again (called periodically).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.auth {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.messages {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.frames {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    name: &'static str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        metrics::counter!("nebula_rate_limited_total", "limit" => name).increment(1);
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    })
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
        let limits = RateLimits::new(0, 0);
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..1000 {
            assert!(limits.check_auth(ip).await.is_ok());
        }
    }

    /// Two nodes sharing Redis share one bucket per user (needs `NEBULA_TEST_REDIS_URL`).
    #[tokio::test]
    async fn nodes_sharing_redis_share_the_limit() {
        let Ok(url) = std::env::var("NEBULA_TEST_REDIS_URL") else {
            assert!(
                std::env::var("NEBULA_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "NEBULA_TEST_REDIS_URL is required"
            );
            eprintln!(
                "skipping nodes_sharing_redis_share_the_limit: NEBULA_TEST_REDIS_URL is not set"
            );
            return;
        };
        let prefix = format!("test-{}", Uuid::new_v4());
        let cluster = Cluster::new(&url, &prefix).expect("redis url");
        let (one, two) = (
            RateLimits::new(0, 10).shared(cluster.clone()),
            RateLimits::new(0, 10).shared(Cluster::new(&url, &prefix).expect("redis url")),
        );
        assert!(cluster.ping().await.is_ok(), "Redis at {url} must answer");
        let user = Uuid::new_v4();
        let total = allowed(&one, user, 20).await + allowed(&two, user, 20).await;
        // 30 tokens in the bucket, plus at most a few refilled while the loop ran.
        assert!(
            (30..=33).contains(&total),
            "{total} messages allowed across two nodes"
        );
    }
}
