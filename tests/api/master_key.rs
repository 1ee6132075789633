use crate::helpers::*;
use crate::on_both_databases;

on_both_databases! {
    async fn master_key_is_created_private_and_checked(db: TestDb) {
        drop(spawn_app(&db).await);
        let key_file = db.data_dir().join("master.key");
        let key = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
        }

        // A different key: refused, and no key material in the message.
        let other = certhub::crypto::MasterKey::generate();
        let other_b64 = other.to_base64().to_string();
        let err = try_spawn_app(&db, &[("CERTHUB_MASTER_KEY", &other_b64)], None).await.err().expect("must refuse");
        assert!(err.contains("wrong master key"), "{err}");
        assert!(!err.contains(&other_b64) && !err.contains(&key), "{err}");

        // The key file gone: refused rather than silently generating a new key.
        std::fs::rename(&key_file, db.dir().join("backup.key")).unwrap();
        let err = try_spawn_app(&db, &[], None).await.err().expect("must refuse");
        assert!(err.contains("no master key was found") && err.contains("master.key"), "{err}");
        assert!(!key_file.exists(), "must not generate a replacement key");

        // The right key through the environment works.
        let app = spawn_app_with(&db, &[("CERTHUB_MASTER_KEY", &key)]).await;
        assert_eq!(app.get("/health").await.status(), 200);
        assert!(!app.logs().contains(&key));
    }
}
