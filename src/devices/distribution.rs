//! Getting the agent onto a PC: the PowerShell line an admin pastes once, the script it runs
//! (`/agent/install.ps1`), and the agent `.exe` the server was released with
//! (`agent_exe_file`).
//!
//! The line pins the server's certificate for its own download when the server serves HTTPS
//! itself; the script carries that fingerprint and the SHA-256 of the `.exe` served, and runs
//! nothing that does not match. Every value put into PowerShell text goes through
//! [`ps_literal`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use actix_web::web::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::enrollment::EnrollmentCode;
use crate::error::AppError;
use crate::protocol::Fingerprint;
use crate::settings::Settings;

const SCRIPT: &str = include_str!("../../templates/install-agent.ps1");

/// Downloads of the agent's `.exe` one client address may start in a minute.
pub const DOWNLOADS_PER_MINUTE: u32 = 10;

/// `value` as one PowerShell single-quoted string: nothing inside is expanded, and the quote
/// characters that would end it (`'` and the typographic single quotes PowerShell also
/// accepts) are doubled.
pub fn ps_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// What the script is written with.
pub struct ScriptFacts<'a> {
    pub server: &'a str,
    pub code: Option<&'a EnrollmentCode>,
    /// The certificate the server serves HTTPS with (absent over HTTP or behind a proxy).
    pub fingerprint: Option<&'a Fingerprint>,
    /// The SHA-256 (hex) of the `.exe` served; absent when there is none to serve.
    pub agent_sha256: Option<&'a str>,
    /// Plain `http://` to this server is accepted (localhost, or `agent_install_over_http`).
    pub plain_http_allowed: bool,
}

/// Whether the script may run over `public_url` as configured.
pub fn plain_http_allowed(settings: &Settings) -> bool {
    !settings.plain_http_beyond_localhost() || settings.agent_install_over_http
}

/// The install script: `{{NAME}}` markers of the template replaced in one pass, each value a
/// PowerShell literal.
pub fn install_script(facts: &ScriptFacts<'_>) -> String {
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "SERVER" => ps_literal(facts.server),
            "CODE" => ps_literal(&facts.code.map(EnrollmentCode::grouped).unwrap_or_default()),
            "FINGERPRINT" => {
                ps_literal(&facts.fingerprint.map(Fingerprint::hex).unwrap_or_default())
            }
            "AGENT_SHA256" => ps_literal(&facts.agent_sha256.unwrap_or_default().to_uppercase()),
            "ALLOW_HTTP" => if facts.plain_http_allowed {
                "$true"
            } else {
                "$false"
            }
            .to_owned(),
            _ => return None,
        })
    };
    let mut out = String::with_capacity(SCRIPT.len() + 256);
    let mut rest = SCRIPT;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find("}}")
            .and_then(|end| Some((end, value(&after[..end])?)))
        {
            Some((end, v)) => {
                out.push_str(&v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The one line an admin pastes into PowerShell on the PC. With a `fingerprint` it first
/// makes this PowerShell accept only that certificate (TLS 1.2), so the script itself comes
/// from this server whatever the network does.
pub fn install_command(
    server: &str,
    code: &EnrollmentCode,
    fingerprint: Option<&Fingerprint>,
) -> String {
    let url = ps_literal(&format!(
        "{server}/agent/install.ps1?code={}",
        code.grouped()
    ));
    match fingerprint {
        None => format!("irm {url} | iex"),
        Some(f) => format!(
            "$f={}; [Net.ServicePointManager]::SecurityProtocol='Tls12'; \
             [Net.ServicePointManager]::ServerCertificateValidationCallback=\
             {{[BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($args[1].GetRawCertData())).Replace('-','') -eq $f}}; \
             irm {url} | iex",
            ps_literal(&f.hex())
        ),
    }
}

/// Reads the enrollment code typed in `raw` (none when blank).
pub fn code_of(raw: Option<String>) -> Result<Option<EnrollmentCode>, AppError> {
    match raw.filter(|c| !c.trim().is_empty()) {
        None => Ok(None),
        Some(raw) => EnrollmentCode::parse(&raw).map(Some).ok_or_else(|| {
            AppError::Validation("code: an enrollment code such as ABCD-EFGH-JK".into())
        }),
    }
}

/// Why `/agent/certhub-agent.exe` would not answer with a file (so the one-line install would
/// fail at its download): `None` when it would.
pub fn agent_missing(settings: &Settings) -> Option<&'static str> {
    let Some(path) = &settings.agent_exe_file else {
        return Some("este servidor não tem o agente configurado (agent_exe_file)");
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 => None,
        _ => Some("o arquivo do agente configurado (agent_exe_file) não pode ser lido"),
    }
}

/// The agent's file as served: where, how long, and its SHA-256 (hex, lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFile {
    pub path: PathBuf,
    pub len: u64,
    pub sha256: String,
}

impl AgentFile {
    /// The strong validator of the file's content.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.sha256)
    }
}

type Stamp = (PathBuf, u64, Option<SystemTime>);

/// The digest of the file last hashed, kept until its size or time changes.
static DIGEST: Mutex<Option<(Stamp, String)>> = Mutex::new(None);

fn no_agent(why: &str) -> AppError {
    AppError::NotFound(format!("{why} (agent_exe_file)"))
}

/// The agent this server serves (`agent_exe_file`), hashed once per version of the file.
pub async fn agent_file(settings: &Settings) -> Result<AgentFile, AppError> {
    let Some(path) = settings.agent_exe_file.clone() else {
        return Err(no_agent("no agent executable is configured on this server"));
    };
    let meta = tokio::fs::metadata(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read agent_exe_file");
        no_agent("the configured agent executable cannot be read")
    })?;
    if !meta.is_file() {
        return Err(no_agent("the configured agent executable is not a file"));
    }
    let stamp: Stamp = (path.clone(), meta.len(), meta.modified().ok());
    let cached = DIGEST
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(s, _)| *s == stamp)
        .map(|(_, d)| d.clone());
    let sha256 = match cached {
        Some(d) => d,
        None => {
            let digest = hash_file(&path).await.map_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "cannot read agent_exe_file");
                no_agent("the configured agent executable cannot be read")
            })?;
            *DIGEST.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, digest.clone()));
            digest
        }
    };
    Ok(AgentFile {
        path,
        len: meta.len(),
        sha256,
    })
}

async fn hash_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The file's bytes in chunks, read as they are sent (never the whole file in memory).
pub async fn stream(
    file: &AgentFile,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + use<>, AppError> {
    let opened = tokio::fs::File::open(&file.path)
        .await
        .map_err(|_| no_agent("the configured agent executable cannot be read"))?;
    Ok(futures_util::stream::unfold(
        Some(opened),
        |state| async move {
            let mut f = state?;
            let mut buf = vec![0u8; 64 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powershell_literals_cannot_be_closed() {
        assert_eq!(ps_literal("http://certhub:8010"), "'http://certhub:8010'");
        assert_eq!(ps_literal("o'brien"), "'o''brien'");
        assert_eq!(ps_literal("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_literal("$(calc)"), "'$(calc)'");
        assert_eq!(ps_literal(""), "''");
    }

    #[test]
    fn the_script_carries_the_server_the_code_the_pin_and_the_hash() {
        let code = EnrollmentCode::parse("abcd efgh jk").unwrap();
        let pin = Fingerprint::of(b"certificate");
        let s = install_script(&ScriptFacts {
            server: "https://certhub:8010",
            code: Some(&code),
            fingerprint: Some(&pin),
            agent_sha256: Some("ab12"),
            plain_http_allowed: false,
        });
        assert!(s.contains("$server = 'https://certhub:8010'"), "{s}");
        assert!(s.contains("$code = 'ABCD-EFGH-JK'"));
        assert!(s.contains(&format!("$fingerprint = '{}'", pin.hex())));
        assert!(s.contains("$agentSha256 = 'AB12'"));
        assert!(s.contains("$allowHttp = $false"));
        assert!(!s.contains("{{"), "{s}");
        let s = install_script(&ScriptFacts {
            server: "http://o'brien",
            code: None,
            fingerprint: None,
            agent_sha256: None,
            plain_http_allowed: true,
        });
        assert!(s.contains("$server = 'http://o''brien'"));
        assert!(s.contains("$code = ''"));
        assert!(s.contains("$fingerprint = ''"));
        assert!(s.contains("$allowHttp = $true"));
    }

    #[test]
    fn the_line_pins_the_certificate_when_there_is_one() {
        let code = EnrollmentCode::parse("abcd efgh jk").unwrap();
        assert_eq!(
            install_command("http://certhub:8010", &code, None),
            "irm 'http://certhub:8010/agent/install.ps1?code=ABCD-EFGH-JK' | iex"
        );
        let pin = Fingerprint::of(b"certificate");
        let line = install_command("https://certhub:8010", &code, Some(&pin));
        assert!(line.starts_with(&format!("$f='{}'; ", pin.hex())), "{line}");
        assert!(line.contains("ServerCertificateValidationCallback="));
        assert!(line.contains("GetRawCertData()"));
        assert!(
            line.ends_with("irm 'https://certhub:8010/agent/install.ps1?code=ABCD-EFGH-JK' | iex")
        );
    }
}
