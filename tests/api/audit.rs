use crate::helpers::*;
use crate::on_both_databases;

/// A VIEW user, through the CLI (audits USER_CREATED and PASSWORD_SET_INITIATED).
fn create_view_user(db: &TestDb, email: &str) {
    create_user(db, email, "VIEW");
}

fn verify(db: &TestDb) -> Output {
    db.run(&["audit", "verify"])
}

on_both_databases! {
    async fn appended_rows_verify(db: TestDb) {
        create_view_user(&db, "ana@escritorio.com.br");
        create_view_user(&db, "bia@escritorio.com.br");
        let out = verify(&db);
        assert!(out.status.success(), "{out:?}");
        // MASTER_KEY_CREATED + 2 x (USER_CREATED, PASSWORD_SET_INITIATED)
        assert!(out.stdout.contains("audit log OK: 5 rows"), "{}", out.stdout);
        let actions = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action IN ('USER_CREATED', 'PASSWORD_SET_INITIATED')").await;
        assert_eq!(actions, 4);
    }

    async fn a_modified_row_is_reported(db: TestDb) {
        create_view_user(&db, "ana@escritorio.com.br");
        create_view_user(&db, "bia@escritorio.com.br");
        db.execute("UPDATE audit_log SET meta_json = '{\"email\":\"intruso@x.com\",\"role\":\"ADMIN\"}' WHERE seq = 4").await;
        let out = verify(&db);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(out.stdout.contains("BROKEN") && out.stdout.contains("seq 4") && out.stdout.contains("modified"), "{}", out.stdout);
    }

    async fn a_deleted_row_is_reported(db: TestDb) {
        create_view_user(&db, "ana@escritorio.com.br");
        db.execute("DELETE FROM audit_log WHERE seq = 2").await;
        let out = verify(&db);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(out.stdout.contains("seq 2") && out.stdout.contains("missing"), "{}", out.stdout);
    }

    async fn a_truncated_tail_is_reported(db: TestDb) {
        create_view_user(&db, "ana@escritorio.com.br");
        db.execute("DELETE FROM audit_log WHERE seq = 3").await;
        let out = verify(&db);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(out.stdout.contains("chain ends at seq 2"), "{}", out.stdout);
    }

    async fn concurrent_writers_never_fork_the_chain(db: TestDb) {
        create_view_user(&db, "first@escritorio.com.br");
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let mut cmd = db.command();
                cmd.args(["admin", "create-user", "--email", &format!("p{i}@escritorio.com.br"), "--name", "P", "--role", "VIEW"]);
                std::thread::spawn(move || cmd.output().unwrap())
            })
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let out = verify(&db);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("audit log OK: 15 rows"), "{}", out.stdout);
    }
}
