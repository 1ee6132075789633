//! PostgreSQL going away under a working office (issue 14), two ways:
//! - on the shared server, every connection of the test's database is killed and new ones are
//!   refused for a while (the backends die, the cluster stays up);
//! - on a private cluster the test makes with `initdb`, the whole cluster is stopped with
//!   `pg_ctl stop -m immediate` (a crash: no checkpoint, WAL recovery at the next start) and
//!   started again, while 1,000 agents long-poll two server processes.
//!
//! Either way `/health` says 503 with the reason, requests fail with a clear 503 within the
//! agent's timeout, the pools and the LISTEN connections come back by themselves, waiting agents
//! get what is approved afterwards, and nothing committed is lost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certhub::crypto::PayloadContext;
use certhub::protocol::SealedPayload;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

/// `/health` says 503 `unavailable`, with a reason.
async fn assert_health_unavailable(app: &TestApp) {
    let res = app.get("/health").await;
    assert_eq!(res.status(), 503);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["status"], "unavailable", "{health}");
    assert!(
        health["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{health}"
    );
}

/// Both processes' `/health` answer 200 within 30 s.
async fn both_back(a: &TestApp, b: &TestApp) -> bool {
    eventually(Duration::from_secs(30), || async {
        a.get("/health").await.status() == 200 && b.get("/health").await.status() == 200
    })
    .await
}

async fn approve(o: &Office, id: &str) -> (u16, Value) {
    let path = format!("/api/v1/install-jobs/{id}/approve");
    o.call("POST", &path, Some(json!({})), &o.admin.access)
        .await
}

/// PostgreSQL goes away under two server processes: every connection of the database is
/// killed and new ones are refused for a few seconds. Meanwhile `/health` says 503 with the
/// reason and requests that need the database fail with a clear 503, in bounded time; then the
/// pools and the LISTEN connections come back by themselves, a long-poll held by one process
/// wakes for an approval made through the other, and nothing committed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_gives_503_then_everything_comes_back() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let o = office(&db).await;
    let device = o.device("PC-01", true).await;
    let other = spawn_app(&db).await;
    let job = o.requested_job(&device, None).await;
    let rows_before = db.scalar("SELECT COUNT(*) FROM audit_log").await;

    db.as_postgres_admin("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")
        .await;
    db.as_postgres_admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'",
    )
    .await;

    let started = std::time::Instant::now();
    assert_health_unavailable(&o.app).await;
    let (status, body) = o
        .call("GET", "/api/v1/certificados", None, &o.admin.access)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "answers during the outage took {:?}",
        started.elapsed()
    );
    // A heartbeat needs no database (the device is cached, its contact kept in memory).
    let (status, _) = o
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(json!({})),
            &device.jwt,
        )
        .await;
    assert!(
        status == 200 || status == 503,
        "heartbeat during the outage: {status}"
    );

    db.as_postgres_admin("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")
        .await;
    let back = both_back(&o.app, &other).await;
    assert!(
        back,
        "the pools did not come back:\n{}\n{}",
        o.app.logs(),
        other.logs()
    );

    // The device long-polls on the other process; the approval goes through the first: the
    // other's LISTEN connection is back, or the wake-up could not cross.
    let poll = async {
        let res = other
            .client
            .get(other.url("/api/v1/agent/jobs?wait=20"))
            .bearer_auth(&device.jwt)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    let approve = async {
        // Give the listener time to be back and the long-poll time to be held.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let at = std::time::Instant::now();
        let (status, body) = approve(&o, &job).await;
        assert_eq!(status, 200, "{body}");
        at
    };
    let ((status, jobs), approved_at) = tokio::join!(poll, approve);
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs["jobs"][0]["id"], job, "{jobs}");
    assert!(
        approved_at.elapsed() < Duration::from_secs(5),
        "the wake-up crossed processes late: {:?}",
        approved_at.elapsed()
    );
    assert!(db.scalar("SELECT COUNT(*) FROM audit_log").await > rows_before);
    let out = db.run(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
    for app in [&o.app, &other] {
        assert!(!app.logs().contains("panicked"), "{}", app.logs());
    }
}

/// A private PostgreSQL cluster in a temporary directory, on a port of its own, that a test may
/// stop and start. `initdb` and `postgres` refuse to run as root: as root, they run as the
/// `postgres` user (which the Debian package creates).
struct Cluster {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    owner: Option<(u32, u32)>,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the first directory on `PATH` that has them.
fn server_bindir() -> Option<PathBuf> {
    let has = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has(bin))
        .collect();
    debian.sort();
    debian
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).find(|d| has(d)))
}

impl Cluster {
    /// `None` (SKIPPED) outside CI where PostgreSQL's server programs are not installed.
    fn create() -> Option<Self> {
        let Some(bin) = server_bindir() else {
            assert!(
                !in_ci(),
                "CI needs PostgreSQL's server programs (initdb, pg_ctl): Debian package postgresql"
            );
            eprintln!(
                "SKIPPED: stopping a PostgreSQL cluster needs initdb and pg_ctl (package postgresql)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let owner = nix::unistd::geteuid().is_root().then(|| {
            let pg = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("running as root: a `postgres` user to own the test cluster");
            std::os::unix::fs::chown(dir.path(), Some(pg.uid.as_raw()), Some(pg.gid.as_raw()))
                .unwrap();
            (pg.uid.as_raw(), pg.gid.as_raw())
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            dir,
            port,
            owner,
        };
        let data = cluster.data();
        cluster.run(
            cluster
                .command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync", "--no-instructions"]),
        );
        cluster.start();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path()).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, cmd: &mut Command) {
        let out = cmd.output().expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        self.run(self.command("pg_ctl").arg("-D").arg(&data).args(args));
    }

    /// Started without `fsync`: the test crashes PostgreSQL's processes, not the machine, so
    /// whatever a COMMIT wrote is in the kernel's cache and survives (WAL recovery replays it);
    /// syncing every commit to this machine's disk only made provisioning 1,000 devices slow.
    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.pg_ctl(&[
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "start",
        ]);
    }

    /// A crash: every backend is killed at once, no checkpoint; the next start replays the WAL.
    fn stop_immediately(&self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

/// Raises the open-file soft limit to the hard one (the servers inherit it): 1,000 agents hold
/// a socket each on both sides.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

const AGENTS: usize = 1000;
/// Install jobs, for every tenth device; the first [`BEFORE`] are approved before the outage.
const JOBS: usize = 100;
const BEFORE: usize = 20;
/// The agents' long-poll, in seconds; they give up on an answer after `WAIT + 20` s, as the
/// real agent does.
const WAIT: u64 = 5;

/// When a request was sent, relative to the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Before = 0,
    Outage = 1,
    Recovering = 2,
    After = 3,
}

/// What the 1,000 agents saw.
struct Fleet {
    client: reqwest::Client,
    phase: AtomicU8,
    /// 503 `unavailable` answers, by phase.
    unavailable: [std::sync::atomic::AtomicUsize; 4],
    answers: [std::sync::atomic::AtomicUsize; 4],
    /// Anything else that went wrong: phase, what.
    failures: Mutex<Vec<(Phase, String)>>,
    /// The longest any long-poll took.
    slowest: Mutex<Duration>,
    /// Jobs done, and when.
    done: Mutex<std::collections::HashMap<String, Instant>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Fleet {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Before,
            1 => Phase::Outage,
            2 => Phase::Recovering,
            _ => Phase::After,
        }
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    fn fail(&self, phase: Phase, what: String) {
        self.failures.lock().unwrap().push((phase, what));
    }

    /// One request as an agent; a 503 must say `unavailable`.
    async fn call(&self, phase: Phase, req: reqwest::RequestBuilder, what: &str) -> Option<Value> {
        self.answers[phase as usize].fetch_add(1, Ordering::SeqCst);
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.fail(phase, format!("{what}: {e}"));
                return None;
            }
        };
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match status {
            200 => Some(body),
            503 if body["error"] == "unavailable" => {
                self.unavailable[phase as usize].fetch_add(1, Ordering::SeqCst);
                None
            }
            _ => {
                self.fail(phase, format!("{what}: HTTP {status} {body}"));
                None
            }
        }
    }

    /// Claim, payload (opened with the device's key), result `DONE`.
    async fn install(&self, base: &str, d: &Device, job: &str) -> Option<()> {
        let phase = self.phase();
        let url = |what: &str| format!("{base}/api/v1/agent/jobs/{job}/{what}");
        let req = self.client.post(url("claim")).bearer_auth(&d.jwt);
        let claim = self.call(phase, req, "claim").await?;
        let req = self
            .client
            .get(url("payload"))
            .query(&[("token", token_of(&claim))])
            .bearer_auth(&d.jwt);
        let payload = self.call(phase, req, "payload").await?;
        let sealed: SealedPayload = serde_json::from_value(payload.clone()).unwrap();
        if certhub::crypto::open(&d.key, &PayloadContext::new(job, &d.id), &sealed).is_err() {
            self.fail(phase, format!("payload of {job} does not open"));
            return None;
        }
        let body = json!({"status": "DONE", "thumbprint": payload["thumbprint"]});
        let req = self
            .client
            .post(url("result"))
            .bearer_auth(&d.jwt)
            .json(&body);
        self.call(phase, req, "result").await?;
        self.done
            .lock()
            .unwrap()
            .insert(job.to_owned(), Instant::now());
        Some(())
    }

    /// One agent: long-polls `base` until the fleet stops, installing what arrives; after a
    /// failed answer it pauses a second, as the real agent backs off.
    async fn agent(self: Arc<Self>, base: String, d: Arc<Device>) {
        let mut stop = self.stop.subscribe();
        loop {
            let phase = self.phase();
            let sent = Instant::now();
            let req = self
                .client
                .get(format!("{base}/api/v1/agent/jobs?wait={WAIT}"))
                .bearer_auth(&d.jwt)
                .timeout(Duration::from_secs(WAIT + 20));
            let answer = tokio::select! {
                a = self.call(phase, req, "long-poll") => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            {
                let mut slowest = self.slowest.lock().unwrap();
                *slowest = (*slowest).max(sent.elapsed());
            }
            let jobs = answer.as_ref().and_then(|a| a["jobs"].as_array());
            let mut pause = jobs.is_none();
            for job in jobs.into_iter().flatten() {
                let id = job["id"].as_str().unwrap();
                pause |= self.install(&base, &d, id).await.is_none();
            }
            if pause {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }

    /// Waits until every job of `jobs` is done; false after `timeout`.
    async fn all_done(&self, jobs: &[String], timeout: Duration) -> bool {
        eventually(timeout, || async {
            let done = self.done.lock().unwrap();
            jobs.iter().all(|j| done.contains_key(j))
        })
        .await
    }
}

/// The whole PostgreSQL cluster stops (`pg_ctl stop -m immediate`) for longer than a long-poll
/// while 1,000 agents long-poll two server processes, then starts again. During the outage
/// every answer is a 200 or a clear 503 within the agent's timeout and `/health` says why;
/// afterwards both processes come back by themselves, approvals made through one reach agents
/// held by the other, every job is installed exactly once, and nothing committed before the
/// crash is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_stopped_and_started_under_1000_long_polling_agents() {
    let Some(cluster) = Cluster::create() else {
        return;
    };
    raise_nofile();
    let db = TestDb::postgres_at(&cluster.admin_url(), tempfile::tempdir().unwrap())
        .await
        .expect("the private cluster answers");
    let env = [("CERTHUB_DEVICE_AUTH_PER_MINUTE", "1000000")];
    let o = office_with(&db, &env).await;
    let other = spawn_app_with(&db, &env).await;
    let bases = [o.app.address.clone(), other.address.clone()];

    let started = Instant::now();
    let mut devices = Vec::with_capacity(AGENTS);
    for chunk in (0..AGENTS).collect::<Vec<_>>().chunks(20) {
        let names: Vec<String> = chunk.iter().map(|i| format!("PC-{i:04}")).collect();
        let made = futures_util::future::join_all(names.iter().map(|n| o.device(n, true))).await;
        devices.extend(made.into_iter().map(Arc::new));
    }
    let mut jobs = Vec::new();
    for i in (0..AGENTS).step_by(AGENTS / JOBS) {
        jobs.push(o.requested_job(&devices[i], None).await);
    }
    eprintln!(
        "{AGENTS} devices and {JOBS} requests in {:?}",
        started.elapsed()
    );

    let fleet = Arc::new(Fleet {
        client: reqwest::Client::new(),
        phase: AtomicU8::new(Phase::Before as u8),
        unavailable: Default::default(),
        answers: Default::default(),
        failures: Mutex::default(),
        slowest: Mutex::default(),
        done: Mutex::default(),
        stop: tokio::sync::watch::Sender::new(false),
    });
    let agents: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| tokio::spawn(fleet.clone().agent(bases[i % 2].clone(), d.clone())))
        .collect();
    // Every agent holds a long-poll; the first jobs are approved through process 0 and go
    // to agents on both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (first, rest) = jobs.split_at(BEFORE);
    for id in first {
        let (status, body) = approve(&o, id).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        fleet.all_done(first, Duration::from_secs(30)).await,
        "before the outage, approved jobs were not installed: {:?}",
        fleet.failures.lock().unwrap()
    );
    let audit_before = db.scalar("SELECT COUNT(*) FROM audit_log").await;
    let last_before = db.scalar("SELECT MAX(id) FROM audit_log").await;

    // The crash. Longer than a long-poll plus the pool's acquire timeout, so every held
    // long-poll ends inside it.
    fleet.enter(Phase::Outage);
    cluster.stop_immediately();
    let down = Instant::now();
    for app in [&o.app, &other] {
        assert_health_unavailable(app).await;
    }
    let at = Instant::now();
    let (status, body) = approve(&o, &rest[0]).await;
    assert_eq!(status, 503, "an approval during the outage: {body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    let refused_in = at.elapsed();
    tokio::time::sleep(Duration::from_secs(WAIT + 12).saturating_sub(down.elapsed())).await;

    fleet.enter(Phase::Recovering);
    cluster.start();
    let restarted = Instant::now();
    let back = both_back(&o.app, &other).await;
    assert!(
        back,
        "the servers did not come back:\n{}\n{}",
        o.app.logs(),
        other.logs()
    );
    let recovered_in = restarted.elapsed();
    let outage = down.elapsed();
    // Nothing committed before the crash is lost.
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE id <= {last_before}"
        ))
        .await,
        audit_before
    );

    // Every other job approved through process 0; agents on both get them.
    fleet.enter(Phase::After);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut approved = std::collections::HashMap::new();
    for id in rest {
        let (status, body) = approve(&o, id).await;
        assert_eq!(status, 200, "{body}\n{}", o.app.logs());
        approved.insert(id, Instant::now());
    }
    let all = fleet.all_done(rest, Duration::from_secs(60)).await;
    let _ = fleet.stop.send(true);
    for agent in agents {
        agent.await.unwrap();
    }
    let failures = fleet.failures.lock().unwrap().clone();
    assert!(
        all,
        "after the outage, jobs were not installed: {failures:?}"
    );
    let slowest_install = rest
        .iter()
        .map(|j| fleet.done.lock().unwrap()[j].saturating_duration_since(approved[j]))
        .max()
        .unwrap();
    let count =
        |c: &[std::sync::atomic::AtomicUsize; 4], p: Phase| c[p as usize].load(Ordering::SeqCst);
    let slowest = *fleet.slowest.lock().unwrap();
    eprintln!(
        "cluster stopped for {outage:?} under {AGENTS} agents: an approval refused in {refused_in:?}; \
         answers before/outage/recovering/after {}/{}/{}/{}, of which 503 {}/{}/{}/{}; \
         slowest long-poll {slowest:?} (wait {WAIT} s); back {recovered_in:?} after the start; \
         {} jobs approved after it, each installed within {slowest_install:?} of its approval",
        count(&fleet.answers, Phase::Before),
        count(&fleet.answers, Phase::Outage),
        count(&fleet.answers, Phase::Recovering),
        count(&fleet.answers, Phase::After),
        count(&fleet.unavailable, Phase::Before),
        count(&fleet.unavailable, Phase::Outage),
        count(&fleet.unavailable, Phase::Recovering),
        count(&fleet.unavailable, Phase::After),
        rest.len(),
    );
    assert!(
        failures.is_empty(),
        "answers other than 200 or a clear 503: {failures:?}"
    );
    assert!(
        count(&fleet.unavailable, Phase::Outage) > 0,
        "the agents never saw the outage"
    );
    for p in [Phase::Before, Phase::After] {
        assert_eq!(
            count(&fleet.unavailable, p),
            0,
            "503 outside the outage ({p:?})"
        );
    }
    assert!(
        slowest < Duration::from_secs(WAIT + 20),
        "a long-poll outlived the agent's timeout: {slowest:?}"
    );

    // Each job installed once, the refused approval left nothing, the chain verifies.
    invariants(&db, &o, 1).await.unwrap();
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM cert_install_jobs WHERE status = 'DONE'")
            .await,
        JOBS as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'INSTALL_APPROVED'")
            .await,
        JOBS as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'INSTALL_DONE'")
            .await,
        JOBS as i64
    );
    for app in [&o.app, &other] {
        assert!(!app.logs().contains("panicked"), "{}", app.logs());
    }
}
