//! Periodic jobs, driven by cron schedules in the office's timezone.

use std::str::FromStr;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono_tz::Tz;

use crate::state::AppState;

/// Every periodic job: its name and cron schedule (`sec min hour day month weekday`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// Hourly: deletes expired one-time tokens and month-old login attempts.
    Maintenance,
    /// Daily at 06:00: certificates entering the 30/15/7-day or expired buckets.
    ExpiryCheck,
    /// Every 5 minutes: install requests past `request_ttl_hours` -> `EXPIRED`, jobs
    /// `IN_PROGRESS` past `job_timeout_minutes` -> `TIMEOUT`, installations past their lease
    /// and `lease_grace_minutes` -> overdue, with a `REMOVE` job.
    JobSweep,
}

impl Periodic {
    pub const ALL: &'static [Periodic] = &[
        Periodic::Maintenance,
        Periodic::ExpiryCheck,
        Periodic::JobSweep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Periodic::Maintenance => "maintenance",
            Periodic::ExpiryCheck => "expiry-check",
            Periodic::JobSweep => "job-sweep",
        }
    }

    pub fn schedule(self) -> &'static str {
        match self {
            Periodic::Maintenance => "0 7 * * * *",
            Periodic::ExpiryCheck => "0 0 6 * * *",
            Periodic::JobSweep => "30 */5 * * * *",
        }
    }

    async fn run(self, state: &AppState) -> Result<(), BoxDynError> {
        match self {
            Periodic::Maintenance => {
                let tokens = crate::accounts::password_set::purge_expired(&state.db).await?;
                let attempts = crate::accounts::lockout::purge_old(&state.db).await?;
                tracing::info!(
                    tokens,
                    attempts,
                    "maintenance: expired tokens and old login attempts removed"
                );
            }
            Periodic::ExpiryCheck => {
                let report =
                    crate::certificates::expiry::check_all(&state.db, chrono::Utc::now()).await?;
                tracing::info!(
                    checked = report.checked,
                    changed = report.changed,
                    alerts = report.alerts,
                    "expiry check done"
                );
            }
            Periodic::JobSweep => {
                crate::jobs::sweep(
                    state,
                    None,
                    crate::audit::Actor::System,
                    chrono::Utc::now(),
                    chrono::Duration::minutes(state.settings.job_timeout_minutes),
                )
                .await?;
            }
        }
        Ok(())
    }
}

async fn tick(
    _tick: Tick<Tz>,
    job: Data<Periodic>,
    state: Data<AppState>,
) -> Result<(), BoxDynError> {
    job.run(&state)
        .await
        .inspect_err(|e| tracing::error!(job = job.name(), error = %e, "periodic job failed"))
}

pub(super) fn register(mut monitor: Monitor, state: AppState) -> Monitor {
    for job in Periodic::ALL {
        let job = *job;
        let schedule =
            cron::Schedule::from_str(job.schedule()).expect("periodic schedules are valid");
        let tz = state.settings.timezone;
        let state = state.clone();
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("certhub-cron-{}", job.name()))
                .backend(CronScheduler::new(schedule.clone()).with_timezone(tz))
                .data(job)
                .data(state.clone())
                .build(tick)
        });
    }
    monitor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        for job in Periodic::ALL {
            assert!(
                cron::Schedule::from_str(job.schedule()).is_ok(),
                "{}",
                job.name()
            );
        }
    }
}
