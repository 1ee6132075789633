//! What must hold of an office's records after any crash, restart or outage (the fault loop,
//! `tests/api/faults.rs`, and the PostgreSQL outages, `tests/api/postgres_outage.rs`).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::{Office, TestDb};

/// Every page of an admin listing.
async fn all(o: &Office, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    for page in 1.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, body) = o
            .call(
                "GET",
                &format!("{path}{sep}page={page}&page_size=200"),
                None,
                &o.admin.access,
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        let got = body["items"].as_array().unwrap().clone();
        let done = got.len() < 200;
        items.extend(got);
        if done {
            break;
        }
    }
    items
}

/// What must hold after every crash and restart; `Err` says what broke.
pub async fn invariants(db: &TestDb, o: &Office, files: i64) -> Result<(), String> {
    let out = db.run(&["audit", "verify"]);
    if !out.status.success() {
        return Err(format!("audit verify: {out:?}"));
    }
    // Every file of the folder is one certificate, ingested once, never "updated".
    let scalar = |sql: &'static str| db.scalar(sql);
    let certificates = scalar("SELECT COUNT(*) FROM certificates").await;
    let ingested = scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_INGESTED'").await;
    let updated = scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_UPDATED'").await;
    if certificates != files || ingested != files || updated != 0 {
        return Err(format!(
            "{files} files: {certificates} certificates, {ingested} CERT_INGESTED, {updated} CERT_UPDATED"
        ));
    }
    // Jobs: one legal state each (the API refuses to show any other), one installation at
    // most per install job, and one exactly per install DONE.
    let jobs: HashMap<String, Value> = all(o, "/api/v1/install-jobs")
        .await
        .into_iter()
        .map(|j| (j["id"].as_str().unwrap().to_owned(), j))
        .collect();
    let installations = all(o, "/api/v1/installations?state=all").await;
    let mut per_job: HashMap<&str, usize> = HashMap::new();
    for i in &installations {
        *per_job.entry(i["job_id"].as_str().unwrap()).or_default() += 1;
    }
    for (job, n) in &per_job {
        let status = jobs.get(*job).map(|j| j["status"].clone());
        if *n != 1 || status != Some(json!("DONE")) {
            return Err(format!("job {job} ({status:?}) has {n} installations"));
        }
    }
    for (id, job) in &jobs {
        if job["job_type"] == "INSTALL"
            && job["status"] == "DONE"
            && !per_job.contains_key(id.as_str())
        {
            return Err(format!("install job {id} is DONE without an installation"));
        }
    }
    // The audit says nothing that did not happen: each outcome row matches its job's state,
    // and no job has two of them.
    for (action, job_type, allowed) in [
        ("INSTALL_DONE", "INSTALL", &["DONE"][..]),
        ("REMOVE_DONE", "REMOVE", &["DONE"][..]),
        ("INSTALL_FAILED", "INSTALL", &["FAILED"][..]),
        (
            "INSTALL_APPROVED",
            "INSTALL",
            &[
                "PENDING",
                "IN_PROGRESS",
                "DONE",
                "FAILED",
                "TIMEOUT",
                "CANCELLED",
            ][..],
        ),
        (
            "INSTALL_CLAIMED",
            "INSTALL",
            &["IN_PROGRESS", "DONE", "FAILED", "TIMEOUT"][..],
        ),
    ] {
        let mut seen = HashSet::new();
        for row in all(o, &format!("/api/v1/audit?action={action}")).await {
            let Some(id) = row["entity_id"].as_str() else {
                return Err(format!("{action} without a job: {row}"));
            };
            let Some(job) = jobs.get(id) else {
                return Err(format!("{action} for job {id}, which does not exist"));
            };
            let status = job["status"].as_str().unwrap_or_default();
            if job["job_type"] != job_type || !allowed.contains(&status) {
                return Err(format!("{action} for job {id}, which is {status}"));
            }
            if action.ends_with("_DONE") && !seen.insert(id.to_owned()) {
                return Err(format!("two {action} rows for job {id}"));
            }
        }
    }
    Ok(())
}
