//! The agent (`certhub-agent`): pairs the PC with the server, installs the certificates its
//! users were granted with a non-exportable key, and removes them with their key at the
//! lease's end and at the office's daily `cleanup_time`. The logic here is plain Rust that
//! runs and is tested on Linux too; Windows is a thin edge behind [`platform::Platform`],
//! [`store::CertStore`] and [`config::Secrets`].

pub mod cli;
pub mod client;
pub mod config;
pub mod jobs;
pub mod leases;
pub mod log;
pub mod outbox;
pub mod platform;
pub mod status;
pub mod store;

use std::process::ExitCode;
use std::sync::Arc;

use cli::Command;
use config::{Config, ConfigError, DataDir, DeviceSecrets, ServerUrl};
use jobs::Agent;
use leases::SystemClock;
use platform::Platform;

use crate::crypto::{DeviceSecretKey, SecretString};
use crate::protocol::{CleanupMode, EnrollRequest};

pub mod task_xml;
pub mod tray_model;
#[cfg(windows)]
pub mod windows;

/// Version string the agent reports to the server in its heartbeat.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Exit codes: 0 done; 1 failed; 2 usage; 3 not paired; 4 server unreachable.
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const NOT_PAIRED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let command = match cli::parse(std::env::args()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let dir = match DataDir::from_env() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let console = !matches!(command, Command::Run { .. });
    log::init(
        &dir.logs(),
        console || std::env::var_os("CERTHUB_AGENT_ECHO").is_some(),
    );
    let platform = platform::current();
    match execute(command, &dir, &platform) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn not_paired_or(e: ConfigError) -> u8 {
    eprintln!("{e}");
    log::error(e.to_string());
    match e {
        ConfigError::NotPaired => exit::NOT_PAIRED,
        _ => exit::FAILED,
    }
}

fn open_agent(dir: &DataDir, platform: &dyn Platform) -> Result<Agent, u8> {
    let secrets = platform.secrets(dir);
    let agent = Agent::open(
        dir.clone(),
        secrets.as_ref(),
        platform.store(dir),
        Arc::new(SystemClock::from_env()),
    )
    .map_err(not_paired_or)?;
    Ok(agent)
}

/// Runs one command; `Err` carries the exit code.
pub fn execute(command: Command, dir: &DataDir, platform: &Arc<dyn Platform>) -> Result<(), u8> {
    let shared = Arc::clone(platform);
    let platform = platform.as_ref();
    match command {
        Command::Pair {
            server,
            code,
            device_id,
            device_token,
        } => pair_command(dir, platform, &server, code, device_id, device_token),
        Command::Run { headless } => run(dir, shared, headless),
        Command::Cleanup { mode } => cleanup(dir, platform, mode.into()),
        Command::Status => status(dir, platform),
        Command::Install => install(dir, platform),
        Command::Uninstall => uninstall(dir, platform),
    }
}

fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
}

/// `pair` on the command line: prints the outcome.
fn pair_command(
    dir: &DataDir,
    platform: &dyn Platform,
    server: &str,
    code: Option<String>,
    device_id: Option<uuid::Uuid>,
    device_token: Option<String>,
) -> Result<(), u8> {
    match pair(dir, platform, server, code, device_id, device_token) {
        Ok(message) => {
            println!("{message}");
            Ok(())
        }
        Err(message) => {
            eprintln!("{message}");
            Err(exit::FAILED)
        }
    }
}

/// Pairs this PC (the command, and the tray's "Parear dispositivo" dialog): a new key,
/// enrollment by `code` or the provisioned `device_id` + `device_token`, the key registered,
/// the previous pairing's certificates removed, then the new identity saved. `Ok` and `Err`
/// carry a message for the person pairing (logged too).
pub fn pair(
    dir: &DataDir,
    platform: &dyn Platform,
    server: &str,
    code: Option<String>,
    device_id: Option<uuid::Uuid>,
    device_token: Option<String>,
) -> Result<String, String> {
    let fail = |message: String| {
        log::error(&message);
        message
    };
    let server = ServerUrl::parse(server).map_err(|e| fail(e.to_string()))?;
    let key = DeviceSecretKey::generate();
    let public_key = key.public_key().to_base64();
    let credentials = match (code, device_id, device_token) {
        (Some(code), _, _) => {
            let request = EnrollRequest {
                enrollment_code: code,
                public_key: public_key.clone(),
                hostname: hostname(),
                os_version: Some(std::env::consts::OS.to_owned()),
                agent_version: Some(version().to_owned()),
            };
            let c = client::enroll(&server, &request).map_err(|e| fail(e.to_string()))?;
            (c.device_id, SecretString::new(c.device_token.clone()))
        }
        (None, Some(id), Some(token)) => (id, SecretString::new(token)),
        _ => {
            return Err(fail(
                "pair: --code, or --device-id and --device-token".into(),
            ));
        }
    };
    let (device_id, device_token) = credentials;
    let client = client::Client::new(server.clone(), device_id, device_token.clone(), public_key);
    client.authenticate().map_err(|e| match e.status() {
        // The device already registered another key (paired elsewhere, or before).
        Some(409) => fail(format!(
            "{e}. Este dispositivo já tem outra chave: peça ao administrador para girar o token (rotate-token) e pareie com o novo código."
        )),
        _ => fail(e.to_string()),
    })?;
    // The old identity's certificates go first, reported under it: nothing it installed
    // outlives it.
    if Config::load(dir).is_ok()
        && let Ok(old) = open_agent(dir, platform)
    {
        log::info("Pairing again: removing what the previous pairing installed");
        let outcome = old.cleanup(CleanupMode::Manual);
        if !outcome.failed.is_empty() {
            return Err(fail(format!(
                "{} certificate(s) of the previous pairing could not be removed; see the log",
                outcome.failed.len()
            )));
        }
    }
    let config = Config {
        portal_url: server.portal(),
        server_url: server.clone(),
        device_id,
        paired_at: chrono::Utc::now(),
    };
    let secrets = platform.secrets(dir);
    let device = DeviceSecrets { device_token, key };
    config::save_identity(dir, secrets.as_ref(), &config, &device)
        .map_err(|e| fail(e.to_string()))?;
    let message = format!("Paired with {server} as device {device_id}");
    log::info(&message);
    Ok(message)
}

fn run(dir: &DataDir, shared: Arc<dyn Platform>, headless: bool) -> Result<(), u8> {
    let platform = shared.as_ref();
    // A few tries: an agent that restarts itself (after pairing again from the tray) starts the
    // new one just before the old one lets go.
    let mut guard = None;
    for attempt in 0..10 {
        guard = platform.single_instance().map_err(|e| {
            log::error(&e);
            exit::FAILED
        })?;
        if guard.is_some() || attempt == 9 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let Some(_guard) = guard else {
        log::info("Another agent already runs in this session");
        return Ok(());
    };
    let notifier = Arc::clone(&shared);
    let opened = match open_agent(dir, platform) {
        // Started by hand on a PC not paired yet: offer the pairing dialog instead of leaving.
        Err(exit::NOT_PAIRED) if !headless && platform.offer_pairing(dir) => {
            open_agent(dir, platform)
        }
        other => other,
    };
    let agent =
        Arc::new(opened?.with_notifier(move |title, message| notifier.notify(title, message)));
    log::info(format!(
        "Agent {} started for device {} on {}",
        version(),
        agent.config.device_id,
        agent.config.server_url
    ));
    let _ = agent.heartbeat();
    let outcome = agent.startup();
    if !outcome.removed.is_empty() {
        log::info(format!(
            "Start-up: removed {} certificate(s) already due",
            outcome.removed.len()
        ));
    }
    let _timer = agent.run_timer();
    if !headless && platform.has_tray() {
        // The tray's message loop needs the main thread; jobs run beside it until "Sair".
        let jobs = Arc::clone(&agent);
        std::thread::spawn(move || jobs.run_jobs());
        platform.run_tray(agent);
        log::info("Agent stopped from the tray");
        return Ok(());
    }
    agent.run_jobs();
    Ok(())
}

fn cleanup(dir: &DataDir, platform: &dyn Platform, mode: CleanupMode) -> Result<(), u8> {
    let agent = open_agent(dir, platform)?;
    let _ = agent.heartbeat();
    let outcome = match mode {
        CleanupMode::Startup => {
            log::info("Starting cleanup (Startup)");
            agent.startup()
        }
        other => agent.cleanup(other),
    };
    println!(
        "{} removed, {} failed, {} report(s) waiting for the server",
        outcome.removed.len(),
        outcome.failed.len(),
        outcome.unreported
    );
    if !outcome.failed.is_empty() {
        for (t, e) in &outcome.failed {
            eprintln!("{t}: {e}");
        }
        return Err(exit::FAILED);
    }
    if outcome.unreported > 0 {
        eprintln!(
            "The removals are done; their reports wait for the server (sent by the agent when it is back)."
        );
        return Err(exit::UNREACHABLE);
    }
    Ok(())
}

fn status(dir: &DataDir, platform: &dyn Platform) -> Result<(), u8> {
    let mut status = status::Status::gather(dir, leases::Clock::now(&SystemClock::from_env()));
    if status.config.is_some() {
        status.server_check = Some(match open_agent(dir, platform) {
            Ok(agent) => agent.heartbeat().map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err("secrets unavailable".into()),
        });
        status.state = jobs::AgentState::load(dir);
    }
    print!("{}", status.render());
    match (&status.config, &status.server_check) {
        (None, _) => Err(exit::NOT_PAIRED),
        (_, Some(Err(_))) => Err(exit::UNREACHABLE),
        _ => Ok(()),
    }
}

fn install(dir: &DataDir, platform: &dyn Platform) -> Result<(), u8> {
    let fail = |e: String| {
        eprintln!("{e}");
        log::error(&e);
        exit::FAILED
    };
    let exe = platform.install_exe().map_err(fail)?;
    let daily = jobs::AgentState::load(dir).daily();
    platform
        .install_cleanup_task(&exe, &daily.time.format("%H:%M").to_string())
        .map_err(fail)?;
    platform.set_autostart(true).map_err(fail)?;
    log::info(format!("Installed {}", exe.display()));
    Ok(())
}

fn uninstall(dir: &DataDir, platform: &dyn Platform) -> Result<(), u8> {
    // Removals whose reports wait for the server are done: uninstalling goes on.
    if Config::load(dir).is_ok()
        && let Err(exit::FAILED) = cleanup(dir, platform, CleanupMode::Manual)
    {
        return Err(exit::FAILED);
    }
    let fail = |e: String| {
        eprintln!("{e}");
        exit::FAILED
    };
    platform.remove_cleanup_task().map_err(fail)?;
    platform.set_autostart(false).map_err(fail)?;
    platform.remove_exe().map_err(fail)?;
    log::info("Uninstalled");
    Ok(())
}
