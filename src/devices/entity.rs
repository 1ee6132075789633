//! The `devices` table: the office's PCs that run the agent.

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
    /// The PC's own host name, as its agent reported it at pairing (`hostname` is the admin's).
    pub reported_hostname: Option<String>,
    /// When the computer was removed from the office; its rows stay for the history.
    pub retired_at: Option<DateTimeUtc>,
    /// When the agent told the server it was uninstalled from the PC.
    pub uninstalled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

pub type Devices = Entity;
pub type Device = Model;
