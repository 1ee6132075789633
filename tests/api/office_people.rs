//! The office's people (issue 22): locked accounts an admin can see and end, the warning at the
//! last attempt, and the account pages that say whose account they are for.

use serde_json::json;

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";
const LOCK_AT_3: &[(&str, &str)] = &[("CERTHUB_LOCKOUT_THRESHOLD", "3")];

/// A wrong password through the portal's login form: the status and the page.
async fn wrong_login(app: &TestApp, email: &str) -> (u16, String) {
    let (b, csrf) = anonymous(app).await;
    let res = post_login(&b, app, &csrf, email, "senha-errada-123").await;
    (res.status().as_u16(), res.text().await.unwrap())
}

on_both_databases! {
    async fn a_locked_account_is_listed_warned_of_and_unlocked_by_an_admin(db: TestDb) {
        let o = Office::builder()
            .user("dev@escritorio.com.br", "DEV")
            .env(LOCK_AT_3)
            .start(&db)
            .await;
        let email = "view@escritorio.com.br";
        // The last attempt before the lock says so; the ones before do not.
        let (status, page) = wrong_login(&o.app, email).await;
        assert_eq!(status, 401);
        assert!(!page.contains("bloqueia"), "{page}");
        let (_, page) = wrong_login(&o.app, email).await;
        assert!(page.contains("mais uma senha errada bloqueia esta conta por 15 minutos"), "{page}");
        // An e-mail nobody has gets the same warning: it tells nobody who has an account.
        wrong_login(&o.app, "ninguem@escritorio.com.br").await;
        let (_, page) = wrong_login(&o.app, "ninguem@escritorio.com.br").await;
        assert!(page.contains("mais uma senha errada bloqueia"), "{page}");
        let (status, _) = wrong_login(&o.app, email).await;
        assert_eq!(status, 401);
        assert_eq!(o.app.login(email, PW).await.status(), 429, "locked, right password or not");
        let (status, page2) = {
            let (b, csrf) = anonymous(&o.app).await;
            let res = post_login(&b, &o.app, &csrf, email, PW).await;
            (res.status().as_u16(), res.text().await.unwrap())
        };
        assert_eq!(status, 429);
        assert!(page2.contains("15 minutos") && !page2.contains("minuto(s)"), "{page2}");

        // Usuários shows who is locked and until when, with the button.
        let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let users = page_text(&admin, &o.app.url("/usuarios")).await;
        assert!(users.contains("1 conta bloqueada"), "{users}");
        assert!(users.contains("bloqueada até") && users.contains("data-locked-until"), "{users}");
        assert!(users.contains(&format!("/usuarios/{}/desbloquear", o.view_id)), "{users}");
        let (_, api) = o.call("GET", "/api/v1/admin/users", None, &o.admin.access).await;
        let locked: Vec<&str> = api
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["locked_until"].is_string())
            .map(|u| u["email"].as_str().unwrap())
            .collect();
        assert_eq!(locked, [email]);

        // An ADMIN cannot unlock a DEV; a VIEW cannot unlock anyone.
        let dev_email = "dev@escritorio.com.br";
        let dev_id = o.user_id(o.user(dev_email)).await;
        for _ in 0..3 {
            o.app.login(dev_email, "senha-errada-123").await;
        }
        let (status, _) = o
            .call("POST", &format!("/api/v1/admin/users/{dev_id}/unlock"), None, &o.admin.access)
            .await;
        assert_eq!(status, 403);
        let (status, _) = o
            .call("POST", &format!("/api/v1/admin/users/{}/unlock", o.view_id), None, &o.view.access)
            .await;
        assert_eq!(status, 403);
        let users = page_text(&admin, &o.app.url("/usuarios")).await;
        assert!(users.contains("2 contas bloqueadas"), "{users}");
        assert!(!users.contains(&format!("/usuarios/{dev_id}/desbloquear")), "{users}");

        // The ADMIN unlocks the VIEW from the page; audited; the right password works again.
        let res = admin
            .post(o.app.url(&format!("/usuarios/{}/desbloquear", o.view_id)))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let to = res.headers()["location"].to_str().unwrap().to_owned();
        let after = page_text(&admin, &o.app.url(&to)).await;
        assert!(after.contains("Conta desbloqueada"), "{after}");
        assert_eq!(o.app.login(email, PW).await.status(), 200);
        assert_eq!(audits(&db, "USER_UNLOCKED").await, 1);
        let described = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'USER_UNLOCKED' \
                 AND meta_json LIKE '%{email}%' AND meta_json LIKE '%locked_until%'"
            ))
            .await;
        assert_eq!(described, 1, "the row says whose lock ended, and when it would have");
        // Unlocking what is not locked changes nothing and is not audited.
        let (status, body) = o
            .call("POST", &format!("/api/v1/admin/users/{}/unlock", o.view_id), None, &o.admin.access)
            .await;
        assert_eq!((status, body["unlocked"].clone()), (200, json!(false)));
        assert_eq!(audits(&db, "USER_UNLOCKED").await, 1);
        // The DEV unlocks the DEV.
        let (status, body) = o
            .call("POST", &format!("/api/v1/admin/users/{dev_id}/unlock"), None, &o.user(dev_email).access)
            .await;
        assert_eq!((status, body["unlocked"].clone()), (200, json!(true)));
        assert_eq!(o.app.login(dev_email, PW).await.status(), 200);
        let audit = page_text(&admin, &o.app.url("/auditoria?action=USER_UNLOCKED")).await;
        assert!(audit.contains("Conta desbloqueada"), "{audit}");
        assert!(db.run(&["audit", "verify"]).status.success());
    }

    async fn a_used_password_link_ends_the_lock(db: TestDb) {
        let o = office_with(&db, LOCK_AT_3).await;
        let email = "view@escritorio.com.br";
        for _ in 0..3 {
            o.app.login(email, "senha-errada-123").await;
        }
        assert_eq!(o.app.login(email, PW).await.status(), 429);
        let (status, link) = o
            .call("POST", "/api/v1/auth/password/set/init", Some(json!({"email": email})), &o.admin.access)
            .await;
        assert_eq!(status, 200, "{link}");
        let link = link["link"].as_str().unwrap();
        let token = link.split("token=").nth(1).unwrap();
        let b = browser();
        let page = page_text(&b, &o.app.url(&format!("/definir-senha?token={token}"))).await;
        assert!(page.contains("Conta de") && page.contains(email), "{page}");
        let res = o
            .app
            .send(
                "POST",
                "/api/v1/auth/password/set/confirm",
                Some(json!({"token": token, "new_password": "OutraSenhaForte456!"})),
                None,
                None,
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(o.app.login(email, "OutraSenhaForte456!").await.status(), 200);
        // A used link is dead, and its page says so before anyone types a password.
        let res = b.get(o.app.url(&format!("/definir-senha?token={token}"))).send().await.unwrap();
        assert_eq!(res.status(), 404);
        assert!(res.text().await.unwrap().contains("Peça um novo"));
    }

    async fn error_pages_keep_the_menu_and_whose_session_it_is(db: TestDb) {
        let o = office(&db).await;
        let (view, _) = session(&o.app, "view@escritorio.com.br", PW).await;
        let res = view.get(o.app.url("/usuarios")).send().await.unwrap();
        assert_eq!(res.status(), 403);
        let html = res.text().await.unwrap();
        assert!(html.contains("Acesso negado"), "{html}");
        assert!(html.contains(r#"nav class="sections""#) && html.contains(r#"href="/certificados""#), "{html}");
        assert!(!html.contains(r#"href="/usuarios""#), "the menu is the VIEW's: {html}");
        assert!(html.contains("action=\"/sair\""), "{html}");
        let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let res = admin
            .post(o.app.url("/usuarios"))
            .form(&[("csrf", csrf.as_str()), ("nome", "Sem E-mail"), ("email", "isto não é e-mail"), ("role_global", "VIEW")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(html.contains("Dados inválidos") && html.contains(r#"href="/usuarios""#), "{html}");
        assert!(html.contains(r#"aria-current="page">Usuários"#), "the section stays marked: {html}");
        // Logged out, an unknown page is still a plain page with "Entrar".
        let res = browser().get(o.app.url("/certificados/00000000-0000-0000-0000-000000000000")).send().await.unwrap();
        assert_eq!(res.status(), 303);
        // The one showing of a password link has a "Copiar" beside it.
        let res = admin
            .post(o.app.url(&format!("/usuarios/{}/link", o.view_id)))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        let html = res.text().await.unwrap();
        assert!(html.contains("class=\"copyable\"") && html.contains(">Copiar</button>"), "{html}");
    }

    async fn a_login_returns_to_the_page_and_the_live_stream_ends_with_the_session(db: TestDb) {
        let o = office(&db).await;
        // No session: the page is remembered, and the login returns there.
        let b = browser();
        let res = b.get(o.app.url("/certificados?status=expired")).send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/entrar?volta=%2Fcertificados%3Fstatus%3Dexpired");
        let login = page_text(&b, &o.app.url("/entrar?volta=%2Fcertificados%3Fstatus%3Dexpired")).await;
        assert!(login.contains(r#"name="volta" value="/certificados?status=expired""#), "{login}");
        let csrf = csrf_of(&login);
        let res = b
            .post(o.app.url("/entrar"))
            .form(&[("csrf", csrf.as_str()), ("email", "view@escritorio.com.br"), ("password", PW), ("volta", "/certificados?status=expired")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/certificados?status=expired");
        // Never somewhere else.
        for evil in ["//evil.example/", "https://evil.example/", "/\\evil.example", "/sair"] {
            let (b, csrf) = anonymous(&o.app).await;
            let res = b
                .post(o.app.url("/entrar"))
                .form(&[("csrf", csrf.as_str()), ("email", "view@escritorio.com.br"), ("password", PW), ("volta", evil)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.headers()["location"], "/", "{evil}");
        }

        // The live stream of a session that ends stops at its next chunk.
        let (view, _) = session(&o.app, "view@escritorio.com.br", PW).await;
        let pc = o.device("PC-FIM", true).await;
        let job = o.requested_job(&pc, None).await;
        let mut stream = view.get(o.app.url("/solicitacoes/eventos")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        // The portal session (the newest) ends; the change after it is not sent.
        db.execute("UPDATE refresh_sessions SET revoked_at = created_at WHERE created_at = (SELECT MAX(created_at) FROM refresh_sessions)").await;
        o.approve(&job).await;
        let mut seen = String::new();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Ok(Some(chunk)) = stream.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream went on: {seen}");
        assert!(seen.contains("event: ended") && !seen.contains("event: job"), "{seen}");
    }
}
