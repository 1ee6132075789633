//! The device side of install jobs (seed S4/S6): list this device's jobs, claim one for a
//! one-time payload token, download the certificate sealed to the device's key, report the
//! result (which opens an installation lease), and report removals.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, Condition, QueryOrder, QuerySelect};
use serde::Deserialize;
use serde_json::json;

use super::lease::{self, Lease, Leases, RemovalMode};
use super::permission;
use super::{Column, ENTITY, Event, InstallJob, InstallJobs, JobStatus, JobType};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::crypto::{
    DevicePublicKey, InstallSecret, PayloadContext, SecretString, Token, TokenHash,
};
use crate::domain::Thumbprint;
use crate::http::AppError;
use crate::http::auth::AuthDevice;
use crate::http::throttle::Throttle;
use crate::protocol::{
    AgentJob, AgentJobs, ClaimResponse, CleanupRequest, CleanupResponse, PayloadResponse,
    ResultRequest, ResultResponse, ResultStatus,
};
use crate::startup::AppState;

/// A payload token is good for this long after the claim (seed S6).
pub const PAYLOAD_TOKEN_TTL_SECS: i64 = 120;
/// Payload requests per device and minute (seed S6).
pub const PAYLOAD_PER_MINUTE: u32 = 5;
/// The header that may carry the payload token instead of `?token=`.
pub const PAYLOAD_TOKEN_HEADER: &str = "X-Payload-Token";
const MAX_LISTED: u64 = 100;
const MAX_REMOVED: usize = 200;

pub fn payload_limiter() -> Throttle<Uuid> {
    Throttle::per_minute(PAYLOAD_PER_MINUTE)
}

/// A job of this device; another device's or office's is "not found", like a missing one.
async fn own_job<C: ConnectionTrait>(
    conn: &C,
    device: &AuthDevice,
    id: Uuid,
) -> Result<InstallJob, AppError> {
    let job = super::find(conn, device.org, id).await?;
    if job.device_id == device.device.id {
        Ok(job)
    } else {
        Err(super::not_found())
    }
}

fn actor(device: &AuthDevice) -> Actor {
    Actor::Device(device.device.id)
}

pub use crate::protocol::MAX_WAIT_SECS;

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    wait: Option<i64>,
}

/// `GET /api/v1/agent/jobs?wait=N` (DEVICE): this device's `PENDING` and `IN_PROGRESS` jobs,
/// oldest first. With `wait` in `1..=30` and nothing to do, it long-polls: it answers as soon
/// as a job for this device becomes `PENDING` (the committer wakes it through the job hub), or
/// with an empty list once the wait is over. No database connection is held while it waits.
///
/// An empty answer comes up to a tenth of `wait` early, at random: agents that started
/// together (after a power cut, a server restart) drift apart instead of renewing their
/// long-polls in one burst forever.
pub async fn list(
    state: web::Data<AppState>,
    device: AuthDevice,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let wait = match query.wait.unwrap_or(0) {
        0 => None,
        secs @ 1..=MAX_WAIT_SECS => Some(std::time::Duration::from_secs(secs as u64)),
        _ => {
            return Err(AppError::Validation(format!(
                "wait: between 0 and {MAX_WAIT_SECS} seconds"
            )));
        }
    };
    // The query's future lives on the heap only while it runs: this future, which every held
    // long-poll keeps for up to 30 s, stays a few hundred bytes instead of carrying room for
    // the database driver's state through the wait.
    let look = || Box::pin(open_jobs(&state, &device));
    let Some(wait) = wait else {
        let jobs = look().await?;
        return Ok(HttpResponse::Ok().json(AgentJobs { jobs }));
    };
    let deadline = tokio::time::Instant::now() + wait - jitter(wait / 10);
    let interest = state.job_hub.interest(device.device.id);
    let jobs = loop {
        // Registered before the look: a job committed after it wakes this wait.
        let notified = interest.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let jobs = look().await?;
        if !jobs.is_empty() || tokio::time::timeout_at(deadline, notified).await.is_err() {
            // A job, or the wait is over with none: no notification was missed since the
            // look, and the agent asks again at once.
            break jobs;
        }
    };
    Ok(HttpResponse::Ok().json(AgentJobs { jobs }))
}

/// A random duration up to `max`.
fn jitter(max: std::time::Duration) -> std::time::Duration {
    let r = aes_gcm::aead::rand_core::RngCore::next_u32(&mut aes_gcm::aead::OsRng);
    max.mul_f64(f64::from(r) / f64::from(u32::MAX))
}

/// This device's `PENDING` and `IN_PROGRESS` jobs, oldest first, with their certificates'
/// names and thumbprints (a `REMOVE` job's is the installed one's).
async fn open_jobs(state: &AppState, device: &AuthDevice) -> Result<Vec<AgentJob>, AppError> {
    let jobs = InstallJobs::find()
        .filter(Column::OrgId.eq(device.org.0))
        .filter(Column::DeviceId.eq(device.device.id))
        .filter(Column::Status.is_in([JobStatus::Pending.as_str(), JobStatus::InProgress.as_str()]))
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .limit(MAX_LISTED)
        .all(&state.db)
        .await?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let certs: HashMap<Uuid, (String, Option<String>)> = Certificates::find()
        .select_only()
        .column(CertColumn::Id)
        .column(CertColumn::Name)
        .column(CertColumn::Sha1)
        .filter(CertColumn::Id.is_in(jobs.iter().map(|j| j.cert_id)))
        .into_tuple::<(Uuid, String, Option<String>)>()
        .all(&state.db)
        .await?
        .into_iter()
        .map(|(id, name, sha1)| (id, (name, sha1)))
        .collect();
    let removals: Vec<Uuid> = jobs
        .iter()
        .filter(|j| j.job_type == JobType::Remove.as_str())
        .filter_map(|j| j.lease_id)
        .collect();
    let installed: HashMap<Uuid, String> = if removals.is_empty() {
        HashMap::new()
    } else {
        Leases::find()
            .select_only()
            .column(lease::Column::Id)
            .column(lease::Column::Thumbprint)
            .filter(lease::Column::Id.is_in(removals))
            .into_tuple::<(Uuid, String)>()
            .all(&state.db)
            .await?
            .into_iter()
            .collect()
    };
    jobs.into_iter()
        .map(|j| {
            let (job_type, status) = (j.job_type()?.into(), j.status()?.into());
            let (cert_name, sha1) = certs.get(&j.cert_id).cloned().unzip();
            let removes = j.job_type == JobType::Remove.as_str();
            let installation_id = j.lease_id.filter(|_| removes);
            let thumbprint = match installation_id {
                Some(lease) => installed.get(&lease).cloned(),
                None => sha1.flatten(),
            };
            Ok(AgentJob {
                cert_name,
                thumbprint,
                installation_id,
                id: j.id,
                job_type,
                status,
                cert_id: j.cert_id,
                duration_minutes: j.duration_minutes,
                created_at: j.created_at,
                claimed_at: j.claimed_at,
            })
        })
        .collect()
}

/// A job the device already holds `IN_PROGRESS` gets a new payload token once its last claim is
/// this old, or sooner when that claim's token was used or has expired.
pub const RECLAIM_AFTER_SECS: i64 = 10;

/// `POST /api/v1/agent/jobs/{id}/claim` (DEVICE): `PENDING` -> `IN_PROGRESS`, with a fresh
/// one-time payload token for an `INSTALL` job (a `REMOVE` job has no payload).
///
/// Claiming again an `INSTALL` job this device holds `IN_PROGRESS` issues a new token and voids
/// the old one (the agent lost the answer, or the download failed), except within
/// [`RECLAIM_AFTER_SECS`] of the last claim while its token is still unused and valid: then it
/// is 409, which is what lets exactly one of many concurrent claims through.
pub async fn claim(
    state: web::Data<AppState>,
    device: AuthDevice,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let job = own_job(&txn, &device, id).await?;
    let job_type = job.job_type()?;
    if job_type == JobType::Remove {
        if job.status()? == JobStatus::InProgress {
            return Err(AppError::Conflict(
                "this REMOVE job is already claimed: remove the certificate and report the result"
                    .into(),
            ));
        }
        let job = super::apply(
            &txn,
            &job,
            Event::Claim,
            actor(&device),
            device.ip.clone(),
            Vec::new(),
            json!({"installation_id": job.lease_id}),
        )
        .await?;
        txn.commit().await?;
        state.job_hub.changed();
        return Ok(HttpResponse::Ok().json(ClaimResponse {
            job_id: job.id,
            status: job.status()?.into(),
            job_type: job_type.into(),
            payload_token: None,
            payload_token_expires_at: None,
            expires_in: None,
        }));
    }
    if let Some(why) = permission::recheck(&txn, &job, &device.device).await? {
        let refused =
            permission::end_revoked(&txn, &job, why, actor(&device), device.ip.clone()).await?;
        txn.commit().await?;
        state.job_hub.changed();
        return Err(refused);
    }
    let token = Token::generate();
    let expires = now + Duration::seconds(PAYLOAD_TOKEN_TTL_SECS);
    let mut changes: super::Changes = vec![
        (
            Column::PayloadTokenHash,
            Some(token.hash().as_str().to_owned()).into(),
        ),
        (Column::PayloadTokenExpiresAt, Some(expires).into()),
        (
            Column::PayloadTokenUsedAt,
            Option::<DateTime<Utc>>::None.into(),
        ),
    ];
    let event = if job.status()? == JobStatus::InProgress {
        // Voids the old token in the same conditional write that checks it may be replaced.
        let mut update = InstallJobs::update_many();
        for (column, value) in changes.drain(..) {
            update = update.col_expr(column, Expr::value(value));
        }
        let replaced = update
            .filter(Column::Id.eq(job.id))
            .filter(Column::Status.eq(JobStatus::InProgress.as_str()))
            .filter(
                Condition::any()
                    .add(Column::PayloadTokenHash.is_null())
                    .add(Column::PayloadTokenUsedAt.is_not_null())
                    .add(Column::PayloadTokenExpiresAt.lte(now))
                    .add(Column::ClaimedAt.lte(now - Duration::seconds(RECLAIM_AFTER_SECS))),
            )
            .exec(&txn)
            .await?
            .rows_affected;
        if replaced != 1 {
            return Err(AppError::Conflict(format!(
                "this job was claimed less than {RECLAIM_AFTER_SECS} s ago and its payload token is unused; use it, or claim again after {RECLAIM_AFTER_SECS} s"
            )));
        }
        Event::Reclaim
    } else {
        // `apply` refuses anything but `PENDING`, and a concurrent claim with a 409.
        Event::Claim
    };
    let job = super::apply(
        &txn,
        &job,
        event,
        actor(&device),
        device.ip.clone(),
        changes,
        json!({"payload_token_expires_at": expires}),
    )
    .await?;
    txn.commit().await?;
    state.job_hub.changed();
    Ok(HttpResponse::Ok().json(ClaimResponse {
        job_id: job.id,
        status: job.status()?.into(),
        job_type: job_type.into(),
        payload_token: Some(token.expose().to_owned()),
        payload_token_expires_at: Some(expires),
        expires_in: Some(PAYLOAD_TOKEN_TTL_SECS),
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PayloadQuery {
    token: Option<String>,
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
async fn deny(
    state: &AppState,
    device: &AuthDevice,
    job_id: Uuid,
    (reason, err): Denial,
) -> Result<HttpResponse, AppError> {
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

/// `GET /api/v1/agent/jobs/{id}/payload?token=...` (or header `X-Payload-Token`) (DEVICE): the
/// PFX and its password sealed to the device's key, once per token.
pub async fn payload(
    state: web::Data<AppState>,
    device: AuthDevice,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<PayloadQuery>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    rate_limit(&state, &device, id).await?;
    let presented = query.into_inner().token.or_else(|| {
        req.headers()
            .get(PAYLOAD_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let presented = presented
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let now = Utc::now();
    let job = match own_job(&state.db, &device, id).await {
        Ok(job) => job,
        Err(e @ AppError::NotFound(_)) => return deny(&state, &device, id, ("not_found", e)).await,
        Err(e) => return Err(e),
    };
    let hash = match check_token(&job, presented, now) {
        Ok(hash) => hash,
        Err(denial) => return deny(&state, &device, id, denial).await,
    };
    if let Some(why) = permission::recheck(&state.db, &job, &device.device).await? {
        let txn = crate::db::begin_write(&state.db).await?;
        let refused =
            permission::end_revoked(&txn, &job, why, actor(&device), device.ip.clone()).await?;
        txn.commit().await?;
        state.job_hub.changed();
        return Err(refused);
    }
    let Some(key) = device.device.public_key.as_deref() else {
        let err = AppError::Conflict(
            "this device has no registered public key: send public_key to /api/v1/agent/auth"
                .into(),
        );
        return deny(&state, &device, id, ("no_public_key", err)).await;
    };
    let key = DevicePublicKey::parse(key)
        .map_err(|e| AppError::Internal(format!("device {}: {e}", device.device.id)))?;
    let (secret, thumbprint) = install_secret(&state, &job).await?;
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
        return deny(&state, &device, id, ("token_used", err)).await;
    }
    audit::append(
        &txn,
        Entry::new(device.org, AuditAction::PayloadIssued, actor(&device))
            .entity(ENTITY, job.id)
            .meta(json!({"cert_id": job.cert_id, "thumbprint": thumbprint}))
            .ip(device.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    state.job_hub.changed();
    Ok(HttpResponse::Ok().json(PayloadResponse {
        job_id: job.id,
        thumbprint,
        sealed,
    }))
}

/// Trimmed; empty is none; at most `max` characters.
fn clean(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, AppError> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if value.as_ref().is_some_and(|v| v.chars().count() > max) {
        return Err(AppError::Validation(format!(
            "{field}: at most {max} characters"
        )));
    }
    Ok(value)
}

/// Audits a second result (`RESULT_DUPLICATE`) and answers 409.
async fn duplicate(
    state: &AppState,
    device: &AuthDevice,
    job: &InstallJob,
    reported: ResultStatus,
) -> Result<HttpResponse, AppError> {
    audit::record(
        &state.db,
        Entry::new(device.org, AuditAction::ResultDuplicate, actor(device))
            .entity(ENTITY, job.id)
            .meta(json!({"status": job.status, "reported": reported}))
            .ip(device.ip.clone()),
    )
    .await?;
    Err(AppError::ResultDuplicate(format!(
        "this job's result was already reported: {}",
        job.status
    )))
}

fn is_reported(job: &InstallJob) -> Result<bool, AppError> {
    Ok(matches!(job.status()?, JobStatus::Done | JobStatus::Failed))
}

/// `POST /api/v1/agent/jobs/{id}/result {status, thumbprint?, error_code?, error_message?,
/// key_storage?, key_deleted?}` (DEVICE): `IN_PROGRESS` -> `DONE` or `FAILED`. A `DONE` install
/// opens the installation lease; a `DONE` removal closes the lease it ends. A `DONE` with
/// another thumbprint than the certificate's is recorded as `FAILED` (`THUMBPRINT_MISMATCH`);
/// a second result is 409 `result_duplicate`.
pub async fn result(
    state: web::Data<AppState>,
    device: AuthDevice,
    path: web::Path<Uuid>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let thumbprint = clean("thumbprint", body.thumbprint, 128)?
        .map(|t| Thumbprint::parse(&t))
        .transpose()
        .map_err(|e| AppError::Validation(format!("thumbprint: {e}")))?;
    let error_code = clean("error_code", body.error_code, 64)?;
    let error_message = clean("error_message", body.error_message, 2000)?;
    let key_storage = clean("key_storage", body.key_storage, 16)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let job = own_job(&txn, &device, id).await?;
    if is_reported(&job)? {
        txn.rollback().await?;
        return duplicate(&state, &device, &job, body.status).await;
    }
    let job_type = job.job_type()?;
    // A REMOVE job ends this installation; its thumbprint is the one to remove.
    let removes: Option<Lease> = match (job_type, job.lease_id) {
        (JobType::Install, _) => None,
        (JobType::Remove, Some(lease_id)) => Some(
            Leases::find_by_id(lease_id)
                .one(&txn)
                .await?
                .ok_or_else(|| AppError::Internal(format!("job {id}: installation missing")))?,
        ),
        (JobType::Remove, None) => {
            return Err(AppError::Internal(format!(
                "REMOVE job {id} names no installation"
            )));
        }
    };
    let expected = match &removes {
        Some(l) => Some(l.thumbprint.clone()),
        None => Certificates::find_by_id(job.cert_id)
            .select_only()
            .column(CertColumn::Sha1)
            .into_tuple::<Option<String>>()
            .one(&txn)
            .await?
            .flatten(),
    }
    .and_then(|s| Thumbprint::parse(&s).ok());
    // Microseconds, as both databases store them: the lease answered is the lease stored.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let (event, error_code, error_message) = match (body.status, &thumbprint) {
        (ResultStatus::Failed, _) => (Event::Failed, error_code, error_message),
        (ResultStatus::Done, None) if job_type == JobType::Install => {
            return Err(AppError::Validation(
                "thumbprint: required with DONE".into(),
            ));
        }
        (ResultStatus::Done, None) => (Event::Done, None, None),
        (ResultStatus::Done, Some(got)) if Some(got) == expected.as_ref() => {
            (Event::Done, None, None)
        }
        (ResultStatus::Done, Some(got)) => {
            let want = expected.as_ref().map_or("unknown", Thumbprint::as_str);
            (
                Event::Failed,
                Some("THUMBPRINT_MISMATCH".to_owned()),
                Some(format!(
                    "the agent reported {got}; the certificate's thumbprint is {want}"
                )),
            )
        }
    };
    let opens_lease = event == Event::Done && job_type == JobType::Install;
    let lease = opens_lease.then(|| {
        let agent = &state.settings.agent;
        let expires = lease::expires_at(
            now,
            agent.cleanup_time,
            state.settings.timezone,
            agent.max_lease_hours,
            job.duration_minutes,
        );
        (Uuid::new_v4(), expires)
    });
    let mut changes = vec![
        (
            Column::Thumbprint,
            thumbprint.as_ref().map(|t| t.as_str().to_owned()).into(),
        ),
        (Column::ErrorCode, error_code.clone().into()),
        (Column::ErrorMessage, error_message.clone().into()),
        (Column::KeyStorage, key_storage.clone().into()),
    ];
    if let Some((lease_id, _)) = lease {
        changes.push((Column::LeaseId, Some(lease_id).into()));
    }
    let meta = json!({
        "thumbprint": thumbprint,
        "key_storage": key_storage,
        "key_deleted": body.key_deleted,
        "error_code": error_code,
        "error_message": error_message,
        "lease_id": lease.map(|(id, _)| id).or(job.lease_id),
        "lease_expires_at": lease.map(|(_, at)| at),
    });
    let applied = super::apply(
        &txn,
        &job,
        event,
        actor(&device),
        device.ip.clone(),
        changes,
        meta,
    )
    .await;
    let job = match applied {
        Ok(job) => job,
        Err(AppError::Conflict(message)) => {
            // Another result won the race: that one is the duplicate's original.
            txn.rollback().await?;
            let job = own_job(&state.db, &device, id).await?;
            if is_reported(&job)? {
                return duplicate(&state, &device, &job, body.status).await;
            }
            return Err(AppError::Conflict(message));
        }
        Err(e) => return Err(e),
    };
    if let (Some((lease_id, expires_at)), Some(thumbprint)) = (lease, &thumbprint) {
        lease::entity::ActiveModel {
            id: Set(lease_id),
            org_id: Set(job.org_id),
            device_id: Set(job.device_id),
            cert_id: Set(job.cert_id),
            user_id: Set(job.requested_by_user_id),
            job_id: Set(job.id),
            thumbprint: Set(thumbprint.as_str().to_owned()),
            installed_at: Set(now),
            expires_at: Set(expires_at),
            removed_at: Set(None),
            removal_mode: Set(None),
            key_deleted: Set(None),
            created_at: Set(now),
            overdue_at: Set(None),
        }
        .insert(&txn)
        .await?;
    }
    if let Some(installation) = removes.filter(|_| event == Event::Done) {
        lease::close(
            &txn,
            &installation,
            RemovalMode::RemoveJob,
            body.key_deleted,
            actor(&device),
            device.ip.clone(),
        )
        .await?;
    }
    txn.commit().await?;
    state.job_hub.changed();
    Ok(HttpResponse::Ok().json(ResultResponse {
        job_id: job.id,
        status: job.status()?.into(),
        error_code: job.error_code,
        lease_expires_at: lease.map(|(_, at)| at),
    }))
}

/// `POST /api/v1/agent/cleanup {mode, removed: [{thumbprint, key_deleted}]}` (DEVICE): closes
/// this device's open leases of those certificates, audits `CERT_REMOVED_18H` for each and
/// cancels the `REMOVE` jobs that were still waiting for them.
pub async fn cleanup(
    state: web::Data<AppState>,
    device: AuthDevice,
    body: web::Json<CleanupRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    if body.removed.len() > MAX_REMOVED {
        return Err(AppError::Validation(format!(
            "removed: at most {MAX_REMOVED} certificates"
        )));
    }
    let mut removed: HashMap<String, bool> = HashMap::new();
    for (i, r) in body.removed.iter().enumerate() {
        let t = Thumbprint::parse(&r.thumbprint)
            .map_err(|e| AppError::Validation(format!("removed[{i}].thumbprint: {e}")))?;
        removed.insert(t.as_str().to_owned(), r.key_deleted);
    }
    let mode = RemovalMode::Cleanup(body.mode);
    let txn = crate::db::begin_write(&state.db).await?;
    let open = Leases::find()
        .filter(lease::Column::OrgId.eq(device.org.0))
        .filter(lease::Column::DeviceId.eq(device.device.id))
        .filter(lease::Column::RemovedAt.is_null())
        .filter(lease::Column::Thumbprint.is_in(removed.keys().cloned()))
        .all(&txn)
        .await?;
    let mut closed = 0;
    for l in open {
        let key_deleted = removed.get(&l.thumbprint).copied();
        if lease::close(
            &txn,
            &l,
            mode,
            key_deleted,
            actor(&device),
            device.ip.clone(),
        )
        .await?
        {
            closed += 1;
        }
    }
    txn.commit().await?;
    state.job_hub.changed();
    if closed > 0 {
        tracing::info!(device_id = %device.device.id, mode = mode.as_str(), closed, "installations removed");
    }
    Ok(HttpResponse::Ok().json(CleanupResponse { closed }))
}

#[cfg(test)]
mod future_sizes {
    use super::*;

    fn size_of_future<A, Fut>(_: impl FnOnce(A) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every held long-poll keeps this future for up to 30 s: it must not carry the database
    /// query's state through the wait (2.5 KiB in a debug build before it was boxed).
    #[test]
    fn a_held_long_poll_is_small() {
        let list = size_of_future(
            |(s, d, q): (web::Data<AppState>, AuthDevice, web::Query<ListQuery>)| list(s, d, q),
        );
        assert!(list <= 1024, "the long-poll's future is {list} bytes");
    }
}
