//! Text the database cannot store: PostgreSQL's `text` refuses a NUL character, SQLite keeps it.
//! Every string the API takes (a JSON field, a query parameter), as each identity that may send
//! it, is tried with a NUL inside: the answer is a 4xx with the stable error body, never a 500,
//! and a refused request leaves no row behind.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

const NUL: &str = "a\u{0}b";

/// `body` once per string leaf, that leaf replaced by text holding a NUL.
fn with_a_nul_in_each_string(body: &Value) -> Vec<Value> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::String(_) => out.push(path.clone()),
            Value::Object(map) => {
                for (k, child) in map {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut leaves = Vec::new();
    walk(body, &mut Vec::new(), &mut leaves);
    leaves
        .into_iter()
        .map(|leaf| {
            let mut variant = body.clone();
            let pointer: String = leaf.iter().map(|k| format!("/{k}")).collect();
            *variant.pointer_mut(&pointer).unwrap() = Value::String(NUL.into());
            variant
        })
        .collect()
}

/// Sends `method path` with `body` (or none) as the holder of `token`: the answer is `expected`
/// with the stable error body, naming the request when it is not.
async fn refused_cleanly(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
    expected: u16,
) {
    let shown = format!("{method} {path} {body:?}");
    let res = app.send(method, path, body, token, None).await;
    let status = res.status().as_u16();
    assert_eq!(status, expected, "{shown}\n{}", app.logs());
    let err: Value = res.json().await.unwrap_or_default();
    assert!(err["error"].is_string(), "{shown}: {status} {err}");
}

on_both_databases! {
    async fn a_nul_in_any_text_the_api_takes_is_refused_never_a_server_error(db: TestDb) {
        let o = office(&db).await;
        let app = &o.app;
        let device = o.device("PC-NUL", true).await;
        let (installation, _) = o.installed(&device).await;
        let requested = o.requested_job(&device, None).await;
        let in_progress = o.pending_job(&device, None).await;
        let (status, _) = o.claim(&device, &in_progress).await;
        assert_eq!(status, 200);
        let (_, users) = o.call("GET", "/api/v1/admin/users", None, &o.admin.access).await;
        let user = users[0]["id"].as_str().unwrap().to_owned();
        let (admin, view, agent) = (&o.admin.access, &o.view.access, &device.jwt);
        let audit_before = db.scalar("SELECT COUNT(*) FROM audit_log").await;

        let bodies: Vec<(&str, String, Value, Option<&str>)> = vec![
            ("POST", "/api/v1/auth/login".into(),
             json!({"email": "view@escritorio.com.br", "password": "x"}), None),
            ("POST", "/api/v1/auth/password/set/init".into(),
             json!({"email": "view@escritorio.com.br"}), Some(admin)),
            ("POST", "/api/v1/auth/password/set/confirm".into(),
             json!({"token": "t", "new_password": "SenhaForte123!x"}), None),
            ("POST", "/api/v1/admin/users".into(),
             json!({"email": "novo@escritorio.com.br", "nome": "Novo", "role": "VIEW"}), Some(admin)),
            ("PATCH", format!("/api/v1/admin/users/{user}"),
             json!({"nome": "Outro", "role": "VIEW"}), Some(admin)),
            ("POST", "/api/v1/admin/devices".into(), json!({"hostname": "PC-NOVO"}), Some(admin)),
            ("PATCH", format!("/api/v1/admin/devices/{}", device.id),
             json!({"hostname": "PC-OUTRO"}), Some(admin)),
            ("POST", format!("/api/v1/certificados/{}/install", o.cert),
             json!({"device_id": device.id, "reason": "SPED"}), Some(view)),
            ("POST", format!("/api/v1/install-jobs/{requested}/approve"),
             json!({"reason": "ok"}), Some(admin)),
            ("POST", format!("/api/v1/install-jobs/{requested}/deny"),
             json!({"reason": "não"}), Some(admin)),
            ("POST", format!("/api/v1/installations/{installation}/remove"),
             json!({"reason": "fim"}), Some(view)),
            ("POST", format!("/api/v1/admin/certificates/{}/password", o.cert),
             json!({"password": "x"}), Some(admin)),
            ("POST", "/api/v1/agent/enroll".into(),
             json!({"enrollment_code": "ABCD-1234", "public_key": "AAAA", "hostname": "PC",
                    "os_version": "Windows 11", "agent_version": "1.0.0"}), None),
            ("POST", "/api/v1/agent/auth".into(),
             json!({"device_id": device.id, "device_token": "x", "public_key": "AAAA"}), None),
            ("POST", "/api/v1/agent/heartbeat".into(), json!({"agent_version": "1.0.0"}), Some(agent)),
            ("POST", format!("/api/v1/agent/jobs/{in_progress}/result"),
             json!({"status": "FAILED", "thumbprint": "AB", "error_code": "E",
                    "error_message": "falhou", "key_storage": "software"}), Some(agent)),
            ("POST", "/api/v1/agent/cleanup".into(),
             json!({"mode": "scheduled", "removed": [{"thumbprint": "AB"}]}), Some(agent)),
        ];
        for (method, path, body, token) in bodies {
            for variant in with_a_nul_in_each_string(&body) {
                refused_cleanly(app, method, &path, Some(variant), token, 422).await;
            }
        }

        let queries: Vec<(String, Option<&str>)> = vec![
            ("/api/v1/certificados?q=%00&status=%00".into(), Some(view)),
            ("/api/v1/install-jobs?status=%00&job_type=a%00".into(), Some(view)),
            ("/api/v1/installations?state=%00".into(), Some(view)),
            ("/api/v1/audit?action=%00&from=%00&to=%00&entity_id=%00".into(), Some(admin)),
            ("/api/v1/agent/jobs?wait=%00".into(), Some(agent)),
            (format!("/api/v1/agent/jobs/{in_progress}/payload?token=a%00b"), Some(agent)),
            ("/agent/install.ps1?code=a%00b".into(), None),
        ];
        for (path, token) in queries {
            refused_cleanly(app, "GET", &path, None, token, 422).await;
        }
        // In a path, a NUL names nothing.
        let path = format!("/api/v1/install-jobs/a%00{requested}");
        refused_cleanly(app, "GET", &path, None, Some(view), 404).await;

        // Whatever JSON type the body is sent as.
        let res = reqwest::Client::new()
            .patch(app.url(&format!("/api/v1/admin/devices/{}", device.id)))
            .bearer_auth(admin)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"hostname": "PC\u0000X"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);

        // A portal form: its error page, before the form is even read.
        let res = reqwest::Client::new()
            .post(app.url("/entrar"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("email=view%40escritorio.com.br%00&password=x")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        assert!(res.text().await.unwrap().contains("Dados inválidos"));

        // Nothing a refused request carried was stored (SQLite would keep a NUL).
        if db.backend == Backend::Sqlite {
            for (table, column) in [("users", "nome"), ("users", "email"), ("devices", "hostname"),
                                    ("cert_install_jobs", "reason"),
                                    ("cert_install_jobs", "decision_reason"),
                                    ("cert_install_jobs", "error_message"),
                                    ("audit_log", "meta_json")] {
                let n = db.scalar(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE instr({column}, char(0)) > 0"
                )).await;
                assert_eq!(n, 0, "{table}.{column}");
            }
        }
        assert!(db.scalar("SELECT COUNT(*) FROM audit_log").await >= audit_before);
        assert!(!app.logs().contains("panicked"));
    }
}
