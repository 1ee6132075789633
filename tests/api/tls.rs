use crate::helpers::*;

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
