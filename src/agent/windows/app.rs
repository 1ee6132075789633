//! `certhub-agent run` with its tray: the job loop and the lease timer run on their own
//! threads; this thread owns the tray icon and its menu, refreshes the icon from the agent's
//! state file, and turns menu choices into the agent's own commands.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{Local, TimeDelta, Utc};

use super::tray::{Tray, TrayHandle};
use super::{registry, ui};
use crate::agent::config::{Config, DataDir};
use crate::agent::leases::{Clock, SystemClock};
use crate::agent::pairing::pair_with;
use crate::agent::platform::Platform;
use crate::agent::runtime::Agent;
use crate::agent::state::AgentState;
use crate::agent::tray_model::{MenuCommand, StatusView, TrayState};
use crate::protocol::CleanupMode;

/// How often the icon follows the agent's state.
const REFRESH: Duration = Duration::from_secs(5);

/// The tray of this process, once `run` has one: notifications become balloons.
static TRAY: OnceLock<Mutex<Option<TrayHandle>>> = OnceLock::new();

/// Lets notifications reach the tray (`None` when it closes).
fn attach_tray(handle: Option<TrayHandle>) {
    let slot = TRAY.get_or_init(|| Mutex::new(None));
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = handle;
}

/// A balloon from the tray, when this process shows one.
pub fn balloon(title: &str, message: &str) {
    if let Some(slot) = TRAY.get()
        && let Some(tray) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
    {
        let _ = tray.balloon(title, message);
    }
}

/// The tray state the agent's files describe.
pub fn tray_state(dir: &DataDir) -> TrayState {
    TrayState::of(
        Config::load(dir).is_ok(),
        &AgentState::load(dir),
        Utc::now(),
    )
}

/// What the Status window shows.
pub fn status_view(dir: &DataDir) -> StatusView {
    let now = SystemClock::from_env().now();
    let status = crate::agent::status::Status::gather(dir, now);
    let rule = status.state.lease_rule();
    StatusView {
        state: tray_state(dir),
        server: status
            .config
            .as_ref()
            .map(|c| c.server_url.to_string())
            .unwrap_or_default(),
        device: status.config.as_ref().map(|c| c.device_id.to_string()),
        last_heartbeat: status
            .state
            .last_heartbeat_at
            .map(|t| t.with_timezone(&Local)),
        clock_skew: status.state.clock_skew_seconds.map(TimeDelta::seconds),
        certificates: status
            .ledger
            .installed
            .iter()
            .map(|e| (e.display_name(), e.deadline(&rule) - now))
            .collect(),
        log_tail: status.log_tail,
    }
}

fn refresh_forever(dir: DataDir, tray: TrayHandle) {
    let mut shown: Option<TrayState> = None;
    let mut starts: Option<bool> = None;
    loop {
        // "Iniciar com o Windows" shows the Run key as it is.
        let run_key = registry::run_at_logon().ok().flatten().is_some();
        if starts != Some(run_key) {
            if tray.set_start_with_windows(run_key).is_err() {
                return;
            }
            starts = Some(run_key);
        }
        let state = tray_state(&dir);
        if shown.as_ref() != Some(&state) {
            if tray.set_state(state.clone()).is_err() {
                return;
            }
            shown = Some(state);
        }
        std::thread::sleep(REFRESH);
    }
}

/// Shows the tray until "Sair" while the job loop and the lease timer (started by the caller)
/// run on their own threads.
pub fn run(dir: &DataDir, platform: &dyn Platform, agent: Arc<Agent>) -> Result<(), String> {
    let tray = Tray::new_retrying(tray_state(dir), 30, Duration::from_secs(2))
        .map_err(|e| format!("cannot show the tray icon: {e}"))?;
    tray.set_start_with_windows(registry::run_at_logon().ok().flatten().is_some());
    attach_tray(Some(tray.handle()));
    {
        let (dir, handle) = (dir.clone(), tray.handle());
        std::thread::spawn(move || refresh_forever(dir, handle));
    }
    let mut restart = false;
    let outcome = tray.run(|command| match command {
        MenuCommand::Status => {
            let _ = ui::show_status_window(&status_view(dir));
        }
        MenuCommand::OpenPortal => {
            if let Ok(config) = Config::load(dir) {
                let _ = ui::open_in_browser(&config.portal_url);
            }
        }
        MenuCommand::RemoveNow => {
            let agent = Arc::clone(&agent);
            std::thread::spawn(move || {
                agent.cleanup(CleanupMode::Manual);
            });
        }
        MenuCommand::Pair => {
            let server = Config::load(dir)
                .map(|c| c.server_url.to_string())
                .unwrap_or_default();
            if let Ok(Some(request)) = ui::show_pair_dialog(&server) {
                match pair_with(dir, platform, request) {
                    Ok(_) => {
                        // The new identity takes effect in a fresh agent.
                        restart = true;
                        let _ = tray.handle().quit();
                    }
                    Err(message) => {
                        let _ = tray.balloon("Pareamento falhou", &message);
                    }
                }
            }
        }
        MenuCommand::ToggleStartWithWindows => {
            // The Run key as it is now (uninstall, or someone else, may have changed it).
            let enable = registry::run_at_logon().ok().flatten().is_none();
            if platform.set_autostart(enable).is_ok() {
                tray.set_start_with_windows(enable);
            }
        }
        MenuCommand::Quit => {}
    });
    attach_tray(None);
    drop(tray);
    if restart && let Ok(exe) = std::env::current_exe() {
        let _ = std::process::Command::new(exe).arg("run").spawn();
    }
    outcome.map_err(|e| format!("tray: {e}"))
}
