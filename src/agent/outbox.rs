//! Removal reports that must survive a crash and an absent server. A removal is recorded in
//! `outbox.json` before the store is touched and stays there until the server has the report,
//! so a crash at any step loses nothing, and a replay finds the certificate already gone (a
//! removal is idempotent) instead of removing anything twice.
//!
//! The steps, each durable before the next: (1) intent in the outbox, (2) out of the ledger,
//! (3) certificate and key out of the store, (4) outcome in the outbox, (5) report sent, item
//! dropped. [`Outbox::recover`] finishes steps 2-4 of any item a crash interrupted.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::{ConfigError, read_json, write_json};
use super::leases::{Ledger, LedgerEntry};
use super::store::{CertStore, StoreError};
use crate::protocol::{CleanupMode, Removed, ResultRequest, ResultStatus};

/// Which report a removal owes the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// `POST /agent/cleanup` with this mode.
    Cleanup { mode: CleanupMode },
    /// The result of a `REMOVE` job.
    JobResult { job_id: uuid::Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: uuid::Uuid,
    pub report: Report,
    pub entry: LedgerEntry,
    /// `None` until the store confirmed the removal; then whether the key was deleted.
    pub key_deleted: Option<bool>,
    pub created_at: DateTime<Utc>,
}

/// How a report fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The server has it (a duplicate counts).
    Delivered,
    /// The server is away: keep it and try again later.
    Later(String),
    /// The server refused this job's result (the job moved on): report it as a cleanup.
    JobGone,
}

/// Sends reports; the HTTP client in production, a fake in tests.
pub trait Reporter {
    fn cleanup(&self, mode: CleanupMode, removed: &[Removed]) -> Delivery;
    fn job_result(&self, job_id: uuid::Uuid, result: &ResultRequest) -> Delivery;
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OutboxFile {
    items: Vec<Item>,
}

/// `outbox.json`.
pub struct Outbox {
    path: PathBuf,
    file: OutboxFile,
}

impl Outbox {
    pub fn load(path: PathBuf) -> Result<Self, ConfigError> {
        let file = read_json(&path)?.unwrap_or_default();
        Ok(Self { path, file })
    }

    pub fn items(&self) -> &[Item] {
        &self.file.items
    }

    pub fn is_empty(&self) -> bool {
        self.file.items.is_empty()
    }

    fn save(&self) -> Result<(), ConfigError> {
        write_json(&self.path, &self.file)
    }

    /// Whether a removal of `thumbprint` is already under way.
    pub fn holds(&self, thumbprint: &str) -> bool {
        self.file.items.iter().any(|i| {
            i.entry
                .installed
                .thumbprint
                .eq_ignore_ascii_case(thumbprint)
        })
    }

    /// Step 1: the intent, durable before anything is removed.
    pub fn begin(
        &mut self,
        report: Report,
        entry: LedgerEntry,
        now: DateTime<Utc>,
    ) -> Result<uuid::Uuid, ConfigError> {
        let id = uuid::Uuid::new_v4();
        self.file.items.push(Item {
            id,
            report,
            entry,
            key_deleted: None,
            created_at: now,
        });
        self.save()?;
        Ok(id)
    }

    /// Steps 2-4 for one item.
    pub fn finish_removal(
        &mut self,
        id: uuid::Uuid,
        ledger: &mut Ledger,
        ledger_path: &Path,
        store: &dyn CertStore,
    ) -> Result<Result<bool, StoreError>, ConfigError> {
        let Some(item) = self.file.items.iter().find(|i| i.id == id).cloned() else {
            return Ok(Ok(true));
        };
        if let Some(done) = item.key_deleted {
            return Ok(Ok(done));
        }
        if ledger.remove(&item.entry.installed.thumbprint).is_some() {
            ledger.save(ledger_path)?;
        }
        let removal = match store.remove_with_key(&item.entry.installed) {
            Ok(r) => r,
            // Never this agent's to remove: nothing was touched, and trying again would not
            // change that. The intent goes; the caller says why.
            Err(e @ (StoreError::NotInstalledByAgent | StoreError::InvalidThumbprint)) => {
                self.file.items.retain(|i| i.id != id);
                self.save()?;
                return Ok(Err(e));
            }
            Err(e) => return Ok(Err(e)),
        };
        if let Some(i) = self.file.items.iter_mut().find(|i| i.id == id) {
            i.key_deleted = Some(removal.key_deleted);
        }
        self.save()?;
        Ok(Ok(removal.key_deleted))
    }

    /// After a crash: finishes every removal that was begun. Returns the failures (left in the
    /// outbox to try again).
    pub fn recover(
        &mut self,
        ledger: &mut Ledger,
        ledger_path: &Path,
        store: &dyn CertStore,
    ) -> Result<Vec<(String, StoreError)>, ConfigError> {
        let mut failed = Vec::new();
        let open: Vec<_> = self
            .file
            .items
            .iter()
            .filter(|i| i.key_deleted.is_none())
            .map(|i| (i.id, i.entry.installed.thumbprint.clone()))
            .collect();
        for (id, thumbprint) in open {
            if let Err(e) = self.finish_removal(id, ledger, ledger_path, store)? {
                failed.push((thumbprint, e));
            }
        }
        Ok(failed)
    }

    /// Step 5: sends every finished removal, a cleanup per mode and a result per job; drops
    /// what the server took. Returns how many items were delivered.
    pub fn flush(&mut self, reporter: &dyn Reporter) -> Result<usize, ConfigError> {
        let mut delivered = Vec::new();
        let mut later = false;
        let mut demoted = Vec::new();
        for mode in [
            CleanupMode::Startup,
            CleanupMode::Lease,
            CleanupMode::Scheduled,
            CleanupMode::Manual,
        ] {
            let batch: Vec<&Item> = self
                .file
                .items
                .iter()
                .filter(|i| i.report == Report::Cleanup { mode } && i.key_deleted.is_some())
                .take(200)
                .collect();
            if batch.is_empty() || later {
                continue;
            }
            let removed: Vec<Removed> = batch
                .iter()
                .map(|i| Removed {
                    thumbprint: i.entry.installed.thumbprint.clone(),
                    key_deleted: i.key_deleted.unwrap_or(false),
                })
                .collect();
            match reporter.cleanup(mode, &removed) {
                Delivery::Delivered | Delivery::JobGone => {
                    delivered.extend(batch.iter().map(|i| i.id))
                }
                Delivery::Later(_) => later = true,
            }
        }
        for item in &self.file.items {
            let (Report::JobResult { job_id }, Some(key_deleted)) = (item.report, item.key_deleted)
            else {
                continue;
            };
            if later {
                break;
            }
            let result = ResultRequest {
                status: ResultStatus::Done,
                thumbprint: Some(item.entry.installed.thumbprint.clone()),
                error_code: None,
                error_message: None,
                key_storage: None,
                key_deleted: Some(key_deleted),
            };
            match reporter.job_result(job_id, &result) {
                Delivery::Delivered => delivered.push(item.id),
                Delivery::JobGone => demoted.push(item.id),
                Delivery::Later(_) => later = true,
            }
        }
        if delivered.is_empty() && demoted.is_empty() {
            return Ok(0);
        }
        self.file.items.retain(|i| !delivered.contains(&i.id));
        for i in &mut self.file.items {
            if demoted.contains(&i.id) {
                i.report = Report::Cleanup {
                    mode: CleanupMode::Manual,
                };
            }
        }
        self.save()?;
        Ok(delivered.len())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::agent::store::{Installed, MemoryStore};
    use crate::crypto::SecretString;

    #[derive(Default)]
    struct FakeServer {
        down: RefCell<bool>,
        cleanups: RefCell<Vec<(CleanupMode, Vec<Removed>)>>,
        results: RefCell<Vec<uuid::Uuid>>,
        gone_jobs: Vec<uuid::Uuid>,
    }

    impl Reporter for FakeServer {
        fn cleanup(&self, mode: CleanupMode, removed: &[Removed]) -> Delivery {
            if *self.down.borrow() {
                return Delivery::Later("connection refused".into());
            }
            self.cleanups.borrow_mut().push((mode, removed.to_vec()));
            Delivery::Delivered
        }
        fn job_result(&self, job_id: uuid::Uuid, _: &ResultRequest) -> Delivery {
            if *self.down.borrow() {
                return Delivery::Later("connection refused".into());
            }
            if self.gone_jobs.contains(&job_id) {
                return Delivery::JobGone;
            }
            self.results.borrow_mut().push(job_id);
            Delivery::Delivered
        }
    }

    struct Pc {
        dir: tempfile::TempDir,
        store: MemoryStore,
    }

    impl Pc {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                store: MemoryStore::default(),
            }
        }
        fn ledger_path(&self) -> PathBuf {
            self.dir.path().join("installed_thumbprints.json")
        }
        fn outbox(&self) -> Outbox {
            Outbox::load(self.dir.path().join("outbox.json")).unwrap()
        }
        fn ledger(&self) -> Ledger {
            Ledger::load(&self.ledger_path()).unwrap()
        }
        fn install(&self, thumbprint: &str) -> LedgerEntry {
            let pfx = MemoryStore::pfx(thumbprint, "pw");
            let installed: Installed = self
                .store
                .install(&pfx, &SecretString::new("pw".into()), "x")
                .unwrap();
            let entry = LedgerEntry {
                installed,
                job_id: None,
                installation_id: None,
                cert_name: None,
                installed_at: Utc::now(),
                expires_at: None,
                server_expires_at: None,
            };
            let mut ledger = self.ledger();
            ledger.upsert(entry.clone());
            ledger.save(&self.ledger_path()).unwrap();
            entry
        }
    }

    /// Runs the first `steps` steps of a removal, then "crashes" (drops all in-memory state).
    fn removal_interrupted_after(pc: &Pc, entry: &LedgerEntry, report: Report, steps: usize) {
        if steps == 0 {
            return;
        }
        let mut outbox = pc.outbox();
        let id = outbox.begin(report, entry.clone(), Utc::now()).unwrap();
        if steps == 1 {
            return;
        }
        let mut ledger = pc.ledger();
        ledger.remove(&entry.installed.thumbprint);
        ledger.save(&pc.ledger_path()).unwrap();
        if steps == 2 {
            return;
        }
        pc.store.remove_with_key(&entry.installed).unwrap();
        if steps == 3 {
            return;
        }
        let mut ledger = pc.ledger();
        outbox
            .finish_removal(id, &mut ledger, &pc.ledger_path(), &pc.store)
            .unwrap()
            .unwrap();
        if steps == 4 {
            return;
        }
        let server = FakeServer::default();
        outbox.flush(&server).unwrap();
    }

    #[test]
    fn a_crash_at_any_step_loses_no_report_and_removes_nothing_twice() {
        for steps in 0..=5 {
            let pc = Pc::new();
            let entry = pc.install("AA");
            let report = Report::Cleanup {
                mode: CleanupMode::Lease,
            };
            removal_interrupted_after(&pc, &entry, report, steps);
            // Restart: recover, then the ordinary cleanup of what the ledger still lists.
            let server = FakeServer::default();
            let mut outbox = pc.outbox();
            let mut ledger = pc.ledger();
            assert!(
                outbox
                    .recover(&mut ledger, &pc.ledger_path(), &pc.store)
                    .unwrap()
                    .is_empty()
            );
            for e in ledger.installed.clone() {
                if !outbox.holds(&e.installed.thumbprint) {
                    let id = outbox.begin(report, e, Utc::now()).unwrap();
                    outbox
                        .finish_removal(id, &mut ledger, &pc.ledger_path(), &pc.store)
                        .unwrap()
                        .unwrap();
                }
            }
            outbox.flush(&server).unwrap();
            assert!(
                pc.store.thumbprints().is_empty(),
                "step {steps}: still installed"
            );
            assert_eq!(pc.store.removals(), 1, "step {steps}: removed once");
            assert!(pc.ledger().installed.is_empty(), "step {steps}");
            assert!(pc.outbox().is_empty(), "step {steps}: outbox drained");
            let reported = server.cleanups.borrow().len();
            // Past step 5 the report went out before the crash.
            assert_eq!(reported, usize::from(steps < 5), "step {steps}");
            if steps < 5 {
                assert_eq!(server.cleanups.borrow()[0].1[0].thumbprint, "AA");
                assert!(server.cleanups.borrow()[0].1[0].key_deleted);
            }
        }
    }

    #[test]
    fn reports_wait_for_the_server_and_go_once_it_is_back() {
        let pc = Pc::new();
        let a = pc.install("AA");
        let b = pc.install("BB");
        let job = uuid::Uuid::new_v4();
        let server = FakeServer::default();
        *server.down.borrow_mut() = true;
        let mut outbox = pc.outbox();
        let mut ledger = pc.ledger();
        for (entry, report) in [
            (
                a,
                Report::Cleanup {
                    mode: CleanupMode::Scheduled,
                },
            ),
            (b, Report::JobResult { job_id: job }),
        ] {
            let id = outbox.begin(report, entry, Utc::now()).unwrap();
            outbox
                .finish_removal(id, &mut ledger, &pc.ledger_path(), &pc.store)
                .unwrap()
                .unwrap();
        }
        assert_eq!(outbox.flush(&server).unwrap(), 0);
        assert_eq!(pc.outbox().items().len(), 2, "kept on disk");
        *server.down.borrow_mut() = false;
        let mut outbox = pc.outbox();
        assert_eq!(outbox.flush(&server).unwrap(), 2);
        assert_eq!(server.cleanups.borrow().len(), 1);
        assert_eq!(*server.results.borrow(), vec![job]);
        assert!(pc.outbox().is_empty());
    }

    #[test]
    fn a_result_the_server_no_longer_takes_becomes_a_cleanup_report() {
        let pc = Pc::new();
        let a = pc.install("AA");
        let job = uuid::Uuid::new_v4();
        let server = FakeServer {
            gone_jobs: vec![job],
            ..FakeServer::default()
        };
        let mut outbox = pc.outbox();
        let mut ledger = pc.ledger();
        let id = outbox
            .begin(Report::JobResult { job_id: job }, a, Utc::now())
            .unwrap();
        outbox
            .finish_removal(id, &mut ledger, &pc.ledger_path(), &pc.store)
            .unwrap()
            .unwrap();
        assert_eq!(outbox.flush(&server).unwrap(), 0);
        assert_eq!(outbox.flush(&server).unwrap(), 1);
        assert_eq!(server.cleanups.borrow()[0].0, CleanupMode::Manual);
        assert!(outbox.is_empty());
    }
}
