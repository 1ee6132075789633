//! The HTTP calls of `docs/protocol.md`, typed with [`crate::protocol`]. Blocking `ureq` over
//! rustls: a small exe, no async runtime idling in memory, one long-poll at a time.
//!
//! Every failure becomes a [`ClientError`] whose message says what a person should check (the
//! runbook's troubleshooting list): wrong base URL, not paired, token rotated, device blocked,
//! server unreachable.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::ServerUrl;
use super::outbox::{Delivery, Reporter};
use super::trust::Trust;
use crate::crypto::SecretString;
use crate::protocol::{
    AgentJobs, ApiError, ClaimResponse, CleanupMode, CleanupRequest, CleanupResponse,
    DeviceAuthRequest, DeviceAuthResponse, DeviceCredentials, EnrollRequest, HeartbeatRequest,
    HeartbeatResponse, OpenInstallations, PayloadResponse, Removed, ResultRequest, ResultResponse,
};

/// Version string the agent reports to the server (User-Agent, enrollment, heartbeat).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The message the seed calls "Auth failed".
pub const AUTH_FAILED: &str = "Falha de autenticação: token rotacionado ou inválido";

/// How a refusal of the server's certificate starts (the tray's words for it).
pub const CERTIFICATE_CHANGED: &str = "O certificado do servidor mudou";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("Servidor inacessível ({url}): {detail}. Verifique a rede e se o CertHub está no ar.")]
    Unreachable { url: String, detail: String },
    #[error(
        "URL do servidor errada? {url} respondeu {detail} onde se esperava a API do CertHub. Use o endereço do servidor, por exemplo http://servidor:8010 (com ou sem /api/v1)."
    )]
    WrongBaseUrl { url: String, detail: String },
    #[error(
        "{AUTH_FAILED}. Pareie de novo: {} pair --server URL --code CÓDIGO",
        super::config::AGENT_EXE
    )]
    AuthFailed,
    #[error("Dispositivo bloqueado pelo administrador do CertHub.")]
    Blocked,
    #[error("Código de pareamento inválido, usado ou expirado: peça um novo ao administrador.")]
    EnrollmentRefused,
    #[error(
        "{CERTIFICATE_CHANGED}: {url} apresentou {presented}, e este agente foi pareado com {pinned}. Nada foi feito. Se o administrador trocou o certificado, pareie de novo com a nova impressão digital (Dispositivos no portal); se não, alguém na rede pode estar se passando pelo servidor."
    )]
    CertificateChanged {
        url: String,
        presented: String,
        pinned: String,
    },
    #[error(
        "O certificado do servidor não é confiável para este Windows ({url}: {detail}). Pareie com a impressão digital mostrada em Dispositivos no portal: {} pair --server URL --code CÓDIGO --fingerprint IMPRESSÃO",
        super::config::AGENT_EXE
    )]
    CertificateUntrusted { url: String, detail: String },
    #[error("{status} {}: {}", .error.error, .error.message)]
    Api { status: u16, error: ApiError },
}

impl ClientError {
    /// Worth trying again later (the server is away or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            // Retried too: back on the real server, the agent carries on by itself.
            ClientError::Unreachable { .. } | ClientError::CertificateChanged { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.error),
            _ => None,
        }
    }
}

/// How long a request may take beyond a long-poll's wait.
const SLACK: Duration = Duration::from_secs(20);

fn http_agent(timeout: Duration, trust: &Trust) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(timeout))
        .user_agent(format!("certhub-agent/{}", version()))
        .max_idle_connections(2)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build();
    super::trust::http_agent(config, trust)
}

/// One answer, read whole.
struct Answer {
    status: u16,
    json: bool,
    body: String,
}

fn send(
    req: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
    trust: &Trust,
) -> Result<Answer, ClientError> {
    let mut res = req.map_err(|e| {
        if let Some(pins) = trust.pinned()
            && let Some(presented) = pins.take_refused()
        {
            return ClientError::CertificateChanged {
                url: url.to_owned(),
                presented: presented.to_string(),
                pinned: pins.current().current.to_string(),
            };
        }
        let detail = e.to_string();
        if detail.contains("invalid peer certificate") {
            return ClientError::CertificateUntrusted {
                url: url.to_owned(),
                detail,
            };
        }
        ClientError::Unreachable {
            url: url.to_owned(),
            detail,
        }
    })?;
    let status = res.status().as_u16();
    let json = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let body = res
        .body_mut()
        .with_config()
        .limit(4 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(Answer { status, json, body })
}

/// Reads a JSON answer; `fixed_route` says the path has no id in it, so a 404 can only mean
/// the base URL is wrong.
fn decode<T: DeserializeOwned>(
    answer: Answer,
    url: &str,
    fixed_route: bool,
) -> Result<T, ClientError> {
    let wrong = |detail: String| ClientError::WrongBaseUrl {
        url: url.to_owned(),
        detail,
    };
    if !answer.json {
        let kind = if answer.body.trim_start().starts_with('<') {
            "HTML"
        } else {
            "text"
        };
        return Err(wrong(format!("{} with {kind}", answer.status)));
    }
    if (200..300).contains(&answer.status) {
        return serde_json::from_str(&answer.body)
            .map_err(|_| wrong(format!("{} with JSON of another shape", answer.status)));
    }
    let error: ApiError = serde_json::from_str(&answer.body)
        .map_err(|_| wrong(format!("{} with JSON of another shape", answer.status)))?;
    match answer.status {
        404 if fixed_route => Err(wrong("404".into())),
        401 => Err(ClientError::AuthFailed),
        403 if error.message.contains("blocked") => Err(ClientError::Blocked),
        status => Err(ClientError::Api { status, error }),
    }
}

/// Exchanges an enrollment code for the device's id and token (no authentication).
pub fn enroll(
    server: &ServerUrl,
    trust: &Trust,
    request: &EnrollRequest,
) -> Result<DeviceCredentials, ClientError> {
    let url = server.api("/agent/enroll");
    let answer = send(
        http_agent(SLACK, trust).post(&url).send_json(request),
        &url,
        trust,
    )?;
    match decode(answer, &url, true) {
        Err(ClientError::Api {
            status: 410 | 404, ..
        }) => Err(ClientError::EnrollmentRefused),
        other => other,
    }
}

/// The device's authenticated connection to the server.
pub struct Client {
    http: ureq::Agent,
    trust: Trust,
    server: ServerUrl,
    device_id: uuid::Uuid,
    device_token: SecretString,
    public_key: String,
    access: Mutex<Option<SecretString>>,
}

impl Client {
    pub fn new(
        server: ServerUrl,
        trust: Trust,
        device_id: uuid::Uuid,
        device_token: SecretString,
        public_key: String,
    ) -> Self {
        Self {
            http: http_agent(Duration::from_secs(30) + SLACK, &trust),
            trust,
            server,
            device_id,
            device_token,
            public_key,
            access: Mutex::new(None),
        }
    }

    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    pub fn device_id(&self) -> uuid::Uuid {
        self.device_id
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// `POST /agent/auth`: a fresh DEVICE access token (registers the key on first use).
    pub fn authenticate(&self) -> Result<(), ClientError> {
        let url = self.server.api("/agent/auth");
        let body = DeviceAuthRequest {
            device_id: self.device_id,
            device_token: self.device_token.expose().to_owned(),
            public_key: Some(self.public_key.clone()),
        };
        let answer = send(self.http.post(&url).send_json(&body), &url, &self.trust)?;
        let auth: DeviceAuthResponse = decode(answer, &url, true)?;
        *self.access.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(SecretString::new(auth.access_token.clone()));
        Ok(())
    }

    fn bearer(&self) -> Result<String, ClientError> {
        let current = self
            .access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()));
        match current {
            Some(b) => Ok(b),
            None => {
                self.authenticate()?;
                self.bearer()
            }
        }
    }

    /// One authenticated call; a 401 re-authenticates once, then gives up with
    /// [`AUTH_FAILED`].
    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        payload_token: Option<&str>,
        fixed_route: bool,
    ) -> Result<T, ClientError> {
        let url = self.server.api(path);
        for attempt in 0..2 {
            let bearer = self.bearer()?;
            let answer = if method == "GET" {
                let mut req = self.http.get(&url).header("Authorization", &bearer);
                if let Some(t) = payload_token {
                    req = req.header("X-Payload-Token", t);
                }
                send(req.call(), &url, &self.trust)?
            } else {
                let req = self.http.post(&url).header("Authorization", &bearer);
                match body {
                    Some(b) => send(req.send_json(b), &url, &self.trust)?,
                    None => send(req.send_empty(), &url, &self.trust)?,
                }
            };
            match decode(answer, &url, fixed_route) {
                Err(ClientError::AuthFailed) if attempt == 0 => {
                    *self.access.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                other => return other,
            }
        }
        Err(ClientError::AuthFailed)
    }

    pub fn heartbeat(&self) -> Result<HeartbeatResponse, ClientError> {
        let body = HeartbeatRequest {
            agent_version: Some(version().to_owned()),
        };
        self.call("POST", "/agent/heartbeat", Some(&body), None, true)
    }

    /// `GET /agent/jobs?wait=N`: long-polls up to `wait` seconds.
    pub fn jobs(&self, wait: u64) -> Result<AgentJobs, ClientError> {
        let path = format!("/agent/jobs?wait={}", wait.min(30));
        self.call::<(), _>("GET", &path, None, None, true)
    }

    pub fn claim(&self, job: uuid::Uuid) -> Result<ClaimResponse, ClientError> {
        self.call::<(), _>(
            "POST",
            &format!("/agent/jobs/{job}/claim"),
            None,
            None,
            false,
        )
    }

    pub fn payload(
        &self,
        job: uuid::Uuid,
        token: &SecretString,
    ) -> Result<PayloadResponse, ClientError> {
        let path = format!("/agent/jobs/{job}/payload");
        self.call::<(), _>("GET", &path, None, Some(token.expose()), false)
    }

    pub fn result(
        &self,
        job: uuid::Uuid,
        result: &ResultRequest,
    ) -> Result<ResultResponse, ClientError> {
        self.call(
            "POST",
            &format!("/agent/jobs/{job}/result"),
            Some(result),
            None,
            false,
        )
    }

    pub fn cleanup(&self, request: &CleanupRequest) -> Result<CleanupResponse, ClientError> {
        self.call("POST", "/agent/cleanup", Some(request), None, true)
    }

    /// `POST /agent/uninstall`: the agent is leaving this PC; the server closes what is still
    /// open and voids the pairing.
    pub fn uninstalled(&self) -> Result<CleanupResponse, ClientError> {
        self.call::<(), _>("POST", "/agent/uninstall", None, None, true)
    }

    /// `GET /agent/installations`: what the server believes is on this device.
    pub fn installations(&self) -> Result<OpenInstallations, ClientError> {
        self.call::<(), _>("GET", "/agent/installations", None, None, true)
    }
}

fn delivery<T>(result: Result<T, ClientError>) -> Delivery {
    match result {
        Ok(_) => Delivery::Delivered,
        Err(e) if e.code() == Some("result_duplicate") => Delivery::Delivered,
        Err(e) if matches!(e.status(), Some(404 | 409 | 410 | 422)) => Delivery::JobGone,
        Err(e) => Delivery::Later(e.to_string()),
    }
}

impl Reporter for Client {
    fn cleanup(&self, mode: CleanupMode, removed: &[Removed]) -> Delivery {
        let request = CleanupRequest {
            mode,
            removed: removed.to_vec(),
        };
        match Client::cleanup(self, &request) {
            // A report the server cannot take (not this device's any more) is not retried.
            Err(e) if e.status() == Some(422) => Delivery::JobGone,
            other => delivery(other),
        }
    }

    fn job_result(&self, job_id: uuid::Uuid, result: &ResultRequest) -> Delivery {
        delivery(self.result(job_id, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, json: bool, body: &str) -> Answer {
        Answer {
            status,
            json,
            body: body.into(),
        }
    }

    #[test]
    fn errors_say_what_to_check() {
        let url = "http://x/api/v1/agent/heartbeat";
        let html =
            decode::<HeartbeatResponse>(answer(200, false, "<!doctype html><html>"), url, true);
        assert!(
            matches!(&html, Err(ClientError::WrongBaseUrl { detail, .. }) if detail.contains("HTML")),
            "{html:?}"
        );
        let missing = decode::<HeartbeatResponse>(
            answer(404, true, r#"{"error":"not_found","message":"no route"}"#),
            url,
            true,
        );
        assert!(matches!(missing, Err(ClientError::WrongBaseUrl { .. })));
        let job_missing = decode::<ClaimResponse>(
            answer(404, true, r#"{"error":"not_found","message":"job"}"#),
            url,
            false,
        );
        assert_eq!(job_missing.unwrap_err().status(), Some(404));
        let denied = decode::<HeartbeatResponse>(
            answer(401, true, r#"{"error":"unauthorized","message":"x"}"#),
            url,
            true,
        );
        assert_eq!(denied.unwrap_err(), ClientError::AuthFailed);
        assert!(ClientError::AuthFailed.to_string().starts_with(AUTH_FAILED));
        let blocked = decode::<HeartbeatResponse>(
            answer(
                403,
                true,
                r#"{"error":"forbidden","message":"this device is blocked"}"#,
            ),
            url,
            true,
        );
        assert_eq!(blocked.unwrap_err(), ClientError::Blocked);
        let busy = decode::<HeartbeatResponse>(
            answer(503, true, r#"{"error":"unavailable","message":"db"}"#),
            url,
            true,
        )
        .unwrap_err();
        assert!(busy.is_transient());
        let shape = decode::<HeartbeatResponse>(answer(200, true, r#"{"ok":true}"#), url, true);
        assert!(matches!(shape, Err(ClientError::WrongBaseUrl { .. })));
    }

    #[test]
    fn an_unreachable_server_is_transient_and_says_so() {
        // Port 9 on localhost: nothing listens (connection refused).
        let server = ServerUrl::parse("http://127.0.0.1:9").unwrap();
        let client = Client::new(
            server,
            Trust::System,
            uuid::Uuid::new_v4(),
            SecretString::new("t".into()),
            "k".into(),
        );
        let err = client.heartbeat().unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().starts_with("Servidor inacessível"), "{err}");
    }

    #[test]
    fn duplicates_are_delivered_and_refused_results_are_demoted() {
        let dup = ClientError::Api {
            status: 409,
            error: ApiError {
                error: "result_duplicate".into(),
                message: "x".into(),
            },
        };
        assert_eq!(delivery::<()>(Err(dup)), Delivery::Delivered);
        let conflict = ClientError::Api {
            status: 409,
            error: ApiError {
                error: "conflict".into(),
                message: "x".into(),
            },
        };
        assert_eq!(delivery::<()>(Err(conflict)), Delivery::JobGone);
        assert!(matches!(
            delivery::<()>(Err(ClientError::Blocked)),
            Delivery::Later(_)
        ));
    }
}
