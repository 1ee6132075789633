//! Who is asking: an authenticated user of an office ([`AuthUser`]) or an authenticated
//! device ([`AuthDevice`]). Domain rules take these and check role, office and ownership
//! themselves; `http::extract` builds them from a request (`accounts::authentication` and
//! `devices::authentication` decide whether a token is good).

use crate::accounts::User;
use crate::devices::Device;
use crate::domain::{OrgId, Role};
use crate::error::AppError;

/// An authenticated, active user of an office.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub role: Role,
    pub org: OrgId,
    /// The client's address, as the audit log records it.
    pub ip: Option<String>,
}

impl AuthUser {
    /// `user` (already found active) acting from `ip`.
    pub fn new(user: User, ip: Option<String>) -> Result<Self, AppError> {
        Ok(Self {
            org: OrgId(user.org_id),
            role: user.role()?,
            user,
            ip,
        })
    }

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

/// An authenticated device (DEVICE access token) whose token was not rotated since. A blocked
/// device is one too, for the removals only: every other use checks [`Self::require_allowed`].
#[derive(Debug, Clone)]
pub struct AuthDevice {
    /// Boxed: a held long-poll keeps its caller for up to 30 s (`jobs::routes`'s size test).
    pub device: Box<Device>,
    pub org: OrgId,
    pub ip: Option<String>,
}

impl AuthDevice {
    /// 403 for a blocked device: it may still list, claim and report its `REMOVE` jobs, report
    /// cleanups and read its open installations, and nothing else.
    pub fn require_allowed(&self) -> Result<(), AppError> {
        if self.device.is_allowed {
            Ok(())
        } else {
            Err(AppError::Forbidden("this device is blocked".into()))
        }
    }
}
