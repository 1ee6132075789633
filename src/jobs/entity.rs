//! The `cert_install_jobs` table: install and `REMOVE` jobs, and finding one of an office.

use sea_orm::entity::prelude::*;

use super::status::{JobStatus, JobType};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthDevice;

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
    /// Why a `REMOVE` job was made ([`super::removal::RemovalCause`]).
    pub removal_cause: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

pub type InstallJobs = Entity;
pub type InstallJob = Model;

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
    Entity::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
        .one(conn)
        .await?
        .ok_or_else(not_found)
}

/// A job of this device; another device's or office's is "not found", like a missing one.
pub async fn find_for_device<C: ConnectionTrait>(
    conn: &C,
    device: &AuthDevice,
    id: Uuid,
) -> Result<InstallJob, AppError> {
    let job = find(conn, device.org, id).await?;
    if job.device_id == device.device.id {
        Ok(job)
    } else {
        Err(not_found())
    }
}
