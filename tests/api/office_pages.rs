//! The office's pages (issue 22): the requests page an ADMIN decides from, the audit an
//! office can read, the words the portal uses.

use serde_json::json;

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

on_both_databases! {
    async fn the_requests_page_shows_reason_and_duration_and_keeps_its_tab(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-FISCAL", true).await;
        let ask = |reason: &'static str, minutes: Option<i64>| {
            let o = &o;
            let pc = &pc.id;
            async move {
                let (status, job) = o
                    .call(
                        "POST",
                        &format!("/api/v1/certificados/{}/install", o.cert),
                        Some(json!({"device_id": pc, "reason": reason, "duration_minutes": minutes})),
                        &o.view.access,
                    )
                    .await;
                assert_eq!(status, 201, "{job}");
                job["id"].as_str().unwrap().to_owned()
            }
        };
        let first = ask("Declaração do cliente", Some(90)).await;
        let second = ask("Folha de pagamento", None).await;
        let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let page = page_text(&admin, &o.app.url("/solicitacoes?status=REQUESTED")).await;
        assert!(page.contains("Motivo do pedido: Declaração do cliente"), "{page}");
        assert!(page.contains("Duração: 1 h 30 min"), "{page}");
        assert!(page.contains("Duração: até a limpeza das 18:00"), "{page}");
        for tab in ["DENIED", "CANCELLED", "EXPIRED"] {
            assert!(page.contains(&format!("/solicitacoes?status={tab}")), "{tab}: {page}");
        }
        assert!(page.contains(r#"name="status" value="REQUESTED""#), "{page}");

        // Deciding from a tab returns to it.
        let res = admin
            .post(o.app.url(&format!("/solicitacoes/{first}/negar")))
            .form(&[("csrf", csrf.as_str()), ("reason", "Sem autorização do cliente"), ("status", "REQUESTED")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/solicitacoes?status=REQUESTED&ok=negado");
        let res = admin
            .post(o.app.url(&format!("/solicitacoes/{second}/cancelar")))
            .form(&[("csrf", csrf.as_str()), ("status", "REQUESTED"), ("page", "javascript:alert(1)")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "a page that is not a number is refused by the form");
        let res = admin
            .post(o.app.url(&format!("/solicitacoes/{second}/cancelar")))
            .form(&[("csrf", csrf.as_str()), ("status", "https://evil.example/")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/solicitacoes?ok=cancelado", "no tab: the whole list");

        let denied = page_text(&admin, &o.app.url("/solicitacoes?status=DENIED")).await;
        assert!(denied.contains(&first) && !denied.contains(&second), "{denied}");
        assert!(denied.contains("Motivo da recusa: Sem autorização do cliente"), "{denied}");
        let cancelled = page_text(&admin, &o.app.url("/solicitacoes?status=CANCELLED")).await;
        assert!(cancelled.contains(&second) && !cancelled.contains(&first), "{cancelled}");
    }

    async fn a_break_found_by_any_check_stays_red_until_acknowledged(db: TestDb) {
        let o = office(&db).await;
        let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let audit = page_text(&admin, &o.app.url("/auditoria")).await;
        assert!(audit.contains(r#"data-chain="ok""#), "{audit}");
        // A row altered behind the server's back; the office's own check is the command line.
        db.execute("UPDATE audit_log SET meta_json = '{\"forged\":true}' WHERE org_id = 1 AND seq = 3").await;
        let out = db.run(&["audit", "verify"]);
        assert!(!out.status.success());
        // Found once, it is red on the Painel and on the default Auditoria view, in Portuguese.
        for path in ["/", "/auditoria"] {
            let html = page_text(&admin, &o.app.url(path)).await;
            assert!(html.contains(r#"data-chain="broken""#), "{path}: {html}");
            assert!(html.contains("no registro 3: o conteúdo do registro foi alterado"), "{path}: {html}");
            assert!(html.contains("/auditoria/quebra/ciente"), "{path}: {html}");
            assert!(!html.contains("modified"), "{path}: {html}");
        }
        // A VIEW sees no banner and cannot acknowledge.
        let (view, view_csrf) = session(&o.app, "view@escritorio.com.br", PW).await;
        let home = page_text(&view, &o.app.url("/")).await;
        assert!(!home.contains("data-chain"), "{home}");
        let res = view
            .post(o.app.url("/auditoria/quebra/ciente"))
            .form(&[("csrf", view_csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        // The admin acknowledges: audited, and the red banner gives way to a note saying who.
        let res = admin
            .post(o.app.url("/auditoria/quebra/ciente"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(audits(&db, "AUDIT_BREAK_ACKNOWLEDGED").await, 1);
        let home = page_text(&admin, &o.app.url("/")).await;
        assert!(!home.contains("data-chain"), "{home}");
        let audit = page_text(&admin, &o.app.url("/auditoria?verificar=tudo")).await;
        assert!(audit.contains(r#"data-chain="acknowledged""#), "{audit}");
        assert!(audit.contains("registrou ciência"), "{audit}");
        // The same break found again stays acknowledged; a new one is red again.
        assert!(!db.run(&["audit", "verify"]).status.success());
        let home = page_text(&admin, &o.app.url("/")).await;
        assert!(!home.contains("data-chain"), "{home}");
        db.execute("DELETE FROM audit_log WHERE org_id = 1 AND seq = 2").await;
        page_text(&admin, &o.app.url("/auditoria?verificar=tudo")).await;
        let home = page_text(&admin, &o.app.url("/")).await;
        assert!(home.contains(r#"data-chain="broken""#) && home.contains("no registro 2"), "{home}");
    }
}
