//! The Task Scheduler, through `schtasks.exe`: register a task from its XML, delete it.

use std::io::{Read, Write};
use std::os::windows::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `CREATE_NO_WINDOW`: the tray agent must not flash a console for schtasks.
const CREATE_NO_WINDOW: u32 = 0x0800_0000;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("could not write the task definition: {0}")]
    Io(#[from] std::io::Error),
    #[error("schtasks {action} failed ({status}): {message}")]
    Schtasks {
        action: &'static str,
        status: String,
        message: String,
    },
}

/// Registers (or replaces) the task `name` from its XML definition for the current user:
/// `schtasks /Create /TN name /XML file /F`.
pub fn create_task_from_xml(name: &str, xml: &str) -> Result<(), TaskError> {
    // why: Wine's `schtasks /TR ... /SC DAILY` is a stub; `/XML` works there and on Windows.
    let file = TempXml::write(xml)?;
    let output = schtasks(&["/Create", "/TN", name, "/XML", &file.path_str(), "/F"])?;
    check("/Create", output)
}

/// Whether the task `name` exists (`schtasks /Query`).
pub fn task_exists(name: &str) -> bool {
    schtasks(&["/Query", "/TN", name]).is_ok_and(|o| o.status.success())
}

/// Deletes the task `name`: `schtasks /Delete /TN name /F`.
pub fn delete_task(name: &str) -> Result<(), TaskError> {
    check("/Delete", schtasks(&["/Delete", "/TN", name, "/F"])?)
}

/// How long `schtasks` may take: a Task Scheduler that does not answer must not hang
/// `install`, `uninstall` or the tray.
const SCHTASKS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long its output is waited for once it has exited (a process it started may hold the
/// pipes open: under Wine, the service host).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

fn schtasks(args: &[&str]) -> std::io::Result<Output> {
    let mut child = Command::new("schtasks.exe")
        .args(args)
        .creation_flags(CREATE_NO_WINDOW)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (sent, received) = mpsc::channel();
    let readers: [(usize, Option<Box<dyn Read + Send>>); 2] = [
        (
            0,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            1,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ];
    for (which, pipe) in readers {
        if let Some(mut pipe) = pipe {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                let _ = sent.send((which, bytes));
            });
        }
    }
    drop(sent);
    let deadline = Instant::now() + SCHTASKS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "schtasks did not answer within {} s",
                    SCHTASKS_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let grace = Instant::now() + OUTPUT_GRACE;
    while let Ok((which, bytes)) =
        received.recv_timeout(grace.saturating_duration_since(Instant::now()))
    {
        if which == 0 {
            output.stdout = bytes;
        } else {
            output.stderr = bytes;
        }
    }
    Ok(output)
}

fn check(action: &'static str, output: Output) -> Result<(), TaskError> {
    if output.status.success() {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if message.is_empty() {
        message = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    Err(TaskError::Schtasks {
        action,
        status: output.status.to_string(),
        message,
    })
}

/// The definition in a temporary file, UTF-16LE with a BOM (what schtasks reads reliably),
/// deleted on drop.
struct TempXml(PathBuf);

impl TempXml {
    fn write(xml: &str) -> std::io::Result<TempXml> {
        let unique = format!(
            "certhub-task-{}-{}.xml",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let path = std::env::temp_dir().join(unique);
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::File::create(&path)?.write_all(&bytes)?;
        Ok(TempXml(path))
    }

    fn path_str(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempXml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::task_xml::render_cleanup_task;
    use chrono::NaiveTime;

    /// Where the Task Scheduler keeps a registered task's definition.
    fn task_file(name: &str) -> PathBuf {
        let windir = std::env::var_os("windir").expect("windir is set");
        PathBuf::from(windir)
            .join("system32")
            .join("tasks")
            .join(name)
    }

    #[test]
    fn create_then_delete_the_cleanup_task() {
        let name = "CertHub Cleanup Test";
        let xml = render_cleanup_task(
            r"C:\Program Files\CertHub\certhub-agent.exe",
            NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
        );
        create_task_from_xml(name, &xml).unwrap();
        // On Windows the Tasks folder is for administrators only; Wine lets us look.
        if crate::agent::windows::test_support::is_wine() {
            assert!(
                task_file(name).exists(),
                "no task file at {:?}",
                task_file(name)
            );
        }
        // Registering again replaces it (/F).
        create_task_from_xml(name, &xml).unwrap();
        delete_task(name).unwrap();
        assert!(!task_file(name).exists());
        assert!(
            delete_task(name).is_err(),
            "deleting an absent task should fail"
        );
    }

    #[test]
    fn an_invalid_definition_is_refused() {
        let err = create_task_from_xml("CertHub Broken Test", "<Task>not a task").unwrap_err();
        assert!(matches!(err, TaskError::Schtasks { .. }), "{err}");
    }
}
