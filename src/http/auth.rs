//! Extractors that authenticate a request: `AuthUser` (any role), `AdminUser` (ADMIN/DEV) and
//! `AuthDevice` (an agent). The user is loaded on every request, so deactivation and role
//! changes apply at once; the device row comes from `devices::cache`, which every change to it
//! (blocking, token rotation) empties of that device, in every server process.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;
use sea_orm::entity::prelude::*;

use crate::error::AppError;
use crate::accounts::User;
use crate::accounts::access_token::Subject;
use crate::devices::{self, Device};
use crate::domain::{OrgId, Role};
use crate::state::AppState;

/// An authenticated, active user of an office.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub role: Role,
    pub org: OrgId,
    pub ip: Option<String>,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Dev)
    }

    /// The ADMIN/DEV check every administrative domain function starts with.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden("requires the ADMIN or DEV role".into()))
        }
    }
}

/// An authenticated ADMIN or DEV.
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

/// Where the request came from: the peer, or the client a trusted proxy names
/// (`trusted_proxies`); nobody else's forwarding headers are believed.
pub fn client_origin(req: &HttpRequest) -> super::proxy::ClientOrigin {
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.trusted_proxies.as_slice())
        .unwrap_or(&[]);
    super::proxy::origin_of(req, trusted)
}

/// The client's address (see [`client_origin`]).
pub fn client_addr(req: &HttpRequest) -> Option<std::net::IpAddr> {
    client_origin(req).ip
}

/// The client's address as the audit log and sessions record it.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    client_addr(req).map(|ip| ip.to_string())
}

pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn authenticate(
    state: web::Data<AppState>,
    token: Option<String>,
    ip: Option<String>,
) -> Result<AuthUser, AppError> {
    let token = token.ok_or(AppError::Unauthorized)?;
    let claims = state.tokens.decode(&token)?;
    if claims.kind != Subject::User {
        return Err(AppError::Forbidden(
            "this endpoint is for users, not devices".into(),
        ));
    }
    let user = crate::accounts::user::Users::find_by_id(claims.sub)
        .one(&state.db)
        .await?
        .filter(|u| u.is_active && u.org_id == claims.org)
        .ok_or(AppError::Unauthorized)?;
    // Logout, a password change or deactivation ends the login behind the token at once.
    let sid = claims.sid.ok_or(AppError::Unauthorized)?;
    if !crate::accounts::session::family_is_live(&state.db, sid, user.id).await? {
        return Err(AppError::Unauthorized);
    }
    let role = user.role()?;
    Ok(AuthUser {
        org: OrgId(user.org_id),
        role,
        user,
        ip,
    })
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        let ip = client_ip(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            authenticate(state, token, ip).await
        })
    }
}

impl FromRequest for AdminUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = AuthUser::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            user.require_admin()?;
            Ok(AdminUser(user))
        })
    }
}

/// An authenticated, allowed device (DEVICE access token) whose token was not rotated since.
#[derive(Debug, Clone)]
pub struct AuthDevice {
    pub device: Device,
    pub org: OrgId,
    pub ip: Option<String>,
}

async fn authenticate_device(
    state: web::Data<AppState>,
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
            let device = devices::Devices::find_by_id(claims.sub)
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
            crate::accounts::access_token::device_binding(stored).as_bytes(),
        )),
        _ => false,
    };
    if !bound {
        return Err(AppError::Unauthorized);
    }
    if !device.is_allowed {
        return Err(AppError::Forbidden("this device is blocked".into()));
    }
    // In memory: written with the others every `device_contact_flush_seconds`.
    state.contacts.seen(device.id, Utc::now());
    Ok(AuthDevice {
        org: OrgId(device.org_id),
        device,
        ip,
    })
}

impl FromRequest for AuthDevice {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        let ip = client_ip(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            authenticate_device(state, token, ip).await
        })
    }
}
