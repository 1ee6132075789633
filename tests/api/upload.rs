//! An admin sends certificate files through the API: they land in the folder, go through the
//! folder's ingest, and every file gets its outcome; a typed password is never shown again.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";
const ROUTE: &str = "/api/v1/admin/certificates/upload";
/// Thumbprint of `ecnpj-aes.pfx` (and of `ecnpj-empty-password.pfx`: the same certificate).
const EMPRESA_SHA1: &str = "7B3C178DEC16A243F74032D95D4D542955C5A8D3";

/// One part of a multipart body.
pub(crate) enum Part<'a> {
    File(&'a str, Vec<u8>),
    Password(&'a str),
    Text(&'a str, &'a str),
}

pub(crate) const BOUNDARY: &str = "certhub-test-boundary-7e1f";

pub(crate) fn form(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let (head, content): (String, &[u8]) = match part {
            Part::File(name, bytes) => (
                format!(
                    "Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/x-pkcs12\r\n"
                ),
                bytes,
            ),
            Part::Password(pw) => (
                "Content-Disposition: form-data; name=\"password\"\r\n".to_owned(),
                pw.as_bytes(),
            ),
            Part::Text(name, value) => (
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
                value.as_bytes(),
            ),
        };
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Sends `body` to the upload route as `token`: the status, the JSON body and its text.
async fn post(app: &TestApp, token: &str, body: Vec<u8>) -> (u16, Value, String) {
    let res = app
        .client
        .post(app.url(ROUTE))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

async fn upload(app: &TestApp, token: &str, parts: &[Part<'_>]) -> (u16, Value, String) {
    post(app, token, form(parts)).await
}

/// An app whose certificates folder starts empty, with a 100,000-byte file cap.
async fn app_with_folder(db: &TestDb) -> (TestApp, PathBuf) {
    let root = db.dir().join("certificados");
    std::fs::create_dir_all(&root).unwrap();
    let app = spawn_app_with(
        db,
        &[
            ("CERTHUB_CERTS_ROOT", root.to_str().unwrap()),
            ("CERTHUB_MAX_PFX_BYTES", "100000"),
        ],
    )
    .await;
    (app, root)
}

/// The names in the folder, sorted.
fn folder(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn results(body: &Value) -> &Vec<Value> {
    body["results"].as_array().expect("results")
}

on_both_databases! {
    async fn uploaded_files_are_written_ingested_sealed_and_listed(db: TestDb) {
        let (app, root) = app_with_folder(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let (status, body, text) = upload(&app, &admin.access, &[
            Part::File("EMPRESA X LTDA Senha 1234.pfx", fixture("ecnpj-aes.pfx")),
            Part::Password(""),
            Part::File("PADARIA BOA.p12", fixture("ecnpj-octet-legacy.pfx")),
            Part::Password("abc123"),
            Part::File("JOAO DA SILVA.pfx", fixture("ecpf-utf8.pfx")),
            Part::Password("sénha-ção"),
        ]).await;
        assert_eq!(status, 200, "{text}");
        let r = results(&body);
        assert_eq!(r.len(), 3, "{text}");
        assert_eq!(r[0]["file"], "EMPRESA X LTDA Senha ***.pfx");
        for (i, file) in ["EMPRESA X LTDA Senha ***.pfx", "PADARIA BOA.p12", "JOAO DA SILVA.pfx"].iter().enumerate() {
            assert_eq!(r[i]["file"], *file, "{text}");
            assert_eq!(r[i]["outcome"], "ingested", "{text}");
            assert!(r[i]["certificate_id"].is_string(), "{text}");
            assert!(r[i]["detail"].is_null(), "{text}");
        }
        for secret in ["Senha 1234", "abc123", "sénha-ção", "s\\u00e9nha"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }

        // The folder is the source of truth: the files are in it, nothing temporary is left.
        assert_eq!(folder(&root), ["EMPRESA X LTDA Senha 1234.pfx", "JOAO DA SILVA.pfx", "PADARIA BOA.p12"]);
        assert_eq!(std::fs::read(root.join("PADARIA BOA.p12")).unwrap(), fixture("ecnpj-octet-legacy.pfx"));
        // Issue 23: the names carry passwords; only the server's account reads the files.
        #[cfg(unix)]
        for name in folder(&root) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(root.join(&name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
        }

        // Listed like any certificate of the folder, readable.
        let (status, list, _) = app.call_json("GET", "/api/v1/certificados", None, &admin.access).await;
        assert_eq!(status, 200);
        let items = list["items"].as_array().unwrap();
        for (name, id) in ["EMPRESA X LTDA", "PADARIA BOA", "JOAO DA SILVA"].iter().zip(r) {
            let item = items.iter().find(|c| c["name"] == *name).unwrap_or_else(|| panic!("{name} not listed: {list}"));
            assert_eq!(item["id"], id["certificate_id"]);
            assert!(item["sha1"].is_string(), "{item}");
        }
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE parse_error IS NULL AND password_sealed IS NOT NULL AND pfx_sealed IS NOT NULL").await, 3);

        // Audited with the admin as actor, never a password.
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_UPLOADED' AND actor_user_id IS NOT NULL AND meta_json LIKE '%ingested%'").await, 3);
        // One upload, one row, right the first time: a typed password is tried before the
        // name's, so no "wrong password" failure comes before the certificate is stored.
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_PARSE_FAILED'").await, 0);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_INGESTED'").await, 3);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_UPDATED'").await, 0);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%Senha 1234%' OR meta_json LIKE '%abc123%' OR meta_json LIKE '%nha-%'").await, 0);
        let logs = app.logs();
        for secret in ["Senha 1234", "abc123", "sénha-ção"] {
            assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
        }

        // The same files again: unchanged, nothing new.
        let (status, body, text) = upload(&app, &admin.access, &[
            Part::File("EMPRESA X LTDA Senha 1234.pfx", fixture("ecnpj-aes.pfx")),
            Part::File("PADARIA BOA.p12", fixture("ecnpj-octet-legacy.pfx")),
            Part::Password(""),
        ]).await;
        assert_eq!(status, 200, "{text}");
        let again = results(&body);
        assert_eq!(again[0]["outcome"], "unchanged", "{text}");
        assert_eq!(again[1]["outcome"], "unchanged", "{text}");
        assert_eq!(again[1]["certificate_id"], r[1]["certificate_id"]);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates").await, 3);

        // Another file under a taken name, and the same certificate under another name.
        let (status, body, text) = upload(&app, &admin.access, &[
            Part::File("PADARIA BOA.p12", fixture("ecnpj-renewed.pfx")),
            Part::Password("1234"),
            Part::File("COPIA DA EMPRESA.pfx", fixture("ecnpj-empty-password.pfx")),
            Part::Password(""),
            Part::File("padaria boa.P12", fixture("ecnpj-renewed.pfx")),
            Part::Password("1234"),
        ]).await;
        assert_eq!(status, 200, "{text}");
        let refused = results(&body);
        assert_eq!(refused[0]["outcome"], "refused", "{text}");
        assert!(refused[0]["detail"].as_str().unwrap().contains("different file with this name"), "{text}");
        assert_eq!(refused[1]["outcome"], "refused", "{text}");
        assert!(refused[1]["detail"].as_str().unwrap().contains("duplicate"), "{text}");
        assert!(refused[1]["detail"].as_str().unwrap().contains(EMPRESA_SHA1), "{text}");
        assert_eq!(refused[1]["certificate_id"], r[0]["certificate_id"]);
        assert_eq!(refused[2]["outcome"], "refused", "{text}");
        assert!(refused[2]["detail"].as_str().unwrap().contains("letter case"), "{text}");
        assert_eq!(std::fs::read(root.join("PADARIA BOA.p12")).unwrap(), fixture("ecnpj-octet-legacy.pfx"));
        // Issue 23: the names carry passwords; only the server's account reads the files.
        #[cfg(unix)]
        for name in folder(&root) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(root.join(&name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
        }
        assert_eq!(folder(&root).len(), 3);
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn a_bad_file_gets_its_reason_and_leaves_nothing_behind(db: TestDb) {
        let (app, root) = app_with_folder(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let aes = fixture("ecnpj-aes.pfx");
        let (status, body, text) = upload(&app, &admin.access, &[
            Part::File("PADARIA BOA.p12", fixture("ecnpj-octet-legacy.pfx")),
            Part::Password("senha-errada"),
            Part::File("truncado.pfx", aes[..aes.len() / 2].to_vec()),
            Part::Password("1234"),
            Part::File("notas Senha 4321.txt", b"nada".to_vec()),
            Part::Password(""),
            Part::File("../fora.pfx", fixture("ecnpj-aes.pfx")),
            Part::Password("1234"),
            Part::File("grande.pfx", vec![0u8; 150_000]),
        ]).await;
        assert_eq!(status, 200, "{text}");
        let r = results(&body);
        let expect = [
            ("PADARIA BOA.p12", "failed", "wrong password"),
            ("truncado.pfx", "failed", "not a readable PKCS#12 file"),
            ("notas Senha ***", "refused", "only .pfx and .p12"),
            ("../fora.pfx", "refused", "plain name"),
            ("grande.pfx", "refused", "larger than max_pfx_bytes"),
        ];
        for (i, (file, outcome, why)) in expect.iter().enumerate() {
            assert_eq!(r[i]["file"], *file, "{text}");
            assert_eq!(r[i]["outcome"], *outcome, "{text}");
            assert!(r[i]["detail"].as_str().unwrap().contains(why), "{why}: {text}");
            assert!(r[i]["certificate_id"].is_null(), "{text}");
        }
        assert!(!text.contains("senha-errada") && !text.contains("4321"), "{text}");
        // Nothing half-stored: no file, no row, nothing outside the folder.
        assert!(folder(&root).is_empty(), "{:?}", folder(&root));
        assert!(!db.dir().join("fora.pfx").exists());
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates").await, 0);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_UPLOADED'").await, 5);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%senha-errada%' OR meta_json LIKE '%4321%'").await, 0);
        assert!(!app.logs().contains("senha-errada"), "{}", app.logs());

        // The right password later: ingested as if the failure never happened.
        let (status, body, text) = upload(&app, &admin.access, &[
            Part::File("PADARIA BOA.p12", fixture("ecnpj-octet-legacy.pfx")),
            Part::Password("abc123"),
        ]).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(results(&body)[0]["outcome"], "ingested", "{text}");
        assert_eq!(folder(&root), ["PADARIA BOA.p12"]);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE parse_error IS NULL AND is_available = true").await, 1);
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn uploads_are_bounded_and_for_admins_only(db: TestDb) {
        let (app, root) = app_with_folder(&db).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let one = || vec![Part::File("EMPRESA X LTDA Senha 1234.pfx", fixture("ecnpj-aes.pfx"))];

        let (status, _, text) = upload(&app, &view.access, &one()).await;
        assert_eq!(status, 403, "{text}");

        let names: Vec<String> = (1..=21).map(|i| format!("arquivo {i}.pfx")).collect();
        let many: Vec<Part> = names.iter().map(|n| Part::File(n, b"x".to_vec())).collect();
        let (status, body, text) = upload(&app, &admin.access, &many).await;
        assert_eq!(status, 422, "{text}");
        assert_eq!(body["error"], "validation_error");

        // Past 20 files of max_pfx_bytes (with room for headers): refused before it is read.
        let huge = vec![0u8; 21 * 110_000];
        let (status, body, text) = upload(&app, &admin.access, &[Part::File("enorme.pfx", huge)]).await;
        assert_eq!(status, 413, "{text}");
        assert_eq!(body["error"], "payload_too_large");

        let (status, _, text) = post(&app, &admin.access, b"--nope\r\nnot a multipart body".to_vec()).await;
        assert_eq!(status, 400, "{text}");
        let (status, _, text) = upload(&app, &admin.access, &[Part::Text("csrf", "x")]).await;
        assert_eq!(status, 400, "{text}");
        let (status, _, text) = upload(&app, &admin.access, &[
            Part::File("a.pfx", b"x".to_vec()), Part::Password("1"), Part::Password("2"),
        ]).await;
        assert_eq!(status, 400, "{text}");
        let res = app.send("POST", ROUTE, Some(serde_json::json!({"file": "x"})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 400);
        assert!(folder(&root).is_empty(), "{:?}", folder(&root));

        // Within the bounds, the request goes through.
        let (status, body, text) = upload(&app, &admin.access, &one()).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(results(&body)[0]["outcome"], "ingested", "{text}");
    }
}
