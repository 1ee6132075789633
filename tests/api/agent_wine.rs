//! End to end on Windows APIs: the real `certhub serve` on 127.0.0.1 and the real
//! `certhub-agent.exe` under Wine (`scripts/wine-runner.sh`, the prefix in `target/`). The
//! certificate must land in Wine's CurrentUser `MY` (its registry key), with its key, and both
//! must be gone after the lease, a `REMOVE` job, a cleanup while the server is away and a
//! start-up past the deadline.
//!
//! The exe is built by `.ci/run` (`cargo build --no-default-features --features agent
//! --target x86_64-pc-windows-gnu --bin certhub-agent`); without it or without Wine these tests
//! say SKIPPED, and fail in CI.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::agent::{Pc, pfx_probes};
use crate::helpers::*;

/// SHA-1 of `tests/fixtures/pfx/ecnpj-aes.pfx`'s certificate.
const THUMBPRINT: &str = "7B3C178DEC16A243F74032D95D4D542955C5A8D3";
const MY: &str = r"HKCU\Software\Microsoft\SystemCertificates\MY\Certificates";
/// Where Wine's CryptoAPI keeps key containers (one per Unix user: see the Wine notes).
const KEYS: &str = r"HKCU\Software\Wine\Crypto\RSA";

/// One Wine prefix, one CurrentUser store: these tests take turns.
static PREFIX: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// The agent exe and the runner, or `None` (SKIPPED) outside CI when either is missing.
fn wine_agent() -> Option<PathBuf> {
    let exe = std::env::var_os("CERTHUB_TEST_AGENT_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-pc-windows-gnu/debug/certhub-agent.exe"));
    let wine = Command::new("wine")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let why = if !wine {
        "wine is not installed"
    } else if !exe.is_file() {
        "certhub-agent.exe is not built (cargo build --no-default-features --features agent --target x86_64-pc-windows-gnu --bin certhub-agent)"
    } else {
        return Some(exe);
    };
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI requires the Windows agent under Wine: {why}");
    }
    eprintln!("SKIPPED: the Windows agent under Wine ({why})");
    None
}

fn wine_reg(args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts/wine-runner.sh"))
        .arg("reg")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("wine reg");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wine reg query KEY`: the names of its subkeys (empty when the key does not exist). `reg`
/// prints them under the root's long name (`HKEY_CURRENT_USER\...`).
fn reg_subkeys(key: &str) -> Vec<String> {
    let path = key.split_once('\\').map_or(key, |(_, rest)| rest);
    let marker = format!("{path}\\");
    wine_reg(&["query", key])
        .lines()
        .filter_map(|l| Some(l.trim().split_once(&marker)?.1.to_owned()))
        .filter(|k| !k.is_empty() && !k.contains('\\'))
        .collect()
}

/// Starts from a store without the fixture and without key containers (a failed test may have
/// left them: its agent was killed before it could clean up).
fn reset_store() {
    wine_reg(&["delete", &format!("{MY}\\{THUMBPRINT}"), "/f"]);
    wine_reg(&["delete", KEYS, "/f"]);
}

fn in_my(thumbprint: &str) -> bool {
    reg_subkeys(MY)
        .iter()
        .any(|k| k.eq_ignore_ascii_case(thumbprint))
}

async fn wait_absent(pc: &Pc, thumbprint: &str) {
    let gone = eventually(Duration::from_secs(30), || async { !in_my(thumbprint) }).await;
    assert!(gone, "still in MY; log:\n{}", pc.log());
}

async fn paired(o: &Office, exe: PathBuf, hostname: &str) -> (Pc, Value) {
    let device = o.provision(hostname).await;
    let pc = Pc::under_wine(exe);
    // The seed's spelling of the URL, with /api/v1.
    let server = format!("{}/api/v1", o.app.address);
    pc.pair(&[
        "--server",
        &server,
        "--code",
        device["enrollment_code"].as_str().unwrap(),
    ]);
    let secrets = std::fs::read(pc.home.path().join("secrets.dat")).unwrap();
    let token = device["device_token"].as_str().unwrap();
    assert!(
        !String::from_utf8_lossy(&secrets).contains(token),
        "secrets.dat is DPAPI-protected"
    );
    (pc, device)
}

/// A fresh store, a PC paired as `hostname` and its agent running: the PC, the provisioning
/// answer and the device's id.
async fn running_pc(o: &Office, exe: PathBuf, hostname: &str) -> (Pc, Value, String) {
    reset_store();
    let (mut pc, device) = paired(o, exe, hostname).await;
    let id = device["id"].as_str().unwrap().to_owned();
    pc.start(0).await;
    (pc, device, id)
}

/// "Remover agora" on `installation`, as its VIEW: the `REMOVE` job.
async fn remove_now(o: &Office, installation: &str) -> Value {
    let (code, remove) = o
        .call(
            "POST",
            &format!("/api/v1/installations/{installation}/remove"),
            Some(json!({})),
            &o.view.access,
        )
        .await;
    assert_eq!(code, 201, "{remove}");
    remove
}

/// Approved for `minutes` and installed by the running agent: the job and its installation.
async fn installed_by_agent(o: &Office, device_id: &str, minutes: Option<i64>) -> (String, String) {
    let job = o.approved_for(device_id, minutes).await;
    o.wait_job(&job, "DONE", Duration::from_secs(15)).await;
    assert!(in_my(THUMBPRINT));
    let installation = o.job(&job).await["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (job, installation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_an_approval_is_installed_non_exportable_and_removed_with_its_key() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office(&db).await;
    reset_store();
    assert!(!in_my(THUMBPRINT));
    let (mut pc, device) = paired(&o, exe, "PC-WINE-01").await;
    let id = device["id"].as_str().unwrap();

    // The agent's clock runs 50 s ahead: a 1-minute lease ends 10 s after the install.
    pc.start(50).await;
    let approved_at = Instant::now();
    let job = o.approved(id, 1).await;
    let took = o.wait_job(&job, "DONE", Duration::from_secs(10)).await;
    eprintln!(
        "wine: approval -> DONE in {took:?} (from the approval call: {:?})",
        approved_at.elapsed()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(in_my(THUMBPRINT), "the certificate is in CurrentUser MY");
    assert!(!reg_subkeys(KEYS).is_empty(), "its key container exists");
    let view = o.job(&job).await;
    let installation = view["installation_id"].as_str().unwrap().to_owned();
    let ledger =
        std::fs::read_to_string(pc.home.path().join("installed_thumbprints.json")).unwrap();
    assert!(ledger.contains(THUMBPRINT), "{ledger}");

    // The lease ends: certificate and key gone, the installation closed and audited.
    wait_absent(&pc, THUMBPRINT).await;
    assert!(
        reg_subkeys(KEYS).is_empty(),
        "key container left behind: {:?}",
        reg_subkeys(KEYS)
    );
    let removed = o.wait_removed(&installation, Duration::from_secs(15)).await;
    assert_eq!(removed["removal_mode"], "lease", "{removed}");
    assert_eq!(removed["key_deleted"], true);
    let audited = db
        .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'CERT_REMOVED_LEASE_END'")
        .await;
    assert_eq!(audited, 1);
    assert!(
        pc.log().contains("Starting cleanup (Lease)"),
        "{}",
        pc.log()
    );

    // Early removal: a REMOVE job through the long-poll.
    let job = o.approved(id, 60).await;
    o.wait_job(&job, "DONE", Duration::from_secs(10)).await;
    assert!(in_my(THUMBPRINT));
    let installation = o.job(&job).await["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let remove = remove_now(&o, &installation).await;
    o.wait_job(
        remove["id"].as_str().unwrap(),
        "DONE",
        Duration::from_secs(15),
    )
    .await;
    wait_absent(&pc, THUMBPRINT).await;
    assert!(reg_subkeys(KEYS).is_empty());
    let removed = o.wait_removed(&installation, Duration::from_secs(5)).await;
    assert_eq!(removed["removal_mode"], "remove_job", "{removed}");

    let mut probes = pfx_probes();
    probes.push(device["device_token"].as_str().unwrap().to_owned());
    pc.assert_nothing_leaked(&probes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_removals_survive_a_stopped_server_and_a_restart_past_the_deadline() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut o = office(&db).await;
    reset_store();
    let port = o.app.address.rsplit(':').next().unwrap().to_owned();
    let (mut pc, device) = paired(&o, exe, "PC-WINE-02").await;
    let id = device["id"].as_str().unwrap().to_owned();
    pc.start(0).await;
    let first = o.approved(&id, 60).await;
    o.wait_job(&first, "DONE", Duration::from_secs(10)).await;
    let first_installation = o.job(&first).await["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(in_my(THUMBPRINT));

    // Agent and server stop; the seed's manual cleanup removes it and keeps the report.
    pc.kill();
    o.app.child.kill().unwrap();
    o.app.child.wait().unwrap();
    let out = pc.once(&["--cleanup", "--mode", "manual"], 0);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(!in_my(THUMBPRINT));
    assert!(reg_subkeys(KEYS).is_empty());
    assert!(
        pc.log().contains("Starting cleanup (Manual)"),
        "{}",
        pc.log()
    );

    // The server is back at the same address: the agent sends the report.
    let listen = format!("127.0.0.1:{port}");
    o.app = spawn_app_with(&db, &[("CERTHUB_LISTEN", listen.as_str())]).await;
    pc.start(0).await;
    let removed = o
        .wait_removed(&first_installation, Duration::from_secs(15))
        .await;
    assert_eq!(removed["removal_mode"], "manual", "{removed}");

    // A 1-minute lease; the agent is killed and comes back two minutes later.
    let second = o.approved(&id, 1).await;
    o.wait_job(&second, "DONE", Duration::from_secs(10)).await;
    let second_installation = o.job(&second).await["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    pc.kill();
    assert!(in_my(THUMBPRINT));
    pc.start(120).await;
    wait_absent(&pc, THUMBPRINT).await;
    assert!(reg_subkeys(KEYS).is_empty());
    let removed = o
        .wait_removed(&second_installation, Duration::from_secs(15))
        .await;
    assert_eq!(removed["removal_mode"], "startup", "{removed}");
    pc.assert_nothing_leaked(&pfx_probes());
}

/// After hours all day but the first minute: the day's cleanup is 00:01, the cap 2 h.
const AFTER_HOURS: &[(&str, &str)] = &[
    ("CERTHUB_CLEANUP_TIME", "00:01"),
    ("CERTHUB_WORKDAY_START", "00:00"),
    ("CERTHUB_MAX_LEASE_HOURS", "2"),
];

/// The first line of the agent's log after `from` bytes that contains `needle`.
fn log_line(pc: &Pc, from: usize, needle: &str) -> Option<String> {
    let log = pc.log();
    log.get(from..)?
        .lines()
        .find(|l| l.contains(needle))
        .map(str::to_owned)
}

/// Issue 23, the acceptance of point 2, with the real `.exe` and `tls = "auto"`: it pairs with
/// the fingerprint the provisioning answer gives and installs a certificate; when another
/// process with another self-made certificate answers at the server's address (a stand-in for
/// a man in the middle: here a whole CertHub of its own) the agent claims nothing, logs the
/// refusal and `status` and the tray's record say "o certificado do servidor mudou"; back on the
/// real server it carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_a_pinned_agent_refuses_a_stand_in_and_carries_on_with_the_real_server() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    reset_store();
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let tls = [("CERTHUB_TLS", "auto")];
    let mut o = office_with(&db, &tls).await;
    assert!(o.app.address.starts_with("https://"), "{}", o.app.address);
    let port = o.app.address.rsplit(':').next().unwrap().to_owned();
    let listen = format!("127.0.0.1:{port}");
    let device = o.provision("PC-WINE-PIN").await;
    let id = device["id"].as_str().unwrap().to_owned();
    let pin = device["server_fingerprint"]
        .as_str()
        .expect("a fingerprint")
        .to_owned();
    let mut pc = Pc::under_wine(exe);
    pc.pair(&[
        "--server",
        &o.app.address,
        "--code",
        device["enrollment_code"].as_str().unwrap(),
        "--fingerprint",
        &pin,
    ]);
    assert!(
        pc.log()
            .contains(&format!("server certificate pinned ({pin})")),
        "{}",
        pc.log()
    );
    pc.start(0).await;
    let (_, installation) = installed_by_agent(&o, &id, Some(60)).await;

    // The real server goes; a stand-in with its own certificate takes its address.
    o.app.child.kill().unwrap();
    o.app.child.wait().unwrap();
    let from = pc.log().len();
    let other = TestDb::new(Backend::Sqlite).await.unwrap();
    let stand_in = spawn_app_with(
        &other,
        &[("CERTHUB_TLS", "auto"), ("CERTHUB_LISTEN", listen.as_str())],
    )
    .await;
    let up = Instant::now();
    let refused = eventually(Duration::from_secs(60), || async {
        log_line(&pc, from, "O certificado do servidor mudou").is_some()
    })
    .await;
    eprintln!(
        "wine: stand-in refused {:?} after it listened",
        up.elapsed()
    );
    assert!(refused, "no refusal logged:\n{}", pc.log());
    let line = log_line(&pc, from, "O certificado do servidor mudou").unwrap();
    assert!(
        line.contains(&pin),
        "the log names the pinned certificate: {line}"
    );
    // The log line comes just before the tray's record is written.
    let amber = eventually(Duration::from_secs(5), || async {
        pc.last_error()
            .is_some_and(|e| e.starts_with("O certificado do servidor mudou"))
    })
    .await;
    assert!(
        amber,
        "the tray's record turns amber with it: {:?}",
        pc.last_error()
    );
    let status = pc.once(&["status"], 0);
    let text = &status.stdout;
    assert!(text.contains("O certificado do servidor mudou"), "{text}");
    assert!(
        text.contains(&format!("Certificado do servidor (SHA-256): {pin}")),
        "{text}"
    );
    assert!(
        !status.status.success(),
        "status says it is not healthy: {status:?}"
    );
    // Refused at the handshake: the stand-in never saw one of the agent's requests.
    let stand_in_log = stand_in.logs();
    assert!(!stand_in_log.contains("/api/v1/agent/"), "{stand_in_log}");
    assert!(
        in_my(THUMBPRINT),
        "nothing the stand-in could say removed anything"
    );
    drop(stand_in);

    // Back on the real server (same address, same certificate): the agent carries on.
    o.app = spawn_app_with(
        &db,
        &[("CERTHUB_TLS", "auto"), ("CERTHUB_LISTEN", listen.as_str())],
    )
    .await;
    let back = eventually(Duration::from_secs(60), || async {
        pc.last_error().is_none()
    })
    .await;
    assert!(back, "the agent did not come back:\n{}", pc.log());
    remove_now(&o, &installation).await;
    wait_absent(&pc, THUMBPRINT).await;
    let removed = o.wait_removed(&installation, Duration::from_secs(15)).await;
    assert_eq!(removed["removal_mode"], "remove_job", "{removed}");
    pc.kill();
}

/// Issue 22, points 1, 2, 3 and 7, with the real `.exe`: a request after the day's cleanup is
/// installed until its real end and the PC says that end (log and balloon, at once after
/// `DONE`, never "18:00"); the server going away shows in the tray's record after one failed
/// call; blocking the PC removes what it has (the blocked agent still performs removals),
/// audited as `CERT_REMOVED_DEVICE_BLOCKED`, the balloon naming the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_after_hours_a_gone_server_and_a_block_the_pc_says_what_is_true() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut o = office_with(&db, AFTER_HOURS).await;
    reset_store();
    let port = o.app.address.rsplit(':').next().unwrap().to_owned();
    let (mut pc, device) = paired(&o, exe, "PC-WINE-05").await;
    let id = device["id"].as_str().unwrap().to_owned();
    pc.start(0).await;

    // Point 1: "until the day's cleanup" after it: the lease ends at the cap, and the PC says so.
    let job = o.approved_for(&id, None).await;
    let took = o.wait_job(&job, "DONE", Duration::from_secs(15)).await;
    let done_at = Instant::now();
    eprintln!("wine: after-hours approval -> DONE in {took:?}");
    assert!(in_my(THUMBPRINT));
    let view = o.job(&job).await;
    let name = view["cert"]["name"].as_str().unwrap_or_default().to_owned();
    assert!(!name.is_empty(), "{view}");
    let installation = view["installation_id"].as_str().unwrap().to_owned();
    let lease = o.installation(&installation).await;
    let end: chrono::DateTime<chrono::Utc> = lease["expires_at"].as_str().unwrap().parse().unwrap();
    let minutes = (end - chrono::Utc::now()).num_minutes();
    assert!((110..=120).contains(&minutes), "the 2 h cap: {lease}");
    // The agent says the earlier of its own reckoning and the server's: the same minute, or
    // the one before when the two clocks straddle it.
    let minute = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&chrono_tz::America::Sao_Paulo)
            .format("%H:%M")
            .to_string()
    };
    let ends = [minute(end), minute(end - chrono::TimeDelta::seconds(60))];
    // Point 7: the balloon comes with the result, not seconds later.
    let balloons = ends.clone().map(|m| format!("{name} instalado até {m}"));
    let shown = eventually(Duration::from_secs(3), || async {
        let log = pc.log();
        balloons.iter().any(|b| log.contains(b))
    })
    .await;
    eprintln!("wine: DONE -> install balloon in {:?}", done_at.elapsed());
    assert!(shown, "no balloon {balloons:?}; log:\n{}", pc.log());
    // The log gives the agent's own reckoning of the same rule (the same minute, or the next).
    let installed = log_line(&pc, 0, "Installed ").unwrap_or_default();
    assert!(installed.contains(&name), "{installed:?}");
    if !ends.iter().any(|m| m == "18:00") {
        assert!(!installed.contains("until 18:00"), "{installed:?}");
        assert!(!pc.log().contains("até 18:00"), "{}", pc.log());
    }

    // Point 7: the server goes away; one failed call and the tray's record says so.
    let last_error = || pc.last_error();
    assert_eq!(last_error(), None, "connected before the server goes");
    o.app.child.kill().unwrap();
    o.app.child.wait().unwrap();
    let gone_at = Instant::now();
    let amber = eventually(Duration::from_secs(10), || async { last_error().is_some() }).await;
    eprintln!("wine: server gone -> tray amber in {:?}", gone_at.elapsed());
    assert!(
        amber,
        "the tray's record still says connected; log:\n{}",
        pc.log()
    );
    let listen = format!("127.0.0.1:{port}");
    let mut env = AFTER_HOURS.to_vec();
    env.push(("CERTHUB_LISTEN", listen.as_str()));
    o.app = spawn_app_with(&db, &env).await;
    let green = eventually(Duration::from_secs(40), || async { last_error().is_none() }).await;
    assert!(
        green,
        "the tray stays amber with the server back; log:\n{}",
        pc.log()
    );

    // Point 3: blocked, the PC still performs the removal of what it has, and nothing else.
    let mark = pc.log().len();
    assert_eq!(
        o.app.device_action(&o.admin.access, &id, "block").await,
        200
    );
    wait_absent(&pc, THUMBPRINT).await;
    assert!(reg_subkeys(KEYS).is_empty(), "its key stayed");
    let removed = o.wait_removed(&installation, Duration::from_secs(15)).await;
    assert_eq!(removed["removal_mode"], "device_blocked", "{removed}");
    assert_eq!(audits(&db, "CERT_REMOVED_DEVICE_BLOCKED").await, 1);
    assert_eq!(audits(&db, "CERT_REMOVED_18H").await, 0);
    // Point 7: the removal balloon names the certificate, not its SHA-1.
    let line = log_line(&pc, mark, "Certificado removido").unwrap_or_default();
    assert!(
        line.contains(&format!("{name} removido deste computador")) && !line.contains(THUMBPRINT),
        "{line:?}; log:\n{}",
        pc.log()
    );
    pc.assert_nothing_leaked(&pfx_probes());
}

/// Puts the fixture into `MY` the way a person does by hand (`scripts/wine/import-by-hand.c`,
/// built here with mingw-w64, which `.ci/run` installs beside Wine): certificate and key, no
/// CertHub mark.
fn import_by_hand() {
    let exe = target_dir().join("import-by-hand.exe");
    let built = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-municode", "-o"])
        .arg(&exe)
        .arg(repo().join("scripts/wine/import-by-hand.c"))
        .arg("-lcrypt32")
        .status()
        .expect("x86_64-w64-mingw32-gcc (apt-get install gcc-mingw-w64-x86-64)");
    assert!(built.success());
    let pfx = format!(
        "Z:{}",
        repo().join("tests/fixtures/pfx/ecnpj-aes.pfx").display()
    )
    .replace('/', "\\");
    let out = Command::new(repo().join("scripts/wine-runner.sh"))
        .arg(&exe)
        .args([pfx.as_str(), crate::helpers::agent::PFX_PASSWORD])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(in_my(THUMBPRINT) && !reg_subkeys(KEYS).is_empty());
}

/// Issue 23, point 4, with the real `.exe`: the person's own copy of a certificate (put in
/// `MY` by hand, with its key, where the agent's copy was) survives a `REMOVE` job naming its
/// thumbprint (`FAILED NOT_INSTALLED_BY_AGENT`, audited `REMOVE_FAILED`) and a cleanup of the
/// server's list of open installations naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_a_certificate_the_user_put_in_my_is_never_removed() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office(&db).await;
    let (mut pc, _, id) = running_pc(&o, exe, "PC-WINE-06").await;
    let (_, installation) = installed_by_agent(&o, &id, Some(60)).await;

    // The agent is away; the person replaces the agent's copy with their own.
    pc.kill();
    reset_store();
    import_by_hand();
    pc.start(0).await;

    // A REMOVE job names it: refused, nothing touched.
    let remove = remove_now(&o, &installation).await;
    let removal = remove["id"].as_str().unwrap().to_owned();
    o.wait_job(&removal, "FAILED", Duration::from_secs(15))
        .await;
    let failed = o.job(&removal).await;
    assert_eq!(failed["error_code"], "NOT_INSTALLED_BY_AGENT", "{failed}");
    let audited = db
        .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'REMOVE_FAILED' AND meta_json LIKE '%NOT_INSTALLED_BY_AGENT%'")
        .await;
    assert_eq!(audited, 1);
    assert!(in_my(THUMBPRINT), "the person's certificate was removed");
    assert!(
        !reg_subkeys(KEYS).is_empty(),
        "the person's key was deleted"
    );

    // The server still lists it open: a cleanup takes the list in and still leaves it.
    pc.kill();
    let out = pc.once(&["--cleanup", "--mode", "manual"], 0);
    assert!(
        in_my(THUMBPRINT),
        "removed by the cleanup; {out:?}\n{}",
        pc.log()
    );
    assert!(!reg_subkeys(KEYS).is_empty());
    assert!(pc.log().contains("NOT_INSTALLED_BY_AGENT"), "{}", pc.log());
    reset_store();
}

/// Issue 22, point 6, with the real `.exe`: the admin rotates the PC's token, the running agent
/// says "Pareie de novo"; `pair` run beside it is taken up without a restart and the next
/// approval installs. A `status` run meanwhile leaves the record the tray reads alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_a_pairing_made_while_the_agent_runs_is_taken_up() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office(&db).await;
    let (mut pc, _, id) = running_pc(&o, exe, "PC-WINE-03").await;

    // The token is rotated: the running agent's next call fails and it says so.
    let (status, creds) = o
        .call(
            "POST",
            &format!("/api/v1/admin/devices/{id}/rotate-token"),
            None,
            &o.admin.access,
        )
        .await;
    assert_eq!(status, 200, "{creds}");
    let said = eventually(Duration::from_secs(40), || async {
        pc.log().contains("Pareie de novo")
    })
    .await;
    assert!(said, "{}", pc.log());

    // `status` from the command line: it reports, and the tray's record stays as it was.
    let state = pc.home.path().join("state.json");
    let before = std::fs::read(&state).unwrap();
    let out = pc.once(&["status"], 0);
    assert!(out.stdout.contains("Servidor"), "{out:?}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "status changed the tray's record"
    );

    // Paired again beside the running agent: taken up, and an approval installs at once.
    let server = format!("{}/api/v1", o.app.address);
    pc.pair(&[
        "--server",
        &server,
        "--code",
        creds["enrollment_code"].as_str().unwrap(),
    ]);
    let took_up = eventually(Duration::from_secs(15), || async {
        pc.log().contains("Pairing changed while running")
    })
    .await;
    assert!(took_up, "{}", pc.log());
    let job = o.approved(&id, 60).await;
    o.wait_job(&job, "DONE", Duration::from_secs(15)).await;
    assert!(in_my(THUMBPRINT));
    pc.kill();
    let out = pc.once(&["--cleanup", "--mode", "manual"], 0);
    assert!(out.status.success(), "{out:?}");
    assert!(!in_my(THUMBPRINT));
}

/// Issue 22, points 4 and 5, with the real `.exe`: the runbook's rollback. `install` (the
/// copy under `%ProgramData%`, the 18:00 task, the Run entry), pairing, the tray's agent
/// running with a certificate installed; then `uninstall` stops it, removes what it installed,
/// tells the server (the installation closes as `CERT_REMOVED_UNINSTALL`, the device is marked
/// uninstalled, its token void) and leaves no Run entry and no task; deleting the folders
/// afterwards leaves nothing of CertHub on the PC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wine_the_rollback_uninstalls_everything_and_tells_the_server() {
    let Some(exe) = wine_agent() else { return };
    let _prefix = PREFIX.lock().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = office(&db).await;
    reset_store();
    let prefix = target_dir().join("wine-prefix/drive_c");
    let task_file = prefix.join("windows/system32/tasks/CertHub Cleanup 18h");
    let program_data = prefix.join("ProgramData/CertHubAgent");
    let run_key = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";

    // What the one-line install does: install, pair, start.
    let pc = Pc::under_wine(exe.clone());
    let out = pc.once(&["install"], 0);
    assert!(out.status.success(), "{out:?}\n{}", pc.log());
    assert!(
        program_data.join("publish/Certhub.Agent.exe").is_file(),
        "no installed copy"
    );
    assert!(task_file.is_file(), "no cleanup task");
    assert!(
        wine_reg(&["query", run_key]).contains("CertHub"),
        "no Run entry"
    );
    drop(pc);
    let (mut pc, device) = paired(&o, exe, "PC-WINE-04").await;
    let id = device["id"].as_str().unwrap().to_owned();
    pc.start(0).await;
    let (_, installation) = installed_by_agent(&o, &id, Some(60)).await;

    // The rollback starts with the agent's own uninstall, the tray's agent still running.
    let started = Instant::now();
    let out = pc.once(&["uninstall"], 0);
    eprintln!("wine: uninstall took {:?}", started.elapsed());
    assert!(out.status.success(), "{out:?}\n{}", pc.log());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pc.has_exited() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopped = pc.has_exited();
    assert!(stopped, "the running agent went on; log:\n{}", pc.log());
    assert!(
        pc.log().contains("Stopped: the agent is being uninstalled"),
        "{}",
        pc.log()
    );
    assert!(!in_my(THUMBPRINT), "the certificate stayed in MY");
    assert!(reg_subkeys(KEYS).is_empty(), "its key stayed");
    assert!(
        !wine_reg(&["query", run_key]).contains("CertHub"),
        "a Run entry is left"
    );
    assert!(!task_file.exists(), "the cleanup task is left");
    assert!(
        !program_data.join("publish/Certhub.Agent.exe").exists(),
        "the installed copy is left"
    );
    assert!(
        !pc.home.path().join("config.json").exists(),
        "the pairing is left"
    );

    // The server knows: the installation closed as removed by the uninstall, the device is
    // marked uninstalled and its old token no longer authenticates.
    let removed = o.wait_removed(&installation, Duration::from_secs(10)).await;
    assert_eq!(removed["removal_mode"], "uninstall", "{removed}");
    assert_eq!(audits(&db, "CERT_REMOVED_UNINSTALL").await, 1);
    assert_eq!(audits(&db, "DEVICE_UNINSTALLED").await, 1);
    let (_, view) = o
        .call(
            "GET",
            &format!("/api/v1/admin/devices/{id}"),
            None,
            &o.admin.access,
        )
        .await;
    assert!(view["uninstalled_at"].is_string(), "{view}");
    assert!(view["public_key"].is_null(), "the pairing is void: {view}");
    let old = o
        .app
        .send(
            "POST",
            "/api/v1/agent/auth",
            Some(json!({"device_id": id, "device_token": device["device_token"]})),
            None,
            None,
        )
        .await;
    assert_eq!(old.status(), 401, "the old token still authenticates");

    // Uninstalling again is harmless; then the runbook deletes the folders.
    let again = pc.once(&["uninstall"], 0);
    assert!(again.status.success(), "{again:?}");
    let _ = std::fs::remove_dir_all(&program_data);
    assert!(!in_my(THUMBPRINT) && reg_subkeys(KEYS).is_empty());
}
