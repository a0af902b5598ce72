//! Rate limits: auth attempts per client IP, messages per user.
//!
//! Token buckets (GCRA) from `governor`, keyed per client. The tables forget idle keys
//! periodically so memory follows active clients, not every client ever seen.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::error::ApiError;

/// The limiters of one server. A disabled limit (`0` in the config) is `None`.
#[derive(Debug)]
pub struct RateLimits {
    auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    messages: Option<DefaultKeyedRateLimiter<Uuid>>,
}

impl RateLimits {
    pub fn new(auth_per_minute: u32, messages_per_second: u32) -> Self {
        let auth = NonZeroU32::new(auth_per_minute)
            .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)));
        let messages = NonZeroU32::new(messages_per_second).map(|n| {
            // The contract allows bursts of three times the rate.
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(2));
            DefaultKeyedRateLimiter::keyed(Quota::per_second(n).allow_burst(burst))
        });
        RateLimits { auth, messages }
    }

    /// One register or login attempt from `ip`.
    pub fn check_auth(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(self.auth.as_ref(), &ip, "auth")
    }

    /// One message from `user`.
    pub fn check_message(&self, user: Uuid) -> Result<(), ApiError> {
        check(self.messages.as_ref(), &user, "messages")
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

    #[test]
    fn messages_allow_a_burst_of_three_times_the_rate() {
        let limits = RateLimits::new(0, 10);
        let user = Uuid::new_v4();
        let allowed = (0..100)
            .take_while(|_| limits.check_message(user).is_ok())
            .count();
        assert_eq!(allowed, 30);
        assert!(matches!(
            limits.check_message(user),
            Err(ApiError::RateLimited {
                retry_after_secs: 1
            })
        ));
        assert!(
            limits.check_message(Uuid::new_v4()).is_ok(),
            "limits are per user"
        );
    }

    #[test]
    fn zero_disables_a_limit() {
        let limits = RateLimits::new(0, 0);
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert!((0..1000).all(|_| limits.check_auth(ip).is_ok()));
    }
}
