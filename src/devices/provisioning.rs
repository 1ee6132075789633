//! The office's devices as ADMIN/DEV manage them (own office only): provisioning, listing,
//! renaming and changing the owner, token rotation and blocking. Every change is audited in
//! its transaction; tokens and codes never are.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::contact::ContactBook;
use super::enrollment::FreshCredentials;
use super::entity::{self, Column, Device, Devices};
use super::installed::{self, Installed};
use super::targeting::find_in_org;
use crate::accounts::user::{self, Users};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::{Label, OrgId};
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OwnerView {
    pub id: Uuid,
    pub email: String,
    pub nome: String,
}

/// A device as the admin sees it: never its token hash or enrollment code.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeviceView {
    pub id: Uuid,
    /// The name the admin gave the computer.
    pub hostname: String,
    /// The PC's own host name, as its agent reported it at pairing.
    pub reported_hostname: Option<String>,
    pub domain: Option<String>,
    pub os_version: Option<String>,
    pub agent_version: Option<String>,
    pub owner: Option<OwnerView>,
    pub is_allowed: bool,
    /// The registered X25519 key (public); null until the agent pairs.
    pub public_key: Option<String>,
    /// Until when the pending enrollment code can be used, if one is pending.
    pub enrollment_expires_at: Option<DateTime<Utc>>,
    pub token_rotated_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When the agent was uninstalled from the PC (until it is paired again).
    pub uninstalled_at: Option<DateTime<Utc>>,
    /// Certificates installed on the device now.
    pub installed: Vec<Installed>,
}

impl DeviceView {
    /// The fresher of the database's and memory's last contact (see [`super::contact`]).
    pub fn with_contact(mut self, book: &ContactBook) -> Self {
        if let Some(c) = book.unwritten(self.id) {
            self.last_seen_at = self.last_seen_at.max(c.last_seen_at);
            self.last_heartbeat_at = self.last_heartbeat_at.max(c.last_heartbeat_at);
            if c.agent_version.is_some() {
                self.agent_version = c.agent_version;
            }
        }
        self
    }
}

async fn views<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    devices: Vec<Device>,
) -> Result<Vec<DeviceView>, AppError> {
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    let mut installed = installed::by_device(conn, org.0, &ids).await?;
    let owner_ids: Vec<Uuid> = devices.iter().filter_map(|d| d.owner_user_id).collect();
    let owners: HashMap<Uuid, OwnerView> = if owner_ids.is_empty() {
        HashMap::new()
    } else {
        Users::find()
            .filter(user::entity::Column::Id.is_in(owner_ids))
            .all(conn)
            .await?
            .into_iter()
            .map(|u| {
                (
                    u.id,
                    OwnerView {
                        id: u.id,
                        email: u.email,
                        nome: u.nome,
                    },
                )
            })
            .collect()
    };
    Ok(devices
        .into_iter()
        .map(|d| DeviceView {
            owner: d.owner_user_id.and_then(|o| owners.get(&o).cloned()),
            installed: installed.remove(&d.id).unwrap_or_default(),
            id: d.id,
            hostname: d.hostname,
            reported_hostname: d.reported_hostname,
            domain: d.domain,
            os_version: d.os_version,
            agent_version: d.agent_version,
            is_allowed: d.is_allowed,
            // Uninstalled until paired again (pairing registers a key).
            uninstalled_at: d.uninstalled_at.filter(|_| d.public_key.is_none()),
            public_key: d.public_key,
            enrollment_expires_at: d
                .enrollment_expires_at
                .filter(|_| d.enrollment_code_hash.is_some()),
            token_rotated_at: d.token_rotated_at,
            last_seen_at: d.last_seen_at,
            last_heartbeat_at: d.last_heartbeat_at,
            created_at: d.created_at,
        })
        .collect())
}

async fn view<C: ConnectionTrait>(conn: &C, device: Device) -> Result<DeviceView, AppError> {
    let org = OrgId(device.org_id);
    let mut v = views(conn, org, vec![device]).await?;
    v.pop()
        .ok_or_else(|| AppError::Internal("device view missing".into()))
}

/// The secrets shown once, on provisioning and on rotation.
#[derive(Serialize, schemars::JsonSchema)]
pub struct CredentialsResponse {
    pub id: Uuid,
    pub device_token: String,
    pub enrollment_code: String,
    pub enrollment_expires_at: DateTime<Utc>,
    /// The PowerShell line that installs the agent on the PC and pairs it with the code.
    pub install_command: String,
    /// The SHA-256 fingerprint of the certificate this server serves HTTPS with, which the
    /// agent pins at pairing (`pair --fingerprint`); absent over plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_fingerprint: Option<String>,
    pub device: DeviceView,
}

fn credentials_response(
    state: &AppState,
    creds: &FreshCredentials,
    device: DeviceView,
) -> CredentialsResponse {
    let fingerprint = state.tls.as_ref().map(|served| served.fingerprint());
    CredentialsResponse {
        id: device.id,
        device_token: creds.token.expose().to_owned(),
        enrollment_code: creds.code.grouped(),
        enrollment_expires_at: creds.code_expires_at,
        install_command: super::distribution::install_command(
            &state.settings.public_url,
            &creds.code,
            fingerprint.as_ref(),
        ),
        server_fingerprint: fingerprint.map(String::from),
        device,
    }
}

/// A device's owner must be a user of its office.
async fn check_owner<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    owner: Uuid,
) -> Result<(), AppError> {
    Users::find_by_id(owner)
        .filter(user::entity::Column::OrgId.eq(org.0))
        .one(conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| AppError::Validation("owner_user_id: no such user in this office".into()))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(rename = "CreateDeviceBody")]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub hostname: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub agent_version: Option<String>,
    /// A user of the same office; then only they (and ADMIN/DEV) may target the device.
    #[serde(default)]
    pub owner_user_id: Option<Uuid>,
}

/// Provisions a device: its token and enrollment code, returned once and stored hashed.
pub async fn provision(
    state: &AppState,
    admin: &AuthUser,
    body: CreateBody,
) -> Result<CredentialsResponse, AppError> {
    admin.require_admin()?;
    let hostname = String::from(Label::required("hostname", body.hostname, "required")?);
    let domain = Label::optional("domain", body.domain)?.map(String::from);
    let os_version = Label::optional("os_version", body.os_version)?.map(String::from);
    let agent_version = Label::optional("agent_version", body.agent_version)?.map(String::from);
    let txn = crate::db::begin_write(&state.db).await?;
    if let Some(owner) = body.owner_user_id {
        check_owner(&txn, admin.org, owner).await?;
    }
    refuse_taken_name(&txn, admin.org, &hostname, None).await?;
    let now = Utc::now();
    let creds = FreshCredentials::generate(now);
    let id = Uuid::new_v4();
    let device = Devices::insert(entity::ActiveModel {
        id: Set(id),
        org_id: Set(admin.org.0),
        hostname: Set(hostname.clone()),
        domain: Set(domain.clone()),
        os_version: Set(os_version),
        agent_version: Set(agent_version),
        owner_user_id: Set(body.owner_user_id),
        device_token_hash: Set(Some(creds.token.hash().as_str().to_owned())),
        token_rotated_at: Set(Some(now)),
        enrollment_code_hash: Set(Some(creds.code.hash().as_str().to_owned())),
        enrollment_expires_at: Set(Some(creds.code_expires_at)),
        public_key: Set(None),
        is_allowed: Set(true),
        last_seen_at: Set(None),
        last_heartbeat_at: Set(None),
        created_at: Set(now),
        reported_hostname: Set(None),
        retired_at: Set(None),
        uninstalled_at: Set(None),
    })
    .exec_with_returning(&txn)
    .await?;
    audit::append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::DeviceProvisioned,
            Actor::User(admin.user.id),
        )
        .entity("device", id)
        .meta(json!({
            "hostname": hostname,
            "domain": domain,
            "owner_user_id": body.owner_user_id,
        }))
        .ip(admin.ip.clone()),
    )
    .await?;
    let device = view(&txn, device).await?.with_contact(&state.contacts);
    txn.commit().await?;
    Ok(credentials_response(state, &creds, device))
}

/// Refuses `name` when another computer of the office (not removed) has it, letter case
/// aside: two "PC-FISCAL-02" cannot be told apart in a list. Serialised per office.
async fn refuse_taken_name<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    name: &str,
    except: Option<Uuid>,
) -> Result<(), AppError> {
    crate::organizations::lock(conn, org.0).await?;
    let wanted = name.to_lowercase();
    let taken = Devices::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::RetiredAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .any(|d| Some(d.id) != except && d.hostname.to_lowercase() == wanted);
    if taken {
        return Err(AppError::Conflict(
            "a computer with that name already exists in this office".into(),
        ));
    }
    Ok(())
}

/// The office's devices by host name, with owner and what is installed on each.
pub async fn list_views<C: ConnectionTrait>(
    db: &C,
    org: OrgId,
    contacts: &ContactBook,
) -> Result<Vec<DeviceView>, AppError> {
    let devices = Devices::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::RetiredAt.is_null())
        .order_by_asc(Column::Hostname)
        .order_by_asc(Column::Id)
        .all(db)
        .await?;
    Ok(views(db, org, devices)
        .await?
        .into_iter()
        .map(|d| d.with_contact(contacts))
        .collect())
}

/// One device of the office.
pub async fn find_view<C: ConnectionTrait>(
    db: &C,
    org: OrgId,
    id: Uuid,
    contacts: &ContactBook,
) -> Result<DeviceView, AppError> {
    Ok(view(db, find_in_org(db, org, id).await?)
        .await?
        .with_contact(contacts))
}

/// A new token and enrollment code for device `id`, returned once; the old token and the
/// registered key stop working and its waiting installs are cancelled.
pub async fn rotate(
    state: &AppState,
    admin: &AuthUser,
    id: Uuid,
) -> Result<CredentialsResponse, AppError> {
    admin.require_admin()?;
    let txn = crate::db::begin_write(&state.db).await?;
    let device = find_in_org(&txn, admin.org, id).await?;
    let now = Utc::now();
    let creds = FreshCredentials::generate(now);
    let had_key = device.public_key.is_some();
    let device = Devices::update(entity::ActiveModel {
        id: Set(device.id),
        device_token_hash: Set(Some(creds.token.hash().as_str().to_owned())),
        token_rotated_at: Set(Some(now)),
        enrollment_code_hash: Set(Some(creds.code.hash().as_str().to_owned())),
        enrollment_expires_at: Set(Some(creds.code_expires_at)),
        public_key: Set(None),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    audit::append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::DeviceTokenRotated,
            Actor::User(admin.user.id),
        )
        .entity("device", device.id)
        .meta(json!({"public_key_cleared": had_key}))
        .ip(admin.ip.clone()),
    )
    .await?;
    // Installs asked for the old identity do not go to whoever pairs next.
    cancel_installs_for(&txn, admin, device.id, "device_rotated").await?;
    let device = view(&txn, device).await?.with_contact(&state.contacts);
    super::cache::announce(&txn, device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.id);
    state.job_hub.changed();
    Ok(credentials_response(state, &creds, device))
}

/// Cancels the installs still waiting for a device that was rotated or blocked.
async fn cancel_installs_for<C: ConnectionTrait>(
    conn: &C,
    admin: &AuthUser,
    device: Uuid,
    reason: &str,
) -> Result<(), AppError> {
    crate::jobs::permission::cancel_open_installs(
        conn,
        admin.org,
        crate::jobs::permission::Whose::Device(device),
        Actor::User(admin.user.id),
        admin.ip.clone(),
        reason,
    )
    .await
    .map(|_| ())
}

/// Cancels the installs still waiting for `device` and hands everything installed there a
/// `REMOVE` job (a blocked device still performs its removals); returns the devices to wake.
async fn end_everything_on<C: ConnectionTrait>(
    conn: &C,
    admin: &AuthUser,
    device: Uuid,
    reason: &str,
) -> Result<Vec<Uuid>, AppError> {
    cancel_installs_for(conn, admin, device, reason).await?;
    crate::jobs::permission::remove_installations_of(
        conn,
        admin.org,
        crate::jobs::permission::Whose::Device(device),
        Actor::User(admin.user.id),
        admin.ip.clone(),
        "device_blocked",
    )
    .await
}

/// A field that may be sent as `null` to clear it: absent is `None`, `null` is `Some(None)`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(rename = "PatchDeviceBody")]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    pub hostname: Option<String>,
    /// A user of the office, or `null` for a device any user of the office may target.
    #[serde(default, deserialize_with = "present")]
    pub owner_user_id: Option<Option<Uuid>>,
}

/// Renames device `id` or changes its owner; audited with the before and after.
pub async fn update(
    state: &AppState,
    admin: &AuthUser,
    id: Uuid,
    body: PatchBody,
) -> Result<DeviceView, AppError> {
    admin.require_admin()?;
    let hostname = match body.hostname {
        Some(h) => Some(String::from(Label::required(
            "hostname",
            h,
            "must not be empty",
        )?)),
        None => None,
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let device = find_in_org(&txn, admin.org, id).await?;
    if let Some(Some(owner)) = body.owner_user_id {
        check_owner(&txn, admin.org, owner).await?;
    }
    let mut active = entity::ActiveModel {
        id: Set(device.id),
        ..Default::default()
    };
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    if let Some(h) = hostname.filter(|h| *h != device.hostname) {
        refuse_taken_name(&txn, admin.org, &h, Some(device.id)).await?;
        before.insert("hostname".into(), json!(device.hostname));
        after.insert("hostname".into(), json!(h));
        active.hostname = Set(h);
    }
    if let Some(owner) = body.owner_user_id.filter(|o| *o != device.owner_user_id) {
        before.insert("owner_user_id".into(), json!(device.owner_user_id));
        after.insert("owner_user_id".into(), json!(owner));
        active.owner_user_id = Set(owner);
    }
    if after.is_empty() {
        let device = view(&txn, device).await?.with_contact(&state.contacts);
        txn.rollback().await?;
        return Ok(device);
    }
    let device = Devices::update(active).exec(&txn).await?;
    audit::append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::DeviceUpdated,
            Actor::User(admin.user.id),
        )
        .entity("device", device.id)
        .meta(json!({"before": before, "after": after}))
        .ip(admin.ip.clone()),
    )
    .await?;
    let device = view(&txn, device).await?.with_contact(&state.contacts);
    super::cache::announce(&txn, device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.id);
    Ok(device)
}

/// Blocks (`allowed = false`: its waiting installs are cancelled and everything installed there
/// is handed a `REMOVE` job) or unblocks device `id`.
pub async fn set_allowed(
    state: &AppState,
    admin: &AuthUser,
    id: Uuid,
    allowed: bool,
) -> Result<DeviceView, AppError> {
    admin.require_admin()?;
    let txn = crate::db::begin_write(&state.db).await?;
    let device = find_in_org(&txn, admin.org, id).await?;
    if device.is_allowed == allowed {
        let device = view(&txn, device).await?.with_contact(&state.contacts);
        txn.rollback().await?;
        return Ok(device);
    }
    let device = Devices::update(entity::ActiveModel {
        id: Set(device.id),
        is_allowed: Set(allowed),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    let action = if allowed {
        AuditAction::DeviceUnblocked
    } else {
        AuditAction::DeviceBlocked
    };
    audit::append(
        &txn,
        Entry::new(admin.org, action, Actor::User(admin.user.id))
            .entity("device", device.id)
            .meta(json!({"hostname": device.hostname}))
            .ip(admin.ip.clone()),
    )
    .await?;
    if !allowed {
        end_everything_on(&txn, admin, device.id, "device_blocked").await?;
    }
    let device = view(&txn, device).await?.with_contact(&state.contacts);
    super::cache::announce(&txn, device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.id);
    state.job_hub.changed();
    if !allowed {
        state.job_hub.notify(device.id);
    }
    Ok(device)
}

/// Removes computer `id` from the office: it is blocked, what is installed there is handed a
/// `REMOVE` job (a blocked device still performs its removals), its pairing code is void, and
/// it leaves the lists and the request form. Its rows stay: the history still names it.
/// Audited `DEVICE_REMOVED`.
pub async fn retire(state: &AppState, admin: &AuthUser, id: Uuid) -> Result<(), AppError> {
    admin.require_admin()?;
    let txn = crate::db::begin_write(&state.db).await?;
    let device = find_in_org(&txn, admin.org, id).await?;
    let now = Utc::now();
    Devices::update(entity::ActiveModel {
        id: Set(device.id),
        is_allowed: Set(false),
        retired_at: Set(Some(now)),
        enrollment_code_hash: Set(None),
        enrollment_expires_at: Set(None),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    let removing = end_everything_on(&txn, admin, device.id, "device_removed").await?;
    audit::append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::DeviceRemoved,
            Actor::User(admin.user.id),
        )
        .entity("device", device.id)
        .meta(json!({
            "hostname": device.hostname,
            "reported_hostname": device.reported_hostname,
            "had_installations": !removing.is_empty(),
        }))
        .ip(admin.ip.clone()),
    )
    .await?;
    super::cache::announce(&txn, device.id).await?;
    txn.commit().await?;
    state.device_cache.forget(device.id);
    state.job_hub.changed();
    state.job_hub.notify(device.id);
    Ok(())
}
