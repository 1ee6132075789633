//! The office's pages (issue 22): the requests page an ADMIN decides from, the audit an
//! office can read, the words the portal uses.

use certhub::crypto::DeviceSecretKey;
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

    async fn a_computer_keeps_its_admin_name_refuses_a_twin_and_can_be_removed(db: TestDb) {
        let o = office(&db).await;
        // Named by the admin, paired from a PC that calls itself something else.
        let d = o
            .provision_with(json!({"hostname": "PC-FISCAL-02", "owner_user_id": o.view_id}))
            .await;
        let id = d["id"].as_str().unwrap().to_owned();
        let key = DeviceSecretKey::generate();
        let res = o
            .app
            .send(
                "POST",
                "/api/v1/agent/enroll",
                Some(json!({"enrollment_code": d["enrollment_code"], "public_key": key.public_key().to_base64(), "hostname": "vm", "os_version": "Windows 11 Pro"})),
                None,
                None,
            )
            .await;
        assert_eq!(res.status(), 200);
        let creds: serde_json::Value = res.json().await.unwrap();
        let jwt = o.device_jwt(&id, creds["device_token"].as_str().unwrap()).await;
        let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let list = page_text(&admin, &o.app.url("/dispositivos")).await;
        assert!(list.contains(">PC-FISCAL-02</a>"), "{list}");
        assert!(list.contains("no PC: vm · Windows 11 Pro"), "{list}");

        // Two computers of one name cannot be told apart: refused, letter case aside.
        let (status, body) = o
            .call("POST", "/api/v1/admin/devices", Some(json!({"hostname": "pc-fiscal-02"})), &o.admin.access)
            .await;
        assert_eq!(status, 409, "{body}");
        let other = o.provision("PC-RECEPCAO").await;
        let other_id = other["id"].as_str().unwrap();
        let (status, _) = o
            .call("PATCH", &format!("/api/v1/admin/devices/{other_id}"), Some(json!({"hostname": "PC-Fiscal-02"})), &o.admin.access)
            .await;
        assert_eq!(status, 409);
        let res = admin
            .post(o.app.url("/dispositivos"))
            .form(&[("csrf", csrf.as_str()), ("hostname", "PC-FISCAL-02"), ("owner_user_id", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 409);
        let page = res.text().await.unwrap();
        assert!(page.contains("Já existe um computador com esse nome"), "{page}");

        // The VIEW is told when the computer offered has no agent yet.
        let (view, _) = session(&o.app, "view@escritorio.com.br", PW).await;
        let cert = page_text(&view, &o.app.url(&format!("/certificados/{}", o.cert))).await;
        assert!(cert.contains("PC-RECEPCAO — agente ainda não instalado"), "{cert}");
        assert!(!cert.contains("PC-FISCAL-02 — agente"), "{cert}");

        // Removed with a certificate on it: the removal goes to its agent, the computer leaves
        // the lists and the request form, its history stays.
        let pc = Device { id: id.clone(), key, jwt };
        let (installation, _) = o.installed(&pc).await;
        let res = admin
            .post(o.app.url(&format!("/dispositivos/{id}/remover")))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(audits(&db, "DEVICE_REMOVED").await, 1);
        let (_, jobs) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        let jobs = jobs["jobs"].as_array().unwrap();
        assert!(jobs.iter().all(|j| j["job_type"] == "REMOVE") && !jobs.is_empty(), "{jobs:?}");
        let list = page_text(&admin, &o.app.url("/dispositivos")).await;
        assert!(!list.contains("PC-FISCAL-02"), "{list}");
        let cert = page_text(&view, &o.app.url(&format!("/certificados/{}", o.cert))).await;
        assert!(!cert.contains("PC-FISCAL-02"), "{cert}");
        assert_eq!(o.call("GET", &format!("/api/v1/admin/devices/{id}"), None, &o.admin.access).await.0, 404);
        // The agent performs the removal; the lease closes under the blocked device's cause.
        let remove = jobs[0]["id"].as_str().unwrap();
        let (status, _) = o.claim(&pc, remove).await;
        assert_eq!(status, 200);
        let (status, _) = o.result(&pc, remove, json!({"status": "DONE", "key_deleted": true})).await;
        assert_eq!(status, 200);
        assert!(o.installation(&installation).await["removed_at"].is_string());
        // Its name is free again.
        o.provision("PC-FISCAL-02").await;
    }

    async fn the_portal_speaks_portuguese_with_plurals_and_the_issuer_by_name(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-UM", true).await;
        o.requested_job(&pc, None).await;
        let (admin, _) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let home = page_text(&admin, &o.app.url("/")).await;
        assert!(home.contains("<strong>1</strong><span>pedido aguardando decisão</span>"), "{home}");
        assert!(!home.contains("1</strong><span>pedidos"), "{home}");
        // The issuer by its name, the whole name on hover.
        let cert = page_text(&admin, &o.app.url(&format!("/certificados/{}", o.cert))).await;
        let at = cert.find("<dt>Emissor</dt>").expect("issuer");
        let issuer = &cert[at..at + cert[at..].find("</dd>").unwrap()];
        assert!(issuer.contains("title=\"") && issuer.contains("CN="), "{issuer}");
        let shown = issuer.rsplit('>').next().unwrap();
        assert!(!shown.contains("CN=") && !shown.contains("O="), "{shown}");
    }

    async fn the_audit_names_who_and_what_with_details_and_a_spreadsheet_csv(db: TestDb) {
        let o = office(&db).await;
        let (status, _) = o
            .call("PATCH", &format!("/api/v1/admin/users/{}", o.view_id), Some(json!({"nome": "Joana Prado"})), &o.admin.access)
            .await;
        assert_eq!(status, 200);
        let pc = o.device("PC-FISCAL", true).await;
        // One request denied with a reason, one installed; a failed login.
        let denied = o.requested_job(&pc, None).await;
        let (status, _) = o
            .call("POST", &format!("/api/v1/install-jobs/{denied}/deny"), Some(json!({"reason": "Sem autorização do cliente"})), &o.admin.access)
            .await;
        assert_eq!(status, 200);
        o.installed(&pc).await;
        assert_eq!(o.app.login("ninguem@escritorio.com.br", "senha-errada-123").await.status(), 401);

        let (admin, _) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let audit = page_text(&admin, &o.app.url("/auditoria")).await;
        assert!(audit.contains("<th scope=\"col\">Detalhes</th>"), "{audit}");
        assert!(audit.contains("motivo: Sem autorização do cliente"), "{audit}");
        assert!(audit.contains("e-mail: ninguem@escritorio.com.br"), "{audit}");
        assert!(audit.contains("Pedido: EMPRESA X LTDA em PC-FISCAL"), "{audit}");
        assert!(audit.contains(&format!("href=\"/dispositivos/{}\">PC PC-FISCAL</a>", pc.id)), "{audit}");
        assert!(audit.contains(&format!("href=\"/auditoria?user_id={}\">Joana Prado</a>", o.view_id)), "{audit}");
        for group in ["Pedidos e instalações", "Remoções", "Usuários e acesso", "Computadores"] {
            assert!(audit.contains(&format!("<optgroup label=\"{group}\">")), "{group}: {audit}");
        }

        // The certificate's own audit tells who asked and who installed it.
        let cert = page_text(&admin, &o.app.url(&format!("/certificados/{}", o.cert))).await;
        assert!(cert.contains(&format!("/auditoria?cert_id={}", o.cert)), "{cert}");
        let story = page_text(&admin, &o.app.url(&format!("/auditoria?cert_id={}", o.cert))).await;
        for code in ["INSTALL_REQUESTED", "INSTALL_DENIED", "INSTALL_APPROVED", "INSTALL_DONE", "CERT_INGESTED"] {
            assert!(story.contains(&format!(">{code}</small>")), "{code}: {story}");
        }
        assert!(story.contains("Joana Prado") && story.contains("PC PC-FISCAL"), "{story}");
        assert!(!story.contains(">LOGIN_FAILED</small>"), "only this certificate's rows: {story}");

        // The CSV opens in a Brazilian spreadsheet: BOM, `;`, Portuguese columns, local time.
        let res = admin.get(o.app.url(&format!("/auditoria/export.csv?cert_id={}", o.cert))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let bytes = res.bytes().await.unwrap();
        assert!(bytes.starts_with("\u{feff}".as_bytes()));
        let csv = String::from_utf8(bytes[3..].to_vec()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("Registro;Quando;Ação;Código;Quem;Sobre;Detalhes;IP"));
        let denied_row = csv.lines().find(|l| l.contains(";INSTALL_DENIED;")).expect("deny row");
        assert!(denied_row.contains(";Instalação negada;INSTALL_DENIED;"), "{denied_row}");
        assert!(denied_row.contains("motivo: Sem autorização do cliente"), "{denied_row}");
        let when = denied_row.split(';').nth(1).unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(when, "%d/%m/%Y %H:%M:%S").is_ok(), "{when}");
        // The API's CSV keeps its machine layout for the runbook's scripts.
        let (status, _, text) = o.app.call_json("GET", "/api/v1/audit/export.csv", None, &o.admin.access).await;
        assert_eq!(status, 200);
        assert!(text.trim_start_matches('\u{feff}').starts_with("seq,at,action,"), "{text}");
    }

    async fn an_uninstalled_agent_closes_its_installations_and_voids_its_pairing(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-SAINDO", true).await;
        let (installation, _) = o.installed(&pc).await;
        let waiting = o.requested_job(&pc, None).await;
        let (status, answer) = o.call("POST", "/api/v1/agent/uninstall", None, &pc.jwt).await;
        assert_eq!((status, answer["closed"].clone()), (200, json!(1)), "{answer}");
        let closed = o.installation(&installation).await;
        assert_eq!(closed["removal_mode"], "uninstall", "{closed}");
        assert_eq!(audits(&db, "CERT_REMOVED_UNINSTALL").await, 1);
        assert_eq!(audits(&db, "DEVICE_UNINSTALLED").await, 1);
        assert_eq!(o.job(&waiting).await["status"], "CANCELLED");
        // The pairing is void: the agent's token no longer works, the page says why.
        let (status, _) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        assert_eq!(status, 401);
        let (admin, _) = session(&o.app, "admin@escritorio.com.br", PW).await;
        let list = page_text(&admin, &o.app.url("/dispositivos")).await;
        assert!(list.contains("agente desinstalado"), "{list}");
        let audit = page_text(&admin, &o.app.url("/auditoria?action=CERT_REMOVED_UNINSTALL")).await;
        assert!(audit.contains("como: agente desinstalado") || audit.contains("Removido na desinstalação"), "{audit}");
    }
}
