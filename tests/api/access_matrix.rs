//! Every route with every kind of caller, as data. A route without a row fails the test.

use crate::helpers::*;

const PW: &str = "SenhaForte123!";

/// Expected status for: no token, VIEW, ADMIN, DEV, DEVICE token.
type Row = (&'static str, &'static str, Option<&'static str>, [u16; 5]);

const MATRIX: &[Row] = &[
    ("get", "/health", None, [200, 200, 200, 200, 200]),
    ("get", "/openapi.json", None, [200, 200, 200, 200, 200]),
    (
        "post",
        "/api/v1/auth/login",
        Some(r#"{"email":"x@y.com","password":"wrong-password"}"#),
        [401, 401, 401, 401, 401],
    ),
    (
        "post",
        "/api/v1/auth/refresh",
        None,
        [401, 401, 401, 401, 401],
    ),
    (
        "post",
        "/api/v1/auth/logout",
        None,
        [200, 200, 200, 200, 200],
    ),
    ("get", "/api/v1/auth/me", None, [401, 200, 200, 200, 403]),
    (
        "post",
        "/api/v1/auth/password/set/init",
        Some(r#"{"email":"view@escritorio.com.br"}"#),
        [401, 403, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/auth/password/set/confirm",
        Some(r#"{"token":"bogus","new_password":"SenhaForte123!"}"#),
        [400, 400, 400, 400, 400],
    ),
    (
        "get",
        "/api/v1/admin/users",
        None,
        [401, 403, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/admin/users",
        Some(r#"{"email":"new-{n}@escritorio.com.br","nome":"Novo","role_global":"VIEW"}"#),
        [401, 403, 201, 201, 403],
    ),
    (
        "patch",
        "/api/v1/admin/users/{id}",
        Some(r#"{"nome":"Nome Novo"}"#),
        [401, 403, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/admin/users/{id}/unlock",
        None,
        [401, 403, 200, 200, 403],
    ),
    (
        "get",
        "/api/v1/certificados",
        None,
        [401, 200, 200, 200, 403],
    ),
    // `{id}` of a certificate route is the one certificate ingested before the server starts.
    (
        "get",
        "/api/v1/certificados/{id}",
        None,
        [401, 200, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/admin/certificates/{id}/password",
        Some(r#"{"password":"not-the-password"}"#),
        [401, 403, 422, 422, 403],
    ),
    (
        "get",
        "/api/v1/admin/certificates/{id}/source-path",
        None,
        [401, 403, 200, 200, 403],
    ),
    // No certs_root in this test: 422 once the role check passes.
    (
        "post",
        "/api/v1/admin/certificates/ingest-from-fs",
        Some(r#"{"dry_run":true}"#),
        [401, 403, 422, 422, 403],
    ),
    (
        "post",
        "/api/v1/admin/certificates/upload",
        None,
        [401, 403, 422, 422, 403],
    ),
    // No such device (or job: `{id}` of a job route is a user's id): 404 once the role passes.
    (
        "post",
        "/api/v1/certificados/{id}/install",
        Some(r#"{"device_id":"00000000-0000-0000-0000-000000000000"}"#),
        [401, 404, 404, 404, 403],
    ),
    (
        "get",
        "/api/v1/install-jobs",
        None,
        [401, 200, 200, 200, 403],
    ),
    (
        "get",
        "/api/v1/install-jobs/{id}",
        None,
        [401, 404, 404, 404, 403],
    ),
    (
        "post",
        "/api/v1/install-jobs/{id}/approve",
        Some(r#"{"reason":"piloto"}"#),
        [401, 403, 404, 404, 403],
    ),
    (
        "post",
        "/api/v1/install-jobs/{id}/deny",
        Some(r#"{"reason":"não"}"#),
        [401, 403, 404, 404, 403],
    ),
    (
        "post",
        "/api/v1/install-jobs/{id}/cancel",
        None,
        [401, 404, 404, 404, 403],
    ),
    (
        "post",
        "/api/v1/admin/jobs/reap",
        None,
        [401, 403, 200, 200, 403],
    ),
    // `{id}` of an installation route is a user's id: no such installation.
    (
        "get",
        "/api/v1/installations",
        None,
        [401, 200, 200, 200, 403],
    ),
    (
        "get",
        "/api/v1/installations/{id}",
        None,
        [401, 404, 404, 404, 403],
    ),
    (
        "post",
        "/api/v1/installations/{id}/remove",
        Some(r#"{"reason":"terminei"}"#),
        [401, 404, 404, 404, 403],
    ),
    (
        "post",
        "/api/v1/admin/devices",
        Some(
            r#"{"hostname":"PC-{n}","domain":"ESCRITORIO","os_version":"Windows 11","agent_version":"1.0.0"}"#,
        ),
        [401, 403, 201, 201, 403],
    ),
    (
        "get",
        "/api/v1/admin/devices",
        None,
        [401, 403, 200, 200, 403],
    ),
    // `{id}` of a device route is a second device, not the one whose token calls.
    (
        "get",
        "/api/v1/admin/devices/{id}",
        None,
        [401, 403, 200, 200, 403],
    ),
    (
        "patch",
        "/api/v1/admin/devices/{id}",
        Some(r#"{"hostname":"PC-RENOMEADO","owner_user_id":null}"#),
        [401, 403, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/admin/devices/{id}/rotate-token",
        None,
        [401, 403, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/admin/devices/{id}/block",
        None,
        [401, 403, 200, 200, 403],
    ),
    (
        "post",
        "/api/v1/admin/devices/{id}/unblock",
        None,
        [401, 403, 200, 200, 403],
    ),
    // Removed by the ADMIN, the computer is gone for the DEV after it.
    (
        "delete",
        "/api/v1/admin/devices/{id}",
        None,
        [401, 403, 200, 404, 403],
    ),
    ("get", "/api/v1/audit", None, [401, 403, 200, 200, 403]),
    (
        "get",
        "/api/v1/audit/export.csv",
        None,
        [401, 403, 200, 200, 403],
    ),
    (
        "get",
        "/api/v1/audit/verify",
        None,
        [401, 403, 200, 200, 403],
    ),
    // The one-line install: public (the enrollment code in the link is the credential).
    ("get", "/agent/install.ps1", None, [200, 200, 200, 200, 200]),
    (
        "get",
        "/agent/certhub-agent.exe",
        None,
        [404, 404, 404, 404, 404],
    ),
    // Agent pairing is public: the body is the credential.
    (
        "post",
        "/api/v1/agent/enroll",
        Some(
            r#"{"enrollment_code":"ABCD-EFGH-JK","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#,
        ),
        [410, 410, 410, 410, 410],
    ),
    (
        "post",
        "/api/v1/agent/auth",
        Some(r#"{"device_id":"{device_id}","device_token":"{device_token}"}"#),
        [200, 200, 200, 200, 200],
    ),
    (
        "post",
        "/api/v1/agent/heartbeat",
        Some(r#"{"agent_version":"1.0.0"}"#),
        [401, 403, 403, 403, 200],
    ),
    // `{id}` of an agent job route is a user's id: no such job (or no token) once a device calls.
    ("get", "/api/v1/agent/jobs", None, [401, 403, 403, 403, 200]),
    (
        "post",
        "/api/v1/agent/jobs/{id}/claim",
        None,
        [401, 403, 403, 403, 404],
    ),
    (
        "get",
        "/api/v1/agent/jobs/{id}/payload",
        None,
        [401, 403, 403, 403, 404],
    ),
    (
        "post",
        "/api/v1/agent/jobs/{id}/result",
        Some(r#"{"status":"FAILED"}"#),
        [401, 403, 403, 403, 404],
    ),
    (
        "get",
        "/api/v1/agent/installations",
        None,
        [401, 403, 403, 403, 200],
    ),
    (
        "post",
        "/api/v1/agent/cleanup",
        Some(r#"{"mode":"manual","removed":[]}"#),
        [401, 403, 403, 403, 200],
    ),
    // Last: the calling device is uninstalled (its token void) by its own call.
    (
        "post",
        "/api/v1/agent/uninstall",
        None,
        [401, 403, 403, 403, 200],
    ),
];

/// An office with one certificate (ingested by the CLI only: the server itself has no
/// certs_root) and a VIEW, an ADMIN and a DEV, on SQLite.
async fn office() -> (TestDb, Office) {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = Office::builder()
        .user("dev@escritorio.com.br", "DEV")
        .start(&db)
        .await;
    (db, o)
}

/// Provisions a device as the ADMIN: its id and token.
async fn provision(o: &Office, name: &str) -> (String, String) {
    let body = o.provision(name).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["device_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_role() {
    let api = certhub::http::routes::docs()
        .into_iter()
        .map(|r| (r.method, r.path));
    for (method, path) in api {
        assert!(
            MATRIX.iter().any(|(m, p, _, _)| *m == method && *p == path),
            "{method} {path} has no row in the access matrix"
        );
    }
    let (_db, o) = office().await;
    let (app, view, admin, dev) = (&o.app, &o.view, &o.admin, o.user("dev@escritorio.com.br"));
    // The calling device, paired for real, and a second one the admin routes act on.
    let (device_id, device_token) = provision(&o, "PC-MATRIZ").await;
    let device = o.device_jwt(&device_id, &device_token).await;
    let (target_device_id, _) = provision(&o, "PC-DESTINO").await;
    let (view_id, cert_id) = (o.view_id.clone(), o.cert.clone());

    let callers: [Option<&str>; 5] = [
        None,
        Some(&view.access),
        Some(&admin.access),
        Some(&dev.access),
        Some(&device),
    ];
    let mut n = 0;
    for (method, path, body, expected) in MATRIX {
        for (i, caller) in callers.iter().enumerate() {
            n += 1;
            let body = body.map(|b| {
                b.replace("{n}", &n.to_string())
                    .replace("{device_id}", &device_id)
                    .replace("{device_token}", &device_token)
            });
            let id = if path.contains("/certificados/") || path.contains("/certificates/") {
                &cert_id
            } else if path.contains("/devices/") {
                &target_device_id
            } else {
                &view_id
            };
            let path = path.replace("{id}", id);
            let res = match body {
                Some(b) => {
                    let json = serde_json::from_str(&b).unwrap();
                    app.send(&method.to_uppercase(), &path, Some(json), *caller, None)
                        .await
                }
                None => {
                    app.send(&method.to_uppercase(), &path, None, *caller, None)
                        .await
                }
            };
            let who = ["anonymous", "VIEW", "ADMIN", "DEV", "DEVICE"][i];
            assert_eq!(
                res.status().as_u16(),
                expected[i],
                "{method} {path} as {who}: {}",
                res.text().await.unwrap()
            );
        }
    }
}

/// Expected status of a portal page for: anonymous, VIEW, ADMIN, DEV (cookie sessions). A 303
/// for the anonymous caller must lead to `/entrar`; a 303 for a logged-in one must not.
type PortalRow = (&'static str, &'static str, Option<&'static str>, [u16; 4]);

/// Every portal route. `{csrf}` is the caller's own token (so the role is what is tested);
/// `{id}` is the certificate, the device or the VIEW user of the page, and for requests and
/// installations an id nothing has. The logout row runs last.
const PORTAL: &[PortalRow] = &[
    ("get", "/", None, [200, 200, 200, 200]),
    ("get", "/entrar", None, [200, 303, 303, 303]),
    ("get", "/definir-senha", None, [404, 404, 404, 404]),
    (
        "post",
        "/definir-senha",
        Some("csrf={csrf}&token=bogus&new_password=SenhaForte123!&confirm=SenhaForte123!"),
        [404, 404, 404, 404],
    ),
    ("get", "/primeiro-acesso", None, [404, 404, 404, 404]),
    (
        "post",
        "/primeiro-acesso",
        Some(
            "csrf={csrf}&token=t&nome=n&email=a%40b.com&new_password=SenhaForte123!&confirm=SenhaForte123!",
        ),
        [404, 404, 404, 404],
    ),
    ("get", "/certificados", None, [303, 200, 200, 200]),
    ("get", "/certificados/enviar", None, [303, 403, 200, 200]),
    // multipart: no certificates folder is configured here, so an ADMIN's upload is 422.
    (
        "post",
        "/certificados/enviar",
        Some("multipart:{csrf}"),
        [303, 403, 422, 422],
    ),
    ("get", "/certificados/{id}", None, [303, 200, 200, 200]),
    (
        "post",
        "/certificados/{id}/instalar",
        Some("csrf={csrf}&device_id={device}&duration_minutes=&reason=matriz"),
        [303, 303, 303, 303],
    ),
    (
        "post",
        "/certificados/{id}/senha",
        Some("csrf={csrf}&password=errada"),
        [303, 403, 422, 422],
    ),
    (
        "post",
        "/certificados/{id}/caminho",
        Some("csrf={csrf}"),
        [303, 403, 200, 200],
    ),
    ("get", "/solicitacoes", None, [303, 200, 200, 200]),
    ("get", "/solicitacoes/eventos", None, [303, 200, 200, 200]),
    (
        "post",
        "/solicitacoes/{id}/aprovar",
        Some("csrf={csrf}"),
        [303, 403, 404, 404],
    ),
    (
        "post",
        "/solicitacoes/{id}/negar",
        Some("csrf={csrf}&reason=nao"),
        [303, 403, 404, 404],
    ),
    (
        "post",
        "/solicitacoes/{id}/cancelar",
        Some("csrf={csrf}"),
        [303, 404, 404, 404],
    ),
    ("get", "/instalacoes", None, [303, 200, 200, 200]),
    (
        "post",
        "/instalacoes/{id}/remover",
        Some("csrf={csrf}"),
        [303, 404, 404, 404],
    ),
    ("get", "/dispositivos", None, [303, 403, 200, 200]),
    (
        "post",
        "/dispositivos",
        Some("csrf={csrf}&hostname=PC-{n}&owner_user_id="),
        [303, 403, 200, 200],
    ),
    ("get", "/dispositivos/{id}", None, [303, 403, 200, 200]),
    (
        "post",
        "/dispositivos/{id}",
        Some("csrf={csrf}&hostname=PC-ALVO&owner_user_id="),
        [303, 403, 303, 303],
    ),
    (
        "post",
        "/dispositivos/{id}/token",
        Some("csrf={csrf}"),
        [303, 403, 200, 200],
    ),
    (
        "post",
        "/dispositivos/{id}/bloquear",
        Some("csrf={csrf}"),
        [303, 403, 303, 303],
    ),
    (
        "post",
        "/dispositivos/{id}/desbloquear",
        Some("csrf={csrf}"),
        [303, 403, 303, 303],
    ),
    // Removed by the ADMIN, the computer is gone for the DEV after it.
    (
        "post",
        "/dispositivos/{id}/remover",
        Some("csrf={csrf}"),
        [303, 403, 303, 404],
    ),
    ("get", "/usuarios", None, [303, 403, 200, 200]),
    (
        "post",
        "/usuarios",
        Some("csrf={csrf}&nome=Novo&email=novo-{n}%40escritorio.com.br&role_global=VIEW"),
        [303, 403, 200, 200],
    ),
    (
        "post",
        "/usuarios/{id}",
        Some("csrf={csrf}&role_global=VIEW&is_active=on"),
        [303, 403, 303, 303],
    ),
    (
        "post",
        "/usuarios/{id}/link",
        Some("csrf={csrf}"),
        [303, 403, 200, 200],
    ),
    (
        "post",
        "/usuarios/{id}/desbloquear",
        Some("csrf={csrf}"),
        [303, 403, 303, 303],
    ),
    ("get", "/auditoria", None, [303, 403, 200, 200]),
    ("get", "/auditoria/export.csv", None, [303, 403, 200, 200]),
    (
        "post",
        "/auditoria/quebra/ciente",
        Some("csrf={csrf}"),
        [303, 403, 303, 303],
    ),
    ("get", "/static/{path:.*}", None, [200, 200, 200, 200]),
    (
        "post",
        "/entrar",
        Some("csrf={csrf}&email=ninguem%40escritorio.com.br&password=errada"),
        [401, 401, 401, 401],
    ),
    ("post", "/sair", Some("csrf={csrf}"), [303, 303, 303, 303]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_portal_page_with_every_role() {
    for (method, path) in certhub::portal::routes() {
        assert!(
            PORTAL.iter().any(|(m, p, _, _)| *m == method && *p == path),
            "{method} {path} has no row in the portal access matrix"
        );
    }
    let (_db, o) = office().await;
    let app = &o.app;
    let (device_id, _) = provision(&o, "PC-MATRIZ").await;
    let (view_id, cert_id) = (o.view_id.clone(), o.cert.clone());
    let job_id = uuid::Uuid::new_v4().to_string();

    let mut callers = vec![anonymous(app).await];
    for email in [
        "view@escritorio.com.br",
        "admin@escritorio.com.br",
        "dev@escritorio.com.br",
    ] {
        callers.push(session(app, email, PW).await);
    }
    let mut n = 0;
    let mut wrong = Vec::new();
    let fill = |s: &str, csrf: &str, n: i32| {
        let id = if s.starts_with("/certificados/") {
            &cert_id
        } else if s.starts_with("/dispositivos/") {
            &device_id
        } else if s.starts_with("/usuarios/") {
            &view_id
        } else {
            &job_id
        };
        s.replace("{id}", id)
            .replace("{csrf}", csrf)
            .replace("{cert}", &cert_id)
            .replace("{device}", &device_id)
            .replace("{user}", &view_id)
            .replace("{job}", &job_id)
            .replace("{path:.*}", "app.css")
            .replace("{n}", &n.to_string())
    };
    for (method, path, form, expected) in PORTAL {
        for (i, (browser, csrf)) in callers.iter().enumerate() {
            n += 1;
            let who = ["anonymous", "VIEW", "ADMIN", "DEV"][i];
            let url = app.url(&fill(path, csrf, n));
            let res = match form {
                Some(f) => portal_post(browser, &url, &fill(f, csrf, n)).await,
                None => browser.get(&url).send().await.unwrap(),
            };
            let status = res.status().as_u16();
            let location = res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            let text = if path.ends_with("/eventos") {
                String::new()
            } else {
                res.text().await.unwrap()
            };
            if status != expected[i] {
                let excerpt: String = text.chars().take(300).collect();
                wrong.push(format!(
                    "{method} {path} as {who}: {status}, expected {} ({excerpt})",
                    expected[i]
                ));
            } else if status == 303 && *path != "/sair" && *path != "/entrar" {
                // The login, remembering the page a GET asked for (`?volta=`).
                let to_login = location.as_deref().is_some_and(|l| {
                    l == "/entrar" || (*method == "get" && l.starts_with("/entrar?volta=%2F"))
                });
                if to_login != (i == 0) {
                    wrong.push(format!("{method} {path} as {who} -> {location:?}"));
                }
            }
        }
        // Without the caller's CSRF token every form is refused, whoever sends it.
        if form.is_some() && *path != "/sair" {
            let (admin_browser, _) = &callers[2];
            let res = portal_post(
                admin_browser,
                &app.url(&fill(path, "forjado", n)),
                &fill(form.unwrap(), "forjado", n),
            )
            .await;
            if res.status() != 403 {
                wrong.push(format!(
                    "{method} {path} with a forged CSRF token: {}",
                    res.status()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A portal form: URL-encoded, or `multipart:<csrf>` for the upload form (with an empty file
/// row, as a browser sends it).
async fn portal_post(browser: &reqwest::Client, url: &str, form: &str) -> reqwest::Response {
    use crate::upload::{BOUNDARY, Part};
    let req = match form.strip_prefix("multipart:") {
        Some(csrf) => browser
            .post(url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(crate::upload::form(&[
                Part::Text("csrf", csrf),
                Part::File("", Vec::new()),
                Part::Password(""),
            ])),
        None => browser
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned()),
    };
    req.send().await.unwrap()
}
