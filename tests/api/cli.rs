use crate::helpers::*;
use crate::on_both_databases;

#[test]
fn version_is_printed() {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("certhub {}", env!("CARGO_PKG_VERSION"))
    );
}

on_both_databases! {
    async fn migrations_run_from_empty_and_are_idempotent(db: TestDb) {
        for _ in 0..2 {
            let out = db.run(&["migrate"]);
            assert!(out.status.success(), "{out:?}");
            assert!(out.stdout.contains("up to date"));
        }
        for table in [
            "organizations", "users", "password_set_tokens", "refresh_sessions", "login_attempts",
            "devices", "certificates", "cert_install_jobs", "installations", "audit_log", "master_keys",
        ] {
            let n = db.scalar(&format!("SELECT COUNT(*) FROM {table}")).await;
            assert!(n >= 0, "{table}");
        }
        // The seed runbook's query works as written.
        db.scalar("SELECT COUNT(*) FROM (SELECT action, meta_json, timestamp FROM audit_log WHERE action = 'CERT_REMOVED_18H' ORDER BY timestamp DESC LIMIT 5) t").await;
        db.scalar("SELECT COUNT(*) FROM (SELECT id, device_id, started_at, status FROM cert_install_jobs WHERE status = 'IN_PROGRESS') t").await;
    }

    async fn create_user_prints_a_one_time_link_and_stores_only_its_hash(db: TestDb) {
        let out = db.run(&["admin", "create-user", "--email", "Maria@Escritorio.com.br", "--name", "Maria", "--role", "admin"]);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("created ADMIN maria@escritorio.com.br"), "{}", out.stdout);
        let link = out.stdout.lines().find(|l| l.contains("/definir-senha?token=")).expect("link printed").trim().to_owned();
        let token = link.split("token=").nth(1).unwrap();
        assert_eq!(token.len(), 43);
        let hashed = db.scalar(&format!(
            "SELECT COUNT(*) FROM password_set_tokens WHERE token_hash = '{}'",
            certhub::crypto::TokenHash::of(token).as_str()
        )).await;
        assert_eq!(hashed, 1);
        let plain = db.scalar(&format!("SELECT COUNT(*) FROM password_set_tokens WHERE token_hash = '{token}'")).await;
        assert_eq!(plain, 0);
        let in_audit = db.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE meta_json LIKE '%{token}%'")).await;
        assert_eq!(in_audit, 0, "token must not reach the audit log");
        assert!(!out.stderr.contains(token), "token must not reach the log");

        let dup = db.run(&["admin", "create-user", "--email", "maria@escritorio.com.br", "--name", "Maria", "--role", "VIEW"]);
        assert_eq!(dup.status.code(), Some(1));
        assert!(dup.stderr.contains("already exists"), "{dup:?}");
        assert_eq!(db.scalar("SELECT COUNT(*) FROM users").await, 1, "nothing written on error");
    }
}

#[tokio::test]
async fn bad_cli_input_is_refused_clearly() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let out = db.run(&[
        "admin",
        "create-user",
        "--email",
        "not-an-email",
        "--name",
        "X",
        "--role",
        "VIEW",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("invalid e-mail"), "{out:?}");
    let out = db.run(&[
        "admin",
        "create-user",
        "--email",
        "a@b.com",
        "--name",
        "X",
        "--role",
        "ROOT",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = db.run(&[
        "admin",
        "create-user",
        "--email",
        "a@b.com",
        "--name",
        "   ",
        "--role",
        "VIEW",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("nome"), "{out:?}");
}

#[tokio::test]
async fn first_start_prints_the_first_admin_link_and_the_command() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let mut lines = Vec::new();
    while let Ok(line) = app
        .stdout_lines
        .recv_timeout(std::time::Duration::from_secs(5))
    {
        lines.push(line);
        if lines.last().unwrap().contains("create-user") {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(text.contains("Nenhum usuário ainda"), "{text}");
    assert!(text.contains("/primeiro-acesso?token="), "{text}");
    assert!(
        text.contains("certhub admin create-user") && text.contains("--role ADMIN"),
        "{text}"
    );
    assert!(
        !app.logs().contains("primeiro-acesso?token="),
        "the link must not reach the log"
    );
    assert!(db.data_dir().join("certhub.db").exists());
}
