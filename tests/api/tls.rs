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
    use sha2::Digest;
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
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
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
