//! `/api/v1/agent/*` for pairing and staying in touch: enrollment with a one-time code, device
//! authentication (device id + token -> DEVICE access token) and the heartbeat.

use std::net::IpAddr;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use serde_json::json;

use super::{Column, Device, Devices, EnrollmentCode, KeyCheck, check_key};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::{Token, TokenHash};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::http::extract::{AuthDevice, client_addr, client_ip};
use crate::throttle::{Refusal, Throttle};
use crate::protocol::{
    DeviceAuthRequest, DeviceAuthResponse, DeviceCredentials, EnrollRequest, HeartbeatRequest,
    HeartbeatResponse,
};
use crate::state::AppState;

/// Limits on pairing and device authentication, all answered from memory.
///
/// Every call counts against its client IP (`/agent/auth` and `/agent/enroll` separately).
/// Only *failed* `/agent/auth` attempts count against a device, per device and client IP, so a
/// stranger who knows a device id (every VIEW user can see them) spends only their own quota
/// and cannot keep the real agent out; a ceiling per device, ten times higher, bounds the
/// failures from everywhere together.
pub struct AuthLimits {
    auth_per_ip: Throttle<IpAddr>,
    enroll_per_ip: Throttle<IpAddr>,
    failures: Throttle<(Uuid, Option<IpAddr>)>,
    device_failures: Throttle<Uuid>,
}

/// Which limit refused a request (the audit row's `limit`).
#[derive(Debug, Clone, Copy)]
enum Scope {
    Ip,
    DeviceAndIp,
    Device,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::DeviceAndIp => "device_ip",
            Scope::Device => "device",
        }
    }
}

impl AuthLimits {
    pub fn new(per_minute: u32) -> Self {
        Self {
            auth_per_ip: Throttle::per_minute(per_minute),
            enroll_per_ip: Throttle::per_minute(per_minute),
            failures: Throttle::per_minute(per_minute),
            device_failures: Throttle::per_minute(per_minute.saturating_mul(10)),
        }
    }

    /// Before the request is looked at: the per-IP quota, and for `/agent/auth` whether the
    /// device is in a run of refused failures.
    fn check(
        &self,
        endpoint: Endpoint,
        device: Option<Uuid>,
        ip: Option<IpAddr>,
    ) -> Result<(), (Scope, Refusal)> {
        let per_ip = match endpoint {
            Endpoint::Enroll => &self.enroll_per_ip,
            Endpoint::Auth => &self.auth_per_ip,
        };
        if let Some(ip) = ip {
            per_ip.check(&ip).map_err(|r| (Scope::Ip, r))?;
        }
        if let Some(id) = device {
            self.failures
                .refusing(&(id, ip))
                .map_err(|r| (Scope::DeviceAndIp, r))?;
            self.device_failures
                .refusing(&id)
                .map_err(|r| (Scope::Device, r))?;
        }
        Ok(())
    }

    /// Counts a failed `/agent/auth` against the device; `Some` when that starts a refusal run.
    fn failed(&self, device: Uuid, ip: Option<IpAddr>) -> Option<(Scope, Refusal)> {
        let pair = self.failures.check(&(device, ip)).err();
        let all = self.device_failures.check(&device).err();
        pair.map(|r| (Scope::DeviceAndIp, r))
            .or(all.map(|r| (Scope::Device, r)))
            .filter(|(_, r)| r.audit.is_some())
    }

    /// Forgets idle keys; see [`Throttle::prune`].
    pub fn prune(&self) -> u64 {
        self.auth_per_ip.prune()
            + self.enroll_per_ip.prune()
            + self.failures.prune()
            + self.device_failures.prune()
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Enroll,
    Auth,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Enroll => "enroll",
            Endpoint::Auth => "auth",
        }
    }
}

/// Audits the first refusal of a run (`DEVICE_AUTH_RATE_LIMITED`, with how many refusals
/// followed the previous audited one); the rest are answered from memory.
async fn audit_refusal(
    state: &AppState,
    req: &HttpRequest,
    endpoint: Endpoint,
    device: Option<Uuid>,
    (scope, refusal): (Scope, Refusal),
) -> Result<(), AppError> {
    let Some(followed) = refusal.audit else {
        return Ok(());
    };
    let org = match device {
        Some(id) => Devices::find_by_id(id)
            .one(&state.db)
            .await?
            .map(|d| d.org_id),
        None => None,
    };
    let mut entry = Entry::new(
        OrgId(org.unwrap_or(state.settings.org_id)),
        AuditAction::DeviceAuthRateLimited,
        Actor::System,
    )
    .meta(json!({
        "endpoint": endpoint.as_str(),
        "limit": scope.as_str(),
        "refused_since_last_row": followed,
    }))
    .ip(client_ip(req));
    if let Some(id) = device {
        entry = entry.entity("device", id);
    }
    audit::record(&state.db, entry).await?;
    tracing::warn!(endpoint = endpoint.as_str(), limit = scope.as_str(), device_id = ?device, "device authentication rate limited");
    Ok(())
}

/// Applies the limits; past them, answers 429 (auditing the first refusal of a run).
async fn rate_limit(
    state: &AppState,
    req: &HttpRequest,
    endpoint: Endpoint,
    device: Option<Uuid>,
) -> Result<(), AppError> {
    let Err(refused) = state
        .device_auth_limits
        .check(endpoint, device, client_addr(req))
    else {
        return Ok(());
    };
    let retry_after_secs = refused.1.retry_after_secs;
    audit_refusal(state, req, endpoint, device, refused).await?;
    Err(AppError::TooManyRequests { retry_after_secs })
}

/// Audits a refused key (not secret: it is a public key) and answers 409.
async fn key_rejected(
    state: &AppState,
    device: &Device,
    ip: Option<String>,
    err: AppError,
) -> Result<HttpResponse, AppError> {
    if matches!(err, AppError::Conflict(_)) {
        audit::record(
            &state.db,
            Entry::new(
                OrgId(device.org_id),
                AuditAction::DeviceKeyRejected,
                Actor::Device(device.id),
            )
            .entity("device", device.id)
            .ip(ip),
        )
        .await?;
    }
    Err(err)
}

fn clean(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, AppError> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if value.as_ref().is_some_and(|v| v.chars().count() > max) {
        return Err(AppError::Validation(format!(
            "{field}: at most {max} characters"
        )));
    }
    Ok(value)
}

const CODE_REFUSED: &str = "enrollment code is unknown, already used or expired";

/// `POST /api/v1/agent/enroll`: exchanges a one-time enrollment code for the device's id and a
/// fresh token, registering its public key. Unknown, used and expired codes get the same 410.
pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, AppError> {
    rate_limit(&state, &req, Endpoint::Enroll, None).await?;
    let body = body.into_inner();
    let ip = client_ip(&req);
    let hostname = clean("hostname", body.hostname, 255)?;
    let os_version = clean("os_version", body.os_version, 255)?;
    let agent_version = clean("agent_version", body.agent_version, 64)?;
    let code = EnrollmentCode::parse(&body.enrollment_code);
    let hash = code.as_ref().map(EnrollmentCode::hash);
    let device = match &hash {
        Some(h) => {
            Devices::find()
                .filter(Column::EnrollmentCodeHash.eq(h.as_str()))
                .one(&state.db)
                .await?
        }
        None => None,
    };
    let now = Utc::now();
    let refusal = match (&device, &hash) {
        (None, None) => Some("malformed"),
        (None, Some(_)) => Some("unknown_or_used"),
        (Some(d), _) if d.enrollment_expires_at.is_none_or(|t| t <= now) => Some("expired"),
        _ => None,
    };
    if let Some(reason) = refusal {
        let org = device.as_ref().map_or(state.settings.org_id, |d| d.org_id);
        let mut entry = Entry::new(OrgId(org), AuditAction::DeviceEnrollDenied, Actor::System)
            .meta(json!({"reason": reason}))
            .ip(ip);
        if let Some(d) = &device {
            entry = entry.entity("device", d.id);
        }
        let txn = crate::db::begin_write(&state.db).await?;
        audit::append(&txn, entry).await?;
        txn.commit().await?;
        return Err(AppError::Gone(CODE_REFUSED.into()));
    }
    let (Some(device), Some(hash)) = (device, hash) else {
        return Err(AppError::Gone(CODE_REFUSED.into()));
    };
    if !device.is_allowed {
        return Err(AppError::Forbidden("this device is blocked".into()));
    }
    let key = match check_key(&device, &body.public_key) {
        Ok(KeyCheck::Register(key)) => key,
        Ok(KeyCheck::Same) => device.public_key.clone().unwrap_or_default(),
        Err(e) => return key_rejected(&state, &device, ip, e).await,
    };
    let token = Token::generate();
    let txn = crate::db::begin_write(&state.db).await?;
    let mut update = Devices::update_many()
        .col_expr(Column::DeviceTokenHash, Expr::value(token.hash().as_str()))
        .col_expr(Column::TokenRotatedAt, Expr::value(now))
        .col_expr(
            Column::EnrollmentCodeHash,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            Column::EnrollmentExpiresAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(Column::PublicKey, Expr::value(key))
        .col_expr(Column::LastSeenAt, Expr::value(now));
    if let Some(h) = &hostname {
        update = update.col_expr(Column::Hostname, Expr::value(h.clone()));
    }
    if let Some(v) = &os_version {
        update = update.col_expr(Column::OsVersion, Expr::value(v.clone()));
    }
    if let Some(v) = &agent_version {
        update = update.col_expr(Column::AgentVersion, Expr::value(v.clone()));
    }
    // Single use even under concurrency: only one request still finds the code.
    let consumed = update
        .filter(Column::Id.eq(device.id))
        .filter(Column::EnrollmentCodeHash.eq(hash.as_str()))
        .exec(&txn)
        .await?
        .rows_affected;
    if consumed != 1 {
        txn.rollback().await?;
        return Err(AppError::Gone(CODE_REFUSED.into()));
    }
    audit::append(
        &txn,
        Entry::new(
            OrgId(device.org_id),
            AuditAction::DeviceEnrolled,
            Actor::Device(device.id),
        )
        .entity("device", device.id)
        .meta(json!({
            "hostname": hostname.unwrap_or(device.hostname),
            "agent_version": agent_version,
        }))
        .ip(ip),
    )
    .await?;
    super::cache::announce(&txn, device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.id);
    Ok(HttpResponse::Ok().json(DeviceCredentials {
        device_id: device.id,
        device_token: token.expose().to_owned(),
    }))
}

/// `POST /api/v1/agent/auth`: device id + token -> a DEVICE access token. Unknown device and
/// wrong token get the same 401; the first `public_key` is registered, a different one is 409.
pub async fn auth(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<DeviceAuthRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    rate_limit(&state, &req, Endpoint::Auth, Some(body.device_id)).await?;
    let ip = client_ip(&req);
    let presented = TokenHash::of(&body.device_token);
    let found = Devices::find_by_id(body.device_id).one(&state.db).await?;
    let refusal = match &found {
        None => Some("unknown_device"),
        Some(d)
            if !d
                .device_token_hash
                .as_deref()
                .is_some_and(|stored| presented.matches(stored)) =>
        {
            Some("wrong_token")
        }
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        // Audited, but both answers are the same 401: an unknown id is not confirmed.
        let org = found.as_ref().map_or(state.settings.org_id, |d| d.org_id);
        audit::record(
            &state.db,
            Entry::new(OrgId(org), AuditAction::DeviceAuthFailed, Actor::System)
                .entity("device", body.device_id)
                .meta(json!({"reason": reason}))
                .ip(ip),
        )
        .await?;
        tracing::warn!(device_id = %body.device_id, reason, "device authentication failed");
        if let Some(refused) = state
            .device_auth_limits
            .failed(body.device_id, client_addr(&req))
        {
            audit_refusal(&state, &req, Endpoint::Auth, Some(body.device_id), refused).await?;
        }
        return Err(AppError::Unauthorized);
    }
    let device = found.ok_or(AppError::Unauthorized)?;
    if !device.is_allowed {
        return Err(AppError::Forbidden("this device is blocked".into()));
    }
    let key = match body.public_key.as_deref().map(|k| check_key(&device, k)) {
        Some(Err(e)) => return key_rejected(&state, &device, ip, e).await,
        Some(Ok(KeyCheck::Register(key))) => Some(key),
        Some(Ok(KeyCheck::Same)) | None => None,
    };
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let registering = key.is_some();
    if let Some(key) = key {
        // Pairing is complete: the pending enrollment code is of no more use.
        let registered = Devices::update_many()
            .col_expr(Column::PublicKey, Expr::value(key))
            .col_expr(
                Column::EnrollmentCodeHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                Column::EnrollmentExpiresAt,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .filter(Column::Id.eq(device.id))
            .filter(Column::DeviceTokenHash.eq(presented.as_str()))
            .filter(Column::PublicKey.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if registered != 1 {
            txn.rollback().await?;
            return Err(AppError::Conflict(
                "this device registered another public key meanwhile".into(),
            ));
        }
        audit::append(
            &txn,
            Entry::new(
                OrgId(device.org_id),
                AuditAction::DeviceKeyRegistered,
                Actor::Device(device.id),
            )
            .entity("device", device.id)
            .ip(ip),
        )
        .await?;
        super::cache::announce(&txn, device.id).await?;
    }
    // Conditional on the token still being the device's: a rotation that committed since the
    // comparison above wins, and no DEVICE token is minted from the old one.
    let current = Devices::update_many()
        .col_expr(Column::LastSeenAt, Expr::value(now))
        .filter(Column::Id.eq(device.id))
        .filter(Column::DeviceTokenHash.eq(presented.as_str()))
        .filter(Column::IsAllowed.eq(true))
        .exec(&txn)
        .await?
        .rows_affected;
    if current != 1 {
        txn.rollback().await?;
        return Err(AppError::Unauthorized);
    }
    txn.commit().await?;
    if registering {
        state.device_cache.forget(device.id);
    }
    let access_token =
        state
            .tokens
            .issue_device(device.id, OrgId(device.org_id), presented.as_str())?;
    Ok(HttpResponse::Ok().json(DeviceAuthResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in: state.tokens.device_ttl_secs(),
    }))
}

/// `POST /api/v1/agent/heartbeat` (DEVICE): records that the agent is alive and which version
/// it runs; returns the server's clock and the agent policy.
pub async fn heartbeat(
    state: web::Data<AppState>,
    device: AuthDevice,
    body: web::Json<HeartbeatRequest>,
) -> Result<HttpResponse, AppError> {
    let agent_version = clean("agent_version", body.into_inner().agent_version, 64)?;
    let now = Utc::now();
    // No write per heartbeat: kept in memory, flushed with the others every few seconds.
    state
        .contacts
        .heartbeat(device.device.id, now, agent_version);
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        server_time: now,
        policy: super::policy::agent_policy(&state.settings),
    }))
}
