//! What the benches read about a process from `/proc`, shared by the bench binaries.
// Each bench binary includes this module and uses a part of it.
#![allow(dead_code)]

/// A `VmRSS:`/`VmHWM:`-style field of `/proc/<pid>/status`, in KiB.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process (a pid or `self`), in clock ticks.
pub fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// `certhub admin create-user` run by `cmd` (the binary with its environment): the one-time
/// password-set token it prints.
pub fn create_user(mut cmd: std::process::Command, email: &str, name: &str, role: &str) -> String {
    let out = cmd
        .args([
            "admin",
            "create-user",
            "--email",
            email,
            "--name",
            name,
            "--role",
            role,
        ])
        .output()
        .expect("certhub admin create-user");
    assert!(
        out.status.success(),
        "create-user {email}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split("token=")
        .nth(1)
        .expect("a password-set link")
        .trim()
        .to_owned()
}

/// Chooses the password with the one-time `token`, then logs in: the access token.
pub async fn activate(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    email: &str,
    password: &str,
) -> String {
    let res = client
        .post(format!("{base}/api/v1/auth/password/set/confirm"))
        .json(&serde_json::json!({"token": token, "new_password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The value at fraction `p` (0..=1) of `sorted`.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A PostgreSQL database made for one bench run (through `psql`), dropped when this is, even
/// when the run panics.
pub struct ThrowawayDb {
    admin: String,
    pub name: String,
}

impl ThrowawayDb {
    /// The admin URL: `CERTHUB_TEST_POSTGRES_URL`, else the local default.
    pub fn admin_url() -> String {
        std::env::var("CERTHUB_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn psql(admin: &str, sql: &str) -> bool {
        std::process::Command::new("psql")
            .arg(admin)
            .arg("-qc")
            .arg(sql)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// A new database named `<prefix>_<random>`; `None` (and a SKIPPED line) without a server.
    pub fn create(prefix: &str) -> Option<Self> {
        let admin = Self::admin_url();
        if !Self::psql(&admin, "SELECT 1") {
            println!("postgres  SKIPPED: no server at {admin}");
            return None;
        }
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        assert!(Self::psql(&admin, &format!("CREATE DATABASE {name}")));
        Some(Self { admin, name })
    }

    /// The server's URL without a database (`postgres://user@host:port`).
    pub fn server(&self) -> &str {
        &self.admin[..self.admin.rfind('/').unwrap()]
    }

    /// This database's URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server(), self.name)
    }
}

impl Drop for ThrowawayDb {
    fn drop(&mut self) {
        Self::psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A bench's `main`: nothing for cargo's `--list` probe; `FLAG PORT` runs `baseline(PORT)`, a
/// server the bench starts as its own child process (before any runtime exists: actix-web
/// starts its own) to measure against; otherwise `run` on a multi-threaded Tokio runtime.
pub fn bench_main<F: std::future::Future<Output = ()>>(
    flag: &str,
    baseline: fn(u16),
    run: impl FnOnce() -> F,
) {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == flag) {
        baseline(args[i + 1].parse().expect("a port"));
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
