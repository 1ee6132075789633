//! The certificates installed on a device right now: open rows of `installations` (written by
//! install jobs), with the certificate's name.

use std::collections::HashMap;

use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};

/// Read-only view of `installations`, just what the device list shows.
mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "installations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub device_id: Uuid,
        pub cert_id: Uuid,
        pub user_id: Option<Uuid>,
        pub job_id: Uuid,
        pub thumbprint: String,
        pub installed_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub removed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub installation_id: Uuid,
    pub cert_id: Uuid,
    pub name: Option<String>,
    pub thumbprint: String,
    pub installed_by_user_id: Option<Uuid>,
    pub installed_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
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
        });
    }
    Ok(out)
}
