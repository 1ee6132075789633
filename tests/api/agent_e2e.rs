//! End to end: the real `certhub serve` and the real Linux `certhub-agent` (directory store):
//! pairing both ways, an approval installed within 2 s, removal at the lease's end, by a
//! `REMOVE` job, at start-up past the deadline, and reports that wait for a stopped server.
//! Plus `GET /api/v1/agent/installations`, the list the agent reconciles with.

use std::time::Duration;

use certhub::crypto::PayloadContext;
use certhub::protocol::SealedPayload;
use serde_json::{Value, json};

use crate::helpers::agent::{Pc, pfx_probes};
use crate::helpers::*;
use crate::on_both_databases;

on_both_databases! {
    async fn paired_by_code_an_approval_is_installed_at_once_and_removed_at_the_lease_end(db: TestDb) {
        let o = office(&db).await;
        let device = o.provision("PC-01").await;
        let mut pc = Pc::new();
        // The seed's spelling of the URL, with /api/v1.
        let server = format!("{}/api/v1", o.app.address);
        pc.pair(&["--server", &server, "--code", device["enrollment_code"].as_str().unwrap()]);
        // The agent's clock runs 50 s ahead: a 1-minute lease ends 10 s after the install.
        pc.start(50).await;
        let id = device["id"].as_str().unwrap();
        let job = o.approved(id, 1).await;
        let took = o.wait_job(&job, "DONE", Duration::from_secs(5)).await;
        eprintln!("{:?}: approval -> DONE in {took:?}", db.backend);
        assert!(took < Duration::from_secs(2), "{took:?}");
        let installed = pc.store();
        assert_eq!(installed.len(), 1);
        let view = o.job(&job).await;
        let installation = view["installation_id"].as_str().unwrap().to_owned();
        let ledger: Value = serde_json::from_slice(&std::fs::read(pc.home.path().join("installed_thumbprints.json")).unwrap()).unwrap();
        assert_eq!(ledger["installed"][0]["thumbprint"], installed[0].as_str());

        // The lease ends: certificate and key gone, the installation closed and audited.
        pc.wait_store(0).await;
        let removed = o.wait_removed(&installation, Duration::from_secs(10)).await;
        assert_eq!(removed["removal_mode"], "lease", "{removed}");
        assert_eq!(removed["key_deleted"], true);
        // A lease's end is its own action; CERT_REMOVED_18H is the daily cleanup's.
        let audited = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_REMOVED_LEASE_END'").await;
        assert_eq!(audited, 1);
        assert_eq!(audits(&db, "CERT_REMOVED_18H").await, 0);
        assert!(pc.log().contains("Starting cleanup (Lease)"), "{}", pc.log());
        assert_eq!(std::fs::read_dir(pc.home.path().join("store/keys")).unwrap().count(), 0, "key left behind");
        let mut probes = pfx_probes();
        probes.push(device["device_token"].as_str().unwrap().to_owned());
        pc.assert_nothing_leaked(&probes);
    }

    async fn paired_by_id_and_token_a_remove_job_takes_it_out(db: TestDb) {
        let o = office(&db).await;
        let device = o.provision("PC-02").await;
        let token = device["device_token"].as_str().unwrap();
        let id = device["id"].as_str().unwrap();
        let mut pc = Pc::new();
        pc.pair(&["--server", &o.app.address, "--device-id", id, "--device-token", token]);
        pc.start(0).await;
        let job = o.approved(id, 60).await;
        o.wait_job(&job, "DONE", Duration::from_secs(5)).await;
        assert_eq!(pc.store().len(), 1);
        let installation = o.job(&job).await["installation_id"].as_str().unwrap().to_owned();

        // The agent's own list of the server's view.
        let status = pc.once(&["status"], 0);
        assert!(status.status.success(), "{status:?}");
        assert!(status.stdout.contains("EMPRESA X LTDA"), "{}", status.stdout);

        // Early removal: a REMOVE job through the long-poll.
        let (code, remove) = o.call("POST", &format!("/api/v1/installations/{installation}/remove"), Some(json!({})), &o.view.access).await;
        assert_eq!(code, 201, "{remove}");
        let remove_job = remove["id"].as_str().unwrap();
        o.wait_job(remove_job, "DONE", Duration::from_secs(10)).await;
        pc.wait_store(0).await;
        let removed = o.wait_removed(&installation, Duration::from_secs(5)).await;
        assert_eq!(removed["removal_mode"], "remove_job", "{removed}");
        assert_eq!(removed["key_deleted"], true);

        // Pairing again (here as another device) first removes what this pairing installed.
        let again = o.approved(id, 60).await;
        o.wait_job(&again, "DONE", Duration::from_secs(5)).await;
        let again_installation = o.job(&again).await["installation_id"].as_str().unwrap().to_owned();
        pc.kill();
        let other = o.provision("PC-02b").await;
        pc.pair(&["--server", &o.app.address, "--code", other["enrollment_code"].as_str().unwrap()]);
        assert!(pc.store().is_empty());
        let removed = o.wait_removed(&again_installation, Duration::from_secs(5)).await;
        assert_eq!(removed["removal_mode"], "manual", "{removed}");
        let mut probes = pfx_probes();
        probes.push(token.to_owned());
        pc.assert_nothing_leaked(&probes);
    }

    async fn removals_wait_for_a_stopped_server_and_start_up_removes_what_is_due(db: TestDb) {
        let mut o = office(&db).await;
        let port = o.app.address.rsplit(':').next().unwrap().to_owned();
        let device = o.provision("PC-03").await;
        let id = device["id"].as_str().unwrap().to_owned();
        let mut pc = Pc::new();
        pc.pair(&["--server", &o.app.address, "--code", device["enrollment_code"].as_str().unwrap()]);
        pc.start(0).await;
        let first = o.approved(&id, 60).await;
        o.wait_job(&first, "DONE", Duration::from_secs(5)).await;
        let first_installation = o.job(&first).await["installation_id"].as_str().unwrap().to_owned();

        // Agent and server stop; a manual cleanup removes the certificate and keeps the report.
        pc.kill();
        o.app.child.kill().unwrap();
        o.app.child.wait().unwrap();
        let out = pc.once(&["--cleanup", "--mode", "manual"], 0);
        assert_eq!(out.status.code(), Some(4), "{out:?}");
        assert!(pc.store().is_empty());
        assert!(pc.log().contains("Starting cleanup (Manual)"), "{}", pc.log());
        let status = pc.once(&["status"], 0);
        assert_eq!(status.status.code(), Some(4), "{status:?}");
        assert!(status.stdout.contains("Servidor inacessível"), "{}", status.stdout);

        // The server is back (same address): the running agent sends the report.
        let listen = format!("127.0.0.1:{port}");
        o.app = spawn_app_with(&db, &[("CERTHUB_LISTEN", listen.as_str())]).await;
        pc.start(0).await;
        let removed = o.wait_removed(&first_installation, Duration::from_secs(10)).await;
        assert_eq!(removed["removal_mode"], "manual", "{removed}");
        assert!(!pc.home.path().join("outbox.json").exists() || std::fs::read_to_string(pc.home.path().join("outbox.json")).unwrap().contains("[]"));

        // A 1-minute lease; the agent is killed and comes back past its end.
        let second = o.approved(&id, 1).await;
        o.wait_job(&second, "DONE", Duration::from_secs(5)).await;
        let second_installation = o.job(&second).await["installation_id"].as_str().unwrap().to_owned();
        pc.kill();
        assert_eq!(pc.store().len(), 1);
        pc.start(120).await;
        pc.wait_store(0).await;
        let removed = o.wait_removed(&second_installation, Duration::from_secs(10)).await;
        assert_eq!(removed["removal_mode"], "startup", "{removed}");
        pc.assert_nothing_leaked(&pfx_probes());
    }

    async fn the_agent_lists_its_own_open_installations_only(db: TestDb) {
        let o = office(&db).await;
        let mut devices = Vec::new();
        for name in ["PC-A", "PC-B"] {
            let d = o.device(name, true).await;
            devices.push((d.id, d.key, d.jwt));
        }
        let (a_id, a_key, a_jwt) = &devices[0];
        let (_, _, b_jwt) = &devices[1];
        let (status, list) = o.call("GET", "/api/v1/agent/installations", None, a_jwt).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list, json!({"installations": []}));

        // Installed on A by hand through the protocol.
        let job = o.approved(a_id, 30).await;
        let (status, claim) = o.call("POST", &format!("/api/v1/agent/jobs/{job}/claim"), None, a_jwt).await;
        assert_eq!(status, 200, "{claim}");
        let token = claim["payload_token"].as_str().unwrap();
        let (status, payload) = o.call("GET", &format!("/api/v1/agent/jobs/{job}/payload?token={token}"), None, a_jwt).await;
        assert_eq!(status, 200, "{payload}");
        let sealed: SealedPayload = serde_json::from_value(payload.clone()).unwrap();
        assert!(certhub::crypto::open(a_key, &PayloadContext::new(&job, a_id), &sealed).is_ok());
        let thumbprint = payload["thumbprint"].as_str().unwrap();
        let (status, done) = o.call("POST", &format!("/api/v1/agent/jobs/{job}/result"), Some(json!({"status": "DONE", "thumbprint": thumbprint, "key_storage": "CNG"})), a_jwt).await;
        assert_eq!(status, 200, "{done}");

        let (status, list) = o.call("GET", "/api/v1/agent/installations", None, a_jwt).await;
        assert_eq!(status, 200, "{list}");
        let items = list["installations"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{list}");
        assert_eq!(items[0]["job_id"], job.as_str());
        assert_eq!(items[0]["thumbprint"], thumbprint);
        assert_eq!(items[0]["cert_name"], "EMPRESA X LTDA");
        assert_eq!(items[0]["expires_at"], done["lease_expires_at"]);
        assert_eq!(items[0]["installation_id"], o.job(&job).await["installation_id"]);

        // Another device sees none of it; a user token is refused.
        let (status, other) = o.call("GET", "/api/v1/agent/installations", None, b_jwt).await;
        assert_eq!((status, other), (200, json!({"installations": []})));
        let (status, _) = o.call("GET", "/api/v1/agent/installations", None, &o.admin.access).await;
        assert_eq!(status, 403);
        let res = o.app.send("GET", "/api/v1/agent/installations", None, None, None).await;
        assert_eq!(res.status(), 401);

        // Once removed, it is no longer open.
        let cleanup = json!({"mode": "scheduled", "removed": [{"thumbprint": thumbprint, "key_deleted": true}]});
        let (status, _) = o.call("POST", "/api/v1/agent/cleanup", Some(cleanup), a_jwt).await;
        assert_eq!(status, 200);
        let (_, list) = o.call("GET", "/api/v1/agent/installations", None, a_jwt).await;
        assert_eq!(list, json!({"installations": []}));
    }
}

/// Errors a person can act on, from the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_explains_what_is_wrong() {
    let pc = Pc::new();
    let out = pc.once(&["status"], 0);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.contains("Não pareado"), "{out:?}");
    let out = pc.once(&["cleanup", "--mode", "manual"], 0);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = pc.once(
        &[
            "pair",
            "--server",
            "http://127.0.0.1:9",
            "--code",
            "ABCD-EFGH-JK",
        ],
        0,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("Servidor inacessível"), "{out:?}");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    // A URL that is not the API's: the health page answers, but nothing under it.
    let out = pc.once(
        &[
            "pair",
            "--server",
            &format!("{}/health", app.address),
            "--code",
            "ABCD-EFGH-JK",
        ],
        0,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("URL do servidor errada"), "{out:?}");
    let out = pc.once(
        &["pair", "--server", &app.address, "--code", "ABCD-EFGH-JK"],
        0,
    );
    assert!(
        out.stderr.contains("Código de pareamento inválido"),
        "{out:?}"
    );
}

/// A certificate the user already had is left alone (`ALREADY_INSTALLED`, survives cleanup);
/// a rotated token, a blocked device and a wrong clock each get a message a person can act on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_certificates_rotated_tokens_blocked_devices_and_skewed_clocks() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office(&db).await;
    let (_, cert) = o
        .call(
            "GET",
            &format!("/api/v1/certificados/{}", o.cert),
            None,
            &o.view.access,
        )
        .await;
    let thumbprint = cert["sha1"].as_str().unwrap().to_uppercase();
    let device = o.provision("PC-04").await;
    let id = device["id"].as_str().unwrap();
    let mut pc = Pc::new();
    pc.pair(&[
        "--server",
        &o.app.address,
        "--code",
        device["enrollment_code"].as_str().unwrap(),
    ]);
    // The user imported the same certificate by hand.
    let store = pc.home.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let by_hand = store.join(format!("{thumbprint}.json"));
    std::fs::write(&by_hand, format!(r#"{{"thumbprint":"{thumbprint}","friendly_name":"mine","subject":"","key_name":"","installed_at":"2026-01-01T00:00:00Z"}}"#)).unwrap();
    pc.start(0).await;
    let job = o.approved(id, 30).await;
    o.wait_job(&job, "FAILED", Duration::from_secs(5)).await;
    assert_eq!(o.job(&job).await["error_code"], "ALREADY_INSTALLED");
    pc.kill();
    let out = pc.once(&["cleanup", "--mode", "manual"], 0);
    assert!(out.status.success(), "{out:?}");
    assert!(
        by_hand.exists(),
        "a certificate the agent did not install was removed"
    );

    // Clock skew over 2 minutes is shown.
    let out = pc.once(&["status"], 300);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("relógio desajustado"), "{}", out.stdout);
    assert!(pc.log().contains("Clock skew"), "{}", pc.log());

    // Rotated token: re-authentication fails with the seed's message.
    assert_eq!(
        o.app
            .device_action(&o.admin.access, id, "rotate-token")
            .await,
        200
    );
    let out = pc.once(&["status"], 0);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        out.stdout
            .contains("Falha de autenticação: token rotacionado ou inválido"),
        "{}",
        out.stdout
    );

    // Paired again with the new code; then blocked.
    let fresh = o.provision("PC-05").await;
    pc.pair(&[
        "--server",
        &o.app.address,
        "--code",
        fresh["enrollment_code"].as_str().unwrap(),
    ]);
    let out = pc.once(&["status"], 0);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(fresh["id"].as_str().unwrap()),
        "re-pairing replaced the identity: {}",
        out.stdout
    );
    let fresh_id = fresh["id"].as_str().unwrap();
    assert_eq!(
        o.app
            .device_action(&o.admin.access, fresh_id, "block")
            .await,
        200
    );
    let out = pc.once(&["status"], 0);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        out.stdout.contains("Dispositivo bloqueado"),
        "{}",
        out.stdout
    );
}

/// The server stops while the running agent removes a certificate at its lease's end: the
/// report waits in the outbox and reaches the server once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_made_while_the_server_is_down_is_reported_when_it_returns() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut o = office(&db).await;
    let port = o.app.address.rsplit(':').next().unwrap().to_owned();
    let device = o.provision("PC-06").await;
    let mut pc = Pc::new();
    pc.pair(&[
        "--server",
        &o.app.address,
        "--code",
        device["enrollment_code"].as_str().unwrap(),
    ]);
    // 55 s ahead: the 1-minute lease ends about 5 s after the install.
    pc.start(55).await;
    let job = o.approved(device["id"].as_str().unwrap(), 1).await;
    o.wait_job(&job, "DONE", Duration::from_secs(5)).await;
    let installation = o.job(&job).await["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    o.app.child.kill().unwrap();
    o.app.child.wait().unwrap();
    pc.wait_store(0).await;
    let outbox = std::fs::read_to_string(pc.home.path().join("outbox.json")).unwrap();
    assert!(outbox.contains("\"lease\""), "{outbox}");
    let listen = format!("127.0.0.1:{port}");
    o.app = spawn_app_with(&db, &[("CERTHUB_LISTEN", listen.as_str())]).await;
    let removed = o.wait_removed(&installation, Duration::from_secs(30)).await;
    assert_eq!(removed["removal_mode"], "lease", "{removed}");
    // The server has the report before the agent reads its answer and drops the item.
    let outbox_path = pc.home.path().join("outbox.json");
    let drained = eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(&outbox_path).is_ok_and(|o| !o.contains("\"lease\""))
    })
    .await;
    let outbox = std::fs::read_to_string(&outbox_path).unwrap_or_default();
    assert!(drained, "{outbox}");
}
