//! `/api/v1/agent/*` for pairing and staying in touch: enrollment with a one-time code, device
//! authentication (device id + token -> DEVICE access token) and the heartbeat.

use std::net::IpAddr;
use std::num::NonZeroU32;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use serde_json::json;

use super::{Column, Device, Devices, EnrollmentCode, KeyCheck, check_key};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::{Token, TokenHash};
use crate::domain::OrgId;
use crate::http::AppError;
use crate::http::auth::{AuthDevice, client_ip};
use crate::protocol::{
    DeviceAuthRequest, DeviceAuthResponse, DeviceCredentials, EnrollRequest, HeartbeatRequest,
    HeartbeatResponse,
};
use crate::startup::AppState;

/// Calls per minute to `/agent/auth` (per device id and per client IP) and to `/agent/enroll`
/// (per client IP; no device is known yet).
pub struct AuthLimits {
    per_device: DefaultKeyedRateLimiter<Uuid>,
    auth_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    enroll_per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl AuthLimits {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            per_device: RateLimiter::keyed(quota),
            auth_per_ip: RateLimiter::keyed(quota),
            enroll_per_ip: RateLimiter::keyed(quota),
        }
    }

    /// `Err((which limit, seconds to wait))` when over a limit.
    fn check(
        &self,
        endpoint: &str,
        device: Option<Uuid>,
        ip: Option<IpAddr>,
    ) -> Result<(), (&'static str, u64)> {
        let wait = |n: governor::NotUntil<_>| crate::http::retry_after_secs(&n);
        let per_ip = if endpoint == "enroll" {
            &self.enroll_per_ip
        } else {
            &self.auth_per_ip
        };
        if let Some(ip) = ip {
            per_ip.check_key(&ip).map_err(|n| ("ip", wait(n)))?;
        }
        if let Some(id) = device {
            self.per_device
                .check_key(&id)
                .map_err(|n| ("device", wait(n)))?;
        }
        Ok(())
    }
}

/// Applies the limits; past them, audits `DEVICE_AUTH_RATE_LIMITED` and answers 429.
async fn rate_limit(
    state: &AppState,
    req: &HttpRequest,
    endpoint: &str,
    device: Option<Uuid>,
) -> Result<(), AppError> {
    let Err((scope, retry_after_secs)) =
        state
            .device_auth_limits
            .check(endpoint, device, req.peer_addr().map(|a| a.ip()))
    else {
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
    .meta(json!({"endpoint": endpoint, "limit": scope}))
    .ip(client_ip(req));
    if let Some(id) = device {
        entry = entry.entity("device", id);
    }
    let txn = crate::db::begin_write(&state.db).await?;
    audit::append(&txn, entry).await?;
    txn.commit().await?;
    tracing::warn!(endpoint, limit = scope, device_id = ?device, "device authentication rate limited");
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
    rate_limit(&state, &req, "enroll", None).await?;
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
    txn.commit().await?;
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
    rate_limit(&state, &req, "auth", Some(body.device_id)).await?;
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
    }
    Devices::update_many()
        .col_expr(Column::LastSeenAt, Expr::value(now))
        .filter(Column::Id.eq(device.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    let access_token = state.tokens.issue_device(device.id, OrgId(device.org_id))?;
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
    let mut update = Devices::update_many()
        .col_expr(Column::LastHeartbeatAt, Expr::value(now))
        .col_expr(Column::LastSeenAt, Expr::value(now));
    if let Some(v) = agent_version {
        update = update.col_expr(Column::AgentVersion, Expr::value(v));
    }
    update
        .filter(Column::Id.eq(device.device.id))
        .exec(&state.db)
        .await?;
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        server_time: now,
        policy: super::policy::agent_policy(&state.settings),
    }))
}
