//! Failed logins per account, on one node (the cluster keeps the same buckets in Redis).
//!
//! Unlike the other limits this one must give tokens back: a login is charged before its
//! password is checked (so parallel guesses are counted) and refunded when it succeeds.
//! `governor` cannot refund, so this is the same GCRA in a few lines over a map.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{SWEEP_EVERY_CHECKS, SharedQuota, limited};
use crate::error::ApiError;

/// A failed login charged in advance; give it back with `RateLimits::refund_login_failure`.
#[derive(Debug)]
#[must_use = "a login that did not fail must refund its charge"]
pub struct FailureCharge(Option<(String, bool)>);

impl FailureCharge {
    pub(super) fn none() -> Self {
        FailureCharge(None)
    }

    pub(super) fn shared(key: String) -> Self {
        FailureCharge(Some((key, true)))
    }

    /// The charged key and whether it lives in Redis; `None` when nothing was charged.
    pub(super) fn into_parts(self) -> Option<(String, bool)> {
        self.0
    }
}

#[derive(Debug)]
pub(super) struct FailedLogins {
    pub(super) name: &'static str,
    pub(super) shared: SharedQuota,
    interval: Duration,
    /// How far ahead of now an account's arrival time may run: the whole allowance.
    tolerance: Duration,
    /// Account → the theoretical arrival time of its next failure. Only ever locked briefly,
    /// never across an `.await`.
    accounts: Mutex<HashMap<String, Instant>>,
    checks: AtomicU32,
}

impl FailedLogins {
    pub(super) fn new(per_hour: NonZeroU32) -> Self {
        let interval = Duration::from_secs(3600) / per_hour.get();
        FailedLogins {
            name: "login_failures",
            shared: SharedQuota::new(per_hour, 3_600_000_000, u64::from(per_hour.get())),
            interval,
            tolerance: interval * per_hour.get(),
            accounts: Mutex::new(HashMap::new()),
            checks: AtomicU32::new(0),
        }
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A poisoned lock only means a panic elsewhere mid-update of one entry.
        self.accounts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(super) fn charge(&self, account: &str) -> Result<FailureCharge, ApiError> {
        let sweep = self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY_CHECKS
            == SWEEP_EVERY_CHECKS - 1;
        if sweep {
            self.sweep(false);
        }
        let now = Instant::now();
        let mut accounts = self.accounts();
        let tat = accounts.get(account).copied().unwrap_or(now).max(now);
        let next = tat + self.interval;
        let ahead = next - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return Err(limited(
                self.name,
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            ));
        }
        accounts.insert(account.to_owned(), next);
        Ok(FailureCharge(Some((account.to_owned(), false))))
    }

    pub(super) fn refund(&self, account: &str) {
        let now = Instant::now();
        let mut accounts = self.accounts();
        if let Some(tat) = accounts.get_mut(account) {
            match tat.checked_sub(self.interval) {
                Some(earlier) if earlier > now => *tat = earlier,
                _ => {
                    accounts.remove(account);
                }
            }
        }
    }

    /// Forgets accounts whose failures have all been forgiven.
    pub(super) fn sweep(&self, shrink: bool) {
        let now = Instant::now();
        let mut accounts = self.accounts();
        accounts.retain(|_, tat| *tat > now);
        if shrink {
            accounts.shrink_to_fit();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.accounts().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_hour: u32) -> FailedLogins {
        FailedLogins::new(NonZeroU32::new(per_hour).expect("non-zero"))
    }

    #[test]
    fn failures_are_counted_per_account_and_refunds_give_them_back() {
        let logins = limit(3);
        for _ in 0..10 {
            let charge = logins.charge("carol").expect("not limited");
            let (account, shared) = charge.into_parts().expect("charged");
            assert!(!shared);
            logins.refund(&account);
        }
        assert_eq!(logins.len(), 0, "refunded to a fresh bucket: forgotten");
        for _ in 0..3 {
            let _failed = logins.charge("carol").expect("within the allowance");
        }
        let refused = logins.charge("carol").expect_err("allowance used");
        assert!(
            matches!(refused, ApiError::RateLimited { retry_after_secs } if (1..=1200).contains(&retry_after_secs)),
            "{refused:?}"
        );
        let _other = logins.charge("dave").expect("per account");
        assert_eq!(logins.len(), 2);
    }

    #[test]
    fn forgiven_accounts_are_swept() {
        // 3,600,000 an hour: one failure is forgiven after a millisecond.
        let logins = limit(3_600_000);
        for n in 0..100 {
            let _failed = logins.charge(&format!("user{n}")).expect("allowed");
        }
        assert_eq!(logins.len(), 100);
        std::thread::sleep(Duration::from_millis(5));
        logins.sweep(true);
        assert_eq!(logins.len(), 0);
    }
}
