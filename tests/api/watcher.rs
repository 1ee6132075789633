//! The folder watcher on real files: copy, overwrite, rename, move in and out, delete, partial
//! copies, subfolders and bad files, with the catalogue following within debounce + 1 s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::on_both_databases;

const AES: &str = "7B3C178DEC16A243F74032D95D4D542955C5A8D3";
const RENEWED: &str = "E29CB172F63C708BF82F2DCCE0C2745EB090A3D4";
const LEGACY: &str = "DB46F02EB4A5795F5608DBE334C1166D44571444";
/// `watcher_debounce_seconds` in these tests.
const DEBOUNCE: Duration = Duration::from_secs(1);

struct Folder {
    root: PathBuf,
    outside: PathBuf,
}

impl Folder {
    fn new(db: &TestDb) -> Self {
        let root = db.dir().join("certificados");
        let outside = db.dir().join("fora");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        Self { root, outside }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

async fn start(db: &TestDb, folder: &Folder, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("CERTHUB_CERTS_ROOT", folder.root.to_str().unwrap()),
        ("CERTHUB_WATCHER_DEBOUNCE_SECONDS", "1"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(db, &env).await;
    // Watching, and the start-up rescan done: changes from here on are the watcher's.
    let ready = eventually(Duration::from_secs(15), || async {
        let logs = app.logs();
        logs.contains("watching the certificates folder")
            && logs.contains("certificates folder reconciled")
    })
    .await;
    assert!(ready, "watcher did not start:\n{}", app.logs());
    app
}

/// Waits until `sql` counts `want` rows; returns how long that took after `since`.
async fn follows(
    db: &TestDb,
    app: &TestApp,
    since: Instant,
    what: &str,
    sql: &str,
    want: i64,
) -> Duration {
    let ok = eventually(Duration::from_secs(20), || async {
        db.scalar(sql).await == want
    })
    .await;
    assert!(
        ok,
        "{what}: `{sql}` never reached {want}; logs:\n{}",
        app.logs()
    );
    let took = since.elapsed();
    eprintln!("watcher: {what} reflected after {took:?}");
    took
}

fn available(sha1: &str) -> String {
    format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{sha1}' AND is_available = true")
}

fn write_now(path: &Path, bytes: &[u8]) -> Instant {
    std::fs::write(path, bytes).unwrap();
    Instant::now()
}

on_both_databases! {
    async fn the_catalogue_follows_the_folder(db: TestDb) {
        let folder = Folder::new(&db);
        let app = start(&db, &folder, &[]).await;
        let mut slowest = Duration::ZERO;

        // Copy.
        let t = write_now(&folder.path("EMPRESA X LTDA Senha 1234.pfx"), &fixture("ecnpj-aes.pfx"));
        slowest = slowest.max(follows(&db, &app, t, "copy", &available(AES), 1).await);

        // Overwrite with the renewal: the old certificate stays, unavailable and superseded.
        let t = write_now(&folder.path("EMPRESA X LTDA Senha 1234.pfx"), &fixture("ecnpj-renewed.pfx"));
        slowest = slowest.max(follows(&db, &app, t, "overwrite", &available(RENEWED), 1).await);
        assert_eq!(db.scalar(&available(AES)).await, 0);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM certificates o JOIN certificates n ON o.superseded_by = n.id WHERE o.sha1 = '{AES}' AND n.sha1 = '{RENEWED}'")).await, 1);

        // Rename inside the folder: the same row follows the file and stays available.
        std::fs::rename(folder.path("EMPRESA X LTDA Senha 1234.pfx"), folder.path("EMPRESA X LTDA - senha 1234.pfx")).unwrap();
        tokio::time::sleep(DEBOUNCE + Duration::from_millis(1500)).await;
        assert_eq!(db.scalar(&available(RENEWED)).await, 1, "{}", app.logs());
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{RENEWED}'")).await, 1);

        // Move out, move back in.
        std::fs::rename(folder.path("EMPRESA X LTDA - senha 1234.pfx"), folder.outside.join("x.pfx")).unwrap();
        let t = Instant::now();
        slowest = slowest.max(follows(&db, &app, t, "move out", &available(RENEWED), 0).await);
        std::fs::rename(folder.outside.join("x.pfx"), folder.path("EMPRESA X LTDA Senha 1234.pfx")).unwrap();
        let t = Instant::now();
        slowest = slowest.max(follows(&db, &app, t, "move in", &available(RENEWED), 1).await);

        // A partial copy: first an unreadable half file, then the rest.
        let legacy = fixture("ecnpj-octet-legacy.pfx");
        let path = folder.path("PADARIA BOA senha_abc123.pfx");
        write_now(&path, &legacy[..legacy.len() / 3]);
        follows(&db, &app, Instant::now(), "partial copy", "SELECT COUNT(*) FROM certificates WHERE name = 'PADARIA BOA' AND parse_error IS NOT NULL", 1).await;
        let t = write_now(&path, &legacy);
        slowest = slowest.max(follows(&db, &app, t, "copy completed", &format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{LEGACY}' AND is_available = true AND parse_error IS NULL AND name = 'PADARIA BOA'"), 1).await);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name = 'PADARIA BOA'").await, 1);

        // Delete.
        std::fs::remove_file(&path).unwrap();
        let t = Instant::now();
        slowest = slowest.max(follows(&db, &app, t, "delete", &available(LEGACY), 0).await);

        // Subfolders and other files are ignored; bad files are recorded and harm nothing.
        let before = db.scalar("SELECT COUNT(*) FROM certificates").await;
        std::fs::write(folder.root.join("sub/OUTRA Senha 1234.pfx"), fixture("ecnpj-aes.pfx")).unwrap();
        std::fs::write(folder.root.join("leia-me.txt"), b"senha 1234").unwrap();
        std::fs::write(folder.path("lixo.pfx"), b"garbage").unwrap();
        std::fs::write(folder.path("DUAS Senha senha123.p12"), fixture("two-keys.p12")).unwrap();
        std::fs::create_dir_all(folder.path("pasta.pfx")).unwrap();
        let t = write_now(&folder.path("JOSE Senha sénha-ção.pfx"), &fixture("ecpf-utf8.pfx"));
        slowest = slowest.max(follows(&db, &app, t, "copy beside bad files", "SELECT COUNT(*) FROM certificates WHERE cert_kind = 'E_CPF' AND is_available = true", 1).await);
        follows(&db, &app, Instant::now(), "bad files", "SELECT COUNT(*) FROM certificates WHERE parse_error IS NOT NULL", 2).await;
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates").await, before + 3, "the subfolder and the directory are ignored");
        assert_eq!(app.get("/health").await.status(), 200);

        let logs = app.logs();
        for secret in ["Senha 1234", "senha_abc123", "senha 1234", "sénha-ção", "senha123"] {
            assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        }
        assert!(db.run(&["audit", "verify"]).status.success());
        eprintln!("watcher: slowest change reflected after {slowest:?} (debounce {DEBOUNCE:?})");
        assert!(slowest <= DEBOUNCE + Duration::from_secs(1), "slowest {slowest:?}");
    }
}

/// A burst of writes to one file becomes one job (deterministic job id + debounce).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_file_is_one_job() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let folder = Folder::new(&db);
    let app = start(&db, &folder, &[]).await;
    let aes = fixture("ecnpj-aes.pfx");
    let path = folder.path("EMPRESA X LTDA Senha 1234.pfx");
    for i in 0..20 {
        // Alternate two contents so each write is a real change.
        let bytes = if i % 2 == 0 { &aes[..] } else { &aes[..100] };
        std::fs::write(&path, bytes).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&path, &aes).unwrap();
    follows(&db, &app, Instant::now(), "burst", &available(AES), 1).await;
    tokio::time::sleep(DEBOUNCE + Duration::from_secs(1)).await;
    let jobs = db
        .scalar("SELECT COUNT(*) FROM audit_log WHERE action IN ('CERT_INGESTED', 'CERT_UPDATED', 'CERT_PARSE_FAILED')")
        .await;
    assert_eq!(
        jobs,
        1,
        "one job for the whole burst; logs:\n{}",
        app.logs()
    );
}

/// Past `watcher_max_events_per_minute`, per-file jobs stop and the minute ends with a full
/// rescan: every file still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_event_cap_a_rescan_catches_up() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let folder = Folder::new(&db);
    let app = start(
        &db,
        &folder,
        &[("CERTHUB_WATCHER_MAX_EVENTS_PER_MINUTE", "2")],
    )
    .await;
    let aes = fixture("ecnpj-aes.pfx");
    // The same certificate under several names is one row: count files through the audit.
    for i in 0..6 {
        std::fs::write(folder.path(&format!("copia {i} Senha 1234.pfx")), &aes).unwrap();
    }
    std::fs::write(
        folder.path("PADARIA BOA senha_abc123.pfx"),
        fixture("ecnpj-octet-legacy.pfx"),
    )
    .unwrap();
    std::fs::write(
        folder.path("JOSE Senha sénha-ção.pfx"),
        fixture("ecpf-utf8.pfx"),
    )
    .unwrap();
    tokio::time::sleep(DEBOUNCE + Duration::from_secs(2)).await;
    let early = db
        .scalar("SELECT COUNT(*) FROM audit_log WHERE action IN ('CERT_INGESTED', 'CERT_UPDATED')")
        .await;
    assert!(early <= 2, "the cap held: {early} jobs ran");
    let ok = eventually(Duration::from_secs(75), || async {
        db.scalar("SELECT COUNT(*) FROM certificates WHERE is_available = true")
            .await
            == 3
    })
    .await;
    assert!(ok, "the rescan did not catch up; logs:\n{}", app.logs());
    assert!(app.logs().contains("rescanning the whole folder"));
}
