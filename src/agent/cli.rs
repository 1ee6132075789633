//! The agent's command line and the exit codes it ends with. The seed's spellings
//! (`--cleanup --mode manual`) work too.

use clap::{Parser, Subcommand, ValueEnum};

use crate::protocol::CleanupMode;

#[derive(Debug, Parser)]
#[command(
    name = "certhub-agent",
    version,
    about = "CertHub agent: installs the office's A1 certificates on this PC and removes them at the end of the lease"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Pair this PC with the CertHub server (by enrollment code, or by device id and token).
    Pair {
        /// The server's address, with or without `/api/v1`.
        #[arg(long)]
        server: String,
        /// The enrollment code shown to the admin (`ABCD-EFGH-JK`).
        #[arg(long, conflicts_with_all = ["device_id", "device_token"], required_unless_present = "device_id")]
        code: Option<String>,
        #[arg(long, requires = "device_token")]
        device_id: Option<uuid::Uuid>,
        /// Also read from `CERTHUB_DEVICE_TOKEN`, which keeps it off the process list.
        #[arg(
            long,
            env = "CERTHUB_DEVICE_TOKEN",
            hide_env_values = true,
            requires = "device_id"
        )]
        device_token: Option<String>,
        /// The SHA-256 fingerprint of the server's certificate (Dispositivos, in the portal):
        /// the agent then accepts that certificate only. Without it, the Windows root store
        /// decides (an office with its own CA).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Wait for jobs and remove certificates when due (the default).
    Run {
        /// No tray icon.
        #[arg(long)]
        headless: bool,
    },
    /// Remove certificates now and report it; the exit code says whether it all worked.
    Cleanup {
        #[arg(long, value_enum, default_value = "manual")]
        mode: Mode,
    },
    /// Server, device, last heartbeat, clock skew, installed certificates, last log lines.
    Status,
    /// Install the agent for this user: the daily cleanup task and start with Windows.
    Install,
    /// Remove every certificate the agent installed, then the task and the start entry.
    Uninstall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Manual,
    Scheduled,
    Startup,
}

impl From<Mode> for CleanupMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Manual => CleanupMode::Manual,
            Mode::Scheduled => CleanupMode::Scheduled,
            Mode::Startup => CleanupMode::Startup,
        }
    }
}

/// Exit codes: 0 done; 1 failed; 2 usage; 3 not paired; 4 server unreachable.
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const NOT_PAIRED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
}

const COMMANDS: [&str; 6] = ["pair", "run", "cleanup", "status", "install", "uninstall"];

/// The seed's `--cleanup`, `--status`, ... as the first argument name the subcommand.
pub fn normalise<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut args: Vec<String> = args.into_iter().collect();
    if let Some(first) = args.get_mut(1)
        && let Some(name) = first.strip_prefix("--")
        && COMMANDS.contains(&name.to_ascii_lowercase().as_str())
    {
        *first = name.to_ascii_lowercase();
    }
    args
}

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, clap::Error> {
    let cli = Cli::try_parse_from(normalise(args))?;
    Ok(cli.command.unwrap_or(Command::Run { headless: false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, clap::Error> {
        parse(
            std::iter::once("certhub-agent")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn commands_and_the_seeds_spellings() {
        assert_eq!(p(&[]).unwrap(), Command::Run { headless: false });
        assert_eq!(
            p(&["run", "--headless"]).unwrap(),
            Command::Run { headless: true }
        );
        assert_eq!(
            p(&["--cleanup", "--mode", "manual"]).unwrap(),
            Command::Cleanup { mode: Mode::Manual }
        );
        assert_eq!(
            p(&["cleanup", "--mode", "scheduled"]).unwrap(),
            Command::Cleanup {
                mode: Mode::Scheduled
            }
        );
        assert_eq!(p(&["status"]).unwrap(), Command::Status);
        assert_eq!(p(&["--status"]).unwrap(), Command::Status);
        assert!(p(&["cleanup", "--mode", "lease"]).is_err());
        let pair = p(&[
            "pair",
            "--server",
            "http://x:8080/api/v1",
            "--code",
            "ABCD-EFGH-JK",
        ])
        .unwrap();
        assert!(matches!(
            pair,
            Command::Pair {
                code: Some(_),
                device_id: None,
                ..
            }
        ));
        let id = uuid::Uuid::new_v4().to_string();
        let pair = p(&[
            "pair",
            "--server",
            "http://x",
            "--device-id",
            &id,
            "--device-token",
            "t",
        ])
        .unwrap();
        assert!(matches!(
            pair,
            Command::Pair {
                code: None,
                device_id: Some(_),
                device_token: Some(_),
                ..
            }
        ));
        assert!(p(&["pair", "--server", "http://x"]).is_err());
        assert!(
            p(&[
                "pair",
                "--server",
                "http://x",
                "--code",
                "A",
                "--device-id",
                &id,
                "--device-token",
                "t"
            ])
            .is_err()
        );
    }
}
