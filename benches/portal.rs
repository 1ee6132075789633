//! Portal figures for the release binary, on SQLite and PostgreSQL: how long the server takes to
//! render each logged-in page (ADMIN) for an office with 5,000 certificates, 10,000 install
//! jobs and 100,000 audit rows. The data is written before `certhub serve` starts, through the
//! crate's own entities and `audit::append_many` (a valid hash chain), so it is what the server
//! itself writes. Then a browser-like client logs in through the `/entrar` form and sends, per
//! page, a few warm-up GETs and N sequential GETs; the figure is the round trip on localhost.
//! The first `/auditoria` view walks the whole chain (the server checks it from its last
//! intact checkpoint, kept in memory) and is reported on its own.
//!
//! `cargo bench --bench portal` (PostgreSQL figures when `CERTHUB_TEST_POSTGRES_URL` or the
//! local default server is reachable). Knobs, all optional: `CERTHUB_BENCH_CERTS` (5000),
//! `CERTHUB_BENCH_JOBS` (10000), `CERTHUB_BENCH_AUDIT_ROWS` (100000),
//! `CERTHUB_BENCH_SAMPLES` (50 GETs per page), `CERTHUB_BENCH_KEEP=1` (keep the data
//! directory and the PostgreSQL database, to look at the queries afterwards). Exits non-zero when a page does not answer 200.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certhub::accounts::user::{Users, entity::Column as UserColumn};
use certhub::audit::{self, Actor, AuditAction, Entry};
use certhub::certificates::{catalogue, entity as cert};
use certhub::devices::entity as device;
use certhub::domain::OrgId;
use certhub::jobs::{JobStatus, entity as job, lease::entity as lease};
use certhub::settings::Settings;
use chrono::{Duration as Span, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
const PW: &str = "SenhaForte123!";
const ADMIN: &str = "admin@escritorio.com.br";
const DEVICES: usize = 40;
/// Staff besides the ADMIN (the users page and the audit filter list them all).
const STAFF: usize = 15;
const WARM_UP: usize = 3;
/// Full walks of the chain on request (`/auditoria?verificar=tudo`), each of every row.
const FULL_WALKS: usize = 3;
/// Rows per insert statement (well under SQLite's bound-parameter limit).
const INSERT_CHUNK: usize = 200;
/// Audit entries per transaction.
const AUDIT_CHUNK: usize = 1000;

struct Config {
    certs: usize,
    jobs: usize,
    audit_rows: usize,
    samples: usize,
}

impl Config {
    fn from_env() -> Self {
        fn var(name: &str, default: usize) -> usize {
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
            certs: var("CERTHUB_BENCH_CERTS", 5_000),
            jobs: var("CERTHUB_BENCH_JOBS", 10_000),
            audit_rows: var("CERTHUB_BENCH_AUDIT_ROWS", 100_000),
            samples: var("CERTHUB_BENCH_SAMPLES", 50),
        };
        assert!(c.certs >= 100 && c.samples > 0, "at least 100 certificates");
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

fn command(dir: &Path, url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("CERTHUB_DATA_DIR", dir.join("data"))
        .env("CERTHUB_DATABASE_URL", url)
        .env("CERTHUB_LOG_LEVEL", "warn")
        .env("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "1000000");
    c
}

fn start(dir: &Path, url: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = command(dir, url)
        .arg("serve")
        .env("CERTHUB_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, base }
}

/// A small deterministic generator (SplitMix64): the same office on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.below(256)))
            .collect()
    }

    fn digits(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.below(10) as u32).collect()
    }
}

/// The modulo-11 check digit of CNPJ and CPF numbers.
fn check_digit(nums: &[u32], weights: &[u32]) -> u32 {
    let sum: u32 = nums.iter().zip(weights).map(|(n, w)| n * w).sum();
    match sum % 11 {
        r if r < 2 => 0,
        r => 11 - r,
    }
}

fn cnpj(rng: &mut Rng) -> String {
    let mut n = rng.digits(8);
    n.extend([0, 0, 0, 1]);
    n.push(check_digit(&n, &[5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]));
    n.push(check_digit(&n, &[6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]));
    n.iter().map(|d| d.to_string()).collect()
}

fn cpf(rng: &mut Rng) -> String {
    let mut n = rng.digits(9);
    n.push(check_digit(&n, &[10, 9, 8, 7, 6, 5, 4, 3, 2]));
    n.push(check_digit(&n, &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2]));
    n.iter().map(|d| d.to_string()).collect()
}

const TRADES: &[&str] = &[
    "Padaria",
    "Açougue",
    "Farmácia",
    "Auto Peças",
    "Construtora",
    "Transportadora",
    "Mercado",
    "Clínica",
    "Ótica",
    "Papelaria",
    "Restaurante",
    "Comércio de Tecidos",
    "Distribuidora",
    "Oficina Mecânica",
    "Escritório",
    "Laboratório",
];
const WORDS: &[&str] = &[
    "São Jorge",
    "Pão Quente",
    "Bom Preço",
    "Estrela",
    "Nova Era",
    "Santa Luzia",
    "Irmãos Souza",
    "Boa Vista",
    "Primavera",
    "Aliança",
    "Horizonte",
    "Ipê Amarelo",
    "Vale Verde",
    "Central",
    "União",
    "Progresso",
    "Ribeirão",
    "Três Marias",
    "Canaã",
    "Jequitibá",
];
const SUFFIXES: &[&str] = &["LTDA", "ME", "EIRELI", "S.A.", "EPP", "LTDA ME"];
const FIRST: &[&str] = &[
    "José",
    "Maria",
    "Ana",
    "João",
    "Antônio",
    "Francisca",
    "Carlos",
    "Paulo",
    "Luíza",
    "Márcia",
    "Pedro",
    "Fernanda",
    "Lucas",
    "Juliana",
    "Raimundo",
    "Conceição",
];
const LAST: &[&str] = &[
    "da Silva",
    "dos Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Ribeiro",
    "Carvalho",
    "Araújo",
    "Conceição",
];
const ISSUERS: &[&str] = &[
    "AC SOLUTI Multipla v5",
    "AC SERASA RFB v5",
    "AC Certisign RFB G5",
    "AC VALID RFB v5",
    "AC SAFEWEB RFB v5",
];

fn person(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
}

/// What the seed wrote that the page list needs.
struct Seeded {
    cert_id: Uuid,
    search: String,
    took: Duration,
}

fn pct(rng: &mut Rng) -> u64 {
    rng.below(100)
}

/// Writes the office's certificates, devices, install jobs (with their installations) and
/// audit rows through the crate's entities, before the server starts.
async fn seed(db: &DatabaseConnection, org: OrgId, cfg: &Config) -> Seeded {
    let started = Instant::now();
    let mut rng = Rng(0x5EED_2026);
    let now = Utc::now();
    let admin = Users::find()
        .filter(UserColumn::Email.eq(ADMIN))
        .one(db)
        .await
        .unwrap()
        .expect("admin")
        .id;
    let users: Vec<Uuid> = Users::find()
        .filter(UserColumn::OrgId.eq(org.0))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();

    // Certificates: four in five e-CNPJ, one in a hundred whose file did not open.
    let mut certs = Vec::with_capacity(cfg.certs);
    for i in 0..cfg.certs {
        let id = Uuid::new_v4();
        let created = now - Span::days(rng.below(700) as i64);
        let mut row = cert::ActiveModel {
            id: Set(id),
            org_id: Set(org.0),
            source_path_sealed: Set(None),
            source_path_hash: Set(None),
            file_stem: Set(None),
            pfx_sealed: Set(None),
            password_sealed: Set(None),
            subject: Set(None),
            cn: Set(None),
            issuer: Set(None),
            serial: Set(None),
            not_before: Set(None),
            not_after: Set(None),
            sha1: Set(None),
            key_algorithm: Set(None),
            key_size: Set(None),
            cert_kind: Set(None),
            cnpj: Set(None),
            cpf: Set(None),
            responsible_name: Set(None),
            parse_error: Set(None),
            is_available: Set(true),
            superseded_by: Set(None),
            expiry_alert_days: Set(None),
            file_sha256: Set(Some(rng.hex(32))),
            created_at: Set(created),
            updated_at: Set(created),
            ..Default::default()
        };
        let (name, search) = if i % 100 == 99 {
            let name = format!("{} {} {}", rng.pick(TRADES), rng.pick(WORDS), i);
            row.parse_error = Set(Some("senha incorreta ou ausente".into()));
            (name.clone(), name)
        } else {
            let responsible = person(&mut rng);
            let end = now
                + Span::days(rng.below(460) as i64 - 60)
                + Span::seconds(rng.below(86_400) as i64);
            row.not_after = Set(Some(end));
            row.not_before = Set(Some(end - Span::days(365)));
            row.issuer = Set(Some((*rng.pick(ISSUERS)).to_owned()));
            row.serial = Set(Some(rng.hex(16)));
            row.sha1 = Set(Some(rng.hex(20)));
            row.key_algorithm = Set(Some("RSA".into()));
            row.key_size = Set(Some(2048));
            row.responsible_name = Set(Some(responsible.clone()));
            let (name, cn) = if pct(&mut rng) < 80 {
                let name = format!(
                    "{} {} {}",
                    rng.pick(TRADES),
                    rng.pick(WORDS),
                    rng.pick(SUFFIXES)
                );
                let number = cnpj(&mut rng);
                let cn = format!("{}:{number}", name.to_uppercase());
                row.cert_kind = Set(Some("PJ".into()));
                row.cnpj = Set(Some(number));
                (name, cn)
            } else {
                let number = cpf(&mut rng);
                let cn = format!("{}:{number}", responsible.to_uppercase());
                row.cert_kind = Set(Some("PF".into()));
                row.cpf = Set(Some(number));
                (responsible.clone(), cn)
            };
            row.subject = Set(Some(format!("CN={cn},OU=RFB e-CNPJ A1,O=ICP-Brasil,C=BR")));
            row.cn = Set(Some(cn.clone()));
            (name, format!("{cn} {responsible}"))
        };
        row.name_search = Set(Some(catalogue::name_search(
            &format!("{name} {search}"),
            None,
        )));
        row.name = Set(name);
        certs.push(row);
    }
    let cert_id = match &certs[cfg.certs / 2].id {
        Set(id) => *id,
        _ => unreachable!(),
    };
    let search = match &certs[cfg.certs / 2].name {
        Set(name) => name.split(' ').take(2).collect::<Vec<_>>().join(" "),
        _ => unreachable!(),
    };
    let installable: Vec<Uuid> = certs
        .iter()
        .filter(|c| matches!(c.parse_error, Set(None)))
        .filter_map(|c| match c.id {
            Set(id) => Some(id),
            _ => None,
        })
        .collect();
    insert_chunks(db, certs).await;

    // Devices: most paired, some silent for a while, one blocked.
    let mut devices = Vec::with_capacity(DEVICES);
    let rows: Vec<device::ActiveModel> = (0..DEVICES)
        .map(|i| {
            let id = Uuid::new_v4();
            devices.push(id);
            let seen = now - Span::minutes(rng.below(if i % 4 == 0 { 600 } else { 5 }) as i64);
            device::ActiveModel {
                id: Set(id),
                org_id: Set(org.0),
                hostname: Set(format!("PC-CONTAB-{:02}", i + 1)),
                domain: Set(Some("ESCRITORIO".into())),
                os_version: Set(Some("Windows 11 Pro 23H2".into())),
                agent_version: Set(Some("0.1.0".into())),
                owner_user_id: Set((i % 3 == 0).then(|| users[i % users.len()])),
                device_token_hash: Set(Some(rng.hex(32))),
                token_rotated_at: Set(Some(now - Span::days(30))),
                enrollment_code_hash: Set(None),
                enrollment_expires_at: Set(None),
                public_key: Set(Some(rng.hex(32))),
                is_allowed: Set(i != 7),
                last_seen_at: Set(Some(seen)),
                last_heartbeat_at: Set(Some(seen)),
                created_at: Set(now - Span::days(60)),
                reported_hostname: Set(Some(format!("DESKTOP-{:04X}", i * 7919))),
                retired_at: Set(None),
                uninstalled_at: Set(None),
            }
        })
        .collect();
    insert_chunks(db, rows).await;

    // Install jobs over the past year; the waiting ones are recent (the sweep would expire
    // requests older than `request_ttl_hours`). Every DONE one opened an installation, a few
    // still open.
    let mut jobs = Vec::with_capacity(cfg.jobs);
    let mut leases = Vec::new();
    let mut job_ids = Vec::with_capacity(cfg.jobs);
    for _ in 0..cfg.jobs {
        let status = match pct(&mut rng) {
            0..60 => JobStatus::Done,
            60..68 => JobStatus::Failed,
            68..76 => JobStatus::Denied,
            76..86 => JobStatus::Expired,
            86..93 => JobStatus::Cancelled,
            93..98 => JobStatus::Requested,
            _ => JobStatus::Pending,
        };
        let waiting = matches!(status, JobStatus::Requested | JobStatus::Pending);
        let open = status == JobStatus::Done && leases.len() < 20;
        let created = if waiting || open {
            now - Span::minutes(rng.below(20 * 60) as i64 + 1)
        } else {
            now - Span::minutes(rng.below(365 * 24 * 60) as i64 + 60 * 24)
        };
        let id = Uuid::new_v4();
        job_ids.push(id);
        let cert_id = *rng.pick(&installable);
        let device_id = *rng.pick(&devices);
        let requester = if pct(&mut rng) < 34 {
            admin
        } else {
            *rng.pick(&users)
        };
        let decided = created + Span::minutes(rng.below(30) as i64 + 1);
        let finished = decided + Span::seconds(rng.below(60) as i64 + 2);
        let approved = matches!(
            status,
            JobStatus::Pending | JobStatus::Done | JobStatus::Failed
        );
        let lease_id = (status == JobStatus::Done).then(Uuid::new_v4);
        let thumbprint = rng.hex(20);
        let mut row = job::ActiveModel {
            id: Set(id),
            org_id: Set(org.0),
            job_type: Set("INSTALL".into()),
            cert_id: Set(cert_id),
            device_id: Set(device_id),
            requested_by_user_id: Set(Some(requester)),
            approved_by_user_id: Set(approved.then_some(admin)),
            status: Set(status.as_str().into()),
            reason: Set((pct(&mut rng) < 30).then(|| "Emitir notas fiscais do cliente".into())),
            decision_reason: Set(None),
            duration_minutes: Set(None),
            approved_at: Set(approved.then_some(decided)),
            claimed_at: Set(None),
            started_at: Set(None),
            finished_at: Set(None),
            thumbprint: Set(None),
            error_code: Set(None),
            error_message: Set(None),
            key_storage: Set(None),
            payload_token_hash: Set(None),
            payload_token_expires_at: Set(None),
            payload_token_used_at: Set(None),
            lease_id: Set(lease_id),
            removal_cause: Set(None),
            created_at: Set(created),
            updated_at: Set(if waiting { decided.min(now) } else { finished }),
        };
        match status {
            JobStatus::Done | JobStatus::Failed => {
                row.claimed_at = Set(Some(decided));
                row.started_at = Set(Some(decided));
                row.finished_at = Set(Some(finished));
                row.payload_token_hash = Set(Some(rng.hex(32)));
                row.payload_token_expires_at = Set(Some(decided + Span::minutes(5)));
                row.payload_token_used_at = Set(Some(decided));
                if status == JobStatus::Done {
                    row.thumbprint = Set(Some(thumbprint.clone()));
                    row.key_storage = Set(Some("CNG".into()));
                } else {
                    row.error_code = Set(Some("IMPORT_REFUSED".into()));
                    row.error_message = Set(Some("PFXImportCertStore: 0x80092002".into()));
                }
            }
            JobStatus::Denied => {
                row.decision_reason = Set(Some("Cliente sem contrato ativo".into()));
                row.finished_at = Set(Some(decided));
            }
            JobStatus::Expired | JobStatus::Cancelled => row.finished_at = Set(Some(decided)),
            _ => {}
        }
        jobs.push(row);
        if let Some(lease_id) = lease_id {
            let expires = if open {
                now + Span::hours(3)
            } else {
                finished + Span::hours(4)
            };
            leases.push(lease::ActiveModel {
                id: Set(lease_id),
                org_id: Set(org.0),
                device_id: Set(device_id),
                cert_id: Set(cert_id),
                user_id: Set(Some(requester)),
                job_id: Set(id),
                thumbprint: Set(thumbprint),
                installed_at: Set(finished),
                expires_at: Set(expires),
                removed_at: Set((!open).then(|| expires - Span::minutes(2))),
                removal_mode: Set((!open).then(|| "scheduled".into())),
                key_deleted: Set((!open).then_some(true)),
                created_at: Set(finished),
                overdue_at: Set(None),
            });
        }
    }
    insert_chunks(db, jobs).await;
    insert_chunks(db, leases).await;

    // The audit log: what such an office writes, chained by the crate's own append.
    let mut left = cfg.audit_rows;
    while left > 0 {
        let n = left.min(AUDIT_CHUNK);
        left -= n;
        let entries: Vec<Entry> = (0..n)
            .map(|_| {
                let ip = Some(format!("192.168.0.{}", rng.below(200) + 10));
                let user = Actor::User(*rng.pick(&users));
                let device = Actor::Device(*rng.pick(&devices));
                let job = *rng.pick(&job_ids);
                let cert = *rng.pick(&installable);
                match pct(&mut rng) {
                    0..25 => Entry::new(org, AuditAction::LoginOk, user).ip(ip),
                    25..30 => Entry::new(org, AuditAction::LoginFailed, Actor::System)
                        .meta(json!({"email": "alguem@escritorio.com.br"}))
                        .ip(ip),
                    30..40 => Entry::new(org, AuditAction::InstallRequested, user)
                        .entity("install_job", job)
                        .meta(json!({"cert_id": cert, "job_type": "INSTALL"}))
                        .ip(ip),
                    40..50 => Entry::new(org, AuditAction::InstallApproved, user)
                        .entity("install_job", job)
                        .meta(json!({"from": "REQUESTED", "to": "PENDING"}))
                        .ip(ip),
                    50..60 => Entry::new(org, AuditAction::InstallClaimed, device)
                        .entity("install_job", job)
                        .meta(json!({"from": "PENDING", "to": "IN_PROGRESS"})),
                    60..70 => Entry::new(org, AuditAction::PayloadIssued, device)
                        .entity("install_job", job),
                    70..80 => Entry::new(org, AuditAction::InstallDone, device)
                        .entity("install_job", job)
                        .meta(json!({"from": "IN_PROGRESS", "to": "DONE"})),
                    80..90 => Entry::new(org, AuditAction::CertRemoved18h, device)
                        .entity("certificate", cert)
                        .meta(json!({"mode": "scheduled", "key_deleted": true})),
                    90..95 => Entry::new(org, AuditAction::CertExpiring, Actor::System)
                        .entity("certificate", cert)
                        .meta(json!({"days": 30})),
                    _ => Entry::new(org, AuditAction::CertIngested, Actor::System)
                        .entity("certificate", cert),
                }
            })
            .collect();
        let txn = certhub::db::begin_write(db).await.unwrap();
        audit::append_many(&txn, org, entries).await.unwrap();
        txn.commit().await.unwrap();
    }
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // What autovacuum does on its own within a minute of such a load: planner statistics
        // and the visibility map (index-only scans).
        db.execute_unprepared("VACUUM ANALYZE").await.unwrap();
    }
    Seeded {
        cert_id,
        search,
        took: started.elapsed(),
    }
}

/// Inserts `rows` in one transaction, `INSERT_CHUNK` rows per statement.
async fn insert_chunks<A: ActiveModelTrait + Send>(db: &DatabaseConnection, rows: Vec<A>) {
    let txn = db.begin().await.unwrap();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        A::Entity::insert_many(rows.by_ref().take(INSERT_CHUNK))
            .exec_without_returning(&txn)
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn csrf_of(html: &str) -> String {
    let at =
        html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// One timed GET: the round trip and the body's size; `Err` for anything but 200.
async fn get(b: &reqwest::Client, url: &str) -> Result<(Duration, usize), String> {
    let t = Instant::now();
    let res = b.get(url).send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if status != 200 {
        return Err(format!("{status}"));
    }
    Ok((took, body.len()))
}

/// Runs the bench on one database; returns the number of failed requests.
async fn bench(label: &str, dir: &Path, url: &str, cfg: &Config) -> usize {
    let token = support::create_user(command(dir, url), ADMIN, "Administradora", "ADMIN");
    for i in 0..STAFF {
        let role = if i % 5 == 0 { "DEV" } else { "VIEW" };
        support::create_user(
            command(dir, url),
            &format!("equipe{i:02}@escritorio.com.br"),
            &format!("Equipe {i:02}"),
            role,
        );
    }
    let settings = Settings::load_from(Some(&dir.join("config.toml")), |k| match k {
        "CERTHUB_DATA_DIR" => Some(dir.join("data").display().to_string()),
        "CERTHUB_DATABASE_URL" => Some(url.to_owned()),
        _ => None,
    })
    .unwrap();
    let db = certhub::db::connect(&settings).await.unwrap();
    let seeded = seed(&db, OrgId(settings.org_id), cfg).await;
    db.close().await.unwrap();

    let t = Instant::now();
    let server = start(dir, url);
    let started = t.elapsed();
    let base = server.base.clone();
    let api = reqwest::Client::new();
    let res = api
        .post(format!("{base}/api/v1/auth/password/set/confirm"))
        .json(&json!({"token": token, "new_password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "password set");

    let b = browser();
    let login = b.get(format!("{base}/entrar")).send().await.unwrap();
    let csrf = csrf_of(&login.text().await.unwrap());
    let res = b
        .post(format!("{base}/entrar"))
        .form(&[("csrf", csrf.as_str()), ("email", ADMIN), ("password", PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "portal login");

    println!(
        "\n{label}: {} certificates, {DEVICES} devices, {} users, {} install jobs, {} audit rows; seeded in {:.1} s; server up in {}",
        cfg.certs,
        STAFF + 1,
        cfg.jobs,
        cfg.audit_rows,
        seeded.took.as_secs_f64(),
        ms(started),
    );
    let mut failures = 0;
    // The first look at the audit page walks the whole chain; later ones only new rows.
    match get(&b, &format!("{base}/auditoria")).await {
        Ok((first, _)) => println!(
            "  first /auditoria view (walks the whole chain): {}",
            ms(first)
        ),
        Err(e) => {
            println!("  first /auditoria view: {e}");
            failures += 1;
        }
    }
    let mut walks = Vec::new();
    for _ in 0..FULL_WALKS {
        match get(&b, &format!("{base}/auditoria?verificar=tudo")).await {
            Ok((d, _)) => walks.push(d),
            Err(e) => {
                println!("  /auditoria?verificar=tudo: {e}");
                failures += 1;
            }
        }
    }
    walks.sort();
    if let (Some(lo), Some(hi)) = (walks.first(), walks.last()) {
        println!(
            "  /auditoria?verificar=tudo (full walk on request), {FULL_WALKS} views: {} to {}",
            ms(*lo),
            ms(*hi)
        );
    }

    let mut search = reqwest::Url::parse(&format!("{base}/certificados")).unwrap();
    search.query_pairs_mut().append_pair("q", &seeded.search);
    let pages: Vec<String> = vec![
        "/".into(),
        "/certificados".into(),
        search.as_str().trim_start_matches(base.as_str()).to_owned(),
        "/certificados?status=expiring&dias=30".into(),
        format!("/certificados/{}", seeded.cert_id),
        "/solicitacoes".into(),
        "/solicitacoes?status=REQUESTED".into(),
        "/instalacoes".into(),
        "/dispositivos".into(),
        "/usuarios".into(),
        "/auditoria".into(),
        "/auditoria?action=LOGIN_OK".into(),
        "/auditoria?page=1000".into(),
    ];
    println!(
        "  {:<46} {:>9} {:>9} {:>9} {:>8}   ({} sequential GETs after {WARM_UP} warm-ups; q = {:?})",
        "page", "p50", "p95", "max", "KiB", cfg.samples, seeded.search
    );
    for path in &pages {
        let url = format!("{base}{path}");
        let mut lat = Vec::with_capacity(cfg.samples);
        let mut size = 0;
        let mut error = None;
        for i in 0..WARM_UP + cfg.samples {
            match get(&b, &url).await {
                Ok((d, n)) if i >= WARM_UP => {
                    lat.push(d);
                    size = n;
                }
                Ok(_) => {}
                Err(e) => {
                    error = Some(e);
                    failures += 1;
                    break;
                }
            }
        }
        if let Some(e) = error {
            println!("  {path:<46} FAILED: {e}");
            continue;
        }
        lat.sort();
        let p95 = support::percentile(&lat, 0.95);
        println!(
            "  {path:<46} {:>9} {:>9} {:>9} {:>8.1}{}",
            ms(support::percentile(&lat, 0.50)),
            ms(p95),
            ms(*lat.last().unwrap()),
            size as f64 / 1024.0,
            if p95 > Duration::from_millis(50) {
                "   over 50 ms"
            } else {
                ""
            }
        );
    }
    drop(server);
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    if !warnings.is_empty() {
        println!("  server warnings: {}", warnings.len());
        for w in warnings.iter().take(5) {
            println!("    {w}");
        }
    }
    failures
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cfg = Config::from_env();
    let keep = std::env::var("CERTHUB_BENCH_KEEP").is_ok_and(|v| v == "1");
    let mut failures = 0;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "").unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/certhub.db").display());
    failures += bench("sqlite", dir.path(), &url, &cfg).await;
    if keep {
        println!("  kept: {}", dir.keep().display());
    }

    let admin = std::env::var("CERTHUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    match sea_orm::Database::connect(&admin).await {
        Err(e) => println!("\npostgres SKIPPED: no server at {admin}: {e}"),
        Ok(pg) => {
            let name = format!("certhub_bench_{}", Uuid::new_v4().simple());
            pg.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = admin.split('?').next().unwrap();
            let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("config.toml"), "").unwrap();
            failures += bench("postgres", dir.path(), &url, &cfg).await;
            if keep {
                println!("  kept: {url}");
            } else {
                pg.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .unwrap();
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} requests failed");
        std::process::exit(1);
    }
}
