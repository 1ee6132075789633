//! Permission is not only checked when a job is requested: by the time the agent claims it or
//! fetches its payload, the requester may have been deactivated, the device given to someone
//! else, or the certificate withdrawn or expired. Claim and payload re-check here; a job that
//! may no longer be delivered is ended (audited) and the agent gets a 409.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QuerySelect};
use serde_json::json;

use super::entity::{Column, InstallJob, InstallJobs};
use super::lease::{self, Leases};
use super::status::{Event, JobStatus, JobType};
use crate::accounts::user::{self, Users};
use crate::audit::Actor;
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::devices::Device;
use crate::domain::OrgId;
use crate::error::AppError;

/// Why an install may no longer reach its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    RequesterInactive,
    DeviceNotTargetable,
    CertificateUnavailable,
    CertificateExpired,
}

impl Revoked {
    /// The audit's `reason` and the job's `error_code` suffix.
    pub fn code(self) -> &'static str {
        match self {
            Revoked::RequesterInactive => "requester_inactive",
            Revoked::DeviceNotTargetable => "device_not_targetable",
            Revoked::CertificateUnavailable => "certificate_unavailable",
            Revoked::CertificateExpired => "certificate_expired",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Revoked::RequesterInactive => "the user who asked for it is no longer active",
            Revoked::DeviceNotTargetable => "the device now belongs to another user",
            Revoked::CertificateUnavailable => "the certificate is no longer available",
            Revoked::CertificateExpired => "the certificate has expired",
        }
    }
}

/// Whether `job` (an install) may still be delivered to `device`; `Some(why)` when not.
pub async fn recheck<C: ConnectionTrait>(
    conn: &C,
    job: &InstallJob,
    device: &Device,
) -> Result<Option<Revoked>, AppError> {
    if job.job_type()? != JobType::Install {
        return Ok(None);
    }
    let requester = match job.requested_by_user_id {
        Some(id) => Users::find_by_id(id)
            .filter(user::entity::Column::OrgId.eq(job.org_id))
            .one(conn)
            .await?
            .filter(|u| u.is_active),
        None => None,
    };
    let Some(requester) = requester else {
        return Ok(Some(Revoked::RequesterInactive));
    };
    if !crate::devices::may_be_targeted_by(device, requester.id, requester.role()?) {
        return Ok(Some(Revoked::DeviceNotTargetable));
    }
    let cert = Certificates::find_by_id(job.cert_id)
        .filter(CertColumn::OrgId.eq(job.org_id))
        .select_only()
        .column(CertColumn::IsAvailable)
        .column(CertColumn::ParseError)
        .column(CertColumn::NotAfter)
        .into_tuple::<(bool, Option<String>, Option<chrono::DateTime<Utc>>)>()
        .one(conn)
        .await?;
    Ok(match cert {
        None | Some((false, _, _)) | Some((_, Some(_), _)) => Some(Revoked::CertificateUnavailable),
        Some((_, _, Some(not_after))) if not_after > Utc::now() => None,
        Some(_) => Some(Revoked::CertificateExpired),
    })
}

/// Ends a job that may no longer be delivered (`PENDING` -> `CANCELLED`, `IN_PROGRESS` ->
/// `FAILED` with `error_code` `NOT_PERMITTED`), audited with the reason, in the caller's
/// transaction; returns the 409 to answer once it is committed.
pub async fn end_revoked<C: ConnectionTrait>(
    conn: &C,
    job: &InstallJob,
    why: Revoked,
    actor: Actor,
    ip: Option<String>,
) -> Result<AppError, AppError> {
    let meta = json!({"reason": why.code(), "by": "server_recheck"});
    match job.status()? {
        JobStatus::Pending | JobStatus::Requested => {
            super::transition::apply(conn, job, Event::Cancel, actor, ip, Vec::new(), meta).await?;
        }
        JobStatus::InProgress => {
            let changes = vec![
                (Column::ErrorCode, Some("NOT_PERMITTED".to_owned()).into()),
                (Column::ErrorMessage, Some(why.message().to_owned()).into()),
                (Column::PayloadTokenHash, Option::<String>::None.into()),
            ];
            super::transition::apply(conn, job, Event::Failed, actor, ip, changes, meta).await?;
        }
        _ => {}
    }
    Ok(AppError::Conflict(format!(
        "this install may no longer be delivered: {}",
        why.message()
    )))
}

/// Whose open install requests to cancel.
#[derive(Debug, Clone, Copy)]
pub enum Whose {
    /// A device that was rotated or blocked.
    Device(Uuid),
    /// A user who was deactivated.
    Requester(Uuid),
}

/// Cancels the `REQUESTED` and `PENDING` installs of a device or a requester, each audited
/// `INSTALL_CANCELLED` with `reason`. (An install already `IN_PROGRESS` is stopped by the
/// payload's re-check.) Returns how many.
pub async fn cancel_open_installs<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    whose: Whose,
    actor: Actor,
    ip: Option<String>,
    reason: &str,
) -> Result<usize, AppError> {
    let mut query = InstallJobs::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::JobType.eq(JobType::Install.as_str()))
        .filter(Column::Status.is_in([JobStatus::Requested.as_str(), JobStatus::Pending.as_str()]));
    query = match whose {
        Whose::Device(id) => query.filter(Column::DeviceId.eq(id)),
        Whose::Requester(id) => query.filter(Column::RequestedByUserId.eq(id)),
    };
    let jobs = query.all(conn).await?;
    for job in &jobs {
        super::transition::apply(
            conn,
            job,
            Event::Cancel,
            actor,
            ip.clone(),
            Vec::new(),
            json!({"reason": reason}),
        )
        .await?;
    }
    Ok(jobs.len())
}

/// Asks every device holding one of the open installations of a requester (deactivated) or
/// on a device (blocked) to remove it: a `REMOVE` job each, made for that cause. Returns the
/// devices to wake once committed.
pub async fn remove_installations_of<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    whose: Whose,
    actor: Actor,
    ip: Option<String>,
    reason: &str,
) -> Result<Vec<Uuid>, AppError> {
    let (query, cause) = match whose {
        Whose::Requester(id) => (
            Leases::find().filter(lease::Column::UserId.eq(id)),
            super::removal::RemovalCause::UserDeactivated,
        ),
        Whose::Device(id) => (
            Leases::find().filter(lease::Column::DeviceId.eq(id)),
            super::removal::RemovalCause::DeviceBlocked,
        ),
    };
    let open = query
        .filter(lease::Column::OrgId.eq(org.0))
        .filter(lease::Column::RemovedAt.is_null())
        .all(conn)
        .await?;
    let mut devices = Vec::new();
    for lease in &open {
        let (job, _) = super::removal::request(
            conn,
            lease,
            cause,
            None,
            actor,
            Some(reason.to_owned()),
            ip.clone(),
        )
        .await?;
        devices.push(job.device_id);
    }
    Ok(devices)
}
