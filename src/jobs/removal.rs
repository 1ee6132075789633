//! Early removal: ending an installation before its lease runs out. A `REMOVE` job, `PENDING`
//! at once (taking access away needs no approval), reaches the device through the same
//! long-poll as an install; the agent removes the certificate and its key and reports the
//! result, which closes the lease.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;

use super::entity::{Column, InstallJob, InstallJobs};
use super::lease::{self, Lease, Leases};
pub use super::status::RemovalCause;
use super::status::{Event, JobStatus, JobType};
use super::transition::NewJob;
use crate::audit::Actor;
use crate::domain::OrgId;
use crate::error::AppError;

/// The open (`PENDING` or `IN_PROGRESS`) `REMOVE` job of `lease`, or a new `PENDING` one
/// (`true`). Within the caller's transaction; two concurrent requests make one job, since the
/// lease row is written (and so locked) before the check.
pub async fn request<C: ConnectionTrait>(
    conn: &C,
    lease: &Lease,
    cause: RemovalCause,
    requested_by: Option<Uuid>,
    actor: Actor,
    reason: Option<String>,
    ip: Option<String>,
) -> Result<(InstallJob, bool), AppError> {
    let open = Leases::update_many()
        .col_expr(
            lease::Column::OverdueAt,
            Expr::col(lease::Column::OverdueAt),
        )
        .filter(lease::Column::Id.eq(lease.id))
        .filter(lease::Column::RemovedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected;
    if open != 1 {
        return Err(AppError::Conflict(
            "this installation has already been removed".into(),
        ));
    }
    let existing = InstallJobs::find()
        .filter(Column::LeaseId.eq(lease.id))
        .filter(Column::JobType.eq(JobType::Remove.as_str()))
        .filter(Column::Status.is_in([JobStatus::Pending.as_str(), JobStatus::InProgress.as_str()]))
        .one(conn)
        .await?;
    if let Some(job) = existing {
        return Ok((job, false));
    }
    let job = super::transition::create(
        conn,
        NewJob {
            org: OrgId(lease.org_id),
            job_type: JobType::Remove,
            cert_id: lease.cert_id,
            device_id: lease.device_id,
            requested_by,
            reason,
            duration_minutes: None,
            lease_id: Some(lease.id),
            removal_cause: Some(cause),
            event: Event::RequestRemoval,
            actor,
            ip,
        },
    )
    .await?;
    Ok((job, true))
}
