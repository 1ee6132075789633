//! The agent side of install jobs, as the seed's S4/S6 walk-through runs it: list, claim,
//! payload (sealed to the device's key), result, lease and cleanup; plus the races, the
//! isolation between devices and the secrets that must never leak.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certhub::crypto::PayloadContext;
use certhub::protocol::SealedPayload;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::agent::PFX_PASSWORD;
use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

on_both_databases! {
    async fn the_seed_walk_through_end_to_end(db: TestDb) {
        // Seed S4: provision (admin API), auth, heartbeat.
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let (status, beat) = o.call("POST", "/api/v1/agent/heartbeat", Some(json!({"agent_version": "1.0.0"})), &pc.jwt).await;
        assert_eq!(status, 200, "{beat}");
        assert_eq!(beat["policy"]["cleanup_time"], "18:00");
        assert_eq!(beat["policy"]["timezone"], "America/Sao_Paulo");
        assert!((Utc::now() - time(&beat["server_time"])).num_seconds().abs() < 5);
        // Kept in memory, written within device_contact_flush_seconds (5).
        let written = eventually(std::time::Duration::from_secs(15), || async {
            db.scalar(&format!(
                "SELECT COUNT(*) FROM devices WHERE last_heartbeat_at IS NOT NULL AND agent_version = '1.0.0' AND id = {}",
                uuid_sql(&db, &pc.id)
            )).await == 1
        }).await;
        assert!(written, "the heartbeat never reached the database");
        let job = o.pending_job(&pc, Some(90)).await;

        // The agent sees its job.
        let (status, list) = o.call("GET", "/api/v1/agent/jobs?wait=0", None, &pc.jwt).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
        assert_eq!(list["jobs"][0]["id"], job.as_str());
        assert_eq!(list["jobs"][0]["status"], "PENDING");
        assert_eq!(list["jobs"][0]["cert_name"], "EMPRESA X LTDA");
        assert_eq!(list["jobs"][0]["job_type"], "INSTALL");
        assert_eq!(list["jobs"][0]["thumbprint"].as_str().map(str::len), Some(40));

        // Claim: IN_PROGRESS with a 256-bit one-time token, stored hashed.
        let (status, claim) = o.claim(&pc, &job).await;
        assert_eq!(status, 200, "{claim}");
        assert_eq!(claim["status"], "IN_PROGRESS");
        assert_eq!(claim["expires_in"], 120);
        let t1 = token_of(&claim);
        assert_eq!(t1.len(), 43);
        let stored = db.scalar(&format!(
            "SELECT COUNT(*) FROM cert_install_jobs WHERE payload_token_hash = '{t1}' OR started_at IS NULL OR claimed_at IS NULL"
        )).await;
        assert_eq!(stored, 0, "token in clear, or no started_at/claimed_at");
        assert_eq!(audits(&db, "INSTALL_CLAIMED").await, 1);
        // Right after a claim, while its token is live, claiming again is refused.
        let (status, body) = o.claim(&pc, &job).await;
        assert_eq!(status, 409, "{body}");

        // Wrong token: 403, audited with the reason.
        let (status, body) = o.payload(&pc, &job, "wrong").await;
        assert_eq!(status, 403, "{body}");
        let denied = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'PAYLOAD_DENIED' AND meta_json LIKE '%token_mismatch%'").await;
        assert_eq!(denied, 1);

        // The payload opens with the device's key only, for this job and device.
        let (status, body) = o.payload(&pc, &job, &t1).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["job_id"], job.as_str());
        assert!(body.get("pfx_base64").is_none() && body.get("password").is_none());
        let thumbprint = body["thumbprint"].as_str().unwrap().to_owned();
        let sealed: SealedPayload = serde_json::from_value(body.clone()).unwrap();
        let opened = certhub::crypto::open(&pc.key, &PayloadContext::new(&job, &pc.id), &sealed).unwrap();
        assert_eq!(opened.pfx(), fixture("ecnpj-aes.pfx").as_slice());
        assert_eq!(opened.password().expose(), PFX_PASSWORD);
        assert!(certhub::crypto::open(&pc.key, &PayloadContext::new(&o.cert, &pc.id), &sealed).is_err());
        assert_eq!(audits(&db, "PAYLOAD_ISSUED").await, 1);

        // Replay: 409.
        let (status, _) = o.payload(&pc, &job, &t1).await;
        assert_eq!(status, 409);
        let used = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'PAYLOAD_DENIED' AND meta_json LIKE '%token_used%'").await;
        assert_eq!(used, 1);

        // A spent token can be replaced; an expired one is 410 (here through the header).
        let (status, claim) = o.claim(&pc, &job).await;
        assert_eq!(status, 200, "{claim}");
        let t2 = token_of(&claim);
        assert_ne!(t1, t2);
        db.execute(&format!(
            "UPDATE cert_install_jobs SET payload_token_expires_at = '2020-01-01T00:00:00+00:00' WHERE id = {}",
            uuid_sql(&db, &job)
        )).await;
        let res = o.app.client
            .get(o.app.url(&format!("/api/v1/agent/jobs/{job}/payload")))
            .bearer_auth(&pc.jwt)
            .header("X-Payload-Token", &t2)
            .send().await.unwrap();
        assert_eq!(res.status(), 410);
        let expired = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'PAYLOAD_DENIED' AND meta_json LIKE '%token_expired%'").await;
        assert_eq!(expired, 1);

        // An expired token is replaced at once; a live one once the claim is 10 s old (the
        // agent lost the answer): the new token voids the old.
        let (status, claim) = o.claim(&pc, &job).await;
        assert_eq!(status, 200, "{claim}");
        let t3 = token_of(&claim);
        db.execute(&format!(
            "UPDATE cert_install_jobs SET claimed_at = '{}' WHERE id = {}",
            (Utc::now() - chrono::Duration::seconds(11)).to_rfc3339(),
            uuid_sql(&db, &job)
        )).await;
        let (status, claim) = o.claim(&pc, &job).await;
        assert_eq!(status, 200, "{claim}");
        let t4 = token_of(&claim);
        assert_ne!(t3, t4);
        let (status, body) = o.payload(&pc, &job, &t3).await;
        assert_eq!(status, 403, "the voided token: {body}");
        assert_eq!(audits(&db, "INSTALL_CLAIMED").await, 4);

        // Past 5 payload requests a minute: 429, audited.
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let (status, body) = o.payload(&pc, &job, "wrong").await;
            if status == 429 {
                assert_eq!(body["error"], "rate_limited");
            }
            statuses.push(status);
        }
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        assert!(audits(&db, "PAYLOAD_RATE_LIMITED").await >= 1);

        // DONE opens the lease: until the next 18:00 in São Paulo, the cap or the 90 minutes.
        let before = Utc::now();
        let (status, done) = o.result(&pc, &job, json!({"status": "DONE", "thumbprint": thumbprint.to_lowercase(), "key_storage": "SOFTWARE"})).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["status"], "DONE");
        let lease_expires = time(&done["lease_expires_at"]);
        let rule = certhub::schedule::LeaseRule::default();
        let next_six_pm = rule.cleanup.next_after(before);
        assert!(lease_expires <= next_six_pm, "{lease_expires} > {next_six_pm}");
        let (_, device) = o.call("GET", &format!("/api/v1/admin/devices/{}", pc.id), None, &o.admin.access).await;
        let installed = &device["installed"][0];
        assert_eq!(installed["thumbprint"], thumbprint.as_str());
        assert_eq!(installed["installed_by_user_id"], o.view_id.as_str());
        assert_eq!(time(&installed["expires_at"]), lease_expires);
        let expected = rule.end(time(&installed["installed_at"]), Some(90));
        assert_eq!(lease_expires, expected);
        let leases = db.scalar(&format!(
            "SELECT COUNT(*) FROM installations i JOIN cert_install_jobs j ON j.lease_id = i.id WHERE i.job_id = {} AND i.removed_at IS NULL",
            uuid_sql(&db, &job)
        )).await;
        assert_eq!(leases, 1);
        let (_, list) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        assert_eq!(list["jobs"], json!([]));

        // A second result: 409 RESULT_DUPLICATE, audited.
        let (status, body) = o.result(&pc, &job, json!({"status": "FAILED", "error_code": "X"})).await;
        assert_eq!(status, 409);
        assert_eq!(body["error"], "result_duplicate");
        assert_eq!(audits(&db, "RESULT_DUPLICATE").await, 1);
        let (_, view) = o.call("GET", &format!("/api/v1/install-jobs/{job}"), None, &o.admin.access).await;
        assert_eq!(view["status"], "DONE");

        // Cleanup closes the lease once and writes CERT_REMOVED_18H as the device.
        let removal = json!({"mode": "scheduled", "removed": [{"thumbprint": thumbprint, "key_deleted": true}]});
        let (status, body) = o.call("POST", "/api/v1/agent/cleanup", Some(removal.clone()), &pc.jwt).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"closed": 1}));
        let (_, body) = o.call("POST", "/api/v1/agent/cleanup", Some(removal), &pc.jwt).await;
        assert_eq!(body, json!({"closed": 0}));
        let closed = db.scalar("SELECT COUNT(*) FROM installations WHERE removed_at IS NOT NULL AND removal_mode = 'scheduled' AND key_deleted = TRUE").await;
        assert_eq!(closed, 1);
        let removed = db.scalar(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_REMOVED_18H' AND actor_device_id = {}",
            uuid_sql(&db, &pc.id)
        )).await;
        assert_eq!(removed, 1);
        let (_, device) = o.call("GET", &format!("/api/v1/admin/devices/{}", pc.id), None, &o.admin.access).await;
        assert_eq!(device["installed"], json!([]));

        // No response, log line or audit row holds the PFX or its password.
        let pfx_b64 = STANDARD.encode(fixture("ecnpj-aes.pfx"));
        let probes = [pfx_b64[..64].to_owned(), format!("\"{PFX_PASSWORD}\""), format!("={PFX_PASSWORD}")];
        let logs = o.app.logs();
        for probe in &probes {
            assert!(!holds_secret(&logs, probe), "{probe} in the server log");
            for body in o.bodies.lock().unwrap().iter() {
                assert!(!holds_secret(body, probe), "{probe} in a response: {body}");
            }
            let sql = format!("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%{}%'", probe.replace('\'', "''"));
            assert_eq!(db.scalar(&sql).await, 0, "{probe} in the audit log");
        }
        for token in [&t1, &t2, &t3, &t4] {
            assert!(!logs.contains(token.as_str()));
            let sql = format!("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%{token}%'");
            assert_eq!(db.scalar(&sql).await, 0);
        }

        // Seed S6: the reaper turns a job stuck IN_PROGRESS into TIMEOUT.
        let stuck = o.pending_job(&pc, None).await;
        let (status, _) = o.claim(&pc, &stuck).await;
        assert_eq!(status, 200);
        let (status, swept) = o.call("POST", "/api/v1/admin/jobs/reap?threshold_minutes=60", None, &o.admin.access).await;
        assert_eq!((status, &swept["reaped"]), (200, &json!(0)), "{swept}");
        db.execute(&format!(
            "UPDATE cert_install_jobs SET started_at = '{}' WHERE id = {}",
            (Utc::now() - chrono::Duration::minutes(61)).to_rfc3339(),
            uuid_sql(&db, &stuck)
        )).await;
        let (status, swept) = o.call("POST", "/api/v1/admin/jobs/reap?threshold_minutes=60", None, &o.admin.access).await;
        assert_eq!((status, &swept["reaped"]), (200, &json!(1)), "{swept}");
        let (_, view) = o.call("GET", &format!("/api/v1/install-jobs/{stuck}"), None, &o.admin.access).await;
        assert_eq!((view["status"].as_str(), view["error_code"].as_str()), (Some("TIMEOUT"), Some("TIMEOUT")));
        assert_eq!(audits(&db, "INSTALL_TIMEOUT").await, 1);
        let (status, body) = o.result(&pc, &stuck, json!({"status": "DONE", "thumbprint": thumbprint})).await;
        assert_eq!(status, 409, "a reaped job takes no result: {body}");
    }

    async fn twenty_concurrent_claims_one_wins(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let job = o.pending_job(&pc, None).await;
        let claims = (0..20).map(|_| o.claim(&pc, &job));
        let results = futures_util::future::join_all(claims).await;
        let won = results.iter().filter(|(s, _)| *s == 200).count();
        let lost = results.iter().filter(|(s, _)| *s == 409).count();
        assert_eq!((won, lost), (1, 19), "{results:?}");
        assert_eq!(audits(&db, "INSTALL_CLAIMED").await, 1);
        let winner = results.iter().find(|(s, _)| *s == 200).unwrap();
        let (status, _) = o.payload(&pc, &job, &token_of(&winner.1)).await;
        assert_eq!(status, 200);
    }

    async fn devices_only_see_their_own_jobs(db: TestDb) {
        let o = office(&db).await;
        let a = o.device("PC-A", true).await;
        let b = o.device("PC-B", true).await;
        let job = o.pending_job(&a, None).await;

        let (_, list) = o.call("GET", "/api/v1/agent/jobs", None, &b.jwt).await;
        assert_eq!(list["jobs"], json!([]));
        let (status, _) = o.claim(&b, &job).await;
        assert_eq!(status, 404);
        let (status, claim) = o.claim(&a, &job).await;
        assert_eq!(status, 200);
        let token = token_of(&claim);
        let (status, _) = o.payload(&b, &job, &token).await;
        assert_eq!(status, 404);
        let not_found = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'PAYLOAD_DENIED' AND meta_json LIKE '%not_found%'").await;
        assert_eq!(not_found, 1);
        let (status, _) = o.result(&b, &job, json!({"status": "FAILED"})).await;
        assert_eq!(status, 404);
        // B's refusals did not spend A's token.
        let (status, _) = o.payload(&a, &job, &token).await;
        assert_eq!(status, 200);

        // Users are not agents.
        for user in [&o.view.access, &o.admin.access] {
            for (method, path) in [
                ("GET", "/api/v1/agent/jobs".to_owned()),
                ("POST", format!("/api/v1/agent/jobs/{job}/claim")),
                ("GET", format!("/api/v1/agent/jobs/{job}/payload?token={token}")),
            ] {
                let (status, _) = o.call(method, &path, None, user).await;
                assert_eq!(status, 403, "{method} {path}");
            }
            let (status, _) = o.call("POST", &format!("/api/v1/agent/jobs/{job}/result"), Some(json!({"status": "DONE"})), user).await;
            assert_eq!(status, 403);
        }

        // A device that registered no key never gets a payload.
        let keyless = o.device("PC-SEM-CHAVE", false).await;
        let job = o.pending_job(&keyless, None).await;
        let (status, claim) = o.claim(&keyless, &job).await;
        assert_eq!(status, 200);
        let (status, body) = o.payload(&keyless, &job, &token_of(&claim)).await;
        assert_eq!(status, 409, "{body}");
        // A job never claimed takes no result.
        let pending = o.pending_job(&a, None).await;
        let (status, _) = o.result(&a, &pending, json!({"status": "DONE", "thumbprint": "0".repeat(40)})).await;
        assert_eq!(status, 409);
    }

    async fn a_wrong_thumbprint_is_a_failure(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let job = o.pending_job(&pc, None).await;
        let (status, _) = o.claim(&pc, &job).await;
        assert_eq!(status, 200);
        let (status, body) = o.result(&pc, &job, json!({"status": "DONE", "thumbprint": "AB".repeat(20)})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "FAILED");
        assert_eq!(body["error_code"], "THUMBPRINT_MISMATCH");
        assert_eq!(body["lease_expires_at"], Value::Null);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM installations").await, 0);
        assert_eq!(audits(&db, "INSTALL_FAILED").await, 1);
        let (_, view) = o.call("GET", &format!("/api/v1/install-jobs/{job}"), None, &o.admin.access).await;
        assert_eq!(view["status"], "FAILED");
        assert_eq!(view["error_code"], "THUMBPRINT_MISMATCH");

        // A reported failure keeps the agent's code and message.
        let job = o.pending_job(&pc, None).await;
        o.claim(&pc, &job).await;
        let (status, body) = o.result(&pc, &job, json!({"status": "FAILED", "error_code": "IMPORT_FAILED", "error_message": "store locked"})).await;
        assert_eq!(status, 200, "{body}");
        let (_, view) = o.call("GET", &format!("/api/v1/install-jobs/{job}"), None, &o.admin.access).await;
        assert_eq!((view["status"].as_str(), view["error_code"].as_str(), view["error_message"].as_str()), (Some("FAILED"), Some("IMPORT_FAILED"), Some("store locked")));
    }

    async fn a_long_poll_answers_as_soon_as_the_job_is_approved(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let job = o.requested_job(&pc, None).await;
        let started = Instant::now();
        let poll = async {
            let answer = o.call("GET", "/api/v1/agent/jobs?wait=10", None, &pc.jwt).await;
            (answer, Instant::now())
        };
        let approve = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            o.approve(&job).await;
            Instant::now()
        };
        let (((status, list), answered), approved) = tokio::join!(poll, approve);
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["jobs"][0]["id"], job.as_str());
        assert_eq!(list["jobs"][0]["status"], "PENDING");
        assert!(answered - started >= Duration::from_millis(250), "answered before the approval");
        let latency = answered.saturating_duration_since(approved);
        eprintln!("{:?}: approve response -> long-poll response: {latency:?}", db.backend);
        assert!(latency < Duration::from_secs(1), "{latency:?}");

        // An auto-approved request wakes a waiting device too.
        let other = o.device("PC-02", true).await;
        let (status, body) = o.call("PATCH", &format!("/api/v1/admin/users/{}", o.view_id), Some(json!({"auto_approve_install_jobs": true})), &o.admin.access).await;
        assert_eq!(status, 200, "{body}");
        let poll = async {
            let answer = o.call("GET", "/api/v1/agent/jobs?wait=10", None, &other.jwt).await;
            (answer, Instant::now())
        };
        let request = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let path = format!("/api/v1/certificados/{}/install", o.cert);
            let (status, job) = o.call("POST", &path, Some(json!({"device_id": other.id})), &o.view.access).await;
            assert_eq!(status, 201, "{job}");
            assert_eq!(job["status"], "PENDING");
            Instant::now()
        };
        let (((status, list), answered), requested) = tokio::join!(poll, request);
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
        let latency = answered.saturating_duration_since(requested);
        eprintln!("{:?}: auto-approved request -> long-poll response: {latency:?}", db.backend);
        assert!(latency < Duration::from_secs(1), "{latency:?}");

        // With a job already there, a long-poll answers at once.
        let started = Instant::now();
        let (status, list) = o.call("GET", "/api/v1/agent/jobs?wait=10", None, &pc.jwt).await;
        assert_eq!(status, 200);
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    async fn a_long_poll_with_nothing_to_do_times_out_empty(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let started = Instant::now();
        let (status, list) = o.call("GET", "/api/v1/agent/jobs?wait=1", None, &pc.jwt).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["jobs"], json!([]));
        assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "{elapsed:?}");

        for wait in ["31", "-1", "3600"] {
            let (status, body) = o.call("GET", &format!("/api/v1/agent/jobs?wait={wait}"), None, &pc.jwt).await;
            assert_eq!(status, 422, "wait={wait}: {body}");
        }
    }

    async fn another_devices_approval_does_not_wake_a_long_poll(db: TestDb) {
        let o = office(&db).await;
        let a = o.device("PC-A", true).await;
        let b = o.device("PC-B", true).await;
        let job = o.requested_job(&b, None).await;
        let started = Instant::now();
        let poll = async {
            let answer = o.call("GET", "/api/v1/agent/jobs?wait=2", None, &a.jwt).await;
            (answer, started.elapsed())
        };
        let approve = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            o.approve(&job).await;
        };
        let (((status, list), elapsed), ()) = tokio::join!(poll, approve);
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["jobs"], json!([]));
        assert!(elapsed >= Duration::from_millis(1750), "A woke after {elapsed:?}");
        // B's job is there for B.
        let (_, list) = o.call("GET", "/api/v1/agent/jobs?wait=2", None, &b.jwt).await;
        assert_eq!(list["jobs"][0]["id"], job.as_str());
    }

    async fn a_user_ends_an_installation_early_through_a_remove_job(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let (installation, thumbprint) = o.installed(&pc).await;
        let (status, page) = o.call("GET", "/api/v1/installations", None, &o.view.access).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 1);
        assert_eq!(page["items"][0]["id"], installation.as_str());
        assert_eq!(page["items"][0]["overdue"], false);
        assert_eq!(page["items"][0]["device"]["hostname"], "PC-01");

        // Another VIEW neither sees nor ends it.
        let other = o.app.onboard(&db, "outra@escritorio.com.br", "VIEW", PW).await;
        let (_, page) = o.call("GET", "/api/v1/installations", None, &other.access).await;
        assert_eq!(page["total"], 0);
        let remove = format!("/api/v1/installations/{installation}/remove");
        let (status, _) = o.call("POST", &remove, Some(json!({})), &other.access).await;
        assert_eq!(status, 404);
        let res = o.app.client.post(o.app.url(&remove)).bearer_auth(&o.view.access)
            .header("content-type", "application/json").body("{\"reason\": ").send().await.unwrap();
        assert_eq!(res.status(), 400);

        // The requester ends it: a PENDING REMOVE job that wakes the device's long-poll.
        let mut removal = String::new();
        let (list, latency) = o.poll_during(&pc, async {
            let (status, job) = o.call("POST", &remove, Some(json!({"reason": "terminei"})), &o.view.access).await;
            assert_eq!(status, 201, "{job}");
            assert_eq!((job["job_type"].as_str(), job["status"].as_str()), (Some("REMOVE"), Some("PENDING")));
            assert_eq!(job["installation_id"], installation.as_str());
            removal = job["id"].as_str().unwrap().to_owned();
        }).await;
        eprintln!("{:?}: remove request -> long-poll response: {latency:?}", db.backend);
        assert!(latency < Duration::from_secs(1), "{latency:?}");
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
        let job = &list["jobs"][0];
        assert_eq!(job["id"], removal.as_str());
        assert_eq!(job["job_type"], "REMOVE");
        assert_eq!(job["thumbprint"], thumbprint.as_str());
        assert_eq!(job["installation_id"], installation.as_str());
        // Asking again gives the same job.
        let (status, again) = o.call("POST", &remove, Some(json!({})), &o.admin.access).await;
        assert_eq!((status, again["id"].as_str()), (200, Some(removal.as_str())));

        // The agent claims it (no payload token: nothing to download) and reports it.
        let (status, claim) = o.claim(&pc, &removal).await;
        assert_eq!(status, 200, "{claim}");
        assert_eq!(claim["job_type"], "REMOVE");
        assert!(claim.get("payload_token").is_none(), "{claim}");
        let (status, _) = o.claim(&pc, &removal).await;
        assert_eq!(status, 409);
        let (status, body) = o.payload(&pc, &removal, "anything").await;
        assert_eq!(status, 409, "{body}");
        let (status, done) = o.result(&pc, &removal, json!({"status": "DONE", "thumbprint": thumbprint, "key_deleted": true})).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["status"], "DONE");
        assert_eq!(done["lease_expires_at"], Value::Null);
        let (_, view) = o.call("GET", &format!("/api/v1/installations/{installation}"), None, &o.view.access).await;
        assert_eq!(view["removal_mode"], "remove_job");
        assert_eq!(view["key_deleted"], true);
        assert!(view["removed_at"].is_string(), "{view}");
        assert_eq!(view["removal_job"]["status"], "DONE");
        // "Remover agora" is recorded as what it is, not as the 18:00 cleanup.
        for action in ["REMOVE_REQUESTED", "REMOVE_CLAIMED", "REMOVE_DONE", "CERT_REMOVED_ON_REQUEST"] {
            assert_eq!(audits(&db, action).await, 1, "{action}");
        }
        assert_eq!(audits(&db, "CERT_REMOVED_18H").await, 0);
        assert_eq!(audits(&db, "INSTALL_DONE").await, 1, "a removal is not an install");
        let (_, device) = o.call("GET", &format!("/api/v1/admin/devices/{}", pc.id), None, &o.admin.access).await;
        assert_eq!(device["installed"], json!([]));
        let (_, jobs) = o.call("GET", "/api/v1/install-jobs?job_type=remove", None, &o.view.access).await;
        assert_eq!(jobs["total"], 1, "{jobs}");

        // Once removed, there is nothing left to end; a second result is a duplicate.
        let (status, _) = o.call("POST", &remove, Some(json!({})), &o.view.access).await;
        assert_eq!(status, 409);
        let (status, _) = o.result(&pc, &removal, json!({"status": "DONE"})).await;
        assert_eq!(status, 409);

        // A removal the agent reports through the daily cleanup cancels a waiting REMOVE job.
        let (installation, thumbprint) = o.installed(&pc).await;
        let (status, job) = o.call("POST", &format!("/api/v1/installations/{installation}/remove"), Some(json!({})), &o.admin.access).await;
        assert_eq!(status, 201, "{job}");
        let removal = job["id"].as_str().unwrap().to_owned();
        let cleanup = json!({"mode": "scheduled", "removed": [{"thumbprint": thumbprint, "key_deleted": true}]});
        let (status, body) = o.call("POST", "/api/v1/agent/cleanup", Some(cleanup), &pc.jwt).await;
        assert_eq!((status, body), (200, json!({"closed": 1})));
        let (_, job) = o.call("GET", &format!("/api/v1/install-jobs/{removal}"), None, &o.admin.access).await;
        assert_eq!(job["status"], "CANCELLED");
        assert_eq!(audits(&db, "REMOVE_CANCELLED").await, 1);
        let (_, list) = o.call("GET", "/api/v1/agent/jobs", None, &pc.jwt).await;
        assert_eq!(list["jobs"], json!([]));
        assert_audit_chain(&db);
    }

    async fn an_overdue_installation_is_flagged_once_and_removed(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let (installation, thumbprint) = o.installed(&pc).await;
        let (_, page) = o.call("GET", "/api/v1/installations?state=overdue", None, &o.admin.access).await;
        assert_eq!(page["total"], 0);

        // The lease ended an hour ago and the agent never reported the removal.
        db.execute(&format!(
            "UPDATE installations SET expires_at = '{}' WHERE id = {}",
            (Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
            uuid_sql(&db, &installation)
        )).await;
        let (_, page) = o.call("GET", "/api/v1/installations?state=overdue", None, &o.admin.access).await;
        assert_eq!(page["total"], 1, "{page}");
        assert_eq!(page["items"][0]["overdue"], true);
        assert_eq!(page["items"][0]["overdue_at"], Value::Null);

        // The sweep flags it once and hands the device a REMOVE job, waking its long-poll.
        let (list, latency) = o.poll_during(&pc, async {
            let (status, swept) = o.call("POST", "/api/v1/admin/jobs/reap", None, &o.admin.access).await;
            assert_eq!(status, 200);
            // The periodic sweep (every 5 minutes, at :30) may have flagged it a moment before.
            let by_cron = swept["overdue"] == 0 && audits(&db, "LEASE_OVERDUE").await == 1;
            if !by_cron {
                assert_eq!(swept, json!({"reaped": 0, "expired": 0, "overdue": 1}));
            }
        }).await;
        assert!(latency < Duration::from_secs(1), "{latency:?}");
        assert_eq!(list["jobs"][0]["job_type"], "REMOVE", "{list}");
        assert_eq!(list["jobs"][0]["thumbprint"], thumbprint.as_str());
        let (_, swept) = o.call("POST", "/api/v1/admin/jobs/reap", None, &o.admin.access).await;
        assert_eq!(swept["overdue"], 0);
        assert_eq!(audits(&db, "LEASE_OVERDUE").await, 1);
        let (_, page) = o.call("GET", "/api/v1/installations?state=overdue", None, &o.admin.access).await;
        assert!(page["items"][0]["overdue_at"].is_string(), "{page}");
        assert_eq!(page["items"][0]["removal_job"]["status"], "PENDING");
        let (_, device) = o.call("GET", &format!("/api/v1/admin/devices/{}", pc.id), None, &o.admin.access).await;
        assert!(device["installed"][0]["overdue_at"].is_string(), "{device}");
        // Requested by the server, not by a user.
        let removal = list["jobs"][0]["id"].as_str().unwrap().to_owned();
        let (_, job) = o.call("GET", &format!("/api/v1/install-jobs/{removal}"), None, &o.admin.access).await;
        assert_eq!(job["requested_by"], Value::Null, "{job}");

        let (status, _) = o.claim(&pc, &removal).await;
        assert_eq!(status, 200);
        let (status, done) = o.result(&pc, &removal, json!({"status": "DONE", "key_deleted": true})).await;
        assert_eq!((status, done["status"].as_str()), (200, Some("DONE")), "{done}");
        let (_, page) = o.call("GET", "/api/v1/installations?state=overdue", None, &o.admin.access).await;
        assert_eq!(page["total"], 0);
        let (_, page) = o.call("GET", "/api/v1/installations?state=removed", None, &o.admin.access).await;
        assert_eq!(page["total"], 1);
        let (status, _) = o.call("GET", "/api/v1/installations?state=gone", None, &o.admin.access).await;
        assert_eq!(status, 400);
        assert_audit_chain(&db);
    }
}

/// `certhub audit verify` passes: every audit row above is in an unbroken chain.
fn assert_audit_chain(db: &TestDb) {
    let out = db.run(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}

/// Two server processes on one PostgreSQL database: an approval on one wakes a long-poll held
/// by the other (LISTEN/NOTIFY), well under a second, also after the listening connections
/// were killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_wakes_a_long_poll_held_by_another_server_process() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let o = office(&db).await;
    let pc = o.device("PC-01", true).await;
    let job = o.requested_job(&pc, None).await;
    let second = spawn_app(&db).await;
    let mut latencies = Vec::new();
    for round in 0..4 {
        let job = if round == 0 {
            job.clone()
        } else {
            o.requested_job(&pc, None).await
        };
        if round == 3 {
            // Both processes lose their LISTEN connection; they reconnect and carry on.
            let killed = db.scalar("SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t").await;
            assert_eq!(killed, 2, "one LISTEN connection per process");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let poll = async {
            let res = second
                .client
                .get(second.url("/api/v1/agent/jobs?wait=10"))
                .bearer_auth(&pc.jwt)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let list: Value = res.json().await.unwrap();
            (status, list, Instant::now())
        };
        let approve = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            o.approve(&job).await;
            Instant::now()
        };
        let ((status, list, answered), approved) = tokio::join!(poll, approve);
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["jobs"][0]["id"], job.as_str(), "{list}");
        latencies.push(answered.saturating_duration_since(approved));
        // Out of the way for the next round.
        let (status, _) = o
            .call(
                "POST",
                &format!("/api/v1/install-jobs/{job}/cancel"),
                None,
                &o.admin.access,
            )
            .await;
        assert_eq!(status, 200);
    }
    eprintln!("approve on process A -> long-poll answered by process B: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );
}

on_both_databases! {
    /// Device rows are cached for agents' requests (`devices::cache`): a block, an unblock or
    /// a token rotation still applies to the very next request, in this process and (on
    /// PostgreSQL) in another server process sharing the database, where the row was cached.
    async fn blocking_and_rotation_apply_at_once_despite_the_device_cache(db: TestDb) {
        let o = office(&db).await;
        let pc = o.device("PC-01", true).await;
        let second = match db.backend {
            Backend::Postgres => Some(spawn_app(&db).await),
            Backend::Sqlite => None,
        };
        let heartbeat = |app: &TestApp| {
            let req = app
                .client
                .post(app.url("/api/v1/agent/heartbeat"))
                .bearer_auth(&pc.jwt)
                .json(&json!({"agent_version": "1.0.0"}))
                .send();
            async move { req.await.unwrap().status().as_u16() }
        };
        let apps: Vec<&TestApp> = std::iter::once(&o.app).chain(second.as_ref()).collect();
        for app in &apps {
            assert_eq!(heartbeat(app).await, 200, "cached on every process");
        }
        let o = &o;
        let admin = |action: &str| {
            let path = format!("/api/v1/admin/devices/{}/{action}", pc.id);
            async move { o.call("POST", &path, None, &o.admin.access).await }
        };
        // The process that made the change answers the next request accordingly; another
        // hears of it by NOTIFY, so it gets the notification's milliseconds.
        for (action, want) in [("block", 403), ("unblock", 200), ("rotate-token", 401)] {
            assert_eq!(admin(action).await.0, 200, "{action}");
            for (i, app) in apps.iter().enumerate() {
                let grace = if i == 0 { Duration::ZERO } else { Duration::from_secs(1) };
                let started = Instant::now();
                let mut status = heartbeat(app).await;
                while status != want && started.elapsed() < grace {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    status = heartbeat(app).await;
                }
                assert_eq!(status, want, "after {action} on process {i}");
                eprintln!("{action} seen by process {i} after {:?}", started.elapsed());
            }
        }
    }
}

/// Four server processes on one PostgreSQL database: ten PENDING jobs, each claimed by its
/// device twenty times at once through all four processes. Exactly one claim per job wins,
/// exactly one `INSTALL_CLAIMED` is written per job, and the audit chain written meanwhile by
/// the four processes has no duplicate or missing `seq` and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_way_claims_through_four_server_processes_have_one_winner_each() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let o = office(&db).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(spawn_app(&db).await);
    }
    let apps: Vec<&TestApp> = std::iter::once(&o.app).chain(others.iter()).collect();
    let mut pcs = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..10 {
        let pc = o.device(&format!("PC-{i:02}"), true).await;
        jobs.push(o.pending_job(&pc, None).await);
        pcs.push(pc);
    }
    let claim = |app: &TestApp, pc: &Device, job: &str| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/agent/jobs/{job}/claim")))
            .bearer_auth(&pc.jwt)
            .send();
        async move {
            let res = req.await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let apps = &apps;
    let claims = pcs
        .iter()
        .zip(&jobs)
        .flat_map(|(pc, job)| (0..20).map(move |k| (pc, job.as_str(), apps[k % apps.len()])));
    let results = futures_util::future::join_all(
        claims.map(|(pc, job, app)| async move { (job, claim(app, pc, job).await) }),
    )
    .await;
    for job in &jobs {
        let mine: Vec<u16> = results
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, (s, _))| *s)
            .collect();
        let won = mine.iter().filter(|s| **s == 200).count();
        let lost = mine.iter().filter(|s| **s == 409).count();
        assert_eq!((won, lost), (1, 19), "job {job}: {mine:?}");
    }
    assert_eq!(audits(&db, "INSTALL_CLAIMED").await, 10);
    let (rows, distinct, lowest, highest) = (
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE org_id = 1")
            .await,
        db.scalar("SELECT COUNT(DISTINCT seq) FROM audit_log WHERE org_id = 1")
            .await,
        db.scalar("SELECT MIN(seq) FROM audit_log WHERE org_id = 1")
            .await,
        db.scalar("SELECT MAX(seq) FROM audit_log WHERE org_id = 1")
            .await,
    );
    assert_eq!((distinct, lowest, highest), (rows, 1, rows));
    let out = db.run(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}
