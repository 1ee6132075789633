//! The sweep (every five minutes, and `POST /api/v1/admin/jobs/reap` now): requests past their
//! TTL expire, jobs stuck `IN_PROGRESS` time out, and installations past their lease and grace
//! are flagged overdue and handed a `REMOVE` job. Each item moves in its own transaction; one
//! another writer moved meanwhile is skipped.

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect};
use serde_json::json;

use super::entity::{Column, InstallJob, InstallJobs};
use super::lease::{self, Leases};
use super::status::{Event, JobStatus};
use super::transition::{Changes, apply};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

/// A week: a longer threshold would never reap anything a person still waits for.
const MAX_THRESHOLD_MINUTES: i64 = 7 * 24 * 60;

/// What one sweep changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Sweep {
    /// `REQUESTED` past the request TTL, now `EXPIRED`.
    pub expired: u64,
    /// `IN_PROGRESS` past the timeout, now `TIMEOUT`.
    pub reaped: u64,
    /// Installations newly found overdue, each handed a `REMOVE` job.
    pub overdue: u64,
}

/// Expires requests older than `request_ttl_hours`, reaps jobs `IN_PROGRESS` for longer than
/// `timeout`, and flags overdue installations ([`lease::sweep_overdue`]), in `org` or in
/// every office. Each job moves in its own transaction, audited as done by `actor` (the
/// system for the cron job); a job another writer moved meanwhile is skipped.
pub async fn sweep(
    state: &AppState,
    org: Option<OrgId>,
    actor: Actor,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<Sweep, AppError> {
    let db = &state.db;
    let request_ttl = Duration::hours(state.settings.request_ttl_hours);
    let stale = |status: JobStatus, column: Column, before: DateTime<Utc>| {
        let mut q = InstallJobs::find()
            .filter(Column::Status.eq(status.as_str()))
            .filter(column.lt(before))
            .order_by_asc(column)
            .limit(1000);
        if let Some(org) = org {
            q = q.filter(Column::OrgId.eq(org.0));
        }
        q
    };
    let mut done = Sweep::default();
    let requests = stale(JobStatus::Requested, Column::CreatedAt, now - request_ttl)
        .all(db)
        .await?;
    for job in requests {
        let meta = json!({"request_ttl_hours": request_ttl.num_hours()});
        if sweep_one(db, actor, &job, Event::Expire, Vec::new(), meta).await? {
            done.expired += 1;
        }
    }
    let stuck = stale(JobStatus::InProgress, Column::StartedAt, now - timeout)
        .all(db)
        .await?;
    for job in stuck {
        let minutes = timeout.num_minutes();
        let changes = vec![
            (Column::ErrorCode, "TIMEOUT".into()),
            (
                Column::ErrorMessage,
                format!("no result within {minutes} minutes of the claim").into(),
            ),
        ];
        let meta = json!({"threshold_minutes": minutes});
        if sweep_one(db, actor, &job, Event::Timeout, changes, meta).await? {
            done.reaped += 1;
        }
    }
    done.overdue = sweep_overdue(state, org, actor, now).await?;
    if done != Sweep::default() {
        state.job_hub.changed();
        tracing::info!(
            expired = done.expired,
            reaped = done.reaped,
            overdue = done.overdue,
            "install jobs swept"
        );
    }
    Ok(done)
}

async fn sweep_one(
    db: &DatabaseConnection,
    actor: Actor,
    job: &InstallJob,
    event: Event,
    changes: Changes,
    meta: serde_json::Value,
) -> Result<bool, AppError> {
    let txn = crate::db::begin_write(db).await?;
    match apply(&txn, job, event, actor, None, changes, meta).await {
        Ok(_) => {
            txn.commit().await?;
            Ok(true)
        }
        Err(AppError::Conflict(_)) => {
            txn.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Finds open leases past `expires_at + lease_grace_minutes` not yet flagged (in `org`, or in
/// every office): each is marked `overdue_at`, audited `LEASE_OVERDUE` and handed a `REMOVE`
/// job (unless one is open), in its own transaction; the device's long-poll is woken.
pub async fn sweep_overdue(
    state: &AppState,
    org: Option<OrgId>,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<u64, AppError> {
    let grace = Duration::minutes(state.settings.agent.lease_grace_minutes);
    let mut due = Leases::find()
        .filter(lease::Column::RemovedAt.is_null())
        .filter(lease::Column::OverdueAt.is_null())
        .filter(lease::Column::ExpiresAt.lte(now - grace))
        .order_by_asc(lease::Column::ExpiresAt)
        .limit(1000);
    if let Some(org) = org {
        due = due.filter(lease::Column::OrgId.eq(org.0));
    }
    let mut flagged = 0;
    for lease in due.all(&state.db).await? {
        let txn = crate::db::begin_write(&state.db).await?;
        let marked = Leases::update_many()
            .col_expr(lease::Column::OverdueAt, Expr::value(now))
            .filter(lease::Column::Id.eq(lease.id))
            .filter(lease::Column::RemovedAt.is_null())
            .filter(lease::Column::OverdueAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if marked != 1 {
            txn.rollback().await?;
            continue;
        }
        audit::append(
            &txn,
            Entry::new(OrgId(lease.org_id), AuditAction::LeaseOverdue, actor)
                .entity(lease::ENTITY, lease.id)
                .meta(json!({
                    "device_id": lease.device_id,
                    "cert_id": lease.cert_id,
                    "thumbprint": lease.thumbprint,
                    "expires_at": lease.expires_at,
                    "grace_minutes": grace.num_minutes(),
                })),
        )
        .await?;
        let (job, created) = super::removal::request(
            &txn,
            &lease,
            super::removal::RemovalCause::Overdue,
            None,
            actor,
            Some("overdue: no removal reported".to_owned()),
            None,
        )
        .await?;
        txn.commit().await?;
        state.job_hub.changed();
        if created {
            state.job_hub.notify(job.device_id);
        }
        tracing::warn!(installation_id = %lease.id, device_id = %lease.device_id, remove_job_id = %job.id, "installation overdue: REMOVE job queued");
        flagged += 1;
    }
    Ok(flagged)
}

/// The sweep, now, for the admin's office (`POST /api/v1/admin/jobs/reap`): `IN_PROGRESS`
/// older than `threshold_minutes` (default `job_timeout_minutes`) -> `TIMEOUT`, requests past
/// `request_ttl_hours` -> `EXPIRED`, and installations past their lease and grace -> overdue.
pub async fn reap_now(
    state: &AppState,
    admin: &AuthUser,
    threshold_minutes: Option<i64>,
) -> Result<Sweep, AppError> {
    admin.require_admin()?;
    let threshold = threshold_minutes.unwrap_or(state.settings.job_timeout_minutes);
    if !(1..=MAX_THRESHOLD_MINUTES).contains(&threshold) {
        return Err(AppError::Validation(format!(
            "threshold_minutes: between 1 and {MAX_THRESHOLD_MINUTES}"
        )));
    }
    sweep(
        state,
        Some(admin.org),
        Actor::User(admin.user.id),
        Utc::now(),
        Duration::minutes(threshold),
    )
    .await
}
