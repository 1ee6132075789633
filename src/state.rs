//! The handles every request handler and background task shares: the database, the settings,
//! the master key, the queue, and the in-memory components (the job hub, the device caches,
//! the rate limiters). It names those components' types and no rule: areas take the state
//! (or the one handle they need) from here; `startup` builds it.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::accounts::access_token::AccessTokens;
use crate::crypto::MasterKey;
use crate::queue::Queue;
use crate::settings::Settings;
use crate::throttle::Throttle;

/// Shared by every request handler and background task.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub master_key: Arc<MasterKey>,
    pub queue: Queue,
    pub org_name: String,
    pub tokens: Arc<AccessTokens>,
    /// Login attempts per client IP (the per-account lockout lives in the database).
    pub login_limiter: Arc<Throttle<std::net::IpAddr>>,
    /// `/agent/auth` and `/agent/enroll` calls per device and per client IP.
    pub device_auth_limits: Arc<crate::devices::limits::AuthLimits>,
    /// Downloads of the agent's `.exe` per client IP (it is public and megabytes long).
    pub download_limiter: Arc<Throttle<std::net::IpAddr>>,
    /// Payload downloads per device (seed S6: 5 a minute).
    pub payload_limiter: Arc<Throttle<uuid::Uuid>>,
    /// While the database has no user: the hash of the first-access link's token (memory only).
    pub setup_token: Arc<std::sync::Mutex<Option<crate::crypto::TokenHash>>>,
    /// Wakes a device's long-poll (`GET /api/v1/agent/jobs?wait=N`) once a job for it is
    /// committed `PENDING`.
    pub job_hub: Arc<crate::jobs::hub::JobHub>,
    /// Where each office's audit chain was last found intact, so the audit page checks only
    /// the rows written since (a full walk stays one click, the CLI and the API away).
    pub audit_checkpoints: Arc<crate::audit::Checkpoints>,
    /// Devices' last contact, kept in memory and written every `device_contact_flush_seconds`.
    pub contacts: Arc<crate::devices::contact::ContactBook>,
    /// The device rows agents authenticate with (forgotten on change, across processes too).
    pub device_cache: Arc<crate::devices::cache::DeviceCache>,
    /// The certificate HTTPS is served with (`serve` with `tls` set), for its fingerprint.
    pub tls: Option<Arc<crate::http::tls::ServedCertificate>>,
}
