//! Schemathesis (PyPI `schemathesis`) against the live server, driven by `/openapi.json`: as a
//! VIEW, an ADMIN, a DEV and a device, in positive and negative mode, for a bounded time per
//! identity. It fails on any 5xx, any answer that breaks its documented schema, and any secret
//! in an answer (`scripts/schemathesis_hooks.py` holds that check and points half the
//! generated ids at rows that exist). `scripts/schemathesis.sh` installs Schemathesis and runs
//! this test; reports land in `target/schemathesis/`.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certhub::crypto::DeviceSecretKey;
use serde_json::{Value, json};

use crate::helpers::*;

const PW: &str = "SenhaForte123!";

/// The Schemathesis executable: `CERTHUB_SCHEMATHESIS`, else `schemathesis` on the PATH.
fn schemathesis() -> Option<PathBuf> {
    let candidate = std::env::var_os("CERTHUB_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("schemathesis"));
    Command::new(&candidate)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| candidate)
}

fn report_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Seconds of generated traffic per identity (`CERTHUB_SCHEMATHESIS_SECONDS`, default 30).
fn seconds() -> String {
    std::env::var("CERTHUB_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "30".into())
}

/// The run's seed (`CERTHUB_SCHEMATHESIS_SEED`, default 20261203): a run's cases follow from
/// it and from how many the time allows.
fn seed() -> String {
    std::env::var("CERTHUB_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261203".into())
}

/// Whether the identity `role` runs (`CERTHUB_SCHEMATHESIS_ROLES`, e.g. `view,admin`; unset,
/// every one).
fn role_runs(role: &str) -> bool {
    std::env::var("CERTHUB_SCHEMATHESIS_ROLES")
        .map(|roles| roles.split(',').any(|r| r.trim() == role))
        .unwrap_or(true)
}

/// `schemathesis run` against `app` as the holder of `token`, with `fixtures` for the hooks;
/// its output is kept in `target/schemathesis/{label}.log`, its reports beside it.
fn run(
    bin: &PathBuf,
    app: &TestApp,
    label: &str,
    token: &str,
    fixtures: &std::path::Path,
    extra: &[&str],
) -> (bool, String) {
    let dir = report_dir();
    let output = Command::new(bin)
        .args(["run", &app.url("/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,no_secrets",
            "--mode",
            "all",
            "--seed",
            &seed(),
            "--workers",
            "2",
            "--request-timeout",
            "15",
            "--suppress-health-check",
            "all",
            "--report",
            "junit,ndjson",
            "--report-junit-path",
        ])
        .arg(dir.join(format!("{label}.junit.xml")))
        .arg("--report-ndjson-path")
        .arg(dir.join(format!("{label}.ndjson")))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(extra)
        // Its example database and caches go beside the reports, not into the checkout.
        .current_dir(&dir)
        // The server is on 127.0.0.1; no proxy may stand in between.
        .env("NO_PROXY", "*")
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"),
        )
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("CERTHUB_SCHEMATHESIS_FIXTURES", fixtures)
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(dir.join(format!("{label}.log")), &text).unwrap();
    let summary: Vec<&str> = text.lines().rev().take(12).collect();
    eprintln!(
        "schemathesis {label}: exit {:?}\n{}",
        output.status.code(),
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes of generated traffic: scripts/schemathesis.sh runs it (and .ci/run)"]
async fn schemathesis_finds_no_server_error_no_schema_break_and_no_secret() {
    let Some(bin) = schemathesis() else {
        assert!(
            std::env::var("CI").is_err(),
            "Schemathesis is required in CI: scripts/schemathesis.sh installs it"
        );
        eprintln!("SKIPPED: Schemathesis is not installed (scripts/schemathesis.sh installs it)");
        return;
    };
    let mut backends = vec![Backend::Sqlite];
    if postgres_available().await {
        backends.push(Backend::Postgres);
    }
    let mut failures = Vec::new();
    for backend in backends {
        failures.extend(run_on(&bin, backend).await);
    }
    assert!(
        failures.is_empty(),
        "Schemathesis found:\n{}",
        failures.join("\n")
    );
}

/// Whether a PostgreSQL is reachable; in CI one must be.
async fn postgres_available() -> bool {
    match TestDb::new(Backend::Postgres).await {
        Some(_) => true,
        None => {
            assert!(std::env::var("CI").is_err(), "PostgreSQL is required in CI");
            eprintln!("SKIPPED on PostgreSQL: CERTHUB_TEST_POSTGRES_URL is not reachable");
            false
        }
    }
}

/// The FAILURES section of a Schemathesis log (what it found and the curl line that shows
/// it), cut to a length a CI log keeps whole; the whole log when it has no such section.
fn failures_section(text: &str) -> String {
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("FAILURES"))
        .take_while(|l| !l.contains("SUMMARY"))
        .collect();
    let section = if section.is_empty() {
        text.to_owned()
    } else {
        section.join("\n")
    };
    section.chars().take(6000).collect()
}

/// One office with something in every table, then one Schemathesis run per identity.
async fn run_on(bin: &PathBuf, backend: Backend) -> Vec<String> {
    let db = TestDb::new(backend).await.unwrap();
    let o = office(&db).await;
    let dev = o.app.onboard(&db, "dev@escritorio.com.br", "DEV", PW).await;
    // Devices: one the runs act on, one that only the DEVICE run uses (an admin run may block
    // or rotate the first); an installed certificate, a pending and a requested job.
    let target = o.device("PC-ALVO", true).await;
    let (installation, _) = o.installed(&target).await;
    let pending = o.pending_job(&target, None).await;
    let requested = o.requested_job(&target, Some(60)).await;
    let (status, created) = o
        .call(
            "POST",
            "/api/v1/admin/devices",
            Some(json!({"hostname": "PC-FUZZ"})),
            &o.admin.access,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let device_token = created["device_token"].as_str().unwrap().to_owned();
    let key = DeviceSecretKey::generate();
    let res = o
        .app
        .send(
            "POST",
            "/api/v1/agent/auth",
            Some(
                json!({"device_id": created["id"], "device_token": device_token,
                        "public_key": key.public_key().to_base64()}),
            ),
            None,
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let auth: Value = res.json().await.unwrap();
    let device_jwt = auth["access_token"].as_str().unwrap().to_owned();
    let (_, users) = o
        .call("GET", "/api/v1/admin/users", None, &o.admin.access)
        .await;

    let mut ids: Vec<String> = vec![
        o.cert.clone(),
        target.id.clone(),
        created["id"].as_str().unwrap().to_owned(),
        installation,
        pending,
        requested,
    ];
    ids.extend(
        users
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u["id"].as_str().map(str::to_owned)),
    );

    let master_key = std::fs::read_to_string(db.data_dir().join("master.key"))
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let pfx = STANDARD.encode(fixture("ecnpj-aes.pfx"));
    let source_path = "/api/v1/admin/certificates/{id}/source-path";
    let mut secrets = vec![
        json!({"label": "a user's password", "value": PW}),
        json!({"label": "the device token", "value": device_token}),
        json!({"label": "the PFX file (base64)", "value": &pfx[..48]}),
        json!({"label": "the PFX password in its file name", "value": "Senha 1234",
               "allowed_in": [source_path]}),
    ];
    if master_key.len() >= 16 {
        secrets.push(json!({"label": "the master key", "value": master_key}));
    }

    let name = format!("{backend:?}").to_lowercase();
    let dir = report_dir();
    let secrets_file = dir.join(format!("{name}-secrets.json"));
    std::fs::write(
        &secrets_file,
        serde_json::to_vec(&json!({"secrets": secrets, "ids": ids})).unwrap(),
    )
    .unwrap();

    // The secret check must be able to fail: a canary planted in every `/auth/me` answer
    // (the user's own e-mail domain) is caught.
    let canary = dir.join(format!("{name}-canary.json"));
    std::fs::write(
        &canary,
        serde_json::to_vec(&json!({"ids": ids, "secrets": [
            {"label": "the planted canary", "value": "escritorio.com.br"}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let (passed, text) = run(
        bin,
        &o.app,
        &format!("{name}-canary"),
        &o.view.access,
        &canary,
        &[
            "--include-path",
            "/api/v1/auth/me",
            "--max-examples",
            "5",
            "--phases",
            "examples,coverage",
        ],
    );
    assert!(
        !passed && text.contains("the planted canary"),
        "the secret check did not catch its canary:\n{text}"
    );

    let identities = [
        ("device", device_jwt),
        ("view", o.view.access.clone()),
        ("dev", dev.access.clone()),
        ("admin", o.admin.access.clone()),
    ];
    let mut failures = Vec::new();
    for (role, token) in identities.into_iter().filter(|(r, _)| role_runs(r)) {
        let label = format!("{name}-{role}");
        let (passed, text) = run(
            bin,
            &o.app,
            &label,
            &token,
            &secrets_file,
            &["--max-time", &seconds()],
        );
        if !passed {
            failures.push(format!(
                "{label} (whole log: target/schemathesis/{label}.log):\n{}",
                failures_section(&text)
            ));
        }
    }
    let logs = o.app.logs();
    assert!(
        !logs.contains("panicked"),
        "the server panicked under Schemathesis:\n{logs}"
    );
    failures
}
