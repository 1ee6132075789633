//! Request and response types shared by the server and the agent (serde only).

use serde::{Deserialize, Serialize};

/// The longest `?wait=` of `GET /api/v1/agent/jobs` (a long poll), in seconds.
pub const MAX_WAIT_SECS: i64 = 30;

/// Body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct Health {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The one shape of every 4xx/5xx body: a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// An install payload sealed to one device's key (HPKE, see `docs/protocol.md`, "Payload
/// envelope (v1)"). Both fields are standard base64; only that device can open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct SealedPayload {
    /// The 32-byte HPKE encapsulated key (the sender's ephemeral X25519 public key).
    pub enc: String,
    /// ChaCha20-Poly1305 ciphertext of the JSON plaintext, tag included.
    pub ciphertext: String,
}

/// Body of `POST /api/v1/agent/enroll`: a one-time enrollment code exchanged for the device's
/// id and token, registering the device's public key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct EnrollRequest {
    /// As shown to the admin (`ABCD-EFGH-JK`); case, spaces and dashes do not matter.
    pub enrollment_code: String,
    /// The device's X25519 public key: standard base64 of the raw 32 bytes.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// The device's credentials: from enrollment, or typed in from the admin's provisioning.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct DeviceCredentials {
    pub device_id: uuid::Uuid,
    pub device_token: String,
}

/// Body of `POST /api/v1/agent/auth`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct DeviceAuthRequest {
    pub device_id: uuid::Uuid,
    pub device_token: String,
    /// Registers the device's key on first use (standard base64 of the raw 32 X25519 bytes);
    /// a different key later is refused (409) until an admin rotates the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Response of `POST /api/v1/agent/auth`: a DEVICE access token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct DeviceAuthResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds the access token is valid for.
    pub expires_in: i64,
}

macro_rules! redacted_debug {
    ($($ty:ident { $($field:ident),* };)*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    )*};
}

// Secrets never reach a log line through `{:?}`: only the harmless fields are printed.
redacted_debug! {
    EnrollRequest { hostname, os_version, agent_version };
    DeviceCredentials { device_id };
    DeviceAuthRequest { device_id, public_key };
    DeviceAuthResponse { token_type, expires_in };
}

/// Body of `POST /api/v1/agent/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct HeartbeatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// Response of `POST /api/v1/agent/heartbeat`: the server's clock (to detect skew) and the
/// policy the agent follows, so it keeps none of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct HeartbeatResponse {
    pub server_time: chrono::DateTime<chrono::Utc>,
    pub policy: AgentPolicy,
    /// The certificate the server serves and, during a planned change, the one it will serve
    /// next (absent over plain HTTP). A pinned agent accepts `next` because this connection,
    /// pinned to the current one, vouches for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<ServerCertificatePins>,
}

/// SHA-256 fingerprints of the server's TLS certificate: the one served and the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct ServerCertificatePins {
    pub current: Fingerprint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Fingerprint>,
}

/// The SHA-256 fingerprint of a certificate (its DER), written as 32 upper-case hex pairs
/// separated by colons (`AB:CD:…`), as Windows and browsers show it. Parsing accepts any case
/// and colons, spaces or nothing between the pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        use sha2::Digest;
        Self::from_bytes(&sha2::Sha256::digest(der))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
        Fingerprint(pairs.join(":"))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let digits: String = text
            .chars()
            .filter(|c| !matches!(c, ':' | ' ' | '-'))
            .collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        hex::decode(&digits).ok().map(|b| Self::from_bytes(&b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits without separators (what PowerShell's hash comparison uses).
    pub fn hex(&self) -> String {
        self.0.replace(':', "")
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "a SHA-256 fingerprint: 64 hex digits".to_owned())
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the server tells every agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct AgentPolicy {
    /// Local time (`HH:MM`, in `timezone`) installed certificates are removed each day.
    pub cleanup_time: String,
    /// IANA name of the office's timezone.
    pub timezone: String,
    /// Longest an installation may stay before it is removed.
    pub max_lease_hours: i64,
    /// Seconds between job polls.
    pub poll_interval_seconds: u64,
    /// Longest a long poll for jobs waits for an answer.
    pub long_poll_seconds: u64,
    /// Seconds between heartbeats.
    pub heartbeat_interval_seconds: u64,
}

/// What a job asks of the device (`job_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentJobType {
    /// Claim, fetch the sealed payload, import the certificate, report the result.
    Install,
    /// Take the certificate with `thumbprint` and its key out of the store now.
    Remove,
    /// A type a newer server knows and this agent does not: the agent leaves the job alone.
    #[serde(other)]
    #[cfg_attr(feature = "server", schemars(skip))]
    Unknown,
}

impl AgentJobType {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentJobType::Install => "INSTALL",
            AgentJobType::Remove => "REMOVE",
            AgentJobType::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for AgentJobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job stands, as a device sees it: listed `PENDING` or `IN_PROGRESS`, claimed
/// `IN_PROGRESS`, reported `DONE` or `FAILED` (the server's other statuses never reach a device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentJobStatus {
    Pending,
    InProgress,
    Done,
    Failed,
    /// A status a newer server sends and this agent does not know: treated as none of the above.
    #[serde(other)]
    #[cfg_attr(feature = "server", schemars(skip))]
    Unknown,
}

impl AgentJobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentJobStatus::Pending => "PENDING",
            AgentJobStatus::InProgress => "IN_PROGRESS",
            AgentJobStatus::Done => "DONE",
            AgentJobStatus::Failed => "FAILED",
            AgentJobStatus::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for AgentJobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One job of `GET /api/v1/agent/jobs`: what the device is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct AgentJob {
    pub id: uuid::Uuid,
    pub job_type: AgentJobType,
    /// `PENDING` or `IN_PROGRESS`.
    pub status: AgentJobStatus,
    pub cert_id: uuid::Uuid,
    pub cert_name: Option<String>,
    /// SHA-1 of the certificate to install or remove (upper-case hex).
    pub thumbprint: Option<String>,
    /// For a `REMOVE` job, the installation it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<uuid::Uuid>,
    pub duration_minutes: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub claimed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Response of `GET /api/v1/agent/jobs`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct AgentJobs {
    pub jobs: Vec<AgentJob>,
}

/// Response of `POST /api/v1/agent/jobs/{id}/claim`: for an `INSTALL` job, a one-time token
/// for the payload; a `REMOVE` job has no payload, so none of the token's fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct ClaimResponse {
    pub job_id: uuid::Uuid,
    /// `IN_PROGRESS`.
    pub status: AgentJobStatus,
    pub job_type: AgentJobType,
    /// Single use; `?token=` or header `X-Payload-Token` of the payload request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds the token is valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

/// Response of `GET /api/v1/agent/jobs/{id}/payload`: the PFX and its password sealed to the
/// device's key (`docs/protocol.md`), and the thumbprint the installed certificate must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct PayloadResponse {
    pub job_id: uuid::Uuid,
    pub thumbprint: Option<String>,
    #[serde(flatten)]
    pub sealed: SealedPayload,
}

/// What the agent reports for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum ResultStatus {
    Done,
    Failed,
}

/// Body of `POST /api/v1/agent/jobs/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct ResultRequest {
    pub status: ResultStatus,
    /// Of the certificate now in the store (required with `DONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Where the private key went (e.g. `SOFTWARE`, `TPM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_storage: Option<String>,
    /// For a `REMOVE` job: whether the private key was deleted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_deleted: Option<bool>,
}

/// Response of `POST /api/v1/agent/jobs/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct ResultResponse {
    pub job_id: uuid::Uuid,
    /// `DONE` or `FAILED` (a `DONE` with another thumbprint is recorded as `FAILED`).
    pub status: AgentJobStatus,
    pub error_code: Option<String>,
    /// Until when the certificate may stay installed (a `DONE` install only): remove it then.
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why the agent removed certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum CleanupMode {
    /// The daily task at `cleanup_time`.
    Scheduled,
    /// `--cleanup --mode manual`.
    Manual,
    /// Leftovers found when the agent starts.
    Startup,
    /// A lease ended before the daily cleanup.
    Lease,
    /// `uninstall`: the agent is being taken off the PC, everything it installed with it.
    Uninstall,
}

impl CleanupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupMode::Scheduled => "scheduled",
            CleanupMode::Manual => "manual",
            CleanupMode::Startup => "startup",
            CleanupMode::Lease => "lease",
            CleanupMode::Uninstall => "uninstall",
        }
    }
}

/// One certificate the agent took out of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct Removed {
    pub thumbprint: String,
    /// Whether its private key was deleted too.
    pub key_deleted: bool,
}

/// Body of `POST /api/v1/agent/cleanup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct CleanupRequest {
    pub mode: CleanupMode,
    pub removed: Vec<Removed>,
}

/// Response of `POST /api/v1/agent/cleanup`: how many open leases it closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct CleanupResponse {
    pub closed: u64,
}

redacted_debug! {
    ClaimResponse { job_id, status, payload_token_expires_at, expires_in };
}

/// One open installation of `GET /api/v1/agent/installations`: a certificate the server
/// believes is on this device, and until when it may stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct OpenInstallation {
    pub installation_id: uuid::Uuid,
    /// The install job that opened it.
    pub job_id: uuid::Uuid,
    /// SHA-1 of the certificate (upper-case hex).
    pub thumbprint: String,
    pub cert_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The lease's end: remove the certificate and its key then at the latest.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Response of `GET /api/v1/agent/installations` (DEVICE): this device's open installations,
/// which the agent reconciles with its own record at start-up and at every cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
pub struct OpenInstallations {
    pub installations: Vec<OpenInstallation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_windows_and_browsers_write_them() {
        let f = Fingerprint::of(b"certificate");
        assert_eq!(f.as_str().len(), 95);
        assert_eq!(Fingerprint::parse(&f.hex().to_lowercase()), Some(f.clone()));
        assert_eq!(
            Fingerprint::parse(&f.as_str().replace(':', " ")),
            Some(f.clone())
        );
        assert_eq!(Fingerprint::parse(&f.hex()[..62]), None);
        assert_eq!(Fingerprint::parse(&format!("{}zz", &f.hex()[..62])), None);
        let wire = serde_json::to_value(&f).unwrap();
        assert_eq!(wire, f.as_str());
        assert!(serde_json::from_value::<Fingerprint>(serde_json::json!("AB")).is_err());
    }

    #[test]
    fn job_types_and_statuses_keep_their_wire_strings_and_unknown_ones_parse() {
        for t in [AgentJobType::Install, AgentJobType::Remove] {
            let wire = serde_json::to_value(t).unwrap();
            assert_eq!(wire, t.as_str());
            assert_eq!(serde_json::from_value::<AgentJobType>(wire).unwrap(), t);
        }
        for s in [
            AgentJobStatus::Pending,
            AgentJobStatus::InProgress,
            AgentJobStatus::Done,
            AgentJobStatus::Failed,
        ] {
            let wire = serde_json::to_value(s).unwrap();
            assert_eq!(wire, s.as_str());
            assert_eq!(serde_json::from_value::<AgentJobStatus>(wire).unwrap(), s);
        }
        assert_eq!(AgentJobStatus::InProgress.as_str(), "IN_PROGRESS");
        // A newer server's values are read, as Unknown, instead of failing the whole list.
        let t: AgentJobType = serde_json::from_str("\"ROTATE\"").unwrap();
        assert_eq!(t, AgentJobType::Unknown);
        let s: AgentJobStatus = serde_json::from_str("\"PAUSED\"").unwrap();
        assert_eq!(s, AgentJobStatus::Unknown);
    }
}
