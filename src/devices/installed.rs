//! The certificates installed on a device right now: open installation leases (written by
//! install jobs, see `jobs::lease`), with the certificate's name.

use std::collections::HashMap;

use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::jobs::lease::entity;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Installed {
    pub installation_id: Uuid,
    pub cert_id: Uuid,
    pub name: Option<String>,
    pub thumbprint: String,
    pub installed_by_user_id: Option<Uuid>,
    pub installed_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Set once the sweep found it past `expires_at` + `lease_grace_minutes`, still here.
    pub overdue_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The open installations of `devices` (all of office `org`), by device.
pub async fn by_device<C: ConnectionTrait>(
    conn: &C,
    org: i64,
    devices: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Installed>>, DbErr> {
    let rows = entity::Entity::find()
        .filter(entity::Column::OrgId.eq(org))
        .filter(entity::Column::DeviceId.is_in(devices.iter().copied()))
        .filter(entity::Column::RemovedAt.is_null())
        .all(conn)
        .await?;
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let names: HashMap<Uuid, String> = Certificates::find()
        .filter(CertColumn::Id.is_in(rows.iter().map(|r| r.cert_id)))
        .all(conn)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut out: HashMap<Uuid, Vec<Installed>> = HashMap::new();
    for r in rows {
        out.entry(r.device_id).or_default().push(Installed {
            installation_id: r.id,
            cert_id: r.cert_id,
            name: names.get(&r.cert_id).cloned(),
            thumbprint: r.thumbprint,
            installed_by_user_id: r.user_id,
            installed_at: r.installed_at,
            expires_at: r.expires_at,
            overdue_at: r.overdue_at,
        });
    }
    Ok(out)
}
