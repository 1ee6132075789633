//! How long to wait before trying the server again.

use std::time::Duration as StdDuration;

/// Exponential backoff with jitter: 1 s, 2 s, 4 s ... up to 30 s, each scaled by 0.5-1.0.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn next_delay(&mut self) -> StdDuration {
        let base =
            StdDuration::from_secs(1 << self.failures.min(5)).min(StdDuration::from_secs(30));
        self.failures = self.failures.saturating_add(1);
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        base.mul_f64(0.5 + r / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_thirty_seconds_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(
            delays[0] >= StdDuration::from_millis(500) && delays[0] <= StdDuration::from_secs(1)
        );
        assert!(delays[3] >= StdDuration::from_secs(4) && delays[3] <= StdDuration::from_secs(8));
        assert!(delays.iter().all(|d| *d <= StdDuration::from_secs(30)));
        assert!(delays[7] >= StdDuration::from_secs(15));
        b.reset();
        assert!(b.next_delay() <= StdDuration::from_secs(1));
    }
}
