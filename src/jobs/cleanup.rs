//! The agent's cleanup report (the 18:00 rule, a lease's end, a manual or start-up cleanup):
//! the certificates it removed close their installations.

use std::collections::HashMap;

use sea_orm::entity::prelude::*;

use super::claim::actor;
use super::lease::{self, Leases, RemovalMode};
use crate::domain::Thumbprint;
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::{CleanupRequest, CleanupResponse};
use crate::state::AppState;

/// The most certificates one report may name.
const MAX_REMOVED: usize = 200;

/// Closes `device`'s open leases as removed by `mode`: those of the certificates in `removed`
/// (thumbprint -> key deleted), or all of them. Returns how many it closed.
pub(super) async fn close_open<C: ConnectionTrait>(
    conn: &C,
    device: &AuthDevice,
    removed: Option<&HashMap<String, bool>>,
    mode: RemovalMode,
) -> Result<u64, AppError> {
    let mut open = Leases::find()
        .filter(lease::Column::OrgId.eq(device.org.0))
        .filter(lease::Column::DeviceId.eq(device.device.id))
        .filter(lease::Column::RemovedAt.is_null());
    if let Some(removed) = removed {
        open = open.filter(lease::Column::Thumbprint.is_in(removed.keys().cloned()));
    }
    let mut closed = 0;
    for l in open.all(conn).await? {
        let key_deleted = removed.and_then(|r| r.get(&l.thumbprint).copied());
        if lease::close(
            conn,
            &l,
            mode,
            key_deleted,
            actor(device),
            device.ip.clone(),
        )
        .await?
        {
            closed += 1;
        }
    }
    Ok(closed)
}

/// Closes this device's open leases of the certificates it reports removed, audits
/// `CERT_REMOVED_18H` for each and cancels the `REMOVE` jobs that were still waiting for them.
pub async fn report_cleanup(
    state: &AppState,
    device: &AuthDevice,
    body: CleanupRequest,
) -> Result<CleanupResponse, AppError> {
    if body.removed.len() > MAX_REMOVED {
        return Err(AppError::Validation(format!(
            "removed: at most {MAX_REMOVED} certificates"
        )));
    }
    let mut removed: HashMap<String, bool> = HashMap::new();
    for (i, r) in body.removed.iter().enumerate() {
        let t = Thumbprint::parse(&r.thumbprint)
            .map_err(|e| AppError::Validation(format!("removed[{i}].thumbprint: {e}")))?;
        removed.insert(t.as_str().to_owned(), r.key_deleted);
    }
    let mode = RemovalMode::Cleanup(body.mode);
    let txn = crate::db::begin_write(&state.db).await?;
    let closed = close_open(&txn, device, Some(&removed), mode).await?;
    txn.commit().await?;
    state.job_hub.changed();
    if closed > 0 {
        tracing::info!(device_id = %device.device.id, mode = mode.as_str(), closed, "installations removed");
    }
    Ok(CleanupResponse { closed })
}
