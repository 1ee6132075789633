//! The job loop: heartbeat at the policy's interval, long-poll for jobs, act on each one
//! (a job that asks to wait is looked at again after its delay), with exponential backoff and
//! jitter while the server is away.

use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

use super::backoff::Backoff;
use super::client::ClientError;
use super::log;
use super::runtime::Agent;
use crate::protocol::{AgentJob, AgentJobType};

impl Agent {
    /// The job loop: never returns; errors are logged and retried with backoff.
    pub fn run_jobs(&self) {
        let mut backoff = Backoff::default();
        let mut next_heartbeat = Instant::now();
        let mut reconciled = false;
        let mut retry_at: HashMap<uuid::Uuid, Instant> = HashMap::new();
        let mut long_poll = 25;
        let mut blocked = false;
        loop {
            if self.follow_pairing() {
                // Paired again while running: start over as the new device at once.
                reconciled = false;
                blocked = false;
                backoff.reset();
                next_heartbeat = Instant::now();
            }
            if Instant::now() >= next_heartbeat {
                match self.heartbeat() {
                    Ok(policy) => {
                        blocked = false;
                        long_poll = policy.long_poll_seconds.clamp(1, 30);
                        next_heartbeat = Instant::now()
                            + StdDuration::from_secs(policy.heartbeat_interval_seconds.max(5));
                        if !reconciled {
                            reconciled = self.reconcile().is_ok();
                            self.poke_timer();
                        }
                        self.flush();
                    }
                    Err(ClientError::Blocked) => {
                        // Blocked: no installs, but the removals the server sends still run.
                        if !blocked {
                            log::warn("This device is blocked: only removals are carried out");
                            blocked = true;
                        }
                        next_heartbeat = Instant::now() + StdDuration::from_secs(60);
                    }
                    Err(e) => {
                        self.wait_after(&e, &mut backoff);
                        continue;
                    }
                }
            }
            let jobs = match self.identity().client.jobs(long_poll) {
                Ok(list) => {
                    backoff.reset();
                    if !blocked {
                        self.clear_error();
                    }
                    list.jobs
                }
                Err(e) => {
                    self.wait_after(&e, &mut backoff);
                    continue;
                }
            };
            if !self.local().outbox.is_empty() {
                self.flush();
            }
            let now = Instant::now();
            retry_at.retain(|id, _| jobs.iter().any(|j| j.id == *id));
            let mut acted = false;
            for job in &jobs {
                if retry_at.get(&job.id).is_some_and(|t| *t > now) {
                    continue;
                }
                acted = true;
                if let Err(delay) = self.handle(job) {
                    retry_at.insert(job.id, Instant::now() + delay);
                }
            }
            if !acted && !jobs.is_empty() {
                // Only jobs waiting for a retry: the long-poll answers at once, so wait here.
                let soonest = retry_at.values().min().copied().unwrap_or(now);
                std::thread::sleep(
                    soonest
                        .saturating_duration_since(Instant::now())
                        .clamp(StdDuration::from_millis(200), StdDuration::from_secs(5)),
                );
            }
        }
    }

    fn wait_after(&self, e: &ClientError, backoff: &mut Backoff) {
        let delay = match e {
            ClientError::AuthFailed | ClientError::Blocked | ClientError::WrongBaseUrl { .. } => {
                StdDuration::from_secs(60)
            }
            _ => backoff.next_delay(),
        };
        log::warn(format!("{e} (retrying in {} s)", delay.as_secs().max(1)));
        self.note_error(e);
        // A new pairing ends the wait: "Pareie de novo" is acted on as soon as it is done.
        let until = Instant::now() + delay;
        while Instant::now() < until && !self.pairing_changed() {
            std::thread::sleep(StdDuration::from_millis(500).min(until - Instant::now()));
        }
    }

    /// Acts on one job; `Err(delay)` asks to look at it again after `delay`.
    pub fn handle(&self, job: &AgentJob) -> Result<(), StdDuration> {
        match job.job_type {
            AgentJobType::Install => self.install(job),
            AgentJobType::Remove => self.remove_job(job),
            // A newer server's kind of job: looked at again later, never acted on.
            other @ AgentJobType::Unknown => {
                log::warn(format!("Job {} of unknown type {other}: ignored", job.id));
                Err(StdDuration::from_secs(300))
            }
        }
    }
}
