use crate::helpers::*;
use crate::on_both_databases;

on_both_databases! {
    async fn health_is_ok_with_security_headers(db: TestDb) {
        let app = spawn_app(&db).await;
        let res = app.get("/health").await;
        assert_eq!(res.status(), 200);
        let h = res.headers().clone();
        assert_eq!(res.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "ok"}));
        for name in ["x-request-id", "x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy", "cache-control"] {
            assert!(h.contains_key(name), "missing {name}");
        }
        assert_eq!(h["referrer-policy"], "no-referrer");
    }

    async fn errors_have_one_json_shape(db: TestDb) {
        let app = spawn_app(&db).await;
        for (method, path, status) in [("GET", "/no/such/route", 404), ("POST", "/health", 404), ("GET", "/static/missing.css", 404)] {
            let res = app.client.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
            assert_eq!(res.status().as_u16(), status, "{method} {path}");
            assert!(res.headers().contains_key("x-request-id"));
            let body: serde_json::Value = res.json().await.unwrap();
            assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
        }
    }

    async fn access_log_never_prints_query_strings(db: TestDb) {
        let app = spawn_app(&db).await;
        let secret = "tok3n-SECRET-value";
        let res = app.get(&format!("/health?token={secret}")).await;
        assert_eq!(res.status(), 200);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(eventually(std::time::Duration::from_secs(5), || async { app.logs().contains(&id) }).await, "request not logged");
        let logs = app.logs();
        assert!(logs.contains("/health"), "{logs}");
        assert!(!logs.contains(secret), "query string leaked into the log:\n{logs}");
    }

    async fn portal_home_is_served_in_portuguese(db: TestDb) {
        let app = spawn_app(&db).await;
        let res = app.get("/").await;
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        assert!(html.contains("lang=\"pt-BR\"") && html.contains("Cofre de certificados"), "{html}");
        let css = app.get("/static/app.css").await;
        assert_eq!(css.status(), 200);
        assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    }
}

/// PostgreSQL going away turns `/health` into 503 with a reason (SQLite is a local file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_the_database_is_unreachable() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let app = spawn_app(&db).await;
    assert_eq!(app.get("/health").await.status(), 200);
    let admin = postgres_admin_url();
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    {
        use sea_orm::sqlx::{Connection, Executor};
        let mut c = sea_orm::sqlx::PgConnection::connect(&admin).await.unwrap();
        c.execute(sea_orm::sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
    }
    let res = app.get("/health").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["reason"].as_str().unwrap().contains("database"),
        "{body}"
    );
}
