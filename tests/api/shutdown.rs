use std::time::Duration;

use nix::sys::signal::Signal;

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases! {
    async fn sigterm_lets_the_running_job_finish(db: TestDb) {
        let mut app = spawn_app(&db).await;
        let out = db.run(&["queue", "probe", "--millis", "3000"]);
        assert!(out.status.success(), "{out:?}");
        let started = eventually(Duration::from_secs(20), || async {
            db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'QUEUE_PROBE_STARTED'").await == 1
        })
        .await;
        assert!(started, "probe never started; logs:\n{}", app.logs());
        app.signal(Signal::SIGTERM);
        let status = app.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{status:?}\n{}", app.logs());
        let finished = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'QUEUE_PROBE_FINISHED'").await;
        assert_eq!(finished, 1, "the job in flight must finish before exit; logs:\n{}", app.logs());
        assert!(app.logs().contains("shutdown complete"));
        assert!(app.client.get(app.url("/health")).send().await.is_err(), "no requests after shutdown");
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn sigterm_ends_the_live_portal_streams(db: TestDb) {
        let mut app = portal_office(&db).await.into_office().app;
        let (view, _) = session(&app, "view@escritorio.com.br", "SenhaForte123!").await;
        let mut stream = view.get(app.url("/solicitacoes/eventos")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        let started = std::time::Instant::now();
        app.signal(Signal::SIGTERM);
        // The stream ends instead of holding the stop for its whole life.
        while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await {}
        let status = app.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{status:?}\n{}", app.logs());
        assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
    }
}
