//! The agent's log, `logs/agent.log` under its data folder, rotated by size (one previous
//! file, `agent.log.1`). Lines are plain text a person reads in the runbook's checks
//! (`Starting cleanup (Scheduled)`); callers never pass a password, token, key or PFX, and
//! [`line`] masks anything that looks like a bearer token as a second guard.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Past this size the log is rotated.
pub const MAX_BYTES: u64 = 1024 * 1024;

struct Log {
    path: PathBuf,
    max_bytes: u64,
    echo: bool,
}

static LOG: OnceLock<Mutex<Log>> = OnceLock::new();

/// Starts logging to `dir/agent.log`; `echo` copies lines to stderr (the console commands).
pub fn init(dir: &Path, echo: bool) {
    let _ = fs::create_dir_all(dir);
    let log = Log {
        path: dir.join("agent.log"),
        max_bytes: MAX_BYTES,
        echo,
    };
    if let Err(existing) = LOG.set(Mutex::new(log))
        && let (Ok(mut current), Ok(new)) = (LOG.get().expect("set").lock(), existing.into_inner())
    {
        *current = new;
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Writes one line: `2026-12-02T13:20:47Z INFO message`.
pub fn line(level: Level, message: &str) {
    let text = format!(
        "{} {} {}\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
        level.as_str(),
        mask(message).replace('\n', " ")
    );
    let Some(log) = LOG.get() else {
        eprint!("{text}");
        return;
    };
    let Ok(log) = log.lock() else { return };
    if log.echo {
        eprint!("{text}");
    }
    rotate_if_needed(&log.path, log.max_bytes);
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&log.path) {
        let _ = f.write_all(text.as_bytes());
    }
}

pub fn info(message: impl AsRef<str>) {
    line(Level::Info, message.as_ref());
}
pub fn warn(message: impl AsRef<str>) {
    line(Level::Warn, message.as_ref());
}
pub fn error(message: impl AsRef<str>) {
    line(Level::Error, message.as_ref());
}

fn rotate_if_needed(path: &Path, max_bytes: u64) {
    if fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= max_bytes {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
}

/// Hides `Bearer <token>` values should one ever reach a message.
fn mask(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("Bearer ") {
        out.push_str(&rest[..i + 7]);
        out.push_str("***");
        rest = &rest[i + 7..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The last `n` lines of the log (for `status`).
pub fn tail(dir: &Path, n: usize) -> Vec<String> {
    let text = fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_masks_bearer_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        fs::write(&path, vec![b'x'; 100]).unwrap();
        rotate_if_needed(&path, 50);
        assert!(!path.exists());
        assert!(dir.path().join("agent.log.1").exists());
        assert_eq!(
            mask("header Bearer abc.def.ghi sent"),
            "header Bearer *** sent"
        );
        fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(dir.path(), 2), vec!["b", "c"]);
    }
}
