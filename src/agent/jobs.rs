//! The agent at work: heartbeat at the policy's interval, long-poll for jobs, install
//! (claim, payload, open, import, record, result) and remove (`REMOVE` jobs, lease ends, the
//! daily cleanup), with exponential backoff and jitter while the server is away. A timer
//! thread compares the wall clock with every deadline at least every 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::client::{Client, ClientError};
use super::config::{Config, ConfigError, DataDir, Secrets, read_json, write_json};
use super::leases::{Clock, DailyCleanup, Ledger, LedgerEntry};
use super::log;
use super::outbox::{Outbox, Report};
use super::store::{CertStore, Installed};
use crate::crypto::{DeviceSecretKey, PayloadContext, SecretString};
use crate::protocol::{
    AgentJob, AgentJobStatus, AgentJobType, AgentPolicy, CleanupMode, ResultRequest, ResultStatus,
};

/// Longest the timer sleeps between looks at the wall clock.
pub const TIMER_PERIOD: StdDuration = StdDuration::from_secs(30);
/// Clock skew against the server's worth a warning.
pub const MAX_SKEW_SECS: i64 = 120;

/// What `status` shows between runs: the last contact and the policy (so a cleanup without
/// the server still knows the office's `cleanup_time`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub policy: Option<AgentPolicy>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub clock_skew_seconds: Option<i64>,
    pub last_error: Option<String>,
}

impl AgentState {
    pub fn load(dir: &DataDir) -> Self {
        read_json(&dir.state()).ok().flatten().unwrap_or_default()
    }

    pub fn daily(&self) -> DailyCleanup {
        self.policy
            .as_ref()
            .and_then(DailyCleanup::from_policy)
            .unwrap_or_default()
    }
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s ... up to 30 s, each scaled by 0.5-1.0.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn next_delay(&mut self) -> StdDuration {
        let base =
            StdDuration::from_secs(1 << self.failures.min(5)).min(StdDuration::from_secs(30));
        self.failures = self.failures.saturating_add(1);
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        base.mul_f64(0.5 + r / 2.0)
    }
}

/// The ledger and the outbox change together, under one lock.
struct Local {
    ledger: Ledger,
    outbox: Outbox,
}

/// Shows the user a notification: title, message.
pub type Notifier = dyn Fn(&str, &str) + Send + Sync;

/// [`Local`] held under both locks; the file lock goes when this is dropped.
struct LocalGuard<'a> {
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

/// A running agent's pieces.
pub struct Agent {
    pub dir: DataDir,
    pub config: Config,
    pub client: Client,
    key: DeviceSecretKey,
    store: Box<dyn CertStore>,
    clock: Arc<dyn Clock>,
    local: Mutex<Local>,
    state: Mutex<AgentState>,
    wake: (Mutex<bool>, Condvar),
    flush_backoff: Mutex<Backoff>,
    notify: Box<Notifier>,
}

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupOutcome {
    pub removed: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Reports still waiting for the server.
    pub unreported: usize,
}

impl Agent {
    pub fn open(
        dir: DataDir,
        secrets: &dyn Secrets,
        store: Box<dyn CertStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let config = Config::load(&dir)?;
        let device = secrets.load()?.ok_or(ConfigError::NotPaired)?;
        let client = Client::new(
            config.server_url.clone(),
            config.device_id,
            device.device_token.clone(),
            device.key.public_key().to_base64(),
        );
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
            config,
            client,
            key: device.key.clone(),
            store,
            clock,
            local: Mutex::new(local),
            wake: (Mutex::new(false), Condvar::new()),
            flush_backoff: Mutex::new(Backoff::default()),
            notify: Box::new(|_, _| {}),
        })
    }

    /// Where notifications go (the tray's balloon on Windows).
    pub fn with_notifier(mut self, notify: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.notify = Box::new(notify);
        self
    }

    /// The ledger and outbox, locked against this process's other thread and against other
    /// processes (the scheduled task's `cleanup` while `run` is up: a lock file), and read
    /// again from disk since that process may have changed them.
    fn local(&self) -> LocalGuard<'_> {
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

    fn save_state(&self) {
        let state = self.state().clone();
        if let Err(e) = write_json(&self.dir.state(), &state) {
            log::warn(format!("Could not save state.json: {e}"));
        }
    }

    fn note_error(&self, e: &ClientError) {
        self.state().last_error = Some(e.to_string());
        self.save_state();
    }

    /// Wakes the timer (a new deadline, or a report to send).
    fn poke_timer(&self) {
        let (flag, cv) = &self.wake;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// `POST /agent/heartbeat`: keeps the policy and checks the clock against the server's.
    pub fn heartbeat(&self) -> Result<AgentPolicy, ClientError> {
        let sent = self.clock.now();
        let beat = self.client.heartbeat();
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
                "Clock skew: this PC's clock is {skew} s off the server's ({}); certificates are removed by the server's lease times, fix the PC's clock",
                beat.server_time.to_rfc3339()
            ));
        }
        if DailyCleanup::from_policy(&beat.policy).is_none() {
            log::warn(format!(
                "Unreadable policy cleanup_time {:?} / timezone {:?}: using 18:00 America/Sao_Paulo",
                beat.policy.cleanup_time, beat.policy.timezone
            ));
        }
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

    /// Merges the server's open installations into the ledger (start-up and every cleanup).
    pub fn reconcile(&self) -> Result<usize, ClientError> {
        let open = self.client.installations()?;
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

    fn due_entries(&self) -> Vec<LedgerEntry> {
        let now = self.clock.now();
        let daily = self.daily();
        self.local().ledger.due(now, &daily)
    }

    /// `cleanup --mode ...` and the timer: removes (scheduled/manual: everything the agent
    /// installed; startup/lease: what is due), then reports.
    pub fn cleanup(&self, mode: CleanupMode) -> CleanupOutcome {
        log::info(format!("Starting cleanup ({mode:?})"));
        if let Err(e) = self.reconcile() {
            log::warn(format!("Reconciliation with the server skipped: {e}"));
        }
        let entries = match mode {
            CleanupMode::Scheduled | CleanupMode::Manual => self.local().ledger.installed.clone(),
            CleanupMode::Startup | CleanupMode::Lease => self.due_entries(),
        };
        self.cleanup_entries(mode, entries)
    }

    fn cleanup_entries(&self, mode: CleanupMode, entries: Vec<LedgerEntry>) -> CleanupOutcome {
        let mut outcome = CleanupOutcome::default();
        for entry in entries {
            let thumbprint = entry.installed.thumbprint.clone();
            match self.remove(Report::Cleanup { mode }, entry) {
                Ok(key_deleted) => {
                    log::info(format!(
                        "Removed {thumbprint} ({mode:?}), key deleted: {key_deleted}"
                    ));
                    (self.notify)("Certificado removido", &thumbprint);
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

    /// One removal through the outbox (durable intent, ledger, store, outcome).
    fn remove(&self, report: Report, entry: LedgerEntry) -> Result<bool, String> {
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
        match local.outbox.flush(&self.client) {
            Ok(n) if n > 0 => log::info(format!("Sent {n} removal report(s)")),
            Ok(_) => {}
            Err(e) => log::error(format!("Outbox: {e}")),
        }
        local.outbox.is_empty()
    }

    /// The timer: removes what is due, at least every 30 s, and retries waiting reports.
    pub fn timer_tick(&self) -> StdDuration {
        let mut due = self.due_entries();
        if !due.is_empty() {
            // Every cleanup looks at the server's list too (best effort: it may be away).
            if self.reconcile().is_ok() {
                due = self.due_entries();
            }
            let daily = self.daily();
            // At the daily time it is the scheduled cleanup; earlier, a lease's end.
            let scheduled = due
                .iter()
                .any(|e| e.deadline(&daily) == daily.next_after(e.installed_at));
            let mode = if scheduled {
                CleanupMode::Scheduled
            } else {
                CleanupMode::Lease
            };
            log::info(format!("Starting cleanup ({mode:?})"));
            self.cleanup_entries(mode, due);
        } else if !self.local().outbox.is_empty() {
            self.flush();
        }
        let now = self.clock.now();
        let daily = self.daily();
        let local = self.local();
        let until = local
            .ledger
            .next_deadline(&daily)
            .map(|d| (d - now).to_std().unwrap_or_default())
            .unwrap_or(TIMER_PERIOD);
        let mut backoff = self.flush_backoff.lock().unwrap_or_else(|e| e.into_inner());
        let retry = if local.outbox.is_empty() {
            backoff.reset();
            TIMER_PERIOD
        } else {
            // Reports wait for the server: try again soon, then less and less often.
            backoff.next_delay()
        };
        until
            .min(retry)
            .clamp(StdDuration::from_millis(200), TIMER_PERIOD)
    }

    /// Runs the timer until the process ends.
    pub fn run_timer(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let agent = Arc::clone(self);
        std::thread::spawn(move || {
            loop {
                let sleep = agent.timer_tick();
                let (flag, cv) = &agent.wake;
                let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (mut guard, _) = cv
                    .wait_timeout_while(guard, sleep, |woken| !*woken)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
        })
    }

    /// The job loop: never returns; errors are logged and retried with backoff.
    pub fn run_jobs(&self) {
        let mut backoff = Backoff::default();
        let mut next_heartbeat = Instant::now();
        let mut reconciled = false;
        let mut retry_at: HashMap<uuid::Uuid, Instant> = HashMap::new();
        let mut long_poll = 25;
        loop {
            if Instant::now() >= next_heartbeat {
                match self.heartbeat() {
                    Ok(policy) => {
                        long_poll = policy.long_poll_seconds.clamp(1, 30);
                        next_heartbeat = Instant::now()
                            + StdDuration::from_secs(policy.heartbeat_interval_seconds.max(5));
                        if !reconciled {
                            reconciled = self.reconcile().is_ok();
                            self.poke_timer();
                        }
                        self.flush();
                    }
                    Err(e) => {
                        self.wait_after(&e, &mut backoff);
                        continue;
                    }
                }
            }
            let jobs = match self.client.jobs(long_poll) {
                Ok(list) => {
                    backoff.reset();
                    list.jobs
                }
                Err(e) => {
                    self.wait_after(&e, &mut backoff);
                    continue;
                }
            };
            if !self.local().outbox.is_empty() {
                self.flush();
            }
            let now = Instant::now();
            retry_at.retain(|id, _| jobs.iter().any(|j| j.id == *id));
            let mut acted = false;
            for job in &jobs {
                if retry_at.get(&job.id).is_some_and(|t| *t > now) {
                    continue;
                }
                acted = true;
                if let Err(delay) = self.handle(job) {
                    retry_at.insert(job.id, Instant::now() + delay);
                }
            }
            if !acted && !jobs.is_empty() {
                // Only jobs waiting for a retry: the long-poll answers at once, so wait here.
                let soonest = retry_at.values().min().copied().unwrap_or(now);
                std::thread::sleep(
                    soonest
                        .saturating_duration_since(Instant::now())
                        .clamp(StdDuration::from_millis(200), StdDuration::from_secs(5)),
                );
            }
        }
    }

    fn wait_after(&self, e: &ClientError, backoff: &mut Backoff) {
        let delay = match e {
            ClientError::AuthFailed | ClientError::Blocked | ClientError::WrongBaseUrl { .. } => {
                StdDuration::from_secs(60)
            }
            _ => backoff.next_delay(),
        };
        log::warn(format!("{e} (retrying in {} s)", delay.as_secs().max(1)));
        self.note_error(e);
        std::thread::sleep(delay);
    }

    /// Acts on one job; `Err(delay)` asks to look at it again after `delay`.
    pub fn handle(&self, job: &AgentJob) -> Result<(), StdDuration> {
        match job.job_type {
            AgentJobType::Install => self.install(job),
            AgentJobType::Remove => self.remove_job(job),
            // A newer server's kind of job: looked at again later, never acted on.
            other @ AgentJobType::Unknown => {
                log::warn(format!("Job {} of unknown type {other}: ignored", job.id));
                Err(StdDuration::from_secs(300))
            }
        }
    }

    fn install(&self, job: &AgentJob) -> Result<(), StdDuration> {
        // Installed before a crash, result not sent: send it again.
        let done = self
            .local()
            .ledger
            .installed
            .iter()
            .find(|e| e.job_id == Some(job.id))
            .cloned();
        if let Some(entry) = done {
            return self.report_installed(job, &entry);
        }
        let claim = match self.client.claim(job.id) {
            Ok(c) => c,
            Err(e) => return Err(self.job_error(job, "claim", &e)),
        };
        let Some(token) = claim.payload_token.map(SecretString::new) else {
            log::warn(format!(
                "Job {}: the claim carried no payload token",
                job.id
            ));
            return Err(StdDuration::from_secs(10));
        };
        let payload = match self.client.payload(job.id, &token) {
            Ok(p) => p,
            Err(e) => return Err(self.job_error(job, "payload", &e)),
        };
        let expected = payload
            .thumbprint
            .clone()
            .or_else(|| job.thumbprint.clone())
            .unwrap_or_default()
            .to_ascii_uppercase();
        let now = self.clock.now();
        let daily = self.daily();
        let mut until = daily.next_after(now);
        if let Some(m) = job.duration_minutes {
            until = until.min(now + Duration::minutes(i64::from(m)));
        }
        let outcome = self.import(job, &payload.sealed, &expected, until, &daily);
        let installed = match outcome {
            Ok(i) => i,
            Err((code, message)) => {
                log::warn(format!("Job {} FAILED: {code}: {message}", job.id));
                let result = ResultRequest {
                    status: ResultStatus::Failed,
                    thumbprint: None,
                    error_code: Some(code.to_owned()),
                    error_message: Some(message),
                    key_storage: None,
                    key_deleted: None,
                };
                return match self.client.result(job.id, &result) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.job_error(job, "result", &e)),
                };
            }
        };
        let entry = LedgerEntry {
            installed,
            job_id: Some(job.id),
            installation_id: None,
            cert_name: job.cert_name.clone(),
            installed_at: now,
            expires_at: Some(until),
            server_expires_at: None,
        };
        // Recorded before the result is sent: a crash now still removes it when due.
        {
            let mut local = self.local();
            local.ledger.upsert(entry.clone());
            if let Err(e) = local.ledger.save(&self.dir.ledger()) {
                drop(local);
                log::error(format!(
                    "Could not record the installation: {e}; undoing it"
                ));
                let _ = self.store.remove_with_key(&entry.installed);
                return Err(StdDuration::from_secs(30));
            }
        }
        let name = job.cert_name.clone().unwrap_or_default();
        let local_until = until.with_timezone(&daily.tz).format("%H:%M");
        log::info(format!(
            "Installed {name} ({}) until {local_until}, key in {}",
            entry.installed.thumbprint, entry.installed.key_storage
        ));
        (self.notify)(
            "Certificado instalado",
            &format!("{name} instalado até {local_until}"),
        );
        self.poke_timer();
        self.report_installed(job, &entry)
    }

    /// Opens the envelope and imports; every failure as `(error_code, message)` with no
    /// secret in it. A failure leaves nothing in the store.
    fn import(
        &self,
        job: &AgentJob,
        sealed: &crate::protocol::SealedPayload,
        expected: &str,
        until: DateTime<Utc>,
        daily: &DailyCleanup,
    ) -> Result<Installed, (&'static str, String)> {
        let context = PayloadContext::new(job.id, self.config.device_id);
        let secret = crate::crypto::open(&self.key, &context, sealed)
            .map_err(|e| ("ENVELOPE_INVALID", e.to_string()))?;
        if let Some(thumbprint) = self
            .store
            .thumbprint_of(secret.pfx(), secret.password())
            .map_err(|e| (e.code(), e.to_string()))?
            && thumbprint != expected
        {
            return Err((
                "THUMBPRINT_MISMATCH",
                format!("the PFX holds {thumbprint}, the job names {expected}"),
            ));
        }
        let ours = self.local().ledger.get(expected).cloned();
        if let Some(mut existing) = ours
            && self.store.contains(expected).unwrap_or(false)
        {
            // Installed by this agent for an earlier job: it stays, under this job's lease too.
            existing.job_id = Some(job.id);
            return Ok(existing.installed);
        }
        let friendly = format!(
            "CertHub · {} · até {}",
            job.cert_name.as_deref().unwrap_or("certificado"),
            until.with_timezone(&daily.tz).format("%H:%M")
        );
        let installed = self
            .store
            .install(secret.pfx(), secret.password(), &friendly)
            .map_err(|e| (e.code(), e.to_string()))?;
        if installed.thumbprint != expected {
            let _ = self.store.remove_with_key(&installed);
            return Err((
                "THUMBPRINT_MISMATCH",
                format!(
                    "the store holds {}, the job names {expected}",
                    installed.thumbprint
                ),
            ));
        }
        Ok(installed)
    }

    fn report_installed(&self, job: &AgentJob, entry: &LedgerEntry) -> Result<(), StdDuration> {
        let result = ResultRequest {
            status: ResultStatus::Done,
            thumbprint: Some(entry.installed.thumbprint.clone()),
            error_code: None,
            error_message: None,
            key_storage: Some(entry.installed.key_storage.clone()),
            key_deleted: None,
        };
        match self.client.result(job.id, &result) {
            Ok(answer) if answer.status == AgentJobStatus::Failed => {
                // The server did not accept it (e.g. another thumbprint): it must not stay.
                log::warn(format!(
                    "Job {} recorded as FAILED by the server ({}): removing the certificate",
                    job.id,
                    answer.error_code.as_deref().unwrap_or("-")
                ));
                if let Err(e) = self.remove(
                    Report::Cleanup {
                        mode: CleanupMode::Manual,
                    },
                    entry.clone(),
                ) {
                    log::error(format!(
                        "Could not remove {}: {e}",
                        entry.installed.thumbprint
                    ));
                }
                self.flush();
                Ok(())
            }
            Ok(answer) => {
                if let Some(end) = answer.lease_expires_at {
                    let mut local = self.local();
                    if let Some(e) = local.ledger.get_mut(&entry.installed.thumbprint) {
                        e.expires_at = Some(e.expires_at.map_or(end, |t| t.min(end)));
                        e.server_expires_at = Some(end);
                    }
                    if let Err(e) = local.ledger.save(&self.dir.ledger()) {
                        log::error(format!("Could not save installed_thumbprints.json: {e}"));
                    }
                }
                self.poke_timer();
                log::info(format!("Job {} DONE", job.id));
                Ok(())
            }
            Err(e) => Err(self.job_error(job, "result", &e)),
        }
    }

    fn remove_job(&self, job: &AgentJob) -> Result<(), StdDuration> {
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
            match self.client.claim(job.id) {
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
            match self.remove(Report::JobResult { job_id: job.id }, entry) {
                Ok(key_deleted) => {
                    log::info(format!(
                        "Removed {thumbprint} (REMOVE job {}), key deleted: {key_deleted}",
                        job.id
                    ));
                    (self.notify)("Certificado removido", &thumbprint);
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
                    let _ = self.client.result(job.id, &result);
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

    fn job_error(&self, job: &AgentJob, step: &str, e: &ClientError) -> StdDuration {
        log::warn(format!("Job {} ({step}): {e}", job.id));
        match e.status() {
            Some(409) => StdDuration::from_secs(3),
            Some(429) => StdDuration::from_secs(20),
            _ if e.is_transient() => StdDuration::from_secs(5),
            _ => StdDuration::from_secs(30),
        }
    }
}

/// Parses a `StoreError` code back (for tests of the documented list).
pub fn documented_error_codes() -> &'static [&'static str] {
    &[
        "ENVELOPE_INVALID",
        "WRONG_PASSWORD",
        "IMPORT_REFUSED",
        "STORE_REFUSED",
        "KEY_EXPORTABLE",
        "THUMBPRINT_MISMATCH",
        "ALREADY_INSTALLED",
    ]
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::agent::config::{DeviceSecrets, FileSecrets, ServerUrl};
    use crate::agent::leases::FixedClock;
    use crate::agent::store::{MemoryStore, StoreError};
    use crate::crypto::{InstallSecret, seal};
    use serde_json::{Value, json};

    type Handler = dyn Fn(&str, &str, &str) -> (u16, String) + Send + Sync;
    type MakePayload<'a> = dyn Fn(uuid::Uuid) -> (crate::protocol::SealedPayload, String) + 'a;

    /// A tiny HTTP server answering each request with `handler(method, path, body)`.
    fn fake_server(handler: Arc<Handler>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let mut parts = line.split_whitespace();
                    let (method, path) = (
                        parts.next().unwrap_or("").to_owned(),
                        parts.next().unwrap_or("").to_owned(),
                    );
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let (status, text) = handler(&method, &path, &String::from_utf8_lossy(&body));
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                });
            }
        });
        addr
    }

    struct Rig {
        _home: tempfile::TempDir,
        agent: Agent,
        clock: Arc<FixedClock>,
        store: Arc<MemoryStore>,
        key: DeviceSecretKey,
        device: uuid::Uuid,
    }

    fn rig(server: &str) -> Rig {
        let home = tempfile::tempdir().unwrap();
        let dir = DataDir::new(home.path());
        let key = DeviceSecretKey::generate();
        let device = uuid::Uuid::new_v4();
        let secrets = FileSecrets::new(&dir);
        let config = Config {
            server_url: ServerUrl::parse(server).unwrap(),
            device_id: device,
            portal_url: String::new(),
            paired_at: Utc::now(),
        };
        let identity = DeviceSecrets {
            device_token: SecretString::new("device-token".into()),
            key: key.clone(),
        };
        crate::agent::config::save_identity(&dir, &secrets, &config, &identity).unwrap();
        let store = Arc::new(MemoryStore::default());
        // 10:00 in São Paulo.
        let clock = Arc::new(FixedClock::at("2026-07-15T13:00:00Z".parse().unwrap()));
        let agent = Agent::open(
            dir,
            &secrets,
            Box::new(Arc::clone(&store)),
            Arc::clone(&clock) as Arc<dyn Clock>,
        )
        .unwrap();
        Rig {
            _home: home,
            agent,
            clock,
            store,
            key,
            device,
        }
    }

    fn job(id: uuid::Uuid, thumbprint: &str) -> AgentJob {
        AgentJob {
            id,
            job_type: AgentJobType::Install,
            status: AgentJobStatus::Pending,
            cert_id: uuid::Uuid::new_v4(),
            cert_name: Some("EMPRESA X LTDA".into()),
            thumbprint: Some(thumbprint.into()),
            installation_id: None,
            duration_minutes: Some(30),
            created_at: Utc::now(),
            claimed_at: None,
        }
    }

    /// What the fake server saw and answers with.
    #[derive(Default)]
    struct Seen {
        results: Vec<Value>,
        claims: usize,
        auths: usize,
        /// The ledger held the thumbprint when the DONE arrived.
        ledger_first: Vec<bool>,
    }

    /// A server for one install job whose payload `sealed` returns.
    fn install_server(
        seen: Arc<Mutex<Seen>>,
        sealed: Arc<Mutex<Option<(crate::protocol::SealedPayload, String)>>>,
        ledger: Arc<Mutex<Option<std::path::PathBuf>>>,
    ) -> String {
        fake_server(Arc::new(move |method, path, body| {
            let mut seen = seen.lock().unwrap();
            let id = path.split('/').nth(5).unwrap_or("").to_owned();
            match (method, path) {
                ("POST", "/api/v1/agent/auth") => {
                    seen.auths += 1;
                    (
                        200,
                        json!({"access_token": "jwt", "token_type": "bearer", "expires_in": 900})
                            .to_string(),
                    )
                }
                ("POST", p) if p.ends_with("/claim") => {
                    seen.claims += 1;
                    (200, json!({"job_id": id, "status": "IN_PROGRESS", "job_type": "INSTALL", "payload_token": "pt", "expires_in": 120}).to_string())
                }
                ("GET", p) if p.ends_with("/payload") => {
                    let (sealed, thumbprint) = sealed.lock().unwrap().clone().unwrap();
                    (200, json!({"job_id": id, "thumbprint": thumbprint, "enc": sealed.enc, "ciphertext": sealed.ciphertext}).to_string())
                }
                ("POST", p) if p.ends_with("/result") => {
                    let result: Value = serde_json::from_str(body).unwrap();
                    if result["status"] == "DONE" {
                        let path = ledger.lock().unwrap().clone().unwrap();
                        let text = std::fs::read_to_string(path).unwrap_or_default();
                        seen.ledger_first
                            .push(text.contains(result["thumbprint"].as_str().unwrap()));
                    }
                    seen.results.push(result.clone());
                    (200, json!({"job_id": id, "status": result["status"], "error_code": result["error_code"], "lease_expires_at": "2030-01-01T00:00:00Z"}).to_string())
                }
                _ => (
                    404,
                    json!({"error": "not_found", "message": path}).to_string(),
                ),
            }
        }))
    }

    fn sealed_for(
        key: &DeviceSecretKey,
        job: uuid::Uuid,
        device: uuid::Uuid,
        pfx: Vec<u8>,
        password: &str,
    ) -> crate::protocol::SealedPayload {
        let secret = InstallSecret::new(pfx, SecretString::new(password.into()));
        seal(
            &key.public_key(),
            &PayloadContext::new(job, device),
            &secret,
        )
    }

    #[test]
    fn an_install_is_recorded_before_its_result_and_failures_carry_documented_codes() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sealed = Arc::new(Mutex::new(None));
        let ledger = Arc::new(Mutex::new(None));
        let server = install_server(Arc::clone(&seen), Arc::clone(&sealed), Arc::clone(&ledger));
        let r = rig(&server);
        *ledger.lock().unwrap() = Some(r.agent.dir.ledger());
        let thumb = "AB".repeat(20);

        // DONE: in the store, in the ledger before the result, with the server's lease end.
        let id = uuid::Uuid::new_v4();
        *sealed.lock().unwrap() = Some((
            sealed_for(&r.key, id, r.device, MemoryStore::pfx(&thumb, "pw"), "pw"),
            thumb.clone(),
        ));
        r.agent.handle(&job(id, &thumb)).unwrap();
        assert_eq!(r.store.thumbprints(), vec![thumb.clone()]);
        assert_eq!(seen.lock().unwrap().ledger_first, vec![true]);
        let done = seen.lock().unwrap().results.pop().unwrap();
        assert_eq!(done["status"], "DONE");
        assert_eq!(done["key_storage"], "MEMORY");
        let entry = Ledger::load(&r.agent.dir.ledger())
            .unwrap()
            .get(&thumb)
            .cloned()
            .unwrap();
        assert_eq!(entry.job_id, Some(id));
        assert_eq!(
            entry.server_expires_at,
            Some("2030-01-01T00:00:00Z".parse().unwrap())
        );

        // The result was lost and the job comes back: DONE again, no second claim.
        let claims = seen.lock().unwrap().claims;
        r.agent.handle(&job(id, &thumb)).unwrap();
        assert_eq!(seen.lock().unwrap().claims, claims);
        assert_eq!(
            seen.lock().unwrap().results.pop().unwrap()["status"],
            "DONE"
        );

        let failures: [(&str, Box<MakePayload>); 3] = [
            (
                "ENVELOPE_INVALID",
                Box::new(|id| {
                    let other = DeviceSecretKey::generate();
                    (
                        sealed_for(&other, id, r.device, MemoryStore::pfx("CD", "pw"), "pw"),
                        "CD".into(),
                    )
                }),
            ),
            (
                "WRONG_PASSWORD",
                Box::new(|id| {
                    (
                        sealed_for(&r.key, id, r.device, MemoryStore::pfx("CD", "pw"), "other"),
                        "CD".into(),
                    )
                }),
            ),
            (
                "THUMBPRINT_MISMATCH",
                Box::new(|id| {
                    (
                        sealed_for(&r.key, id, r.device, MemoryStore::pfx("CD", "pw"), "pw"),
                        "EF".into(),
                    )
                }),
            ),
        ];
        for (code, make) in failures {
            let id = uuid::Uuid::new_v4();
            *sealed.lock().unwrap() = Some(make(id));
            r.agent.handle(&job(id, "CD")).unwrap();
            let failed = seen.lock().unwrap().results.pop().unwrap();
            assert_eq!(failed["status"], "FAILED", "{code}");
            assert_eq!(failed["error_code"], code);
            assert!(
                !failed["error_message"].as_str().unwrap().contains("pw"),
                "{failed}"
            );
        }
        assert_eq!(
            r.store.thumbprints(),
            vec![thumb.clone()],
            "failures leave nothing behind"
        );

        // A certificate the user installed by hand is not taken over.
        r.store.add_foreign("CD");
        let id = uuid::Uuid::new_v4();
        *sealed.lock().unwrap() = Some((
            sealed_for(&r.key, id, r.device, MemoryStore::pfx("CD", "pw"), "pw"),
            "CD".into(),
        ));
        r.agent.handle(&job(id, "CD")).unwrap();
        assert_eq!(
            seen.lock().unwrap().results.pop().unwrap()["error_code"],
            "ALREADY_INSTALLED"
        );
        assert_eq!(
            seen.lock().unwrap().auths,
            1,
            "one access token for all of it"
        );
    }

    #[test]
    fn a_401_re_authenticates_once_then_reports_the_rotated_token() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let counter = Arc::clone(&seen);
        let server = fake_server(Arc::new(move |method, path, _| {
            let mut seen = counter.lock().unwrap();
            match (method, path) {
                ("POST", "/api/v1/agent/auth") => {
                    seen.auths += 1;
                    // The first authentication works; the token is rotated right after.
                    if seen.auths == 1 {
                        (200, json!({"access_token": "jwt", "token_type": "bearer", "expires_in": 900}).to_string())
                    } else {
                        (
                            401,
                            json!({"error": "unauthorized", "message": "x"}).to_string(),
                        )
                    }
                }
                _ => (
                    401,
                    json!({"error": "unauthorized", "message": "x"}).to_string(),
                ),
            }
        }));
        let r = rig(&server);
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

    #[test]
    fn backoff_grows_to_thirty_seconds_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(
            delays[0] >= StdDuration::from_millis(500) && delays[0] <= StdDuration::from_secs(1)
        );
        assert!(delays[3] >= StdDuration::from_secs(4) && delays[3] <= StdDuration::from_secs(8));
        assert!(delays.iter().all(|d| *d <= StdDuration::from_secs(30)));
        assert!(delays[7] >= StdDuration::from_secs(15));
        b.reset();
        assert!(b.next_delay() <= StdDuration::from_secs(1));
    }

    #[test]
    fn every_store_error_has_a_documented_code() {
        for e in [
            StoreError::WrongPassword,
            StoreError::ImportRefused(String::new()),
            StoreError::StoreRefused(String::new()),
            StoreError::KeyExportable,
            StoreError::AlreadyInstalled,
        ] {
            assert!(documented_error_codes().contains(&e.code()), "{e:?}");
        }
    }

    /// A server that records every request and answers what an agent expects.
    fn recording_server(
        requests: Arc<Mutex<Vec<(String, String, Value)>>>,
        claim_status: u16,
    ) -> String {
        fake_server(Arc::new(move |method, path, body| {
            let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            requests
                .lock()
                .unwrap()
                .push((method.to_owned(), path.to_owned(), body.clone()));
            let id = path.split('/').nth(5).unwrap_or("").to_owned();
            match (method, path) {
                ("POST", "/api/v1/agent/auth") => {
                    (200, json!({"access_token": "jwt", "token_type": "bearer", "expires_in": 900}).to_string())
                }
                ("GET", "/api/v1/agent/installations") => (200, json!({"installations": []}).to_string()),
                ("POST", "/api/v1/agent/cleanup") => (200, json!({"closed": 1}).to_string()),
                ("POST", p) if p.ends_with("/claim") => (
                    claim_status,
                    if claim_status == 200 {
                        json!({"job_id": id, "status": "IN_PROGRESS", "job_type": "REMOVE"}).to_string()
                    } else {
                        json!({"error": "conflict", "message": "not claimable"}).to_string()
                    },
                ),
                ("POST", p) if p.ends_with("/result") => (
                    200,
                    json!({"job_id": id, "status": "DONE", "error_code": null, "lease_expires_at": null}).to_string(),
                ),
                _ => (404, json!({"error": "not_found", "message": path}).to_string()),
            }
        }))
    }

    fn installed(r: &Rig, thumbprint: &str, expires_at: &str) {
        let pw = SecretString::new("pw".into());
        let installed = r
            .store
            .install(&MemoryStore::pfx(thumbprint, "pw"), &pw, "x")
            .unwrap();
        let mut ledger = Ledger::load(&r.agent.dir.ledger()).unwrap();
        ledger.upsert(LedgerEntry {
            installed,
            job_id: None,
            installation_id: None,
            cert_name: None,
            installed_at: r.clock.now(),
            expires_at: Some(expires_at.parse().unwrap()),
            server_expires_at: None,
        });
        ledger.save(&r.agent.dir.ledger()).unwrap();
    }

    #[test]
    fn the_timer_removes_at_the_lease_end_and_at_18h_even_after_sleeping_through_it() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = rig(&recording_server(Arc::clone(&requests), 200));
        installed(&r, "AA", "2026-07-15T14:00:00Z");
        installed(&r, "BB", "2026-07-16T13:00:00Z");
        // Nothing due yet: the timer sleeps until the first deadline, 30 s at most.
        assert_eq!(r.agent.timer_tick(), TIMER_PERIOD);
        assert_eq!(r.store.thumbprints().len(), 2);
        // 11:00 local: AA's lease ends.
        r.clock.set("2026-07-15T14:00:00Z".parse().unwrap());
        r.agent.timer_tick();
        assert_eq!(r.store.thumbprints(), vec!["BB".to_owned()]);
        // The lid closed at 17:00 and opens at 08:00 the next day: 18:00 passed, BB goes.
        r.clock.set("2026-07-16T11:00:00Z".parse().unwrap());
        r.agent.timer_tick();
        assert!(r.store.thumbprints().is_empty());
        let cleanups: Vec<Value> = requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p == "/api/v1/agent/cleanup")
            .map(|(_, _, b)| b.clone())
            .collect();
        assert_eq!(cleanups.len(), 2, "{cleanups:?}");
        assert_eq!(cleanups[0]["mode"], "lease");
        assert_eq!(cleanups[0]["removed"][0]["thumbprint"], "AA");
        assert_eq!(cleanups[1]["mode"], "scheduled");
        assert_eq!(cleanups[1]["removed"][0]["thumbprint"], "BB");
        assert!(Outbox::load(r.agent.dir.outbox()).unwrap().is_empty());
    }

    #[test]
    fn a_remove_job_held_in_progress_is_finished_and_its_result_sent() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        // The claim's answer was lost earlier: claiming again is a 409 for a job we hold.
        let r = rig(&recording_server(Arc::clone(&requests), 409));
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
        let r = rig(&recording_server(Arc::new(Mutex::new(Vec::new())), 409));
        installed(&r, "AA", "2026-07-15T20:00:00Z");
        job.status = AgentJobStatus::Pending;
        assert!(r.agent.handle(&job).is_err());
        assert_eq!(r.store.thumbprints(), vec!["AA".to_owned()]);
    }

    #[test]
    fn a_ledger_edited_into_nonsense_neither_stops_the_agent_nor_keeps_a_certificate() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = rig(&recording_server(Arc::clone(&requests), 200));
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
        let secrets = FileSecrets::new(&r.agent.dir);
        let again = Agent::open(
            r.agent.dir.clone(),
            &secrets,
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
