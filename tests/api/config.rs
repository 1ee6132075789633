use crate::helpers::*;

#[tokio::test]
async fn invalid_configuration_fails_at_start_naming_the_key() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let out = db
        .command()
        .arg("serve")
        .env("CERTHUB_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`listen`"), "{err}");

    let file = db.dir().join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nwatcher_debounce = 3\n").unwrap();
    let out = db
        .command()
        .args(["--config", file.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("watcher_debounce"), "{err}");

    let out = db
        .command()
        .arg("serve")
        .env("CERTHUB_TIMEZONE", "Brasil/Nowhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`timezone`"));

    let out = db
        .command()
        .arg("serve")
        .env("CERTHUB_MASTER_KEY", "too-short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("master_key") && !err.contains("too-short"),
        "{err}"
    );
}

#[tokio::test]
async fn config_file_values_apply_and_environment_wins() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let file = db.dir().join("config.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\norg_name = \"Contábil Neto\"\n",
    )
    .unwrap();
    // CERTHUB_LISTEN (port 0, from the harness) overrides the file's port 1.
    let app = try_spawn_app(&db, &[], Some(&file)).await.unwrap();
    assert!(!app.address.ends_with(":1"), "{}", app.address);
    let home = app.get("/").await.text().await.unwrap();
    assert!(home.contains("Contábil Neto"), "{home}");
}
