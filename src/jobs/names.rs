//! The names of the certificates, devices and users that jobs and installations refer to, read
//! in three queries for a whole page.

use std::collections::HashMap;

use sea_orm::QuerySelect;
use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::accounts::user::{Users, entity::Column as UserColumn};
use crate::certificates::entity::{Column as CertColumn, Entity as Certificates};
use crate::devices::entity::{Column as DeviceColumn, Devices};
use crate::error::AppError;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeviceRef {
    pub id: Uuid,
    pub hostname: String,
}

/// The names of the certificates, devices and users some rows refer to, read in three queries.
pub struct Names {
    certs: HashMap<Uuid, String>,
    devices: HashMap<Uuid, String>,
    users: HashMap<Uuid, String>,
}

fn unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl Names {
    pub async fn load<C: ConnectionTrait>(
        db: &C,
        certs: impl Iterator<Item = Uuid>,
        devices: impl Iterator<Item = Uuid>,
        users: impl Iterator<Item = Uuid>,
    ) -> Result<Self, AppError> {
        let certs = Certificates::find()
            .select_only()
            .column(CertColumn::Id)
            .column(CertColumn::Name)
            .filter(CertColumn::Id.is_in(unique(certs)))
            .into_tuple::<(Uuid, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let devices = Devices::find()
            .select_only()
            .column(DeviceColumn::Id)
            .column(DeviceColumn::Hostname)
            .filter(DeviceColumn::Id.is_in(unique(devices)))
            .into_tuple::<(Uuid, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let users = Users::find()
            .select_only()
            .column(UserColumn::Id)
            .column(UserColumn::Nome)
            .filter(UserColumn::Id.is_in(unique(users)))
            .into_tuple::<(Uuid, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        Ok(Self {
            certs,
            devices,
            users,
        })
    }

    pub fn cert(&self, id: Uuid) -> Named {
        Named {
            id,
            name: self.certs.get(&id).cloned().unwrap_or_default(),
        }
    }

    pub fn device(&self, id: Uuid) -> DeviceRef {
        DeviceRef {
            id,
            hostname: self.devices.get(&id).cloned().unwrap_or_default(),
        }
    }

    pub fn user(&self, id: Option<Uuid>) -> Option<Named> {
        id.map(|id| Named {
            id,
            name: self.users.get(&id).cloned().unwrap_or_default(),
        })
    }
}
