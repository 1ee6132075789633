//! The portal's account pages over HTTP, with a cookie jar like a browser's.

use crate::helpers::*;

const PW: &str = "SenhaForte123!";

async fn first_access_link(app: &TestApp) -> String {
    loop {
        let line = app
            .stdout_lines
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("first-access link");
        if let Some(at) = line.find("/primeiro-acesso?token=") {
            return line[at..].trim().to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_access_creates_the_first_admin_once() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let link = first_access_link(&app).await;
    let b = browser();
    let html = page_text(&b, &app.url(&link)).await;
    assert!(html.contains("Primeiro acesso"), "{html}");
    let csrf = csrf_of(&html);
    let token = link.split("token=").nth(1).unwrap().to_owned();
    // A mistake keeps what was typed (but never the password).
    let res = b
        .post(app.url("/primeiro-acesso"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", &token),
            ("nome", "Maria"),
            ("email", "maria@escritorio.com.br"),
            ("new_password", PW),
            ("confirm", "outra-senha-123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("As senhas não conferem."), "{html}");
    assert!(html.contains(r#"name="nome" value="Maria""#), "{html}");
    assert!(
        html.contains(r#"name="email" value="maria@escritorio.com.br""#),
        "{html}"
    );
    assert!(!html.contains(PW), "{html}");
    let form = [
        ("csrf", csrf.as_str()),
        ("token", &token),
        ("nome", "Maria"),
        ("email", "maria@escritorio.com.br"),
        ("new_password", PW),
        ("confirm", PW),
    ];
    let res = b
        .post(app.url("/primeiro-acesso"))
        .form(&form)
        .send()
        .await
        .unwrap();
    // It says what was created, and where to go next.
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Administrador criado"), "{html}");
    assert!(
        html.contains("maria@escritorio.com.br") && html.contains(r#"href="/entrar""#),
        "{html}"
    );
    assert_eq!(app.login("maria@escritorio.com.br", PW).await.status(), 200);
    // Used once: the link is dead now.
    assert_eq!(b.get(app.url(&link)).send().await.unwrap().status(), 404);
    assert_eq!(
        b.post(app.url("/primeiro-acesso"))
            .form(&form)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_login_uses_a_cookie_session_and_every_form_checks_csrf() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let token = create_user(&db, "maria@escritorio.com.br", "ADMIN");
    let b = browser();

    // Choose the password through the page, which says whose account it is.
    let html = page_text(&b, &app.url(&format!("/definir-senha?token={token}"))).await;
    assert!(
        html.contains("Conta de") && html.contains("maria@escritorio.com.br"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let res = b
        .post(app.url("/definir-senha"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", &token),
            ("new_password", PW),
            ("confirm", "outra-senha-123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("As senhas não conferem.")
    );
    let res = b
        .post(app.url("/definir-senha"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", &token),
            ("new_password", PW),
            ("confirm", PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Senha definida"));

    // A form without the CSRF value, or from another browser, is refused.
    let res = post_login(&b, &app, "forged", "maria@escritorio.com.br", PW).await;
    assert_eq!(res.status(), 403);
    let other = browser();
    let res = post_login(&other, &app, &csrf, "maria@escritorio.com.br", PW).await;
    assert_eq!(
        res.status(),
        403,
        "the CSRF cookie belongs to the first browser"
    );

    let html = page_text(&b, &app.url("/entrar")).await;
    let csrf = csrf_of(&html);
    let res = post_login(
        &b,
        &app,
        &csrf,
        "maria@escritorio.com.br",
        "senha-errada-123",
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("E-mail ou senha inválidos.")
    );
    let res = post_login(&b, &app, &csrf, "maria@escritorio.com.br", PW).await;
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("certhub_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let home = page_text(&b, &app.url("/")).await;
    assert!(home.contains("Olá, ") && home.contains("Sair"), "{home}");

    let csrf = csrf_of(&home);
    let res = b
        .post(app.url("/sair"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let home = page_text(&b, &app.url("/")).await;
    assert!(!home.contains("Olá, "), "logged out");
    assert!(db.run(&["audit", "verify"]).status.success());
}

/// The whole first-day path in a real browser: first access, login, logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_browser_first_access_login_and_logout() {
    let Some(browser) = crate::helpers::browser::Browser::start().await else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let link = first_access_link(&app).await;

    browser.goto(&app.url(&link)).await;
    browser.type_into("input[name=nome]", "Maria Souza").await;
    browser
        .type_into("input[name=email]", "maria@escritorio.com.br")
        .await;
    browser.type_into("input[name=new_password]", PW).await;
    browser.type_into("input[name=confirm]", PW).await;
    browser.click("button[type=submit]").await;
    let created = browser.wait_for_text("Administrador criado").await;
    assert!(created.contains("maria@escritorio.com.br"), "{created}");
    browser.click("main a.button").await;
    assert!(
        browser.wait_for_url("/entrar").await.ends_with("/entrar"),
        "{}",
        browser.source().await
    );

    browser
        .type_into("input[name=email]", "maria@escritorio.com.br")
        .await;
    browser.type_into("input[name=password]", PW).await;
    browser.click("form.card button[type=submit]").await;
    let home = browser.wait_for_text("Maria Souza").await;
    assert!(
        home.contains("Olá, ") && home.contains("Maria Souza"),
        "{home}"
    );
    // Session and CSRF cookies are HttpOnly: page scripts cannot read them.
    assert_eq!(
        browser.script("return document.cookie").await,
        serde_json::json!("")
    );

    browser.click("header form button[type=submit]").await;
    assert!(browser.wait_for_url("/entrar").await.ends_with("/entrar"));
    browser.goto(&app.url("/")).await;
    assert!(!browser.source().await.contains("Olá, "));
    browser.quit().await;
    assert!(db.run(&["audit", "verify"]).status.success());
}
