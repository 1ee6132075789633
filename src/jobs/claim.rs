//! Claiming a job: `PENDING` -> `IN_PROGRESS`, with a fresh one-time payload token for an
//! `INSTALL` job (a `REMOVE` job has no payload). Permission is checked again first.

use chrono::{DateTime, Duration, Utc};
use sea_orm::Condition;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use serde_json::json;

use super::entity::{Column, InstallJobs, find_for_device};
use super::permission;
use super::status::{Event, JobStatus, JobType};
use super::transition::{Changes, apply};
use crate::audit::Actor;
use crate::crypto::Token;
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::ClaimResponse;
use crate::state::AppState;

/// A payload token is good for this long after the claim (seed S6).
pub const PAYLOAD_TOKEN_TTL_SECS: i64 = 120;

pub(super) fn actor(device: &AuthDevice) -> Actor {
    Actor::Device(device.device.id)
}

/// A job the device already holds `IN_PROGRESS` gets a new payload token once its last claim is
/// this old, or sooner when that claim's token was used or has expired.
pub const RECLAIM_AFTER_SECS: i64 = 10;

/// `PENDING` -> `IN_PROGRESS`, with a fresh
/// one-time payload token for an `INSTALL` job (a `REMOVE` job has no payload).
///
/// Claiming again an `INSTALL` job this device holds `IN_PROGRESS` issues a new token and voids
/// the old one (the agent lost the answer, or the download failed), except within
/// [`RECLAIM_AFTER_SECS`] of the last claim while its token is still unused and valid: then it
/// is 409, which is what lets exactly one of many concurrent claims through.
pub async fn claim(
    state: &AppState,
    device: &AuthDevice,
    id: Uuid,
) -> Result<ClaimResponse, AppError> {
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let job = find_for_device(&txn, device, id).await?;
    let job_type = job.job_type()?;
    if job_type != JobType::Remove {
        device.require_allowed()?;
    }
    if job_type == JobType::Remove {
        if job.status()? == JobStatus::InProgress {
            return Err(AppError::Conflict(
                "this REMOVE job is already claimed: remove the certificate and report the result"
                    .into(),
            ));
        }
        let job = apply(
            &txn,
            &job,
            Event::Claim,
            actor(device),
            device.ip.clone(),
            Vec::new(),
            json!({"installation_id": job.lease_id}),
        )
        .await?;
        txn.commit().await?;
        state.job_hub.changed();
        return Ok(ClaimResponse {
            job_id: job.id,
            status: job.status()?.into(),
            job_type: job_type.into(),
            payload_token: None,
            payload_token_expires_at: None,
            expires_in: None,
        });
    }
    if let Some(why) = permission::recheck(&txn, &job, &device.device).await? {
        let refused =
            permission::end_revoked(&txn, &job, why, actor(device), device.ip.clone()).await?;
        txn.commit().await?;
        state.job_hub.changed();
        return Err(refused);
    }
    let token = Token::generate();
    let expires = now + Duration::seconds(PAYLOAD_TOKEN_TTL_SECS);
    let mut changes: Changes = vec![
        (
            Column::PayloadTokenHash,
            Some(token.hash().as_str().to_owned()).into(),
        ),
        (Column::PayloadTokenExpiresAt, Some(expires).into()),
        (
            Column::PayloadTokenUsedAt,
            Option::<DateTime<Utc>>::None.into(),
        ),
    ];
    let event = if job.status()? == JobStatus::InProgress {
        // Voids the old token in the same conditional write that checks it may be replaced.
        let mut update = InstallJobs::update_many();
        for (column, value) in changes.drain(..) {
            update = update.col_expr(column, Expr::value(value));
        }
        let replaced = update
            .filter(Column::Id.eq(job.id))
            .filter(Column::Status.eq(JobStatus::InProgress.as_str()))
            .filter(
                Condition::any()
                    .add(Column::PayloadTokenHash.is_null())
                    .add(Column::PayloadTokenUsedAt.is_not_null())
                    .add(Column::PayloadTokenExpiresAt.lte(now))
                    .add(Column::ClaimedAt.lte(now - Duration::seconds(RECLAIM_AFTER_SECS))),
            )
            .exec(&txn)
            .await?
            .rows_affected;
        if replaced != 1 {
            return Err(AppError::Conflict(format!(
                "this job was claimed less than {RECLAIM_AFTER_SECS} s ago and its payload token is unused; use it, or claim again after {RECLAIM_AFTER_SECS} s"
            )));
        }
        Event::Reclaim
    } else {
        // `apply` refuses anything but `PENDING`, and a concurrent claim with a 409.
        Event::Claim
    };
    let job = apply(
        &txn,
        &job,
        event,
        actor(device),
        device.ip.clone(),
        changes,
        json!({"payload_token_expires_at": expires}),
    )
    .await?;
    txn.commit().await?;
    state.job_hub.changed();
    Ok(ClaimResponse {
        job_id: job.id,
        status: job.status()?.into(),
        job_type: job_type.into(),
        payload_token: Some(token.expose().to_owned()),
        payload_token_expires_at: Some(expires),
        expires_in: Some(PAYLOAD_TOKEN_TTL_SECS),
    })
}
