//! The certificates area's background work: the folder's rescan, one file's ingest or removal
//! (queued by the watcher), and the daily expiry check.

use std::path::{Path, PathBuf};

use apalis::prelude::BoxDynError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::queue::{Periodic, Registry, Task};
use crate::state::AppState;

/// Reconciles the catalogue with the certificates folder (enqueued at start-up, so files
/// added or removed while the server was down are not missed).
#[derive(Debug, Serialize, Deserialize)]
pub struct RescanFolder;

impl Task for RescanFolder {
    const NAME: &'static str = "rescan_folder";
}

/// A file of the folder was created, changed or moved in (from the watcher).
#[derive(Debug, Serialize, Deserialize)]
pub struct IngestFile {
    pub path: SealedPath,
}

impl Task for IngestFile {
    const NAME: &'static str = "ingest_file";
}

/// A file left the folder (from the watcher).
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoveFile {
    pub path: SealedPath,
}

impl Task for RemoveFile {
    const NAME: &'static str = "remove_file";
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

pub fn register(registry: &mut Registry<AppState>) {
    registry
        .task(|_: RescanFolder, state: AppState| async move { rescan(&state).await })
        .task(|task: IngestFile, state: AppState| async move {
            let path = task.path.open(&state.master_key)?;
            super::ingest::ingest_file(&state, &path)
                .await
                .map_err(|e| e.to_string())?;
            flag_expiring(&state).await
        })
        .task(|task: RemoveFile, state: AppState| async move {
            let path = task.path.open(&state.master_key)?;
            super::ingest::remove_file(&state, &path)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        // Daily at 06:00: certificates entering the 30/15/7-day or expired buckets.
        .periodic(Periodic {
            name: "expiry-check",
            schedule: "0 0 6 * * *",
            run: |state| expiry_check(state).boxed(),
        });
}

async fn rescan(state: &AppState) -> Result<(), BoxDynError> {
    let report = super::ingest::scan(state, false, 0)
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
    super::expiry::check_all(&state.db, chrono::Utc::now()).await?;
    Ok(())
}

async fn expiry_check(state: AppState) -> Result<(), BoxDynError> {
    let report = super::expiry::check_all(&state.db, chrono::Utc::now()).await?;
    tracing::info!(
        checked = report.checked,
        changed = report.changed,
        alerts = report.alerts,
        "expiry check done"
    );
    Ok(())
}
