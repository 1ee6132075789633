//! A running agent: its pieces (identity, client, store, clock), the records it keeps under one
//! lock (the ledger of what it installed and the outbox of removal reports), its saved state,
//! the heartbeat and the reconciliation with the server's list. What it does with them lives
//! beside it: `polling.rs` (the job loop), `install.rs`, `removal.rs` and `timer.rs`.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration as StdDuration;

use chrono::Utc;

use super::backoff::Backoff;
use super::client::{Client, ClientError};
use super::config::{Config, ConfigError, DataDir, Secrets, write_json};
use super::leases::{Clock, DailyCleanup, LeaseRule, Ledger};
use super::log;
use super::outbox::Outbox;
use super::state::{AgentState, MAX_SKEW_SECS};
use super::store::CertStore;
use crate::crypto::DeviceSecretKey;
use crate::protocol::{AgentJob, AgentPolicy};

/// The ledger and the outbox change together, under one lock.
pub(super) struct Local {
    pub(super) ledger: Ledger,
    pub(super) outbox: Outbox,
}

/// Shows the user a notification: title, message.
pub type Notifier = dyn Fn(&str, &str) + Send + Sync;

/// [`Local`] held under both locks; the file lock goes when this is dropped.
pub(super) struct LocalGuard<'a> {
    guard: MutexGuard<'a, Local>,
    _file: Option<std::fs::File>,
}

impl std::ops::Deref for LocalGuard<'_> {
    type Target = Local;
    fn deref(&self) -> &Local {
        &self.guard
    }
}

impl std::ops::DerefMut for LocalGuard<'_> {
    fn deref_mut(&mut self) -> &mut Local {
        &mut self.guard
    }
}

/// An exclusive lock on `records.lock` (flock / LockFileEx); `None` if the file cannot be
/// opened (logged), in which case only the in-process lock applies.
fn lock_file(dir: &DataDir) -> Option<std::fs::File> {
    let path = dir.path().join("records.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .and_then(|f| f.lock().map(|()| f));
    match file {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn(format!("{}: {e}", path.display()));
            None
        }
    }
}

/// Who the agent is: the pairing saved in its folder. Swapped whole when a `pair` run while the
/// agent runs saves another ([`Agent::follow_pairing`]).
pub struct Identity {
    pub config: Config,
    pub client: Client,
    pub(super) key: DeviceSecretKey,
}

impl Identity {
    fn load(dir: &DataDir, secrets: &dyn Secrets) -> Result<Self, ConfigError> {
        let config = Config::load(dir)?;
        let device = secrets.load()?.ok_or(ConfigError::NotPaired)?;
        let pins = super::config::read_json(&dir.server_certificate())?;
        let client = Client::new(
            config.server_url.clone(),
            super::trust::Trust::of(pins),
            config.device_id,
            device.device_token.clone(),
            device.key.public_key().to_base64(),
        );
        Ok(Self {
            config,
            client,
            key: device.key.clone(),
        })
    }
}

/// When `config.json` was last written, and its size: pairing writes it last, after the
/// secrets, so a change here means a whole new identity is on disk.
type Stamp = Option<(std::time::SystemTime, u64)>;

fn stamp_of(dir: &DataDir) -> Stamp {
    let meta = std::fs::metadata(dir.config()).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A running agent's pieces.
pub struct Agent {
    pub dir: DataDir,
    identity: RwLock<Arc<Identity>>,
    stamp: Mutex<Stamp>,
    secrets: Box<dyn Secrets>,
    pub(super) store: Box<dyn CertStore>,
    pub(super) clock: Arc<dyn Clock>,
    local: Mutex<Local>,
    state: Mutex<AgentState>,
    pub(super) wake: (Mutex<bool>, Condvar),
    pub(super) flush_backoff: Mutex<Backoff>,
    pub(super) notify: Box<Notifier>,
}

impl Agent {
    pub fn open(
        dir: DataDir,
        secrets: Box<dyn Secrets>,
        store: Box<dyn CertStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let stamp = stamp_of(&dir);
        let identity = Identity::load(&dir, secrets.as_ref())?;
        // A ledger edited into nonsense must not stop the agent: it starts empty and the
        // server's list of open installations brings back what is really installed.
        let ledger = Ledger::load(&dir.ledger()).unwrap_or_else(|e| {
            log::error(format!("{e}: set aside, rebuilt from the server's list"));
            let aside = dir
                .ledger()
                .with_extension(format!("json.damaged-{}", Utc::now().timestamp()));
            let _ = std::fs::rename(dir.ledger(), aside);
            Ledger::default()
        });
        let local = Local {
            ledger,
            outbox: Outbox::load(dir.outbox())?,
        };
        Ok(Self {
            state: Mutex::new(AgentState::load(&dir)),
            dir,
            identity: RwLock::new(Arc::new(identity)),
            stamp: Mutex::new(stamp),
            secrets,
            store,
            clock,
            local: Mutex::new(local),
            wake: (Mutex::new(false), Condvar::new()),
            flush_backoff: Mutex::new(Backoff::default()),
            notify: Box::new(|_, _| {}),
        })
    }

    /// Who the agent is now.
    pub fn identity(&self) -> Arc<Identity> {
        Arc::clone(&self.identity.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether a `pair` has saved another identity since this one was loaded.
    pub(super) fn pairing_changed(&self) -> bool {
        stamp_of(&self.dir) != *self.stamp.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up the identity a `pair` saved while the agent runs (from the command line, or the
    /// one-line install run again): the next call goes out as the new device, the old error
    /// goes, and the tray turns back. `true` when it changed.
    pub fn follow_pairing(&self) -> bool {
        if !self.pairing_changed() {
            return false;
        }
        let stamp = stamp_of(&self.dir);
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        match Identity::load(&self.dir, self.secrets.as_ref()) {
            Ok(identity) => {
                log::info(format!(
                    "Pairing changed while running: now device {} at {}",
                    identity.config.device_id, identity.config.server_url
                ));
                *self.identity.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(identity);
                self.clear_error();
                self.poke_timer();
                true
            }
            Err(e) => {
                log::warn(format!("Pairing changed but cannot be read yet: {e}"));
                false
            }
        }
    }

    /// Where notifications go (the tray's balloon on Windows).
    pub fn with_notifier(mut self, notify: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.notify = Box::new(notify);
        self
    }

    /// The ledger and outbox, locked against this process's other thread and against other
    /// processes (the scheduled task's `cleanup` while `run` is up: a lock file), and read
    /// again from disk since that process may have changed them.
    pub(super) fn local(&self) -> LocalGuard<'_> {
        let guard = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let file = lock_file(&self.dir);
        let mut local = LocalGuard { guard, _file: file };
        match Ledger::load(&self.dir.ledger()) {
            Ok(ledger) => local.ledger = ledger,
            Err(e) => {
                // Edited into nonsense: the last good record is written back over it.
                log::error(format!("{e}: keeping the last good record"));
                if let Err(e) = local.ledger.save(&self.dir.ledger()) {
                    log::error(e.to_string());
                }
            }
        }
        match Outbox::load(self.dir.outbox()) {
            Ok(outbox) => local.outbox = outbox,
            Err(e) => log::error(format!("{e}: keeping the last good outbox")),
        }
        local
    }

    fn state(&self) -> MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn daily(&self) -> DailyCleanup {
        self.state().daily()
    }

    pub fn lease_rule(&self) -> LeaseRule {
        self.state().lease_rule()
    }

    fn save_state(&self) {
        let state = self.state().clone();
        if let Err(e) = write_json(&self.dir.state(), &state) {
            log::warn(format!("Could not save state.json: {e}"));
        }
    }

    pub(super) fn note_error(&self, e: &ClientError) {
        self.state().last_error = Some(e.to_string());
        self.save_state();
    }

    /// The server answered again: the tray turns back at once, not at the next heartbeat.
    pub(super) fn clear_error(&self) {
        let had = self.state().last_error.take().is_some();
        if had {
            self.save_state();
        }
    }

    /// Wakes the timer (a new deadline, or a report to send).
    pub(super) fn poke_timer(&self) {
        let (flag, cv) = &self.wake;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Whether the server answers this identity, changing nothing the tray reads (`status` from
    /// the command line while the tray agent runs).
    /// Returns this PC's clock skew against the server's, in seconds (logged when large).
    pub fn probe(&self) -> Result<i64, ClientError> {
        let sent = self.clock.now();
        let beat = self.identity().client.heartbeat()?;
        let skew = (sent - beat.server_time).num_seconds();
        if skew.abs() > MAX_SKEW_SECS {
            log::warn(format!(
                "Clock skew: this PC's clock is {} off the server's ({})",
                super::tray_model::format_skew(chrono::TimeDelta::seconds(skew)),
                beat.server_time.to_rfc3339()
            ));
        }
        Ok(skew)
    }

    /// `POST /agent/heartbeat`: keeps the policy and checks the clock against the server's.
    pub fn heartbeat(&self) -> Result<AgentPolicy, ClientError> {
        let sent = self.clock.now();
        let beat = self.identity().client.heartbeat();
        let beat = match beat {
            Ok(b) => b,
            Err(e) => {
                self.note_error(&e);
                return Err(e);
            }
        };
        let skew = (sent - beat.server_time).num_seconds();
        if skew.abs() > MAX_SKEW_SECS {
            log::warn(format!(
                "Clock skew: this PC's clock is {} off the server's ({}); certificates are removed by the server's lease times, fix the PC's clock",
                super::tray_model::format_skew(chrono::TimeDelta::seconds(skew)),
                beat.server_time.to_rfc3339()
            ));
        }
        if LeaseRule::from_policy(&beat.policy).is_none() {
            log::warn(format!(
                "Unreadable policy cleanup_time {:?} / timezone {:?}: using 18:00 America/Sao_Paulo",
                beat.policy.cleanup_time, beat.policy.timezone
            ));
        }
        self.keep_pins(beat.server_certificate.as_ref());
        {
            let mut state = self.state();
            state.policy = Some(beat.policy.clone());
            state.last_heartbeat_at = Some(sent);
            state.clock_skew_seconds = Some(skew);
            state.last_error = None;
        }
        self.save_state();
        Ok(beat.policy)
    }

    /// Takes up the next certificate the server announced (this heartbeat came over a
    /// connection pinned to the current one) and saves the pins when they changed.
    fn keep_pins(&self, announced: Option<&crate::protocol::ServerCertificatePins>) {
        let identity = self.identity();
        let Some(pins) = identity.client.trust().pinned() else {
            return;
        };
        if let Some(announced) = announced {
            pins.learn(announced);
        }
        if let Some(changed) = pins.take_changed()
            && let Err(e) = write_json(&self.dir.server_certificate(), &changed)
        {
            log::error(format!(
                "Cannot save the server's certificate fingerprints: {e}"
            ));
        }
    }

    /// Merges the server's open installations into the ledger (start-up and every cleanup).
    pub fn reconcile(&self) -> Result<usize, ClientError> {
        let open = self.identity().client.installations()?;
        let now = self.clock.now();
        let mut local = self.local();
        // A removal whose report is still on its way is not brought back.
        let open: Vec<_> = open
            .installations
            .into_iter()
            .filter(|o| !local.outbox.holds(&o.thumbprint))
            .collect();
        let before = local.ledger.clone();
        let added = local.ledger.reconcile(&open, now);
        if local.ledger != before
            && let Err(e) = local.ledger.save(&self.dir.ledger())
        {
            log::error(format!("Could not save installed_thumbprints.json: {e}"));
        }
        if added > 0 {
            log::warn(format!(
                "{added} installation(s) the server lists were missing from installed_thumbprints.json: restored, they will be removed when due"
            ));
        }
        Ok(added)
    }

    pub(super) fn job_error(&self, job: &AgentJob, step: &str, e: &ClientError) -> StdDuration {
        log::warn(format!("Job {} ({step}): {e}", job.id));
        match e.status() {
            Some(409) => StdDuration::from_secs(3),
            Some(429) => StdDuration::from_secs(20),
            _ if e.is_transient() => StdDuration::from_secs(5),
            _ => StdDuration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use mockito::Matcher;

    use super::*;
    use crate::agent::config::FileSecrets;
    use crate::agent::store::MemoryStore;
    use crate::agent::test_support::*;

    #[test]
    fn a_401_re_authenticates_once_then_reports_the_rotated_token() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut server = mockito::Server::new();
        // The first authentication works; the token is rotated right after.
        for status in [200, 401] {
            let counter = Arc::clone(&seen);
            respond(&mut server, "POST", AUTH, status, move |_| {
                counter.lock().unwrap().auths += 1;
                if status == 200 {
                    access_token()
                } else {
                    unauthorized()
                }
            });
        }
        for method in ["GET", "POST"] {
            server
                .mock(method, Matcher::Any)
                .match_request(|r| r.path() != AUTH)
                .with_status(401)
                .with_header("content-type", "application/json")
                .with_body(unauthorized().to_string())
                .create();
        }
        let r = rig(server);
        let err = r.agent.heartbeat().unwrap_err();
        assert_eq!(err, ClientError::AuthFailed);
        assert!(
            err.to_string()
                .contains("Falha de autenticação: token rotacionado ou inválido")
        );
        assert_eq!(
            seen.lock().unwrap().auths,
            2,
            "re-authenticated exactly once"
        );
        assert!(
            AgentState::load(&r.agent.dir)
                .last_error
                .unwrap()
                .contains("token rotacionado")
        );
    }

    /// Issue 22, point 6: paired again while it runs, the agent goes on as the new device at its
    /// next call, and a `status` probe leaves the record the tray reads alone.
    #[test]
    fn a_pairing_saved_while_running_is_taken_up_and_a_probe_changes_nothing() {
        let auths = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut server = mockito::Server::new();
        let seen = Arc::clone(&auths);
        respond(&mut server, "POST", AUTH, 200, move |req| {
            seen.lock()
                .unwrap()
                .push(body_of(req)["device_id"].as_str().unwrap_or("").to_owned());
            access_token()
        });
        respond(&mut server, "POST", "/api/v1/agent/heartbeat", 200, |_| {
            serde_json::json!({"server_time": Utc::now(), "policy": {
                "cleanup_time": "18:00", "timezone": "America/Sao_Paulo", "max_lease_hours": 10,
                "poll_interval_seconds": 5, "long_poll_seconds": 25, "heartbeat_interval_seconds": 60
            }})
        });
        let r = rig(server);
        r.agent.note_error(&ClientError::AuthFailed);
        assert!(!r.agent.follow_pairing(), "nothing changed yet");

        // `pair` in another process: new secrets, then the new config (a second later, so
        // the file's time moves on any file system).
        std::thread::sleep(StdDuration::from_millis(1100));
        let new_device = uuid::Uuid::new_v4();
        let config = Config {
            device_id: new_device,
            ..r.agent.identity().config.clone()
        };
        let device = crate::agent::config::DeviceSecrets {
            device_token: crate::crypto::SecretString::new("new-token".into()),
            key: DeviceSecretKey::generate(),
        };
        crate::agent::config::save_identity(
            &r.agent.dir,
            &FileSecrets::new(&r.agent.dir),
            &config,
            &device,
        )
        .unwrap();
        assert!(r.agent.pairing_changed());
        assert!(r.agent.follow_pairing());
        assert_eq!(r.agent.identity().config.device_id, new_device);
        assert_eq!(
            AgentState::load(&r.agent.dir).last_error,
            None,
            "the tray turns back"
        );
        r.agent.heartbeat().unwrap();
        assert_eq!(
            auths.lock().unwrap().last().map(String::as_str),
            Some(new_device.to_string().as_str())
        );

        // A probe (what `status` does) answers, and writes nothing the tray reads.
        let before = std::fs::read(r.agent.dir.state()).unwrap();
        std::thread::sleep(StdDuration::from_millis(20));
        r.agent.probe().unwrap();
        assert_eq!(std::fs::read(r.agent.dir.state()).unwrap(), before);
    }

    #[test]
    fn a_ledger_edited_into_nonsense_neither_stops_the_agent_nor_keeps_a_certificate() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = rig(recording_server(Arc::clone(&requests), 200));
        installed(&r, "AA", "2026-07-15T14:00:00Z");
        // While running: the damaged file is replaced by the last good record.
        r.agent.timer_tick();
        std::fs::write(r.agent.dir.ledger(), b"{ not json").unwrap();
        r.clock.set("2026-07-15T14:00:01Z".parse().unwrap());
        r.agent.timer_tick();
        assert!(r.store.thumbprints().is_empty());
        assert!(
            Ledger::load(&r.agent.dir.ledger())
                .unwrap()
                .installed
                .is_empty()
        );
        // At start-up: set aside, and the agent starts.
        std::fs::write(r.agent.dir.ledger(), b"{ not json").unwrap();
        let again = Agent::open(
            r.agent.dir.clone(),
            Box::new(FileSecrets::new(&r.agent.dir)),
            Box::new(MemoryStore::default()),
            Arc::clone(&r.clock) as Arc<dyn Clock>,
        );
        assert!(again.is_ok());
        assert!(
            Ledger::load(&r.agent.dir.ledger())
                .unwrap()
                .installed
                .is_empty()
        );
    }
}
