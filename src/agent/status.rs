//! The Status window's content as text (`certhub-agent status`): server, device, last
//! heartbeat, clock skew, installed certificates with time left, the log's last lines.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::client::version;
use super::config::{Config, DataDir};
use super::leases::Ledger;
use super::state::{AgentState, MAX_SKEW_SECS};

/// What the status shows, gathered by the caller (the server check is optional).
pub struct Status {
    pub config: Option<Config>,
    /// The server certificate pinned at pairing (`None`: the system's roots decide).
    pub pins: Option<crate::protocol::ServerCertificatePins>,
    pub state: AgentState,
    pub ledger: Ledger,
    pub unreported: usize,
    /// `Some(Ok(()))` reachable, `Some(Err(message))` not, `None` not checked.
    pub server_check: Option<Result<(), String>>,
    pub log_tail: Vec<String>,
    pub now: DateTime<Utc>,
}

impl Status {
    pub fn gather(dir: &DataDir, now: DateTime<Utc>) -> Self {
        Self {
            config: Config::load(dir).ok(),
            pins: super::config::read_json(&dir.server_certificate())
                .ok()
                .flatten(),
            state: AgentState::load(dir),
            ledger: Ledger::load(&dir.ledger()).unwrap_or_default(),
            unreported: super::outbox::Outbox::load(dir.outbox())
                .map(|o| o.items().len())
                .unwrap_or(0),
            server_check: None,
            log_tail: super::log::tail(&dir.logs(), 10),
            now,
        }
    }

    /// Healthy: paired, and the server answered (when checked).
    pub fn healthy(&self) -> bool {
        self.config.is_some() && !matches!(self.server_check, Some(Err(_)))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "CertHub Agent {}", version());
        match &self.config {
            Some(c) => {
                let _ = writeln!(out, "Servidor:        {}", c.server_url);
                let _ = writeln!(out, "Dispositivo:     {}", c.device_id);
                let _ = writeln!(out, "Portal:          {}", c.portal_url);
                match &self.pins {
                    Some(p) => {
                        let _ = writeln!(out, "Certificado do servidor (SHA-256): {}", p.current);
                        if let Some(next) = &p.next {
                            let _ = writeln!(out, "Próximo certificado anunciado: {next}");
                        }
                    }
                    None if c.server_url.as_str().starts_with("https://") => {
                        let _ = writeln!(
                            out,
                            "Certificado do servidor: conferido pelas raízes do Windows"
                        );
                    }
                    None => {
                        let _ = writeln!(out, "Conexão sem criptografia (http://)");
                    }
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "Não pareado: {} pair --server URL --code CÓDIGO",
                    super::config::AGENT_EXE
                );
            }
        }
        match &self.server_check {
            Some(Ok(())) => {
                let _ = writeln!(out, "Conexão:         servidor acessível");
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "Conexão:         {e}");
            }
            None => {}
        }
        let beat = self
            .state
            .last_heartbeat_at
            .map(|t| format!("{} (há {} s)", t.to_rfc3339(), (self.now - t).num_seconds()))
            .unwrap_or_else(|| "nunca".into());
        let _ = writeln!(out, "Último heartbeat: {beat}");
        if let Some(skew) = self.state.clock_skew_seconds {
            let warn = if skew.abs() > MAX_SKEW_SECS {
                " — relógio desajustado, corrija a hora do PC"
            } else {
                ""
            };
            let _ = writeln!(out, "Diferença de relógio: {skew} s{warn}");
        }
        if let Some(e) = &self.state.last_error {
            let _ = writeln!(out, "Último erro:     {e}");
        }
        let rule = self.state.lease_rule();
        let daily = rule.cleanup;
        let _ = writeln!(
            out,
            "Limpeza diária:  {} ({})",
            daily.time.format("%H:%M"),
            daily.tz
        );
        let _ = writeln!(
            out,
            "Certificados instalados: {}",
            self.ledger.installed.len()
        );
        for e in &self.ledger.installed {
            let deadline = e.deadline(&rule);
            let left = (deadline - self.now).num_minutes();
            let left = if left <= 0 {
                "vencido: será removido agora".to_owned()
            } else {
                format!("{}h{:02} restantes", left / 60, left % 60)
            };
            let _ = writeln!(
                out,
                "  {}  {}  até {}  ({left})",
                e.installed.thumbprint,
                e.cert_name.as_deref().unwrap_or("-"),
                deadline.with_timezone(&daily.tz).format("%d/%m %H:%M"),
            );
        }
        if self.unreported > 0 {
            let _ = writeln!(out, "Remoções aguardando o servidor: {}", self.unreported);
        }
        if !self.log_tail.is_empty() {
            let _ = writeln!(out, "Log (últimas linhas):");
            for l in &self.log_tail {
                let _ = writeln!(out, "  {l}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::leases::LedgerEntry;
    use crate::agent::store::Installed;

    #[test]
    fn shows_time_left_and_flags_an_unpaired_agent() {
        let now: DateTime<Utc> = "2026-07-15T14:00:00Z".parse().unwrap();
        let mut ledger = Ledger::default();
        ledger.upsert(LedgerEntry {
            installed: Installed {
                thumbprint: "AB".repeat(20),
                key_storage: "CNG".into(),
                key_name: "k".into(),
                mark: String::new(),
            },
            job_id: None,
            installation_id: None,
            cert_name: Some("EMPRESA X LTDA".into()),
            installed_at: now,
            expires_at: Some("2026-07-15T15:30:00Z".parse().unwrap()),
            server_expires_at: None,
        });
        let status = Status {
            pins: None,
            config: None,
            state: AgentState {
                clock_skew_seconds: Some(300),
                ..Default::default()
            },
            ledger,
            unreported: 1,
            server_check: None,
            log_tail: vec!["x INFO Starting cleanup (Scheduled)".into()],
            now,
        };
        let text = status.render();
        assert!(!status.healthy());
        assert!(text.contains("Não pareado"), "{text}");
        assert!(
            text.contains("EMPRESA X LTDA  até 15/07 12:30  (1h30 restantes)"),
            "{text}"
        );
        assert!(text.contains("relógio desajustado"), "{text}");
        assert!(text.contains("aguardando o servidor: 1"), "{text}");
    }
}
