//! Taking certificates out, with their keys, and telling the server: `REMOVE` jobs, the
//! cleanups (start-up, the daily time, a lease's end, by hand), each removal through the
//! outbox so that a crash or an absent server loses no report.

use std::time::Duration as StdDuration;

use super::leases::LedgerEntry;
use super::log;
use super::outbox::Report;
use super::runtime::{Agent, Local};
use super::store::{Installed, StoreError, parse_thumbprint};
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
                Err(e @ StoreError::NotInstalledByAgent) => {
                    log::warn(format!(
                        "Left {name} ({thumbprint}) in place: {e} ({})",
                        e.code()
                    ));
                    outcome.failed.push((thumbprint, e.to_string()));
                }
                Err(e) => {
                    log::error(format!("Could not remove {thumbprint}: {e}"));
                    outcome.failed.push((thumbprint, e.to_string()));
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
    pub(super) fn remove(&self, report: Report, entry: LedgerEntry) -> Result<bool, StoreError> {
        let refused = |e: super::config::ConfigError| StoreError::StoreRefused(e.to_string());
        let mut local = self.local();
        let Local { ledger, outbox } = &mut *local;
        if outbox.holds(&entry.installed.thumbprint) {
            // Already under way (a crash, or the timer and a job at once): finish that one.
            let failed = outbox
                .recover(ledger, &self.dir.ledger(), self.store.as_ref())
                .map_err(refused)?;
            return match failed.into_iter().next() {
                Some((_, e)) => Err(e),
                None => Ok(true),
            };
        }
        let id = outbox
            .begin(report, entry, self.clock.now())
            .map_err(refused)?;
        outbox
            .finish_removal(id, ledger, &self.dir.ledger(), self.store.as_ref())
            .map_err(refused)?
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
        let Some(named) = job.thumbprint.clone() else {
            log::warn(format!("REMOVE job {} names no certificate", job.id));
            return Err(StdDuration::from_secs(300));
        };
        // Checked before anything: a thumbprint is never a path or a pattern.
        let thumbprint = match parse_thumbprint(&named) {
            Ok(t) => t,
            Err(e) => {
                log::warn(format!("REMOVE job {}: {e}: {named:?}", job.id));
                let _ = self.identity().client.claim(job.id);
                return self.refuse_removal(job, None, &e);
            }
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
                        mark: String::new(),
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
                    log::error(format!("REMOVE job {} ({name}, {thumbprint}): {e}", job.id));
                    return self.refuse_removal(job, Some(thumbprint), &e);
                }
            }
        }
        if self.flush() {
            Ok(())
        } else {
            Err(StdDuration::from_secs(5))
        }
    }

    /// Tells the server a `REMOVE` job failed (`NOT_INSTALLED_BY_AGENT`: nothing was touched).
    fn refuse_removal(
        &self,
        job: &AgentJob,
        thumbprint: Option<String>,
        e: &StoreError,
    ) -> Result<(), StdDuration> {
        let result = ResultRequest {
            status: ResultStatus::Failed,
            thumbprint,
            error_code: Some(e.code().into()),
            error_message: Some(e.to_string()),
            key_storage: None,
            key_deleted: None,
        };
        match self.identity().client.result(job.id, &result) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.job_error(job, "result", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;
    use crate::agent::leases::Ledger;
    use crate::agent::store::CertStore;
    use crate::agent::test_support::*;
    use crate::protocol::AgentJobType;

    /// The bodies of the results the agent sent.
    fn results_sent(requests: &Requests) -> Vec<Value> {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p.ends_with("/result"))
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    #[test]
    fn a_remove_job_held_in_progress_is_finished_and_its_result_sent() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        // The claim's answer was lost earlier: claiming again is a 409 for a job we hold.
        let r = rig(recording_server(Arc::clone(&requests), 409));
        let aa = "A".repeat(40);
        installed(&r, &aa, "2026-07-15T20:00:00Z");
        let mut job = job(uuid::Uuid::new_v4(), &aa.to_ascii_lowercase());
        job.job_type = AgentJobType::Remove;
        job.status = AgentJobStatus::InProgress;
        r.agent.handle(&job).unwrap();
        assert!(r.store.thumbprints().is_empty());
        let results = results_sent(&requests);
        assert_eq!(
            results,
            vec![json!({"status": "DONE", "thumbprint": aa, "key_deleted": true})]
        );
        assert!(
            Ledger::load(&r.agent.dir.ledger())
                .unwrap()
                .installed
                .is_empty()
        );
        // A PENDING job another claim won is left alone.
        let r = rig(recording_server(Arc::new(Mutex::new(Vec::new())), 409));
        installed(&r, &aa, "2026-07-15T20:00:00Z");
        job.status = AgentJobStatus::Pending;
        assert!(r.agent.handle(&job).is_err());
        assert_eq!(r.store.thumbprints(), vec![aa.clone()]);
    }

    /// Issue 23: a `REMOVE` job naming a certificate the agent did not import (the user's
    /// own), or one this agent's ledger knows but whose mark in the store is another, fails
    /// `NOT_INSTALLED_BY_AGENT` and touches nothing; a thumbprint that is not one is refused
    /// before any use.
    #[test]
    fn a_remove_job_for_a_certificate_the_agent_did_not_import_touches_nothing() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = rig(recording_server(Arc::clone(&requests), 200));
        let users = "C".repeat(40);
        r.store.add_foreign(&users);
        let mut remove = job(uuid::Uuid::new_v4(), &users);
        remove.job_type = AgentJobType::Remove;
        r.agent.handle(&remove).unwrap();
        assert!(
            r.store.contains(&users).unwrap(),
            "the user's certificate stays"
        );

        let mut hostile = job(uuid::Uuid::new_v4(), "../../VICTIM");
        hostile.job_type = AgentJobType::Remove;
        r.agent.handle(&hostile).unwrap();

        let results = results_sent(&requests);
        assert_eq!(results.len(), 2, "{results:?}");
        assert_eq!(results[0]["status"], "FAILED");
        assert_eq!(results[0]["error_code"], "NOT_INSTALLED_BY_AGENT");
        assert_eq!(results[0]["thumbprint"], users.as_str());
        assert_eq!(results[1]["error_code"], "INVALID_THUMBPRINT");
        assert!(r.agent.local().outbox.is_empty(), "nothing left to retry");
    }
}
