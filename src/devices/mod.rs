//! The office's PCs that run the agent: provisioning, pairing, device authentication and
//! heartbeats.

pub mod admin;
pub mod agent;
pub mod authentication;
pub mod cache;
pub mod contact;
pub mod distribution;
mod enrollment;
mod installed;
pub mod policy;

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;

pub use enrollment::EnrollmentCode;

use crate::crypto::{DevicePublicKey, Token};
use crate::domain::{OrgId, Role};
use crate::error::AppError;
use crate::identity::AuthUser;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub hostname: String,
        pub domain: Option<String>,
        pub os_version: Option<String>,
        pub agent_version: Option<String>,
        /// When set, only this user (and ADMIN/DEV) may send certificates to the device.
        pub owner_user_id: Option<Uuid>,
        pub device_token_hash: Option<String>,
        pub token_rotated_at: Option<DateTimeUtc>,
        pub enrollment_code_hash: Option<String>,
        pub enrollment_expires_at: Option<DateTimeUtc>,
        /// X25519 public key the install payload is sealed to (standard base64).
        pub public_key: Option<String>,
        pub is_allowed: bool,
        pub last_seen_at: Option<DateTimeUtc>,
        pub last_heartbeat_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Column;
pub type Devices = entity::Entity;
pub type Device = entity::Model;

/// How long an enrollment code can be exchanged for the device's credentials.
pub const ENROLLMENT_TTL_MIN: i64 = 15;

/// A device's fresh secrets, shown once to the admin: only their hashes are stored.
pub struct FreshCredentials {
    pub token: Token,
    pub code: EnrollmentCode,
    pub code_expires_at: DateTime<Utc>,
}

impl FreshCredentials {
    pub fn generate(now: DateTime<Utc>) -> Self {
        Self {
            token: Token::generate(),
            code: EnrollmentCode::generate(),
            code_expires_at: now + Duration::minutes(ENROLLMENT_TTL_MIN),
        }
    }
}

/// The device `id` of office `org`; another office's device is "not found", like a missing one.
pub async fn find_in_org<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    id: Uuid,
) -> Result<Device, AppError> {
    Devices::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
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

/// What a device presents as its key, checked against the one it registered.
pub enum KeyCheck {
    /// No key registered yet: this one will be.
    Register(String),
    /// The registered key.
    Same,
}

/// Parses `presented` (standard base64 of the raw 32 X25519 bytes) and compares it with the
/// device's key: a different key is refused until an admin rotates the device.
pub fn check_key(device: &Device, presented: &str) -> Result<KeyCheck, AppError> {
    let key = DevicePublicKey::parse(presented)
        .map_err(|e| AppError::Validation(format!("public_key: {e}")))?
        .to_base64();
    match &device.public_key {
        None => Ok(KeyCheck::Register(key)),
        Some(registered) if *registered == key => Ok(KeyCheck::Same),
        Some(_) => Err(AppError::Conflict(
            "this device already registered a different public key; an admin must rotate the device first".into(),
        )),
    }
}
