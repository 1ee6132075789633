//! Keyed rate limits (governor) that also remember, per key, whether the current run of
//! refusals was already audited: a flood of refused requests costs a memory lookup each, and
//! the database sees one audit row per run, carrying the count of the previous run's rest.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// For `Retry-After`: at least one second.
    pub retry_after_secs: u64,
    /// `Some(n)` for the first refusal of a run, which is to be audited; `n` counts the
    /// refusals that followed the previous audited one. `None`: already audited, answer only.
    pub audit: Option<u64>,
}

struct Run {
    until: Instant,
    since_audit: u64,
}

pub struct Throttle<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    runs: Mutex<HashMap<K, Run>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            runs: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(n: u32) -> Self {
        Self::new(Quota::per_minute(
            NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
        ))
    }

    /// Spends one request of `key`'s quota; refused once it is spent.
    pub fn check(&self, key: &K) -> Result<(), Refusal> {
        match self.limiter.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(self.refuse(key, wait))
            }
        }
    }

    /// Without spending anything: refused while `key` is in a run of refusals. For quotas that
    /// count only failures (spent with [`Throttle::check`] after a failure).
    pub fn refusing(&self, key: &K) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.get_mut(key) {
            Some(run) if run.until > now => {
                run.since_audit += 1;
                Err(Refusal {
                    retry_after_secs: secs(run.until - now),
                    audit: None,
                })
            }
            _ => Ok(()),
        }
    }

    fn refuse(&self, key: &K, wait: Duration) -> Refusal {
        let now = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.get_mut(key) {
            Some(run) if run.until > now => {
                run.since_audit += 1;
                run.until = run.until.max(now + wait);
                Refusal {
                    retry_after_secs: secs(run.until - now),
                    audit: None,
                }
            }
            previous => {
                let followed = previous.map_or(0, |run| run.since_audit);
                runs.insert(
                    key.clone(),
                    Run {
                        until: now + wait,
                        since_audit: 0,
                    },
                );
                Refusal {
                    retry_after_secs: secs(wait),
                    audit: Some(followed),
                }
            }
        }
    }

    /// Forgets keys with nothing left to remember, so attacker-chosen keys cannot grow memory.
    /// Returns how many unaudited refusals the forgotten runs held (for the log).
    pub fn prune(&self) -> u64 {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let mut unaudited = 0;
        runs.retain(|_, run| {
            let keep = run.until > now;
            if !keep {
                unaudited += run.since_audit;
            }
            keep
        });
        runs.shrink_to_fit();
        unaudited
    }

    /// Keys remembered (limiter state and refusal runs).
    pub fn len(&self) -> usize {
        self.limiter.len() + self.runs.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_of_a_run_is_audited_the_rest_only_counted() {
        let t = Throttle::<u32>::per_minute(2);
        assert!(t.check(&1).is_ok());
        assert!(t.check(&1).is_ok());
        let first = t.check(&1).unwrap_err();
        assert_eq!(first.audit, Some(0));
        assert!(first.retry_after_secs >= 1);
        for _ in 0..100 {
            assert_eq!(t.check(&1).unwrap_err().audit, None);
        }
        assert_eq!(t.refusing(&1).unwrap_err().audit, None);
        // Another key has its own quota.
        assert!(t.check(&2).is_ok());
        assert!(t.refusing(&2).is_ok());
    }

    #[test]
    fn the_next_run_carries_the_count_of_the_previous_one() {
        let t = Throttle::<u32>::new(Quota::with_period(Duration::from_millis(30)).unwrap());
        assert!(t.check(&1).is_ok());
        assert_eq!(t.check(&1).unwrap_err().audit, Some(0));
        assert_eq!(t.check(&1).unwrap_err().audit, None);
        assert_eq!(t.check(&1).unwrap_err().audit, None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(t.check(&1).is_ok());
        assert_eq!(t.check(&1).unwrap_err().audit, Some(2));
    }

    #[test]
    fn pruning_forgets_idle_keys() {
        let t = Throttle::<u32>::new(Quota::with_period(Duration::from_millis(5)).unwrap());
        for key in 0..10_000 {
            let _ = t.check(&key);
            let _ = t.check(&key);
        }
        assert!(t.len() >= 10_000);
        std::thread::sleep(Duration::from_millis(50));
        t.prune();
        assert_eq!(t.len(), 0);
    }
}
