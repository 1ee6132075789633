//! The real agent on a PC of its own: the Linux `certhub-agent` (directory store) or the
//! Windows `certhub-agent.exe` under Wine, paired, run, killed and asked for its status.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Output, eventually, fixture, holds_secret};

const AGENT: &str = env!("CARGO_BIN_EXE_certhub-agent");
/// The password of `ecnpj-aes.pfx` (EMPRESA X LTDA), in its file name.
pub const PFX_PASSWORD: &str = "1234";
/// The longest one agent command may take (`pair`, `uninstall`, `--cleanup`, `status`).
pub const ONCE_TIMEOUT: Duration = Duration::from_secs(120);

/// A PC with the agent: its own data folder and, while running, its process. The Linux
/// `certhub-agent`, or `certhub-agent.exe` under Wine (`tests/api/agent_wine.rs`).
pub struct Pc {
    pub home: tempfile::TempDir,
    child: Option<Child>,
    /// The Windows exe, run through `scripts/wine-runner.sh`.
    wine: Option<PathBuf>,
}

impl Pc {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            child: None,
            wine: None,
        }
    }

    pub fn under_wine(exe: PathBuf) -> Self {
        let mut pc = Self::new();
        pc.wine = Some(exe);
        pc
    }

    fn command(&self, clock_offset_secs: i64) -> Command {
        let mut cmd = match &self.wine {
            None => {
                let mut cmd = Command::new(AGENT);
                cmd.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("CERTHUB_AGENT_HOME", self.home.path());
                cmd
            }
            Some(exe) => {
                let mut cmd = Command::new(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine-runner.sh"),
                );
                // Wine maps `/` to drive Z:.
                let home = format!("Z:{}", self.home.path().display()).replace('/', "\\");
                cmd.arg(exe).env("CERTHUB_AGENT_HOME", home);
                cmd
            }
        };
        cmd.env(
            "CERTHUB_AGENT_CLOCK_OFFSET_SECS",
            clock_offset_secs.to_string(),
        )
        .stdin(Stdio::null());
        cmd
    }

    /// Runs one command to its end (at most [`ONCE_TIMEOUT`]: then killed, and the test fails
    /// with the agent's log). Its output goes to files, not pipes: under Wine a process the
    /// command starts (a service host, say) may keep a pipe open long after it exited.
    pub fn once(&self, args: &[&str], clock_offset_secs: i64) -> Output {
        let outputs = tempfile::tempdir().unwrap();
        let (out_path, err_path) = (outputs.path().join("stdout"), outputs.path().join("stderr"));
        let mut child = self
            .command(clock_offset_secs)
            .args(args)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + ONCE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{}` did not end within {ONCE_TIMEOUT:?}; stdout: {}\nstderr: {}\nlog:\n{}",
                    args.join(" "),
                    std::fs::read_to_string(&out_path).unwrap_or_default(),
                    std::fs::read_to_string(&err_path).unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        Output {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        }
    }

    pub fn pair(&self, args: &[&str]) {
        let mut all = vec!["pair"];
        all.extend_from_slice(args);
        let out = self.once(&all, 0);
        assert!(out.status.success(), "{out:?}");
    }

    /// `certhub-agent run --headless`; returns once it has sent a heartbeat (long-polling).
    pub async fn start(&mut self, clock_offset_secs: i64) {
        let state = self.home.path().join("state.json");
        let before = std::fs::metadata(&state).and_then(|m| m.modified()).ok();
        let child = self
            .command(clock_offset_secs)
            .args(["run", "--headless"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let beat = eventually(Duration::from_secs(30), || async {
            std::fs::metadata(&state).and_then(|m| m.modified()).ok() != before
        })
        .await;
        assert!(beat, "no heartbeat; log:\n{}", self.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Whether the agent `start` ran has ended by itself (or was never started).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// SIGKILL: no chance to tidy up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The thumbprints in the agent's directory store.
    pub fn store(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.home.path().join("store"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_suffix(".json")
                    .map(str::to_owned)
            })
            .collect();
        v.sort();
        v
    }

    /// Waits (20 s) until the store holds `expected` certificates.
    pub async fn wait_store(&self, expected: usize) -> Vec<String> {
        let ok = eventually(Duration::from_secs(20), || async {
            self.store().len() == expected
        })
        .await;
        assert!(
            ok,
            "store {:?}, expected {expected}; log:\n{}",
            self.store(),
            self.log()
        );
        self.store()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("logs/agent.log")).unwrap_or_default()
    }

    /// One of the agent's JSON files (`state.json`, `server_certificate.json`); `Null` when it
    /// is missing or being written.
    pub fn json(&self, name: &str) -> serde_json::Value {
        std::fs::read(self.home.path().join(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The tray's record of the last failed call (`state.json`), if any.
    pub fn last_error(&self) -> Option<String> {
        self.json("state.json")["last_error"]
            .as_str()
            .map(str::to_owned)
    }

    /// No file of the agent (but the secrets file, whose job it is) holds any of `probes`.
    pub fn assert_nothing_leaked(&self, probes: &[String]) {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(self.home.path(), &mut files);
        assert!(files.iter().any(|f| f.ends_with("agent.log")));
        for f in files.iter().filter(|f| !f.ends_with("secrets.dat")) {
            let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
            for p in probes {
                assert!(
                    !holds_secret(&text, p),
                    "{} holds {p}:\n{text}",
                    f.display()
                );
            }
        }
    }
}

impl Drop for Pc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn pfx_probes() -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(fixture("ecnpj-aes.pfx"));
    vec![
        b64[..64].to_owned(),
        format!("\"{PFX_PASSWORD}\""),
        format!("={PFX_PASSWORD}"),
    ]
}
