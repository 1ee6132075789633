use serde_json::json;

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

on_both_databases! {
    async fn seed_walkthrough_login_me_refresh_logout(db: TestDb) {
        let app = spawn_app(&db).await;
        let s = app.onboard(&db, "maria@netocontabilidade.com.br", "ADMIN", PW).await;
        let me = app.send("GET", "/api/v1/auth/me", None, Some(&s.access), None).await;
        assert_eq!(me.status(), 200);
        let me: serde_json::Value = me.json().await.unwrap();
        assert_eq!(me["email"], "maria@netocontabilidade.com.br");
        assert_eq!(me["role_global"], "ADMIN");
        assert!(me.get("password_hash").is_none());

        // Refresh by cookie rotates it.
        let first = s.refresh.clone().expect("refresh cookie");
        let res = app.send("POST", "/api/v1/auth/refresh", None, None, Some(&first)).await;
        assert_eq!(res.status(), 200);
        let second = refresh_cookie_of(&res).expect("rotated cookie");
        assert_ne!(first, second);
        let access2 = res.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(app.send("GET", "/api/v1/auth/me", None, Some(&access2), None).await.status(), 200);

        // Reusing the rotated cookie revokes the whole family, the newest cookie included.
        assert_eq!(app.send("POST", "/api/v1/auth/refresh", None, None, Some(&first)).await.status(), 401);
        assert_eq!(app.send("POST", "/api/v1/auth/refresh", None, None, Some(&second)).await.status(), 401);

        // Logout revokes.
        let s = app.login("maria@netocontabilidade.com.br", PW).await;
        let cookie = refresh_cookie_of(&s).unwrap();
        let res = app.send("POST", "/api/v1/auth/logout", None, None, Some(&cookie)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(app.send("POST", "/api/v1/auth/refresh", None, None, Some(&cookie)).await.status(), 401);

        let actions = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action IN ('LOGIN_OK', 'LOGOUT', 'PASSWORD_SET')").await;
        assert!(actions >= 5, "{actions}");
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn lockout_after_five_failures_even_with_the_right_password(db: TestDb) {
        let app = spawn_app(&db).await;
        app.onboard(&db, "maria@netocontabilidade.com.br", "VIEW", PW).await;
        let unknown = app.login("ninguem@netocontabilidade.com.br", "ERRADA-ERRADA").await;
        assert_eq!(unknown.status(), 401);
        let unknown: serde_json::Value = unknown.json().await.unwrap();
        for _ in 0..5 {
            let res = app.login("maria@netocontabilidade.com.br", "ERRADA-ERRADA").await;
            assert_eq!(res.status(), 401);
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body, unknown, "an unknown e-mail and a wrong password must look alike");
        }
        let res = app.login("maria@netocontabilidade.com.br", PW).await;
        assert_eq!(res.status(), 429);
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry > 0 && retry <= 15 * 60, "{retry}");
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'LOGIN_LOCKED'").await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'LOGIN_FAILED'").await, 6);
    }

    async fn password_set_init_and_policy(db: TestDb) {
        let app = spawn_app_with(&db, &[("CERTHUB_DEV_MODE", "true")]).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let init = |bearer: String| {
            let app = &app;
            async move {
                app.send("POST", "/api/v1/auth/password/set/init", Some(json!({"email": "view@escritorio.com.br"})), Some(&bearer), None).await
            }
        };
        assert_eq!(init(view.access.clone()).await.status(), 403);
        let res = init(admin.access.clone()).await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["ok"], true);
        let token = body["token"].as_str().expect("dev mode returns the token").to_owned();
        assert!(body["link"].as_str().unwrap().ends_with(&token));

        let confirm = |pw: String| {
            let (app, token) = (&app, token.clone());
            async move {
                app.send("POST", "/api/v1/auth/password/set/confirm", Some(json!({"token": token, "new_password": pw})), None, None).await
            }
        };
        for bad in ["curta".to_owned(), "view@escritorio.com.br".to_owned(), "x".repeat(10_000)] {
            let res = confirm(bad).await;
            assert_eq!(res.status(), 422);
            let body = res.text().await.unwrap();
            assert!(!body.contains("xxxxxxxxxx"), "the password must not be echoed");
        }
        // Beyond bcrypt's 72 bytes every byte still counts.
        let long = format!("{}-primeiro-final", "a".repeat(72));
        assert_eq!(confirm(long.clone()).await.status(), 200);
        assert_eq!(confirm(long.clone()).await.status(), 400, "single use");
        assert_eq!(app.login("view@escritorio.com.br", &format!("{}-outro-final", "a".repeat(72))).await.status(), 401);
        assert_eq!(app.login("view@escritorio.com.br", &long).await.status(), 200);
        // Setting a password ended the user's earlier sessions.
        let refresh = view.refresh.unwrap();
        assert_eq!(app.send("POST", "/api/v1/auth/refresh", None, None, Some(&refresh)).await.status(), 401);
    }

    async fn user_administration_rules(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let res = app.send("POST", "/api/v1/admin/users", Some(json!({"email": "Joao@Escritorio.com.br", "nome": "João", "role_global": "VIEW"})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 201);
        let created: serde_json::Value = res.json().await.unwrap();
        let joao = created["user"]["id"].as_str().unwrap().to_owned();
        assert!(created["password_set_link"].as_str().unwrap().contains("/definir-senha?token="));

        // An ADMIN cannot make anyone DEV.
        let res = app.send("PATCH", &format!("/api/v1/admin/users/{joao}"), Some(json!({"role_global": "DEV"})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 403);
        let res = app.send("POST", "/api/v1/admin/users", Some(json!({"email": "d@escritorio.com.br", "nome": "D", "role_global": "DEV"})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 403);

        // The last active ADMIN stays.
        let me: serde_json::Value = app.send("GET", "/api/v1/auth/me", None, Some(&admin.access), None).await.json().await.unwrap();
        let admin_id = me["id"].as_str().unwrap().to_owned();
        for change in [json!({"is_active": false}), json!({"role_global": "VIEW"})] {
            let res = app.send("PATCH", &format!("/api/v1/admin/users/{admin_id}"), Some(change), Some(&admin.access), None).await;
            assert_eq!(res.status(), 409);
        }

        // Changes are audited with before/after; deactivation ends sessions at once.
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let users: serde_json::Value = app.send("GET", "/api/v1/admin/users", None, Some(&admin.access), None).await.json().await.unwrap();
        let view_id = users.as_array().unwrap().iter().find(|u| u["email"] == "view@escritorio.com.br").unwrap()["id"].as_str().unwrap().to_owned();
        let res = app.send("PATCH", &format!("/api/v1/admin/users/{view_id}"), Some(json!({"auto_approve_install_jobs": true, "is_active": false})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(app.send("GET", "/api/v1/auth/me", None, Some(&view.access), None).await.status(), 401);
        assert_eq!(app.send("POST", "/api/v1/auth/refresh", None, None, view.refresh.as_deref()).await.status(), 401);
        let audited = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'USER_UPDATED' AND meta_json LIKE '%\"before\":{%\"is_active\":true%'").await;
        assert_eq!(audited, 1);

        // Another office's user is invisible, whatever id is typed.
        let out = db.command().env("CERTHUB_ORG_ID", "2").args(["admin", "create-user", "--email", "outro@outro.com.br", "--name", "Outro", "--role", "ADMIN"]).output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let other_id = stdout.split('(').nth(1).and_then(|s| s.split(')').next()).unwrap().to_owned();
        let users: serde_json::Value = app.send("GET", "/api/v1/admin/users", None, Some(&admin.access), None).await.json().await.unwrap();
        assert!(users.as_array().unwrap().iter().all(|u| u["org_id"] == 1));
        for id in [other_id, uuid::Uuid::new_v4().to_string()] {
            let res = app.send("PATCH", &format!("/api/v1/admin/users/{id}"), Some(json!({"nome": "x"})), Some(&admin.access), None).await;
            assert_eq!(res.status(), 404, "{id}");
        }
    }

    async fn bad_input_gets_a_clear_4xx_and_writes_nothing(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let before = db.scalar("SELECT COUNT(*) FROM users").await;
        let raw = |body: &'static str| {
            let app = &app;
            let token = admin.access.clone();
            async move {
                app.client.post(app.url("/api/v1/admin/users")).bearer_auth(token).header("content-type", "application/json").body(body).send().await.unwrap()
            }
        };
        let res = raw("{not json").await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "bad_request");
        assert_eq!(raw(r#"{"email": "a@b.com"}"#).await.status(), 400);
        assert_eq!(raw(r#"{"email": "a@b.com", "nome": "A", "role_global": "VIEW", "is_root": true}"#).await.status(), 400);
        assert_eq!(raw(r#"{"email": "not-an-email", "nome": "A", "role_global": "VIEW"}"#).await.status(), 422);
        assert_eq!(raw(r#"{"email": "a@b.com", "nome": "A", "role_global": "ROOT"}"#).await.status(), 422);
        let huge = format!("{{\"email\": \"a@b.com\", \"nome\": \"{}\", \"role_global\": \"VIEW\"}}", "x".repeat(400_000));
        let res = app.client.post(app.url("/api/v1/admin/users")).bearer_auth(&admin.access).header("content-type", "application/json").body(huge).send().await.unwrap();
        assert_eq!(res.status(), 413);
        // Unicode e-mails are fine; an unknown one just fails to log in.
        let res = app.send("POST", "/api/v1/admin/users", Some(json!({"email": "joão@contábil.com.br", "nome": "João", "role_global": "VIEW"})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 201);
        assert_eq!(app.login("ninguém@contábil.com.br", PW).await.status(), 401);
        let secret = "MinhaSenhaSecreta!";
        let res = app.client.post(app.url("/api/v1/auth/login")).header("content-type", "application/json").body(format!(r#"{{"email": "a@b.com", "password": ["{secret}"]}}"#)).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(!res.text().await.unwrap().contains(secret), "values are never echoed");
        assert_eq!(db.scalar("SELECT COUNT(*) FROM users").await, before + 1);
    }
}

/// Besides the per-account lockout, attempts are limited per client IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_limited_per_ip() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app_with(&db, &[("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "3")]).await;
    for i in 0..3 {
        let res = app
            .login(&format!("pessoa{i}@escritorio.com.br"), "ERRADA-ERRADA")
            .await;
        assert_eq!(res.status(), 401);
    }
    let res = app.login("outra@escritorio.com.br", "ERRADA-ERRADA").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}
