//! The catalogue as users see it: search, filters, paging, an admin's password and path
//! operations, office isolation and the daily expiry check, on real files.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";
/// The real password of `ecpf-utf8.pfx`.
const ECPF_PASSWORD: &str = "sénha-ção";

/// Two good files, a person's certificate under a wrong password, and a wrong-password copy
/// of the company's.
fn folder(db: &TestDb) -> std::path::PathBuf {
    let root = certificates_folder(
        db,
        &[
            EMPRESA_X,
            ("PADARIA BOA senha_abc123.pfx", "ecnpj-octet-legacy.pfx"),
            ("JOSÉ DA SILVA senha errada.pfx", "ecpf-utf8.pfx"),
            ("errada Senha 9999.pfx", "ecnpj-aes.pfx"),
        ],
    );
    let out = ingest(db, &root, &[]);
    assert!(
        out.stdout
            .contains("ingested 2, updated 0, unchanged 0, failed 2"),
        "{}",
        out.stdout
    );
    root
}

fn thumbprint(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/thumbprints.txt"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
        .unwrap()
}

/// Moves a certificate's notAfter to `from_now` (whole seconds, as the database keeps them).
async fn set_not_after(db: &TestDb, name: &str, from_now: Duration) {
    let at = (Utc::now() + from_now).to_rfc3339_opts(SecondsFormat::Secs, false);
    db.execute(&format!(
        "UPDATE certificates SET not_after = '{at}' WHERE name = '{name}'"
    ))
    .await;
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let res = app.send("GET", path, None, Some(token), None).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Lists with `query` and returns the names on the page, checking the page's shape.
async fn names(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let (status, body) = get_json(app, &format!("/api/v1/certificados?{query}"), token).await;
    assert_eq!(status, 200, "{query}: {body}");
    let items = body["items"].as_array().unwrap();
    assert!(body["total"].as_u64().unwrap() >= items.len() as u64);
    items
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

on_both_databases! {
    async fn every_role_searches_filters_and_pages_the_catalogue(db: TestDb) {
        folder(&db);
        set_not_after(&db, "EMPRESA X LTDA", Duration::days(5)).await;
        set_not_after(&db, "PADARIA BOA", Duration::days(-3)).await;
        db.execute("UPDATE certificates SET is_available = false WHERE name = 'errada'").await;
        let app = spawn_app(&db).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let v = view.access.as_str();

        // The default listing: available certificates, by name, parse errors included.
        let (status, body) = get_json(&app, "/api/v1/certificados", v).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["total"].as_u64(), body["page"].as_u64(), body["page_size"].as_u64()), (Some(3), Some(1), Some(50)));
        let listed = names(&app, v, "").await;
        assert_eq!(listed, ["EMPRESA X LTDA", "JOSÉ DA SILVA", "PADARIA BOA"]);

        // Every field a user may see, and nothing else (no path, file, password or sealed column).
        let empresa = body["items"].as_array().unwrap().iter().find(|c| c["name"] == "EMPRESA X LTDA").unwrap().clone();
        let mut keys: Vec<&str> = empresa.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["cert_kind", "cn", "cnpj", "cnpj_valid", "cpf", "cpf_valid", "expiry_alert_days", "id", "is_available", "is_default", "issuer", "key_algorithm", "key_size", "name", "not_after", "not_before", "parse_error", "responsible_name", "serial", "sha1", "superseded_by"]);
        assert_eq!(empresa["cnpj"], "11222333000181");
        assert_eq!(empresa["cnpj_valid"], true);
        assert_eq!(empresa["cpf"], "52998224725");
        assert_eq!(empresa["cpf_valid"], true);
        assert_eq!(empresa["responsible_name"], "MARIA RESPONSAVEL");
        assert_eq!(empresa["key_algorithm"], "RSA");
        assert_eq!(empresa["key_size"], 2048);
        assert!(empresa["issuer"].as_str().unwrap().contains("AC CertHub Teste"));
        assert!(empresa["serial"].is_string() && empresa["not_before"].is_string());
        assert_eq!(empresa["sha1"], thumbprint("ecnpj"));
        assert_eq!((empresa["is_default"].as_bool(), empresa["superseded_by"].is_null()), (Some(true), true));
        assert!(empresa["parse_error"].is_null() && empresa["expiry_alert_days"].is_null());
        let items = body["items"].as_array().unwrap();
        let padaria = items.iter().find(|c| c["name"] == "PADARIA BOA").unwrap();
        assert_eq!((padaria["cnpj"].as_str(), padaria["cnpj_valid"].as_bool()), (Some("11222333000182"), Some(false)), "shown and flagged");
        let jose = items.iter().find(|c| c["name"] == "JOSÉ DA SILVA").unwrap();
        assert_eq!(jose["parse_error"], "wrong password");
        assert!(jose["cpf"].is_null() && jose["cpf_valid"].is_null());

        // Names without accents or case, in any order; the responsible person; CNPJ/CPF digits.
        assert_eq!(names(&app, v, "q=jose").await, ["JOSÉ DA SILVA"]);
        assert_eq!(names(&app, v, "q=Jos%C3%A9").await, ["JOSÉ DA SILVA"]);
        assert_eq!(names(&app, v, "q=silva%20JOSE").await, ["JOSÉ DA SILVA"]);
        assert_eq!(names(&app, v, "q=empresa%20x").await, ["EMPRESA X LTDA"]);
        assert_eq!(names(&app, v, "q=maria").await, ["EMPRESA X LTDA"]);
        assert_eq!(names(&app, v, "q=11.222.333%2F0001-81").await, ["EMPRESA X LTDA"]);
        assert_eq!(names(&app, v, "q=11222333000181").await, ["EMPRESA X LTDA"]);
        assert_eq!(names(&app, v, "q=11222333").await, ["EMPRESA X LTDA", "PADARIA BOA"]);
        assert_eq!(names(&app, v, "q=529.982.247-25").await, ["EMPRESA X LTDA", "PADARIA BOA"]);
        assert!(names(&app, v, "q=inexistente").await.is_empty());
        assert!(names(&app, v, "q=%25").await.len() == 3, "a lone wildcard is no filter");

        // Status filters.
        assert_eq!(names(&app, v, "status=available").await, ["EMPRESA X LTDA", "JOSÉ DA SILVA", "PADARIA BOA"]);
        assert_eq!(names(&app, v, "status=unavailable").await, ["errada"]);
        assert_eq!(names(&app, v, "status=expired").await, ["PADARIA BOA"]);
        assert_eq!(names(&app, v, "status=expiring").await, ["EMPRESA X LTDA"]);
        assert_eq!(names(&app, v, "status=expiring&within_days=5").await, ["EMPRESA X LTDA"]);
        assert!(names(&app, v, "status=expiring&within_days=4").await.is_empty());
        assert_eq!(names(&app, v, "status=all").await.len(), 4);
        assert_eq!(names(&app, v, "status=all&q=padaria").await, ["PADARIA BOA"]);
        // Rows written before `name_search` existed are found by their name.
        db.execute("UPDATE certificates SET name_search = NULL WHERE name = 'PADARIA BOA'").await;
        assert_eq!(names(&app, v, "q=Padaria%20boa").await, ["PADARIA BOA"]);
        assert!(names(&app, v, "q=joao").await.is_empty(), "only the name, then");

        // Paging: pages of 3 cover the four certificates once, in order.
        let (_, p1) = get_json(&app, "/api/v1/certificados?status=all&page_size=3", v).await;
        let (_, p2) = get_json(&app, "/api/v1/certificados?status=all&page_size=3&page=2", v).await;
        let (_, p3) = get_json(&app, "/api/v1/certificados?status=all&page_size=3&page=3", v).await;
        assert_eq!((p1["total"].as_u64(), p2["total"].as_u64(), p3["total"].as_u64()), (Some(4), Some(4), Some(4)));
        assert_eq!((p1["items"].as_array().unwrap().len(), p2["items"].as_array().unwrap().len(), p3["items"].as_array().unwrap().len()), (3, 1, 0));
        assert_eq!(p2["page"], 2);
        let paged: Vec<Value> = p1["items"].as_array().unwrap().iter().chain(p2["items"].as_array().unwrap()).map(|c| c["id"].clone()).collect();
        let (_, all) = get_json(&app, "/api/v1/certificados?status=all", v).await;
        let all: Vec<Value> = all["items"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect();
        assert_eq!(paged, all);

        // Out of range → 422; what is not a parameter at all → 400.
        for bad in ["page_size=0", "page_size=201", "page=0", "page=-1", "page=9223372036854775807", "within_days=0", "within_days=366"] {
            let (status, body) = get_json(&app, &format!("/api/v1/certificados?{bad}"), v).await;
            assert_eq!((status, body["error"].as_str()), (422, Some("validation_error")), "{bad}: {body}");
        }
        assert_eq!(get_json(&app, "/api/v1/certificados?page_size=200", v).await.0, 200);
        for bad in ["sort=name", "status=old", "page=x"] {
            let (status, body) = get_json(&app, &format!("/api/v1/certificados?{bad}"), v).await;
            assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")), "{bad}: {body}");
        }

        // One certificate, by id.
        let id = empresa["id"].as_str().unwrap();
        let (status, one) = get_json(&app, &format!("/api/v1/certificados/{id}"), v).await;
        assert_eq!(status, 200);
        assert_eq!(one, empresa);
        let missing = uuid::Uuid::new_v4();
        assert_eq!(get_json(&app, &format!("/api/v1/certificados/{missing}"), v).await.0, 404);
        assert_eq!(get_json(&app, "/api/v1/certificados/not-an-id", v).await.0, 404);
        assert_eq!(app.get("/api/v1/certificados").await.status(), 401);
    }

    async fn an_admin_types_the_password_and_reveals_the_path(db: TestDb) {
        let root = folder(&db);
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let a = admin.access.as_str();
        let jose = cert_id(&app, a, "JOSÉ DA SILVA").await;
        let password_path = format!("/api/v1/admin/certificates/{jose}/password");

        // VIEW may not; a wrong password is refused, audited and not stored.
        let res = app.send("POST", &password_path, Some(json!({"password": ECPF_PASSWORD})), Some(&view.access), None).await;
        assert_eq!(res.status(), 403);
        let res = app.send("POST", &password_path, Some(json!({"password": "chute-errado"})), Some(a), None).await;
        assert_eq!(res.status(), 422);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body, json!({"error": "validation_error", "message": "wrong password"}));
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_PASSWORD_REJECTED' AND entity_id = '{jose}' AND actor_user_id IS NOT NULL")).await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name = 'JOSÉ DA SILVA' AND password_sealed IS NULL AND parse_error IS NOT NULL").await, 1);
        let res = app.send("POST", &password_path, Some(json!({"password": "x", "save": true})), Some(a), None).await;
        assert_eq!(res.status(), 400, "unknown fields are refused");
        let res = app.send("POST", &format!("/api/v1/admin/certificates/{}/password", uuid::Uuid::new_v4()), Some(json!({"password": "x"})), Some(a), None).await;
        assert_eq!(res.status(), 404);

        // The right one: stored sealed, the row shows what the file holds.
        let res = app.send("POST", &password_path, Some(json!({"password": ECPF_PASSWORD})), Some(a), None).await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(!text.contains(ECPF_PASSWORD), "{text}");
        let fixed: Value = serde_json::from_str(&text).unwrap();
        assert!(fixed["parse_error"].is_null(), "{fixed}");
        assert_eq!((fixed["name"].as_str(), fixed["cert_kind"].as_str(), fixed["cpf"].as_str()), (Some("JOSÉ DA SILVA"), Some("E_CPF"), Some("52998224725")));
        assert_eq!(fixed["cpf_valid"], true);
        assert_eq!(fixed["sha1"], thumbprint("ecpf"));
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_UPDATED' AND entity_id = '{jose}' AND meta_json LIKE '%password_set%' AND actor_user_id IS NOT NULL")).await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name = 'JOSÉ DA SILVA' AND password_sealed IS NOT NULL AND parse_error IS NULL").await, 1);
        assert_eq!(names(&app, &view.access, "q=jose").await, ["JOSÉ DA SILVA"]);
        let (_, one) = get_json(&app, &format!("/api/v1/certificados/{jose}"), &view.access).await;
        assert_eq!(one, fixed);
        // A rescan keeps what the admin typed (the file has not changed).
        assert!(ingest(&db, &root, &[]).stdout.contains("unchanged 4"));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name = 'JOSÉ DA SILVA' AND parse_error IS NULL").await, 1);

        // A copy of a certificate already in the catalogue is not made a second row.
        let errada = cert_id(&app, a, "errada").await;
        let errada_path = format!("/api/v1/admin/certificates/{errada}/password");
        let res = app.send("POST", &errada_path, Some(json!({"password": "1234"})), Some(a), None).await;
        assert_eq!(res.status(), 409);
        let body: Value = res.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(&thumbprint("ecnpj")), "{body}");
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name = 'errada' AND password_sealed IS NULL AND sha1 IS NULL").await, 1);
        // Without its file nothing can be checked.
        db.execute("UPDATE certificates SET pfx_sealed = NULL WHERE name = 'errada'").await;
        let res = app.send("POST", &errada_path, Some(json!({"password": "1234"})), Some(a), None).await;
        assert_eq!(res.status(), 409);

        // The raw path, for admins only, never cached, audited without the path.
        let empresa = cert_id(&app, a, "EMPRESA X LTDA").await;
        let path_url = format!("/api/v1/admin/certificates/{empresa}/source-path");
        assert_eq!(app.send("GET", &path_url, None, Some(&view.access), None).await.status(), 403);
        let res = app.send("GET", &path_url, None, Some(a), None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["source_path"], root.join("EMPRESA X LTDA Senha 1234.pfx").to_str().unwrap());
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_PATH_REVEALED' AND entity_id = '{empresa}' AND actor_user_id IS NOT NULL")).await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_PATH_REVEALED' AND (meta_json LIKE '%1234%' OR meta_json LIKE '%certificados%')").await, 0);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%Senha 1234%'").await, 0);
        let missing = uuid::Uuid::new_v4();
        assert_eq!(app.send("GET", &format!("/api/v1/admin/certificates/{missing}/source-path"), None, Some(a), None).await.status(), 404);

        // No password anywhere: audit, logs, what users see.
        for secret in [ECPF_PASSWORD, "chute-errado"] {
            assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%{secret}%'")).await, 0, "{secret}");
            assert!(!app.logs().contains(secret), "{secret} in the log");
        }
        let (_, all) = get_json(&app, "/api/v1/certificados?status=all", &view.access).await;
        assert!(!all.to_string().contains(ECPF_PASSWORD) && !all.to_string().contains("source_path"));
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn another_office_gets_404_for_this_office_certificates(db: TestDb) {
        folder(&db);
        let app = spawn_app(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let empresa = cert_id(&app, &admin.access, "EMPRESA X LTDA").await;
        let jose = cert_id(&app, &admin.access, "JOSÉ DA SILVA").await;
        let other_admin = app.onboard_in(&db, 2, "admin@outro.com.br", "ADMIN", PW).await;
        let other_view = app.onboard_in(&db, 2, "view@outro.com.br", "VIEW", PW).await;
        let audit_before = db.scalar("SELECT COUNT(*) FROM audit_log WHERE org_id = 1").await;

        for token in [&other_admin.access, &other_view.access] {
            let (status, body) = get_json(&app, "/api/v1/certificados?status=all", token).await;
            assert_eq!((status, body["total"].as_u64()), (200, Some(0)));
            assert_eq!(get_json(&app, &format!("/api/v1/certificados/{empresa}"), token).await.0, 404);
        }
        let res = app.send("POST", &format!("/api/v1/admin/certificates/{jose}/password"), Some(json!({"password": ECPF_PASSWORD})), Some(&other_admin.access), None).await;
        assert_eq!(res.status(), 404);
        let res = app.send("GET", &format!("/api/v1/admin/certificates/{empresa}/source-path"), None, Some(&other_admin.access), None).await;
        assert_eq!(res.status(), 404);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE org_id = 1").await, audit_before);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name = 'JOSÉ DA SILVA' AND password_sealed IS NULL").await, 1);
    }

    async fn the_expiry_check_sets_buckets_and_alerts_once(db: TestDb) {
        folder(&db);
        set_not_after(&db, "EMPRESA X LTDA", Duration::days(20)).await;
        set_not_after(&db, "PADARIA BOA", Duration::days(3)).await;
        // Expired, but its file left the folder: no one to alert.
        set_not_after(&db, "errada", Duration::days(-1)).await;
        db.execute("UPDATE certificates SET is_available = false WHERE name = 'errada'").await;
        let check = || {
            let out = db.run(&["certificates", "check-expiry"]);
            assert!(out.status.success(), "{out:?}");
            out.stdout.trim().to_owned()
        };
        let bucket = |name: &'static str| {
            let db = &db;
            async move { db.scalar(&format!("SELECT CAST(COALESCE(expiry_alert_days, -1) AS BIGINT) FROM certificates WHERE name = '{name}'")).await }
        };
        let alerts = || db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_EXPIRING'");

        assert_eq!(check(), "expiry check: 4 certificate(s) checked, 3 bucket(s) changed, 2 alert(s) written");
        assert_eq!((bucket("EMPRESA X LTDA").await, bucket("PADARIA BOA").await, bucket("errada").await, bucket("JOSÉ DA SILVA").await), (30, 7, 0, -1));
        assert_eq!(alerts().await, 2);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_EXPIRING' AND meta_json LIKE '%\"days\":7%' AND meta_json LIKE '%PADARIA BOA%' AND actor_user_id IS NULL").await, 1);

        // The next day's run repeats nothing.
        assert_eq!(check(), "expiry check: 4 certificate(s) checked, 0 bucket(s) changed, 0 alert(s) written");
        assert_eq!(alerts().await, 2);

        // Closer to expiry: one more alert. Renewed: back out of the buckets, silently.
        set_not_after(&db, "EMPRESA X LTDA", Duration::days(6)).await;
        assert_eq!(check(), "expiry check: 4 certificate(s) checked, 1 bucket(s) changed, 1 alert(s) written");
        assert_eq!(bucket("EMPRESA X LTDA").await, 7);
        set_not_after(&db, "PADARIA BOA", Duration::days(200)).await;
        assert_eq!(check(), "expiry check: 4 certificate(s) checked, 1 bucket(s) changed, 0 alert(s) written");
        assert_eq!(bucket("PADARIA BOA").await, -1);
        assert_eq!(alerts().await, 3);

        // What users see.
        let app = spawn_app(&db).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let (_, body) = get_json(&app, "/api/v1/certificados?status=all", &view.access).await;
        let days: Vec<(String, Value)> = body["items"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap().to_owned(), c["expiry_alert_days"].clone())).collect();
        assert!(days.contains(&("EMPRESA X LTDA".into(), json!(7))), "{days:?}");
        assert!(days.contains(&("PADARIA BOA".into(), Value::Null)), "{days:?}");
        assert!(days.contains(&("errada".into(), json!(0))), "{days:?}");
        assert!(db.run(&["audit", "verify"]).status.success());
    }
}
