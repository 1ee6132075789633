//! Periodic jobs, driven by cron schedules in the office's timezone; the areas register them
//! ([`super::registry::Periodic`]).

use std::str::FromStr;
use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono_tz::Tz;

use super::registry::{Periodic, Registry};

async fn tick<Ctx: Clone + Send + Sync + 'static>(
    _tick: Tick<Tz>,
    job: Data<Arc<Periodic<Ctx>>>,
    ctx: Data<Ctx>,
) -> Result<(), BoxDynError> {
    (job.run)((*ctx).clone())
        .await
        .inspect_err(|e| tracing::error!(job = job.name, error = %e, "periodic job failed"))
}

pub(super) fn register<Ctx: Clone + Send + Sync + 'static>(
    mut monitor: Monitor,
    registry: &Registry<Ctx>,
    ctx: Ctx,
    tz: Tz,
) -> Monitor {
    for job in registry.periodic_jobs() {
        let job = Arc::new(job.clone());
        let schedule =
            cron::Schedule::from_str(job.schedule).expect("periodic schedules are valid");
        let ctx = ctx.clone();
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("certhub-cron-{}", job.name))
                .backend(CronScheduler::new(schedule.clone()).with_timezone(tz))
                .data(job.clone())
                .data(ctx.clone())
                .build(tick::<Ctx>)
        });
    }
    monitor
}
