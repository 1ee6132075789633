//! The user side of install jobs: ask to install a certificate, approve or deny the request
//! (ADMIN/DEV), cancel it, and read and list jobs (`REMOVE` jobs too) as the user may see them.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DerivePartialModel, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::entity::{self, Column, InstallJob, InstallJobs};
use super::names::{DeviceRef, Named, Names};
use super::status::{Event, JobStatus, JobType};
use super::transition::{self, NewJob};
use crate::audit::Actor;
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::domain::Reason;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::paging::{Page, Paging};
use crate::state::AppState;

/// A job as the API shows it: never a payload token or anything sealed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct JobView {
    pub id: Uuid,
    pub status: JobStatus,
    pub job_type: JobType,
    pub cert: Named,
    pub device: DeviceRef,
    pub requested_by: Option<Named>,
    pub approved_by: Option<Named>,
    pub reason: Option<String>,
    pub decision_reason: Option<String>,
    pub duration_minutes: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The last change of the job.
    pub updated_at: DateTime<Utc>,
    pub thumbprint: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The installation a `DONE` install opened, or the one a `REMOVE` job ends.
    pub installation_id: Option<Uuid>,
}

/// Builds the views of `jobs`.
async fn views<C: ConnectionTrait>(
    db: &C,
    jobs: Vec<InstallJob>,
) -> Result<Vec<JobView>, AppError> {
    let names = Names::load(
        db,
        jobs.iter().map(|j| j.cert_id),
        jobs.iter().map(|j| j.device_id),
        jobs.iter().flat_map(|j| {
            j.requested_by_user_id
                .into_iter()
                .chain(j.approved_by_user_id)
        }),
    )
    .await?;
    jobs.into_iter()
        .map(|j| {
            Ok(JobView {
                status: j.status()?,
                job_type: j.job_type()?,
                cert: names.cert(j.cert_id),
                device: names.device(j.device_id),
                requested_by: names.user(j.requested_by_user_id),
                approved_by: names.user(j.approved_by_user_id),
                installation_id: j.lease_id,
                id: j.id,
                reason: j.reason,
                decision_reason: j.decision_reason,
                duration_minutes: j.duration_minutes,
                created_at: j.created_at,
                approved_at: j.approved_at,
                started_at: j.started_at,
                finished_at: j.finished_at,
                updated_at: j.updated_at,
                thumbprint: j.thumbprint,
                error_code: j.error_code,
                error_message: j.error_message,
            })
        })
        .collect()
}

pub async fn view<C: ConnectionTrait>(db: &C, job: InstallJob) -> Result<JobView, AppError> {
    views(db, vec![job])
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal("job view missing".into()))
}

/// What an install request needs to know of a certificate (never its sealed columns).
#[derive(Debug, Clone, DerivePartialModel)]
#[sea_orm(entity = "Certificates")]
struct Installable {
    id: Uuid,
    is_available: bool,
    not_after: Option<DateTimeUtc>,
    parse_error: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallBody {
    pub device_id: Uuid,
    pub reason: Option<String>,
    pub duration_minutes: Option<i64>,
}

/// Asks to install certificate `cert_id` on a device the user may target: `REQUESTED`, or
/// `PENDING` (and the device woken) for an auto-approved user.
pub async fn request(
    state: &AppState,
    user: &AuthUser,
    cert_id: Uuid,
    body: InstallBody,
) -> Result<JobView, AppError> {
    let reason = Reason::optional("reason", body.reason)?.map(String::from);
    // Auto-approved or not, a lease never outlives max_lease_hours.
    let max = state.settings.agent.max_lease_hours * 60;
    let duration_minutes = match body.duration_minutes {
        None => None,
        Some(m) if (1..=max).contains(&m) => Some(m as i32),
        Some(_) => {
            return Err(AppError::Validation(format!(
                "duration_minutes: between 1 and {max}"
            )));
        }
    };
    refuse_after_hours(state)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let cert = Certificates::find_by_id(cert_id)
        .filter(CertColumn::OrgId.eq(user.org.0))
        .into_partial_model::<Installable>()
        .one(&txn)
        .await?
        .ok_or_else(crate::certificates::catalogue::not_found)?;
    if !cert.is_available {
        return Err(AppError::Conflict(
            "certificate unavailable: its file is no longer in the folder".into(),
        ));
    }
    if cert.parse_error.is_some() {
        return Err(AppError::Conflict(
            "certificate unusable: its file could not be opened (see parse_error)".into(),
        ));
    }
    match cert.not_after {
        Some(at) if at > Utc::now() => {}
        Some(at) => {
            return Err(AppError::Conflict(format!(
                "certificate expired on {}",
                at.format("%Y-%m-%d")
            )));
        }
        None => {
            return Err(AppError::Conflict(
                "certificate unusable: its validity is unknown".into(),
            ));
        }
    }
    let device = crate::devices::find_in_org(&txn, user.org, body.device_id).await?;
    if !crate::devices::may_target(&device, user) {
        return Err(AppError::Forbidden(
            "this device belongs to another user".into(),
        ));
    }
    if !device.is_allowed {
        return Err(AppError::Conflict("device blocked".into()));
    }
    let job = transition::create(
        &txn,
        NewJob {
            org: user.org,
            job_type: JobType::Install,
            cert_id: cert.id,
            device_id: device.id,
            requested_by: Some(user.user.id),
            reason,
            duration_minutes,
            lease_id: None,
            removal_cause: None,
            event: if user.user.auto_approve_install_jobs {
                Event::AutoApprove
            } else {
                Event::Request
            },
            actor: Actor::User(user.user.id),
            ip: user.ip.clone(),
        },
    )
    .await?;
    let view = view(&txn, job).await?;
    txn.commit().await?;
    wake_if_pending(state, &view);
    Ok(view)
}

/// With `after_hours_installs = false`, nothing is asked for or approved after hours.
fn refuse_after_hours(state: &AppState) -> Result<(), AppError> {
    let settings = &state.settings;
    if !settings.installs_closed(Utc::now()) {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "after hours: installs are allowed from {} to {} (office time)",
        settings.agent.workday_start.format("%H:%M"),
        settings.agent.cleanup_time.format("%H:%M")
    )))
}

/// A decision on a job, by its requester or an ADMIN/DEV.
#[derive(Debug, Clone)]
pub enum Decision {
    /// `REQUESTED` -> `PENDING` (ADMIN/DEV), with an optional note.
    Approve(Option<String>),
    /// `REQUESTED` -> `DENIED` (ADMIN/DEV); the reason is required.
    Deny(Option<String>),
    /// `REQUESTED`/`PENDING` -> `CANCELLED` (the requester, or ADMIN/DEV).
    Cancel,
}

/// Applies `decision` to job `id` of the user's office (one rule for the API and the portal).
pub async fn decide(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    decision: Decision,
) -> Result<JobView, AppError> {
    let (event, changes, reason) = match decision {
        Decision::Approve(reason) => {
            user.require_admin()?;
            refuse_after_hours(state)?;
            let reason = Reason::optional("reason", reason)?.map(String::from);
            let changes = vec![
                (Column::ApprovedByUserId, Some(user.user.id).into()),
                (Column::DecisionReason, reason.clone().into()),
            ];
            (Event::Approve, changes, reason)
        }
        Decision::Deny(reason) => {
            user.require_admin()?;
            let reason = Reason::optional("reason", reason)?
                .map(String::from)
                .ok_or_else(|| AppError::Validation("reason: required to deny".into()))?;
            let changes = vec![(Column::DecisionReason, Some(reason.clone()).into())];
            (Event::Deny, changes, Some(reason))
        }
        Decision::Cancel => (Event::Cancel, Vec::new(), None),
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let job = visible(&txn, user, id).await?;
    let job = transition::apply(
        &txn,
        &job,
        event,
        Actor::User(user.user.id),
        user.ip.clone(),
        changes,
        json!({"reason": reason}),
    )
    .await?;
    let view = view(&txn, job).await?;
    txn.commit().await?;
    wake_if_pending(state, &view);
    Ok(view)
}

/// After the COMMIT (never before: the agent would wake and find nothing), wakes the device's
/// long-poll if the job is now `PENDING`.
pub fn wake_if_pending(state: &AppState, view: &JobView) {
    if view.status == JobStatus::Pending {
        state.job_hub.notify(view.device.id);
    }
    state.job_hub.changed();
}

/// A job of the user's office that the user may see: ADMIN/DEV every one, VIEW their own.
pub async fn visible<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    id: Uuid,
) -> Result<InstallJob, AppError> {
    let job = entity::find(db, user.org, id).await?;
    if user.is_admin() || job.requested_by_user_id == Some(user.user.id) {
        Ok(job)
    } else {
        Err(entity::not_found())
    }
}

/// Which jobs a listing shows.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub statuses: Vec<JobStatus>,
    pub job_type: Option<JobType>,
    pub user_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
}

impl JobFilter {
    /// A listing's filter from its query: `status` and `job_type` as the API spells them
    /// (blank is no filter).
    pub fn parse(
        status: Option<&str>,
        job_type: Option<&str>,
        user_id: Option<Uuid>,
        device_id: Option<Uuid>,
    ) -> Result<Self, AppError> {
        let mut filter = JobFilter {
            user_id,
            device_id,
            ..Default::default()
        };
        if let Some(raw) = status.filter(|s| !s.trim().is_empty()) {
            let status: JobStatus = raw
                .parse()
                .map_err(|e| AppError::Validation(format!("status: {e}")))?;
            filter.statuses.push(status);
        }
        if let Some(raw) = job_type.filter(|s| !s.trim().is_empty()) {
            let job_type: JobType = raw
                .trim()
                .to_ascii_uppercase()
                .parse()
                .map_err(|e| AppError::Validation(format!("job_type: {e}")))?;
            filter.job_type = Some(job_type);
        }
        Ok(filter)
    }

    /// The jobs of the user's office this filter selects; a VIEW only ever their own requests.
    fn condition(&self, user: &AuthUser) -> Condition {
        let mut cond = Condition::all().add(Column::OrgId.eq(user.org.0));
        if !self.statuses.is_empty() {
            cond = cond.add(Column::Status.is_in(self.statuses.iter().map(|s| s.as_str())));
        }
        if let Some(t) = self.job_type {
            cond = cond.add(Column::JobType.eq(t.as_str()));
        }
        if let Some(u) = self.user_id {
            cond = cond.add(Column::RequestedByUserId.eq(u));
        }
        if let Some(d) = self.device_id {
            cond = cond.add(Column::DeviceId.eq(d));
        }
        if !user.is_admin() {
            cond = cond.add(Column::RequestedByUserId.eq(user.user.id));
        }
        cond
    }
}

/// One page of the jobs `user` may see, newest first.
pub async fn find_page<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    filter: &JobFilter,
    paging: Paging,
) -> Result<Page<JobView>, AppError> {
    let select = InstallJobs::find()
        .filter(filter.condition(user))
        .order_by_desc(Column::CreatedAt)
        .order_by_asc(Column::Id);
    let (total, jobs) = paging.fetch(db, select).await?;
    Ok(paging.page(total, views(db, jobs).await?))
}

/// The jobs `user` may see that changed after `since` (oldest change first, at most 200): what
/// a live page needs to bring itself up to date.
pub async fn changed_since<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    since: DateTime<Utc>,
) -> Result<Vec<JobView>, AppError> {
    let jobs = InstallJobs::find()
        .filter(JobFilter::default().condition(user))
        .filter(Column::UpdatedAt.gt(since))
        .order_by_asc(Column::UpdatedAt)
        .limit(200)
        .all(db)
        .await?;
    views(db, jobs).await
}
