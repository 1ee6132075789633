//! The lease timer: a thread that compares the wall clock with every deadline (each lease's
//! end, the daily cleanup time) at least every 30 s, so a PC that slept through a deadline
//! removes as soon as it wakes; it also retries removal reports the server has not taken yet.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use super::log;
use super::runtime::Agent;
use crate::protocol::CleanupMode;

/// Longest the timer sleeps between looks at the wall clock.
pub const TIMER_PERIOD: StdDuration = StdDuration::from_secs(30);

impl Agent {
    /// The timer: removes what is due, at least every 30 s, and retries waiting reports.
    pub fn timer_tick(&self) -> StdDuration {
        let mut due = self.due_entries();
        if !due.is_empty() {
            // Every cleanup looks at the server's list too (best effort: it may be away).
            if self.reconcile().is_ok() {
                due = self.due_entries();
            }
            let rule = self.lease_rule();
            // At the daily time it is the scheduled cleanup; earlier, a lease's end.
            let scheduled = due
                .iter()
                .any(|e| e.deadline(&rule) == rule.cleanup.next_after(e.installed_at));
            let mode = if scheduled {
                CleanupMode::Scheduled
            } else {
                CleanupMode::Lease
            };
            log::info(format!("Starting cleanup ({mode:?})"));
            self.cleanup_entries(mode, due);
        } else if !self.local().outbox.is_empty() {
            self.flush();
        }
        let now = self.clock.now();
        let rule = self.lease_rule();
        let local = self.local();
        let until = local
            .ledger
            .next_deadline(&rule)
            .map(|d| (d - now).to_std().unwrap_or_default())
            .unwrap_or(TIMER_PERIOD);
        let mut backoff = self.flush_backoff.lock().unwrap_or_else(|e| e.into_inner());
        let retry = if local.outbox.is_empty() {
            backoff.reset();
            TIMER_PERIOD
        } else {
            // Reports wait for the server: try again soon, then less and less often.
            backoff.next_delay()
        };
        until
            .min(retry)
            .clamp(StdDuration::from_millis(200), TIMER_PERIOD)
    }

    /// Runs the timer until the process ends.
    pub fn run_timer(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let agent = Arc::clone(self);
        std::thread::spawn(move || {
            loop {
                let sleep = agent.timer_tick();
                let (flag, cv) = &agent.wake;
                let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (mut guard, _) = cv
                    .wait_timeout_while(guard, sleep, |woken| !*woken)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;
    use crate::agent::outbox::Outbox;
    use crate::agent::test_support::*;

    #[test]
    fn the_timer_removes_at_the_lease_end_and_at_18h_even_after_sleeping_through_it() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = rig(recording_server(Arc::clone(&requests), 200));
        installed(&r, "AA", "2026-07-15T14:00:00Z");
        installed(&r, "BB", "2026-07-16T13:00:00Z");
        // Nothing due yet: the timer sleeps until the first deadline, 30 s at most.
        assert_eq!(r.agent.timer_tick(), TIMER_PERIOD);
        assert_eq!(r.store.thumbprints().len(), 2);
        // 11:00 local: AA's lease ends.
        r.clock.set("2026-07-15T14:00:00Z".parse().unwrap());
        r.agent.timer_tick();
        assert_eq!(r.store.thumbprints(), vec!["BB".to_owned()]);
        // The lid closed at 17:00 and opens at 08:00 the next day: 18:00 passed, BB goes.
        r.clock.set("2026-07-16T11:00:00Z".parse().unwrap());
        r.agent.timer_tick();
        assert!(r.store.thumbprints().is_empty());
        let cleanups: Vec<Value> = requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p == "/api/v1/agent/cleanup")
            .map(|(_, _, b)| b.clone())
            .collect();
        assert_eq!(cleanups.len(), 2, "{cleanups:?}");
        assert_eq!(cleanups[0]["mode"], "lease");
        assert_eq!(cleanups[0]["removed"][0]["thumbprint"], "AA");
        assert_eq!(cleanups[1]["mode"], "scheduled");
        assert_eq!(cleanups[1]["removed"][0]["thumbprint"], "BB");
        assert!(Outbox::load(r.agent.dir.outbox()).unwrap().is_empty());
    }
}
