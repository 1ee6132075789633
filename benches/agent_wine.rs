//! The Windows agent's figures, under Wine on this machine: approval -> `DONE` on the PC (p50 /
//! p95 over 20 installs, each removed again by an early removal before the next, one every
//! 12.5 s: the server hands a device at most 5 payloads a minute), the release
//! `.exe`'s size, and the agent's idle memory and CPU while it holds its long-poll (under Wine,
//! and the same code built for Linux with its directory store, for comparison).
//!
//! `cargo build --release --no-default-features --features agent --target x86_64-pc-windows-gnu`
//! first, then `cargo bench --bench agent_wine`. Knobs: `CERTHUB_BENCH_INSTALLS` (20),
//! `CERTHUB_BENCH_IDLE_SECS` (60).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::{proc_status, process_ticks};

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
const LINUX_AGENT: &str = env!("CARGO_BIN_EXE_certhub-agent");
const PW: &str = "SenhaForte123!";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn certhub(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("CERTHUB_DATA_DIR", dir.join("data"))
        .env("CERTHUB_LOG_LEVEL", "warn");
    c
}

/// Resident memory and CPU share of `pid` over `secs` of idling.
fn idle(pid: u32, secs: u64) -> (u64, f64) {
    let ticks = process_ticks(&pid.to_string());
    std::thread::sleep(Duration::from_secs(secs));
    let used = process_ticks(&pid.to_string()) - ticks;
    // 100 clock ticks a second on Linux.
    (
        proc_status(pid, "VmRSS:"),
        used as f64 / (secs as f64 * 100.0) * 100.0,
    )
}

struct Api {
    client: reqwest::blocking::Client,
    base: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>, token: &str) -> Value {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().unwrap();
        let status = res.status();
        let body: Value = res.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    fn user(&self, dir: &Path, email: &str, role: &str) -> String {
        let out = certhub(dir)
            .args(["admin", "create-user", "--email", email, "--name", "Bench"])
            .args(["--role", role])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let token = stdout.split("token=").nth(1).unwrap().trim().to_owned();
        self.client
            .post(format!("{}/api/v1/auth/password/set/confirm", self.base))
            .json(&json!({"token": token, "new_password": PW}))
            .send()
            .unwrap();
        let res: Value = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"email": email, "password": PW}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        res["access_token"].as_str().unwrap().to_owned()
    }

    fn wait_status(&self, admin: &str, job: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.call("GET", &format!("/api/v1/install-jobs/{job}"), None, admin);
            if view["status"] == status {
                return;
            }
            assert!(Instant::now() < deadline, "job {job} not {status}: {view}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let exe = repo().join("target/x86_64-pc-windows-gnu/release/certhub-agent.exe");
    assert!(
        exe.is_file(),
        "build it first: cargo build --release --no-default-features --features agent --target x86_64-pc-windows-gnu"
    );
    let installs = var("CERTHUB_BENCH_INSTALLS", 20) as usize;
    let idle_secs = var("CERTHUB_BENCH_IDLE_SECS", 60);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("certificados");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/pfx/ecnpj-aes.pfx"),
        root.join("EMPRESA X LTDA Senha 1234.pfx"),
    )
    .unwrap();
    let ingest = certhub(dir.path())
        .env("CERTHUB_CERTS_ROOT", &root)
        .arg("ingest")
        .output()
        .unwrap();
    assert!(ingest.status.success());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Killed(
        certhub(dir.path())
            .arg("serve")
            .env("CERTHUB_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let api = Api {
        client: reqwest::blocking::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let admin = api.user(dir.path(), "admin@bench.com.br", "ADMIN");
    let view = api.user(dir.path(), "view@bench.com.br", "VIEW");
    let certs = api.call("GET", "/api/v1/certificados", None, &view);
    let cert = certs["items"][0]["id"].as_str().unwrap().to_owned();

    // The PC: pair by code, then run headless under Wine.
    let device = api.call(
        "POST",
        "/api/v1/admin/devices",
        Some(json!({"hostname": "PC-BENCH"})),
        &admin,
    );
    let home = dir.path().join("pc");
    std::fs::create_dir_all(&home).unwrap();
    let windows_home = format!("Z:{}", home.display()).replace('/', "\\");
    let runner = repo().join("scripts/wine-runner.sh");
    let paired = Command::new(&runner)
        .arg(&exe)
        .args(["pair", "--server", &api.base, "--code"])
        .arg(device["enrollment_code"].as_str().unwrap())
        .env("CERTHUB_AGENT_HOME", &windows_home)
        .output()
        .unwrap();
    assert!(paired.status.success(), "{paired:?}");
    let agent = Killed(
        Command::new(&runner)
            .arg(&exe)
            .args(["run", "--headless"])
            .env("CERTHUB_AGENT_HOME", &windows_home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let state = home.join("state.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.exists() {
        assert!(Instant::now() < deadline, "the agent sent no heartbeat");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));

    let device_id = device["id"].as_str().unwrap();
    let mut took = Vec::new();
    // The seed's payload limit (5 a minute per device): faster, the 6th waits for its minute.
    let pace = Duration::from_millis(12_500);
    for _ in 0..installs {
        let round = Instant::now();
        let job = api.call(
            "POST",
            &format!("/api/v1/certificados/{cert}/install"),
            Some(json!({"device_id": device_id, "duration_minutes": 60})),
            &view,
        );
        let id = job["id"].as_str().unwrap();
        let started = Instant::now();
        api.call(
            "POST",
            &format!("/api/v1/install-jobs/{id}/approve"),
            Some(json!({})),
            &admin,
        );
        api.wait_status(&admin, id, "DONE");
        took.push(started.elapsed());
        let job = api.call("GET", &format!("/api/v1/install-jobs/{id}"), None, &admin);
        let installation = job["installation_id"].as_str().unwrap();
        let remove = api.call(
            "POST",
            &format!("/api/v1/installations/{installation}/remove"),
            Some(json!({})),
            &view,
        );
        api.wait_status(&admin, remove["id"].as_str().unwrap(), "DONE");
        std::thread::sleep(pace.saturating_sub(round.elapsed()));
    }
    took.sort();

    let (wine_rss, wine_cpu) = idle(agent.0.id(), idle_secs);
    drop(agent);

    // The same agent code on Linux (directory store), for comparison.
    let linux_home = dir.path().join("pc-linux");
    let device = api.call(
        "POST",
        "/api/v1/admin/devices",
        Some(json!({"hostname": "PC-LINUX"})),
        &admin,
    );
    let paired = Command::new(LINUX_AGENT)
        .args(["pair", "--server", &api.base, "--code"])
        .arg(device["enrollment_code"].as_str().unwrap())
        .env("CERTHUB_AGENT_HOME", &linux_home)
        .output()
        .unwrap();
    assert!(paired.status.success(), "{paired:?}");
    let linux = Killed(
        Command::new(LINUX_AGENT)
            .args(["run", "--headless"])
            .env("CERTHUB_AGENT_HOME", &linux_home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (linux_rss, linux_cpu) = idle(linux.0.id(), idle_secs.min(30));

    let size = std::fs::metadata(&exe).unwrap().len();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| approval -> DONE under Wine, {installs} installs: p50 / p95 / max | {:.0} / {:.0} / {:.0} ms |",
        support::percentile(&took, 0.5).as_secs_f64() * 1000.0,
        support::percentile(&took, 0.95).as_secs_f64() * 1000.0,
        took.last().unwrap().as_secs_f64() * 1000.0
    );
    println!(
        "| certhub-agent.exe (release, stripped) | {:.2} MB ({size} bytes) |",
        size as f64 / 1_000_000.0
    );
    println!(
        "| idle agent under Wine ({idle_secs} s holding its long-poll): RSS, CPU | {:.1} MiB, {wine_cpu:.2} % |",
        wine_rss as f64 / 1024.0
    );
    println!(
        "| idle agent on Linux (same code, directory store): RSS, CPU | {:.1} MiB, {linux_cpu:.2} % |",
        linux_rss as f64 / 1024.0
    );
}
