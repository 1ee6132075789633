//! The agent (`certhub-agent`): pairs the PC with the server, installs the certificates its
//! users were granted with a non-exportable key, and removes them with their key at the
//! lease's end and at the office's daily `cleanup_time`. The logic here is plain Rust that
//! runs and is tested on Linux too; Windows is a thin edge behind [`platform::Platform`],
//! [`store::CertStore`] and [`config::Secrets`]. This file parses the command and dispatches.

pub mod backoff;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod install;
pub mod install_folder;
pub mod leases;
pub mod log;
pub mod outbox;
pub mod pairing;
pub mod platform;
pub mod polling;
pub mod removal;
pub mod runtime;
pub mod state;
pub mod status;
pub mod store;
pub mod task_xml;
pub mod timer;
pub mod tray_model;
pub mod trust;
#[cfg(windows)]
pub mod windows;

#[cfg(test)]
mod test_support;

use std::process::ExitCode;
use std::sync::Arc;

use cli::{Command, exit};
use config::DataDir;
use platform::Platform;

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
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
    match execute(command, &dir, &current_platform()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
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
            fingerprint,
        } => commands::pair_command(
            dir,
            platform,
            tray_model::PairRequest {
                server_url: server,
                code,
                device_id: device_id.map(|id| id.to_string()),
                device_token,
                fingerprint,
            },
        ),
        Command::Run { headless } => commands::run(dir, shared, headless),
        Command::Cleanup { mode } => commands::cleanup(dir, platform, mode.into()),
        Command::Status => commands::status(dir, platform),
        Command::Install => commands::install(dir, platform),
        Command::Uninstall => commands::uninstall(dir, platform),
    }
}

/// The platform this build runs on: the Windows edge on Windows (DPAPI secrets, the
/// CurrentUser `MY` store, HKCU Run, the task, the mutex, the tray), [`platform::Portable`]
/// elsewhere.
pub fn current_platform() -> Arc<dyn Platform> {
    #[cfg(windows)]
    {
        Arc::new(windows::platform::Windows)
    }
    #[cfg(not(windows))]
    {
        Arc::new(platform::Portable)
    }
}
