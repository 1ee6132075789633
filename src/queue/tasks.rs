//! Tasks the in-process worker runs.

use std::time::Duration;

use std::path::{Path, PathBuf};

use apalis::prelude::{BoxDynError, Data, TaskId};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::MasterKey;
use crate::domain::OrgId;
use crate::state::AppState;

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
    /// A file of the folder was created, changed or moved in (from the watcher).
    IngestFile { path: SealedPath },
    /// A file left the folder (from the watcher).
    RemoveFile { path: SealedPath },
}

/// A source path inside a queued task: it holds the file's password, and the queue's table is
/// not the vault, so it travels sealed with the master key (standard base64).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedPath(String);

const PATH_CONTEXT: &str = "queue.source_path";

impl SealedPath {
    pub fn seal(key: &MasterKey, path: &Path) -> Self {
        Self(STANDARD.encode(key.seal(path.to_string_lossy().as_bytes(), PATH_CONTEXT)))
    }

    pub fn open(&self, key: &MasterKey) -> Result<PathBuf, String> {
        let sealed = STANDARD
            .decode(&self.0)
            .map_err(|_| "sealed path is not base64".to_owned())?;
        let raw = key
            .open(&sealed, PATH_CONTEXT)
            .map_err(|e| format!("sealed path cannot be opened: {e}"))?;
        Ok(PathBuf::from(String::from_utf8_lossy(&raw).into_owned()))
    }
}

impl std::fmt::Debug for SealedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedPath(***)")
    }
}

pub(super) async fn run(
    task: BackgroundTask,
    state: Data<AppState>,
    id: TaskId,
) -> Result<(), BoxDynError> {
    // From now on a new change to the same file queues a new job instead of coalescing here.
    if let Err(e) = state.queue.release_unique(&state.db, &id).await {
        tracing::warn!(error = %e, "cannot release the job's unique id");
    }
    let result = match &task {
        BackgroundTask::Probe { org_id, millis } => probe(&state, OrgId(*org_id), *millis).await,
        BackgroundTask::RescanFolder => rescan(&state).await,
        BackgroundTask::IngestFile { path } => match path.open(&state.master_key) {
            Ok(path) => match crate::certificates::ingest::ingest_file(&state, &path).await {
                Ok(_) => flag_expiring(&state).await,
                Err(e) => Err(e.to_string().into()),
            },
            Err(e) => Err(e.into()),
        },
        BackgroundTask::RemoveFile { path } => match path.open(&state.master_key) {
            Ok(path) => crate::certificates::ingest::remove_file(&state, &path)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string().into()),
            Err(e) => Err(e.into()),
        },
    };
    if let Err(e) = &result {
        tracing::error!(?task, error = %e, "background task failed");
    }
    result
}

async fn probe(state: &AppState, org_id: OrgId, millis: u64) -> Result<(), BoxDynError> {
    let millis = millis.min(MAX_PROBE_MILLIS);
    let record = |action| async move {
        audit::record(
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
    flag_expiring(state).await
}

/// A certificate that arrives close to its expiry is flagged now, not at the next daily run.
async fn flag_expiring(state: &AppState) -> Result<(), BoxDynError> {
    crate::certificates::expiry::check_all(&state.db, chrono::Utc::now()).await?;
    Ok(())
}
