//! Agent figures for the release binary, on SQLite and PostgreSQL: N simulated agents (real
//! provisioned devices, each paired with its own X25519 key) all holding a long-poll
//! `GET /api/v1/agent/jobs?wait=30` at once and sending heartbeats; meanwhile an admin approves
//! install jobs at a steady pace, and the time from the approve request to the job arriving on
//! that device's long-poll is measured. Each agent claims its job, fetches the payload, opens
//! it with its secret key and reports `DONE`. Then heartbeats are sent as fast as 64 clients
//! can. The server's resident memory is read from `/proc` along the way.
//!
//! `cargo bench --bench agents` (PostgreSQL figures when `CERTHUB_TEST_POSTGRES_URL` or the
//! local default server is reachable). Knobs, all optional: `CERTHUB_BENCH_AGENTS` (1000),
//! `CERTHUB_BENCH_APPROVALS` (200), `CERTHUB_BENCH_APPROVALS_PER_SEC` (20),
//! `CERTHUB_BENCH_HEARTBEAT_SECS` (10, each agent's interval in the sustained phase),
//! `CERTHUB_BENCH_RAMP_SECS` (5: the first long-polls are spread over that long; 0, at once),
//! `CERTHUB_BENCH_DB_MAX_CONNECTIONS` (passed on as `CERTHUB_DATABASE_MAX_CONNECTIONS`; unset,
//! the server's default of 10), `CERTHUB_BENCH_PROCESSES` (`1`; e.g. `1,2,4`: on PostgreSQL,
//! one run per count of `certhub serve` processes sharing the database, agent `i` on process
//! `i mod n` and each approval sent to another process than its agent's, so every wake-up
//! crosses processes by LISTEN/NOTIFY), `CERTHUB_BENCH_SQLITE` (`1`; `0` skips SQLite).
//!
//! The soak: `CERTHUB_BENCH_APPROVALS=1200 CERTHUB_BENCH_APPROVALS_PER_SEC=2` keeps 1,000 agents
//! long-polling for 10 minutes while approvals, results and heartbeats flow; the "soak" line
//! gives the server's RSS and open descriptors over that time and the RSS slope.
//!
//! Memory per held long-poll is (RSS with every long-poll held - RSS with the devices idle) /
//! agents, summed over the processes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certhub::crypto::{DeviceSecretKey, PayloadContext};
use certhub::protocol::{
    AgentJob, AgentJobStatus, AgentJobs, ClaimResponse, PayloadResponse, ResultResponse,
};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

mod support;
use support::{percentile, proc_status, process_ticks};

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
const PW: &str = "SenhaForte123!";
const PFX_PASSWORD: &str = "1234";
/// The long-poll every agent holds, in seconds (the server's maximum).
const WAIT_SECS: u64 = 30;
/// Concurrent requests while provisioning devices and creating install requests.
const SETUP_CONCURRENCY: usize = 16;
/// The sustained heartbeat phase ends this long after the first long-poll, so that it spans the
/// first wave of long-polls renewed after their 30 s.
const SUSTAINED_UNTIL: Duration = Duration::from_secs(40);
const SATURATION_CLIENTS: usize = 64;
const SATURATION: Duration = Duration::from_secs(10);
/// How often the server's memory and descriptors are sampled during the approvals.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

struct Config {
    agents: usize,
    approvals: usize,
    approvals_per_sec: f64,
    heartbeat: Duration,
    /// The agents' first long-polls are spread over this long (0: all at once).
    ramp: Duration,
    db_max_connections: Option<String>,
    /// Server process counts to run on PostgreSQL, in turn.
    processes: Vec<usize>,
    sqlite: bool,
}

impl Config {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
                })
                .unwrap_or(default)
        }
        let c = Self {
            agents: var("CERTHUB_BENCH_AGENTS", 1000),
            approvals: var("CERTHUB_BENCH_APPROVALS", 200),
            approvals_per_sec: var("CERTHUB_BENCH_APPROVALS_PER_SEC", 20.0),
            heartbeat: Duration::from_secs(var("CERTHUB_BENCH_HEARTBEAT_SECS", 10)),
            ramp: Duration::from_secs_f64(var("CERTHUB_BENCH_RAMP_SECS", 5.0)),
            db_max_connections: std::env::var("CERTHUB_BENCH_DB_MAX_CONNECTIONS").ok(),
            processes: std::env::var("CERTHUB_BENCH_PROCESSES")
                .unwrap_or_else(|_| "1".into())
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("CERTHUB_BENCH_PROCESSES: not a list: {v}"))
                })
                .collect(),
            sqlite: var("CERTHUB_BENCH_SQLITE", 1) != 0,
        };
        assert!(c.processes.iter().all(|n| *n > 0));
        assert!(c.agents > 0 && c.approvals_per_sec > 0.0 && !c.heartbeat.is_zero());
        c
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path, url: &str, cfg: &Config) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("CERTHUB_DATA_DIR", dir.join("data"))
        .env("CERTHUB_DATABASE_URL", url)
        .env("CERTHUB_LOG_LEVEL", "warn")
        .env("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "1000000")
        .env("CERTHUB_DEVICE_AUTH_PER_MINUTE", "1000000")
        // Tokens that outlive a long soak: the bench's admin and agents sign in once (the
        // real agent signs in again on a 401; the admin's access token lasts 15 min).
        .env("CERTHUB_ACCESS_TOKEN_TTL_MIN", "1440")
        .env("CERTHUB_DEVICE_TOKEN_TTL_MIN", "1440");
    if let Some(n) = &cfg.db_max_connections {
        c.env("CERTHUB_DATABASE_MAX_CONNECTIONS", n);
    }
    c
}

fn start(dir: &Path, url: &str, cfg: &Config, k: usize) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join(format!("server-{k}.log"))).unwrap();
    let child = command(dir, url, cfg)
        .arg("serve")
        .env("CERTHUB_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, base }
}

/// Raises this process's open-file soft limit to the hard limit (the server child inherits
/// it): the client and the server each hold one socket per agent. Returns the soft limit.
fn raise_nofile() -> u64 {
    // SAFETY: plain libc calls on a zeroed, correctly typed struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
        }
        r.rlim_cur as u64
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU time of a process (`self` or a pid) and of the whole machine, in clock ticks.
#[derive(Clone, Copy)]
struct Cpu {
    server: u64,
    bench: u64,
    busy: u64,
    total: u64,
}

fn cpu(servers: &[u32]) -> Cpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Cpu {
        server: servers.iter().map(|p| process_ticks(&p.to_string())).sum(),
        bench: process_ticks("self"),
        busy: total - idle,
        total,
    }
}

/// Where the machine's CPU went between two samples, in percent of one core.
fn cpu_use(a: Cpu, b: Cpu, wall: Duration) -> String {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let pct = |ticks: u64| ticks as f64 / hz / wall.as_secs_f64() * 100.0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine = (b.busy - a.busy) as f64 / (b.total - a.total).max(1) as f64 * 100.0;
    let (server, bench) = (pct(b.server - a.server), pct(b.bench - a.bench));
    format!(
        "CPU: server(s) {server:.0}%, bench client {bench:.0}%, rest of the machine (database, other work) {:.0}% of one core; machine busy {machine:.0}% of {cores} cores",
        (machine * cores as f64 - server - bench).max(0.0),
    )
}

/// The soft "Max open files" limit of a process.
fn fd_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `p50 .. p95 .. p99 .. max ..` of `v` (sorted here).
fn spread(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    format!(
        "p50 {:>8}  p95 {:>8}  p99 {:>8}  max {:>8}  (n={})",
        ms(percentile(v, 0.50)),
        ms(percentile(v, 0.95)),
        ms(percentile(v, 0.99)),
        ms(*v.last().unwrap()),
        v.len()
    )
}

/// A failed request: a key to count it by, and one example.
struct Fail {
    key: String,
    detail: String,
}

fn net_fail(what: &str, e: reqwest::Error) -> Fail {
    let class = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() {
        "body error"
    } else {
        "request error"
    };
    let mut detail = format!("{e:?}");
    detail.truncate(400);
    Fail {
        key: format!("{what}: {class}"),
        detail,
    }
}

/// Sends, expects `want`, parses the JSON answer.
async fn send<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
    want: u16,
) -> Result<T, Fail> {
    let res = req.send().await.map_err(|e| net_fail(what, e))?;
    let status = res.status().as_u16();
    let body = res.bytes().await.map_err(|e| net_fail(what, e))?;
    if status != want {
        return Err(Fail {
            key: format!("{what}: HTTP {status}"),
            detail: String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| Fail {
        key: format!("{what}: bad JSON"),
        detail: e.to_string(),
    })
}

struct Agent {
    id: Uuid,
    key: DeviceSecretKey,
    jwt: String,
    /// The server process this agent talks to.
    server: usize,
}

/// What the agents, the approver and the heartbeat senders share and record.
struct Shared {
    client: reqwest::Client,
    /// One per server process; the admin uses the first.
    bases: Vec<String>,
    fixture: Vec<u8>,
    /// Job id -> the instant just before its approve request was sent.
    approved_at: Mutex<HashMap<Uuid, Instant>>,
    /// Approve sent -> the long-poll answer carrying the job read by the agent.
    notified: Mutex<Vec<Duration>>,
    /// Long-poll answer -> result `DONE` accepted (claim, payload, open, result).
    handled: Mutex<Vec<Duration>>,
    done: Mutex<HashSet<Uuid>>,
    /// Long-polls sent and not answered yet.
    in_flight: AtomicUsize,
    /// How long the long-polls that came back empty (the 30 s wait ran out) took.
    empty_polls: Mutex<Vec<Duration>>,
    /// Sustained heartbeats: (sent, latency).
    heartbeats: Mutex<Vec<(Instant, Duration)>>,
    errors: Mutex<HashMap<String, (usize, String)>>,
}

impl Shared {
    fn url(&self, path: &str) -> String {
        self.url_on(0, path)
    }

    fn url_on(&self, server: usize, path: &str) -> String {
        format!("{}{path}", self.bases[server % self.bases.len()])
    }

    fn error(&self, f: Fail) {
        let mut errors = self.errors.lock().unwrap();
        errors.entry(f.key).or_insert((0, f.detail)).0 += 1;
    }

    async fn heartbeat(&self, a: &Agent) -> Result<(), Fail> {
        let req = self
            .client
            .post(self.url_on(a.server, "/api/v1/agent/heartbeat"))
            .bearer_auth(&a.jwt)
            .timeout(Duration::from_secs(30))
            .json(&json!({"agent_version": "1.0.0"}));
        send::<Value>(req, "heartbeat", 200).await.map(|_| ())
    }
}

/// Creates the device (admin) and pairs it with a fresh X25519 key (`/agent/auth`).
async fn provision(sh: &Shared, admin: &str, i: usize) -> Agent {
    let req = sh
        .client
        .post(sh.url("/api/v1/admin/devices"))
        .bearer_auth(admin)
        .json(&json!({"hostname": format!("PC-{i:04}")}));
    let d: Value = send(req, "create device", 201)
        .await
        .unwrap_or_else(|f| panic!("{}: {}", f.key, f.detail));
    let id: Uuid = d["id"].as_str().unwrap().parse().unwrap();
    let key = DeviceSecretKey::generate();
    let server = i % sh.bases.len();
    let req = sh
        .client
        .post(sh.url_on(server, "/api/v1/agent/auth"))
        .json(&json!({
            "device_id": id,
            "device_token": d["device_token"],
            "public_key": key.public_key().to_base64(),
        }));
    let auth: Value = send(req, "agent auth", 200)
        .await
        .unwrap_or_else(|f| panic!("{}: {}", f.key, f.detail));
    Agent {
        id,
        key,
        jwt: auth["access_token"].as_str().unwrap().to_owned(),
        server,
    }
}

/// Claim, payload (retried after a 429), open with the device's key, result `DONE`.
async fn handle(sh: &Shared, a: &Agent, job: &AgentJob) -> Result<(), Fail> {
    let path = |what: &str| sh.url_on(a.server, &format!("/api/v1/agent/jobs/{}/{what}", job.id));
    let req = sh.client.post(path("claim")).bearer_auth(&a.jwt);
    let claim: ClaimResponse = send(req, "claim", 200).await?;
    let mut tries = 0;
    let payload: PayloadResponse = loop {
        let req = sh
            .client
            .get(path("payload"))
            .query(&[("token", &claim.payload_token)])
            .bearer_auth(&a.jwt);
        match send(req, "payload", 200).await {
            Err(f) if f.key.ends_with("HTTP 429") && tries < 10 => {
                tries += 1;
                sh.error(f);
                tokio::time::sleep(Duration::from_secs(13)).await;
            }
            other => break other?,
        }
    };
    let opened = certhub::crypto::open(&a.key, &PayloadContext::new(job.id, a.id), &payload.sealed)
        .map_err(|e| Fail {
            key: "open payload".into(),
            detail: e.to_string(),
        })?;
    if opened.pfx() != sh.fixture.as_slice() || opened.password().expose() != PFX_PASSWORD {
        return Err(Fail {
            key: "open payload: not the certificate".into(),
            detail: String::new(),
        });
    }
    let req = sh
        .client
        .post(path("result"))
        .bearer_auth(&a.jwt)
        .json(&json!({"status": "DONE", "thumbprint": payload.thumbprint}));
    let result: ResultResponse = send(req, "result", 200).await?;
    if result.status != AgentJobStatus::Done {
        return Err(Fail {
            key: format!("result: {}", result.status),
            detail: format!("{:?}", result.error_code),
        });
    }
    sh.done.lock().unwrap().insert(job.id);
    Ok(())
}

/// One agent: long-polls from `start_at` until `stop`, handling whatever job arrives.
async fn agent_loop(
    sh: Arc<Shared>,
    a: Arc<Agent>,
    start_at: Instant,
    stop: watch::Receiver<bool>,
) {
    tokio::time::sleep_until(start_at.into()).await;
    let mut failures: HashMap<Uuid, usize> = HashMap::new();
    loop {
        let mut stop_rx = stop.clone();
        let req = sh
            .client
            .get(sh.url_on(a.server, &format!("/api/v1/agent/jobs?wait={WAIT_SECS}")))
            .bearer_auth(&a.jwt)
            .timeout(Duration::from_secs(WAIT_SECS + 30));
        sh.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let answer = tokio::select! {
            r = send::<AgentJobs>(req, "long-poll", 200) => r,
            _ = stop_rx.wait_for(|s| *s) => {
                sh.in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        let arrived = Instant::now();
        sh.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut pause = false;
        match answer {
            Ok(list) if list.jobs.is_empty() => {
                sh.empty_polls.lock().unwrap().push(arrived - sent);
            }
            Ok(list) => {
                for job in &list.jobs {
                    let approved = sh.approved_at.lock().unwrap().remove(&job.id);
                    if let Some(t) = approved {
                        sh.notified.lock().unwrap().push(arrived - t);
                    }
                    if failures.get(&job.id).is_some_and(|n| *n >= 3) {
                        pause = true;
                        continue;
                    }
                    let outcome = tokio::select! {
                        r = handle(&sh, &a, job) => r,
                        _ = stop_rx.wait_for(|s| *s) => return,
                    };
                    match outcome {
                        Ok(()) => sh.handled.lock().unwrap().push(arrived.elapsed()),
                        Err(f) => {
                            sh.error(f);
                            *failures.entry(job.id).or_default() += 1;
                            pause = true;
                        }
                    }
                }
            }
            Err(f) => {
                sh.error(f);
                pause = true;
            }
        }
        if pause {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop_rx.wait_for(|s| *s) => return,
            }
        }
    }
}

/// One agent's heartbeats every `every` from `first` until `stop`.
async fn heartbeat_loop(
    sh: Arc<Shared>,
    a: Arc<Agent>,
    first: Instant,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(first.into(), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let sent = Instant::now();
        match sh.heartbeat(&a).await {
            Ok(()) => sh.heartbeats.lock().unwrap().push((sent, sent.elapsed())),
            Err(f) => sh.error(f),
        }
    }
}

/// A random permutation of `0..n` (Fisher-Yates; the randomness of v4 UUIDs).
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (Uuid::new_v4().as_u128() % (i as u128 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

async fn jobs_with_status(sh: &Shared, admin: &str, status: &str) -> u64 {
    let req = sh
        .client
        .get(sh.url(&format!("/api/v1/install-jobs?status={status}&page_size=1")))
        .bearer_auth(admin);
    let page: Value = send(req, "list jobs", 200)
        .await
        .unwrap_or_else(|f| panic!("{}: {}", f.key, f.detail));
    page["total"].as_u64().unwrap()
}

/// Resident memory of the server processes together, in KiB.
fn rss(pids: &[u32], field: &str) -> u64 {
    pids.iter().map(|p| proc_status(*p, field)).sum()
}

async fn bench(
    label: &str,
    dir: &Path,
    url: &str,
    cfg: &Config,
    processes: usize,
    client: &reqwest::Client,
) {
    let n = cfg.agents;
    let approvals = cfg.approvals;
    let bench_started = Instant::now();
    let load_before = load_average();

    // The certificate, ingested from the folder, and the admin, before the server starts.
    let fixture_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pfx/ecnpj-aes.pfx");
    let fixture = std::fs::read(&fixture_path).unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("EMPRESA X LTDA Senha 1234.pfx"), &fixture).unwrap();
    let out = command(dir, url, cfg)
        .env("CERTHUB_CERTS_ROOT", &certs)
        .arg("ingest")
        .output()
        .unwrap();
    assert!(out.status.success(), "ingest: {out:?}");
    let token = support::create_user(
        command(dir, url, cfg),
        "bench@escritorio.com.br",
        "Bench",
        "ADMIN",
    );

    let servers: Vec<Server> = (0..processes).map(|k| start(dir, url, cfg, k)).collect();
    let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let pid = pids[0];
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss(&pids, "VmRSS:");
    let admin = support::activate(
        client,
        &servers[0].base,
        &token,
        "bench@escritorio.com.br",
        PW,
    )
    .await;
    let sh = Arc::new(Shared {
        client: client.clone(),
        bases: servers.iter().map(|s| s.base.clone()).collect(),
        fixture,
        approved_at: Mutex::new(HashMap::new()),
        notified: Mutex::new(Vec::new()),
        handled: Mutex::new(Vec::new()),
        done: Mutex::new(HashSet::new()),
        in_flight: AtomicUsize::new(0),
        empty_polls: Mutex::new(Vec::new()),
        heartbeats: Mutex::new(Vec::new()),
        errors: Mutex::new(HashMap::new()),
    });
    let req = sh
        .client
        .get(sh.url("/api/v1/certificados"))
        .bearer_auth(&admin);
    let certs: Value = send(req, "certificados", 200)
        .await
        .unwrap_or_else(|f| panic!("{}: {}", f.key, f.detail));
    let cert_id = certs["items"][0]["id"]
        .as_str()
        .expect("a certificate")
        .to_owned();

    // N devices, each paired with its own key.
    let t = Instant::now();
    let agents: Vec<Arc<Agent>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (sh, admin) = (sh.clone(), admin.clone());
            async move { Arc::new(provision(&sh, &admin, i + 1).await) }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let provisioning = t.elapsed();

    // The install requests (REQUESTED wakes nobody), on distinct random devices while there
    // are enough of them.
    let t = Instant::now();
    let order = shuffled(n);
    let targets: Vec<usize> = (0..approvals).map(|k| order[k % n]).collect();
    let jobs: Vec<(Uuid, usize)> = futures_util::stream::iter(targets)
        .map(|i| {
            let (sh, admin, cert_id) = (sh.clone(), admin.clone(), cert_id.clone());
            let (device, server) = (agents[i].id, agents[i].server);
            async move {
                let req = sh
                    .client
                    .post(sh.url(&format!("/api/v1/certificados/{cert_id}/install")))
                    .bearer_auth(&admin)
                    .json(&json!({"device_id": device}));
                let job: Value = send(req, "install request", 201)
                    .await
                    .unwrap_or_else(|f| panic!("{}: {}", f.key, f.detail));
                assert_eq!(job["status"], "REQUESTED");
                (job["id"].as_str().unwrap().parse::<Uuid>().unwrap(), server)
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let requesting = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_provisioned = rss(&pids, "VmRSS:");

    // Every agent long-polls (first ones spread over the ramp) and heartbeats (spread evenly over
    // its interval).
    let (stop_polls, stop_polls_rx) = watch::channel(false);
    let (stop_beats, stop_beats_rx) = watch::channel(false);
    let t0 = Instant::now();
    let mut agent_tasks = Vec::new();
    let mut beat_tasks = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let start_at = t0 + cfg.ramp.mul_f64(i as f64 / n as f64);
        agent_tasks.push(tokio::spawn(agent_loop(
            sh.clone(),
            a.clone(),
            start_at,
            stop_polls_rx.clone(),
        )));
        let first = t0 + cfg.heartbeat.mul_f64(i as f64 / n as f64);
        beat_tasks.push(tokio::spawn(heartbeat_loop(
            sh.clone(),
            a.clone(),
            first,
            cfg.heartbeat,
            stop_beats_rx.clone(),
        )));
    }
    tokio::time::sleep(cfg.ramp).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sh.in_flight.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} long-polls held",
            sh.in_flight.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_sent = t0.elapsed();
    // Held by the server, not merely sent: none came back in the meantime.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held_at = Instant::now();
    let cpu_held = cpu(&pids);
    let in_flight_held = sh.in_flight.load(Ordering::SeqCst);
    let early_answers = sh.empty_polls.lock().unwrap().len();
    let rss_held = rss(&pids, "VmRSS:");
    let fds_held: usize = pids.iter().map(|p| open_fds(*p)).sum();
    let fds_allowed = fd_limit(pid);
    let threads = rss(&pids, "Threads:");
    // Memory and descriptors every 10 s while approvals, results and heartbeats flow (the
    // soak: with `CERTHUB_BENCH_APPROVALS_PER_SEC=2 CERTHUB_BENCH_APPROVALS=1200` this phase
    // lasts 10 minutes).
    let (stop_samples, mut stop_samples_rx) = watch::channel(false);
    let sampler = {
        let pids = pids.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let fds: usize = pids.iter().map(|p| open_fds(*p)).sum();
                samples.push((held_at.elapsed(), rss(&pids, "VmRSS:"), fds));
                tokio::select! {
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = stop_samples_rx.changed() => break samples,
                }
            }
        })
    };

    // The approvals, at a steady pace, whatever the server's answer time.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.approvals_per_sec));
    let mut approve_tasks = Vec::new();
    let approvals_started = Instant::now();
    for (job, agent_server) in jobs.iter().copied() {
        tick.tick().await;
        let (sh, admin) = (sh.clone(), admin.clone());
        // Through another process than the agent's, when there are several.
        let approver = (agent_server + 1) % processes;
        approve_tasks.push(tokio::spawn(async move {
            let req = sh
                .client
                .post(sh.url_on(approver, &format!("/api/v1/install-jobs/{job}/approve")))
                .bearer_auth(&admin)
                .timeout(Duration::from_secs(30))
                .json(&json!({}));
            let t = Instant::now();
            sh.approved_at.lock().unwrap().insert(job, t);
            match send::<Value>(req, "approve", 200).await {
                Ok(v) if v["status"] == "PENDING" => Some((job, t.elapsed())),
                Ok(v) => {
                    sh.error(Fail {
                        key: "approve: not PENDING".into(),
                        detail: v.to_string(),
                    });
                    None
                }
                Err(f) => {
                    sh.approved_at.lock().unwrap().remove(&job);
                    sh.error(f);
                    None
                }
            }
        }));
    }
    let mut approve_latency = Vec::new();
    let mut approved_jobs = Vec::new();
    for t in approve_tasks {
        if let Some((job, latency)) = t.await.unwrap() {
            approved_jobs.push(job);
            approve_latency.push(latency);
        }
    }
    let approvals_took = approvals_started.elapsed();
    stop_samples.send(true).unwrap();
    let samples = sampler.await.unwrap();
    let approved = approved_jobs.len();
    // Every approved job handled (a missed wake-up would show as a 30 s latency).
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS + 30);
    while sh.done.lock().unwrap().len() < approved && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_busy = rss(&pids, "VmRSS:");

    // The rest of the sustained heartbeat phase.
    tokio::time::sleep_until((t0 + SUSTAINED_UNTIL).max(Instant::now()).into()).await;
    let sustained_end = Instant::now();
    let cpu_sustained = cpu_use(cpu_held, cpu(&pids), sustained_end - held_at);
    stop_beats.send(true).unwrap();
    for t in beat_tasks {
        t.await.unwrap();
    }
    let window = sustained_end - held_at;
    let mut sustained: Vec<Duration> = sh
        .heartbeats
        .lock()
        .unwrap()
        .iter()
        .filter(|(sent, _)| *sent >= held_at && *sent < sustained_end)
        .map(|(_, d)| *d)
        .collect();
    let sustained_rate = sustained.len() as f64 / window.as_secs_f64();

    // Saturation: 64 clients, heartbeats back to back, the N device tokens in turn.
    let next = Arc::new(AtomicUsize::new(0));
    let agents = Arc::new(agents);
    let sat_started = Instant::now();
    let cpu_sat_start = cpu(&pids);
    let sat_deadline = sat_started + SATURATION;
    let mut sat_tasks = Vec::new();
    for _ in 0..SATURATION_CLIENTS {
        let (sh, next, agents) = (sh.clone(), next.clone(), agents.clone());
        sat_tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < sat_deadline {
                let a = &agents[next.fetch_add(1, Ordering::Relaxed) % agents.len()];
                let t = Instant::now();
                match sh.heartbeat(a).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(f) => sh.error(f),
                }
            }
            lat
        }));
    }
    let mut saturation = Vec::new();
    for t in sat_tasks {
        saturation.extend(t.await.unwrap());
    }
    let sat_elapsed = sat_started.elapsed();
    let cpu_sat_end = cpu(&pids);
    let cpu_saturation = cpu_use(cpu_sat_start, cpu_sat_end, sat_elapsed);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let server_us_per_heartbeat = (cpu_sat_end.server - cpu_sat_start.server) as f64 / hz * 1e6
        / saturation.len().max(1) as f64;
    let sat_rate = saturation.len() as f64 / sat_elapsed.as_secs_f64();
    let in_flight_end = sh.in_flight.load(Ordering::SeqCst);

    let rss_end = rss(&pids, "VmRSS:");
    let fds_end: usize = pids.iter().map(|p| open_fds(*p)).sum();
    stop_polls.send(true).unwrap();
    for t in agent_tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_closed = rss(&pids, "VmRSS:");
    let hwm = rss(&pids, "VmHWM:");
    let done_api = jobs_with_status(&sh, &admin, "DONE").await;
    let open_api = jobs_with_status(&sh, &admin, "PENDING").await
        + jobs_with_status(&sh, &admin, "IN_PROGRESS").await;
    let all_done = {
        let done = sh.done.lock().unwrap();
        approved == approvals
            && approved_jobs.iter().all(|j| done.contains(j))
            && done_api == approved as u64
            && open_api == 0
    };
    let load_after = load_average();
    drop(servers);
    let log: String = (0..processes)
        .map(|k| std::fs::read_to_string(dir.join(format!("server-{k}.log"))).unwrap_or_default())
        .collect();
    let log_lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();

    let mut notified = std::mem::take(&mut *sh.notified.lock().unwrap());
    let mut handled = std::mem::take(&mut *sh.handled.lock().unwrap());
    let mut empty = std::mem::take(&mut *sh.empty_polls.lock().unwrap());
    let p95_notified = if notified.is_empty() {
        None
    } else {
        notified.sort();
        Some(percentile(&notified, 0.95))
    };
    let db_pool = cfg
        .db_max_connections
        .clone()
        .unwrap_or_else(|| "10 (default)".into());
    println!();
    println!(
        "== {label}: {n} agents, {processes} server process(es), {approvals} approvals at {}/s, heartbeat every {} s, database pool {db_pool} ==",
        cfg.approvals_per_sec,
        cfg.heartbeat.as_secs()
    );
    println!(
        "setup                      {n} devices provisioned and paired in {:.1} s ({:.0}/s); {approvals} install requests in {:.1} s",
        provisioning.as_secs_f64(),
        n as f64 / provisioning.as_secs_f64(),
        requesting.as_secs_f64()
    );
    println!(
        "long-polls held            {in_flight_held} of {n} (all sent {:.1} s after the first, ramp {:.1} s; {early_answers} answered early); server: {fds_held} open fds (limit {}), {threads} threads{}",
        all_sent.as_secs_f64(),
        cfg.ramp.as_secs_f64(),
        fds_allowed,
        if fds_held < n {
            "; FEWER SERVER FDS THAN AGENTS: some long-polls wait unaccepted in the listen backlog"
        } else {
            ""
        }
    );
    println!(
        "approve -> agent notified  {}  goal p95 < 50 ms: {}{}",
        spread(&mut notified),
        match p95_notified {
            Some(p) if p < Duration::from_millis(50) => "met",
            Some(_) => "MISSED",
            None => "no data",
        },
        if processes > 1 {
            " (every approval through another process than its agent's)"
        } else {
            ""
        }
    );
    println!(
        "approve request            {}  ({approved} of {approvals} ok, sent over {:.1} s)",
        spread(&mut approve_latency),
        approvals_took.as_secs_f64()
    );
    println!(
        "job handled by the agent   {}  (claim + payload + open + result DONE)",
        spread(&mut handled)
    );
    println!(
        "jobs DONE                  {} of {approved} approved reported DONE by the agents; API: {done_api} DONE, {open_api} PENDING/IN_PROGRESS -> {}",
        sh.done.lock().unwrap().len(),
        if all_done {
            "every approved job DONE"
        } else {
            "NOT ALL DONE"
        }
    );
    println!("soak                       {}", soak(&samples));
    println!(
        "empty long-poll (30 s)     {}",
        if empty.is_empty() {
            "none returned".into()
        } else {
            spread(&mut empty)
        }
    );
    println!(
        "heartbeats sustained       {sustained_rate:.1}/s achieved (target {:.1}/s) over {:.1} s, long-polls held: {}",
        n as f64 / cfg.heartbeat.as_secs_f64(),
        window.as_secs_f64(),
        spread(&mut sustained)
    );
    println!("                           {cpu_sustained}");
    println!(
        "heartbeats saturation      {sat_rate:.0}/s ({SATURATION_CLIENTS} clients, {:.1} s, {in_flight_end} long-polls still held): {}",
        sat_elapsed.as_secs_f64(),
        spread(&mut saturation)
    );
    println!(
        "                           {cpu_saturation}; server {server_us_per_heartbeat:.0} us CPU per heartbeat"
    );
    println!(
        "server memory              idle after start {} | {n} devices, idle {} | all long-polls held {} | after the approvals {} | after saturation {} | long-polls closed {} | peak (VmHWM) {}; {fds_end} fds before closing",
        mib(rss_idle),
        mib(rss_provisioned),
        mib(rss_held),
        mib(rss_busy),
        mib(rss_end),
        mib(rss_closed),
        mib(hwm)
    );
    println!(
        "per held long-poll         {:.1} KiB (all long-polls held - devices idle, / {n})",
        rss_held.saturating_sub(rss_provisioned) as f64 / n as f64
    );
    let errors = std::mem::take(&mut *sh.errors.lock().unwrap());
    if errors.is_empty() {
        println!("client errors              none");
    } else {
        let mut errors: Vec<_> = errors.into_iter().collect();
        errors.sort();
        for (key, (count, detail)) in errors {
            println!("client error               {count} x {key}: {detail}");
        }
    }
    println!(
        "server log (warn+)         {} lines{}",
        log_lines.len(),
        log_lines
            .first()
            .map(|l| format!("; first: {}", &l[..l.len().min(300)]))
            .unwrap_or_default()
    );
    println!(
        "machine                    load average {load_before} before, {load_after} after; {:.0} s for this backend",
        bench_started.elapsed().as_secs_f64()
    );
}

/// The RSS and descriptor samples of the approval phase: their range and the RSS slope (least
/// squares, over all samples and over the second half, when the first minutes' warm-up is
/// over).
fn soak(samples: &[(Duration, u64, usize)]) -> String {
    fn slope(points: &[(Duration, u64, usize)]) -> f64 {
        let n = points.len() as f64;
        let xs: Vec<f64> = points.iter().map(|p| p.0.as_secs_f64() / 60.0).collect();
        let ys: Vec<f64> = points.iter().map(|p| p.1 as f64).collect();
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        if var == 0.0 { 0.0 } else { cov / var }
    }
    if samples.len() < 3 {
        return format!(
            "{} samples (the phase is too short for a slope)",
            samples.len()
        );
    }
    let rss = samples.iter().map(|s| s.1);
    let fds = samples.iter().map(|s| s.2);
    // The curve: RSS at the start of each tenth of the phase, and at its end.
    let tenths: Vec<String> = (0..10)
        .map(|k| samples[k * samples.len() / 10].1)
        .chain([samples.last().unwrap().1])
        .map(|kib| format!("{:.1}", kib as f64 / 1024.0))
        .collect();
    format!(
        "{} samples over {:.0} s: RSS {} to {} (min {}, max {}; by tenths {} MiB), slope {:+.0} KiB/min ({:+.0} KiB/min over the second half, {:+.0} over the last third); fds {} to {} (min {}, max {})",
        samples.len(),
        samples.last().unwrap().0.as_secs_f64(),
        mib(samples[0].1),
        mib(samples.last().unwrap().1),
        mib(rss.clone().min().unwrap()),
        mib(rss.max().unwrap()),
        tenths.join(" / "),
        slope(samples),
        slope(&samples[samples.len() / 2..]),
        slope(&samples[samples.len() * 2 / 3..]),
        samples[0].2,
        samples.last().unwrap().2,
        fds.clone().min().unwrap(),
        fds.max().unwrap(),
    )
}

/// The floor under CertHub's memory per held long-poll: a bare actix-web server (two workers,
/// as CertHub on this machine) answering the same request after the same 30 s, in a child
/// process of this bench (`--actix-floor PORT`), measured the same way.
fn actix_floor_server(port: u16) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().route(
                "/api/v1/agent/jobs",
                web::get().to(|| async {
                    tokio::time::sleep(Duration::from_secs(WAIT_SECS)).await;
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(r#"{"jobs":[]}"#)
                }),
            )
        })
        .workers(2)
        .backlog(4096)
        .bind(("127.0.0.1", port))
        .unwrap()
        .run()
        .await
        .unwrap();
    });
}

/// RSS per held long-poll of the bare actix-web server, in KiB, for `n` agents.
async fn actix_floor(n: usize, client: &reqwest::Client) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--actix-floor", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_status(pid, "VmRSS:");
    let url = format!("http://127.0.0.1:{port}/api/v1/agent/jobs?wait={WAIT_SECS}");
    let polls: Vec<_> = (0..n)
        .map(|_| {
            let req = client
                .get(&url)
                .bearer_auth("x".repeat(400))
                .timeout(Duration::from_secs(WAIT_SECS + 30));
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_fds(pid) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = proc_status(pid, "VmRSS:");
    let _ = child.kill();
    let _ = child.wait();
    for p in polls {
        p.abort();
    }
    held.saturating_sub(idle) as f64 / n as f64
}

fn main() {
    support::bench_main("--actix-floor", actix_floor_server, run);
}

async fn run() {
    let nofile = raise_nofile();
    let cfg = Config::from_env();
    println!(
        "open files limit {nofile} (server and bench each need one per agent: {})",
        cfg.agents
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        // Under the server's 5 s keep-alive, so an idle connection is never reused as the
        // server closes it.
        .pool_idle_timeout(Duration::from_secs(4))
        .tcp_nodelay(true)
        .build()
        .unwrap();

    let floor = actix_floor(cfg.agents, &client).await;
    println!(
        "actix-web floor: {floor:.1} KiB per held long-poll (a bare actix-web server holding {} of them)",
        cfg.agents
    );

    if cfg.sqlite {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("data/certhub.db").display());
        bench("sqlite", dir.path(), &url, &cfg, 1, &client).await;
    }

    for &processes in &cfg.processes {
        let Some(db) = support::ThrowawayDb::create("certhub_bench") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let url = db.url();
        bench("postgres", dir.path(), &url, &cfg, processes, &client).await;
    }
}
