//! A device's open installations, so its agent can reconcile them with its own record
//! (`installed_thumbprints.json`, which the user may edit) at start-up and at every cleanup: a
//! certificate the server lists is removed when due.

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect};

use super::lease::{Column, Leases};
use super::names::Names;
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::{OpenInstallation, OpenInstallations};
use crate::state::AppState;

/// The most a device is told about at once (an agent holds a handful).
const MAX_LISTED: u64 = 500;

/// This device's installations not removed yet, oldest first, with the certificate's name and
/// the lease's end.
pub async fn list(state: &AppState, device: &AuthDevice) -> Result<OpenInstallations, AppError> {
    let leases = Leases::find()
        .filter(Column::OrgId.eq(device.org.0))
        .filter(Column::DeviceId.eq(device.device.id))
        .filter(Column::RemovedAt.is_null())
        .order_by_asc(Column::InstalledAt)
        .order_by_asc(Column::Id)
        .limit(MAX_LISTED)
        .all(&state.db)
        .await?;
    let names = Names::load(
        &state.db,
        leases.iter().map(|l| l.cert_id),
        std::iter::empty(),
        std::iter::empty(),
    )
    .await?;
    let installations = leases
        .into_iter()
        .map(|l| OpenInstallation {
            installation_id: l.id,
            job_id: l.job_id,
            cert_name: Some(names.cert(l.cert_id).name).filter(|n| !n.is_empty()),
            thumbprint: l.thumbprint,
            installed_at: Some(l.installed_at),
            expires_at: l.expires_at,
        })
        .collect();
    Ok(OpenInstallations { installations })
}
