//! The portal's pages over HTTP with cookie sessions, on SQLite and PostgreSQL: what each role
//! sees, the request -> approval -> agent flow through the forms, the live status stream, and
//! that no secret and no unescaped certificate name reaches a page.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

async fn page(b: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let res = b.get(app.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

async fn post(
    b: &reqwest::Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    b.post(app.url(path)).form(form).send().await.unwrap()
}

/// Nothing secret and no live markup from a certificate name.
fn assert_clean(html: &str, office: &PortalOffice, path: &str) {
    for secret in [
        "Senha 1234",
        "1234.pfx",
        office.device_token.as_str(),
        "pfx_sealed",
        "password_sealed",
        "token_hash",
        XSS_SCRIPT,
        "<img src=x",
    ] {
        assert!(!html.contains(secret), "{path} shows {secret:?}");
    }
}

on_both_databases! {
    async fn every_page_for_each_role(db: TestDb) {
        let o = portal_office(&db).await;
        let app = &o.app;
        let (view, _) = session(app, "view@escritorio.com.br", PW).await;
        let (admin, _) = session(app, "admin@escritorio.com.br", PW).await;
        let (_, catalogue, _) = app.call_json("GET", "/api/v1/certificados", None, &o.view.access).await;
        let cert = catalogue["items"][0]["id"].as_str().unwrap().to_owned();

        // VIEW: the pages of a VIEW, in Portuguese, the navigation without the admin areas.
        for (path, expected) in [
            ("/", "Meus certificados instalados agora"),
            ("/certificados", "Empresa (e-CNPJ)"),
            ("/certificados?q=11.222.333%2F0001-81", "Certificados"),
            (&format!("/certificados/{cert}") as &str, "Instalar no meu computador"),
            ("/solicitacoes", "Minhas solicitações"),
            ("/instalacoes", "Minhas instalações"),
        ] {
            let (status, html) = page(&view, app, path).await;
            assert_eq!(status, 200, "{path}");
            assert!(html.contains(expected), "{path}: {html}");
            assert!(!html.contains("href=\"/auditoria\""), "{path} links the audit log for a VIEW");
            assert!(!html.contains("Precisa de atenção"), "{path}");
            assert_clean(&html, &o, path);
        }
        for path in ["/dispositivos", "/usuarios", "/auditoria", "/auditoria/export.csv"] {
            let (status, html) = page(&view, app, path).await;
            assert_eq!(status, 403, "{path}");
            assert!(html.contains("Acesso negado"), "{path}: {html}");
        }
        // A certificate named with markup is text, escaped.
        let (_, html) = page(&view, app, "/certificados").await;
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "{html}");

        // ADMIN: the admin areas, the dashboard's attention tiles, the device page.
        for (path, expected) in [
            ("/", "Precisa de atenção"),
            ("/solicitacoes", "Solicitações do escritório"),
            ("/instalacoes", "Instalações do escritório"),
            ("/dispositivos", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("/usuarios", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("/dispositivos", "PC-JOANA"),
            (&format!("/dispositivos/{}", o.device_id) as &str, "aguardando pareamento"),
            ("/usuarios", "view@escritorio.com.br"),
            ("/auditoria", "registros íntegros"),
            ("/auditoria?action=DEVICE_PROVISIONED", "DEVICE_PROVISIONED"),
            ("/certificados?status=unreadable", "JOSÉ DA SILVA"),
        ] {
            let (status, html) = page(&admin, app, path).await;
            assert_eq!(status, 200, "{path}");
            assert!(html.contains(expected), "{path}: {html}");
            assert!(html.contains("href=\"/auditoria\""), "{path}");
            assert_clean(&html, &o, path);
        }

        // Dates in the office's zone and Brazilian form.
        let (_, html) = page(&admin, app, "/usuarios").await;
        let today = chrono::Utc::now().with_timezone(&chrono_tz::America::Sao_Paulo).format("%d/%m/%Y").to_string();
        assert!(html.contains(&today), "{html}");

        // Security headers on every page.
        let res = view.get(app.url("/certificados")).send().await.unwrap();
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>") && !html.contains(" style="), "no inline script or style");
    }

    async fn request_approve_and_install_through_the_pages(db: TestDb) {
        let o = portal_office(&db).await;
        let app = &o.app;
        let (view, view_csrf) = session(app, "view@escritorio.com.br", PW).await;
        let (admin, admin_csrf) = session(app, "admin@escritorio.com.br", PW).await;

        // Search by CNPJ without punctuation, then ask for the install.
        let (_, html) = page(&view, app, "/certificados?q=11222333000181").await;
        let at = html.find("href=\"/certificados/").expect("a result") + "href=\"/certificados/".len();
        let cert = html[at..at + 36].to_owned();
        let (_, html) = page(&view, app, &format!("/certificados/{cert}")).await;
        assert!(html.contains("PC-JOANA (meu)"), "{html}");
        let res = post(&view, app, &format!("/certificados/{cert}/instalar"), &[
            ("csrf", &view_csrf), ("device_id", &o.device_id), ("duration_minutes", "60"), ("reason", "emitir NF-e"),
        ]).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/solicitacoes?ok=solicitado");
        let (_, html) = page(&view, app, "/solicitacoes?ok=solicitado").await;
        assert!(html.contains("Pedido enviado") && html.contains("data-status=\"REQUESTED\""), "{html}");

        // The admin's queue: deny needs a reason, approve moves it to PENDING.
        let (_, html) = page(&admin, app, "/solicitacoes?status=REQUESTED").await;
        let at = html.find("action=\"/solicitacoes/").expect("a queued request") + "action=\"/solicitacoes/".len();
        let job = html[at..at + 36].to_owned();
        let res = post(&admin, app, &format!("/solicitacoes/{job}/negar"), &[("csrf", &admin_csrf), ("reason", "")]).await;
        assert_eq!(res.status(), 422);
        assert!(res.text().await.unwrap().contains("Informe o motivo"));
        let res = post(&admin, app, &format!("/solicitacoes/{job}/aprovar"), &[("csrf", &admin_csrf)]).await;
        assert_eq!(res.status(), 303);
        let (_, html) = page(&view, app, "/solicitacoes").await;
        assert!(html.contains("data-status=\"PENDING\""), "{html}");

        // A scripted agent claims it and reports DONE: the installation shows, with "Remover agora".
        let agent = o.device_jwt(&o.device_id, &o.device_token).await;
        let (status, _, text) = app.call_json("POST", &format!("/api/v1/agent/jobs/{job}/claim"), None, &agent).await;
        assert_eq!(status, 200, "{text}");
        let (_, cert_json, _) = app.call_json("GET", &format!("/api/v1/certificados/{cert}"), None, &o.view.access).await;
        let (status, _, text) = app.call_json(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(serde_json::json!({"status": "DONE", "thumbprint": cert_json["sha1"]})),
            &agent,
        ).await;
        assert_eq!(status, 200, "{text}");
        let (_, html) = page(&view, app, "/solicitacoes").await;
        assert!(html.contains("data-status=\"DONE\""), "{html}");
        let (_, html) = page(&view, app, "/").await;
        assert!(html.contains("PC-JOANA") && html.contains("Remover agora"), "{html}");
        let at = html.find("action=\"/instalacoes/").unwrap() + "action=\"/instalacoes/".len();
        let installation = html[at..at + 36].to_owned();
        let res = post(&view, app, &format!("/instalacoes/{installation}/remover"), &[("csrf", &view_csrf), ("back", "/")]).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/?ok=remocao");
        let (_, html) = page(&view, app, "/instalacoes").await;
        assert!(html.contains("remoção:"), "{html}");
        // A link to elsewhere is not followed after the form.
        let res = post(&view, app, &format!("/instalacoes/{installation}/remover"), &[("csrf", &view_csrf), ("back", "https://example.com/")]).await;
        assert_eq!(res.headers()["location"], "/instalacoes?ok=remocao");

        // The audit page lists the steps and the CSV downloads with a BOM.
        let (_, html) = page(&admin, app, &format!("/auditoria?entity_id={job}")).await;
        for action in ["INSTALL_REQUESTED", "INSTALL_APPROVED", "INSTALL_CLAIMED", "INSTALL_DONE"] {
            assert!(html.contains(action), "{action}: {html}");
        }
        let res = admin.get(app.url(&format!("/auditoria/export.csv?entity_id={job}"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-disposition"].to_str().unwrap().contains("auditoria.csv"));
        let bytes = res.bytes().await.unwrap();
        // The office's CSV: BOM, Portuguese columns, `;` (the API's keeps `seq,at,action,...`).
        assert!(bytes.starts_with("\u{feff}Registro;Quando;Ação;Código".as_bytes()));
        assert!(String::from_utf8_lossy(&bytes).contains("INSTALL_DONE"));
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn the_requests_page_streams_status_changes(db: TestDb) {
        let o = portal_office(&db).await;
        let app = &o.app;
        let (view, _) = session(app, "view@escritorio.com.br", PW).await;
        let (_, catalogue, _) = app.call_json("GET", "/api/v1/certificados", None, &o.view.access).await;
        let cert = catalogue["items"][0]["id"].as_str().unwrap().to_owned();
        let (_, html) = page(&view, app, "/solicitacoes").await;
        let at = html.find("data-live=\"").unwrap() + "data-live=\"".len();
        let live = html[at..].split('"').next().unwrap().replace("&amp;", "&");
        let mut stream = view.get(app.url(&live)).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        assert_eq!(stream.headers()["content-type"], "text/event-stream");

        // Requested through the API: the stream carries the new row.
        let (status, job, text) = app.call_json(
            "POST",
            &format!("/api/v1/certificados/{cert}/install"),
            Some(serde_json::json!({"device_id": o.device_id})),
            &o.view.access,
        ).await;
        assert_eq!(status, 201, "{text}");
        let job = job["id"].as_str().unwrap().to_owned();
        let mut seen = String::new();
        let wait_for = async |stream: &mut reqwest::Response, seen: &mut String, want: String| -> Duration {
            let started = Instant::now();
            while !seen.contains(&want) {
                let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                    .await
                    .unwrap_or_else(|_| panic!("no event with {want} in 5 s: {seen}"))
                    .unwrap()
                    .expect("stream open");
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            started.elapsed()
        };
        wait_for(&mut stream, &mut seen, "\"status\":\"REQUESTED\"".to_owned()).await;
        assert!(seen.contains(&job) && seen.contains("event: job"), "{seen}");

        // Approved by the admin: the VIEW's stream shows PENDING within a second.
        let approved_at = Instant::now();
        let (status, _, text) = app.call_json(
            "POST",
            &format!("/api/v1/install-jobs/{job}/approve"),
            Some(serde_json::json!({})),
            &o.admin.access,
        ).await;
        assert_eq!(status, 200, "{text}");
        wait_for(&mut stream, &mut seen, "\"status\":\"PENDING\"".to_owned()).await;
        let latency = approved_at.elapsed();
        assert!(latency < Duration::from_secs(1), "PENDING reached the page after {latency:?}");

        // The agent's claim and failure, with its reason, arrive the same way.
        let agent = o.device_jwt(&o.device_id, &o.device_token).await;
        app.call_json("POST", &format!("/api/v1/agent/jobs/{job}/claim"), None, &agent).await;
        wait_for(&mut stream, &mut seen, "\"status\":\"IN_PROGRESS\"".to_owned()).await;
        app.call_json(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(serde_json::json!({"status": "FAILED", "error_code": "IMPORT_REFUSED", "error_message": "store refused <b>x</b>"})),
            &agent,
        ).await;
        wait_for(&mut stream, &mut seen, "\"status\":\"FAILED\"".to_owned()).await;
        assert!(seen.contains("Motivo: store refused &lt;b&gt;x&lt;/b&gt;"), "{seen}");
        assert!(!seen.contains(&o.device_token));
        let _ = o.view_id;
    }

    async fn the_audit_page_shows_the_chain_check(db: TestDb) {
        let o = portal_office(&db).await;
        let app = &o.app;
        let (admin, _) = session(app, "admin@escritorio.com.br", PW).await;
        let (_, html) = page(&admin, app, "/auditoria").await;
        assert!(html.contains("registros íntegros"), "{html}");
        // An old row changed behind the server's back: the incremental check (rows written
        // since) does not read it; the full walk finds it.
        db.execute("UPDATE audit_log SET meta_json = '{\"forged\":true}' WHERE seq = 2").await;
        let (_, html) = page(&admin, app, "/auditoria").await;
        assert!(html.contains("registros íntegros"), "{html}");
        let (_, html) = page(&admin, app, "/auditoria?verificar=tudo").await;
        assert!(html.contains("A cadeia de registros da auditoria está quebrada") && html.contains("no registro 2"), "{html}");
        // Once found, the break stays on the page: the checkpoint was forgotten.
        let (_, html) = page(&admin, app, "/auditoria").await;
        assert!(html.contains("está quebrada"), "the checkpoint was forgotten: {html}");
    }

    async fn an_admin_sends_certificates_from_the_browser(db: TestDb) {
        use crate::upload::{BOUNDARY, Part, form};
        let root = db.dir().join("pasta");
        std::fs::create_dir_all(&root).unwrap();
        let app = spawn_app_with(&db, &[("CERTHUB_CERTS_ROOT", root.to_str().unwrap())]).await;
        app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW).await;
        app.onboard(&db, "view@escritorio.com.br", "VIEW", PW).await;
        let (admin, csrf) = session(&app, "admin@escritorio.com.br", PW).await;
        let (status, html) = page(&admin, &app, "/certificados/enviar").await;
        assert_eq!(status, 200);
        assert!(html.contains("enctype=\"multipart/form-data\"") && html.contains("name=\"password\""), "{html}");
        let send = |parts: Vec<u8>| {
            admin
                .post(app.url("/certificados/enviar"))
                .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
                .body(parts)
                .send()
        };
        // One file with the password in its name, one with a typed password, an empty row,
        // a corrupt file and a name that is not a certificate.
        let res = send(form(&[
            Part::Text("csrf", &csrf),
            Part::File("EMPRESA X LTDA Senha 1234.pfx", fixture("ecnpj-aes.pfx")),
            Part::Password(""),
            Part::File("RENOVADA.pfx", fixture("ecnpj-renewed.pfx")),
            Part::Password("1234"),
            Part::File("", Vec::new()),
            Part::Password(""),
            Part::File("quebrado.pfx", b"not a pkcs12 file".to_vec()),
            Part::Password("x"),
            Part::File("notas.txt", b"texto".to_vec()),
        ]))
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        assert!(html.contains("Resultado do envio"), "{html}");
        assert_eq!(html.matches("guardado").count(), 2, "{html}");
        assert!(html.contains("não abriu") && html.contains("recusado"), "{html}");
        // Why, in the office's words (issue 22, point 13).
        assert!(html.contains("O arquivo não é um certificado .pfx legível"), "{html}");
        assert!(html.contains("Só arquivos .pfx e .p12 são aceitos."), "{html}");
        assert!(!html.contains("PKCS#12 file") && !html.contains("only .pfx"), "{html}");
        assert!(!html.contains("1234"), "a password reached the page: {html}");
        assert!(root.join("RENOVADA.pfx").exists() && root.join("EMPRESA X LTDA Senha 1234.pfx").exists());
        assert!(!root.join("quebrado.pfx").exists(), "a bad file is not kept");
        let (_, html) = page(&admin, &app, "/certificados?q=11222333000181").await;
        assert_eq!(html.matches("href=\"/certificados/").count() - html.matches("href=\"/certificados/enviar").count(), 2, "{html}");

        // A forged form stores nothing; a VIEW is refused.
        let res = send(form(&[
            Part::Text("csrf", "forjado"),
            Part::File("OUTRA Senha 1234.pfx", fixture("ecnpj-aes.pfx")),
        ]))
        .await
        .unwrap();
        assert_eq!(res.status(), 403);
        assert!(!root.join("OUTRA Senha 1234.pfx").exists());
        let (view, _) = session(&app, "view@escritorio.com.br", PW).await;
        let (status, _) = page(&view, &app, "/certificados/enviar").await;
        assert_eq!(status, 403);
    }

    async fn an_admin_types_the_password_of_a_file_that_did_not_open(db: TestDb) {
        let o = portal_office(&db).await;
        let app = &o.app;
        let (admin, csrf) = session(app, "admin@escritorio.com.br", PW).await;
        let (view, _) = session(app, "view@escritorio.com.br", PW).await;
        let (_, html) = page(&admin, app, "/").await;
        assert!(html.contains("<strong>1</strong><span>arquivo que não abriu</span>"), "{html}");
        let (_, html) = page(&admin, app, "/certificados?status=unreadable").await;
        assert!(html.contains("JOSÉ DA SILVA") && html.contains("não abriu"), "{html}");
        let (_, html) = page(&view, app, "/certificados?status=unreadable").await;
        assert!(!html.contains("não abriu"), "a VIEW does not get the admin's list: {html}");
        let (_, html) = page(&admin, app, "/certificados?status=unreadable").await;
        let at = html.find("<td><a href=\"/certificados/").unwrap() + "<td><a href=\"/certificados/".len();
        let cert = html[at..at + 36].to_owned();
        let (_, html) = page(&admin, app, &format!("/certificados/{cert}")).await;
        assert!(html.contains("O arquivo não abriu") && html.contains("Guardar senha"), "{html}");
        let res = post(&admin, app, &format!("/certificados/{cert}/senha"), &[("csrf", &csrf), ("password", "chute")]).await;
        assert_eq!(res.status(), 422);
        let res = post(&admin, app, &format!("/certificados/{cert}/senha"), &[("csrf", &csrf), ("password", "sénha-ção")]).await;
        assert_eq!(res.status(), 303);
        let (_, html) = page(&admin, app, &format!("/certificados/{cert}?ok=senha")).await;
        assert!(html.contains("Senha do certificado guardada") && html.contains("Pessoa (e-CPF)"), "{html}");
        assert!(!html.contains("sénha") && !html.contains("Guardar senha"), "{html}");
        // The path reveal is a deliberate, audited click.
        let res = post(&admin, app, &format!("/certificados/{cert}/caminho"), &[("csrf", &csrf)]).await;
        assert_eq!(res.status(), 200);
        assert!(res.text().await.unwrap().contains("senha errada.pfx"));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_PATH_REVEALED'").await, 1);
    }
}
