//! Getting the agent onto a PC: the PowerShell line an admin pastes once
//! (`irm <server>/agent/install.ps1?code=... | iex`), the script it runs, and the agent `.exe`
//! the server was released with (`agent_exe_file`).

use super::enrollment::EnrollmentCode;
use crate::error::AppError;
use crate::settings::Settings;

const SCRIPT: &str = include_str!("../../templates/install-agent.ps1");

/// The script for `server`, pairing with `code` when one is given.
pub fn install_script(server: &str, code: Option<&EnrollmentCode>) -> String {
    // The server URL comes from the configuration and the code from a fixed alphabet, so
    // neither can close the single-quoted PowerShell strings they are put in.
    SCRIPT
        .replace("{{SERVER}}", &server.replace('\'', "''"))
        .replace(
            "{{CODE}}",
            &code.map(EnrollmentCode::grouped).unwrap_or_default(),
        )
}

/// The one line an admin pastes into PowerShell on the PC.
pub fn install_command(server: &str, code: &EnrollmentCode) -> String {
    format!(
        "irm \"{server}/agent/install.ps1?code={}\" | iex",
        code.grouped()
    )
}

/// The script for `server`, pairing with the code typed in `raw` (none when blank).
pub fn script_for(server: &str, raw: Option<String>) -> Result<String, AppError> {
    let code = match raw.filter(|c| !c.trim().is_empty()) {
        None => None,
        Some(raw) => Some(EnrollmentCode::parse(&raw).ok_or_else(|| {
            AppError::Validation("code: an enrollment code such as ABCD-EFGH-JK".into())
        })?),
    };
    Ok(install_script(server, code.as_ref()))
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

/// The agent executable this server was released with (`agent_exe_file`).
pub async fn agent_executable(settings: &Settings) -> Result<Vec<u8>, AppError> {
    let Some(path) = &settings.agent_exe_file else {
        return Err(AppError::NotFound(
            "no agent executable is configured on this server (agent_exe_file)".into(),
        ));
    };
    tokio::fs::read(path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read agent_exe_file");
        AppError::NotFound("the configured agent executable cannot be read".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_pairs_with_the_code_and_quotes_the_server() {
        let code = EnrollmentCode::parse("abcd efgh jk").unwrap();
        let s = install_script("http://certhub:8010", Some(&code));
        assert!(s.contains("$server = 'http://certhub:8010'"));
        assert!(s.contains("$code = 'ABCD-EFGH-JK'"));
        assert!(!s.contains("{{"));
        let s = install_script("http://o'brien", None);
        assert!(s.contains("$server = 'http://o''brien'"));
        assert!(s.contains("$code = ''"));
        assert_eq!(
            install_command("http://certhub:8010", &code),
            "irm \"http://certhub:8010/agent/install.ps1?code=ABCD-EFGH-JK\" | iex"
        );
    }
}
