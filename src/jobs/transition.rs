//! Every status change of a job: [`create`] inserts it in the status its first event leads to,
//! [`apply`] moves it. Both check the move against [`JobStatus::transition`], write it with a
//! conditional UPDATE, audit it in the caller's transaction and announce it to the hub.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ConnectionTrait};
use serde_json::json;

use super::entity::{self, Column, ENTITY, InstallJob, InstallJobs, not_found};
use super::hub;
use super::status::{Event, JobStatus, JobType, TransitionError};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub org: OrgId,
    pub job_type: JobType,
    pub cert_id: Uuid,
    pub device_id: Uuid,
    /// The user who asked; `None` when the server itself asks (an overdue lease).
    pub requested_by: Option<Uuid>,
    pub reason: Option<String>,
    pub duration_minutes: Option<i32>,
    /// For a `REMOVE` job, the installation it ends and why.
    pub lease_id: Option<Uuid>,
    pub removal_cause: Option<super::status::RemovalCause>,
    /// `Request`, `AutoApprove` (the requester's `auto_approve_install_jobs`) or
    /// `RequestRemoval`.
    pub event: Event,
    pub actor: Actor,
    pub ip: Option<String>,
}

/// Inserts the job in the status `new.event` leads to (`REQUESTED` or `PENDING`), with its
/// audit entries; a `PENDING` job is announced to other server processes at COMMIT.
pub async fn create<C: ConnectionTrait>(conn: &C, new: NewJob) -> Result<InstallJob, AppError> {
    let status = JobStatus::transition(None, new.event).map_err(conflict)?;
    let now = Utc::now();
    let approved = status == JobStatus::Pending;
    let job = entity::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(new.org.0),
        job_type: Set(new.job_type.as_str().to_owned()),
        cert_id: Set(new.cert_id),
        device_id: Set(new.device_id),
        requested_by_user_id: Set(new.requested_by),
        approved_by_user_id: Set(new.requested_by.filter(|_| approved)),
        status: Set(status.as_str().to_owned()),
        reason: Set(new.reason.clone()),
        duration_minutes: Set(new.duration_minutes),
        approved_at: Set(approved.then_some(now)),
        lease_id: Set(new.lease_id),
        removal_cause: Set(new.removal_cause.map(|c| c.as_str().to_owned())),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    let entry = |action| {
        Entry::new(new.org, action, new.actor)
            .entity(ENTITY, job.id)
            .ip(new.ip.clone())
    };
    let first = match new.event {
        Event::RequestRemoval => AuditAction::RemoveRequested,
        _ => AuditAction::InstallRequested,
    };
    audit::append(
        conn,
        entry(first).meta(json!({
            "cert_id": job.cert_id,
            "device_id": job.device_id,
            "job_type": job.job_type,
            "duration_minutes": job.duration_minutes,
            "reason": job.reason,
            "installation_id": job.lease_id,
            "removal_cause": job.removal_cause,
        })),
    )
    .await?;
    if new.event == Event::AutoApprove {
        audit::append(
            conn,
            entry(Event::AutoApprove.audit_action(new.job_type))
                .meta(json!({"auto": true, "to": status})),
        )
        .await?;
    }
    if approved {
        hub::announce(conn, job.device_id).await?;
    }
    hub::announce_change(conn).await?;
    Ok(job)
}

fn conflict(e: TransitionError) -> AppError {
    AppError::Conflict(e.to_string())
}

/// Columns a move sets besides `status` and `updated_at`.
pub type Changes = Vec<(Column, sea_orm::Value)>;

/// Applies `event` to `job` on `conn` (the caller's transaction): refuses a move the table does
/// not allow, writes it only if the row still has the status it was read with (a concurrent
/// move makes this a 409), stamps the move's time column, and appends its audit entry.
pub async fn apply<C: ConnectionTrait>(
    conn: &C,
    job: &InstallJob,
    event: Event,
    actor: Actor,
    ip: Option<String>,
    mut changes: Changes,
    meta: serde_json::Value,
) -> Result<InstallJob, AppError> {
    let from = job.status()?;
    let to = JobStatus::transition(Some(from), event).map_err(conflict)?;
    let now = Utc::now();
    match event {
        Event::Approve | Event::AutoApprove => changes.push((Column::ApprovedAt, now.into())),
        Event::Claim => {
            changes.push((Column::ClaimedAt, now.into()));
            changes.push((Column::StartedAt, now.into()));
        }
        Event::Reclaim => changes.push((Column::ClaimedAt, now.into())),
        Event::Request | Event::RequestRemoval => {}
        Event::Deny
        | Event::Cancel
        | Event::Expire
        | Event::Done
        | Event::Failed
        | Event::Timeout => changes.push((Column::FinishedAt, now.into())),
    }
    let mut update = InstallJobs::update_many()
        .col_expr(Column::Status, Expr::value(to.as_str()))
        .col_expr(Column::UpdatedAt, Expr::value(now));
    for (column, value) in changes {
        update = update.col_expr(column, Expr::value(value));
    }
    let res = update
        .filter(Column::Id.eq(job.id))
        .filter(Column::Status.eq(from.as_str()))
        .exec(conn)
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::Conflict(format!(
            "the job is no longer {from}; reload it"
        )));
    }
    let mut meta = meta;
    if let Some(m) = meta.as_object_mut() {
        m.insert("from".into(), json!(from));
        m.insert("to".into(), json!(to));
    }
    if to == JobStatus::Pending {
        hub::announce(conn, job.device_id).await?;
    }
    hub::announce_change(conn).await?;
    audit::append(
        conn,
        Entry::new(
            OrgId(job.org_id),
            event.audit_action(job.job_type()?),
            actor,
        )
        .entity(ENTITY, job.id)
        .meta(meta)
        .ip(ip),
    )
    .await?;
    InstallJobs::find_by_id(job.id)
        .one(conn)
        .await?
        .ok_or_else(not_found)
}
