//! The portal in a real headless Chromium (WebDriver): the request flow between two browser
//! sessions with the status arriving live, a keyboard-only walk, the audit page and its CSV,
//! a forged POST refused, axe-core on every page of every role, and screenshots of them all
//! under `target/portal-screenshots/`.

use std::time::{Duration, Instant};

use crate::helpers::browser::Browser;
use crate::helpers::*;

const PW: &str = "SenhaForte123!";
const ENTER: &str = "\u{E007}";

fn shot(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/portal-screenshots")
        .join(format!("{name}.png"))
}

async fn login(b: &Browser, app: &TestApp, email: &str) {
    b.goto(&app.url("/entrar")).await;
    b.type_into("input[name=email]", email).await;
    b.type_into("input[name=password]", PW).await;
    b.click("form.card button[type=submit]").await;
    let home = b.wait_for_text("Painel").await;
    assert!(home.contains("Olá, "), "{home}");
}

/// Waits (up to `within`) until the URL contains `part`.
async fn wait_for_url_part(b: &Browser, part: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let url = b.url().await;
        if url.contains(part) || Instant::now() > deadline {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Visits each page, runs axe-core on it and saves its screenshot; returns the violations.
async fn walk(b: &Browser, app: &TestApp, role: &str, pages: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, path) in pages {
        b.goto(&app.url(path)).await;
        b.screenshot(&shot(&format!("{role}-{name}"))).await;
        if let Some(violations) = b.axe().await {
            for v in violations {
                found.push(format!("{role} {path}: {v}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_flow_in_two_real_browsers() {
    let Some(view) = Browser::start().await else {
        return;
    };
    let admin = Browser::start().await.expect("a second browser");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = portal_office(&db).await;
    let app = &o.app;
    view.set_size(1366, 768).await;
    admin.set_size(1280, 900).await;

    let mut violations = walk(&view, app, "anonimo", &[("entrar", "/entrar".into())]).await;
    login(&view, app, "view@escritorio.com.br").await;
    login(&admin, app, "admin@escritorio.com.br").await;

    // VIEW, keyboard only: search by CNPJ, open the certificate, ask for the install.
    view.goto(&app.url("/certificados")).await;
    assert!(
        view.tab_to("input[name=q]").await,
        "the search field is reachable by Tab"
    );
    view.press(&format!("11222333000181{ENTER}")).await;
    let url = wait_for_url_part(&view, "q=11222333000181", Duration::from_secs(10)).await;
    assert!(url.contains("q=11222333000181"), "{url}");
    assert!(
        view.tab_to("td a[href^='/certificados/']").await,
        "a result is reachable by Tab"
    );
    view.press(ENTER).await;
    view.wait_for_text("Instalar no meu computador").await;
    assert!(view.tab_to("select[name=device_id]").await);
    assert!(view.tab_to("input[name=reason]").await);
    view.press("emitir NF-e").await;
    assert!(view.tab_to("form.card button[type=submit]").await);
    view.press(ENTER).await;
    let url = wait_for_url_part(
        &view,
        "/solicitacoes?ok=solicitado",
        Duration::from_secs(10),
    )
    .await;
    assert!(url.contains("/solicitacoes?ok=solicitado"), "{url}");
    let page = view.wait_for_text("data-status=\"REQUESTED\"").await;
    assert!(page.contains("Pedido enviado"), "{page}");
    // The same document from here on: no reload.
    view.script("window.__certhubSamePage = true; return true;")
        .await;

    // ADMIN, in another session: approve. The VIEW's page shows it without a reload.
    admin.goto(&app.url("/solicitacoes?status=REQUESTED")).await;
    admin.wait_for_text("Aprovar").await;
    let approved = Instant::now();
    admin.click("form[action$='/aprovar'] button").await;
    let page = view.wait_for_text("data-status=\"PENDING\"").await;
    let latency = approved.elapsed();
    assert!(page.contains("data-status=\"PENDING\""), "{page}");
    assert!(
        latency < Duration::from_secs(2),
        "PENDING shown after {latency:?}"
    );
    println!("approve -> VIEW page shows PENDING: {latency:?}");

    // Deciding returned the admin to the tab it was on (waiting requests, none left now); the
    // approved row is under "Todas". A scripted agent claims and reports DONE: the VIEW's page
    // shows it, still without a reload.
    let back = admin.url().await;
    assert!(
        back.contains("/solicitacoes?status=REQUESTED&ok=aprovado"),
        "{back}"
    );
    admin.goto(&app.url("/solicitacoes")).await;
    let html = admin.wait_for_text("data-job=\"").await;
    let at = html.find("data-job=\"").expect("the approved row") + "data-job=\"".len();
    let job = html[at..at + 36].to_owned();
    let agent = o.device_jwt(&o.device_id, &o.device_token).await;
    let (status, _, text) = app
        .call_json(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/claim"),
            None,
            &agent,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let page = view.wait_for_text("data-status=\"IN_PROGRESS\"").await;
    assert!(page.contains("Instalando"), "{page}");
    let (_, job_json, _) = app
        .call_json(
            "GET",
            &format!("/api/v1/install-jobs/{job}"),
            None,
            &o.admin.access,
        )
        .await;
    let cert = job_json["cert"]["id"].as_str().unwrap().to_owned();
    let (_, cert_json, _) = app
        .call_json(
            "GET",
            &format!("/api/v1/certificados/{cert}"),
            None,
            &o.admin.access,
        )
        .await;
    let (status, _, text) = app
        .call_json(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(serde_json::json!({"status": "DONE", "thumbprint": cert_json["sha1"]})),
            &agent,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let page = view.wait_for_text("data-status=\"DONE\"").await;
    assert!(page.contains("Concluída"), "{page}");
    assert_eq!(
        view.script("return window.__certhubSamePage === true;")
            .await,
        true,
        "the page was reloaded"
    );

    // The audit page lists the steps; the CSV downloads in the admin's session.
    admin
        .goto(&app.url(&format!("/auditoria?entity_id={job}")))
        .await;
    let page = admin.wait_for_text("INSTALL_DONE").await;
    for action in ["INSTALL_REQUESTED", "INSTALL_APPROVED", "INSTALL_DONE"] {
        assert!(page.contains(action), "{action}");
    }
    let csv = admin
        .script(&format!(
            "return fetch('/auditoria/export.csv?entity_id={job}').then(r => r.arrayBuffer()) \
             .then(b => [Array.from(new Uint8Array(b).slice(0, 3)), new TextDecoder().decode(b)]);"
        ))
        .await;
    assert_eq!(csv[0], serde_json::json!([0xEF, 0xBB, 0xBF]), "UTF-8 BOM");
    assert!(
        csv[1].as_str().unwrap_or_default().contains("INSTALL_DONE"),
        "{csv}"
    );

    // A POST without the CSRF token is refused, even from the logged-in browser.
    let status = admin
        .script(
            "return fetch('/dispositivos', {method: 'POST', headers: {'content-type': \
             'application/x-www-form-urlencoded'}, body: 'hostname=PC-FORJADO'}).then(r => r.status);",
        )
        .await;
    assert_eq!(status, 403);

    // Every page of each role: axe-core finds nothing serious, and a screenshot of each.
    let device = &o.device_id;
    let view_pages = [
        ("painel", "/".to_owned()),
        ("certificados", "/certificados".to_owned()),
        ("certificado", format!("/certificados/{cert}")),
        ("solicitacoes", "/solicitacoes".to_owned()),
        ("instalacoes", "/instalacoes".to_owned()),
    ];
    violations.extend(walk(&view, app, "view", &view_pages).await);
    let mut admin_pages = view_pages.to_vec();
    admin_pages.extend([
        ("dispositivos", "/dispositivos".to_owned()),
        ("dispositivo", format!("/dispositivos/{device}")),
        ("usuarios", "/usuarios".to_owned()),
        ("auditoria", "/auditoria".to_owned()),
        ("enviar", "/certificados/enviar".to_owned()),
    ]);
    violations.extend(walk(&admin, app, "admin", &admin_pages).await);
    assert!(
        violations.is_empty(),
        "axe-core:\n{}",
        violations.join("\n")
    );
    assert!(db.run(&["audit", "verify"]).status.success());
    view.quit().await;
    admin.quit().await;
}

/// Issue 22, point 18: the session ends while a form is being filled in. Sending it leads to
/// the login, the login back to the page, and what was typed is there again (never the
/// password, never the CSRF token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_returns_to_the_page_with_the_form_kept() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office(&db).await;
    login(&b, &o.app, "admin@escritorio.com.br").await;
    b.goto(&o.app.url("/usuarios?x=1")).await;
    b.type_into("form[action='/usuarios'] input[name=nome]", "Joana Prado")
        .await;
    b.type_into(
        "form[action='/usuarios'] input[name=email]",
        "joana@escritorio.com.br",
    )
    .await;
    // The session ends (expired, or revoked elsewhere) before the form is sent.
    db.execute("UPDATE refresh_sessions SET revoked_at = created_at WHERE created_at = (SELECT MAX(created_at) FROM refresh_sessions)").await;
    b.click("form[action='/usuarios'] button[type=submit]")
        .await;
    let url = wait_for_url_part(&b, "/entrar", Duration::from_secs(10)).await;
    assert!(url.ends_with("/entrar"), "{url}");
    let page = b.wait_for_text("Sua sessão terminou").await;
    assert!(
        page.contains(r#"name="volta" value="/usuarios?x=1""#)
            || page.contains("value=\"/usuarios?x=1\""),
        "{page}"
    );
    b.type_into("input[name=email]", "admin@escritorio.com.br")
        .await;
    b.type_into("input[name=password]", PW).await;
    b.click("form.card button[type=submit]").await;
    let url = wait_for_url_part(&b, "/usuarios", Duration::from_secs(10)).await;
    assert!(url.ends_with("/usuarios?x=1"), "{url}");
    let restored = b.wait_for_text("O que você digitou foi mantido").await;
    assert!(restored.contains("data-restored"), "{restored}");
    let typed = b
        .script("return [document.querySelector(\"form[action='/usuarios'] input[name=nome]\").value, document.querySelector(\"form[action='/usuarios'] input[name=email]\").value]")
        .await;
    assert_eq!(
        typed,
        serde_json::json!(["Joana Prado", "joana@escritorio.com.br"])
    );
    let stored = b
        .script("return window.sessionStorage.getItem('certhub-draft')")
        .await;
    assert_eq!(stored, serde_json::Value::Null, "a draft is restored once");
    // Nothing was created while the session was gone.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM users WHERE email = 'joana@escritorio.com.br'")
            .await,
        0
    );
    b.screenshot(&shot("admin-form-kept-after-expiry")).await;
    b.quit().await;
}

/// How far `b`'s page scrolls sideways (0: it fits the window).
async fn sideways(b: &Browser) -> i64 {
    b.script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await
        .as_i64()
        .unwrap_or(i64::MAX)
}

/// Issue 22, point 17: the request flow on a phone (390x844). No page scrolls sideways, the
/// buttons are on screen once scrolled to, and every page is screenshotted at that width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_flow_at_phone_width() {
    let Some(view) = Browser::start().await else {
        return;
    };
    let admin = Browser::start().await.expect("a second browser");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = portal_office(&db).await;
    let app = &o.app;
    view.set_size(390, 844).await;
    admin.set_size(390, 844).await;
    login(&view, app, "view@escritorio.com.br").await;
    login(&admin, app, "admin@escritorio.com.br").await;

    // The VIEW asks for the install from the certificate's page.
    view.goto(&app.url(&format!("/certificados/{}", o.cert)))
        .await;
    view.wait_for_text("Instalar no meu computador").await;
    view.type_into("input[name=reason]", "emitir NF-e").await;
    view.click("form.card button[type=submit]").await;
    wait_for_url_part(
        &view,
        "/solicitacoes?ok=solicitado",
        Duration::from_secs(10),
    )
    .await;
    view.wait_for_text("data-status=\"REQUESTED\"").await;

    // The ADMIN reaches "Aprovar" (it is inside the screen once scrolled to) and approves.
    admin.goto(&app.url("/solicitacoes?status=REQUESTED")).await;
    admin.wait_for_text("Aprovar").await;
    let rect = admin
        .script(
            "const b = document.querySelector(\"form[action$='/aprovar'] button\"); \
             b.scrollIntoView({block: 'center', inline: 'center'}); \
             const r = b.getBoundingClientRect(); return [r.left, r.right, document.documentElement.clientWidth];",
        )
        .await;
    let (left, right, width) = (
        rect[0].as_f64().unwrap(),
        rect[1].as_f64().unwrap(),
        rect[2].as_f64().unwrap(),
    );
    assert!(
        left >= 0.0 && right <= width,
        "Aprovar at {left}..{right} of {width}"
    );
    assert_eq!(
        sideways(&admin).await,
        0,
        "scrolling to Aprovar moved the page sideways"
    );
    admin.click("form[action$='/aprovar'] button").await;
    view.wait_for_text("data-status=\"PENDING\"").await;

    // No page of either role is wider than the phone.
    let cert = &o.cert;
    let device = &o.device_id;
    let mut wide = Vec::new();
    let view_pages = [
        ("painel", "/".to_owned()),
        ("certificados", "/certificados".to_owned()),
        ("certificado", format!("/certificados/{cert}")),
        ("solicitacoes", "/solicitacoes".to_owned()),
        ("instalacoes", "/instalacoes".to_owned()),
    ];
    let mut admin_pages = view_pages.to_vec();
    admin_pages.extend([
        ("dispositivos", "/dispositivos".to_owned()),
        ("dispositivo", format!("/dispositivos/{device}")),
        ("usuarios", "/usuarios".to_owned()),
        ("auditoria", "/auditoria".to_owned()),
        ("enviar", "/certificados/enviar".to_owned()),
    ]);
    for (b, role, pages) in [
        (&view, "view", &view_pages[..]),
        (&admin, "admin", &admin_pages[..]),
    ] {
        for (name, path) in pages {
            b.goto(&app.url(path)).await;
            b.screenshot(&shot(&format!("phone-{role}-{name}"))).await;
            let over = sideways(b).await;
            if over > 0 {
                // What sticks out, to say where to look.
                let culprits = b
                    .script(
                        "const w = document.documentElement.clientWidth; return Array.from(document.querySelectorAll('body *')) \
                         .filter(e => e.getBoundingClientRect().right > w + 1).slice(0, 5) \
                         .map(e => e.tagName + '.' + e.className);",
                    )
                    .await;
                wide.push(format!(
                    "{role} {path}: {over} px wider than the phone ({culprits})"
                ));
            }
        }
    }
    assert!(wide.is_empty(), "{}", wide.join("\n"));
    view.quit().await;
    admin.quit().await;
}
