use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

/// A real X25519 public key, as the agent sends it.
fn public_key() -> String {
    certhub::crypto::DeviceSecretKey::generate()
        .public_key()
        .to_base64()
}

struct Provisioned {
    id: String,
    token: String,
    code: String,
    install_command: String,
}

async fn provision(app: &TestApp, admin: &str, body: Value) -> Provisioned {
    let res = app
        .send(
            "POST",
            "/api/v1/admin/devices",
            Some(body),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    Provisioned {
        id: body["id"].as_str().unwrap().to_owned(),
        token: body["device_token"].as_str().unwrap().to_owned(),
        code: body["enrollment_code"].as_str().unwrap().to_owned(),
        install_command: body["install_command"].as_str().unwrap().to_owned(),
    }
}

fn pc() -> Value {
    json!({"hostname": "PC-01", "domain": "NETOCMS", "os_version": "Windows 11", "agent_version": "1.0.0"})
}

async fn auth(app: &TestApp, id: &str, token: &str, key: Option<&str>) -> reqwest::Response {
    let mut body = json!({"device_id": id, "device_token": token});
    if let Some(k) = key {
        body["public_key"] = json!(k);
    }
    app.send("POST", "/api/v1/agent/auth", Some(body), None, None)
        .await
}

async fn heartbeat(app: &TestApp, jwt: &str) -> reqwest::Response {
    app.send(
        "POST",
        "/api/v1/agent/heartbeat",
        Some(json!({"agent_version": "1.2.3"})),
        Some(jwt),
        None,
    )
    .await
}

async fn get_device(app: &TestApp, admin: &str, id: &str) -> Value {
    let res = app
        .send(
            "GET",
            &format!("/api/v1/admin/devices/{id}"),
            None,
            Some(admin),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn admin_post(app: &TestApp, admin: &str, id: &str, action: &str) -> reqwest::Response {
    app.send(
        "POST",
        &format!("/api/v1/admin/devices/{id}/{action}"),
        None,
        Some(admin),
        None,
    )
    .await
}

/// Neither the log nor an audit row holds `secret`.
async fn assert_not_leaked(app: &TestApp, db: &TestDb, secret: &str) {
    assert!(
        !app.logs().contains(secret),
        "a secret reached the server log"
    );
    let sql = format!(
        "SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%{secret}%' OR COALESCE(entity_id, '') LIKE '%{secret}%'"
    );
    assert_eq!(db.scalar(&sql).await, 0, "a secret reached the audit log");
}

on_both_databases! {
    async fn provision_auth_heartbeat_and_list(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let me: Value = app.send("GET", "/api/v1/auth/me", None, Some(&view.access), None).await.json().await.unwrap();
        let mut body = pc();
        body["owner_user_id"] = me["id"].clone();
        let d = provision(&app, &admin.access, body).await;
        assert_eq!(d.token.len(), 43, "256-bit token");
        assert_eq!(d.code.len(), 12, "ABCD-EFGH-JK");

        // Stored hashed: never in clear.
        let hash = certhub::crypto::TokenHash::of(&d.token);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM devices WHERE device_token_hash = '{}'", hash.as_str())).await, 1);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM devices WHERE device_token_hash = '{}' OR enrollment_code_hash LIKE '%{}%'", d.token, &d.code[..4])).await, 0);

        // The list shows it with its owner, nothing installed, and no secret.
        let res = app.send("GET", "/api/v1/admin/devices", None, Some(&admin.access), None).await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(!text.contains(&d.token) && !text.contains(&d.code) && !text.contains(hash.as_str()));
        let list: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        let item = &list[0];
        assert_eq!(item["id"], d.id.as_str());
        assert_eq!(item["hostname"], "PC-01");
        assert_eq!(item["owner"]["email"], "view@escritorio.com.br");
        assert_eq!(item["owner"]["nome"], "Pessoa");
        assert_eq!(item["installed"], json!([]));
        assert!(item["last_heartbeat_at"].is_null() && item["public_key"].is_null());

        // Auth, then the heartbeat with the DEVICE token.
        let key = public_key();
        let res = auth(&app, &d.id, &d.token, Some(&key)).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        let jwt = body["access_token"].as_str().unwrap().to_owned();
        let res = heartbeat(&app, &jwt).await;
        assert_eq!(res.status(), 200);
        let hb: Value = res.json().await.unwrap();
        let server_time: chrono::DateTime<chrono::Utc> = hb["server_time"].as_str().unwrap().parse().unwrap();
        assert!((chrono::Utc::now() - server_time).num_seconds().abs() < 30);
        assert_eq!(hb["policy"], json!({
            "cleanup_time": "18:00",
            "timezone": "America/Sao_Paulo",
            "max_lease_hours": 10,
            "poll_interval_seconds": 5,
            "long_poll_seconds": 25,
            "heartbeat_interval_seconds": 60,
        }));
        let item = get_device(&app, &admin.access, &d.id).await;
        assert_eq!(item["agent_version"], "1.2.3");
        assert!(item["last_heartbeat_at"].is_string() && item["last_seen_at"].is_string());
        assert_eq!(item["public_key"], key.as_str());

        // Wrong token and unknown device look alike.
        let wrong = auth(&app, &d.id, "not-the-token", None).await;
        assert_eq!(wrong.status(), 401);
        let wrong: Value = wrong.json().await.unwrap();
        let unknown = auth(&app, &uuid::Uuid::new_v4().to_string(), &d.token, None).await;
        assert_eq!(unknown.status(), 401);
        assert_eq!(unknown.json::<Value>().await.unwrap(), wrong);
        // Both are audited with the real reason, for the admins' eyes only.
        for reason in ["wrong_token", "unknown_device"] {
            let sql = format!("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_AUTH_FAILED' AND meta_json LIKE '%{reason}%'");
            assert_eq!(db.scalar(&sql).await, 1, "{reason}");
        }

        // Users on agent routes, devices on user routes: 403.
        assert_eq!(heartbeat(&app, &admin.access).await.status(), 403);
        assert_eq!(app.send("GET", "/api/v1/admin/devices", None, Some(&jwt), None).await.status(), 403);
        assert_eq!(app.send("GET", "/api/v1/auth/me", None, Some(&jwt), None).await.status(), 403);
        assert_eq!(heartbeat(&app, "garbage").await.status(), 401);

        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_PROVISIONED'").await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_KEY_REGISTERED'").await, 1);
        for secret in [d.token.as_str(), d.code.as_str(), jwt.as_str()] {
            assert_not_leaked(&app, &db, secret).await;
        }
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn block_rotate_and_the_registered_key(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let d = provision(&app, &admin.access, pc()).await;
        let key_a = public_key();
        let key_b = public_key();
        let jwt = device_jwt(&app, &d.id, &d.token, Some(&key_a)).await;

        // The same key again is fine; another one is refused until a rotation.
        assert_eq!(auth(&app, &d.id, &d.token, Some(&key_a)).await.status(), 200);
        assert_eq!(auth(&app, &d.id, &d.token, Some(&key_b)).await.status(), 409);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_KEY_REJECTED'").await, 1);
        assert_eq!(get_device(&app, &admin.access, &d.id).await["public_key"], key_a.as_str());

        // Blocked: the access token stops working at once for anything but its removals (it
        // still renews, for them: tests/api/office_day.rs).
        assert_eq!(admin_post(&app, &admin.access, &d.id, "block").await.status(), 200);
        assert_eq!(get_device(&app, &admin.access, &d.id).await["is_allowed"], false);
        assert_eq!(auth(&app, &d.id, &d.token, None).await.status(), 200);
        assert_eq!(heartbeat(&app, &jwt).await.status(), 403);
        assert_eq!(admin_post(&app, &admin.access, &d.id, "unblock").await.status(), 200);
        assert_eq!(heartbeat(&app, &jwt).await.status(), 200);

        // Rotation: the old token and its access tokens fail, the key must be registered again.
        let res = admin_post(&app, &admin.access, &d.id, "rotate-token").await;
        assert_eq!(res.status(), 200);
        let rotated: Value = res.json().await.unwrap();
        let new_token = rotated["device_token"].as_str().unwrap().to_owned();
        assert_ne!(new_token, d.token);
        assert!(rotated["device"]["public_key"].is_null());
        assert_eq!(auth(&app, &d.id, &d.token, None).await.status(), 401);
        assert_eq!(heartbeat(&app, &jwt).await.status(), 401);
        let jwt2 = device_jwt(&app, &d.id, &new_token, Some(&key_b)).await;
        assert_eq!(heartbeat(&app, &jwt2).await.status(), 200);
        assert_eq!(get_device(&app, &admin.access, &d.id).await["public_key"], key_b.as_str());

        for action in ["DEVICE_BLOCKED", "DEVICE_UNBLOCKED", "DEVICE_TOKEN_ROTATED"] {
            let sql = format!("SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND actor_user_id IS NOT NULL AND ip IS NOT NULL");
            assert_eq!(db.scalar(&sql).await, 1, "{action}");
        }
        for secret in [d.token.as_str(), new_token.as_str(), jwt.as_str()] {
            assert_not_leaked(&app, &db, secret).await;
        }
    }

    async fn enrollment_code_is_single_use_and_expires(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let d = provision(&app, &admin.access, pc()).await;
        let key = public_key();
        // Typed by hand: lower case, spaces instead of dashes.
        let typed = d.code.to_lowercase().replace('-', " ");
        let enroll = |code: String, key: String| {
            let app = &app;
            async move {
                app.send("POST", "/api/v1/agent/enroll",
                    Some(json!({"enrollment_code": code, "public_key": key, "hostname": "PC-01B", "agent_version": "1.0.1"})),
                    None, None).await
            }
        };
        let res = enroll(typed.clone(), key.clone()).await;
        assert_eq!(res.status(), 200);
        let creds: Value = res.json().await.unwrap();
        assert_eq!(creds["device_id"], d.id.as_str());
        let token = creds["device_token"].as_str().unwrap().to_owned();
        assert_ne!(token, d.token, "enrollment issues a fresh token");
        let jwt = device_jwt(&app, &d.id, &token, Some(&key)).await;
        assert_eq!(heartbeat(&app, &jwt).await.status(), 200);
        assert_eq!(auth(&app, &d.id, &d.token, None).await.status(), 401);
        let item = get_device(&app, &admin.access, &d.id).await;
        // The admin's name stays; the PC's own name is kept beside it.
        assert_eq!(item["hostname"], "PC-01");
        assert_eq!(item["reported_hostname"], "PC-01B");
        assert_eq!(item["public_key"], key.as_str());

        // Single use.
        assert_eq!(enroll(typed, key.clone()).await.status(), 410);
        // A fresh code that expired.
        let rotated: Value = admin_post(&app, &admin.access, &d.id, "rotate-token").await.json().await.unwrap();
        let code = rotated["enrollment_code"].as_str().unwrap().to_owned();
        // A key that is not a usable X25519 key is refused before the code is spent.
        assert_eq!(enroll(code.clone(), "AAAA".into()).await.status(), 422);
        // The only device: SQLite keeps UUIDs as blobs, so no `WHERE id = '...'` here.
        db.execute("UPDATE devices SET enrollment_expires_at = '2020-01-01 00:00:00+00:00' WHERE enrollment_code_hash IS NOT NULL").await;
        assert_eq!(enroll(code.clone(), public_key()).await.status(), 410);
        // Unknown and malformed codes get the same answer.
        assert_eq!(enroll("ZZZZ-ZZZZ-ZZ".into(), public_key()).await.status(), 410);
        assert_eq!(enroll("nope".into(), public_key()).await.status(), 410);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_ENROLL_DENIED'").await, 4);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_ENROLLED'").await, 1);
        for secret in [d.code.as_str(), code.as_str(), token.as_str(), &d.code.replace('-', "")] {
            assert_not_leaked(&app, &db, secret).await;
        }
    }

    async fn eleventh_auth_in_a_minute_is_rate_limited(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let d = provision(&app, &admin.access, pc()).await;
        for i in 0..10 {
            assert_eq!(auth(&app, &d.id, &d.token, None).await.status(), 200, "attempt {i}");
        }
        let res = auth(&app, &d.id, &d.token, None).await;
        assert_eq!(res.status(), 429);
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let sql = format!("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_AUTH_RATE_LIMITED' AND entity_id = '{}'", d.id);
        assert_eq!(db.scalar(&sql).await, 1);
        assert_not_leaked(&app, &db, &d.token).await;
    }

    async fn other_offices_and_view_users_cannot_manage_devices(db: TestDb) {
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let other = app.onboard_in(&db, 2, "admin@outro.com.br", "ADMIN", PW).await;
        let other_me: Value = app.send("GET", "/api/v1/auth/me", None, Some(&other.access), None).await.json().await.unwrap();
        let d = provision(&app, &admin.access, pc()).await;

        // Another office: as if the device did not exist.
        let res = app.send("GET", &format!("/api/v1/admin/devices/{}", d.id), None, Some(&other.access), None).await;
        assert_eq!(res.status(), 404);
        for action in ["rotate-token", "block", "unblock"] {
            assert_eq!(admin_post(&app, &other.access, &d.id, action).await.status(), 404, "{action}");
        }
        let list: Value = app.send("GET", "/api/v1/admin/devices", None, Some(&other.access), None).await.json().await.unwrap();
        assert_eq!(list, json!([]));
        // Nor can the owner be a user of another office.
        let mut body = pc();
        body["owner_user_id"] = other_me["id"].clone();
        let res = app.send("POST", "/api/v1/admin/devices", Some(body), Some(&admin.access), None).await;
        assert_eq!(res.status(), 422);

        // VIEW: 403 everywhere on the admin device routes.
        assert_eq!(app.send("GET", "/api/v1/admin/devices", None, Some(&view.access), None).await.status(), 403);
        assert_eq!(app.send("POST", "/api/v1/admin/devices", Some(pc()), Some(&view.access), None).await.status(), 403);
        assert_eq!(app.send("GET", &format!("/api/v1/admin/devices/{}", d.id), None, Some(&view.access), None).await.status(), 403);
        for action in ["rotate-token", "block", "unblock"] {
            assert_eq!(admin_post(&app, &view.access, &d.id, action).await.status(), 403, "{action}");
        }
        // Still working: nothing above changed the device.
        assert_eq!(auth(&app, &d.id, &d.token, None).await.status(), 200);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action IN ('DEVICE_TOKEN_ROTATED', 'DEVICE_BLOCKED', 'DEVICE_UNBLOCKED')").await, 0);
    }

    async fn an_admin_renames_a_device_and_changes_its_owner(db: TestDb) {
        let root = db.dir().join("certificados");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("EMPRESA X LTDA Senha 1234.pfx"), fixture("ecnpj-aes.pfx")).unwrap();
        ingest(&db, &root, &[]);
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let maria = app.onboard(&db, "maria@escritorio.com.br", "VIEW", PW).await;
        let joao = app.onboard(&db, "joao@escritorio.com.br", "VIEW", PW).await;
        let maria_id = app.send("GET", "/api/v1/auth/me", None, Some(&maria.access), None).await.json::<Value>().await.unwrap()["id"].clone();
        let catalogue: Value = app.send("GET", "/api/v1/certificados", None, Some(&maria.access), None).await.json().await.unwrap();
        let cert = catalogue["items"][0]["id"].as_str().unwrap().to_owned();
        let d = provision(&app, &admin.access, pc()).await;
        let patch = |body: Value, token: String| {
            let (app, path) = (&app, format!("/api/v1/admin/devices/{}", d.id));
            async move { app.send("PATCH", &path, Some(body), Some(&token), None).await }
        };
        let request = |token: String| {
            let (app, path) = (&app, format!("/api/v1/certificados/{cert}/install"));
            let body = json!({"device_id": d.id});
            async move { app.send("POST", &path, Some(body), Some(&token), None).await.status().as_u16() }
        };

        // Maria's PC: only she (and ADMIN/DEV) may send certificates to it.
        let res = patch(json!({"hostname": " PC-MARIA ", "owner_user_id": maria_id}), admin.access.clone()).await;
        assert_eq!(res.status(), 200);
        let device: Value = res.json().await.unwrap();
        assert_eq!(device["hostname"], "PC-MARIA");
        assert_eq!(device["owner"]["email"], "maria@escritorio.com.br");
        assert_eq!(request(joao.access.clone()).await, 403);
        assert_eq!(request(maria.access.clone()).await, 201);
        let updated = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_UPDATED' AND meta_json LIKE '%PC-MARIA%'").await;
        assert_eq!(updated, 1);

        // Sending the same values changes and audits nothing; null clears the owner.
        let res = patch(json!({"hostname": "PC-MARIA"}), admin.access.clone()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'DEVICE_UPDATED'").await, 1);
        let res = patch(json!({"owner_user_id": null}), admin.access.clone()).await;
        let device: Value = res.json().await.unwrap();
        assert!(device["owner"].is_null(), "{device}");
        assert_eq!(device["hostname"], "PC-MARIA", "an absent field is left alone");
        assert_eq!(request(joao.access.clone()).await, 201);

        // Bad input and callers.
        for body in [json!({"hostname": "  "}), json!({"owner_user_id": uuid::Uuid::new_v4()})] {
            assert_eq!(patch(body, admin.access.clone()).await.status(), 422);
        }
        assert_eq!(patch(json!({"hostname": "X", "extra": 1}), admin.access.clone()).await.status(), 400);
        assert_eq!(patch(json!({"hostname": "X"}), maria.access.clone()).await.status(), 403);
        let res = app.send("PATCH", &format!("/api/v1/admin/devices/{}", uuid::Uuid::new_v4()), Some(json!({"hostname": "X"})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 404);
        assert!(db.run(&["audit", "verify"]).status.success());
    }
}

#[tokio::test]
async fn the_one_line_install_serves_its_script_and_the_configured_agent() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let exe = db.dir().join("certhub-agent.exe");
    std::fs::write(&exe, b"MZ fake agent").unwrap();
    let app = spawn_app_with(
        &db,
        &[
            ("CERTHUB_AGENT_EXE_FILE", exe.to_str().unwrap()),
            ("CERTHUB_PUBLIC_URL", "http://certhub.escritorio:8010"),
            ("CERTHUB_AGENT_INSTALL_OVER_HTTP", "true"),
        ],
    )
    .await;
    let admin = app
        .onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
        .await;
    let p = provision(&app, &admin.access, pc()).await;
    let code = p.code.as_str();
    assert_eq!(
        p.install_command,
        format!("irm 'http://certhub.escritorio:8010/agent/install.ps1?code={code}' | iex")
    );
    let res = app
        .get(&format!("/agent/install.ps1?code={}", code.to_lowercase()))
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let script = res.text().await.unwrap();
    assert!(
        script.contains("$server = 'http://certhub.escritorio:8010'"),
        "{script}"
    );
    assert!(script.contains(&format!("$code = '{code}'")), "{script}");
    assert!(script.contains("pair --server $server --code $code"));
    assert!(script.contains("$allowHttp = $true"), "{script}");
    // Anything but a code is refused, so nothing can be injected into the script.
    let res = app.get("/agent/install.ps1?code=x';Remove-Item").await;
    assert_eq!(res.status(), 422);
    let res = app.get("/agent/certhub-agent.exe").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"MZ fake agent");
}

on_both_databases! {
    async fn heartbeats_are_kept_in_memory_and_written_by_interval_and_at_stop(db: TestDb) {
        // An interval longer than the test: only the clean stop writes.
        let mut app = spawn_app_with(&db, &[("CERTHUB_DEVICE_CONTACT_FLUSH_SECONDS", "300")]).await;
        let admin = app
            .onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
            .await;
        let d = provision(&app, &admin.access, pc()).await;
        let jwt = device_jwt(&app, &d.id, &d.token, Some(&public_key())).await;
        let id_sql = uuid_sql(&db, &d.id);
        let written = format!(
            "SELECT COUNT(*) FROM devices WHERE last_heartbeat_at IS NOT NULL AND agent_version = '1.2.3' AND id = {id_sql}"
        );
        for _ in 0..20 {
            assert_eq!(heartbeat(&app, &jwt).await.status(), 200);
        }
        // No write per heartbeat; the admin views show memory's fresher contact.
        assert_eq!(db.scalar(&written).await, 0);
        let item = get_device(&app, &admin.access, &d.id).await;
        assert_eq!(item["agent_version"], "1.2.3");
        assert!(
            item["last_heartbeat_at"].is_string() && item["last_seen_at"].is_string(),
            "{item}"
        );
        // A clean stop writes what memory holds.
        app.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(app.wait_exit(std::time::Duration::from_secs(30)).success());
        assert_eq!(db.scalar(&written).await, 1);
    }

    async fn contact_is_flushed_every_interval(db: TestDb) {
        let app = spawn_app_with(&db, &[("CERTHUB_DEVICE_CONTACT_FLUSH_SECONDS", "1")]).await;
        let admin = app
            .onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
            .await;
        let d = provision(&app, &admin.access, pc()).await;
        let jwt = device_jwt(&app, &d.id, &d.token, Some(&public_key())).await;
        assert_eq!(heartbeat(&app, &jwt).await.status(), 200);
        let id_sql = uuid_sql(&db, &d.id);
        let written = eventually(std::time::Duration::from_secs(10), || async {
            db.scalar(&format!(
                "SELECT COUNT(*) FROM devices WHERE last_heartbeat_at IS NOT NULL AND id = {id_sql}"
            ))
            .await
                == 1
        })
        .await;
        assert!(written, "not flushed within the interval");
    }
}
