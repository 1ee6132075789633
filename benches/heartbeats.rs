//! Heartbeats side by side, in one run on one machine, hit by the same client: the seed's stack
//! (`../shared/bench/seed-stack`: FastAPI + synchronous SQLAlchemy + PyJWT, 2 uvicorn workers),
//! CertHub (release), and an actix-web hello-world answering the same request (the ceiling),
//! each by `wrk` with 32 connections rotating over 1,000 devices' tokens, on SQLite and on
//! PostgreSQL. Prints heartbeats/s, p50 / p99 / max, errors, the ratios, and CertHub's CPU per
//! heartbeat.
//!
//! Needs `wrk` (`apt-get install wrk`) and the seed stack's Python environment
//! (`scripts/seed-stack.sh` makes `/tmp/seedstack`; `CERTHUB_SEEDSTACK_PYTHON` points
//! elsewhere). `cargo bench --bench heartbeats`; `CERTHUB_BENCH_SECS` (10) per run,
//! `CERTHUB_BENCH_DEVICES` (1000).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::process_ticks;

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
const PW: &str = "SenhaForte123!";
const CONNECTIONS: u32 = 32;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first (uvicorn stops its workers on it), then make sure.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Default, Clone)]
struct Wrk {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    requests: u64,
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(base: &str, tokens: &Path, secs: u64) -> Wrk {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/seed-stack/heartbeat.lua");
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .env("TOKENS", tokens)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut w = Wrk::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Requests/sec:", r] => w.rate = r.parse().unwrap_or(0.0),
            ["50%", v] => w.p50_ms = to_ms(v),
            ["99%", v] => w.p99_ms = to_ms(v),
            ["Latency", _avg, _stdev, max, ..] => w.max_ms = to_ms(max),
            ["Non-2xx", "or", "3xx", "responses:", n] => w.errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                w.errors += rest
                    .iter()
                    .filter_map(|s| s.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            [n, "requests", "in", ..] => w.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    assert!(
        w.rate > 0.0,
        "wrk printed no rate:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w
}

/// The seed's stack on `db_url` (SQLAlchemy URL): seeded, served by 2 uvicorn workers, hit.
fn seed_stack(db_url: &str, devices: usize, secs: u64, dir: &Path) -> Wrk {
    let python = std::env::var("CERTHUB_SEEDSTACK_PYTHON")
        .unwrap_or_else(|_| "/tmp/seedstack/bin/python".into());
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/seed-stack");
    let run = |args: &[&str]| {
        let out = Command::new(&python)
            .args(args)
            .current_dir(&here)
            .env("REF_DB", db_url)
            .output()
            .expect("the seed stack's python (scripts/seed-stack.sh)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["fastapi_ref.py", "seed", &devices.to_string()]);
    let tokens = run(&[
        "-c",
        &format!(
            "import fastapi_ref; print('\\n'.join(fastapi_ref.token(i) for i in range(1, {devices} + 1)))"
        ),
    ]);
    let file = dir.join("seed-tokens.txt");
    std::fs::write(&file, tokens).unwrap();
    let port = free_port();
    let uvicorn = PathBuf::from(&python).with_file_name("uvicorn");
    let server = Proc(
        Command::new(uvicorn)
            .args([
                "fastapi_ref:app",
                "--workers",
                "2",
                "--port",
                &port.to_string(),
                "--log-level",
                "warning",
            ])
            .current_dir(&here)
            .env("REF_DB", db_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    std::thread::sleep(Duration::from_secs(2));
    let base = format!("http://127.0.0.1:{port}");
    wrk(&base, &file, 2.min(secs));
    let w = wrk(&base, &file, secs);
    drop(server);
    w
}

struct CertHubRun {
    wrk: Wrk,
    cpu_us_per_beat: f64,
}

async fn certhub(db_url: &str, devices: usize, secs: u64, dir: &Path) -> CertHubRun {
    let command = || {
        let mut c = Command::new(BIN);
        c.current_dir(dir)
            .env("CERTHUB_DATA_DIR", dir.join("data"))
            .env("CERTHUB_DATABASE_URL", db_url)
            .env("CERTHUB_LOG_LEVEL", "warn")
            .env("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "1000000")
            .env("CERTHUB_DEVICE_AUTH_PER_MINUTE", "1000000");
        c
    };
    let token = support::create_user(command(), "bench@escritorio.com.br", "Bench", "ADMIN");
    let port = free_port();
    let server = Proc(
        command()
            .arg("serve")
            .env("CERTHUB_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let admin = support::activate(&client, &base, &token, "bench@escritorio.com.br", PW).await;
    // Provision and pair the devices, 16 at a time.
    let mut tokens = Vec::with_capacity(devices);
    for chunk in (0..devices).collect::<Vec<_>>().chunks(16) {
        let mut tasks = Vec::new();
        for i in chunk {
            let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
            let i = *i;
            tasks.push(tokio::spawn(async move {
                let d: Value = client
                    .post(format!("{base}/api/v1/admin/devices"))
                    .bearer_auth(&admin)
                    .json(&json!({"hostname": format!("PC-{i:04}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let key = certhub::crypto::DeviceSecretKey::generate();
                let auth: Value = client
                    .post(format!("{base}/api/v1/agent/auth"))
                    .json(&json!({"device_id": d["id"], "device_token": d["device_token"], "public_key": key.public_key().to_base64()}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                auth["access_token"].as_str().expect("DEVICE token").to_owned()
            }));
        }
        for t in tasks {
            tokens.push(t.await.unwrap());
        }
    }
    let file = dir.join("certhub-tokens.txt");
    std::fs::write(&file, tokens.join("\n")).unwrap();
    wrk(&base, &file, 2.min(secs));
    let pid = server.0.id().to_string();
    let before = process_ticks(&pid);
    let w = wrk(&base, &file, secs);
    let ticks = process_ticks(&pid).saturating_sub(before);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_us_per_beat = ticks as f64 / hz * 1e6 / (w.requests.max(1) as f64);
    drop(server);
    CertHubRun {
        wrk: w,
        cpu_us_per_beat,
    }
}

/// The ceiling's server: actix-web answering the same request with a fixed JSON body, no work,
/// two workers as CertHub has here. It runs in a child process of this bench (`--hello PORT`),
/// as CertHub and the seed stack do, so nothing of the bench's own runtime shares its process.
fn hello_server(port: u16) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().route(
                "/api/v1/agent/heartbeat",
                // It reads the body as CertHub does: a handler that leaves it unread makes
                // actix-web close the connection after each answer, and wrk reconnect.
                web::post().to(|_body: web::Bytes| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(r#"{"server_time":"2026-12-02T17:45:00Z"}"#)
                }),
            )
        })
        .workers(2)
        .bind(("127.0.0.1", port))
        .unwrap()
        .run()
        .await
        .unwrap();
    });
}

/// The ceiling: the same client against [`hello_server`].
fn hello(secs: u64, dir: &Path) -> Wrk {
    let port = free_port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--hello", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    let file = dir.join("hello-tokens.txt");
    std::fs::write(&file, "x").unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wrk(&base, &file, 2.min(secs));
    let w = wrk(&base, &file, secs);
    let _ = child.kill();
    let _ = child.wait();
    w
}

fn row(label: &str, w: &Wrk) {
    println!(
        "| {label} | {:.0}/s | {:.2} / {:.2} / {:.1} ms | {} |",
        w.rate, w.p50_ms, w.p99_ms, w.max_ms, w.errors
    );
}

fn main() {
    support::bench_main("--hello", hello_server, run);
}

async fn run() {
    let secs: u64 = var("CERTHUB_BENCH_SECS", 10);
    let devices: usize = var("CERTHUB_BENCH_DEVICES", 1000);
    let dir = tempfile::tempdir().unwrap();
    println!("wrk -t1 -c{CONNECTIONS} -d{secs}s, {devices} devices, on this machine, one run\n");
    let ceiling = hello(secs, dir.path());

    let mut results = Vec::new();
    // SQLite
    let seed_db = format!("sqlite:///{}", dir.path().join("seedstack.db").display());
    let seed = seed_stack(&seed_db, devices, secs, dir.path());
    let ours_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&ours_dir).unwrap();
    let url = format!("sqlite://{}", ours_dir.join("data/certhub.db").display());
    let ours = certhub(&url, devices, secs, &ours_dir).await;
    results.push(("SQLite", seed, ours));

    // PostgreSQL
    if let (Some(seed_db), Some(ours_db)) = (
        support::ThrowawayDb::create("seedstack"),
        support::ThrowawayDb::create("certhub_hb"),
    ) {
        let seed_url = format!(
            "{}/{}",
            seed_db
                .server()
                .replacen("postgres://", "postgresql+psycopg2://", 1),
            seed_db.name
        );
        let seed = seed_stack(&seed_url, devices, secs, dir.path());
        let ours_dir = dir.path().join("postgres");
        std::fs::create_dir_all(&ours_dir).unwrap();
        let ours = certhub(&ours_db.url(), devices, secs, &ours_dir).await;
        results.push(("PostgreSQL", seed, ours));
    }

    println!("| run | heartbeats/s | p50 / p99 / max | errors |");
    println!("|---|---|---|---|");
    row("actix-web hello-world (ceiling)", &ceiling);
    for (db, seed, ours) in &results {
        row(&format!("seed stack, {db}"), seed);
        row(&format!("CertHub, {db}"), &ours.wrk);
    }
    println!();
    for (db, seed, ours) in &results {
        println!(
            "{db}: CertHub / seed stack = {:.1}x; ceiling / CertHub = {:.2}x; CertHub CPU per heartbeat {:.0} us",
            ours.wrk.rate / seed.rate,
            ceiling.rate / ours.wrk.rate,
            ours.cpu_us_per_beat
        );
    }
}
