//! The agent's result for a job it claimed: `IN_PROGRESS` -> `DONE` or `FAILED`. A `DONE` install
//! opens the installation lease; a `DONE` removal closes the lease it ends. A `DONE` with
//! another thumbprint than the certificate's is recorded as `FAILED` (`THUMBPRINT_MISMATCH`);
//! a second result is 409 `result_duplicate`, audited.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, QuerySelect};
use serde_json::json;

use super::claim::actor;
use super::entity::{Column, ENTITY, InstallJob, find_for_device};
use super::lease::{self, Lease, Leases, RemovalMode};
use super::removal::RemovalCause;
use super::status::{Event, JobStatus, JobType};
use super::transition::apply;
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::domain::{Text, Thumbprint};
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::{ResultRequest, ResultResponse, ResultStatus};
use crate::state::AppState;

/// What the agent reported, validated.
struct Report {
    status: ResultStatus,
    thumbprint: Option<Thumbprint>,
    error_code: Option<String>,
    error_message: Option<String>,
    key_storage: Option<String>,
    key_deleted: Option<bool>,
}

impl Report {
    fn parse(body: ResultRequest) -> Result<Self, AppError> {
        let thumbprint = Text::<128>::optional("thumbprint", body.thumbprint)?
            .map(|t| Thumbprint::parse(t.as_str()))
            .transpose()
            .map_err(|e| AppError::Validation(format!("thumbprint: {e}")))?;
        Ok(Self {
            status: body.status,
            thumbprint,
            error_code: Text::<64>::optional("error_code", body.error_code)?.map(String::from),
            error_message: Text::<2000>::optional("error_message", body.error_message)?
                .map(String::from),
            key_storage: Text::<16>::optional("key_storage", body.key_storage)?.map(String::from),
            key_deleted: body.key_deleted,
        })
    }
}

/// How the job ends, with the error it records.
struct Outcome {
    event: Event,
    error_code: Option<String>,
    error_message: Option<String>,
}

/// The rule: `FAILED` as reported; `DONE` needs the expected thumbprint (an install must name
/// one); any other thumbprint makes it `FAILED` with `THUMBPRINT_MISMATCH`.
fn outcome(
    report: &Report,
    job_type: JobType,
    expected: Option<&Thumbprint>,
) -> Result<Outcome, AppError> {
    let done = Outcome {
        event: Event::Done,
        error_code: None,
        error_message: None,
    };
    match (report.status, &report.thumbprint) {
        (ResultStatus::Failed, _) => Ok(Outcome {
            event: Event::Failed,
            error_code: report.error_code.clone(),
            error_message: report.error_message.clone(),
        }),
        (ResultStatus::Done, None) if job_type == JobType::Install => Err(AppError::Validation(
            "thumbprint: required with DONE".into(),
        )),
        (ResultStatus::Done, None) => Ok(done),
        (ResultStatus::Done, Some(got)) if Some(got) == expected => Ok(done),
        (ResultStatus::Done, Some(got)) => {
            let want = expected.map_or("unknown", Thumbprint::as_str);
            Ok(Outcome {
                event: Event::Failed,
                error_code: Some("THUMBPRINT_MISMATCH".to_owned()),
                error_message: Some(format!(
                    "the agent reported {got}; the certificate's thumbprint is {want}"
                )),
            })
        }
    }
}

fn is_reported(job: &InstallJob) -> Result<bool, AppError> {
    Ok(matches!(job.status()?, JobStatus::Done | JobStatus::Failed))
}

/// Audits a second result (`RESULT_DUPLICATE`) and answers 409.
async fn duplicate<T>(
    state: &AppState,
    device: &AuthDevice,
    job: &InstallJob,
    reported: ResultStatus,
) -> Result<T, AppError> {
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

/// The installation a `REMOVE` job ends (its thumbprint is the one to remove); none for an
/// install.
async fn installation_ended(
    txn: &DatabaseTransaction,
    job: &InstallJob,
    job_type: JobType,
) -> Result<Option<Lease>, AppError> {
    match (job_type, job.lease_id) {
        (JobType::Install, _) => Ok(None),
        (JobType::Remove, Some(lease_id)) => Ok(Some(
            Leases::find_by_id(lease_id)
                .one(txn)
                .await?
                .ok_or_else(|| {
                    AppError::Internal(format!("job {}: installation missing", job.id))
                })?,
        )),
        (JobType::Remove, None) => Err(AppError::Internal(format!(
            "REMOVE job {} names no installation",
            job.id
        ))),
    }
}

/// The thumbprint the agent should report: the installed one for a removal, the
/// certificate's for an install.
async fn expected_thumbprint(
    txn: &DatabaseTransaction,
    job: &InstallJob,
    removes: Option<&Lease>,
) -> Result<Option<Thumbprint>, AppError> {
    let raw = match removes {
        Some(l) => Some(l.thumbprint.clone()),
        None => Certificates::find_by_id(job.cert_id)
            .select_only()
            .column(CertColumn::Sha1)
            .into_tuple::<Option<String>>()
            .one(txn)
            .await?
            .flatten(),
    };
    Ok(raw.and_then(|s| Thumbprint::parse(&s).ok()))
}

/// The installation a `DONE` install opens.
async fn open_installation(
    txn: &DatabaseTransaction,
    job: &InstallJob,
    (lease_id, expires_at): (Uuid, DateTime<Utc>),
    thumbprint: &Thumbprint,
    now: DateTime<Utc>,
) -> Result<Lease, AppError> {
    let lease = lease::entity::ActiveModel {
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
    .insert(txn)
    .await?;
    Ok(lease)
}

/// Records the agent's result for job `id` (see the module's rules).
pub async fn report_result(
    state: &AppState,
    device: &AuthDevice,
    id: Uuid,
    body: ResultRequest,
) -> Result<ResultResponse, AppError> {
    let report = Report::parse(body)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let job = find_for_device(&txn, device, id).await?;
    if is_reported(&job)? {
        txn.rollback().await?;
        return duplicate(state, device, &job, report.status).await;
    }
    let job_type = job.job_type()?;
    let removes = installation_ended(&txn, &job, job_type).await?;
    let expected = expected_thumbprint(&txn, &job, removes.as_ref()).await?;
    // Microseconds, as both databases store them: the lease answered is the lease stored.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let Outcome {
        event,
        error_code,
        error_message,
    } = outcome(&report, job_type, expected.as_ref())?;
    let opens_lease = event == Event::Done && job_type == JobType::Install;
    let lease = opens_lease.then(|| {
        let expires = state
            .settings
            .lease_rule()
            .end(now, job.duration_minutes.map(i64::from));
        (Uuid::new_v4(), expires)
    });
    let thumbprint = &report.thumbprint;
    let mut changes = vec![
        (
            Column::Thumbprint,
            thumbprint.as_ref().map(|t| t.as_str().to_owned()).into(),
        ),
        (Column::ErrorCode, error_code.clone().into()),
        (Column::ErrorMessage, error_message.clone().into()),
        (Column::KeyStorage, report.key_storage.clone().into()),
    ];
    if let Some((lease_id, _)) = lease {
        changes.push((Column::LeaseId, Some(lease_id).into()));
    }
    let meta = json!({
        "thumbprint": thumbprint,
        "key_storage": report.key_storage,
        "key_deleted": report.key_deleted,
        "error_code": error_code,
        "error_message": error_message,
        "lease_id": lease.map(|(id, _)| id).or(job.lease_id),
        "lease_expires_at": lease.map(|(_, at)| at),
    });
    let applied = apply(
        &txn,
        &job,
        event,
        actor(device),
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
            let job = find_for_device(&state.db, device, id).await?;
            if is_reported(&job)? {
                return duplicate(state, device, &job, report.status).await;
            }
            return Err(AppError::Conflict(message));
        }
        Err(e) => return Err(e),
    };
    let mut wake = false;
    if let (Some(lease), Some(thumbprint)) = (lease, thumbprint) {
        let opened = open_installation(&txn, &job, lease, thumbprint, now).await?;
        if !device.device.is_allowed {
            // Installed from a payload fetched before the block: it leaves at once.
            super::removal::request(
                &txn,
                &opened,
                RemovalCause::DeviceBlocked,
                None,
                Actor::System,
                None,
                None,
            )
            .await?;
            wake = true;
        }
    }
    if let Some(installation) = removes.filter(|_| event == Event::Done) {
        lease::close(
            &txn,
            &installation,
            RemovalMode::RemoveJob(RemovalCause::parse(job.removal_cause.as_deref())),
            report.key_deleted,
            actor(device),
            device.ip.clone(),
        )
        .await?;
    }
    txn.commit().await?;
    state.job_hub.changed();
    if wake {
        state.job_hub.notify(device.device.id);
    }
    Ok(ResultResponse {
        job_id: job.id,
        status: job.status()?.into(),
        error_code: job.error_code,
        lease_expires_at: lease.map(|(_, at)| at),
    })
}
