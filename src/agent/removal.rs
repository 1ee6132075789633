//! Taking certificates out, with their keys, and telling the server: `REMOVE` jobs, the
//! cleanups (start-up, the daily time, a lease's end, by hand), each removal through the
//! outbox so that a crash or an absent server loses no report.

use std::time::Duration as StdDuration;

use super::leases::LedgerEntry;
use super::log;
use super::outbox::Report;
use super::runtime::{Agent, Local};
use super::store::Installed;
use super::tray_model::removed_balloon;
use crate::protocol::{AgentJob, AgentJobStatus, CleanupMode, ResultRequest, ResultStatus};

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupOutcome {
    pub removed: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Reports still waiting for the server.
    pub unreported: usize,
}

impl Agent {
    /// Finishes removals a crash interrupted, then removes what is due and reports.
    pub fn startup(&self) -> CleanupOutcome {
        {
            let mut local = self.local();
            let Local { ledger, outbox } = &mut *local;
            match outbox.recover(ledger, &self.dir.ledger(), self.store.as_ref()) {
                Ok(failed) => {
                    for (t, e) in failed {
                        log::error(format!("Removal of {t} still fails: {e}"));
                    }
                }
                Err(e) => log::error(format!("Outbox: {e}")),
            }
        }
        self.flush();
        if let Err(e) = self.reconcile() {
            log::warn(format!("Start-up reconciliation skipped: {e}"));
        }
        let due = self.due_entries();
        if due.is_empty() {
            self.flush();
            return CleanupOutcome {
                unreported: self.local().outbox.items().len(),
                ..Default::default()
            };
        }
        self.cleanup_entries(CleanupMode::Startup, due)
    }

    pub(super) fn due_entries(&self) -> Vec<LedgerEntry> {
        let now = self.clock.now();
        let rule = self.lease_rule();
        self.local().ledger.due(now, &rule)
    }

    /// `cleanup --mode ...` and the timer: removes (scheduled/manual: everything the agent
    /// installed; startup/lease: what is due), then reports.
    pub fn cleanup(&self, mode: CleanupMode) -> CleanupOutcome {
        log::info(format!("Starting cleanup ({mode:?})"));
        if let Err(e) = self.reconcile() {
            log::warn(format!("Reconciliation with the server skipped: {e}"));
        }
        let entries = match mode {
            CleanupMode::Scheduled | CleanupMode::Manual | CleanupMode::Uninstall => {
                self.local().ledger.installed.clone()
            }
            CleanupMode::Startup | CleanupMode::Lease => self.due_entries(),
        };
        self.cleanup_entries(mode, entries)
    }

    pub(super) fn cleanup_entries(
        &self,
        mode: CleanupMode,
        entries: Vec<LedgerEntry>,
    ) -> CleanupOutcome {
        let mut outcome = CleanupOutcome::default();
        for entry in entries {
            let thumbprint = entry.installed.thumbprint.clone();
            let name = entry.display_name();
            match self.remove(Report::Cleanup { mode }, entry) {
                Ok(key_deleted) => {
                    log::info(format!(
                        "Removed {name} ({thumbprint}, {mode:?}), key deleted: {key_deleted}"
                    ));
                    self.notify_removed(&name);
                    outcome.removed.push(thumbprint);
                }
                Err(e) => {
                    log::error(format!("Could not remove {thumbprint}: {e}"));
                    outcome.failed.push((thumbprint, e));
                }
            }
        }
        self.flush();
        outcome.unreported = self.local().outbox.items().len();
        log::info(format!(
            "Cleanup ({mode:?}) done: {} removed, {} failed, {} report(s) waiting for the server",
            outcome.removed.len(),
            outcome.failed.len(),
            outcome.unreported
        ));
        outcome
    }

    fn notify_removed(&self, name: &str) {
        let balloon = removed_balloon(name);
        (self.notify)(&balloon.title, &balloon.text);
    }

    /// One removal through the outbox (durable intent, ledger, store, outcome).
    pub(super) fn remove(&self, report: Report, entry: LedgerEntry) -> Result<bool, String> {
        let mut local = self.local();
        let Local { ledger, outbox } = &mut *local;
        if outbox.holds(&entry.installed.thumbprint) {
            // Already under way (a crash, or the timer and a job at once): finish that one.
            let failed = outbox
                .recover(ledger, &self.dir.ledger(), self.store.as_ref())
                .map_err(|e| e.to_string())?;
            return match failed.into_iter().next() {
                Some((_, e)) => Err(e.to_string()),
                None => Ok(true),
            };
        }
        let id = outbox
            .begin(report, entry, self.clock.now())
            .map_err(|e| e.to_string())?;
        match outbox.finish_removal(id, ledger, &self.dir.ledger(), self.store.as_ref()) {
            Ok(Ok(key_deleted)) => Ok(key_deleted),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends waiting reports; true when none is left.
    pub fn flush(&self) -> bool {
        let mut local = self.local();
        if local.outbox.is_empty() {
            return true;
        }
        match local.outbox.flush(&self.identity().client) {
            Ok(n) if n > 0 => log::info(format!("Sent {n} removal report(s)")),
            Ok(_) => {}
            Err(e) => log::error(format!("Outbox: {e}")),
        }
        local.outbox.is_empty()
    }

    pub(super) fn remove_job(&self, job: &AgentJob) -> Result<(), StdDuration> {
        let Some(thumbprint) = job.thumbprint.clone().map(|t| t.to_ascii_uppercase()) else {
            log::warn(format!("REMOVE job {} names no certificate", job.id));
            return Err(StdDuration::from_secs(300));
        };
        let pending = self
            .local()
            .outbox
            .items()
            .iter()
            .any(|i| i.report == Report::JobResult { job_id: job.id });
        if !pending {
            match self.identity().client.claim(job.id) {
                Ok(_) => {}
                // This device holds it already (a lost answer): go on.
                Err(e) if e.status() == Some(409) && job.status == AgentJobStatus::InProgress => {}
                Err(e) => return Err(self.job_error(job, "claim", &e)),
            }
            let entry = self
                .local()
                .ledger
                .get(&thumbprint)
                .cloned()
                .unwrap_or(LedgerEntry {
                    // Not in the (editable) file: the server says this agent installed it.
                    installed: Installed {
                        thumbprint: thumbprint.clone(),
                        key_storage: String::new(),
                        key_name: String::new(),
                    },
                    job_id: None,
                    installation_id: job.installation_id,
                    cert_name: job.cert_name.clone(),
                    installed_at: self.clock.now(),
                    expires_at: None,
                    server_expires_at: None,
                });
            let name = entry.display_name();
            match self.remove(Report::JobResult { job_id: job.id }, entry) {
                Ok(key_deleted) => {
                    log::info(format!(
                        "Removed {name} ({thumbprint}, REMOVE job {}), key deleted: {key_deleted}",
                        job.id
                    ));
                    self.notify_removed(&name);
                }
                Err(e) => {
                    log::error(format!("REMOVE job {}: {e}", job.id));
                    let result = ResultRequest {
                        status: ResultStatus::Failed,
                        thumbprint: Some(thumbprint),
                        error_code: Some("STORE_REFUSED".into()),
                        error_message: Some(e),
                        key_storage: None,
                        key_deleted: None,
                    };
                    let _ = self.identity().client.result(job.id, &result);
                    return Ok(());
                }
            }
        }
        if self.flush() {
            Ok(())
        } else {
            Err(StdDuration::from_secs(5))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;
    use crate::agent::leases::Ledger;
    use crate::agent::test_support::*;
    use crate::protocol::AgentJobType;

    #[test]
    fn a_remove_job_held_in_progress_is_finished_and_its_result_sent() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        // The claim's answer was lost earlier: claiming again is a 409 for a job we hold.
        let r = rig(recording_server(Arc::clone(&requests), 409));
        installed(&r, "AA", "2026-07-15T20:00:00Z");
        let mut job = job(uuid::Uuid::new_v4(), "aa");
        job.job_type = AgentJobType::Remove;
        job.status = AgentJobStatus::InProgress;
        r.agent.handle(&job).unwrap();
        assert!(r.store.thumbprints().is_empty());
        let results: Vec<Value> = requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p.ends_with("/result"))
            .map(|(_, _, b)| b.clone())
            .collect();
        assert_eq!(
            results,
            vec![json!({"status": "DONE", "thumbprint": "AA", "key_deleted": true})]
        );
        assert!(
            Ledger::load(&r.agent.dir.ledger())
                .unwrap()
                .installed
                .is_empty()
        );
        // A PENDING job another claim won is left alone.
        let r = rig(recording_server(Arc::new(Mutex::new(Vec::new())), 409));
        installed(&r, "AA", "2026-07-15T20:00:00Z");
        job.status = AgentJobStatus::Pending;
        assert!(r.agent.handle(&job).is_err());
        assert_eq!(r.store.thumbprints(), vec!["AA".to_owned()]);
    }
}
