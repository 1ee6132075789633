//! `certhub doctor` (issue 24, point 6) on real deployments: a good one exits 0; one broken in
//! several ways names each problem with its fix and exits non-zero; a configuration that does
//! not load is a finding too; the ADMIN's Painel shows the same findings.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use crate::helpers::*;
use crate::on_both_databases;

const PW: &str = "SenhaForte123!";

/// Runs `certhub doctor` on `db` with `env`; `open_files` lowers its open-files limit.
fn doctor(db: &TestDb, env: &[(&str, &str)], open_files: Option<u64>) -> (bool, String) {
    let mut cmd = db.command();
    cmd.envs(env.iter().copied()).arg("doctor");
    if let Some(limit) = open_files {
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let out = cmd.output().expect("run certhub doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A certificates folder only the service reads, and an agent to serve.
fn good_env(db: &TestDb) -> Vec<(String, String)> {
    let certs = db.dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o750)).unwrap();
    let exe = db.dir().join("certhub-agent.exe");
    std::fs::write(&exe, b"MZ agent").unwrap();
    vec![
        ("CERTHUB_CERTS_ROOT".into(), certs.display().to_string()),
        ("CERTHUB_AGENT_EXE_FILE".into(), exe.display().to_string()),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

on_both_databases! {
    async fn a_good_deployment_passes(db: TestDb) {
        let env = good_env(&db);
        // The office's server (its folder was ingested once, by the command line).
        let o = office_with(&db, &pairs(&env[1..])).await;
        let mut env = pairs(&env);
        env.push(("CERTHUB_PUBLIC_URL", o.app.address.as_str()));
        let (ok, text) = doctor(&db, &env, None);
        assert!(ok, "{text}");
        assert!(text.contains("tudo certo"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_broken_in_six_ways_names_all_six() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let _o = office(&db).await;
    let key = db.data_dir().join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    // Ends in five days.
    let end = chrono::Utc::now() + chrono::Duration::days(5);
    params.not_after = rcgen::date_time_ymd(
        chrono::Datelike::year(&end),
        chrono::Datelike::month(&end) as u8,
        chrono::Datelike::day(&end) as u8,
    );
    let signing = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&signing).unwrap();
    let (cert_file, key_file) = (db.dir().join("cert.pem"), db.dir().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing.serialize_pem()).unwrap();
    let missing_certs = db.dir().join("no-such-folder");
    let missing_exe = db.dir().join("no-such-agent.exe");
    let env = [
        ("CERTHUB_CERTS_ROOT", missing_certs.to_str().unwrap()),
        ("CERTHUB_AGENT_EXE_FILE", missing_exe.to_str().unwrap()),
        ("CERTHUB_PUBLIC_URL", "http://certhub.invalid:1"),
        ("CERTHUB_TLS_CERT_FILE", cert_file.to_str().unwrap()),
        ("CERTHUB_TLS_KEY_FILE", key_file.to_str().unwrap()),
    ];
    let (ok, text) = doctor(&db, &env, Some(256));
    assert!(!ok, "{text}");
    for (check, says) in [
        ("[pasta dos certificados]", "no-such-folder"),
        ("[agente]", "agent_exe_file"),
        ("[chave mestra]", "chmod 600"),
        ("[public_url]", "não responde"),
        ("[limite de arquivos abertos]", "256"),
        ("[certificado TLS]", "vence em"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("{check} not named:\n{text}"));
        assert!(line.contains(says), "{line}\n{text}");
    }
    assert_eq!(
        text.matches("Como corrigir:").count(),
        text.matches("PROBLEMA [").count()
    );
    assert!(text.contains("certhub doctor: 6 problema(s)"), "{text}");

    // A configuration that does not load is the finding.
    let (ok, text) = doctor(&db, &[("CERTHUB_BCRYPT_COST", "99")], None);
    assert!(!ok);
    assert!(
        text.contains("PROBLEMA [configuração]") && text.contains("bcrypt_cost"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_painel_shows_the_admin_what_doctor_finds() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // No agent to serve: the one-line install cannot work.
    let o = office(&db).await;
    let (b, _) = session(&o.app, "admin@escritorio.com.br", PW).await;
    let html = page_text(&b, &o.app.url("/")).await;
    assert!(html.contains("Verificação da instalação"), "{html}");
    assert!(html.contains("agent_exe_file"), "{html}");
    assert!(html.contains("Como corrigir"), "{html}");
    // A VIEW's Painel does not.
    let (b, _) = session(&o.app, "view@escritorio.com.br", PW).await;
    let html = page_text(&b, &o.app.url("/")).await;
    assert!(!html.contains("Verificação da instalação"), "{html}");
}
