//! Installations as users see them: which certificate is on which PC until when, which are
//! overdue, and ending one now (a `REMOVE` job).

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, QueryOrder};
use serde::{Deserialize, Serialize};

use super::entity::{Column as JobColumn, InstallJobs};
use super::lease::{self, Column, Lease, Leases};
use super::names::{DeviceRef, Named, Names};
use super::requests::{self, JobView};
use super::status::{JobStatus, JobType};
use crate::audit::Actor;
use crate::domain::Reason;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::paging::{Page, Paging};
use crate::state::AppState;

/// A `REMOVE` job of an installation.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RemovalRef {
    pub id: Uuid,
    pub status: JobStatus,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstallationView {
    pub id: Uuid,
    pub device: DeviceRef,
    pub cert: Named,
    /// Who asked for the install.
    pub user: Option<Named>,
    /// The install job that opened it.
    pub job_id: Uuid,
    pub thumbprint: String,
    pub installed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    pub removal_mode: Option<String>,
    pub key_deleted: Option<bool>,
    /// Still open `lease_grace_minutes` past `expires_at`: the agent owes a removal report.
    pub overdue: bool,
    /// When the sweep flagged it (audited `LEASE_OVERDUE`, `REMOVE` job queued).
    pub overdue_at: Option<DateTime<Utc>>,
    /// The newest `REMOVE` job, if any.
    pub removal_job: Option<RemovalRef>,
}

async fn views<C: ConnectionTrait>(
    db: &C,
    leases: Vec<Lease>,
    grace: Duration,
) -> Result<Vec<InstallationView>, AppError> {
    let names = Names::load(
        db,
        leases.iter().map(|l| l.cert_id),
        leases.iter().map(|l| l.device_id),
        leases.iter().filter_map(|l| l.user_id),
    )
    .await?;
    let mut removals: std::collections::HashMap<Uuid, RemovalRef> = InstallJobs::find()
        .filter(JobColumn::JobType.eq(JobType::Remove.as_str()))
        .filter(JobColumn::LeaseId.is_in(leases.iter().map(|l| l.id)))
        .order_by_asc(JobColumn::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|j| {
            let status = j.status().ok()?;
            Some((j.lease_id?, RemovalRef { id: j.id, status }))
        })
        .collect();
    let now = Utc::now();
    Ok(leases
        .into_iter()
        .map(|l| InstallationView {
            overdue: l.is_overdue(now, grace),
            removal_job: removals.remove(&l.id),
            device: names.device(l.device_id),
            cert: names.cert(l.cert_id),
            user: names.user(l.user_id),
            id: l.id,
            job_id: l.job_id,
            thumbprint: l.thumbprint,
            installed_at: l.installed_at,
            expires_at: l.expires_at,
            removed_at: l.removed_at,
            removal_mode: l.removal_mode,
            key_deleted: l.key_deleted,
            overdue_at: l.overdue_at,
        })
        .collect())
}

fn grace(state: &AppState) -> Duration {
    Duration::minutes(state.settings.agent.lease_grace_minutes)
}

/// An installation of the user's office that the user may see: ADMIN/DEV every one, a VIEW
/// those of their own requests.
async fn visible<C: ConnectionTrait>(db: &C, user: &AuthUser, id: Uuid) -> Result<Lease, AppError> {
    let lease = lease::find(db, user.org, id).await?;
    if user.is_admin() || lease.user_id == Some(user.user.id) {
        Ok(lease)
    } else {
        Err(lease::not_found())
    }
}

/// Which installations a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    /// Not removed yet (the default).
    Open,
    /// Not removed `lease_grace_minutes` past the lease's end.
    Overdue,
    Removed,
    All,
}

/// Which installations a listing shows (a VIEW: only those of their own requests).
#[derive(Debug, Clone)]
pub struct InstallationFilter {
    pub state: StateFilter,
    pub device_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

impl Default for InstallationFilter {
    fn default() -> Self {
        Self {
            state: StateFilter::Open,
            device_id: None,
            user_id: None,
        }
    }
}

/// One page of the installations `user` may see, newest first.
pub async fn find_page(
    state: &AppState,
    user: &AuthUser,
    filter: &InstallationFilter,
    paging: Paging,
) -> Result<Page<InstallationView>, AppError> {
    let mut cond = Condition::all().add(Column::OrgId.eq(user.org.0));
    match filter.state {
        StateFilter::Open => cond = cond.add(Column::RemovedAt.is_null()),
        StateFilter::Overdue => {
            cond = cond
                .add(Column::RemovedAt.is_null())
                .add(Column::ExpiresAt.lte(Utc::now() - grace(state)))
        }
        StateFilter::Removed => cond = cond.add(Column::RemovedAt.is_not_null()),
        StateFilter::All => {}
    }
    if let Some(d) = filter.device_id {
        cond = cond.add(Column::DeviceId.eq(d));
    }
    if let Some(u) = filter.user_id {
        cond = cond.add(Column::UserId.eq(u));
    }
    if !user.is_admin() {
        cond = cond.add(Column::UserId.eq(user.user.id));
    }
    let select = Leases::find()
        .filter(cond)
        .order_by_desc(Column::InstalledAt)
        .order_by_asc(Column::Id);
    let (total, leases) = paging.fetch(&state.db, select).await?;
    let items = views(&state.db, leases, grace(state)).await?;
    Ok(paging.page(total, items))
}

/// Installation `id`, if `user` may see it.
pub async fn find_view(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<InstallationView, AppError> {
    let lease = visible(&state.db, user, id).await?;
    views(&state.db, vec![lease], grace(state))
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal("installation view missing".into()))
}

/// Ends installation `id` now ("Remover agora"): its `REMOVE` job, and whether this call
/// created it (`false`: the one already open).
pub async fn request_removal(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    reason: Option<String>,
) -> Result<(JobView, bool), AppError> {
    let reason = Reason::optional("reason", reason)?.map(String::from);
    let txn = crate::db::begin_write(&state.db).await?;
    let lease = visible(&txn, user, id).await?;
    let (job, created) = super::removal::request(
        &txn,
        &lease,
        super::removal::RemovalCause::Requested,
        Some(user.user.id),
        Actor::User(user.user.id),
        reason,
        user.ip.clone(),
    )
    .await?;
    let view = requests::view(&txn, job).await?;
    txn.commit().await?;
    if created {
        requests::wake_if_pending(state, &view);
    }
    Ok((view, created))
}

/// The ids of certificate `cert_id`'s requests (jobs) and installations in office `org`: what
/// the audit needs to tell the certificate's whole story (who asked, approved, installed and
/// removed it).
pub async fn story_of<C: ConnectionTrait>(
    db: &C,
    org: crate::domain::OrgId,
    cert_id: Uuid,
) -> Result<crate::audit::query::CertificateStory, AppError> {
    use sea_orm::QuerySelect;
    let jobs: Vec<Uuid> = InstallJobs::find()
        .select_only()
        .column(JobColumn::Id)
        .filter(JobColumn::OrgId.eq(org.0))
        .filter(JobColumn::CertId.eq(cert_id))
        .into_tuple()
        .all(db)
        .await?;
    let leases: Vec<Uuid> = Leases::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::CertId.eq(cert_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(crate::audit::query::CertificateStory {
        cert_id,
        related: jobs
            .into_iter()
            .chain(leases)
            .map(|id| id.to_string())
            .collect(),
    })
}
