//! The queue probe (`certhub queue probe`): proves the queue works end to end by auditing
//! `QUEUE_PROBE_STARTED`, pausing, and auditing `QUEUE_PROBE_FINISHED`.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::queue::{Registry, Task};
use crate::state::AppState;

/// Longest pause a probe may ask for.
pub const MAX_PROBE_MILLIS: u64 = 60_000;

#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    pub org_id: i64,
    pub millis: u64,
}

impl Task for Probe {
    const NAME: &'static str = "probe";
}

pub fn register(registry: &mut Registry<AppState>) {
    registry.task(|probe: Probe, state: AppState| async move { run(&state, probe).await });
}

async fn run(state: &AppState, probe: Probe) -> Result<(), BoxDynError> {
    let millis = probe.millis.min(MAX_PROBE_MILLIS);
    let org_id = OrgId(probe.org_id);
    let record = |action| async move {
        super::record(
            &state.db,
            Entry::new(org_id, action, Actor::System).meta(json!({"millis": millis})),
        )
        .await?;
        Ok::<(), BoxDynError>(())
    };
    record(AuditAction::QueueProbeStarted).await?;
    tracing::info!(millis, "queue probe started");
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record(AuditAction::QueueProbeFinished).await?;
    tracing::info!("queue probe finished");
    Ok(())
}
