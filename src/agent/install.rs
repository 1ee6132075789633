//! `INSTALL` jobs: claim, fetch the sealed payload, open it with the device key, import the
//! certificate with a non-exportable key, record it in the ledger, then report the result.
//! Every failure is reported with a documented `error_code` and leaves nothing behind.

use std::time::Duration as StdDuration;

use super::leases::LedgerEntry;
use super::log;
use super::outbox::Report;
use super::runtime::Agent;
use super::store::Installed;
use super::tray_model::installed_balloon;
use crate::crypto::{PayloadContext, SecretString};
use crate::protocol::{AgentJob, AgentJobStatus, CleanupMode, ResultRequest, ResultStatus};
use crate::schedule::local_time;

impl Agent {
    pub(super) fn install(&self, job: &AgentJob) -> Result<(), StdDuration> {
        // Installed before a crash, result not sent: send it again.
        let done = self
            .local()
            .ledger
            .installed
            .iter()
            .find(|e| e.job_id == Some(job.id))
            .cloned();
        if let Some(entry) = done {
            return self.report_installed(job, &entry);
        }
        let claim = match self.identity().client.claim(job.id) {
            Ok(c) => c,
            Err(e) => return Err(self.job_error(job, "claim", &e)),
        };
        let Some(token) = claim.payload_token.map(SecretString::new) else {
            log::warn(format!(
                "Job {}: the claim carried no payload token",
                job.id
            ));
            return Err(StdDuration::from_secs(10));
        };
        let payload = match self.identity().client.payload(job.id, &token) {
            Ok(p) => p,
            Err(e) => return Err(self.job_error(job, "payload", &e)),
        };
        let expected = payload
            .thumbprint
            .clone()
            .or_else(|| job.thumbprint.clone())
            .unwrap_or_default()
            .to_ascii_uppercase();
        let now = self.clock.now();
        let rule = self.lease_rule();
        // The server's rule, so the name, the log and the balloon say what the lease will be.
        let until = rule.end(now, job.duration_minutes.map(i64::from));
        let tz = rule.cleanup.tz;
        let outcome = self.import(job, &payload.sealed, &expected, local_time(until, now, tz));
        let installed = match outcome {
            Ok(i) => i,
            Err((code, message)) => {
                log::warn(format!("Job {} FAILED: {code}: {message}", job.id));
                let result = ResultRequest {
                    status: ResultStatus::Failed,
                    thumbprint: None,
                    error_code: Some(code.to_owned()),
                    error_message: Some(message),
                    key_storage: None,
                    key_deleted: None,
                };
                return match self.identity().client.result(job.id, &result) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.job_error(job, "result", &e)),
                };
            }
        };
        let entry = LedgerEntry {
            installed,
            job_id: Some(job.id),
            installation_id: None,
            cert_name: job.cert_name.clone(),
            installed_at: now,
            expires_at: Some(until),
            server_expires_at: None,
        };
        // Recorded before the result is sent: a crash now still removes it when due.
        {
            let mut local = self.local();
            local.ledger.upsert(entry.clone());
            if let Err(e) = local.ledger.save(&self.dir.ledger()) {
                drop(local);
                log::error(format!(
                    "Could not record the installation: {e}; undoing it"
                ));
                let _ = self.store.remove_with_key(&entry.installed);
                return Err(StdDuration::from_secs(30));
            }
        }
        let name = job.cert_name.clone().unwrap_or_default();
        log::info(format!(
            "Installed {name} ({}) until {} ({}), key in {}",
            entry.installed.thumbprint,
            local_time(until, now, tz),
            until.to_rfc3339(),
            entry.installed.key_storage
        ));
        self.poke_timer();
        let reported = self.report_installed(job, &entry);
        // After the report: at once, with the end the server recorded (it may differ by the
        // seconds between the two clocks, or be earlier), and never for a refused install.
        let end = self
            .local()
            .ledger
            .get(&entry.installed.thumbprint)
            .and_then(|e| e.expires_at);
        if let Some(end) = end {
            let balloon = installed_balloon(&name, &local_time(end, now, tz));
            (self.notify)(&balloon.title, &balloon.text);
        }
        reported
    }

    /// Opens the envelope and imports; every failure as `(error_code, message)` with no
    /// secret in it. A failure leaves nothing in the store.
    fn import(
        &self,
        job: &AgentJob,
        sealed: &crate::protocol::SealedPayload,
        expected: &str,
        until: String,
    ) -> Result<Installed, (&'static str, String)> {
        let identity = self.identity();
        let context = PayloadContext::new(job.id, identity.config.device_id);
        let secret = crate::crypto::open(&identity.key, &context, sealed)
            .map_err(|e| ("ENVELOPE_INVALID", e.to_string()))?;
        if let Some(thumbprint) = self
            .store
            .thumbprint_of(secret.pfx(), secret.password())
            .map_err(|e| (e.code(), e.to_string()))?
            && thumbprint != expected
        {
            return Err((
                "THUMBPRINT_MISMATCH",
                format!("the PFX holds {thumbprint}, the job names {expected}"),
            ));
        }
        let ours = self.local().ledger.get(expected).cloned();
        if let Some(mut existing) = ours
            && self.store.contains(expected).unwrap_or(false)
        {
            // Installed by this agent for an earlier job: it stays, under this job's lease too.
            existing.job_id = Some(job.id);
            return Ok(existing.installed);
        }
        let friendly = format!(
            "CertHub · {} · até {until}",
            job.cert_name.as_deref().unwrap_or("certificado"),
        );
        let installed = self
            .store
            .install(secret.pfx(), secret.password(), &friendly)
            .map_err(|e| (e.code(), e.to_string()))?;
        if installed.thumbprint != expected {
            let _ = self.store.remove_with_key(&installed);
            return Err((
                "THUMBPRINT_MISMATCH",
                format!(
                    "the store holds {}, the job names {expected}",
                    installed.thumbprint
                ),
            ));
        }
        Ok(installed)
    }

    fn report_installed(&self, job: &AgentJob, entry: &LedgerEntry) -> Result<(), StdDuration> {
        let result = ResultRequest {
            status: ResultStatus::Done,
            thumbprint: Some(entry.installed.thumbprint.clone()),
            error_code: None,
            error_message: None,
            key_storage: Some(entry.installed.key_storage.clone()),
            key_deleted: None,
        };
        match self.identity().client.result(job.id, &result) {
            Ok(answer) if answer.status == AgentJobStatus::Failed => {
                // The server did not accept it (e.g. another thumbprint): it must not stay.
                log::warn(format!(
                    "Job {} recorded as FAILED by the server ({}): removing the certificate",
                    job.id,
                    answer.error_code.as_deref().unwrap_or("-")
                ));
                if let Err(e) = self.remove(
                    Report::Cleanup {
                        mode: CleanupMode::Manual,
                    },
                    entry.clone(),
                ) {
                    log::error(format!(
                        "Could not remove {}: {e}",
                        entry.installed.thumbprint
                    ));
                }
                self.flush();
                Ok(())
            }
            Ok(answer) => {
                if let Some(end) = answer.lease_expires_at {
                    let mut local = self.local();
                    if let Some(e) = local.ledger.get_mut(&entry.installed.thumbprint) {
                        e.expires_at = Some(e.expires_at.map_or(end, |t| t.min(end)));
                        e.server_expires_at = Some(end);
                    }
                    if let Err(e) = local.ledger.save(&self.dir.ledger()) {
                        log::error(format!("Could not save installed_thumbprints.json: {e}"));
                    }
                }
                self.poke_timer();
                log::info(format!("Job {} DONE", job.id));
                Ok(())
            }
            Err(e) => Err(self.job_error(job, "result", &e)),
        }
    }
}

/// Parses a `StoreError` code back (for tests of the documented list).
pub fn documented_error_codes() -> &'static [&'static str] {
    &[
        "ENVELOPE_INVALID",
        "WRONG_PASSWORD",
        "IMPORT_REFUSED",
        "STORE_REFUSED",
        "KEY_EXPORTABLE",
        "THUMBPRINT_MISMATCH",
        "ALREADY_INSTALLED",
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use mockito::ServerGuard;
    use serde_json::{Value, json};

    use super::*;
    use crate::agent::leases::Ledger;
    use crate::agent::store::{MemoryStore, StoreError};
    use crate::agent::test_support::*;
    use crate::crypto::{DeviceSecretKey, InstallSecret, seal};

    type MakePayload<'a> = dyn Fn(uuid::Uuid) -> (crate::protocol::SealedPayload, String) + 'a;
    type Sealed = Arc<Mutex<Option<(crate::protocol::SealedPayload, String)>>>;

    /// A server for one install job whose payload `sealed` returns.
    fn install_server(
        seen: Arc<Mutex<Seen>>,
        sealed: Sealed,
        ledger: Arc<Mutex<Option<std::path::PathBuf>>>,
    ) -> ServerGuard {
        let mut server = mockito::Server::new();
        let auths = Arc::clone(&seen);
        respond(&mut server, "POST", AUTH, 200, move |_| {
            auths.lock().unwrap().auths += 1;
            access_token()
        });
        let claims = Arc::clone(&seen);
        respond(&mut server, "POST", job_route("claim"), 200, move |r| {
            claims.lock().unwrap().claims += 1;
            json!({"job_id": job_id(r), "status": "IN_PROGRESS", "job_type": "INSTALL", "payload_token": "pt", "expires_in": 120})
        });
        respond(&mut server, "GET", job_route("payload"), 200, move |r| {
            let (sealed, thumbprint) = sealed.lock().unwrap().clone().unwrap();
            json!({"job_id": job_id(r), "thumbprint": thumbprint, "enc": sealed.enc, "ciphertext": sealed.ciphertext})
        });
        respond(&mut server, "POST", job_route("result"), 200, move |r| {
            let mut seen = seen.lock().unwrap();
            let result: Value = body_of(r);
            if result["status"] == "DONE" {
                let path = ledger.lock().unwrap().clone().unwrap();
                let text = std::fs::read_to_string(path).unwrap_or_default();
                seen.ledger_first
                    .push(text.contains(result["thumbprint"].as_str().unwrap()));
            }
            seen.results.push(result.clone());
            json!({"job_id": job_id(r), "status": result["status"], "error_code": result["error_code"], "lease_expires_at": "2030-01-01T00:00:00Z"})
        });
        server
    }

    fn sealed_for(
        key: &DeviceSecretKey,
        job: uuid::Uuid,
        device: uuid::Uuid,
        pfx: Vec<u8>,
        password: &str,
    ) -> crate::protocol::SealedPayload {
        let secret = InstallSecret::new(pfx, SecretString::new(password.into()));
        seal(
            &key.public_key(),
            &PayloadContext::new(job, device),
            &secret,
        )
    }

    #[test]
    fn after_18h_the_balloons_say_the_real_end_and_the_name() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sealed = Arc::new(Mutex::new(None));
        let ledger = Arc::new(Mutex::new(None));
        let server = install_server(Arc::clone(&seen), Arc::clone(&sealed), Arc::clone(&ledger));
        let mut r = rig(server);
        let balloons = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let shown = Arc::clone(&balloons);
        let agent = r.agent;
        r.agent = agent.with_notifier(move |title, text| {
            shown
                .lock()
                .unwrap()
                .push((title.to_owned(), text.to_owned()));
        });
        *ledger.lock().unwrap() = Some(r.agent.dir.ledger());
        // 23:06 in São Paulo: the next 18:00 is 19 h off, the 10 h cap ends it at 09:06.
        r.clock.set("2026-07-16T02:06:00Z".parse().unwrap());
        let thumb = "CD".repeat(20);
        let id = uuid::Uuid::new_v4();
        *sealed.lock().unwrap() = Some((
            sealed_for(&r.key, id, r.device, MemoryStore::pfx(&thumb, "pw"), "pw"),
            thumb.clone(),
        ));
        let mut until_the_end = job(id, &thumb);
        until_the_end.duration_minutes = None;
        r.agent.handle(&until_the_end).unwrap();
        let entry = Ledger::load(&r.agent.dir.ledger())
            .unwrap()
            .get(&thumb)
            .cloned()
            .unwrap();
        assert_eq!(
            entry.expires_at,
            Some("2026-07-16T12:06:00Z".parse().unwrap())
        );
        assert_eq!(
            balloons.lock().unwrap().as_slice(),
            [(
                "Certificado instalado".to_owned(),
                "EMPRESA X LTDA instalado até 09:06 de amanhã".to_owned()
            )]
        );
        r.agent.cleanup(CleanupMode::Manual);
        assert_eq!(
            balloons.lock().unwrap().last().unwrap().1,
            "EMPRESA X LTDA removido deste computador"
        );
    }

    #[test]
    fn an_install_is_recorded_before_its_result_and_failures_carry_documented_codes() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sealed = Arc::new(Mutex::new(None));
        let ledger = Arc::new(Mutex::new(None));
        let server = install_server(Arc::clone(&seen), Arc::clone(&sealed), Arc::clone(&ledger));
        let r = rig(server);
        *ledger.lock().unwrap() = Some(r.agent.dir.ledger());
        let thumb = "AB".repeat(20);

        // DONE: in the store, in the ledger before the result, with the server's lease end.
        let id = uuid::Uuid::new_v4();
        *sealed.lock().unwrap() = Some((
            sealed_for(&r.key, id, r.device, MemoryStore::pfx(&thumb, "pw"), "pw"),
            thumb.clone(),
        ));
        r.agent.handle(&job(id, &thumb)).unwrap();
        assert_eq!(r.store.thumbprints(), vec![thumb.clone()]);
        assert_eq!(seen.lock().unwrap().ledger_first, vec![true]);
        let done = seen.lock().unwrap().results.pop().unwrap();
        assert_eq!(done["status"], "DONE");
        assert_eq!(done["key_storage"], "MEMORY");
        let entry = Ledger::load(&r.agent.dir.ledger())
            .unwrap()
            .get(&thumb)
            .cloned()
            .unwrap();
        assert_eq!(entry.job_id, Some(id));
        assert_eq!(
            entry.server_expires_at,
            Some("2030-01-01T00:00:00Z".parse().unwrap())
        );

        // The result was lost and the job comes back: DONE again, no second claim.
        let claims = seen.lock().unwrap().claims;
        r.agent.handle(&job(id, &thumb)).unwrap();
        assert_eq!(seen.lock().unwrap().claims, claims);
        assert_eq!(
            seen.lock().unwrap().results.pop().unwrap()["status"],
            "DONE"
        );

        let failures: [(&str, Box<MakePayload>); 3] = [
            (
                "ENVELOPE_INVALID",
                Box::new(|id| {
                    let other = DeviceSecretKey::generate();
                    (
                        sealed_for(&other, id, r.device, MemoryStore::pfx("CD", "pw"), "pw"),
                        "CD".into(),
                    )
                }),
            ),
            (
                "WRONG_PASSWORD",
                Box::new(|id| {
                    (
                        sealed_for(&r.key, id, r.device, MemoryStore::pfx("CD", "pw"), "other"),
                        "CD".into(),
                    )
                }),
            ),
            (
                "THUMBPRINT_MISMATCH",
                Box::new(|id| {
                    (
                        sealed_for(&r.key, id, r.device, MemoryStore::pfx("CD", "pw"), "pw"),
                        "EF".into(),
                    )
                }),
            ),
        ];
        for (code, make) in failures {
            let id = uuid::Uuid::new_v4();
            *sealed.lock().unwrap() = Some(make(id));
            r.agent.handle(&job(id, "CD")).unwrap();
            let failed = seen.lock().unwrap().results.pop().unwrap();
            assert_eq!(failed["status"], "FAILED", "{code}");
            assert_eq!(failed["error_code"], code);
            assert!(
                !failed["error_message"].as_str().unwrap().contains("pw"),
                "{failed}"
            );
        }
        assert_eq!(
            r.store.thumbprints(),
            vec![thumb.clone()],
            "failures leave nothing behind"
        );

        // A certificate the user installed by hand is not taken over.
        r.store.add_foreign("CD");
        let id = uuid::Uuid::new_v4();
        *sealed.lock().unwrap() = Some((
            sealed_for(&r.key, id, r.device, MemoryStore::pfx("CD", "pw"), "pw"),
            "CD".into(),
        ));
        r.agent.handle(&job(id, "CD")).unwrap();
        assert_eq!(
            seen.lock().unwrap().results.pop().unwrap()["error_code"],
            "ALREADY_INSTALLED"
        );
        assert_eq!(
            seen.lock().unwrap().auths,
            1,
            "one access token for all of it"
        );
    }

    #[test]
    fn every_store_error_has_a_documented_code() {
        for e in [
            StoreError::WrongPassword,
            StoreError::ImportRefused(String::new()),
            StoreError::StoreRefused(String::new()),
            StoreError::KeyExportable,
            StoreError::AlreadyInstalled,
        ] {
            assert!(documented_error_codes().contains(&e.code()), "{e:?}");
        }
    }
}
