use std::time::Duration;

use nix::sys::signal::Signal;

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases! {
    async fn sigkill_during_a_burst_loses_no_committed_audit_row(db: TestDb) {
        let mut app = spawn_app(&db).await;
        let out = db.run(&["queue", "probe", "--millis", "0", "--count", "400"]);
        assert!(out.status.success(), "{out:?}");
        // Watch commits from outside, as a reader would; kill in the middle of the burst.
        let mut observed = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while observed < 60 && std::time::Instant::now() < deadline {
            observed = db.scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log").await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reached = observed >= 60;
        assert!(reached, "burst too slow: {observed} rows; logs:\n{}", app.logs());
        app.signal(Signal::SIGKILL);
        app.wait_exit(Duration::from_secs(10));
        let after = db.scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log").await;
        assert!(after >= observed, "committed rows lost: saw {observed}, now {after}");
        assert!(after < 801, "the kill should land mid-burst");
        let out = db.run(&["audit", "verify"]);
        assert!(out.status.success(), "{out:?}");
        // And the server comes back on the same database, its queue too: the rest of the
        // burst gets processed after the crash.
        let app = spawn_app(&db).await;
        assert_eq!(app.get("/health").await.status(), 200);
        let resumed = eventually(Duration::from_secs(30), || async {
            db.scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log").await > after
        })
        .await;
        assert!(resumed, "the queue did not resume after the crash; logs:\n{}", app.logs());
    }
}

/// apalis' SQLite setup sets `synchronous = OFF` on the connection it uses; none of the
/// application's connections may inherit that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqlite_connection_keeps_synchronous_full() {
    use sea_orm::ConnectionTrait;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let url = db.url.clone();
    let data = db.data_dir();
    let settings = certhub::settings::Settings::load_from(None, |k| match k {
        "CERTHUB_DATABASE_URL" => Some(url.clone()),
        "CERTHUB_DATA_DIR" => Some(data.display().to_string()),
        _ => None,
    })
    .unwrap();
    let state = certhub::startup::prepare(settings).await.unwrap();
    let pool = state.db.get_sqlite_connection_pool();
    let mut conns = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        conns.push(pool.acquire().await.unwrap());
    }
    for c in conns.iter_mut() {
        let (sync,): (i64,) = sea_orm::sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&mut **c)
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL (2)");
        let (mode,): (String,) = sea_orm::sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&mut **c)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
    drop(conns);
    assert!(state.db.execute_unprepared("SELECT 1").await.is_ok());
    // The queue's own file too.
    let queue = state.queue.sqlite_pool().expect("SQLite queue");
    let mut c = queue.acquire().await.unwrap();
    let (sync,): (i64,) = sea_orm::sqlx::query_as("PRAGMA synchronous")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(sync, 2, "queue synchronous must be FULL (2)");
}

on_both_databases! {
    /// Issue 14's reproduction: `certhub serve` on a folder, killed with SIGKILL mid-ingest,
    /// then started again. The killed process's queued scan and the new start-up rescan may
    /// run at once; every file ends up once, and no unchanged file is recorded as updated.
    async fn sigkill_mid_ingest_then_restart_records_no_update_for_an_unchanged_file(db: TestDb) {
        const FILES: i64 = 300;
        let root = db.dir().join("certificados");
        write_pfx_corpus(&root, FILES as usize);
        let root_env = root.to_string_lossy().into_owned();
        let env = [("CERTHUB_CERTS_ROOT", root_env.as_str())];
        let mut app = spawn_app_with(&db, &env).await;
        let ingested = "SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_INGESTED'";
        let mut seen = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while seen == 0 && std::time::Instant::now() < deadline {
            seen = db.scalar(ingested).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        app.signal(Signal::SIGKILL);
        app.wait_exit(Duration::from_secs(10));
        let at_kill = db.scalar(ingested).await;
        assert!(
            at_kill > 0 && at_kill < FILES,
            "the kill should land mid-ingest: {at_kill} of {FILES}; logs:\n{}",
            app.logs()
        );

        let app = spawn_app_with(&db, &env).await;
        let done = eventually(Duration::from_secs(120), || async {
            db.scalar(ingested).await >= FILES
        })
        .await;
        assert!(done, "ingest did not finish after the restart; logs:\n{}", app.logs());
        // Let a second scan (the resumed one, or the start-up one) finish its pass too.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates").await, FILES);
        assert_eq!(db.scalar(ingested).await, FILES, "a file ingested twice");
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_UPDATED'").await,
            0,
            "an unchanged file recorded as updated; logs:\n{}",
            app.logs()
        );
        let out = db.run(&["audit", "verify"]);
        assert!(out.status.success(), "{out:?}");
    }
}
