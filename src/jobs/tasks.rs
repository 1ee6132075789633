//! The jobs area's periodic job: the sweep of stale requests, stuck jobs and overdue
//! installations.

use apalis::prelude::BoxDynError;
use futures_util::FutureExt;

use crate::audit::Actor;
use crate::queue::{Periodic, Registry};
use crate::state::AppState;

pub fn register(registry: &mut Registry<AppState>) {
    // Every 5 minutes: install requests past `request_ttl_hours` -> `EXPIRED`, jobs
    // `IN_PROGRESS` past `job_timeout_minutes` -> `TIMEOUT`, installations past their lease
    // and `lease_grace_minutes` -> overdue, with a `REMOVE` job.
    registry.periodic(Periodic {
        name: "job-sweep",
        schedule: "30 */5 * * * *",
        run: |state| sweep(state).boxed(),
    });
}

async fn sweep(state: AppState) -> Result<(), BoxDynError> {
    super::sweep(
        &state,
        None,
        Actor::System,
        chrono::Utc::now(),
        chrono::Duration::minutes(state.settings.job_timeout_minutes),
    )
    .await?;
    Ok(())
}
