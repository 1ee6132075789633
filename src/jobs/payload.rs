//! The payload: a claimed `INSTALL` job's PFX and password, unsealed from the vault and sealed
//! to the device's key, once per payload token. Every refusal is audited (`PAYLOAD_DENIED`);
//! downloads are rate-limited per device (seed S6: 5 a minute).

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use serde_json::json;

use super::claim::actor;
use super::entity::{Column, ENTITY, InstallJob, InstallJobs, find_for_device};
use super::permission;
use super::status::{JobStatus, JobType};
use crate::audit::{self, AuditAction, Entry};
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::crypto::{DevicePublicKey, InstallSecret, PayloadContext, SecretString, TokenHash};
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::PayloadResponse;
use crate::state::AppState;
use crate::throttle::Throttle;

/// Payload requests per device and minute (seed S6).
pub const PAYLOAD_PER_MINUTE: u32 = 5;
/// The header that may carry the payload token instead of `?token=`.
pub const PAYLOAD_TOKEN_HEADER: &str = "X-Payload-Token";

pub fn payload_limiter() -> Throttle<Uuid> {
    Throttle::per_minute(PAYLOAD_PER_MINUTE)
}

/// Why a payload request was refused: the audit's reason and the answer.
type Denial = (&'static str, AppError);

/// Checks the presented token against the job's; the stored hash is compared in constant time.
fn check_token(
    job: &InstallJob,
    presented: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TokenHash, Denial> {
    if job.job_type == JobType::Remove.as_str() {
        return Err((
            "remove_job",
            AppError::Conflict("a REMOVE job has no payload".into()),
        ));
    }
    let status = job.status().map_err(|e| ("bad_status", e))?;
    if status != JobStatus::InProgress {
        return Err((
            "not_in_progress",
            AppError::Conflict(format!("the job is {status}: claim it first")),
        ));
    }
    let Some(presented) = presented else {
        return Err((
            "token_missing",
            AppError::Forbidden(format!(
                "payload token required: ?token= or the {PAYLOAD_TOKEN_HEADER} header"
            )),
        ));
    };
    let hash = TokenHash::of(presented);
    if !job
        .payload_token_hash
        .as_deref()
        .is_some_and(|stored| hash.matches(stored))
    {
        return Err((
            "token_mismatch",
            AppError::Forbidden("wrong payload token".into()),
        ));
    }
    if job.payload_token_used_at.is_some() {
        return Err((
            "token_used",
            AppError::Conflict("payload token already used; claim again for a new one".into()),
        ));
    }
    if job.payload_token_expires_at.is_none_or(|at| at <= now) {
        return Err((
            "token_expired",
            AppError::Gone("payload token expired; claim again for a new one".into()),
        ));
    }
    Ok(hash)
}

/// Audits a refused payload request (`PAYLOAD_DENIED` with the reason) and answers `err`.
async fn deny<T>(
    state: &AppState,
    device: &AuthDevice,
    job_id: Uuid,
    (reason, err): Denial,
) -> Result<T, AppError> {
    audit::record(
        &state.db,
        Entry::new(device.org, AuditAction::PayloadDenied, actor(device))
            .entity(ENTITY, job_id)
            .meta(json!({"reason": reason}))
            .ip(device.ip.clone()),
    )
    .await?;
    tracing::warn!(%job_id, device_id = %device.device.id, reason, "payload denied");
    Err(err)
}

/// Per device; past the limit, answers 429, auditing `PAYLOAD_RATE_LIMITED` once per run of
/// refusals (with the count of the previous run's rest): a flood is answered from memory.
async fn rate_limit(state: &AppState, device: &AuthDevice, job_id: Uuid) -> Result<(), AppError> {
    let Err(refused) = state.payload_limiter.check(&device.device.id) else {
        return Ok(());
    };
    if let Some(followed) = refused.audit {
        audit::record(
            &state.db,
            Entry::new(device.org, AuditAction::PayloadRateLimited, actor(device))
                .entity(ENTITY, job_id)
                .meta(json!({
                    "limit_per_minute": PAYLOAD_PER_MINUTE,
                    "refused_since_last_row": followed,
                }))
                .ip(device.ip.clone()),
        )
        .await?;
        tracing::warn!(%job_id, device_id = %device.device.id, "payload rate limited");
    }
    Err(AppError::TooManyRequests {
        retry_after_secs: refused.retry_after_secs,
    })
}

/// The certificate's PFX and password, unsealed from the vault.
async fn install_secret(
    state: &AppState,
    job: &InstallJob,
) -> Result<(InstallSecret, Option<String>), AppError> {
    let cert = Certificates::find_by_id(job.cert_id)
        .filter(CertColumn::OrgId.eq(job.org_id))
        .one(&state.db)
        .await?
        .ok_or_else(crate::certificates::catalogue::not_found)?;
    let (Some(pfx), Some(password)) = (&cert.pfx_sealed, &cert.password_sealed) else {
        return Err(AppError::Conflict(
            "the certificate's file or password is not stored; report the job as FAILED".into(),
        ));
    };
    let id = cert.id;
    let unseal = |sealed: &[u8], what: &str| {
        state
            .master_key
            .open(sealed, &format!("certificates.{what}:{id}"))
            .map_err(|e| AppError::Internal(format!("certificate {id}: sealed {what}: {e}")))
    };
    let pfx = unseal(pfx, "pfx")?;
    let password = unseal(password, "password")?;
    let password = String::from_utf8(password.to_vec())
        .map_err(|_| AppError::Internal(format!("certificate {id}: password is not UTF-8")))?;
    Ok((
        InstallSecret::new(pfx.to_vec(), SecretString::new(password)),
        cert.sha1,
    ))
}

/// The PFX and its password of job `id`, sealed to the device's key, once per payload token
/// (`presented`: the `?token=` or the `X-Payload-Token` header).
pub async fn payload(
    state: &AppState,
    device: &AuthDevice,
    id: Uuid,
    presented: Option<String>,
) -> Result<PayloadResponse, AppError> {
    device.require_allowed()?;
    rate_limit(state, device, id).await?;
    let presented = presented
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let now = Utc::now();
    let job = match find_for_device(&state.db, device, id).await {
        Ok(job) => job,
        Err(e @ AppError::NotFound(_)) => return deny(state, device, id, ("not_found", e)).await,
        Err(e) => return Err(e),
    };
    let hash = match check_token(&job, presented, now) {
        Ok(hash) => hash,
        Err(denial) => return deny(state, device, id, denial).await,
    };
    if let Some(why) = permission::recheck(&state.db, &job, &device.device).await? {
        let txn = crate::db::begin_write(&state.db).await?;
        let refused =
            permission::end_revoked(&txn, &job, why, actor(device), device.ip.clone()).await?;
        txn.commit().await?;
        state.job_hub.changed();
        return Err(refused);
    }
    let Some(key) = device.device.public_key.as_deref() else {
        let err = AppError::Conflict(
            "this device has no registered public key: send public_key to /api/v1/agent/auth"
                .into(),
        );
        return deny(state, device, id, ("no_public_key", err)).await;
    };
    let key = DevicePublicKey::parse(key)
        .map_err(|e| AppError::Internal(format!("device {}: {e}", device.device.id)))?;
    let (secret, thumbprint) = install_secret(state, &job).await?;
    let sealed = crate::crypto::seal(
        &key,
        &PayloadContext::new(job.id, device.device.id),
        &secret,
    );
    drop(secret);
    let txn = crate::db::begin_write(&state.db).await?;
    // Single use even under concurrency: only one request still finds the token unused.
    let used = InstallJobs::update_many()
        .col_expr(Column::PayloadTokenUsedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(job.id))
        .filter(Column::Status.eq(JobStatus::InProgress.as_str()))
        .filter(Column::PayloadTokenHash.eq(hash.as_str()))
        .filter(Column::PayloadTokenUsedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if used != 1 {
        txn.rollback().await?;
        let err = AppError::Conflict("payload token already used; claim again".into());
        return deny(state, device, id, ("token_used", err)).await;
    }
    audit::append(
        &txn,
        Entry::new(device.org, AuditAction::PayloadIssued, actor(device))
            .entity(ENTITY, job.id)
            .meta(json!({"cert_id": job.cert_id, "thumbprint": thumbprint}))
            .ip(device.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    state.job_hub.changed();
    Ok(PayloadResponse {
        job_id: job.id,
        thumbprint,
        sealed,
    })
}
