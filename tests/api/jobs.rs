//! Install requests as users see them: request, approve, deny, cancel, auto-approval, the
//! device owner rule, the refusals, office isolation, listing, expiry and the reaper.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> (u16, Value) {
    let (status, json, _) = app.call_json(method, path, body, token).await;
    (status, json)
}

fn ago(d: Duration) -> String {
    (Utc::now() - d).to_rfc3339_opts(SecondsFormat::Secs, false)
}

async fn insert_device(
    db: &TestDb,
    org: i64,
    hostname: &str,
    owner: Option<&str>,
    allowed: bool,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let owner = owner.map_or("NULL".to_owned(), |o| uuid_sql(db, o));
    db.execute(&format!(
        "INSERT INTO devices (id, org_id, hostname, owner_user_id, is_allowed, created_at) VALUES ({}, {org}, '{hostname}', {owner}, {allowed}, '{}')",
        uuid_sql(db, &id),
        ago(Duration::zero())
    ))
    .await;
    id
}

/// Office 1 with two good certificates and one that does not open, four devices and five
/// users (one auto-approved); office 2 with an ADMIN and a device.
struct JobsOffice {
    office: Office,
    other_view: Session,
    admin_id: String,
    auto: Session,
    auto_id: String,
    outsider: Session,
    empresa: String,
    padaria: String,
    jose: String,
    /// Owned by `view`, by `other_view`, by no one, blocked, and in office 2.
    own: String,
    others: String,
    free: String,
    blocked: String,
    foreign: String,
}

impl std::ops::Deref for JobsOffice {
    type Target = Office;

    fn deref(&self) -> &Office {
        &self.office
    }
}

async fn office(db: &TestDb) -> JobsOffice {
    let office = Office::builder()
        .certificate("PADARIA BOA senha_abc123.pfx", "ecnpj-octet-legacy.pfx")
        .certificate("JOSÉ DA SILVA senha errada.pfx", "ecpf-utf8.pfx")
        .user("outra@escritorio.com.br", "VIEW")
        .user("auto@escritorio.com.br", "VIEW")
        .user_in(2, "admin@outro.com.br", "ADMIN")
        .start(db)
        .await;
    let other_view = office.user("outra@escritorio.com.br").clone();
    let auto = office.user("auto@escritorio.com.br").clone();
    let outsider = office.user("admin@outro.com.br").clone();
    let (admin_id, auto_id, other_id) = (
        office.user_id(&office.admin).await,
        office.user_id(&auto).await,
        office.user_id(&other_view).await,
    );
    let (status, body) = office
        .call(
            "PATCH",
            &format!("/api/v1/admin/users/{auto_id}"),
            Some(json!({"auto_approve_install_jobs": true})),
            &office.admin.access,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (empresa, padaria, jose) = (
        office.cert_id("EMPRESA X LTDA").await,
        office.cert_id("PADARIA BOA").await,
        office.cert_id("JOSÉ DA SILVA").await,
    );
    let own = insert_device(db, 1, "PC-VIEW", Some(&office.view_id), true).await;
    let others = insert_device(db, 1, "PC-OUTRA", Some(&other_id), true).await;
    let free = insert_device(db, 1, "PC-RECEPCAO", None, true).await;
    let blocked = insert_device(db, 1, "PC-BLOQUEADO", None, false).await;
    let foreign = insert_device(db, 2, "PC-OUTRO", None, true).await;
    JobsOffice {
        office,
        other_view,
        admin_id,
        auto,
        auto_id,
        outsider,
        empresa,
        padaria,
        jose,
        own,
        others,
        free,
        blocked,
        foreign,
    }
}

async fn request(o: &JobsOffice, token: &str, cert: &str, body: Value) -> (u16, Value) {
    call(
        &o.app,
        "POST",
        &format!("/api/v1/certificados/{cert}/install"),
        Some(body),
        token,
    )
    .await
}

on_both_databases! {
    async fn requests_are_approved_denied_and_cancelled(db: TestDb) {
        let o = office(&db).await;
        let app = &o.app;

        // A VIEW asks: REQUESTED, audited, and the view shows what the job refers to.
        let (status, job) = request(&o, &o.view.access, &o.empresa, json!({"device_id": o.own, "reason": "  SPED fiscal  ", "duration_minutes": 90})).await;
        assert_eq!(status, 201, "{job}");
        assert_eq!(job["status"], "REQUESTED");
        assert_eq!(job["job_type"], "INSTALL");
        assert_eq!(job["cert"], json!({"id": o.empresa, "name": "EMPRESA X LTDA"}));
        assert_eq!(job["device"], json!({"id": o.own, "hostname": "PC-VIEW"}));
        assert_eq!(job["requested_by"]["id"], o.view_id.as_str());
        assert!(job["approved_by"].is_null() && job["approved_at"].is_null());
        assert_eq!((job["reason"].as_str(), job["duration_minutes"].as_i64()), (Some("SPED fiscal"), Some(90)));
        let mut keys: Vec<&str> = job.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["approved_at", "approved_by", "cert", "created_at", "decision_reason", "device", "duration_minutes", "error_code", "error_message", "finished_at", "id", "installation_id", "job_type", "reason", "requested_by", "started_at", "status", "thumbprint", "updated_at"]);
        let id = job["id"].as_str().unwrap().to_owned();
        assert_eq!(audits(&db, "INSTALL_REQUESTED").await, 1);

        // Only ADMIN/DEV decide; approving twice is a conflict.
        let approve = format!("/api/v1/install-jobs/{id}/approve");
        assert_eq!(call(app, "POST", &approve, Some(json!({})), &o.view.access).await.0, 403);
        let (status, job) = call(app, "POST", &approve, Some(json!({"reason": "piloto"})), &o.admin.access).await;
        assert_eq!(status, 200, "{job}");
        assert_eq!((job["status"].as_str(), job["decision_reason"].as_str()), (Some("PENDING"), Some("piloto")));
        assert_eq!(job["approved_by"]["id"], o.admin_id.as_str());
        assert!(job["approved_at"].is_string());
        let (status, body) = call(app, "POST", &approve, Some(json!({})), &o.admin.access).await;
        assert_eq!((status, body["error"].as_str()), (409, Some("conflict")), "{body}");
        assert_eq!(call(app, "POST", &format!("/api/v1/install-jobs/{id}/deny"), Some(json!({"reason": "não"})), &o.admin.access).await.0, 409);
        assert_eq!(audits(&db, "INSTALL_APPROVED").await, 1);

        // Another VIEW cannot see or cancel it; its requester cancels it from PENDING.
        let cancel = format!("/api/v1/install-jobs/{id}/cancel");
        assert_eq!(call(app, "POST", &cancel, None, &o.other_view.access).await.0, 404);
        assert_eq!(call(app, "GET", &format!("/api/v1/install-jobs/{id}"), None, &o.other_view.access).await.0, 404);
        let (status, job) = call(app, "POST", &cancel, None, &o.view.access).await;
        assert_eq!((status, job["status"].as_str()), (200, Some("CANCELLED")), "{job}");
        assert!(job["finished_at"].is_string());
        assert_eq!(call(app, "POST", &cancel, None, &o.view.access).await.0, 409);

        // Deny needs a reason; a denied job cannot be approved.
        let (_, job) = request(&o, &o.view.access, &o.empresa, json!({"device_id": o.free})).await;
        let id = job["id"].as_str().unwrap();
        let deny = format!("/api/v1/install-jobs/{id}/deny");
        assert_eq!(call(app, "POST", &deny, Some(json!({"reason": "  "})), &o.admin.access).await.0, 422);
        let (status, job) = call(app, "POST", &deny, Some(json!({"reason": "sem justificativa"})), &o.admin.access).await;
        assert_eq!((status, job["status"].as_str(), job["decision_reason"].as_str()), (200, Some("DENIED"), Some("sem justificativa")));
        assert_eq!(call(app, "POST", &format!("/api/v1/install-jobs/{id}/approve"), Some(json!({})), &o.admin.access).await.0, 409);
        assert_eq!(call(app, "POST", &format!("/api/v1/install-jobs/{id}/cancel"), None, &o.view.access).await.0, 409);

        // A REQUESTED job: its requester cancels it; an ADMIN may cancel anyone's.
        let (_, job) = request(&o, &o.view.access, &o.empresa, json!({"device_id": o.own})).await;
        let (status, job) = call(app, "POST", &format!("/api/v1/install-jobs/{}/cancel", job["id"].as_str().unwrap()), None, &o.view.access).await;
        assert_eq!((status, job["status"].as_str()), (200, Some("CANCELLED")));
        let (_, job) = request(&o, &o.view.access, &o.empresa, json!({"device_id": o.own})).await;
        let (status, job) = call(app, "POST", &format!("/api/v1/install-jobs/{}/cancel", job["id"].as_str().unwrap()), None, &o.admin.access).await;
        assert_eq!((status, job["status"].as_str()), (200, Some("CANCELLED")));

        // An auto-approved user's request is PENDING at once, approved by themself, audited twice.
        let (requested, approved) = (audits(&db, "INSTALL_REQUESTED").await, audits(&db, "INSTALL_APPROVED").await);
        let (status, job) = request(&o, &o.auto.access, &o.padaria, json!({"device_id": o.free})).await;
        assert_eq!((status, job["status"].as_str()), (201, Some("PENDING")), "{job}");
        assert_eq!(job["approved_by"]["id"], o.auto_id.as_str());
        assert!(job["approved_at"].is_string());
        assert_eq!(audits(&db, "INSTALL_REQUESTED").await, requested + 1);
        assert_eq!(audits(&db, "INSTALL_APPROVED").await, approved + 1);
        let auto_meta = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'INSTALL_APPROVED' AND meta_json LIKE '%\"auto\":true%'").await;
        assert_eq!(auto_meta, 1);
        // ...and capped like any other.
        assert_eq!(request(&o, &o.auto.access, &o.padaria, json!({"device_id": o.free, "duration_minutes": 601})).await.0, 422);

        assert!(app.logs().find("Senha 1234").is_none());
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn refusals_owner_rule_offices_and_listing(db: TestDb) {
        let o = office(&db).await;
        let app = &o.app;
        let body = |device: &str| json!({"device_id": device});

        // The owner rule: a VIEW may use their own or an ownerless device; ADMIN any.
        let (status, err) = request(&o, &o.view.access, &o.empresa, body(&o.others)).await;
        assert_eq!((status, err["error"].as_str()), (403, Some("forbidden")), "{err}");
        assert_eq!(request(&o, &o.view.access, &o.empresa, body(&o.free)).await.0, 201);
        assert_eq!(request(&o, &o.view.access, &o.empresa, body(&o.own)).await.0, 201);
        assert_eq!(request(&o, &o.admin.access, &o.empresa, body(&o.others)).await.0, 201);

        // Refusals with a reason.
        let (status, err) = request(&o, &o.admin.access, &o.empresa, body(&o.blocked)).await;
        assert_eq!(status, 409);
        assert!(err["message"].as_str().unwrap().contains("blocked"), "{err}");
        let (status, err) = request(&o, &o.view.access, &o.jose, body(&o.own)).await;
        assert_eq!(status, 409, "{err}");
        db.execute("UPDATE certificates SET is_available = false WHERE name = 'PADARIA BOA'").await;
        let (status, err) = request(&o, &o.view.access, &o.padaria, body(&o.own)).await;
        assert!(status == 409 && err["message"].as_str().unwrap().contains("unavailable"), "{err}");
        db.execute(&format!("UPDATE certificates SET is_available = true, not_after = '{}' WHERE name = 'PADARIA BOA'", ago(Duration::days(2)))).await;
        let (status, err) = request(&o, &o.view.access, &o.padaria, body(&o.own)).await;
        assert!(status == 409 && err["message"].as_str().unwrap().contains("expired"), "{err}");
        for bad in [json!({"device_id": o.own, "duration_minutes": 0}), json!({"device_id": o.own, "duration_minutes": 601}), json!({"device_id": o.own, "reason": "x".repeat(501)})] {
            let (status, err) = request(&o, &o.view.access, &o.empresa, bad).await;
            assert_eq!((status, err["error"].as_str()), (422, Some("validation_error")), "{err}");
        }
        assert_eq!(request(&o, &o.view.access, &o.empresa, json!({"device_id": o.own, "duration_minutes": 600})).await.0, 201);

        // Another office: its certificates, devices and jobs do not exist here, nor ours there.
        assert_eq!(request(&o, &o.view.access, &o.empresa, body(&o.foreign)).await.0, 404);
        assert_eq!(request(&o, &o.outsider.access, &o.empresa, body(&o.foreign)).await.0, 404);
        assert_eq!(request(&o, &o.view.access, &uuid::Uuid::new_v4().to_string(), body(&o.own)).await.0, 404);
        let (_, mine) = call(app, "GET", "/api/v1/install-jobs", None, &o.view.access).await;
        let id = mine["items"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(call(app, "GET", &format!("/api/v1/install-jobs/{id}"), None, &o.outsider.access).await.0, 404);
        assert_eq!(call(app, "POST", &format!("/api/v1/install-jobs/{id}/approve"), Some(json!({})), &o.outsider.access).await.0, 404);
        assert_eq!(call(app, "POST", &format!("/api/v1/install-jobs/{id}/cancel"), None, &o.outsider.access).await.0, 404);
        let (status, theirs) = call(app, "GET", "/api/v1/install-jobs", None, &o.outsider.access).await;
        assert_eq!((status, theirs["total"].as_u64()), (200, Some(0)));

        // Listing: ADMIN sees the office, a VIEW their own; filters combine.
        let (status, all) = call(app, "GET", "/api/v1/install-jobs", None, &o.admin.access).await;
        assert_eq!((status, all["total"].as_u64()), (200, Some(4)), "{all}");
        assert_eq!(mine["total"].as_u64(), Some(3));
        assert!(mine["items"].as_array().unwrap().iter().all(|j| j["requested_by"]["id"] == o.view_id.as_str()));
        let (status, page) = call(app, "GET", &format!("/api/v1/install-jobs?user_id={}&device_id={}&status=requested", o.view_id, o.own), None, &o.admin.access).await;
        assert_eq!((status, page["total"].as_u64()), (200, Some(2)), "{page}");
        let (_, page) = call(app, "GET", &format!("/api/v1/install-jobs?device_id={}", o.others), None, &o.view.access).await;
        assert_eq!(page["total"].as_u64(), Some(0));
        let (_, page) = call(app, "GET", "/api/v1/install-jobs?page=2&page_size=3", None, &o.admin.access).await;
        assert_eq!((page["total"].as_u64(), page["items"].as_array().unwrap().len()), (Some(4), 1));
        assert_eq!(call(app, "GET", "/api/v1/install-jobs?status=APPROVED", None, &o.admin.access).await.0, 422);
        assert_eq!(call(app, "GET", "/api/v1/install-jobs?status=DONE", None, &o.admin.access).await.1["total"].as_u64(), Some(0));
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn old_requests_expire_and_stuck_jobs_are_reaped(db: TestDb) {
        let o = office(&db).await;
        let app = &o.app;
        let new_job = |token: &str| {
            let token = token.to_owned();
            let o = &o;
            async move {
                let (status, job) = request(o, &token, &o.empresa, json!({"device_id": o.free})).await;
                assert_eq!(status, 201, "{job}");
                job["id"].as_str().unwrap().to_owned()
            }
        };
        let old = new_job(&o.view.access).await;
        let fresh = new_job(&o.view.access).await;
        let stuck = new_job(&o.auto.access).await;
        let running = new_job(&o.auto.access).await;
        db.execute(&format!("UPDATE cert_install_jobs SET created_at = '{}' WHERE id = {}", ago(Duration::hours(25)), uuid_sql(&db, &old))).await;
        // The agent side is not wired yet: a claim, by hand.
        db.execute(&format!("UPDATE cert_install_jobs SET status = 'IN_PROGRESS', started_at = '{}' WHERE id = {}", ago(Duration::minutes(5)), uuid_sql(&db, &stuck))).await;
        db.execute(&format!("UPDATE cert_install_jobs SET status = 'IN_PROGRESS', started_at = '{}' WHERE id = {}", ago(Duration::seconds(5)), uuid_sql(&db, &running))).await;

        let reap = "/api/v1/admin/jobs/reap?threshold_minutes=1";
        assert_eq!(call(app, "POST", reap, None, &o.view.access).await.0, 403);
        assert_eq!(call(app, "POST", "/api/v1/admin/jobs/reap?threshold_minutes=0", None, &o.admin.access).await.0, 422);
        // Another office's reaper leaves this office alone.
        let (status, swept) = call(app, "POST", reap, None, &o.outsider.access).await;
        assert_eq!((status, swept), (200, json!({"reaped": 0, "expired": 0, "overdue": 0})));
        let (status, swept) = call(app, "POST", reap, None, &o.admin.access).await;
        assert_eq!((status, swept), (200, json!({"reaped": 1, "expired": 1, "overdue": 0})));

        let admin = o.admin.access.as_str();
        let get = |id: String| async move {
            call(app, "GET", &format!("/api/v1/install-jobs/{id}"), None, admin).await.1
        };
        let job = get(old.clone()).await;
        assert_eq!(job["status"], "EXPIRED");
        assert!(job["finished_at"].is_string());
        assert_eq!(get(fresh).await["status"], "REQUESTED");
        let job = get(stuck).await;
        assert_eq!((job["status"].as_str(), job["error_code"].as_str()), (Some("TIMEOUT"), Some("TIMEOUT")), "{job}");
        assert!(job["error_message"].is_string() && job["finished_at"].is_string());
        assert_eq!(get(running).await["status"], "IN_PROGRESS");
        assert_eq!((audits(&db, "INSTALL_EXPIRED").await, audits(&db, "INSTALL_TIMEOUT").await), (1, 1));
        // An expired request can no longer be approved; a second sweep finds nothing.
        assert_eq!(call(app, "POST", &format!("/api/v1/install-jobs/{old}/approve"), Some(json!({})), &o.admin.access).await.0, 409);
        assert_eq!(call(app, "POST", reap, None, &o.admin.access).await.1, json!({"reaped": 0, "expired": 0, "overdue": 0}));
        // The default threshold is job_timeout_minutes (60): the running job stays.
        assert_eq!(call(app, "POST", "/api/v1/admin/jobs/reap", None, &o.admin.access).await.1, json!({"reaped": 0, "expired": 0, "overdue": 0}));
        assert!(db.run(&["audit", "verify"]).status.success());
    }
}
