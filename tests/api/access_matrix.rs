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
    // Portal pages are public; their forms refuse a POST without the CSRF cookie and field.
    ("get", "/", None, [200, 200, 200, 200, 200]),
    ("get", "/entrar", None, [200, 200, 200, 200, 200]),
    (
        "post",
        "/entrar",
        Some("csrf=x&email=a%40b.com&password=y"),
        [403, 403, 403, 403, 403],
    ),
    ("post", "/sair", Some("csrf=x"), [403, 403, 403, 403, 403]),
    ("get", "/definir-senha", None, [200, 200, 200, 200, 200]),
    (
        "post",
        "/definir-senha",
        Some("csrf=x&token=t&new_password=p&confirm=p"),
        [403, 403, 403, 403, 403],
    ),
    ("get", "/primeiro-acesso", None, [404, 404, 404, 404, 404]),
    (
        "post",
        "/primeiro-acesso",
        Some("csrf=x&token=t&nome=n&email=a%40b.com&new_password=p&confirm=p"),
        [403, 403, 403, 403, 403],
    ),
    ("get", "/static/{path:.*}", None, [200, 200, 200, 200, 200]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_role() {
    let api = certhub::http::api::docs()
        .into_iter()
        .map(|r| (r.method, r.path));
    for (method, path) in api.chain(certhub::portal::routes()) {
        assert!(
            MATRIX.iter().any(|(m, p, _, _)| *m == method && *p == path),
            "{method} {path} has no row in the access matrix"
        );
    }
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let key = certhub::crypto::MasterKey::generate();
    let key_b64 = key.to_base64().to_string();
    // The key file, so the server and the CLI both use the key the test signs DEVICE tokens with.
    std::fs::create_dir_all(db.data_dir()).unwrap();
    std::fs::write(db.data_dir().join("master.key"), key_b64).unwrap();
    // One certificate, ingested by the CLI only: the server itself has no certs_root.
    let root = db.dir().join("certificados");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("EMPRESA X LTDA Senha 1234.pfx"),
        fixture("ecnpj-aes.pfx"),
    )
    .unwrap();
    ingest(&db, &root, &[]);
    let app = spawn_app(&db).await;
    let view = app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
    let admin = app
        .onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
        .await;
    let dev = app.onboard(&db, "dev@escritorio.com.br", "DEV", PW).await;
    let device = certhub::accounts::access_token::AccessTokens::new(&key, 15)
        .issue_device(uuid::Uuid::new_v4(), certhub::domain::OrgId(1))
        .unwrap();
    let me: serde_json::Value = app
        .send("GET", "/api/v1/auth/me", None, Some(&view.access), None)
        .await
        .json()
        .await
        .unwrap();
    let view_id = me["id"].as_str().unwrap().to_owned();
    let catalogue: serde_json::Value = app
        .send(
            "GET",
            "/api/v1/certificados",
            None,
            Some(&view.access),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let cert_id = catalogue["items"][0]["id"].as_str().unwrap().to_owned();

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
            let body = body.map(|b| b.replace("{n}", &n.to_string()));
            let id = if path.contains("/certificados/") || path.contains("/certificates/") {
                &cert_id
            } else {
                &view_id
            };
            let path = path.replace("{id}", id).replace("{path:.*}", "app.css");
            let res = match body {
                // JSON for the API, a form for the portal's pages.
                Some(b) if b.starts_with('{') => {
                    let json = serde_json::from_str(&b).unwrap();
                    app.send(&method.to_uppercase(), &path, Some(json), *caller, None)
                        .await
                }
                Some(form) => {
                    let mut req = app
                        .client
                        .request(method.to_uppercase().parse().unwrap(), app.url(&path))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form);
                    if let Some(t) = caller {
                        req = req.bearer_auth(t);
                    }
                    req.send().await.unwrap()
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
