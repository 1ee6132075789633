//! Start-up figures for the release binary: size, time from exec to the first `200` on
//! `/health` (fresh install: creates the database, runs migrations, generates the master key;
//! and restart on an existing database), and idle resident memory.
//!
//! `cargo bench --bench startup` (PostgreSQL figures when `CERTHUB_TEST_POSTGRES_URL` or the
//! local default server is reachable).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
const RUNS: usize = 10;

fn health_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &std::path::Path, db_url: &str, port: u16) -> (Child, Duration) {
    let started = Instant::now();
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("CERTHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("CERTHUB_DATA_DIR", dir.join("data"))
        .env("CERTHUB_DATABASE_URL", db_url)
        .env("CERTHUB_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !health_ok(port) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    (child, started.elapsed())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(label: &str, mut fresh_db: impl FnMut(&std::path::Path) -> String) {
    let mut fresh = Vec::new();
    let mut restart = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_db(dir.path());
        let port = free_port();
        let (child, t) = start(dir.path(), &url, port);
        fresh.push(t);
        stop(child);
        let (child, t) = start(dir.path(), &url, port);
        restart.push(t);
        std::thread::sleep(Duration::from_secs(2));
        rss.push(rss_kib(child.id()));
        stop(child);
    }
    rss.sort();
    println!(
        "{label:<10} fresh install to /health 200: median {:>6.1} ms, max {:>6.1} ms | restart: median {:>6.1} ms | idle RSS: median {} KiB",
        median(fresh.clone()).as_secs_f64() * 1e3,
        fresh.iter().max().unwrap().as_secs_f64() * 1e3,
        median(restart).as_secs_f64() * 1e3,
        rss[rss.len() / 2],
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let size = std::fs::metadata(BIN).unwrap().len();
    println!("binary {BIN}: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
    bench("sqlite", |dir| {
        format!("sqlite://{}", dir.join("data/certhub.db").display())
    });

    let admin = std::env::var("CERTHUB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let psql = |sql: &str| {
        Command::new("psql")
            .arg(&admin)
            .arg("-qc")
            .arg(sql)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !psql("SELECT 1") {
        println!("postgres   SKIPPED: no server at {admin}");
        return;
    }
    let base = admin[..admin.rfind('/').unwrap()].to_owned();
    let mut names = Vec::new();
    bench("postgres", |_| {
        let name = format!("certhub_bench_{}", uuid::Uuid::new_v4().simple());
        assert!(psql(&format!("CREATE DATABASE {name}")));
        names.push(name.clone());
        format!("{base}/{name}")
    });
    for name in names {
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}
