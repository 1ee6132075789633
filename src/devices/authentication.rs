//! Whether a device's bearer token is good: a DEVICE access token minted with the device token
//! stored now (not one rotated away since). A blocked device's token is good for its removals
//! only ([`AuthDevice::require_allowed`]). The row comes from
//! [`super::cache`], which every change to it (block, rotation) empties of that device, in
//! every server process; the contact is noted in memory ([`super::contact`]).

use chrono::Utc;
use sea_orm::EntityTrait;

use super::Devices;
use crate::accounts::access_token::{Subject, device_binding};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::state::AppState;

pub async fn device_for_token(
    state: &AppState,
    token: Option<String>,
    ip: Option<String>,
) -> Result<AuthDevice, AppError> {
    let token = token.ok_or(AppError::Unauthorized)?;
    let claims = state.tokens.decode(&token)?;
    if claims.kind != Subject::Device {
        return Err(AppError::Forbidden("this endpoint is for devices".into()));
    }
    let device = match state.device_cache.get(claims.sub) {
        Some(device) => device,
        None => {
            let ticket = state.device_cache.ticket();
            let device = Devices::find_by_id(claims.sub)
                .one(&state.db)
                .await?
                .ok_or(AppError::Unauthorized)?;
            state.device_cache.put(device.clone(), ticket);
            device
        }
    };
    if device.org_id != claims.org {
        return Err(AppError::Unauthorized);
    }
    // Minted with the device token stored now, not one rotated away since.
    let bound = match (&claims.bind, &device.device_token_hash) {
        (Some(bind), Some(stored)) => bool::from(subtle::ConstantTimeEq::ct_eq(
            bind.as_bytes(),
            device_binding(stored).as_bytes(),
        )),
        _ => false,
    };
    if !bound {
        return Err(AppError::Unauthorized);
    }
    // A blocked device gets through for its removals; the rest checks `require_allowed`.
    // In memory: written with the others every `device_contact_flush_seconds`.
    state.contacts.seen(device.id, Utc::now());
    Ok(AuthDevice {
        org: OrgId(device.org_id),
        device: Box::new(device),
        ip,
    })
}
