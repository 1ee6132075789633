//! Operating-system limits the server adjusts for itself.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::helpers::*;

/// `(soft, hard)` "Max open files" of a running process.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

/// Every agent's long-poll holds a socket: started with a soft limit of 256 (below systemd's
/// 1,024), the server lifts it to the hard limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_lifts_its_open_files_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard <= 256 || hard == nix::sys::resource::RLIM_INFINITY {
        eprintln!("SKIPPED: the hard open-files limit ({hard}) is not one to lift to");
        return;
    }
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut cmd = db.command();
    cmd.arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, 256, hard).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let listening = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("CertHub listening on"));
    assert!(listening, "the server did not start");
    let (soft, max) = open_files_limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(max, hard.to_string());
    assert_eq!(soft, max, "soft limit not lifted");
}
