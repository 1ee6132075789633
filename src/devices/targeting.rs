//! Who may send certificates to which device: its owner and ADMIN/DEV may; a device without an
//! owner can be targeted by any user of its office. Another office's device is "not found".

use sea_orm::entity::prelude::*;

use super::entity::{Column, Device, Devices};
use crate::domain::{OrgId, Role};
use crate::error::AppError;
use crate::identity::AuthUser;

/// The device `id` of office `org`; another office's device, or one removed from the office,
/// is "not found", like a missing one.
pub async fn find_in_org<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    id: Uuid,
) -> Result<Device, AppError> {
    Devices::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::RetiredAt.is_null())
        .one(conn)
        .await?
        .ok_or_else(|| AppError::NotFound("no such device in this office".into()))
}

/// The allowed devices of the user's office `user` may send certificates to: their own first,
/// then by host name.
pub async fn targetable<C: ConnectionTrait>(
    conn: &C,
    user: &AuthUser,
) -> Result<Vec<Device>, AppError> {
    use sea_orm::QueryOrder;
    let mut devices: Vec<Device> = Devices::find()
        .filter(Column::OrgId.eq(user.org.0))
        .filter(Column::IsAllowed.eq(true))
        .order_by_asc(Column::Hostname)
        .all(conn)
        .await?
        .into_iter()
        .filter(|d| may_target(d, user))
        .collect();
    devices.sort_by_key(|d| d.owner_user_id != Some(user.user.id));
    Ok(devices)
}

/// Whether `user` may send certificates to `device`: its owner and ADMIN/DEV may; a device
/// without an owner can be targeted by any user of its office.
pub fn may_target(device: &Device, user: &AuthUser) -> bool {
    device.org_id == user.org.0 && may_be_targeted_by(device, user.user.id, user.role)
}

/// The targeting rule for a user of the device's office, by id and role (also re-checked when
/// the agent claims the job and fetches its payload).
pub fn may_be_targeted_by(device: &Device, user_id: Uuid, role: Role) -> bool {
    matches!(role, Role::Admin | Role::Dev) || device.owner_user_id.is_none_or(|o| o == user_id)
}
