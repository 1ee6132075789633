//! One office for the black-box tests: certificates in its folder (ingested by the command line
//! before the server starts), the server, an ADMIN and a VIEW logged in; and the calls that
//! provision and pair devices and walk install jobs through their states.
//!
//! ```ignore
//! let o = office(&db).await; // EMPRESA X LTDA, admin@ and view@escritorio.com.br
//! let o = Office::builder()
//!     .certificate("PADARIA BOA senha_abc123.pfx", "ecnpj-octet-legacy.pfx")
//!     .user("dev@escritorio.com.br", "DEV")
//!     .user_in(2, "admin@outro.com.br", "ADMIN")
//!     .env(&[("CERTHUB_LISTEN", "127.0.0.1:0")])
//!     .start(&db)
//!     .await;
//! let pc = o.device("PC-01", true).await; // provisioned, authenticated, with an X25519 key
//! let (installation, thumbprint) = o.installed(&pc).await;
//! ```

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use certhub::crypto::DeviceSecretKey;
use serde_json::{Value, json};

use super::{Backend, Session, TestApp, TestDb, eventually, fixture, ingest, spawn_app_with};

/// Every fixture user's password.
const PW: &str = "SenhaForte123!";

/// The office's usual certificate: EMPRESA X LTDA (e-CNPJ 11.222.333/0001-81), its password
/// (1234) in its file name.
pub const EMPRESA_X: (&str, &str) = ("EMPRESA X LTDA Senha 1234.pfx", "ecnpj-aes.pfx");

/// The office's folder, `certificados` in the test's directory, with `files` (file name, maybe
/// in a subfolder, and fixture in `tests/fixtures/pfx`) written into it. Nothing is ingested.
pub fn certificates_folder(db: &TestDb, files: &[(&str, &str)]) -> PathBuf {
    let root = db.dir().join("certificados");
    std::fs::create_dir_all(&root).unwrap();
    for (name, fixture_name) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, fixture(fixture_name)).unwrap();
    }
    root
}

/// A UUID as an SQL literal: SQLite keeps UUIDs as 16-byte blobs, PostgreSQL as `uuid`.
pub fn uuid_sql(db: &TestDb, id: &str) -> String {
    match db.backend {
        Backend::Sqlite => format!("X'{}'", id.replace('-', "")),
        Backend::Postgres => format!("'{id}'"),
    }
}

/// How many audit rows have `action`.
pub async fn audits(db: &TestDb, action: &str) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM audit_log WHERE action = '{action}'"
    ))
    .await
}

/// The one-time payload token of a claim's answer.
pub fn token_of(claim: &Value) -> String {
    claim["payload_token"].as_str().unwrap().to_owned()
}

/// A provisioned device's DEVICE access token (`POST /api/v1/agent/auth`), registering
/// `public_key` (base64 X25519) when given.
pub async fn device_jwt(app: &TestApp, id: &str, token: &str, public_key: Option<&str>) -> String {
    let mut body = json!({"device_id": id, "device_token": token});
    if let Some(key) = public_key {
        body["public_key"] = json!(key);
    }
    let res = app
        .send("POST", "/api/v1/agent/auth", Some(body), None, None)
        .await;
    assert_eq!(res.status(), 200);
    let auth: Value = res.json().await.unwrap();
    auth["access_token"].as_str().unwrap().to_owned()
}

/// The id of the certificate named `name` in the catalogue (`?status=all`) as `token` sees it.
pub async fn cert_id(app: &TestApp, token: &str, name: &str) -> String {
    let (_, body, _) = app
        .call_json("GET", "/api/v1/certificados?status=all", None, token)
        .await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {body}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A device provisioned by the ADMIN and authenticated as its agent.
pub struct Device {
    pub id: String,
    pub key: DeviceSecretKey,
    pub jwt: String,
}

/// What the office is made of; [`OfficeBuilder::start`] makes it.
pub struct OfficeBuilder {
    files: Vec<(String, &'static str)>,
    users: Vec<(i64, String, &'static str)>,
    env: Vec<(String, String)>,
}

impl OfficeBuilder {
    /// One more file in the folder (besides [`EMPRESA_X`]): its name and its fixture.
    pub fn certificate(mut self, file_name: &str, fixture: &'static str) -> Self {
        self.files.push((file_name.to_owned(), fixture));
        self
    }

    /// One more user of office 1, logged in after the ADMIN and the VIEW: [`Office::user`].
    pub fn user(self, email: &str, role: &'static str) -> Self {
        self.user_in(1, email, role)
    }

    /// One more user, of office `org` (created if needed).
    pub fn user_in(mut self, org: i64, email: &str, role: &'static str) -> Self {
        self.users.push((org, email.to_owned(), role));
        self
    }

    /// Extra environment for the server.
    pub fn env(mut self, env: &[(&str, &str)]) -> Self {
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Ingests the folder, starts the server and logs the users in.
    pub async fn start(self, db: &TestDb) -> Office {
        let mut files = vec![EMPRESA_X];
        files.extend(self.files.iter().map(|(name, f)| (name.as_str(), *f)));
        let root = certificates_folder(db, &files);
        ingest(db, &root, &[]);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let app = spawn_app_with(db, &env).await;
        let admin = app
            .onboard(db, "admin@escritorio.com.br", "ADMIN", PW)
            .await;
        let view = app.onboard(db, "view@escritorio.com.br", "VIEW", PW).await;
        let mut users = Vec::new();
        for (org, email, role) in self.users {
            let session = app.onboard_in(db, org, &email, role, PW).await;
            users.push((email, session));
        }
        let mut o = Office {
            app,
            admin,
            view,
            view_id: String::new(),
            cert: String::new(),
            users,
            bodies: Mutex::new(Vec::new()),
        };
        let (_, me) = o.call("GET", "/api/v1/auth/me", None, &o.view.access).await;
        let (_, certs) = o
            .call("GET", "/api/v1/certificados", None, &o.view.access)
            .await;
        o.view_id = me["id"].as_str().unwrap().to_owned();
        o.cert = certs["items"][0]["id"].as_str().unwrap().to_owned();
        o
    }
}

/// A running office: see the module's documentation.
pub struct Office {
    pub app: TestApp,
    pub admin: Session,
    pub view: Session,
    pub view_id: String,
    /// The first certificate the VIEW sees (EMPRESA X LTDA, when it is the only one).
    pub cert: String,
    /// The builder's extra users, by e-mail.
    users: Vec<(String, Session)>,
    /// Every response body [`Office::call`] saw, to look for leaked secrets.
    pub bodies: Mutex<Vec<String>>,
}

/// [`Office::builder`] with nothing added.
pub async fn office(db: &TestDb) -> Office {
    Office::builder().start(db).await
}

/// [`office`] with extra server environment.
pub async fn office_with(db: &TestDb, env: &[(&str, &str)]) -> Office {
    Office::builder().env(env).start(db).await
}

impl Office {
    pub fn builder() -> OfficeBuilder {
        OfficeBuilder {
            files: Vec::new(),
            users: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The session of a user the builder added.
    pub fn user(&self, email: &str) -> &Session {
        self.users
            .iter()
            .find(|(e, _)| e == email)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("{email} is not a user of this office"))
    }

    /// A JSON call with a bearer token: the status and the body (`Null` when not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> (u16, Value) {
        let (status, json, text) = self.app.call_json(method, path, body, token).await;
        self.bodies.lock().unwrap().push(text);
        (status, json)
    }

    /// The id of the user logged in as `session`.
    pub async fn user_id(&self, session: &Session) -> String {
        let (_, me) = self
            .call("GET", "/api/v1/auth/me", None, &session.access)
            .await;
        me["id"].as_str().unwrap().to_owned()
    }

    /// The id of the certificate named `name` (any status), as the ADMIN sees it.
    pub async fn cert_id(&self, name: &str) -> String {
        cert_id(&self.app, &self.admin.access, name).await
    }

    /// A device provisioned by the ADMIN (`body` as `POST /api/v1/admin/devices` takes it):
    /// `{id, device_token, enrollment_code, ...}`.
    pub async fn provision_with(&self, body: Value) -> Value {
        let (status, d) = self
            .call(
                "POST",
                "/api/v1/admin/devices",
                Some(body),
                &self.admin.access,
            )
            .await;
        assert_eq!(status, 201, "{d}");
        d
    }

    /// [`Office::provision_with`] a host name only.
    pub async fn provision(&self, hostname: &str) -> Value {
        self.provision_with(json!({"hostname": hostname})).await
    }

    /// The DEVICE access token of a provisioned device, registering no key (a scripted agent).
    pub async fn device_jwt(&self, id: &str, token: &str) -> String {
        device_jwt(&self.app, id, token, None).await
    }

    /// Provisions a device through the admin API and authenticates it, registering a real
    /// X25519 key unless `with_key` is false.
    pub async fn device(&self, hostname: &str, with_key: bool) -> Device {
        let d = self.provision(hostname).await;
        let id = d["id"].as_str().unwrap().to_owned();
        let key = DeviceSecretKey::generate();
        let public_key = with_key.then(|| key.public_key().to_base64());
        let jwt = device_jwt(
            &self.app,
            &id,
            d["device_token"].as_str().unwrap(),
            public_key.as_deref(),
        )
        .await;
        Device { id, key, jwt }
    }

    /// A VIEW asks for the certificate on the device `device_id` (reason SPED): the new job.
    async fn ask(&self, device_id: &str, duration_minutes: Option<i64>) -> Value {
        let mut body = json!({"device_id": device_id, "reason": "SPED"});
        if let Some(m) = duration_minutes {
            body["duration_minutes"] = json!(m);
        }
        let path = format!("/api/v1/certificados/{}/install", self.cert);
        let (status, job) = self
            .call("POST", &path, Some(body), &self.view.access)
            .await;
        assert_eq!(status, 201, "{job}");
        job
    }

    /// An ADMIN approves `id`: the job.
    async fn decide(&self, id: &str) -> Value {
        let path = format!("/api/v1/install-jobs/{id}/approve");
        let (status, job) = self
            .call("POST", &path, Some(json!({})), &self.admin.access)
            .await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// A VIEW asks for the certificate on `device`: `REQUESTED`.
    pub async fn requested_job(&self, device: &Device, duration_minutes: Option<i64>) -> String {
        let job = self.ask(&device.id, duration_minutes).await;
        assert_eq!(job["status"], "REQUESTED");
        job["id"].as_str().unwrap().to_owned()
    }

    /// An ADMIN approves `id`: `PENDING`.
    pub async fn approve(&self, id: &str) {
        let job = self.decide(id).await;
        assert_eq!(job["status"], "PENDING");
    }

    /// A VIEW asks for the certificate on `device`, an ADMIN approves: `PENDING`.
    pub async fn pending_job(&self, device: &Device, duration_minutes: Option<i64>) -> String {
        let id = self.requested_job(device, duration_minutes).await;
        self.approve(&id).await;
        id
    }

    /// VIEW asks for `minutes` on the device `device_id` (one a real agent may serve at once),
    /// ADMIN approves: the job's id.
    pub async fn approved(&self, device_id: &str, minutes: i64) -> String {
        self.approved_for(device_id, Some(minutes)).await
    }

    /// As [`Office::approved`], for `duration_minutes` (`None`: until the day's cleanup).
    pub async fn approved_for(&self, device_id: &str, duration_minutes: Option<i64>) -> String {
        let job = self.ask(device_id, duration_minutes).await;
        let id = job["id"].as_str().unwrap().to_owned();
        self.decide(&id).await;
        id
    }

    pub async fn claim(&self, device: &Device, job: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/claim"),
            None,
            &device.jwt,
        )
        .await
    }

    pub async fn payload(&self, device: &Device, job: &str, token: &str) -> (u16, Value) {
        let path = format!("/api/v1/agent/jobs/{job}/payload?token={token}");
        self.call("GET", &path, None, &device.jwt).await
    }

    pub async fn result(&self, device: &Device, job: &str, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(body),
            &device.jwt,
        )
        .await
    }

    /// A certificate installed on `device` for the VIEW: claim, payload, DONE. Returns the
    /// installation's id and thumbprint.
    pub async fn installed(&self, device: &Device) -> (String, String) {
        let job = self.pending_job(device, None).await;
        let (status, claim) = self.claim(device, &job).await;
        assert_eq!(status, 200, "{claim}");
        let (status, payload) = self.payload(device, &job, &token_of(&claim)).await;
        assert_eq!(status, 200, "{payload}");
        let thumbprint = payload["thumbprint"].as_str().unwrap().to_owned();
        let (status, done) = self
            .result(
                device,
                &job,
                json!({"status": "DONE", "thumbprint": thumbprint}),
            )
            .await;
        assert_eq!(status, 200, "{done}");
        let installation = self.job(&job).await["installation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (installation, thumbprint)
    }

    /// Long-polls as `device` while `act` runs 300 ms later; the jobs it got and how long after
    /// `act` finished they arrived.
    pub async fn poll_during<F: std::future::Future<Output = ()>>(
        &self,
        device: &Device,
        act: F,
    ) -> (Value, Duration) {
        let poll = async {
            let answer = self
                .call("GET", "/api/v1/agent/jobs?wait=10", None, &device.jwt)
                .await;
            (answer, Instant::now())
        };
        let act = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            act.await;
            Instant::now()
        };
        let (((status, list), answered), acted) = tokio::join!(poll, act);
        assert_eq!(status, 200, "{list}");
        (list, answered.saturating_duration_since(acted))
    }

    /// The install job `id`, as the ADMIN sees it.
    pub async fn job(&self, id: &str) -> Value {
        self.call(
            "GET",
            &format!("/api/v1/install-jobs/{id}"),
            None,
            &self.admin.access,
        )
        .await
        .1
    }

    /// The installation `id`, as the ADMIN sees it.
    pub async fn installation(&self, id: &str) -> Value {
        self.call(
            "GET",
            &format!("/api/v1/installations/{id}"),
            None,
            &self.admin.access,
        )
        .await
        .1
    }

    /// Waits for the job to reach `status`; how long it took.
    pub async fn wait_job(&self, id: &str, status: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        let ok = eventually(timeout, || async { self.job(id).await["status"] == status }).await;
        assert!(ok, "job {id} not {status}: {}", self.job(id).await);
        start.elapsed()
    }

    /// Waits for the installation to be closed; its view.
    pub async fn wait_removed(&self, installation: &str, timeout: Duration) -> Value {
        let ok = eventually(timeout, || async {
            self.installation(installation).await["removed_at"].is_string()
        })
        .await;
        let view = self.installation(installation).await;
        assert!(ok, "installation still open: {view}");
        view
    }
}
