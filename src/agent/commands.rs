//! One function per command of the command line (`pair`, `run`, `cleanup`, `status`,
//! `install`, `uninstall`); each returns `Err(exit code)` when it fails.

use std::sync::Arc;

use super::cli::exit;
use super::client::version;
use super::config::{Config, DataDir};
use super::leases::{self, SystemClock};
use super::log;
use super::pairing::{open_agent, pair_with};
use super::platform::Platform;
use super::state::AgentState;
use super::status;
use super::tray_model::PairRequest;
use crate::protocol::CleanupMode;

/// `pair` on the command line: prints the outcome.
pub fn pair_command(
    dir: &DataDir,
    platform: &dyn Platform,
    request: PairRequest,
) -> Result<(), u8> {
    match pair_with(dir, platform, request) {
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

pub fn run(dir: &DataDir, shared: Arc<dyn Platform>, headless: bool) -> Result<(), u8> {
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
    platform.stop_when_asked();
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
        agent.identity().config.device_id,
        agent.identity().config.server_url
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

pub fn cleanup(dir: &DataDir, platform: &dyn Platform, mode: CleanupMode) -> Result<(), u8> {
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

pub fn status(dir: &DataDir, platform: &dyn Platform) -> Result<(), u8> {
    let mut status = status::Status::gather(dir, leases::Clock::now(&SystemClock::from_env()));
    if status.config.is_some() {
        // A probe: the tray's agent keeps its own record (and its colour) to itself; the skew
        // measured here is shown, not saved.
        let probed = match open_agent(dir, platform) {
            Ok(agent) => agent.probe().map_err(|e| e.to_string()),
            Err(_) => Err("secrets unavailable".into()),
        };
        status.state = AgentState::load(dir);
        if let Ok(skew) = &probed {
            status.state.clock_skew_seconds = Some(*skew);
        }
        status.server_check = Some(probed.map(|_| ()));
    }
    print!("{}", status.render());
    match (&status.config, &status.server_check) {
        (None, _) => Err(exit::NOT_PAIRED),
        (_, Some(Err(_))) => Err(exit::UNREACHABLE),
        _ => Ok(()),
    }
}

pub fn install(dir: &DataDir, platform: &dyn Platform) -> Result<(), u8> {
    let fail = |e: String| {
        eprintln!("{e}");
        log::error(&e);
        exit::FAILED
    };
    let exe = platform.install_exe().map_err(fail)?;
    let daily = AgentState::load(dir).daily();
    platform
        .install_cleanup_task(&exe, &daily.time.format("%H:%M").to_string())
        .map_err(fail)?;
    platform.set_autostart(true).map_err(fail)?;
    log::info(format!("Installed {}", exe.display()));
    Ok(())
}

pub fn uninstall(dir: &DataDir, platform: &dyn Platform) -> Result<(), u8> {
    let fail = |e: String| {
        eprintln!("{e}");
        log::error(&e);
        exit::FAILED
    };
    // The running agent stops first: left running it would install what is approved next.
    if platform.stop_running_agent().map_err(fail)? {
        log::info("Uninstall: the running agent stopped");
    }
    if Config::load(dir).is_ok() {
        // Everything it installed goes (removals whose reports wait for the server are done:
        // uninstalling goes on), then the server closes the rest and voids the pairing.
        if let Err(exit::FAILED) = cleanup(dir, platform, CleanupMode::Uninstall) {
            return Err(exit::FAILED);
        }
        let told = open_agent(dir, platform)
            .map_err(|_| "the saved pairing cannot be read".to_owned())
            .and_then(|agent| {
                agent
                    .identity()
                    .client
                    .uninstalled()
                    .map_err(|e| e.to_string())
            });
        match told {
            Ok(answer) => {
                log::info(format!(
                    "Uninstall: the server closed {} installation(s) and voided this pairing",
                    answer.closed
                ));
                let _ = platform.secrets(dir).clear();
                let _ = std::fs::remove_file(dir.config());
            }
            Err(e) => {
                let message = format!(
                    "O servidor não foi avisado ({e}): bloqueie este computador no portal, ou rode uninstall de novo com o servidor no ar."
                );
                eprintln!("{message}");
                log::warn(message);
            }
        }
    }
    // A task left behind runs a cleanup of nothing: said, and the rest of the uninstall goes on.
    if let Err(e) = platform.remove_cleanup_task() {
        eprintln!("{e}");
        log::warn(format!("Uninstall: {e}"));
    }
    platform.set_autostart(false).map_err(fail)?;
    platform.remove_exe().map_err(fail)?;
    log::info("Uninstalled");
    Ok(())
}
