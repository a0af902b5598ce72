//! Rate-limit buckets shared by the nodes of a cluster, on either engine.
//!
//! Both keep GCRA's one number per bucket — the "theoretical arrival time" in microseconds —
//! and change it atomically: Redis with a script, on Redis's clock; NATS with a compare-and-
//! swap on a key-value entry, on the node's clock (nodes' clocks differ by what NTP leaves,
//! milliseconds, which moves a refill by as much). Buckets expire once refilled (Redis: the
//! key's TTL; NATS: the bucket's `max_age`, longer than any refill).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;

use super::SharedQuota;
use crate::cluster::{Cluster, Engine, EngineError, Swap, compare_and_swap};

/// Longest a NATS bucket entry outlives its last write: beyond the longest refill (an hour, for
/// failed logins per account), after which a bucket is full again and need not be kept.
const NATS_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
const NATS_BUCKET: &str = "ratelimit";

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

/// Gives back one token taken by [`GCRA`]. ARGV: interval.
const GCRA_REFUND: &str = r"
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
tat = tat - tonumber(ARGV[1])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
return 0
";

/// Takes one token; returns 0 when allowed, else the wait in microseconds.
pub(super) async fn take(
    cluster: &Cluster,
    name: &str,
    key: &str,
    quota: SharedQuota,
) -> Result<u64, EngineError> {
    match cluster.engine() {
        Engine::Redis(redis) => {
            static SCRIPT: std::sync::LazyLock<redis::Script> =
                std::sync::LazyLock::new(|| redis::Script::new(GCRA));
            let bucket = cluster.key(format_args!("ratelimit:{name}:{key}"));
            Ok(SCRIPT
                .key(bucket)
                .arg(quota.interval_us)
                .arg(quota.burst)
                .invoke_async(&mut redis.commands())
                .await?)
        }
        Engine::Nats(nats) => {
            if !nats.connected() {
                // Decide locally at once rather than after a timeout.
                return Err(EngineError::Nats("disconnected".to_owned()));
            }
            let kv = nats.bucket(NATS_BUCKET, NATS_MAX_AGE).await?;
            let result = compare_and_swap(&kv, &nats_key(name, key), |value| {
                let now = now_us();
                let tat = value.and_then(parse_tat).unwrap_or(now).max(now);
                let new_tat = tat + quota.interval_us;
                let ahead = new_tat - now;
                let allowed = quota.interval_us * quota.burst;
                if ahead > allowed {
                    Swap::Keep(ahead - allowed)
                } else {
                    Swap::Put(Bytes::from(new_tat.to_string()), 0)
                }
            })
            .await;
            if result.is_err() {
                nats.forget_bucket(NATS_BUCKET);
            }
            result
        }
    }
}

/// Gives back one token taken by [`take`].
pub(super) async fn refund(
    cluster: &Cluster,
    name: &str,
    key: &str,
    interval_us: u64,
) -> Result<(), EngineError> {
    match cluster.engine() {
        Engine::Redis(redis) => {
            static SCRIPT: std::sync::LazyLock<redis::Script> =
                std::sync::LazyLock::new(|| redis::Script::new(GCRA_REFUND));
            let bucket = cluster.key(format_args!("ratelimit:{name}:{key}"));
            let _: u64 = SCRIPT
                .key(bucket)
                .arg(interval_us)
                .invoke_async(&mut redis.commands())
                .await?;
            Ok(())
        }
        Engine::Nats(nats) => {
            let kv = nats.bucket(NATS_BUCKET, NATS_MAX_AGE).await?;
            compare_and_swap(&kv, &nats_key(name, key), |value| {
                let Some(tat) = value.and_then(parse_tat) else {
                    return Swap::Keep(());
                };
                // Written as "now" rather than deleted: a delete leaves a marker behind,
                // while a value expires with the bucket's max_age.
                let tat = tat.saturating_sub(interval_us).max(now_us());
                Swap::Put(Bytes::from(tat.to_string()), ())
            })
            .await
        }
    }
}

/// `name.<key in base64url>`: keys of any characters (an IPv6 network's `:` and `/`) become
/// valid key-value keys.
fn nats_key(name: &str, key: &str) -> String {
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    format!("{name}.{encoded}")
}

fn parse_tat(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn now_us() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}
