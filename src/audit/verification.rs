//! Checking the office's hash chain from the API and the portal: all of it, or only the rows
//! written since it was last found intact (the checkpoint kept in memory). A break found is
//! kept ([`super::breaks`]) until acknowledged; the hourly walk checks every office in full.

use serde::Serialize;

use super::breaks::{self, FoundBy};
use super::chain::{Checkpoint, verify_org_from};
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BreakView {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VerifyView {
    pub ok: bool,
    /// Rows checked before the first break (all of them when `ok`).
    pub rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_break: Option<BreakView>,
}

/// The office's hash chain, checked now from the first row (ADMIN/DEV).
pub async fn verify_chain(
    state: &AppState,
    admin: &AuthUser,
    by: FoundBy,
) -> Result<VerifyView, AppError> {
    verify_since(state, admin, Checkpoint::default(), by).await
}

/// The office's hash chain, checked from where it was last found intact: only the rows
/// written since are read (ADMIN/DEV). A break forgets the checkpoint.
pub async fn verify_new_rows(
    state: &AppState,
    admin: &AuthUser,
    by: FoundBy,
) -> Result<VerifyView, AppError> {
    let from = state.audit_checkpoints.get(admin.org);
    verify_since(state, admin, from, by).await
}

async fn verify_since(
    state: &AppState,
    admin: &AuthUser,
    from: Checkpoint,
    by: FoundBy,
) -> Result<VerifyView, AppError> {
    admin.require_admin()?;
    let (report, reached) = verify_org_from(&state.db, admin.org, from).await?;
    if let Some(found) = &report.first_break {
        breaks::keep(&state.db, found, by).await?;
    }
    match reached {
        Some(at) => state.audit_checkpoints.advance(admin.org, at),
        None => state.audit_checkpoints.reset(admin.org),
    }
    Ok(VerifyView {
        ok: report.first_break.is_none(),
        rows: report.rows,
        first_break: report.first_break.map(|b| BreakView {
            seq: b.seq,
            reason: b.reason,
        }),
    })
}

/// Walks every office's chain in full and keeps the breaks found (the hourly job, and
/// `certhub audit verify`). Returns how many offices have a break.
pub async fn walk_all(
    db: &sea_orm::DatabaseConnection,
    by: FoundBy,
) -> Result<Vec<super::Break>, AppError> {
    use sea_orm::EntityTrait;
    let orgs = crate::organizations::entity::Entity::find().all(db).await?;
    let mut found = Vec::new();
    for org in orgs {
        let report = super::verify_org(db, crate::domain::OrgId(org.id)).await?;
        if let Some(b) = report.first_break {
            breaks::keep(db, &b, by).await?;
            found.push(b);
        }
    }
    Ok(found)
}
