//! `infra/certhub.service` (issue 24, point 4): the unit systemd itself accepts
//! (`systemd-analyze verify`, with ExecStart pointed at the binary these tests run), with the
//! hardening the office's server needs.

use std::process::Command;

use crate::helpers::BIN;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(repo().join("infra/certhub.service")).unwrap();
    for line in [
        "User=certhub",
        "LimitNOFILE=65536",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/certhub",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "KillSignal=SIGTERM",
        "ExecStart=/usr/local/bin/certhub --config /etc/certhub/config.toml serve",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if !analyze.is_ok_and(|o| o.status.success()) {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI requires systemd-analyze (Debian package systemd)");
        }
        eprintln!("SKIPPED: systemd-analyze verify (systemd-analyze is not installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certhub.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/certhub", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("certhub.service:"),
        "systemd complains about the unit: {said}"
    );
}
