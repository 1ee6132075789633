//! The office's day (issue 22): after hours the choices and the lease say the real end; every
//! way a certificate leaves a PC is audited under its own name; a blocked device still performs
//! its removals and nothing else.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

/// After hours all day but the first minute: the day's cleanup is 00:01, the cap 2 h.
const AFTER_HOURS: &[(&str, &str)] = &[
    ("CERTHUB_CLEANUP_TIME", "00:01"),
    ("CERTHUB_WORKDAY_START", "00:00"),
    ("CERTHUB_MAX_LEASE_HOURS", "2"),
];

fn rule() -> certhub::schedule::LeaseRule {
    certhub::schedule::LeaseRule {
        cleanup: certhub::schedule::DailyCleanup {
            time: NaiveTime::from_hms_opt(0, 1, 0).unwrap(),
            tz: chrono_tz::America::Sao_Paulo,
        },
        max_hours: 2,
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

async fn page(b: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let res = b.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

/// The `<select name="duration_minutes">` of a certificate's page.
fn duration_select(html: &str) -> &str {
    let start = html
        .find("name=\"duration_minutes\"")
        .expect("duration choices");
    let end = html[start..].find("</select>").unwrap();
    &html[start..start + end]
}

on_both_databases! {
    async fn after_hours_the_choices_and_the_lease_say_the_real_end(db: TestDb) {
        let o = office_with(&db, AFTER_HOURS).await;
        let (view, _) = session(&o.app, "view@escritorio.com.br", PW).await;
        let pc = o.device("PC-NOITE", true).await;
        let html = page(&view, &o.app, &format!("/certificados/{}", o.cert)).await;
        let choices = duration_select(&html);
        // The day's cleanup has passed: nothing says "today" and every choice ends at a time.
        assert!(!choices.contains("de hoje"), "{choices}");
        assert!(!choices.contains("18:00"), "{choices}");
        let now = Utc::now();
        if !rule().ends_at_cleanup(now) {
            assert!(choices.contains("(limite de 2 h)"), "{choices}");
        }
        assert!(choices.contains("1 h (até "), "{choices}");

        // The lease the server opens is the rule's, capped: never "until 18:00".
        let job = o.pending_job(&pc, None).await;
        let (_, claim) = o.claim(&pc, &job).await;
        let (_, payload) = o.payload(&pc, &job, &token_of(&claim)).await;
        let thumbprint = payload["thumbprint"].as_str().unwrap();
        let (status, done) = o.result(&pc, &job, json!({"status": "DONE", "thumbprint": thumbprint})).await;
        assert_eq!(status, 200, "{done}");
        let installation = o.job(&job).await["installation_id"].as_str().unwrap().to_owned();
        let view_of = o.installation(&installation).await;
        let (installed, expires) = (time(&view_of["installed_at"]), time(&view_of["expires_at"]));
        assert_eq!(expires, rule().end(installed, None), "{view_of}");
        assert!(expires - installed <= chrono::Duration::hours(2), "{view_of}");
        assert_eq!(time(&done["lease_expires_at"]), expires);
    }

    async fn an_office_that_closes_after_hours_refuses_requests_and_approvals(db: TestDb) {
        let mut env = AFTER_HOURS.to_vec();
        env.push(("CERTHUB_AFTER_HOURS_INSTALLS", "false"));
        let o = office_with(&db, &env).await;
        let pc = o.device("PC-NOITE", true).await;
        let path = format!("/api/v1/certificados/{}/install", o.cert);
        let (status, body) = o.call("POST", &path, Some(json!({"device_id": pc.id})), &o.view.access).await;
        assert_eq!(status, 409, "{body}");
        assert!(body["message"].as_str().unwrap().contains("after hours"), "{body}");
        let (view, _) = session(&o.app, "view@escritorio.com.br", PW).await;
        let html = page(&view, &o.app, &format!("/certificados/{}", o.cert)).await;
        assert!(html.contains("Fora do horário de instalação"), "{html}");
        assert!(!html.contains("name=\"duration_minutes\""));
    }

    async fn every_removal_is_audited_under_its_own_name(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let removed = |installation: String, action: &'static str| {
            let db = &db;
            async move {
                let n = db.scalar(&format!(
                    "SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND meta_json LIKE '%{installation}%'"
                )).await;
                assert_eq!(n, 1, "{action} for {installation}");
            }
        };
        let cleanup = |mode: &'static str, thumbprint: String| {
            let o = &o;
            let pc = &pc;
            async move {
                let body = json!({"mode": mode, "removed": [{"thumbprint": thumbprint, "key_deleted": true}]});
                let (status, answer) = o.call("POST", "/api/v1/agent/cleanup", Some(body), &pc.jwt).await;
                assert_eq!((status, answer), (200, json!({"closed": 1})));
            }
        };

        // The cleanup routine the runbook checks: the daily time and --cleanup --mode manual.
        for mode in ["scheduled", "manual"] {
            let (installation, thumbprint) = o.installed(&pc).await;
            cleanup(mode, thumbprint).await;
            removed(installation.clone(), "CERT_REMOVED_18H").await;
            let with_mode = db.scalar(&format!(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_REMOVED_18H' AND meta_json LIKE '%\"mode\":\"{mode}\"%'"
            )).await;
            assert_eq!(with_mode, 1, "{mode}");
        }
        // A lease's end.
        let (installation, thumbprint) = o.installed(&pc).await;
        cleanup("lease", thumbprint).await;
        removed(installation, "CERT_REMOVED_LEASE_END").await;

        // "Remover agora".
        let (installation, thumbprint) = o.installed(&pc).await;
        let remove = format!("/api/v1/installations/{installation}/remove");
        let (status, job) = o.call("POST", &remove, Some(json!({})), &o.view.access).await;
        assert_eq!(status, 201, "{job}");
        let job = job["id"].as_str().unwrap().to_owned();
        assert_eq!(o.claim(&pc, &job).await.0, 200);
        let (status, _) = o.result(&pc, &job, json!({"status": "DONE", "thumbprint": thumbprint, "key_deleted": true})).await;
        assert_eq!(status, 200);
        removed(installation, "CERT_REMOVED_ON_REQUEST").await;
        assert_eq!(audits(&db, "CERT_REMOVED_18H").await, 2, "only the two cleanups");

        // The requester deactivated: the REMOVE job the server made says why.
        let (installation, thumbprint) = o.installed(&pc).await;
        let view_id = o.view_id.clone();
        let (status, body) = o.call("PATCH", &format!("/api/v1/admin/users/{view_id}"), Some(json!({"is_active": false})), &o.admin.access).await;
        assert_eq!(status, 200, "{body}");
        let (_, list) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        let job = list["jobs"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(o.claim(&pc, &job).await.0, 200);
        let (status, _) = o.result(&pc, &job, json!({"status": "DONE", "thumbprint": thumbprint, "key_deleted": true})).await;
        assert_eq!(status, 200);
        removed(installation.clone(), "CERT_REMOVED_USER_DEACTIVATED").await;
        assert_eq!(o.installation(&installation).await["removal_mode"], "user_deactivated");

        // Each in Portuguese on the Auditoria page, the code beside it.
        let (admin, _) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let html = page(&admin, &o.app, "/auditoria").await;
        for (label, code) in [
            ("Removido na limpeza diária", "CERT_REMOVED_18H"),
            ("Removido no fim do prazo", "CERT_REMOVED_LEASE_END"),
            ("Removido a pedido (Remover agora)", "CERT_REMOVED_ON_REQUEST"),
            ("Removido: usuário desativado", "CERT_REMOVED_USER_DEACTIVATED"),
        ] {
            assert!(html.contains(label) && html.contains(code), "{label} / {code}");
        }
    }

    async fn expired_and_unreadable_certificates_are_not_offered_as_available(db: TestDb) {
        let o = Office::builder()
            .certificate("PADARIA BOA senha_abc123.pfx", "ecnpj-octet-legacy.pfx")
            .certificate("JOSE DA SILVA.pfx", "ecpf-utf8.pfx")
            .start(&db)
            .await;
        let past = (Utc::now() - chrono::Duration::days(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        db.execute(&format!("UPDATE certificates SET not_after = '{past}' WHERE name = 'PADARIA BOA'")).await;
        let (view, _) = session(&o.app, "view@escritorio.com.br", PW).await;
        let html = page(&view, &o.app, "/certificados").await;
        assert!(html.contains("EMPRESA X LTDA"), "{html}");
        assert!(!html.contains("PADARIA BOA"), "an expired certificate offered as available");
        assert!(!html.contains("JOSE DA SILVA"), "an unreadable file offered as available");
        let all = page(&view, &o.app, "/certificados?status=in_folder").await;
        assert!(all.contains("PADARIA BOA") && all.contains("JOSE DA SILVA"));
        // The Painel counts the expired ones.
        let (admin, _) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let painel = page(&admin, &o.app, "/").await;
        assert!(painel.contains("<strong>1</strong><span>certificado vencido</span>"), "{painel}");
        assert!(painel.contains("/certificados?status=expired"));
    }

    async fn a_blocked_device_performs_its_removals_and_nothing_else(db: TestDb) {
        let o = office(&db).await;
        let d = o.provision("PC-BLOQ").await;
        let (id, token) = (d["id"].as_str().unwrap().to_owned(), d["device_token"].as_str().unwrap().to_owned());
        let key = certhub::crypto::DeviceSecretKey::generate();
        let jwt = device_jwt(&o.app, &id, &token, Some(&key.public_key().to_base64())).await;
        let pc = Device { id: id.clone(), key, jwt };
        let (installation, thumbprint) = o.installed(&pc).await;
        let waiting = o.pending_job(&pc, None).await;

        assert_eq!(o.app.device_action(&o.admin.access, &id, "block").await, 200);
        // Blocking cancels the waiting install and queues the removal of what is there.
        assert_eq!(o.job(&waiting).await["status"], "CANCELLED");
        let (status, list) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        assert_eq!(status, 200, "{list}");
        let jobs = list["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 1, "{list}");
        assert_eq!((jobs[0]["job_type"].as_str(), jobs[0]["thumbprint"].as_str()), (Some("REMOVE"), Some(thumbprint.as_str())));
        let removal = jobs[0]["id"].as_str().unwrap().to_owned();

        // Nothing else: no heartbeat, no new key, no install.
        let (status, body) = o.call("POST", "/api/v1/agent/heartbeat", Some(json!({})), &pc.jwt).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().unwrap().contains("blocked"));
        let other = certhub::crypto::DeviceSecretKey::generate().public_key().to_base64();
        let res = o.app.send("POST", "/api/v1/agent/auth", Some(json!({"device_id": id, "device_token": token, "public_key": other})), None, None).await;
        assert!(matches!(res.status().as_u16(), 403 | 409), "{}", res.status());
        let (status, _) = o.claim(&pc, &waiting).await;
        assert!(status == 403 || status == 409, "{status}");

        // Its token still renews (for the removals) and the removal goes through.
        let res = o.app.send("POST", "/api/v1/agent/auth", Some(json!({"device_id": id, "device_token": token})), None, None).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        let renewed = serde_json::from_str::<Value>(&text).unwrap()["access_token"].as_str().unwrap().to_owned();
        let pc = Device { jwt: renewed, ..pc };
        let (status, claim) = o.claim(&pc, &removal).await;
        assert_eq!(status, 200, "{claim}");
        let (status, done) = o.result(&pc, &removal, json!({"status": "DONE", "thumbprint": thumbprint, "key_deleted": true})).await;
        assert_eq!(status, 200, "{done}");
        let closed = o.wait_removed(&installation, Duration::from_secs(5)).await;
        assert_eq!(closed["removal_mode"], "device_blocked", "{closed}");
        let n = db.scalar(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_REMOVED_DEVICE_BLOCKED' AND meta_json LIKE '%{installation}%'"
        )).await;
        assert_eq!(n, 1);
        // "Remover agora" reaches a blocked device too: nothing is left to remove now.
        let (_, list) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        assert_eq!(list["jobs"], json!([]));
    }
}

/// The admin adds a computer in the portal: the credentials page it lands on.
async fn credentials_page(o: &Office, hostname: &str) -> String {
    let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
    let res = admin
        .post(o.app.url("/dispositivos"))
        .form(&[("csrf", csrf.as_str()), ("hostname", hostname)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_line_install_is_shown_only_when_it_can_work() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // No agent executable: the download would be a 404, so no line that fails.
    let o = office(&db).await;
    let html = credentials_page(&o, "PC-SEM-AGENTE").await;
    assert!(!html.contains("install.ps1"), "{html}");
    assert!(
        html.contains("A instalação por uma linha não está disponível"),
        "{html}"
    );
    assert!(html.contains("agent_exe_file"), "{html}");
    assert!(html.contains("Certhub.Agent.exe pair --server"), "{html}");
    assert_eq!(o.app.get("/agent/certhub-agent.exe").await.status(), 404);

    // With one, the line is there and its download answers.
    let exe = db.dir().join("certhub-agent.exe");
    std::fs::write(&exe, b"MZ stand-in agent").unwrap();
    let exe = exe.to_string_lossy().into_owned();
    let other = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office_with(&other, &[("CERTHUB_AGENT_EXE_FILE", exe.as_str())]).await;
    let html = credentials_page(&o, "PC-COM-AGENTE").await;
    assert!(html.contains("install.ps1?code="), "{html}");
    assert!(!html.contains("não está disponível"), "{html}");
    assert_eq!(o.app.get("/agent/certhub-agent.exe").await.status(), 200);
}
