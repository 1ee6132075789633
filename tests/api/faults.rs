//! The fault loop (issue 14): the real `certhub serve`, killed with SIGKILL at a random moment
//! while an office works (a folder ingest, agents claiming, fetching and reporting installs,
//! early removals and their `REMOVE` jobs, cleanup reports, user and device administration),
//! then started again, many times (a third of the restarts killed again at once, while the
//! start-up rescan overlaps the resumed scan); after every restart the invariants below must hold.
//!
//! Seeded and reproducible: `CERTHUB_FAULT_SEED=<n>` replays a run (the seed is printed, and
//! every failure names it with the iteration); `CERTHUB_FAULT_ITERATIONS` (default 8 per
//! database) bounds it.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

/// splitmix64: small, seedable, and the same on every machine.
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
}

fn seed() -> u64 {
    std::env::var("CERTHUB_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn iterations() -> usize {
    std::env::var("CERTHUB_FAULT_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// Rows still queued or running in the job queue (`certhub` tasks).
async fn queue_open(db: &TestDb) -> i64 {
    let open = "status IN ('Pending', 'Queued', 'Running') AND job_type = 'certhub'";
    match db.backend {
        Backend::Postgres => {
            db.scalar(&format!("SELECT COUNT(*) FROM apalis.jobs WHERE {open}"))
                .await
        }
        Backend::Sqlite => {
            use sea_orm::sqlx::{Connection, Row};
            let path = db.data_dir().join("certhub-queue.db");
            let url = format!("sqlite://{}", path.display());
            let mut conn = sea_orm::sqlx::SqliteConnection::connect(&url)
                .await
                .unwrap();
            let sql = format!("SELECT COUNT(*) FROM Jobs WHERE {open}");
            let row = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            row.get::<i64, _>(0)
        }
    }
}

/// One unit of the office's work, chosen at random; every answer is tolerated except a 5xx.
async fn work(
    o: &Office,
    device: &Device,
    spare: &str,
    rng: &mut Rng,
    n: u64,
) -> Result<(), String> {
    let check = |what: &str, status: u16, body: &Value| {
        if status >= 500 {
            Err(format!("{what}: {status} {body}"))
        } else {
            Ok(())
        }
    };
    match rng.below(5) {
        // An install, end to end, as the agent does it.
        0 | 1 => {
            let (status, job) = o
                .call(
                    "POST",
                    &format!("/api/v1/certificados/{}/install", o.cert),
                    Some(json!({"device_id": device.id, "reason": "SPED"})),
                    &o.view.access,
                )
                .await;
            check("request", status, &job)?;
            let Some(id) = job["id"].as_str() else {
                return Ok(());
            };
            let (status, body) = o
                .call(
                    "POST",
                    &format!("/api/v1/install-jobs/{id}/approve"),
                    Some(json!({})),
                    &o.admin.access,
                )
                .await;
            check("approve", status, &body)?;
            let (status, claim) = o
                .call(
                    "POST",
                    &format!("/api/v1/agent/jobs/{id}/claim"),
                    None,
                    &device.jwt,
                )
                .await;
            check("claim", status, &claim)?;
            if status != 200 {
                return Ok(());
            }
            let (status, payload) = o
                .call(
                    "GET",
                    &format!("/api/v1/agent/jobs/{id}/payload?token={}", token_of(&claim)),
                    None,
                    &device.jwt,
                )
                .await;
            check("payload", status, &payload)?;
            let result = match payload["thumbprint"].as_str() {
                Some(t) if status == 200 => json!({"status": "DONE", "thumbprint": t}),
                _ => json!({"status": "FAILED", "error_code": "PAYLOAD"}),
            };
            let (status, body) = o
                .call(
                    "POST",
                    &format!("/api/v1/agent/jobs/{id}/result"),
                    Some(result),
                    &device.jwt,
                )
                .await;
            check("result", status, &body)
        }
        // An early removal: the REMOVE job, claimed and reported by the agent.
        2 => {
            let (status, open) = o
                .call(
                    "GET",
                    "/api/v1/installations?state=open",
                    None,
                    &o.admin.access,
                )
                .await;
            check("installations", status, &open)?;
            let Some(id) = open["items"][0]["id"].as_str() else {
                return Ok(());
            };
            let (status, job) = o
                .call(
                    "POST",
                    &format!("/api/v1/installations/{id}/remove"),
                    Some(json!({"reason": "fim do expediente"})),
                    &o.admin.access,
                )
                .await;
            check("remove", status, &job)?;
            let Some(job) = job["id"].as_str() else {
                return Ok(());
            };
            let (status, claim) = o
                .call(
                    "POST",
                    &format!("/api/v1/agent/jobs/{job}/claim"),
                    None,
                    &device.jwt,
                )
                .await;
            check("claim remove", status, &claim)?;
            let (status, body) = o
                .call(
                    "POST",
                    &format!("/api/v1/agent/jobs/{job}/result"),
                    Some(json!({"status": "DONE", "key_deleted": true})),
                    &device.jwt,
                )
                .await;
            check("remove result", status, &body)
        }
        // The agent's cleanup report of what it removed.
        3 => {
            let (status, open) = o
                .call("GET", "/api/v1/agent/installations", None, &device.jwt)
                .await;
            check("agent installations", status, &open)?;
            let removed: Vec<Value> = open["installations"]
                .as_array()
                .into_iter()
                .flatten()
                .take(2)
                .map(|i| json!({"thumbprint": i["thumbprint"], "key_deleted": true}))
                .collect();
            let (status, body) = o
                .call(
                    "POST",
                    "/api/v1/agent/cleanup",
                    Some(json!({"mode": "manual", "removed": removed})),
                    &device.jwt,
                )
                .await;
            check("cleanup", status, &body)
        }
        // Administration: a user, and the spare device renamed, blocked and unblocked.
        _ => {
            let (status, body) = o
                .call(
                    "POST",
                    "/api/v1/admin/users",
                    Some(json!({"email": format!("pessoa{n}@escritorio.com.br"),
                                "nome": format!("Pessoa {n}"), "role_global": "VIEW"})),
                    &o.admin.access,
                )
                .await;
            check("create user", status, &body)?;
            let (status, body) = o
                .call(
                    "PATCH",
                    &format!("/api/v1/admin/devices/{spare}"),
                    Some(json!({"hostname": format!("PC-RESERVA-{n}")})),
                    &o.admin.access,
                )
                .await;
            check("rename device", status, &body)?;
            for action in ["block", "unblock"] {
                let (status, body) = o
                    .call(
                        "POST",
                        &format!("/api/v1/admin/devices/{spare}/{action}"),
                        None,
                        &o.admin.access,
                    )
                    .await;
                check(action, status, &body)?;
            }
            Ok(())
        }
    }
}

on_both_databases! {
    async fn sigkill_at_random_moments_breaks_no_invariant(db: TestDb) {
        let seed = seed();
        eprintln!("fault loop on {:?}: CERTHUB_FAULT_SEED={seed}", db.backend);
        let mut rng = Rng(seed);
        let mut o = office(&db).await;
        let device = o.device("PC-01", true).await;
        let spare = o.device("PC-RESERVA", false).await.id;
        let root = db.dir().join("certificados");
        let root_env = root.to_string_lossy().into_owned();
        let env = [("CERTHUB_CERTS_ROOT", root_env.as_str())];
        // The office's first certificate, ingested by the command line, is file 1.
        let mut files: i64 = 1;
        let mut n = 0;
        let mut kills = iterations();
        for iteration in 0..iterations() {
            macro_rules! fail {
                ($($what:tt)*) => {
                    panic!("CERTHUB_FAULT_SEED={seed}, iteration {iteration}: {}", format!($($what)*))
                };
            }
            // New files for the start-up scan to ingest while the work goes on.
            let add = rng.below(150) as usize;
            write_pfx_files(&root, files as usize..files as usize + add);
            files += add as i64;
            o.app = spawn_app_with(&db, &env).await;
            let kill_after = Duration::from_millis(50 + rng.below(1200));
            let mut work_rng = Rng(rng.next());
            let busy = async {
                loop {
                    n += 1;
                    if let Err(e) = work(&o, &device, &spare, &mut work_rng, n).await {
                        return e;
                    }
                }
            };
            if let Ok(e) = tokio::time::timeout(kill_after, busy).await {
                fail!("a server error while it worked: {e}\n{}", o.app.logs());
            }
            o.app.signal(Signal::SIGKILL);
            o.app.wait_exit(Duration::from_secs(10));

            // Back up. A third of the time it is killed again at once, while the start-up
            // rescan and the killed process's resumed scan run side by side.
            o.app = spawn_app_with(&db, &env).await;
            if rng.below(3) == 0 {
                tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
                o.app.signal(Signal::SIGKILL);
                o.app.wait_exit(Duration::from_secs(10));
                kills += 1;
                o.app = spawn_app_with(&db, &env).await;
            }
            // The queue resumes and drains, and everything holds.
            let settled = eventually(Duration::from_secs(60), || async {
                queue_open(&db).await == 0
                    && db
                        .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_INGESTED'")
                        .await
                        >= files
            })
            .await;
            if !settled {
                fail!("the queue did not drain after the restart\n{}", o.app.logs());
            }
            if let Err(e) = invariants(&db, &o, files).await {
                fail!("{e}");
            }
        }
        let done = db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action IN ('INSTALL_DONE', 'REMOVE_DONE')")
            .await;
        eprintln!(
            "fault loop on {:?}: {kills} kills ({} during start-up scans), {n} units of work, {files} files, {done} jobs done",
            db.backend,
            kills - iterations()
        );
    }
}

/// Unmounts the tmpfs a test put under its data directory (before the directory is removed).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system under `dir` to the last byte; the filler file is returned.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 512, 1] {
        let block = vec![0u8; chunk];
        while f.write_all(&block).and_then(|_| f.sync_data()).is_ok() {}
    }
    path
}

/// The disk under SQLite fills up (a small tmpfs as the data directory): writes fail with a
/// clear 507 and change nothing, reads and `/health` keep answering, and once space returns
/// the server carries on; the database passes `PRAGMA integrity_check` and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = db.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(&data)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            !in_ci(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("SKIPPED: the full-disk test needs to mount a tmpfs (root)");
        return;
    }
    let _unmount = Unmount(data.clone());
    let o = office(&db).await;
    let user = |n: u32| json!({"email": format!("nova{n}@escritorio.com.br"), "nome": "Nova", "role_global": "VIEW"});
    let users_before = db.scalar("SELECT COUNT(*) FROM users").await;
    let audit_before = db.scalar("SELECT COUNT(*) FROM audit_log").await;
    let created = "SELECT COUNT(*) FROM audit_log WHERE action = 'USER_CREATED'";
    let created_before = db.scalar(created).await;

    let filler = fill(&data);
    // SQLite reuses the room its WAL already holds: writes go on until that is used up too.
    let mut refused = 0;
    let mut accepted = 0;
    for n in 0..2000 {
        let (status, body) = o
            .call(
                "POST",
                "/api/v1/admin/users",
                Some(user(n)),
                &o.admin.access,
            )
            .await;
        // Near the edge a write may fit again (a refused transaction gives its room back):
        // each answer is a 201 kept whole or a 507 that kept nothing, checked below.
        if status == 201 {
            accepted += 1;
            continue;
        }
        assert_eq!(status, 507, "{body}\n{}", o.app.logs());
        assert_eq!(body["error"], "insufficient_storage", "{body}");
        refused += 1;
        if refused == 3 {
            break;
        }
    }
    assert_eq!(
        refused, 3,
        "the disk never filled up ({accepted} users created)"
    );
    eprintln!("full disk: {accepted} users created in the room left, then 507 ({refused} times)");
    // Long enough for the job queue's worker to fail its heartbeats on the full disk too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = o
        .call("GET", "/api/v1/certificados", None, &o.view.access)
        .await;
    assert_eq!(status, 200, "reads stop on a full disk: {body}");
    assert_eq!(o.app.get("/health").await.status(), 200);

    std::fs::remove_file(&filler).unwrap();
    let (status, body) = o
        .call(
            "POST",
            "/api/v1/admin/users",
            Some(user(9999)),
            &o.admin.access,
        )
        .await;
    assert_eq!(
        status,
        201,
        "writes did not resume: {body}\n{}",
        o.app.logs()
    );
    for line in o
        .app
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
    {
        eprintln!("server: {line}");
    }
    let users = db.scalar("SELECT COUNT(*) FROM users").await;
    assert_eq!(
        users,
        users_before + accepted + 1,
        "a refused user was kept"
    );
    assert_eq!(
        db.scalar(created).await,
        created_before + accepted + 1,
        "an audit row without its change, or the reverse"
    );
    assert!(db.scalar("SELECT COUNT(*) FROM audit_log").await > audit_before);
    // The job queue (its own SQLite file on the same disk) carries on too.
    let rows = db.scalar("SELECT COUNT(*) FROM audit_log").await;
    let out = db.run(&["queue", "probe", "--millis", "0", "--count", "1"]);
    assert!(out.status.success(), "{out:?}");
    let ran = eventually(Duration::from_secs(30), || async {
        db.scalar("SELECT COUNT(*) FROM audit_log").await >= rows + 2
    })
    .await;
    assert!(
        ran,
        "the queue did not run a task after the disk had room again:\n{}",
        o.app.logs()
    );
    assert!(!o.app.logs().contains("panicked"), "{}", o.app.logs());

    use sea_orm::sqlx::{Connection, Row};
    let mut conn = sea_orm::sqlx::SqliteConnection::connect(&db.url)
        .await
        .unwrap();
    let check: String = sea_orm::sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(check, "ok");
    let out = db.run(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}
