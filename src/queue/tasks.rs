//! Tasks the in-process worker runs.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::startup::AppState;

/// Longest pause a probe may ask for.
pub const MAX_PROBE_MILLIS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum BackgroundTask {
    /// Proves the queue works end to end (`certhub queue probe`): audits
    /// `QUEUE_PROBE_STARTED`, pauses, audits `QUEUE_PROBE_FINISHED`.
    Probe { org_id: i64, millis: u64 },
    /// Reconciles the catalogue with the certificates folder (enqueued at start-up, so files
    /// added or removed while the server was down are not missed).
    RescanFolder,
}

pub(super) async fn run(task: BackgroundTask, state: Data<AppState>) -> Result<(), BoxDynError> {
    let result = match &task {
        BackgroundTask::Probe { org_id, millis } => probe(&state, OrgId(*org_id), *millis).await,
        BackgroundTask::RescanFolder => rescan(&state).await,
    };
    if let Err(e) = &result {
        tracing::error!(?task, error = %e, "background task failed");
    }
    result
}

async fn probe(state: &AppState, org_id: OrgId, millis: u64) -> Result<(), BoxDynError> {
    let millis = millis.min(MAX_PROBE_MILLIS);
    let record = |action| async move {
        let txn = crate::db::begin_write(&state.db).await?;
        audit::append(
            &txn,
            Entry::new(org_id, action, Actor::System).meta(json!({"millis": millis})),
        )
        .await?;
        txn.commit().await?;
        Ok::<(), BoxDynError>(())
    };
    record(AuditAction::QueueProbeStarted).await?;
    tracing::info!(millis, "queue probe started");
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record(AuditAction::QueueProbeFinished).await?;
    tracing::info!("queue probe finished");
    Ok(())
}

async fn rescan(state: &AppState) -> Result<(), BoxDynError> {
    let report = crate::certificates::ingest::scan(state, false, 0)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        ingested = report.ingested,
        updated = report.updated,
        unchanged = report.unchanged,
        failed = report.failed,
        removed = report.removed,
        skipped = report.skipped,
        "certificates folder reconciled"
    );
    Ok(())
}
