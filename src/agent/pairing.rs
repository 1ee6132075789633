//! This PC's identity: pairing (a new key, enrollment or a provisioned id and token, the key
//! registered, the previous pairing's certificates removed, the identity saved), and opening
//! the agent of the identity saved.

use std::sync::Arc;

use super::cli::exit;
use super::client::{self, version};
use super::config::{self, Config, ConfigError, DataDir, DeviceSecrets, ServerUrl};
use super::leases::SystemClock;
use super::log;
use super::platform::Platform;
use super::runtime::Agent;
use super::tray_model::PairRequest;
use super::trust::Trust;
use crate::crypto::{DeviceSecretKey, SecretString};
use crate::protocol::{CleanupMode, EnrollRequest, Fingerprint, ServerCertificatePins};

/// Reports why the saved identity cannot be used; the exit code says whether it is missing.
fn not_paired_or(e: ConfigError) -> u8 {
    eprintln!("{e}");
    log::error(e.to_string());
    match e {
        ConfigError::NotPaired => exit::NOT_PAIRED,
        _ => exit::FAILED,
    }
}

/// The agent of the identity saved in `dir`; `Err` carries the exit code.
pub fn open_agent(dir: &DataDir, platform: &dyn Platform) -> Result<Agent, u8> {
    let agent = Agent::open(
        dir.clone(),
        platform.secrets(dir),
        platform.store(dir),
        Arc::new(SystemClock::from_env()),
    )
    .map_err(not_paired_or)?;
    Ok(agent)
}

fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
}

/// Pairs this PC (the command, and the tray's "Parear dispositivo" dialog): a new key,
/// enrollment by `code` or the provisioned `device_id` + `device_token`, the key registered,
/// the previous pairing's certificates removed, then the new identity saved. With a
/// `fingerprint` the server's certificate is pinned from the first request on; without one,
/// the system's root store decides. `Ok` and `Err` carry a message for the person pairing
/// (logged too).
pub fn pair(
    dir: &DataDir,
    platform: &dyn Platform,
    server: &str,
    code: Option<String>,
    device_id: Option<uuid::Uuid>,
    device_token: Option<String>,
    fingerprint: Option<&str>,
) -> Result<String, String> {
    let fail = |message: String| {
        log::error(&message);
        message
    };
    let server = ServerUrl::parse(server).map_err(|e| fail(e.to_string()))?;
    let pins = match fingerprint.map(str::trim).filter(|f| !f.is_empty()) {
        None => None,
        Some(text) => Some(ServerCertificatePins {
            current: Fingerprint::parse(text).ok_or_else(|| {
                fail(format!(
                    "Impressão digital inválida: {text:?} (SHA-256, 64 dígitos hexadecimais, como em Dispositivos no portal)"
                ))
            })?,
            next: None,
        }),
    };
    let trust = Trust::of(pins.clone());
    let key = DeviceSecretKey::generate();
    let public_key = key.public_key().to_base64();
    let credentials = match (code, device_id, device_token) {
        (Some(code), _, _) => {
            let request = EnrollRequest {
                enrollment_code: code,
                public_key: public_key.clone(),
                hostname: hostname(),
                os_version: Some(std::env::consts::OS.to_owned()),
                agent_version: Some(version().to_owned()),
            };
            let c = client::enroll(&server, &trust, &request).map_err(|e| fail(e.to_string()))?;
            (c.device_id, SecretString::new(c.device_token.clone()))
        }
        (None, Some(id), Some(token)) => (id, SecretString::new(token)),
        _ => {
            return Err(fail(
                "pair: --code, or --device-id and --device-token".into(),
            ));
        }
    };
    let (device_id, device_token) = credentials;
    let client = client::Client::new(
        server.clone(),
        trust,
        device_id,
        device_token.clone(),
        public_key,
    );
    client.authenticate().map_err(|e| match e.status() {
        // The device already registered another key (paired elsewhere, or before).
        Some(409) => fail(format!(
            "{e}. Este dispositivo já tem outra chave: peça ao administrador para girar o token (rotate-token) e pareie com o novo código."
        )),
        _ => fail(e.to_string()),
    })?;
    // The old identity's certificates go first, reported under it: nothing it installed
    // outlives it.
    if Config::load(dir).is_ok()
        && let Ok(old) = open_agent(dir, platform)
    {
        log::info("Pairing again: removing what the previous pairing installed");
        let outcome = old.cleanup(CleanupMode::Manual);
        if !outcome.failed.is_empty() {
            return Err(fail(format!(
                "{} certificate(s) of the previous pairing could not be removed; see the log",
                outcome.failed.len()
            )));
        }
    }
    let config = Config {
        portal_url: server.portal(),
        server_url: server.clone(),
        device_id,
        paired_at: chrono::Utc::now(),
    };
    // The pins go before the identity: `config.json`, written last, is what a running agent
    // takes up, and it must find the pins of this pairing.
    dir.create().map_err(|e| fail(e.to_string()))?;
    match &pins {
        Some(p) => config::write_json(&dir.server_certificate(), p),
        None => match std::fs::remove_file(dir.server_certificate()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ConfigError::Io {
                path: dir.server_certificate(),
                source: e,
            }),
            _ => Ok(()),
        },
    }
    .map_err(|e| fail(e.to_string()))?;
    let secrets = platform.secrets(dir);
    let device = DeviceSecrets { device_token, key };
    config::save_identity(dir, secrets.as_ref(), &config, &device)
        .map_err(|e| fail(e.to_string()))?;
    let message = match &pins {
        Some(p) => format!(
            "Paired with {server} as device {device_id}; server certificate pinned ({})",
            p.current
        ),
        None => format!("Paired with {server} as device {device_id}"),
    };
    log::info(&message);
    Ok(message)
}

/// Pairs with what the person typed in the pairing dialog (Windows' tray and first run).
pub fn pair_with(
    dir: &DataDir,
    platform: &dyn Platform,
    request: PairRequest,
) -> Result<String, String> {
    pair(
        dir,
        platform,
        &request.server_url,
        request.code,
        request.device_id.and_then(|id| id.parse().ok()),
        request.device_token,
        request.fingerprint.as_deref(),
    )
}
