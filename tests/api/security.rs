//! The security reading's findings (issue 10), each shown closed against the real server.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

fn token_in(link: &str) -> String {
    link.split("token=")
        .nth(1)
        .expect("token in link")
        .to_owned()
}

async fn set_password(app: &TestApp, token: &str, password: &str) -> u16 {
    app.send(
        "POST",
        "/api/v1/auth/password/set/confirm",
        Some(json!({"token": token, "new_password": password})),
        None,
        None,
    )
    .await
    .status()
    .as_u16()
}

async fn link_for(app: &TestApp, admin: &Session, email: &str) -> reqwest::Response {
    app.send(
        "POST",
        "/api/v1/auth/password/set/init",
        Some(json!({"email": email})),
        Some(&admin.access),
        None,
    )
    .await
}

#[tokio::test]
async fn an_admin_cannot_obtain_a_password_link_for_a_dev() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let dev = app.onboard(&db, "dev@escritorio.com.br", "DEV", PW).await;
    let admin = app
        .onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
        .await;
    app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;

    let res = link_for(&app, &admin, "dev@escritorio.com.br").await;
    assert_eq!(res.status(), 403, "{}", res.text().await.unwrap());
    assert_eq!(audits(&db, "PASSWORD_SET_DENIED").await, 1);
    // The DEV's password still works; nothing was issued.
    assert_eq!(app.login("dev@escritorio.com.br", PW).await.status(), 200);

    // An ADMIN still issues links for VIEW and ADMIN accounts, and a DEV for a DEV.
    let res = link_for(&app, &admin, "view@escritorio.com.br").await;
    assert_eq!(res.status(), 200);
    let res = link_for(&app, &dev, "dev@escritorio.com.br").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn only_the_newest_password_link_works_and_none_after_one_is_used() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let admin = app
        .onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
        .await;
    let first = create_user(&db, "view@escritorio.com.br", "VIEW");
    let res = link_for(&app, &admin, "view@escritorio.com.br").await;
    let body: Value = res.json().await.unwrap();
    let second = token_in(body["link"].as_str().unwrap());
    let res = link_for(&app, &admin, "view@escritorio.com.br").await;
    let body: Value = res.json().await.unwrap();
    let third = token_in(body["link"].as_str().unwrap());

    // Issuing a link voided the earlier ones.
    assert_eq!(set_password(&app, &first, "Primeira-senha-1").await, 400);
    assert_eq!(set_password(&app, &second, "Segunda-senha-2").await, 400);
    assert_eq!(set_password(&app, &third, "Terceira-senha-3").await, 200);

    // A used link is spent.
    let res = link_for(&app, &admin, "view@escritorio.com.br").await;
    let a = token_in(res.json::<Value>().await.unwrap()["link"].as_str().unwrap());
    assert_eq!(set_password(&app, &a, "Quarta-senha-44").await, 200);
    assert_eq!(set_password(&app, &a, "Quinta-senha-55").await, 400);
    assert_eq!(
        app.login("view@escritorio.com.br", "Quarta-senha-44")
            .await
            .status(),
        200
    );
}

on_both_databases! {
    async fn concurrent_wrong_passwords_cannot_outrun_the_lockout(db: TestDb) {
        let app = spawn_app(&db).await;
        app.onboard(&db, "maria@escritorio.com.br", "VIEW", PW).await;
        let attempts = (0..20).map(|i| {
            let app = &app;
            async move {
                app.login("maria@escritorio.com.br", &format!("errada-{i}"))
                    .await
                    .status()
                    .as_u16()
            }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let wrong = answers.iter().filter(|s| **s == 401).count();
        let refused = answers.iter().filter(|s| **s == 429).count();
        assert!(wrong <= 5, "{wrong} guesses were verified: {answers:?}");
        assert_eq!(wrong + refused, 20, "{answers:?}");
        let res = app.login("maria@escritorio.com.br", PW).await;
        assert_eq!(res.status(), 429, "the right password is refused while locked");
    }
}

/// A reqwest client whose requests leave from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn agent_auth(
    client: &reqwest::Client,
    app: &TestApp,
    device: &str,
    token: &str,
) -> reqwest::Response {
    client
        .post(app.url("/api/v1/agent/auth"))
        .json(&json!({"device_id": device, "device_token": token}))
        .send()
        .await
        .unwrap()
}

async fn provision(o: &Office, hostname: &str) -> (String, String) {
    let d = o.provision(hostname).await;
    (
        d["id"].as_str().unwrap().to_owned(),
        d["device_token"].as_str().unwrap().to_owned(),
    )
}

on_both_databases! {
    async fn a_stranger_cannot_keep_a_pc_agent_out_and_a_flood_writes_one_audit_row(db: TestDb) {
        let o = office(&db).await;
        let (device, token) = provision(&o, "PC-FISCAL-01").await;
        let stranger = client_from("127.0.0.1");
        let agent = client_from("127.0.0.2");

        // Ten bogus tokens a minute, and many more: the stranger ends on 429...
        let mut statuses = Vec::new();
        for _ in 0..60 {
            statuses.push(agent_auth(&stranger, &o.app, &device, "bogus").await.status().as_u16());
        }
        assert!(statuses.contains(&401) && statuses.contains(&429), "{statuses:?}");
        // ...while the real agent, from its own PC, still gets in.
        let res = agent_auth(&agent, &o.app, &device, &token).await;
        assert_eq!(res.status(), 200, "the real token is not locked out");

        // The flood of refusals answered from memory: one audit row per run, not per request.
        let limited = audits(&db, "DEVICE_AUTH_RATE_LIMITED").await;
        assert!((1..=2).contains(&limited), "{limited} rate-limit rows for 60 calls");
        let failed = audits(&db, "DEVICE_AUTH_FAILED").await;
        assert!(failed <= 11, "{failed} failures audited: only those looked at");

        // Enrollment with bad codes: the per-IP quota, then memory only.
        let before = audits(&db, "DEVICE_AUTH_RATE_LIMITED").await;
        for _ in 0..40 {
            stranger
                .post(o.app.url("/api/v1/agent/enroll"))
                .json(&json!({"enrollment_code": "AAAA-BBBB-CC", "public_key": "x"}))
                .send()
                .await
                .unwrap();
        }
        assert_eq!(audits(&db, "DEVICE_AUTH_RATE_LIMITED").await - before, 1);
        assert!(audits(&db, "DEVICE_ENROLL_DENIED").await <= 10);
    }
}

on_both_databases! {
    async fn a_payload_flood_writes_one_audit_row(db: TestDb) {
        let o = office(&db).await;
        let device = o.device("PC-01", true).await;
        let job = o.pending_job(&device, None).await;
        let (status, claim) = o.claim(&device, &job).await;
        assert_eq!(status, 200, "{claim}");
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(o.payload(&device, &job, "wrong").await.0);
        }
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 25, "{statuses:?}");
        assert_eq!(audits(&db, "PAYLOAD_RATE_LIMITED").await, 1);
    }
}

async fn job_status(o: &Office, job: &str) -> Value {
    let (status, view) = o
        .call(
            "GET",
            &format!("/api/v1/install-jobs/{job}"),
            None,
            &o.admin.access,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn patch_user(o: &Office, id: &str, body: Value) {
    let (status, v) = o
        .call(
            "PATCH",
            &format!("/api/v1/admin/users/{id}"),
            Some(body),
            &o.admin.access,
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

on_both_databases! {
    async fn permission_is_checked_again_when_the_agent_claims_and_downloads(db: TestDb) {
        let o = office(&db).await;
        let device = o.device("PC-01", true).await;

        // The device is given to someone else after the approval: the claim is refused.
        let job = o.pending_job(&device, None).await;
        let other = o.app.onboard(&db, "outra@escritorio.com.br", "VIEW", PW).await;
        let (_, me) = o.call("GET", "/api/v1/auth/me", None, &other.access).await;
        let (status, _) = o
            .call(
                "PATCH",
                &format!("/api/v1/admin/devices/{}", device.id),
                Some(json!({"owner_user_id": me["id"]})),
                &o.admin.access,
            )
            .await;
        assert_eq!(status, 200);
        let (status, body) = o.claim(&device, &job).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(job_status(&o, &job).await["status"], "CANCELLED");
        let (status, _) = o
            .call(
                "PATCH",
                &format!("/api/v1/admin/devices/{}", device.id),
                Some(json!({"owner_user_id": null})),
                &o.admin.access,
            )
            .await;
        assert_eq!(status, 200);

        // The certificate leaves the folder between claim and payload: the download is refused.
        let job = o.pending_job(&device, None).await;
        let (status, claim) = o.claim(&device, &job).await;
        assert_eq!(status, 200, "{claim}");
        db.execute("UPDATE certificates SET is_available = false").await;
        let (status, body) = o.payload(&device, &job, &token_of(&claim)).await;
        assert_eq!(status, 409, "{body}");
        let view = job_status(&o, &job).await;
        assert_eq!(view["status"], "FAILED");
        assert_eq!(view["error_code"], "NOT_PERMITTED");
        db.execute("UPDATE certificates SET is_available = true").await;

        // Expired meanwhile: same.
        let job = o.pending_job(&device, None).await;
        db.execute("UPDATE certificates SET not_after = '2020-01-01T00:00:00+00:00'").await;
        let (status, _) = o.claim(&device, &job).await;
        assert_eq!(status, 409);
        assert_eq!(job_status(&o, &job).await["status"], "CANCELLED");
        let rechecks = db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%server_recheck%'")
            .await;
        assert_eq!(rechecks, 3, "each refusal is audited with its reason");
    }
}

on_both_databases! {
    async fn deactivating_a_user_cancels_their_requests_and_removes_their_certificates(db: TestDb) {
        let o = office(&db).await;
        let device = o.device("PC-01", true).await;
        let (installation, _) = o.installed(&device).await;
        let waiting = o.requested_job(&device, None).await;
        let pending = o.pending_job(&device, None).await;

        patch_user(&o, &o.view_id, json!({"is_active": false})).await;

        assert_eq!(job_status(&o, &waiting).await["status"], "CANCELLED");
        assert_eq!(job_status(&o, &pending).await["status"], "CANCELLED");
        let (status, list) = o.call("GET", "/api/v1/agent/jobs", None, &device.jwt).await;
        assert_eq!(status, 200);
        let jobs = list["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 1, "{list}");
        assert_eq!(jobs[0]["job_type"], "REMOVE");
        assert_eq!(jobs[0]["installation_id"], installation.as_str());
    }
}

on_both_databases! {
    async fn rotating_or_blocking_a_device_cancels_what_was_asked_for_it(db: TestDb) {
        let o = office(&db).await;
        let device = o.device("PC-01", true).await;
        let job = o.pending_job(&device, None).await;
        assert_eq!(o.app.device_action(&o.admin.access, &device.id, "rotate-token").await, 200);
        assert_eq!(job_status(&o, &job).await["status"], "CANCELLED");
        // The DEVICE token minted before the rotation is dead too.
        let (status, _) = o.call("GET", "/api/v1/agent/jobs", None, &device.jwt).await;
        assert_eq!(status, 401);

        let second = o.device("PC-02", true).await;
        let job = o.requested_job(&second, None).await;
        assert_eq!(o.app.device_action(&o.admin.access, &second.id, "block").await, 200);
        assert_eq!(job_status(&o, &job).await["status"], "CANCELLED");
    }
}

on_both_databases! {
    async fn an_access_token_dies_with_its_login(db: TestDb) {
        let app = spawn_app(&db).await;
        let s = app.onboard(&db, "maria@escritorio.com.br", "ADMIN", PW).await;
        let me = |token: String| {
            let app = &app;
            async move {
                app.send("GET", "/api/v1/auth/me", None, Some(&token), None)
                    .await
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(me(s.access.clone()).await, 200);
        let res = app
            .send("POST", "/api/v1/auth/logout", None, Some(&s.access), s.refresh.as_deref())
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(me(s.access.clone()).await, 401, "logout ends the access token at once");

        // A password change (through a new link) ends every login's access tokens.
        let res = app.login("maria@escritorio.com.br", PW).await;
        let access = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let admin2 = app.onboard(&db, "joao@escritorio.com.br", "ADMIN", PW).await;
        let link = link_for(&app, &admin2, "maria@escritorio.com.br").await;
        let token = token_in(link.json::<Value>().await.unwrap()["link"].as_str().unwrap());
        assert_eq!(set_password(&app, &token, "Nova-senha-forte-9").await, 200);
        assert_eq!(me(access).await, 401);
    }
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let app = spawn_app(&db).await;
    let a = app.onboard(&db, "a@escritorio.com.br", "ADMIN", PW).await;
    let b = app.onboard(&db, "b@escritorio.com.br", "ADMIN", PW).await;
    let id_of = |s: &Session| {
        let app = &app;
        let token = s.access.clone();
        async move {
            let res = app
                .send("GET", "/api/v1/auth/me", None, Some(&token), None)
                .await;
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (ida, idb) = (id_of(&a).await, id_of(&b).await);
    let demote = |who: &Session, target: String| {
        let app = &app;
        let token = who.access.clone();
        async move {
            app.send(
                "PATCH",
                &format!("/api/v1/admin/users/{target}"),
                Some(json!({"role_global": "VIEW"})),
                Some(&token),
                None,
            )
            .await
            .status()
            .as_u16()
        }
    };
    let (ra, rb) = tokio::join!(demote(&a, idb.clone()), demote(&b, ida.clone()));
    let admins = db
        .scalar("SELECT COUNT(*) FROM users WHERE role_global = 'ADMIN' AND is_active")
        .await;
    assert_eq!(admins, 1, "answers {ra} and {rb}");
}

#[tokio::test]
async fn behind_a_trusted_tls_proxy_cookies_are_secure_and_clients_are_told_apart() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app_with(
        &db,
        &[
            ("CERTHUB_TRUSTED_PROXIES", "127.0.0.1"),
            ("CERTHUB_PUBLIC_URL", "https://certhub.escritorio.com.br"),
            ("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "3"),
        ],
    )
    .await;
    app.onboard(&db, "maria@escritorio.com.br", "VIEW", PW)
        .await;
    let via_proxy = |client: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .header("x-forwarded-for", client)
                .header("x-forwarded-proto", "https")
                .json(&json!({"email": "maria@escritorio.com.br", "password": PW}))
                .send()
                .await
                .unwrap()
        }
    };
    let res = via_proxy("192.168.1.20".into()).await;
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("certhub_refresh="))
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(res.headers().contains_key("strict-transport-security"));
    // Each office PC behind the proxy has its own login quota.
    for _ in 0..3 {
        via_proxy("192.168.1.21".into()).await;
    }
    assert_eq!(via_proxy("192.168.1.21".into()).await.status(), 429);
    assert_eq!(via_proxy("192.168.1.22".into()).await.status(), 200);
    // The pre-login CSRF cookie is host-only over HTTPS.
    let page = app.get("/entrar").await;
    let csrf = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("csrf"))
        .unwrap();
    assert!(csrf.starts_with("__Host-certhub_csrf="), "{csrf}");
    assert!(csrf.contains("Secure") && csrf.contains("Path=/"), "{csrf}");

    // Without trusted_proxies, anybody's forwarding headers are ignored.
    let db2 = TestDb::new(Backend::Sqlite).await.unwrap();
    let plain = spawn_app_with(&db2, &[("CERTHUB_LOGIN_PER_IP_PER_MINUTE", "3")]).await;
    for i in 0..4 {
        let res = plain
            .client
            .post(plain.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .header("x-forwarded-proto", "https")
            .json(&json!({"email": "x@escritorio.com.br", "password": "y"}))
            .send()
            .await
            .unwrap();
        assert!(!res.headers().contains_key("strict-transport-security"));
        if i == 3 {
            assert_eq!(
                res.status(),
                429,
                "a forged X-Forwarded-For buys no new quota"
            );
        }
    }
}

async fn page_text(browser: &reqwest::Client, url: &str) -> String {
    let res = browser.get(url).send().await.unwrap();
    res.text().await.unwrap()
}

#[tokio::test]
async fn a_planted_csrf_cookie_does_not_pass() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let token = create_user(&db, "maria@escritorio.com.br", "VIEW");
    assert_eq!(set_password(&app, &token, PW).await, 200);
    let b = browser();
    let csrf = csrf_of(&page_text(&b, &app.url("/entrar")).await);
    let res = post_login(&b, &app, &csrf, "maria@escritorio.com.br", PW).await;
    assert_eq!(res.status(), 303);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("certhub_session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap();
    // An attacker who can set cookies (a sibling host, plain HTTP) plants a CSRF cookie and
    // submits its value: with a double submit alone, that passed.
    let planted = "A".repeat(43);
    let res = app
        .client
        .post(app.url("/sair"))
        .header(
            "cookie",
            format!("certhub_session={session}; certhub_csrf={planted}"),
        )
        .form(&[("csrf", planted.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // The token of this session passes.
    let mine = csrf_of(&page_text(&b, &app.url("/")).await);
    let res = b
        .post(app.url("/sair"))
        .form(&[("csrf", mine.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn the_server_refuses_a_master_key_others_can_read_and_keeps_its_files_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    drop(spawn_app(&db).await);
    let data = db.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("certhub.db")), 0o600);
    assert_eq!(mode(&data.join("master.key")), 0o600);

    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let logs = try_spawn_app(&db, &[], None)
        .await
        .err()
        .expect("the server must refuse to start");
    assert!(logs.contains("readable by group or others"), "{logs}");
}
