use std::time::Duration;

use crate::helpers::*;

const PW: &str = "SenhaForte123!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_directly_when_configured() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_file = db.dir().join("cert.pem");
    let key_file = db.dir().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let app = spawn_app_with(
        &db,
        &[
            ("CERTHUB_TLS_CERT_FILE", cert_file.to_str().unwrap()),
            ("CERTHUB_TLS_KEY_FILE", key_file.to_str().unwrap()),
        ],
    )
    .await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("strict-transport-security"));
    let plain = app.address.replace("https://", "http://");
    let res = reqwest::get(format!("{plain}/health")).await;
    assert!(
        res.is_err() || res.unwrap().status() != 200,
        "plain HTTP must not be served on the TLS port"
    );

    let bad = db.dir().join("garbage.pem");
    std::fs::write(&bad, "not a pem").unwrap();
    let err = try_spawn_app(
        &db,
        &[
            ("CERTHUB_TLS_CERT_FILE", bad.to_str().unwrap()),
            ("CERTHUB_TLS_KEY_FILE", key_file.to_str().unwrap()),
        ],
        None,
    )
    .await
    .err()
    .expect("must refuse a bad certificate");
    assert!(err.contains("tls_cert_file"), "{err}");
}

/// The SHA-256 fingerprint of the certificate `url` answers with (`AB:CD:…`).
async fn served_fingerprint(url: &str) -> String {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let res = client.get(url).send().await.expect("HTTPS answers");
    let info = res
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info");
    let der = info.peer_certificate().expect("a certificate");
    certhub::protocol::Fingerprint::of(der).to_string()
}

/// The console line after "listening" that gives the fingerprint.
fn console_fingerprint(app: &TestApp) -> String {
    let line = app
        .stdout_lines
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the fingerprint line");
    line.strip_prefix("Certificado TLS do servidor (SHA-256): ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned()
}

/// Issue 23, point 1: `tls = "auto"` serves HTTPS out of the box with a certificate the
/// server makes once (ECDSA P-256, the key 0600 in the data dir), and its fingerprint is the
/// one the console prints and the Dispositivos page shows; plain HTTP beyond localhost warns on
/// the Painel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_auto_makes_its_certificate_once_and_shows_its_fingerprint() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // The test database's data dir (its master key is there too).
    let data = db.dir().join("data");
    let env = [
        ("CERTHUB_TLS", "auto"),
        ("CERTHUB_TLS_NAMES", "certhub.escritorio.local, 10.0.0.5"),
    ];
    let mut app = spawn_app_with(&db, &env).await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    let printed = console_fingerprint(&app);
    let served = served_fingerprint(&app.url("/health")).await;
    assert_eq!(printed, served);
    let key = data.join("tls/server.key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let pem = std::fs::read_to_string(data.join("tls/server.crt.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    for name in ["certhub.escritorio.local", "localhost"] {
        assert!(names.contains(name), "{names}");
    }
    assert!(
        names.contains("10.0.0.5") || names.contains("[10, 0, 0, 5]"),
        "{names}"
    );
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "an EC key"
    );

    // The admin sees the same fingerprint on Dispositivos.
    app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
        .await;
    let (b, _) = session(&app, "admin@escritorio.com.br", PW).await;
    let html = page_text(&b, &app.url("/dispositivos")).await;
    assert!(html.contains(&served), "the fingerprint is on Dispositivos");

    // `certhub doctor` shows it too.
    let doctor = db
        .command()
        .env("CERTHUB_TLS", "auto")
        .arg("doctor")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains(&format!("Certificado TLS do servidor (SHA-256): {served}")),
        "{said}"
    );

    // Made once: the next start serves the same certificate.
    app.child.kill().unwrap();
    app.child.wait().unwrap();
    let app = spawn_app_with(&db, &env).await;
    assert_eq!(console_fingerprint(&app), served);
    assert_eq!(served_fingerprint(&app.url("/health")).await, served);
}

/// A configured certificate replaced on disk is served within seconds, without a restart; a
/// broken replacement keeps the one being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_is_reloaded_when_its_files_change() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (cert_file, key_file) = (db.dir().join("cert.pem"), db.dir().join("key.pem"));
    let write = |names: Vec<String>| {
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(&key_file, made.key_pair.serialize_pem()).unwrap();
        std::fs::write(&cert_file, made.cert.pem()).unwrap();
    };
    write(vec!["localhost".into(), "127.0.0.1".into()]);
    let app = spawn_app_with(
        &db,
        &[
            ("CERTHUB_TLS_CERT_FILE", cert_file.to_str().unwrap()),
            ("CERTHUB_TLS_KEY_FILE", key_file.to_str().unwrap()),
        ],
    )
    .await;
    let first = served_fingerprint(&app.url("/health")).await;
    assert_eq!(console_fingerprint(&app), first);
    std::thread::sleep(std::time::Duration::from_millis(50));
    write(vec!["localhost".into(), "certhub.local".into()]);
    let url = app.url("/health");
    let changed = eventually(std::time::Duration::from_secs(10), || async {
        served_fingerprint(&url).await != first
    })
    .await;
    assert!(changed, "the new certificate is not served: {}", app.logs());
    let second = served_fingerprint(&url).await;
    assert!(
        app.logs().contains("TLS certificate reloaded"),
        "{}",
        app.logs()
    );

    std::fs::write(&cert_file, "not a pem").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        served_fingerprint(&url).await,
        second,
        "a broken file is not taken up"
    );
    assert!(
        app.logs().contains("still serving the previous one"),
        "{}",
        app.logs()
    );
}

/// Plain `http://` to another machine puts the risk on the ADMIN's Painel; localhost does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_beyond_localhost_warns_the_admin() {
    let warning = "Conexão sem criptografia";
    for (public_url, warned) in [
        ("http://certhub.escritorio.local:8010", true),
        ("http://127.0.0.1:8010", false),
    ] {
        let db = TestDb::new(Backend::Sqlite).await.unwrap();
        let app = spawn_app_with(&db, &[("CERTHUB_PUBLIC_URL", public_url)]).await;
        app.onboard(&db, "admin@escritorio.com.br", "ADMIN", PW)
            .await;
        let (b, _) = session(&app, "admin@escritorio.com.br", PW).await;
        let html = page_text(&b, &app.url("/")).await;
        assert_eq!(html.contains(warning), warned, "{public_url}");
        let html = page_text(&b, &app.url("/dispositivos")).await;
        assert_eq!(html.contains("sem criptografia"), warned, "{public_url}");
    }
}

fn hex_of(fingerprint: &str) -> String {
    fingerprint.replace(':', "")
}

fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// Issue 23, point 3: under `tls = "auto"` the provisioning answer gives the certificate's
/// fingerprint; the one-line install pins it for its own download; the served `install.ps1`
/// carries that fingerprint and the SHA-256 of the `.exe` served (both recomputed here from
/// what the server really serves), which streams with its hash as `ETag` and a per-address
/// limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_script_carries_the_served_agents_hash_and_the_certificates_fingerprint() {
    use sha2::Digest;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // Larger than one read of the stream, and not the same byte repeated.
    let agent: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let exe = db.dir().join("certhub-agent.exe");
    std::fs::write(&exe, &agent).unwrap();
    let o = office_with(
        &db,
        &[
            ("CERTHUB_TLS", "auto"),
            ("CERTHUB_AGENT_EXE_FILE", exe.to_str().unwrap()),
        ],
    )
    .await;
    let served = served_fingerprint(&o.app.url("/health")).await;
    let d = o.provision("PC-FISCAL-01").await;
    assert_eq!(d["server_fingerprint"], served.as_str(), "{d}");
    let code = d["enrollment_code"].as_str().unwrap();
    let line = d["install_command"].as_str().unwrap();
    assert!(
        line.starts_with(&format!("$f='{}'; ", hex_of(&served))),
        "{line}"
    );
    assert!(
        line.contains("ServerCertificateValidationCallback="),
        "{line}"
    );
    assert!(
        line.contains("; irm 'https://")
            && line.ends_with(&format!("/agent/install.ps1?code={code}' | iex")),
        "{line}"
    );

    let script = o
        .app
        .get(&format!("/agent/install.ps1?code={code}"))
        .await
        .text()
        .await
        .unwrap();
    let sha = hex::encode_upper(sha2::Sha256::digest(&agent));
    assert!(
        script.contains(&format!("$fingerprint = '{}'", hex_of(&served))),
        "{script}"
    );
    assert!(
        script.contains(&format!("$agentSha256 = '{sha}'")),
        "{script}"
    );
    assert!(
        script.contains("Get-FileHash -Algorithm SHA256"),
        "{script}"
    );
    assert!(
        script.contains("pair --server $server --code $code --fingerprint $fingerprint"),
        "{script}"
    );
    // The check comes before the agent is run.
    assert!(
        script.find("$got -ne $agentSha256").unwrap() < script.find("& $download install").unwrap()
    );

    // The download is the file, its SHA-256 its ETag; a client that has it gets a 304.
    let client = insecure_client();
    let url = o.app.url("/agent/certhub-agent.exe");
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", sha.to_lowercase()));
    assert_eq!(
        res.headers()["content-length"],
        agent.len().to_string().as_str()
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), agent.as_slice());
    let res = client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    // A new agent put in place: the script's hash follows it.
    let newer: Vec<u8> = agent.iter().rev().copied().collect();
    std::fs::write(&exe, &newer).unwrap();
    let newer_sha = hex::encode_upper(sha2::Sha256::digest(&newer));
    let script = o.app.get("/agent/install.ps1").await.text().await.unwrap();
    assert!(
        script.contains(&format!("$agentSha256 = '{newer_sha}'")),
        "{script}"
    );

    // One address cannot pull the file without end.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(client.get(&url).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        !statuses.iter().any(|s| ![200, 429].contains(s)),
        "{statuses:?}"
    );
}

/// Issue 23, point 3: over plain `http://` to another host the script refuses to run (the
/// credentials page says why), unless `agent_install_over_http` accepts the risk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_script_refuses_plain_http_unless_allowed() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let exe = db.dir().join("certhub-agent.exe");
    std::fs::write(&exe, b"MZ agent").unwrap();
    let exe = exe.to_str().unwrap().to_owned();
    let env = [
        ("CERTHUB_PUBLIC_URL", "http://certhub.escritorio:8010"),
        ("CERTHUB_AGENT_EXE_FILE", exe.as_str()),
    ];
    let o = office_with(&db, &env).await;
    let script = o.app.get("/agent/install.ps1").await.text().await.unwrap();
    assert!(script.contains("$allowHttp = $false"), "{script}");
    assert!(script.contains("$fingerprint = ''"), "{script}");
    assert!(
        script.find("-not $allowHttp").unwrap() < script.find("Invoke-WebRequest").unwrap(),
        "refused before any download"
    );
    let d = o.provision("PC-HTTP").await;
    assert!(d.get("server_fingerprint").is_none(), "{d}");
    // The credentials page shows no line that would refuse to run, and says why.
    let (admin, csrf) = session(&o.app, "admin@escritorio.com.br", PW).await;
    let html = admin
        .post(o.app.url("/dispositivos"))
        .form(&[("csrf", csrf.as_str()), ("hostname", "PC-HTTP-2")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("A instalação por uma linha está desligada"),
        "{html}"
    );
    assert!(!html.contains("install.ps1"), "{html}");

    let other = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut env = env.to_vec();
    env.push(("CERTHUB_AGENT_INSTALL_OVER_HTTP", "true"));
    let o = office_with(&other, &env).await;
    let script = o.app.get("/agent/install.ps1").await.text().await.unwrap();
    assert!(script.contains("$allowHttp = $true"), "{script}");
}

/// A self-made certificate for localhost: (certificate PEM, key PEM, fingerprint).
fn made_certificate() -> (String, String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let fingerprint = certhub::protocol::Fingerprint::of(made.cert.der()).to_string();
    (made.cert.pem(), made.key_pair.serialize_pem(), fingerprint)
}

/// Issue 23, point 2 (a planned change), with the real Linux agent: pinned to the office's
/// certificate, it learns the next one from the heartbeat (`tls_next_cert_file`, announced over
/// the pinned connection), keeps working when the files are swapped and pins the new one; a
/// certificate nobody announced is refused, and nothing is claimed through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_certificate_change_reaches_pinned_agents_before_it_takes_effect() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (cert_a, key_a, pin_a) = made_certificate();
    let (cert_b, key_b, pin_b) = made_certificate();
    let (cert_c, key_c, _) = made_certificate();
    let dir = db.dir().join("office-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file, next_file) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("next.pem"),
    );
    std::fs::write(&cert_file, &cert_a).unwrap();
    std::fs::write(&key_file, &key_a).unwrap();
    let o = office_with(
        &db,
        &[
            ("CERTHUB_TLS_CERT_FILE", cert_file.to_str().unwrap()),
            ("CERTHUB_TLS_KEY_FILE", key_file.to_str().unwrap()),
            ("CERTHUB_TLS_NEXT_CERT_FILE", next_file.to_str().unwrap()),
            ("CERTHUB_AGENT_HEARTBEAT_INTERVAL_SECONDS", "5"),
            ("CERTHUB_AGENT_LONG_POLL_SECONDS", "2"),
        ],
    )
    .await;
    let device = o.provision("PC-PIN-01").await;
    assert_eq!(device["server_fingerprint"], pin_a.as_str());
    let id = device["id"].as_str().unwrap().to_owned();
    let mut pc = crate::helpers::agent::Pc::new();
    pc.pair(&[
        "--server",
        &o.app.address,
        "--code",
        device["enrollment_code"].as_str().unwrap(),
        "--fingerprint",
        &pin_a.to_lowercase().replace(':', ""),
    ]);
    assert_eq!(
        pc.json("server_certificate.json")["current"],
        pin_a.as_str()
    );
    pc.start(0).await;
    let job = o.approved(&id, 60).await;
    o.wait_job(&job, "DONE", Duration::from_secs(10)).await;

    // The next certificate is put in place: the agent hears of it with a heartbeat.
    std::fs::write(&next_file, &cert_b).unwrap();
    let learned = eventually(Duration::from_secs(30), || async {
        pc.json("server_certificate.json")["next"] == pin_b.as_str()
    })
    .await;
    assert!(
        learned,
        "{}\n{}",
        pc.json("server_certificate.json"),
        pc.log()
    );

    // It takes effect: the agent goes on, and now pins it alone.
    std::fs::write(&key_file, &key_b).unwrap();
    std::fs::write(&cert_file, &cert_b).unwrap();
    let switched = eventually(Duration::from_secs(30), || async {
        pc.json("server_certificate.json")["current"] == pin_b.as_str()
    })
    .await;
    assert!(
        switched,
        "{}\n{}",
        pc.json("server_certificate.json"),
        pc.log()
    );
    assert!(
        pc.json("server_certificate.json")["next"].is_null(),
        "{}",
        pc.json("server_certificate.json")
    );
    let job = o.approved(&id, 60).await;
    o.wait_job(&job, "DONE", Duration::from_secs(15)).await;
    assert!(
        pc.last_error().unwrap_or_default().is_empty(),
        "{}",
        pc.last_error().unwrap_or_default()
    );

    // A certificate nobody announced: refused at the next connection (the agent is started
    // again: a connection made before the change stays the real server's), and a job waiting
    // stays unclaimed.
    std::fs::write(&key_file, &key_c).unwrap();
    std::fs::write(&cert_file, &cert_c).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pc.kill();
    pc.start(0).await;
    let refused = eventually(Duration::from_secs(40), || async {
        pc.last_error()
            .unwrap_or_default()
            .starts_with("O certificado do servidor mudou")
    })
    .await;
    assert!(refused, "{}", pc.log());
    let job = o.approved(&id, 60).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(o.job(&job).await["status"], "PENDING");
    pc.kill();
}
