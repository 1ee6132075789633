//! spawn_app: the real `certhub` binary on port 0 with a fresh database per test, on a
//! temporary SQLite file or on a throw-away PostgreSQL database. The fixtures built on it:
//! [`Office`] (an office with its users, devices and jobs), the portal's cookie sessions and
//! [`PortalOffice`], the real agent on a PC of its own ([`agent::Pc`]) and a headless Chromium
//! ([`browser::Browser`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection, Executor};
use tempfile::TempDir;

pub mod agent;
pub mod browser;
mod invariants;
mod office;
mod portal;

pub use invariants::invariants;
pub use office::*;
pub use portal::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_certhub");

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where PostgreSQL tests create their throw-away databases: `CERTHUB_TEST_POSTGRES_URL`, or
/// the local default (`postgres://postgres@127.0.0.1:5432/test`, trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("CERTHUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says once per test binary, past libtest's output capture, that PostgreSQL tests are skipped.
fn report_skip(why: &str) {
    use std::io::Write;
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: every PostgreSQL variant of these tests ({why}). Start PostgreSQL or set CERTHUB_TEST_POSTGRES_URL to run them."
        );
    });
}

/// A fresh, empty database that is removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    dir: TempDir,
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    /// `None` when the backend is PostgreSQL and no server is configured (prints SKIPPED).
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => Some(Self {
                backend,
                url: format!("sqlite://{}", dir.path().join("data/certhub.db").display()),
                dir,
                pg_admin: None,
            }),
            Backend::Postgres => Self::postgres_at(&postgres_admin_url(), dir).await,
        }
    }

    /// A throw-away database on the PostgreSQL server `admin` points at (`None`, with SKIPPED
    /// printed, when it does not answer outside CI).
    pub async fn postgres_at(admin: &str, dir: TempDir) -> Option<Self> {
        let mut conn = match sqlx::PgConnection::connect(admin).await {
            Ok(c) => c,
            Err(e) if in_ci() => panic!("CI requires PostgreSQL at {admin}: {e}"),
            Err(e) => {
                report_skip(&format!("no PostgreSQL at {admin}: {e}"));
                return None;
            }
        };
        let name = format!("certhub_t_{}", uuid::Uuid::new_v4().simple());
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        let base = admin.split('?').next().unwrap();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Some(Self {
            backend: Backend::Postgres,
            url,
            dir,
            pg_admin: Some((admin.to_owned(), name)),
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// On PostgreSQL, runs `sql` as the administrator, with `{db}` replaced by this test's
    /// database name (to take the database away from the server and give it back).
    pub async fn as_postgres_admin(&self, sql: &str) {
        let (admin, name) = self.pg_admin.as_ref().expect("a PostgreSQL test database");
        let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(sql.replace("{db}", name)))
            .await
            .unwrap();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one SQL statement against the database (tampering, inspection).
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                c.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                c.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                    .await
                    .unwrap();
            }
        }
    }

    /// First column of the first row of `sql`, as i64.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// The command line for the binary, pointed at this database.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CERTHUB_LISTEN", "127.0.0.1:0")
            .env("CERTHUB_DATA_DIR", self.data_dir())
            .env("CERTHUB_DATABASE_URL", &self.url)
            .env("CERTHUB_SHUTDOWN_TIMEOUT_SECS", "20");
        cmd
    }

    /// Runs a one-shot subcommand to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().expect("run certhub");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_admin.take() {
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = conn
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running `certhub serve`.
pub struct TestApp {
    pub address: String,
    pub child: Child,
    pub stdout_lines: mpsc::Receiver<String>,
    pub stderr_path: PathBuf,
    pub client: reqwest::Client,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {timeout:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `certhub serve` on `db` with extra environment, and waits until it listens.
pub async fn spawn_app_with(db: &TestDb, env: &[(&str, &str)]) -> TestApp {
    try_spawn_app(db, env, None)
        .await
        .unwrap_or_else(|logs| panic!("server did not start:\n{logs}"))
}

pub async fn spawn_app(db: &TestDb) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Starts the server; `Err(logs)` when it exits instead of listening.
pub async fn try_spawn_app(
    db: &TestDb,
    env: &[(&str, &str)],
    config: Option<&Path>,
) -> Result<TestApp, String> {
    let stderr_path = db
        .dir()
        .join(format!("server-{}.log", uuid::Uuid::new_v4().simple()));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut cmd = db.command();
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("serve").stdout(Stdio::piped()).stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn certhub serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("CertHub listening on ") {
                    let client = reqwest::Client::builder()
                        .danger_accept_invalid_certs(true)
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap();
                    let app = TestApp {
                        address: addr.to_owned(),
                        child,
                        stdout_lines: rx,
                        stderr_path,
                        client,
                    };
                    return Ok(app);
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                return Err(format!(
                    "{}\n{}",
                    seen.join("\n"),
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                ));
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "timeout\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ));
        }
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Defines one test per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($(#[$meta:meta])* async fn $name:ident($db:ident: TestDb) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::helpers::{Backend, TestDb};

            async fn run($db: TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(TestDb::new(Backend::Sqlite).await.unwrap()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = TestDb::new(Backend::Postgres).await {
                    run(db).await
                }
            }
        }
    )*};
}

/// A logged-in user: the access token and the refresh cookie's value.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: Option<String>,
}

pub fn refresh_cookie_of(res: &reqwest::Response) -> Option<String> {
    res.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let value = v.strip_prefix("certhub_refresh=")?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_owned())
    })
}

impl TestApp {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        bearer: Option<&str>,
        refresh: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(c) = refresh {
            req = req.header("cookie", format!("certhub_refresh={c}"));
        }
        req.send().await.expect("request")
    }

    /// A JSON call with a bearer token: the status and the body (`Null` when not JSON), and the
    /// body's text for tests that scan answers for leaks.
    pub async fn call_json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        token: &str,
    ) -> (u16, serde_json::Value, String) {
        let res = self.send(method, path, body, Some(token), None).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (status, json, text)
    }

    /// `POST /api/v1/admin/devices/{device}/{action}` (`rotate-token`, `block`, `unblock`) as
    /// the admin `token`: the status.
    pub async fn device_action(&self, token: &str, device: &str, action: &str) -> u16 {
        let path = format!("/api/v1/admin/devices/{device}/{action}");
        self.call_json("POST", &path, None, token).await.0
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.send(
            "POST",
            "/api/v1/auth/login",
            Some(serde_json::json!({"email": email, "password": password})),
            None,
            None,
        )
        .await
    }

    /// Creates a user with the CLI, sets the password through the API and logs in.
    pub async fn onboard(&self, db: &TestDb, email: &str, role: &str, password: &str) -> Session {
        self.onboard_in(db, 1, email, role, password).await
    }

    /// [`TestApp::onboard`] for a user of office `org`.
    pub async fn onboard_in(
        &self,
        db: &TestDb,
        org: i64,
        email: &str,
        role: &str,
        password: &str,
    ) -> Session {
        let token = create_user_in(db, org, email, role);
        let res = self
            .send(
                "POST",
                "/api/v1/auth/password/set/confirm",
                Some(serde_json::json!({"token": token, "new_password": password})),
                None,
                None,
            )
            .await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let res = self.login(email, password).await;
        assert_eq!(res.status(), 200);
        let refresh = refresh_cookie_of(&res);
        let body: serde_json::Value = res.json().await.unwrap();
        Session {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh,
        }
    }
}

/// `certhub admin create-user`; returns the one-time password-set token.
pub fn create_user(db: &TestDb, email: &str, role: &str) -> String {
    create_user_in(db, 1, email, role)
}

/// `certhub admin create-user` for office `org` (created if needed); returns the token.
pub fn create_user_in(db: &TestDb, org: i64, email: &str, role: &str) -> String {
    let out = db
        .command()
        .env("CERTHUB_ORG_ID", org.to_string())
        .args([
            "admin",
            "create-user",
            "--email",
            email,
            "--name",
            "Pessoa",
            "--role",
            role,
        ])
        .output()
        .expect("run certhub");
    let out = Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(out.status.success(), "{out:?}");
    out.stdout
        .split("token=")
        .nth(1)
        .expect("link")
        .trim()
        .to_owned()
}

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pfx");

/// The bytes of a file in `tests/fixtures/pfx` (`scripts/make-pfx-fixtures.sh` made them).
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// `certhub ingest` of `root`; fails the test if it fails or prints a file-name password.
pub fn ingest(db: &TestDb, root: &Path, args: &[&str]) -> Output {
    let mut cmd = db.command();
    cmd.env("CERTHUB_CERTS_ROOT", root)
        .env("CERTHUB_MAX_PFX_BYTES", "100000")
        .arg("ingest")
        .args(args);
    let out = cmd.output().unwrap();
    let out = Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(out.status.success(), "{out:?}");
    // With their file-name context: random hex in log lines may contain "1234" by chance.
    for secret in ["Senha 1234", "senha_abc123", "Senha 9999"] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} leaked: {out:?}"
        );
    }
    out
}

/// Writes `n` distinct A1 files into `dir` (`EMPRESA {i} LTDA Senha {pw}.pfx`, OpenSSL 3's
/// default encryption), each its own certificate (one shared P-256 key keeps this fast).
pub fn write_pfx_corpus(dir: &Path, n: usize) {
    write_pfx_files(dir, 0..n);
}

/// Files number `range` of the corpus [`write_pfx_corpus`] writes (distinct names, subjects and
/// serial numbers), so later calls add certificates that do not exist yet.
pub fn write_pfx_files(dir: &Path, range: std::ops::Range<usize>) {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
        PrivateKeyChain,
    };
    use sha1::Digest;
    std::fs::create_dir_all(dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let private = PrivateKey::from_der(&key.serialize_der()).unwrap();
    for i in range {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("EMPRESA {i} LTDA"));
        params.serial_number = Some(rcgen::SerialNumber::from_slice(
            &(0x1000_0000u32 + i as u32).to_be_bytes(),
        ));
        let cert = params.self_signed(&key).unwrap();
        let chain = PrivateKeyChain::new(
            sha1::Sha1::digest(cert.der()).to_vec(),
            private.clone(),
            [Certificate::from_der(cert.der()).unwrap()],
        );
        let mut store = KeyStore::new();
        store.add_entry("certhub-test", KeyStoreEntry::PrivateKeyChain(chain));
        let password = format!("pw{i}");
        let der = store
            .writer(&password)
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .encryption_iterations(2048)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .mac_iterations(2048)
            .write()
            .unwrap();
        std::fs::write(
            dir.join(format!("EMPRESA {i} LTDA Senha {password}.pfx")),
            der,
        )
        .unwrap();
    }
}

/// Whether `text` holds the secret `probe`. A probe such as `=1234` (a short password as a
/// logged value) counts only as a whole value, and not as a duration: not in
/// `request_id=1234ab...` (a random id that begins with those digits) nor in
/// `elapsed_ms=1234` (a slow request).
pub fn holds_secret(text: &str, probe: &str) -> bool {
    text.match_indices(probe).any(|(at, _)| {
        if !probe.starts_with('=') {
            return true;
        }
        let runs_on = text[at + probe.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let key: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        !runs_on && !key.starts_with("sm_")
    })
}

#[test]
fn a_short_probe_is_a_whole_value_not_the_start_of_an_id() {
    assert!(holds_secret("password=1234 user=x", "=1234"));
    assert!(holds_secret("password=1234", "=1234"));
    assert!(holds_secret("a=12345678 b=1234\"", "=1234"));
    assert!(!holds_secret("http{request_id=1234ab0c}", "=1234"));
    assert!(!holds_secret("status=200 elapsed_ms=1234 peer=x", "=1234"));
    assert!(holds_secret("x\"1234\"y", "\"1234\""));
}
