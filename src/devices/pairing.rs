//! Pairing and staying paired: enrollment with a one-time code (the device's id, a fresh token,
//! its public key registered), device authentication (device id + token -> a DEVICE access
//! token), and the key check. Unknown, used and expired codes look alike; so do an unknown
//! device and a wrong token. Every refusal is audited, the first of a rate-limited run too.

use std::net::IpAddr;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use serde_json::json;

use super::enrollment::EnrollmentCode;
use super::entity::{Column, Device, Devices};
use super::limits::{Endpoint, Scope};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::{DevicePublicKey, Token, TokenHash};
use crate::domain::{Label, OrgId, Version};
use crate::error::AppError;
use crate::protocol::{DeviceAuthRequest, DeviceAuthResponse, DeviceCredentials, EnrollRequest};
use crate::state::AppState;
use crate::throttle::Refusal;

/// What a device presents as its key, checked against the one it registered.
pub enum KeyCheck {
    /// No key registered yet: this one will be.
    Register(String),
    /// The registered key.
    Same,
}

/// Parses `presented` (standard base64 of the raw 32 X25519 bytes) and compares it with the
/// device's key: a different key is refused until an admin rotates the device.
pub fn check_key(device: &Device, presented: &str) -> Result<KeyCheck, AppError> {
    let key = DevicePublicKey::parse(presented)
        .map_err(|e| AppError::Validation(format!("public_key: {e}")))?
        .to_base64();
    match &device.public_key {
        None => Ok(KeyCheck::Register(key)),
        Some(registered) if *registered == key => Ok(KeyCheck::Same),
        Some(_) => Err(AppError::Conflict(
            "this device already registered a different public key; an admin must rotate the device first".into(),
        )),
    }
}

/// Audits the first refusal of a run (`DEVICE_AUTH_RATE_LIMITED`, with how many refusals
/// followed the previous audited one); the rest are answered from memory.
async fn audit_refusal(
    state: &AppState,
    addr: Option<IpAddr>,
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
    .ip(addr.map(|a| a.to_string()));
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
    addr: Option<IpAddr>,
    endpoint: Endpoint,
    device: Option<Uuid>,
) -> Result<(), AppError> {
    let Err(refused) = state.device_auth_limits.check(endpoint, device, addr) else {
        return Ok(());
    };
    let retry_after_secs = refused.1.retry_after_secs;
    audit_refusal(state, addr, endpoint, device, refused).await?;
    Err(AppError::TooManyRequests { retry_after_secs })
}

/// Audits a refused key (not secret: it is a public key) and answers 409.
async fn key_rejected<T>(
    state: &AppState,
    device: &Device,
    ip: Option<String>,
    err: AppError,
) -> Result<T, AppError> {
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

const CODE_REFUSED: &str = "enrollment code is unknown, already used or expired";

/// Exchanges a one-time enrollment code for the device's id and a fresh token, registering its
/// public key. Unknown, used and expired codes get the same 410.
pub async fn enroll(
    state: &AppState,
    addr: Option<IpAddr>,
    body: EnrollRequest,
) -> Result<DeviceCredentials, AppError> {
    rate_limit(state, addr, Endpoint::Enroll, None).await?;
    let ip = addr.map(|a| a.to_string());
    let hostname = Label::optional("hostname", body.hostname)?.map(String::from);
    let os_version = Label::optional("os_version", body.os_version)?.map(String::from);
    let agent_version = Version::optional("agent_version", body.agent_version)?.map(String::from);
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
        Err(e) => return key_rejected(state, &device, ip, e).await,
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
    // The admin's name for the computer stays; the PC's own name is kept beside it.
    if let Some(h) = &hostname {
        update = update.col_expr(Column::ReportedHostname, Expr::value(h.clone()));
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
            "hostname": device.hostname,
            "reported_hostname": hostname,
            "agent_version": agent_version,
        }))
        .ip(ip),
    )
    .await?;
    super::cache::announce(&txn, device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.id);
    Ok(DeviceCredentials {
        device_id: device.id,
        device_token: token.expose().to_owned(),
    })
}

/// Device id + token -> a DEVICE access token. Unknown device and wrong token get the same
/// 401; the first `public_key` is registered, a different one is 409.
pub async fn authenticate(
    state: &AppState,
    addr: Option<IpAddr>,
    body: DeviceAuthRequest,
) -> Result<DeviceAuthResponse, AppError> {
    rate_limit(state, addr, Endpoint::Auth, Some(body.device_id)).await?;
    let ip = addr.map(|a| a.to_string());
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
        if let Some(refused) = state.device_auth_limits.failed(body.device_id, addr) {
            audit_refusal(state, addr, Endpoint::Auth, Some(body.device_id), refused).await?;
        }
        return Err(AppError::Unauthorized);
    }
    let device = found.ok_or(AppError::Unauthorized)?;
    // A blocked device still gets a token, good for its removals only; it registers no key.
    let key = match body.public_key.as_deref().map(|k| check_key(&device, k)) {
        Some(Err(e)) => return key_rejected(state, &device, ip, e).await,
        Some(Ok(KeyCheck::Register(_))) if !device.is_allowed => {
            return Err(AppError::Forbidden("this device is blocked".into()));
        }
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
    Ok(DeviceAuthResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in: state.tokens.device_ttl_secs(),
    })
}
