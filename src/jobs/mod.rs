//! Install jobs: a user's request to put a certificate on a device, its approval, and the
//! agent's claim and result (seed S4/S6). Every status change goes through [`apply`]: the
//! move is checked against [`JobStatus::transition`], written with a conditional UPDATE and
//! audited in the same transaction.

pub mod agent;
pub mod api;
pub mod hub;
pub mod installations;
pub mod lease;
pub mod open_installations;
pub mod permission;
pub mod removal;
mod state;
pub mod tasks;

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, QueryOrder, QuerySelect};
use serde_json::json;

pub use state::{Event, JobStatus, JobType, TransitionError};

use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cert_install_jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub job_type: String,
        pub cert_id: Uuid,
        pub device_id: Uuid,
        pub requested_by_user_id: Option<Uuid>,
        pub approved_by_user_id: Option<Uuid>,
        pub status: String,
        pub reason: Option<String>,
        pub decision_reason: Option<String>,
        pub duration_minutes: Option<i32>,
        pub approved_at: Option<DateTimeUtc>,
        pub claimed_at: Option<DateTimeUtc>,
        pub started_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
        pub thumbprint: Option<String>,
        pub error_code: Option<String>,
        pub error_message: Option<String>,
        pub key_storage: Option<String>,
        pub payload_token_hash: Option<String>,
        pub payload_token_expires_at: Option<DateTimeUtc>,
        pub payload_token_used_at: Option<DateTimeUtc>,
        pub lease_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Column;
pub type InstallJobs = entity::Entity;
pub type InstallJob = entity::Model;

/// The audit log's name for a job.
pub const ENTITY: &str = "install_job";

impl InstallJob {
    /// The stored status (a bad value is a server-side fault).
    pub fn status(&self) -> Result<JobStatus, AppError> {
        self.status.parse().map_err(AppError::Internal)
    }

    pub fn job_type(&self) -> Result<JobType, AppError> {
        self.job_type.parse().map_err(AppError::Internal)
    }
}

pub fn not_found() -> AppError {
    AppError::NotFound("no such install job in this office".into())
}

/// One job of the office; `NotFound` for another office's.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    id: Uuid,
) -> Result<InstallJob, AppError> {
    InstallJobs::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
        .one(conn)
        .await?
        .ok_or_else(not_found)
}

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
    /// For a `REMOVE` job, the installation it ends.
    pub lease_id: Option<Uuid>,
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
    state: &crate::state::AppState,
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
    done.overdue = lease::sweep_overdue(state, org, actor, now).await?;
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
