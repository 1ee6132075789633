//! Limits on pairing and device authentication (`/agent/enroll`, `/agent/auth`), answered from
//! memory.

use std::net::IpAddr;

use uuid::Uuid;

use crate::throttle::{Refusal, Throttle};

/// Limits on pairing and device authentication, all answered from memory.
///
/// Every call counts against its client IP (`/agent/auth` and `/agent/enroll` separately).
/// Only *failed* `/agent/auth` attempts count against a device, per device and client IP, so a
/// stranger who knows a device id (every VIEW user can see them) spends only their own quota
/// and cannot keep the real agent out; a ceiling per device, ten times higher, bounds the
/// failures from everywhere together.
pub struct AuthLimits {
    auth_per_ip: Throttle<IpAddr>,
    enroll_per_ip: Throttle<IpAddr>,
    failures: Throttle<(Uuid, Option<IpAddr>)>,
    device_failures: Throttle<Uuid>,
}

/// Which limit refused a request (the audit row's `limit`).
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Ip,
    DeviceAndIp,
    Device,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::DeviceAndIp => "device_ip",
            Scope::Device => "device",
        }
    }
}

impl AuthLimits {
    pub fn new(per_minute: u32) -> Self {
        Self {
            auth_per_ip: Throttle::per_minute(per_minute),
            enroll_per_ip: Throttle::per_minute(per_minute),
            failures: Throttle::per_minute(per_minute),
            device_failures: Throttle::per_minute(per_minute.saturating_mul(10)),
        }
    }

    /// Before the request is looked at: the per-IP quota, and for `/agent/auth` whether the
    /// device is in a run of refused failures.
    pub fn check(
        &self,
        endpoint: Endpoint,
        device: Option<Uuid>,
        ip: Option<IpAddr>,
    ) -> Result<(), (Scope, Refusal)> {
        let per_ip = match endpoint {
            Endpoint::Enroll => &self.enroll_per_ip,
            Endpoint::Auth => &self.auth_per_ip,
        };
        if let Some(ip) = ip {
            per_ip.check(&ip).map_err(|r| (Scope::Ip, r))?;
        }
        if let Some(id) = device {
            self.failures
                .refusing(&(id, ip))
                .map_err(|r| (Scope::DeviceAndIp, r))?;
            self.device_failures
                .refusing(&id)
                .map_err(|r| (Scope::Device, r))?;
        }
        Ok(())
    }

    /// Counts a failed `/agent/auth` against the device; `Some` when that starts a refusal run.
    pub fn failed(&self, device: Uuid, ip: Option<IpAddr>) -> Option<(Scope, Refusal)> {
        let pair = self.failures.check(&(device, ip)).err();
        let all = self.device_failures.check(&device).err();
        pair.map(|r| (Scope::DeviceAndIp, r))
            .or(all.map(|r| (Scope::Device, r)))
            .filter(|(_, r)| r.audit.is_some())
    }

    /// Forgets idle keys; see [`Throttle::prune`].
    pub fn prune(&self) -> u64 {
        self.auth_per_ip.prune()
            + self.enroll_per_ip.prune()
            + self.failures.prune()
            + self.device_failures.prune()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Enroll,
    Auth,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Enroll => "enroll",
            Endpoint::Auth => "auth",
        }
    }
}
