//! The device rows agents authenticate with, kept in memory so an agent's request (a
//! heartbeat above all) reads no row: `AuthDevice` checks the token binding and `is_allowed`
//! against the cached row.
//!
//! A change that matters to authentication (rotate, block, unblock, enroll, key registration,
//! rename) calls [`announce`] inside its transaction and [`DeviceCache::forget`] after the
//! COMMIT. On PostgreSQL the `NOTIFY` reaches every other server process's listener
//! (`jobs::listener`), which forgets the device too, so a block takes effect everywhere as
//! soon as the notification arrives (milliseconds). A lost connection clears the whole cache,
//! and no entry lives longer than [`TTL`] whatever happens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use super::Device;

/// The PostgreSQL channel a device's id is announced on when its row changes.
pub const CHANNEL: &str = "certhub_device_changed";

/// The longest a cached row is believed, even if a notification was lost.
pub const TTL: Duration = Duration::from_secs(10);

/// Past this many entries the cache starts again empty (far more devices than an office has).
const MAX_ENTRIES: usize = 100_000;

/// Inside the transaction that changes a device row: on PostgreSQL a `NOTIFY` that every
/// server process's listener turns into [`DeviceCache::forget`] at COMMIT. Nothing on SQLite
/// (one server process; the local [`DeviceCache::forget`] is enough).
pub async fn announce<C: ConnectionTrait>(conn: &C, device: Uuid) -> Result<(), DbErr> {
    crate::db::notify(conn, CHANNEL, &device.to_string()).await
}

#[derive(Debug, Default)]
pub struct DeviceCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Uuid, (Device, Instant)>,
    /// Bumped by every forget: a row read before it must not be stored after it.
    epoch: u64,
}

/// Taken before reading a row from the database; [`DeviceCache::put`] stores the row only if
/// nothing was forgotten meanwhile (the row might be the one just changed).
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket(u64);

impl DeviceCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds plain data: a panic elsewhere leaves nothing half-written to fear.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached row, if it was read less than [`TTL`] ago and not forgotten since.
    pub fn get(&self, id: Uuid) -> Option<Device> {
        let inner = self.lock();
        inner
            .entries
            .get(&id)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(d, _)| d.clone())
    }

    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.lock().epoch)
    }

    /// Keeps `device`, read from the database after `ticket` was taken.
    pub fn put(&self, device: Device, ticket: ReadTicket) {
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(device.id, (device, Instant::now()));
    }

    /// After the COMMIT of a change to the device (or its announcement from another process).
    pub fn forget(&self, id: Uuid) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.entries.remove(&id);
    }

    /// Notifications may have been lost (the listener reconnected): believe nothing cached.
    pub fn forget_all(&self) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        let now = chrono::Utc::now();
        Device {
            id: Uuid::new_v4(),
            org_id: 1,
            hostname: "PC-01".into(),
            domain: None,
            os_version: None,
            agent_version: None,
            owner_user_id: None,
            device_token_hash: Some("h".into()),
            token_rotated_at: Some(now),
            enrollment_code_hash: None,
            enrollment_expires_at: None,
            public_key: None,
            is_allowed: true,
            last_seen_at: None,
            last_heartbeat_at: None,
            created_at: now,
            reported_hostname: None,
            retired_at: None,
            uninstalled_at: None,
        }
    }

    #[test]
    fn a_row_read_before_a_forget_is_not_kept() {
        let cache = DeviceCache::new();
        let d = device();
        let stale = cache.ticket();
        cache.forget(d.id);
        cache.put(d.clone(), stale);
        assert!(cache.get(d.id).is_none());
        cache.put(d.clone(), cache.ticket());
        assert_eq!(cache.get(d.id).unwrap().id, d.id);
        cache.forget(d.id);
        assert!(cache.get(d.id).is_none());
        cache.put(d.clone(), cache.ticket());
        cache.forget_all();
        assert!(cache.get(d.id).is_none());
    }
}
