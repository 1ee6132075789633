//! What differs between Windows and the rest: where secrets live, which certificate store,
//! start with the session, the daily cleanup task, one instance per session, notifications.
//! The Windows edge (`agent/windows/`) implements [`Platform`]; every other system gets
//! [`Portable`]: a 0600 secrets file, the directory store, and no-ops for the rest. Which one
//! runs is chosen at the top (`agent::current_platform`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{DataDir, FileSecrets, Secrets};
use super::runtime::Agent;
use super::store::CertStore;

/// Held while this process is the session's one agent; dropping it lets another start.
pub trait InstanceGuard: Send {}

impl InstanceGuard for () {}

pub trait Platform: Send + Sync {
    /// The session's only `run` (a named mutex on Windows); `None` when one already runs.
    fn single_instance(&self) -> Result<Option<Box<dyn InstanceGuard>>, String>;
    fn secrets(&self, dir: &DataDir) -> Box<dyn Secrets>;
    fn store(&self, dir: &DataDir) -> Box<dyn CertStore>;
    /// A balloon or toast ("… instalado até 18:00", "… removido").
    fn notify(&self, title: &str, message: &str);
    /// Start with the user's session (HKCU Run).
    fn set_autostart(&self, enabled: bool) -> Result<(), String>;
    /// Copies the running exe where the runbook expects it; returns its new path.
    fn install_exe(&self) -> Result<PathBuf, String>;
    fn remove_exe(&self) -> Result<(), String>;
    /// The "CertHub Cleanup 18h" task: daily at `cleanup_time` (`HH:MM`), run `exe cleanup
    /// --mode scheduled` as soon as possible after a missed start.
    fn install_cleanup_task(&self, exe: &Path, cleanup_time: &str) -> Result<(), String>;
    fn remove_cleanup_task(&self) -> Result<(), String>;

    /// `run` on a PC that is not paired: asks the person for the server and a code (or an id
    /// and token) and pairs; `true` once paired.
    fn offer_pairing(&self, dir: &DataDir) -> bool {
        let _ = dir;
        false
    }

    /// `uninstall`: stops the agent running in this session (it would go on installing what
    /// is approved next); `true` when one was running and has stopped.
    fn stop_running_agent(&self) -> Result<bool, String> {
        Ok(false)
    }

    /// `run`: this process stops when `uninstall` asks ([`Self::stop_running_agent`]).
    fn stop_when_asked(&self) {}

    /// Whether `run` without `--headless` shows a tray icon here.
    fn has_tray(&self) -> bool {
        false
    }

    /// The tray (icon: paired / reachable / error; menu: Status, Abrir portal, Remover
    /// certificados agora, Parear dispositivo, Iniciar com o Windows, Sair) on the main thread
    /// until the user picks Sair. Its items call [`super::status::Status::gather`],
    /// [`Agent::cleanup`] and [`super::pairing::pair`]; the job loop runs on another thread meanwhile.
    fn run_tray(&self, agent: Arc<Agent>) {
        let _ = agent;
    }
}

/// Systems other than Windows: enough for the agent's logic to run for real in tests.
pub struct Portable;

impl Platform for Portable {
    fn single_instance(&self) -> Result<Option<Box<dyn InstanceGuard>>, String> {
        Ok(Some(Box::new(())))
    }

    fn secrets(&self, dir: &DataDir) -> Box<dyn Secrets> {
        Box::new(FileSecrets::new(dir))
    }

    fn store(&self, dir: &DataDir) -> Box<dyn CertStore> {
        #[cfg(not(windows))]
        {
            Box::new(super::store::DirectoryStore::new(dir.store()))
        }
        #[cfg(windows)]
        {
            let _ = dir;
            Box::new(super::store::MemoryStore::default())
        }
    }

    fn notify(&self, title: &str, message: &str) {
        super::log::info(format!("{title}: {message}"));
    }

    fn set_autostart(&self, _enabled: bool) -> Result<(), String> {
        Ok(())
    }

    fn install_exe(&self) -> Result<PathBuf, String> {
        std::env::current_exe().map_err(|e| e.to_string())
    }

    fn remove_exe(&self) -> Result<(), String> {
        Ok(())
    }

    fn install_cleanup_task(&self, _exe: &Path, _cleanup_time: &str) -> Result<(), String> {
        Ok(())
    }

    fn remove_cleanup_task(&self) -> Result<(), String> {
        Ok(())
    }
}
