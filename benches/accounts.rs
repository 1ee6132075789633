//! Accounts figures for the release binary, to compare later changes against:
//! logins per second (bcrypt cost 12 dominates, by design) and the latency of
//! `GET /api/v1/auth/me` under concurrent load, on SQLite and PostgreSQL.
//!
//! `cargo bench --bench accounts`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
const PW: &str = "SenhaForte123!";
const LOGIN_CLIENTS: usize = 4;
const LOGINS: usize = 40;
const ME_CLIENTS: usize = 16;
const ME_PER_CLIENT: usize = 500;

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

fn command(dir: &std::path::Path, url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("CERTHUB_DATA_DIR", dir.join("data"))
        .env("CERTHUB_DATABASE_URL", url)
        .env("CERTHUB_LOG_LEVEL", "warn")
        .env("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "1000000");
    c
}

fn start(dir: &std::path::Path, url: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = command(dir, url)
        .arg("serve")
        .env("CERTHUB_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn bench(label: &str, dir: &std::path::Path, url: &str) {
    let out = command(dir, url)
        .args([
            "admin",
            "create-user",
            "--email",
            "bench@escritorio.com.br",
            "--name",
            "Bench",
            "--role",
            "VIEW",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .split("token=")
        .nth(1)
        .expect("link")
        .trim()
        .to_owned();
    let server = start(dir, url);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/v1/auth/password/set/confirm", server.base))
        .json(&serde_json::json!({"token": token, "new_password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let login = |client: reqwest::Client, base: String| async move {
        let res = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": "bench@escritorio.com.br", "password": PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<serde_json::Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..LOGIN_CLIENTS {
        let (client, base) = (client.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..LOGINS / LOGIN_CLIENTS {
                login(client.clone(), base.clone()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let logins_per_sec = LOGINS as f64 / started.elapsed().as_secs_f64();

    let access = login(client.clone(), server.base.clone()).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..ME_CLIENTS {
        let (client, base, access) = (client.clone(), server.base.clone(), access.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ME_PER_CLIENT);
            for _ in 0..ME_PER_CLIENT {
                let t = Instant::now();
                let res = client
                    .get(format!("{base}/api/v1/auth/me"))
                    .bearer_auth(&access)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let _ = res.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "{label:<9} logins: {logins_per_sec:>5.1}/s ({LOGIN_CLIENTS} clients, bcrypt cost 12) | GET /auth/me: {:>6.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({ME_CLIENTS} clients)",
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/certhub.db").display());
    bench("sqlite", dir.path(), &url).await;

    let admin = std::env::var("CERTHUB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let psql = |sql: &str| {
        Command::new("psql")
            .arg(&admin)
            .arg("-qc")
            .arg(sql)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !psql("SELECT 1") {
        println!("postgres  SKIPPED: no server at {admin}");
        return;
    }
    let name = format!("certhub_bench_{}", uuid::Uuid::new_v4().simple());
    assert!(psql(&format!("CREATE DATABASE {name}")));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
    bench("postgres", dir.path(), &url).await;
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
