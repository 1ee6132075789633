//! What the agent installed and until when. `installed_thumbprints.json` (the seed's name) is
//! the agent's ledger; the user may edit it, so it is reconciled with the server's open
//! installations, and a certificate either lists is removed when due. Due-ness comes from a
//! [`Clock`], never from a sleep: a laptop that slept through 18:00 is past due on waking.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::config::{ConfigError, read_json, write_json};
use super::store::Installed;
use crate::protocol::OpenInstallation;
pub use crate::schedule::{DailyCleanup, LeaseRule};

/// Wall-clock time, injected so tests (and the debug-only `CERTHUB_AGENT_CLOCK_OFFSET_SECS`)
/// can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, shifted by a fixed offset (zero in release builds).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    offset: Duration,
}

impl SystemClock {
    /// In debug builds (tests), `CERTHUB_AGENT_CLOCK_OFFSET_SECS` shifts the agent's clock, so a
    /// black-box test can put the agent past a lease's end without waiting for it.
    pub fn from_env() -> Self {
        let mut offset = Duration::zero();
        if cfg!(debug_assertions)
            && let Some(secs) = std::env::var("CERTHUB_AGENT_CLOCK_OFFSET_SECS")
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
        {
            offset = Duration::seconds(secs);
        }
        Self { offset }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct FixedClock(pub std::sync::Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(t))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// One certificate this agent put in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub installed: Installed,
    pub job_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub installation_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub cert_name: Option<String>,
    pub installed_at: DateTime<Utc>,
    /// The lease's end as the server gave it (`None` until the result's answer arrives).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// What the server's list of open installations says, which an edit of this file cannot
    /// push later.
    #[serde(default)]
    pub server_expires_at: Option<DateTime<Utc>>,
}

impl LedgerEntry {
    /// When it must be gone: the lease's end (the earlier of the file's and the server's) and
    /// the end the office's rule gives an installation made when it was (the first daily
    /// cleanup after it, or the cap), whichever comes first.
    pub fn deadline(&self, rule: &LeaseRule) -> DateTime<Utc> {
        let mut at = rule.end(self.installed_at, None);
        for end in [self.expires_at, self.server_expires_at]
            .into_iter()
            .flatten()
        {
            at = at.min(end);
        }
        at
    }

    /// The certificate's name for the user (its thumbprint when the server never gave one).
    pub fn display_name(&self) -> String {
        self.cert_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("Certificado {}", self.installed.thumbprint))
    }

    pub fn is_due(&self, now: DateTime<Utc>, rule: &LeaseRule) -> bool {
        self.deadline(rule) <= now
    }
}

/// `installed_thumbprints.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub installed: Vec<LedgerEntry>,
}

impl Ledger {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Ok(read_json(path)?.unwrap_or_default())
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_json(path, self)
    }

    pub fn get(&self, thumbprint: &str) -> Option<&LedgerEntry> {
        self.installed
            .iter()
            .find(|e| e.installed.thumbprint.eq_ignore_ascii_case(thumbprint))
    }

    pub fn get_mut(&mut self, thumbprint: &str) -> Option<&mut LedgerEntry> {
        self.installed
            .iter_mut()
            .find(|e| e.installed.thumbprint.eq_ignore_ascii_case(thumbprint))
    }

    /// Adds or replaces the entry for its thumbprint.
    pub fn upsert(&mut self, entry: LedgerEntry) {
        self.remove(&entry.installed.thumbprint);
        self.installed.push(entry);
    }

    pub fn remove(&mut self, thumbprint: &str) -> Option<LedgerEntry> {
        let i = self
            .installed
            .iter()
            .position(|e| e.installed.thumbprint.eq_ignore_ascii_case(thumbprint))?;
        Some(self.installed.remove(i))
    }

    /// Entries due at `now`.
    pub fn due(&self, now: DateTime<Utc>, rule: &LeaseRule) -> Vec<LedgerEntry> {
        self.installed
            .iter()
            .filter(|e| e.is_due(now, rule))
            .cloned()
            .collect()
    }

    /// The next deadline of any entry.
    pub fn next_deadline(&self, rule: &LeaseRule) -> Option<DateTime<Utc>> {
        self.installed.iter().map(|e| e.deadline(rule)).min()
    }

    /// Merges the server's open installations of this device: the server's lease end is kept
    /// beside the file's, and an installation the file lost (edited away) comes back, so it is
    /// removed when due. Returns how many entries it added.
    pub fn reconcile(&mut self, open: &[OpenInstallation], now: DateTime<Utc>) -> usize {
        let mut added = 0;
        for o in open {
            // Never a path or a pattern: a thumbprint that is not one is left out.
            let Ok(thumbprint) = super::store::parse_thumbprint(&o.thumbprint) else {
                super::log::warn(format!(
                    "The server listed installation {} with an invalid thumbprint {:?}: ignored",
                    o.installation_id, o.thumbprint
                ));
                continue;
            };
            if let Some(e) = self.get_mut(&thumbprint) {
                e.server_expires_at = Some(o.expires_at);
                e.installation_id = Some(o.installation_id);
            } else {
                added += 1;
                self.installed.push(LedgerEntry {
                    installed: Installed {
                        thumbprint,
                        key_storage: String::new(),
                        key_name: String::new(),
                        mark: String::new(),
                    },
                    job_id: Some(o.job_id),
                    installation_id: Some(o.installation_id),
                    cert_name: o.cert_name.clone(),
                    installed_at: o.installed_at.unwrap_or(now).min(now),
                    expires_at: Some(o.expires_at),
                    server_expires_at: Some(o.expires_at),
                });
            }
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn entry(thumbprint: &str, installed_at: &str, expires_at: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            installed: Installed {
                thumbprint: thumbprint.into(),
                key_storage: "MEMORY".into(),
                key_name: "k".into(),
                mark: String::new(),
            },
            job_id: None,
            installation_id: None,
            cert_name: None,
            installed_at: utc(installed_at),
            expires_at: expires_at.map(utc),
            server_expires_at: None,
        }
    }

    #[test]
    fn due_at_the_lease_end_or_at_18h_whichever_first() {
        let daily = LeaseRule::default();
        // Installed 10:00 local with a 1-hour lease: due 11:00 local.
        let short = entry("A", "2026-07-15T13:00:00Z", Some("2026-07-15T14:00:00Z"));
        assert!(!short.is_due(utc("2026-07-15T13:59:59Z"), &daily));
        assert!(short.is_due(utc("2026-07-15T14:00:00Z"), &daily));
        // A lease that (edited) runs past 18:00 still ends at 18:00.
        let long = entry("B", "2026-07-15T13:00:00Z", Some("2026-07-16T13:00:00Z"));
        assert_eq!(long.deadline(&daily), utc("2026-07-15T21:00:00Z"));
        // No lease end known yet (the answer to DONE was lost): 18:00 still applies.
        let unknown = entry("C", "2026-07-15T13:00:00Z", None);
        assert_eq!(unknown.deadline(&daily), utc("2026-07-15T21:00:00Z"));
        let ledger = Ledger {
            installed: vec![short, long, unknown],
        };
        assert_eq!(
            ledger.next_deadline(&daily),
            Some(utc("2026-07-15T14:00:00Z"))
        );
        assert_eq!(ledger.due(utc("2026-07-15T15:00:00Z"), &daily).len(), 1);
        assert_eq!(ledger.due(utc("2026-07-15T21:00:00Z"), &daily).len(), 3);
    }

    #[test]
    fn a_laptop_that_slept_through_18h_finds_everything_due_on_waking() {
        let daily = LeaseRule::default();
        let clock = FixedClock::at(utc("2026-07-15T20:59:00Z"));
        let ledger = Ledger {
            installed: vec![entry(
                "A",
                "2026-07-15T13:00:00Z",
                Some("2026-07-15T21:00:00Z"),
            )],
        };
        assert!(ledger.due(clock.now(), &daily).is_empty());
        // The lid closes at 17:59 and opens the next morning: wall clock, not elapsed time.
        clock.set(utc("2026-07-16T11:00:00Z"));
        assert_eq!(ledger.due(clock.now(), &daily).len(), 1);
    }

    #[test]
    fn the_server_list_brings_back_what_an_edit_removed_and_caps_an_extended_lease() {
        let now = utc("2026-07-15T14:00:00Z");
        let (a, b) = ("A".repeat(40), "B".repeat(40));
        let mut ledger = Ledger {
            installed: vec![entry(
                &a,
                "2026-07-15T13:00:00Z",
                Some("2026-07-20T13:00:00Z"),
            )],
        };
        let open = vec![
            OpenInstallation {
                installation_id: uuid::Uuid::new_v4(),
                job_id: uuid::Uuid::new_v4(),
                thumbprint: a.clone(),
                cert_name: None,
                installed_at: None,
                expires_at: utc("2026-07-15T15:00:00Z"),
            },
            OpenInstallation {
                installation_id: uuid::Uuid::new_v4(),
                job_id: uuid::Uuid::new_v4(),
                thumbprint: b.to_ascii_lowercase(),
                cert_name: Some("EMPRESA X LTDA".into()),
                installed_at: Some(utc("2026-07-15T13:30:00Z")),
                expires_at: utc("2026-07-15T14:30:00Z"),
            },
        ];
        assert_eq!(ledger.reconcile(&open, now), 1);
        let daily = LeaseRule::default();
        assert_eq!(
            ledger.get(&a).unwrap().deadline(&daily),
            utc("2026-07-15T15:00:00Z")
        );
        assert_eq!(
            ledger.get(&b).unwrap().deadline(&daily),
            utc("2026-07-15T14:30:00Z")
        );
        assert_eq!(ledger.reconcile(&open, now), 0, "idempotent");
        // A "thumbprint" that is a path is never taken in.
        let hostile = vec![OpenInstallation {
            thumbprint: "../../VICTIM".into(),
            ..open[0].clone()
        }];
        assert_eq!(ledger.reconcile(&hostile, now), 0);
        assert!(ledger.get("../../VICTIM").is_none());
    }

    #[test]
    fn the_ledger_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("installed_thumbprints.json");
        assert_eq!(Ledger::load(&path).unwrap(), Ledger::default());
        let mut ledger = Ledger::default();
        ledger.upsert(entry("A", "2026-07-15T13:00:00Z", None));
        ledger.upsert(entry(
            "A",
            "2026-07-15T13:00:00Z",
            Some("2026-07-15T14:00:00Z"),
        ));
        ledger.save(&path).unwrap();
        let loaded = Ledger::load(&path).unwrap();
        assert_eq!(loaded.installed.len(), 1);
        assert_eq!(loaded, ledger);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"thumbprint\": \"A\""), "{text}");
    }
}
