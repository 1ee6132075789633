//! The folder watcher (`notify`): files created, modified or moved into the certificates folder
//! become ingest jobs, files deleted or moved out become delete jobs. Only files directly in the
//! folder with a `.pfx`/`.p12` name count. Events for a file are debounced (a copy in progress
//! fires many) and the jobs have deterministic ids, `cert_ing__<org>__<sha1(path)>` and
//! `cert_del__...`, so a burst on one file queues one job. Past `watcher_max_events_per_minute`
//! per-file jobs stop and the minute ends with one full rescan instead, so nothing is lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::ingest::{PathKey, is_certificate_name};
use super::tasks::{IngestFile, RemoveFile, RescanFolder, SealedPath};
use crate::domain::OrgId;
use crate::queue::Task;
use crate::state::AppState;

/// How often pending events are looked at.
const TICK: Duration = Duration::from_millis(100);
/// How long to wait before watching again when the folder cannot be watched.
const RETRY: Duration = Duration::from_secs(10);

/// The job a settled file gets, and its deterministic id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileJob {
    Ingest,
    Delete,
}

impl FileJob {
    pub fn id(self, org: OrgId, key: &PathKey) -> String {
        let prefix = match self {
            FileJob::Ingest => "cert_ing",
            FileJob::Delete => "cert_del",
        };
        format!("{prefix}__{org}__{}", key.as_str())
    }
}

/// The id of the full rescan job: one at a time per office.
pub fn rescan_job_id(org: OrgId) -> String {
    format!("cert_scan__{org}")
}

/// Whether an event path is a certificate directly in `root`.
fn concerns(root: &Path, path: &Path) -> bool {
    path.parent() == Some(root) && is_certificate_name(&path.to_string_lossy())
}

/// Reading a file (ours included) is not a change; a write that closes is.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Jobs allowed per minute; past it, the minute ends with a full rescan.
struct Budget {
    per_minute: u32,
    window_start: Instant,
    used: u32,
    dropped: bool,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window_start: Instant::now(),
            used: 0,
            dropped: false,
        }
    }

    fn take(&mut self) -> bool {
        if self.used < self.per_minute {
            self.used += 1;
            true
        } else {
            self.dropped = true;
            false
        }
    }

    /// At the end of a minute: whether events were dropped in it (a rescan is due).
    fn roll(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) < Duration::from_secs(60) {
            return false;
        }
        self.window_start = now;
        self.used = 0;
        std::mem::take(&mut self.dropped)
    }
}

/// Runs until `stop` changes. Does nothing when no folder is configured.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let Some(root) = state.settings.certs_root.clone() else {
        return;
    };
    let org = OrgId(state.settings.org_id);
    let (tx, mut events) = mpsc::unbounded_channel::<notify::Result<Event>>();
    let mut watcher = match notify::recommended_watcher(move |res| {
        let _ = tx.send(res);
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "certificates folder watcher unavailable");
            return;
        }
    };
    let mut watching = false;
    let mut next_attempt = Instant::now();
    let debounce = Duration::from_secs(state.settings.watcher_debounce_seconds);
    let mut budget = Budget::new(state.settings.watcher_max_events_per_minute);
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(res) = events.recv() => match res {
                Ok(event) if event.need_rescan() => {
                    tracing::warn!("certificates folder: the watcher lost events; rescanning");
                    enqueue(&state, org, &RescanFolder, rescan_job_id(org)).await;
                }
                Ok(event) if is_change(&event.kind) => {
                    let now = Instant::now();
                    for path in event.paths {
                        if concerns(&root, &path) {
                            pending.insert(path, now);
                        } else if path == root && matches!(event.kind, EventKind::Remove(_)) {
                            tracing::error!("certificates folder was removed; watching again when it is back");
                            watching = false;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "certificates folder watcher error"),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if !watching && now >= next_attempt {
                    match watcher.watch(&root, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            watching = true;
                            tracing::info!(folder = %root.display(), "watching the certificates folder");
                        }
                        Err(e) => {
                            next_attempt = now + RETRY;
                            tracing::error!(folder = %root.display(), error = %e, "cannot watch the certificates folder; retrying");
                        }
                    }
                }
                let settled: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, last)| now.duration_since(**last) >= debounce)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in settled {
                    pending.remove(&path);
                    if budget.take() {
                        settle(&state, org, &path).await;
                    }
                }
                if budget.roll(now) {
                    tracing::warn!(
                        max = state.settings.watcher_max_events_per_minute,
                        "certificates folder: more changes than watcher_max_events_per_minute; rescanning the whole folder"
                    );
                    enqueue(&state, org, &RescanFolder, rescan_job_id(org)).await;
                }
            }
        }
    }
    tracing::info!("certificates folder watcher stopped");
}

/// A file's events have settled: queue an ingest when it is there, a delete when it is not.
async fn settle(state: &AppState, org: OrgId, path: &Path) {
    let key = PathKey::of(path);
    let sealed = SealedPath::seal(&state.master_key, path);
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        let id = FileJob::Ingest.id(org, &key);
        enqueue(state, org, &IngestFile { path: sealed }, id).await;
    } else {
        let id = FileJob::Delete.id(org, &key);
        enqueue(state, org, &RemoveFile { path: sealed }, id).await;
    }
}

async fn enqueue<T: Task>(state: &AppState, org: OrgId, task: &T, id: String) {
    match state.queue.push_unique(task, &id).await {
        Ok(()) => tracing::debug!(job = %id, org = %org, "certificate job queued"),
        Err(e) => tracing::error!(job = %id, error = %e, "cannot queue a certificate job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certificates_directly_in_the_folder() {
        let root = Path::new("/srv/certs");
        assert!(concerns(root, Path::new("/srv/certs/A Senha 1.pfx")));
        assert!(concerns(root, Path::new("/srv/certs/b.P12")));
        assert!(!concerns(root, Path::new("/srv/certs/sub/a.pfx")));
        assert!(!concerns(root, Path::new("/srv/certs/notas.txt")));
        assert!(!concerns(root, Path::new("/srv/other/a.pfx")));
    }

    #[test]
    fn job_ids_are_deterministic() {
        let key = PathKey::of_str(r"C:\certs\teste.pfx");
        let id = FileJob::Ingest.id(OrgId(1), &key);
        assert_eq!(
            id,
            FileJob::Ingest.id(OrgId(1), &PathKey::of_str("c:/certs/TESTE.pfx"))
        );
        assert!(id.starts_with("cert_ing__1__"));
        assert_eq!(
            FileJob::Delete
                .id(OrgId(1), &key)
                .replace("cert_del", "cert_ing"),
            id
        );
    }

    #[test]
    fn budget_drops_past_the_cap_and_asks_for_a_rescan() {
        let mut b = Budget::new(2);
        assert!(b.take() && b.take());
        assert!(!b.take());
        assert!(!b.roll(Instant::now()), "the minute is not over");
        let later = Instant::now() + Duration::from_secs(61);
        assert!(b.roll(later));
        assert!(b.take());
        assert!(!b.roll(later + Duration::from_secs(61)), "nothing dropped");
    }
}
