//! A device's inbox: its `PENDING` and `IN_PROGRESS` jobs (`INSTALL` and `REMOVE`), and the
//! long-poll that waits for one.

use std::collections::HashMap;

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect};

use super::entity::{Column, InstallJobs};
use super::lease::{self, Leases};
use super::status::{JobStatus, JobType};
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::{AgentJob, AgentJobs, MAX_WAIT_SECS};
use crate::state::AppState;

/// The most jobs a device is given at once.
const MAX_LISTED: u64 = 100;

/// This device's `PENDING` and `IN_PROGRESS` jobs, oldest first. With `wait` in `1..=30`
/// seconds and nothing to do, it long-polls: it answers as soon as a job for this device
/// becomes `PENDING` (the committer wakes it through the job hub), or with an empty list once
/// the wait is over. No database connection is held while it waits.
///
/// An empty answer comes up to a tenth of `wait` early, at random: agents that started
/// together (after a power cut, a server restart) drift apart instead of renewing their
/// long-polls in one burst forever.
pub async fn open_jobs_waiting(
    state: &AppState,
    device: &AuthDevice,
    wait: Option<i64>,
) -> Result<AgentJobs, AppError> {
    let wait = match wait.unwrap_or(0) {
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
    let look = || Box::pin(open_jobs(state, device));
    let Some(wait) = wait else {
        let jobs = look().await?;
        return Ok(AgentJobs { jobs });
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
    Ok(AgentJobs { jobs })
}

/// A random duration up to `max`.
fn jitter(max: std::time::Duration) -> std::time::Duration {
    let r = aes_gcm::aead::rand_core::RngCore::next_u32(&mut aes_gcm::aead::OsRng);
    max.mul_f64(f64::from(r) / f64::from(u32::MAX))
}

/// This device's `PENDING` and `IN_PROGRESS` jobs (a blocked device's `REMOVE` jobs), oldest first, with their certificates'
/// names and thumbprints (a `REMOVE` job's is the installed one's).
async fn open_jobs(state: &AppState, device: &AuthDevice) -> Result<Vec<AgentJob>, AppError> {
    let mut query = InstallJobs::find()
        .filter(Column::OrgId.eq(device.org.0))
        .filter(Column::DeviceId.eq(device.device.id));
    if !device.device.is_allowed {
        // Blocked: its removals only.
        query = query.filter(Column::JobType.eq(JobType::Remove.as_str()));
    }
    let jobs = query
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
