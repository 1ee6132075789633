//! Checking the office's hash chain from the API and the portal: all of it, or only the rows
//! written since it was last found intact (the checkpoint kept in memory).

use serde::Serialize;

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
pub async fn verify_chain(state: &AppState, admin: &AuthUser) -> Result<VerifyView, AppError> {
    verify_since(state, admin, Checkpoint::default()).await
}

/// The office's hash chain, checked from where it was last found intact: only the rows
/// written since are read (ADMIN/DEV). A break forgets the checkpoint.
pub async fn verify_new_rows(state: &AppState, admin: &AuthUser) -> Result<VerifyView, AppError> {
    let from = state.audit_checkpoints.get(admin.org);
    verify_since(state, admin, from).await
}

async fn verify_since(
    state: &AppState,
    admin: &AuthUser,
    from: Checkpoint,
) -> Result<VerifyView, AppError> {
    admin.require_admin()?;
    let (report, reached) = verify_org_from(&state.db, admin.org, from).await?;
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
