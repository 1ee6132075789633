//! What the benches read about a process from `/proc`, shared by the bench binaries.
// Each bench binary includes this module and uses a part of it.
#![allow(dead_code)]

/// A `VmRSS:`/`VmHWM:`-style field of `/proc/<pid>/status`, in KiB.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process (a pid or `self`), in clock ticks.
pub fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// `certhub admin create-user` run by `cmd` (the binary with its environment): the one-time
/// password-set token it prints.
pub fn create_user(mut cmd: std::process::Command, email: &str, role: &str) -> String {
    let out = cmd
        .args([
            "admin",
            "create-user",
            "--email",
            email,
            "--name",
            "Bench",
            "--role",
            role,
        ])
        .output()
        .expect("certhub admin create-user");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split("token=")
        .nth(1)
        .expect("a password-set link")
        .trim()
        .to_owned()
}

/// Chooses the password with the one-time `token`, then logs in: the access token.
pub async fn activate(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    email: &str,
    password: &str,
) -> String {
    let res = client
        .post(format!("{base}/api/v1/auth/password/set/confirm"))
        .json(&serde_json::json!({"token": token, "new_password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}
