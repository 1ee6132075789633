//! The agent is being uninstalled from its PC (`Certhub.Agent.exe uninstall`, after it removed
//! everything it installed and reported it): what is still open for the device closes as
//! removed by the uninstall (`CERT_REMOVED_UNINSTALL`), its waiting installs are cancelled, and
//! the device is marked uninstalled with its token and key void, so nothing more reaches that
//! PC until an admin pairs it again. Audited `DEVICE_UNINSTALLED`.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use serde_json::json;

use super::claim::actor;
use super::lease::RemovalMode;
use crate::audit::{self, AuditAction, Entry};
use crate::devices::{Devices, entity as device};
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::{CleanupMode, CleanupResponse};
use crate::state::AppState;

pub async fn uninstalled(
    state: &AppState,
    device: &AuthDevice,
) -> Result<CleanupResponse, AppError> {
    let txn = crate::db::begin_write(&state.db).await?;
    let closed = super::cleanup::close_open(
        &txn,
        device,
        None,
        RemovalMode::Cleanup(CleanupMode::Uninstall),
    )
    .await?;
    super::permission::cancel_open_installs(
        &txn,
        device.org,
        super::permission::Whose::Device(device.device.id),
        actor(device),
        device.ip.clone(),
        "agent_uninstalled",
    )
    .await?;
    Devices::update(device::ActiveModel {
        id: Set(device.device.id),
        uninstalled_at: Set(Some(Utc::now())),
        device_token_hash: Set(None),
        public_key: Set(None),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    audit::append(
        &txn,
        Entry::new(device.org, AuditAction::DeviceUninstalled, actor(device))
            .entity("device", device.device.id)
            .meta(json!({"hostname": device.device.hostname, "closed": closed}))
            .ip(device.ip.clone()),
    )
    .await?;
    crate::devices::cache::announce(&txn, device.device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.device.id);
    state.job_hub.changed();
    tracing::info!(device_id = %device.device.id, closed, "agent uninstalled");
    Ok(CleanupResponse { closed })
}
