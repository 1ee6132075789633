//! Ingesting the office's folder: real files on disk, every variant offices have, bad input.

use serde_json::json;

use crate::helpers::*;
use crate::on_both_databases;

/// A folder with what a real one holds: good files, bad files and things that are not files.
fn make_folder(db: &TestDb) -> std::path::PathBuf {
    let root = certificates_folder(
        db,
        &[
            EMPRESA_X,
            ("PADARIA BOA senha_abc123.P12", "ecnpj-octet-legacy.pfx"),
            ("errada Senha 9999.pfx", "ecnpj-aes.pfx"),
            ("sub/dentro Senha 1234.pfx", "ecnpj-aes.pfx"),
        ],
    );
    std::fs::write(
        root.join("lixo.pfx"),
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(root.join("vazio.pfx"), b"").unwrap();
    std::fs::write(root.join("grande.pfx"), vec![0u8; 200_000]).unwrap();
    std::fs::write(root.join("notas.txt"), b"senha de todos: 1234").unwrap();
    std::fs::create_dir_all(root.join("pasta.pfx")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        root.join("EMPRESA X LTDA Senha 1234.pfx"),
        root.join("atalho.pfx"),
    )
    .unwrap();
    root
}

on_both_databases! {
    async fn the_folder_becomes_a_sealed_catalogue(db: TestDb) {
        let root = make_folder(&db);
        let dry = ingest(&db, &root, &["--dry-run"]);
        assert!(dry.stdout.contains("dry run: ingested 2, updated 0, unchanged 0, failed 3, removed 0, skipped 3"), "{}", dry.stdout);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates").await, 0, "a dry run writes nothing");

        let out = ingest(&db, &root, &[]);
        assert!(out.stdout.contains("ingested 2, updated 0, unchanged 0, failed 3, removed 0, skipped 3"), "{}", out.stdout);
        assert!(out.stdout.contains("EMPRESA X LTDA Senha ***.pfx"), "{}", out.stdout);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates").await, 5);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE parse_error IS NOT NULL").await, 3);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE name LIKE '%1234%' OR name LIKE '%abc123%' OR name LIKE '%9999%'").await, 0);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE cnpj = '11222333000181' AND cert_kind = 'E_CNPJ'").await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_INGESTED'").await, 2);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_PARSE_FAILED'").await, 3);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%Senha 1234%' OR meta_json LIKE '%senha_abc123%'").await, 0);

        // A rescan finds nothing new; a file that leaves the folder becomes unavailable.
        let again = ingest(&db, &root, &[]);
        assert!(again.stdout.contains("ingested 0, updated 0, unchanged 5, failed 0, removed 0"), "{}", again.stdout);
        std::fs::remove_file(root.join("PADARIA BOA senha_abc123.P12")).unwrap();
        let after = ingest(&db, &root, &[]);
        assert!(after.stdout.contains("removed 1"), "{}", after.stdout);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM certificates WHERE is_available = false").await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_REMOVED_FROM_SOURCE'").await, 1);

        // The catalogue as users see it: clean names, ICP fields, never a file or a password.
        let app = spawn_app_with(&db, &[("CERTHUB_CERTS_ROOT", root.to_str().unwrap()), ("CERTHUB_MAX_PFX_BYTES", "100000")]).await;
        let admin = app.onboard(&db, "admin@escritorio.com.br", "ADMIN", "SenhaForte123!").await;
        let res = app.send("GET", "/api/v1/certificados", None, Some(&admin.access), None).await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        // Random ids aside (a UUID may well contain "1234"), nothing shows a password.
        let mut shown = body.clone();
        for item in shown["items"].as_array_mut().unwrap() {
            item.as_object_mut().unwrap().remove("id");
        }
        let text = shown.to_string();
        for secret in ["1234", "abc123", "9999", "pfx_sealed", "password_sealed", "source_path"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let empresa = body["items"].as_array().unwrap().iter().find(|c| c["name"] == "EMPRESA X LTDA").expect("listed");
        assert_eq!(empresa["cnpj"], "11222333000181");
        assert_eq!(empresa["sha1"], "7B3C178DEC16A243F74032D95D4D542955C5A8D3");

        let res = app.send("POST", "/api/v1/admin/certificates/ingest-from-fs", Some(json!({"dry_run": true})), Some(&admin.access), None).await;
        assert_eq!(res.status(), 200);
        let report: serde_json::Value = res.json().await.unwrap();
        assert_eq!(report["dry_run"], true);
        assert_eq!(report["unchanged"], 4);
        assert!(db.run(&["audit", "verify"]).status.success());
    }
}

/// Files added or removed while the server was down are reconciled when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_reconciles_the_folder() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let root = certificates_folder(&db, &[EMPRESA_X]);
    let env = [("CERTHUB_CERTS_ROOT", root.to_str().unwrap())];
    let app = spawn_app_with(&db, &env).await;
    let ingested = eventually(std::time::Duration::from_secs(15), || async {
        db.scalar(
            "SELECT COUNT(*) FROM certificates WHERE is_available = true AND parse_error IS NULL",
        )
        .await
            == 1
    })
    .await;
    assert!(ingested, "not ingested at start-up; logs:\n{}", app.logs());
    drop(app);

    // While the server is down: one file leaves, another arrives.
    std::fs::remove_file(root.join("EMPRESA X LTDA Senha 1234.pfx")).unwrap();
    std::fs::write(
        root.join("PADARIA BOA senha_abc123.pfx"),
        fixture("ecnpj-octet-legacy.pfx"),
    )
    .unwrap();
    let app = spawn_app_with(&db, &env).await;
    let reconciled = eventually(std::time::Duration::from_secs(15), || async {
        db.scalar("SELECT COUNT(*) FROM certificates WHERE is_available = true AND name = 'PADARIA BOA'").await == 1
            && db.scalar("SELECT COUNT(*) FROM certificates WHERE is_available = false AND name = 'EMPRESA X LTDA'").await == 1
    })
    .await;
    assert!(reconciled, "not reconciled; logs:\n{}", app.logs());
    assert!(
        !app.logs().contains("Senha 1234") && !app.logs().contains("senha_abc123"),
        "{}",
        app.logs()
    );
}

/// Every kind of bad file an office folder can hold: each is recorded with a `parse_error` or
/// skipped with a log line, and the good certificate beside them is ingested all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_recorded_or_skipped_and_harm_nothing() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let root = db.dir().join("certificados");
    std::fs::create_dir_all(&root).unwrap();
    let aes = fixture("ecnpj-aes.pfx");
    std::fs::write(root.join("BOA Senha 1234.pfx"), &aes).unwrap();
    std::fs::write(root.join("truncado Senha 1234.pfx"), &aes[..aes.len() / 2]).unwrap();
    std::fs::write(root.join("zero Senha 1234.pfx"), b"").unwrap();
    std::fs::write(
        root.join("aleatorio.pfx"),
        (0..3000u32)
            .map(|i| (i * 31 % 253) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    // 50 MB (sparse), past the size cap.
    std::fs::File::create(root.join("enorme.pfx"))
        .unwrap()
        .set_len(50 * 1024 * 1024)
        .unwrap();
    std::fs::create_dir_all(root.join("pasta.pfx")).unwrap();
    std::os::unix::fs::symlink(root.join("BOA Senha 1234.pfx"), root.join("atalho.pfx")).unwrap();
    std::fs::write(root.join("errada Senha 9999.pfx"), &aes).unwrap();
    std::fs::write(
        root.join("sem chave Senha 1234.pfx"),
        fixture("ecnpj-nokey.pfx"),
    )
    .unwrap();
    std::fs::write(
        root.join("DUAS CHAVES Senha senha123.p12"),
        fixture("two-keys.p12"),
    )
    .unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"inv\xe1lido Senha 1234.pfx");
        std::fs::write(root.join(name), &aes).unwrap();
    }

    let out = ingest(&db, &root, &[]);
    let line = |start: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(start))
            .unwrap_or_else(|| panic!("no line for {start}: {}", out.stdout))
            .to_owned()
    };
    assert!(line("BOA Senha ***.pfx").starts_with("ingested"));
    assert!(line("truncado Senha ***.pfx").contains("not a readable PKCS#12 file"));
    assert!(line("zero Senha ***.pfx").contains("not a readable PKCS#12 file"));
    assert!(line("aleatorio.pfx").starts_with("failed"));
    assert!(line("enorme.pfx").contains("larger than max_pfx_bytes"));
    assert!(line("pasta.pfx").contains("not a regular file"));
    assert!(line("atalho.pfx").contains("symbolic link"));
    assert!(line("errada Senha ***.pfx").contains("wrong password"));
    assert!(line("sem chave Senha ***.pfx").contains("no private key"));
    assert!(line("DUAS CHAVES Senha ***.p12").contains("2 private keys"));
    assert!(line("<invalid UTF-8 name>").contains("not valid UTF-8"));
    assert!(
        out.stdout
            .contains("ingested 1, updated 0, unchanged 0, failed 6, removed 0, skipped 4"),
        "{}",
        out.stdout
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM certificates WHERE parse_error IS NULL AND is_available = true AND name = 'BOA'")
            .await,
        1
    );

    // A good file overwritten by garbage (a bad copy): the vault keeps the last good copy.
    std::fs::write(root.join("BOA Senha 1234.pfx"), b"not a pfx at all").unwrap();
    let out = ingest(&db, &root, &[]);
    assert!(
        out.stdout.contains("the last good copy is kept"),
        "{}",
        out.stdout
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM certificates WHERE parse_error IS NULL AND is_available = true AND name = 'BOA' AND sha1 = '7B3C178DEC16A243F74032D95D4D542955C5A8D3'")
            .await,
        1
    );
    assert!(db.run(&["audit", "verify"]).status.success());
}

on_both_databases! {
    /// A renewal for the same CNPJ supersedes the older certificate; both stay listed.
    async fn a_renewal_supersedes_the_older_certificate(db: TestDb) {
        let root = certificates_folder(&db, &[EMPRESA_X]);
        ingest(&db, &root, &[]);
        std::fs::write(root.join("EMPRESA X LTDA 2026 Senha 1234.pfx"), fixture("ecnpj-renewed.pfx")).unwrap();
        let out = ingest(&db, &root, &[]);
        assert!(out.stdout.contains("ingested 1, updated 0, unchanged 1"), "{}", out.stdout);
        const OLD: &str = "7B3C178DEC16A243F74032D95D4D542955C5A8D3";
        const NEW: &str = "E29CB172F63C708BF82F2DCCE0C2745EB090A3D4";
        let superseded = format!(
            "SELECT COUNT(*) FROM certificates o JOIN certificates n ON o.superseded_by = n.id WHERE o.sha1 = '{OLD}' AND n.sha1 = '{NEW}'"
        );
        assert_eq!(db.scalar(&superseded).await, 1);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{NEW}' AND superseded_by IS NULL")).await, 1);

        // The renewal leaves the folder: the older (still available) one is the default again.
        std::fs::remove_file(root.join("EMPRESA X LTDA 2026 Senha 1234.pfx")).unwrap();
        ingest(&db, &root, &[]);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{OLD}' AND superseded_by IS NULL")).await, 1);

        // Saved over the old file: the old certificate stays in the catalogue, unavailable.
        std::fs::write(root.join("EMPRESA X LTDA Senha 1234.pfx"), fixture("ecnpj-renewed.pfx")).unwrap();
        let out = ingest(&db, &root, &[]);
        assert!(out.stdout.contains("updated 1"), "{}", out.stdout);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{OLD}' AND is_available = false")).await, 1);
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM certificates WHERE sha1 = '{NEW}' AND is_available = true")).await, 1);
        assert_eq!(db.scalar(&superseded).await, 1);
        assert!(db.run(&["audit", "verify"]).status.success());
    }
}
