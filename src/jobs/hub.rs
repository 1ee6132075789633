//! The wake-up hub behind `GET /api/v1/agent/jobs?wait=N`: a long-polling device registers
//! [`Interest`], and whoever commits a `PENDING` job for that device calls [`JobHub::notify`]
//! after the COMMIT. An entry lives only while someone waits on it, so idle devices cost
//! nothing.
//!
//! Across processes (several `certhub` behind one PostgreSQL database): every move to
//! `PENDING` also runs [`announce`] inside its transaction, a `NOTIFY` that PostgreSQL delivers
//! at COMMIT, and each process's listener (`jobs::listener`) turns those into local
//! [`JobHub::notify`] calls. SQLite has one writer process, so the in-process call is all it
//! needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use uuid::Uuid;

/// The PostgreSQL channel a job's device id is announced on when the job becomes `PENDING`.
pub const CHANNEL: &str = "certhub_job_pending";
/// The PostgreSQL channel any job change is announced on (for the live portal pages).
pub const CHANGED_CHANNEL: &str = "certhub_job_changed";

/// Inside the transaction that changes a job: on PostgreSQL a `NOTIFY` other server processes
/// turn into [`JobHub::changed`] at COMMIT. Nothing on SQLite (one process).
pub async fn announce_change<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    conn.execute_unprepared(&format!("NOTIFY {CHANGED_CHANNEL}"))
        .await
        .map(|_| ())
}

/// Inside the transaction that makes a job for `device` `PENDING`: on PostgreSQL, a `NOTIFY`
/// that every server process's listener receives once (and only if) the transaction commits.
/// Nothing on SQLite.
pub async fn announce<C: ConnectionTrait>(conn: &C, device: Uuid) -> Result<(), DbErr> {
    crate::db::notify(conn, CHANNEL, &device.to_string()).await
}

#[derive(Debug)]
pub struct JobHub {
    waiters: Mutex<HashMap<Uuid, Arc<Notify>>>,
    /// Bumped after a commit that changed a job (any office): live portal pages re-read what
    /// changed. A counter, so a slow reader skips to the newest value instead of lagging.
    changes: tokio::sync::watch::Sender<u64>,
    /// Set when the server stops: live pages end their streams instead of holding the stop.
    closing: std::sync::atomic::AtomicBool,
}

impl Default for JobHub {
    fn default() -> Self {
        Self {
            waiters: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl JobHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// After the COMMIT of any job change: wakes the live pages (Server-Sent Events), which
    /// read what changed for their user. Also relayed from [`announce_change`] across processes.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The server is stopping: live streams end (their browsers reconnect to whichever server
    /// answers next) and long-polls look at the database once more and answer.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.changed();
        self.notify_all();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A receiver that sees every [`JobHub::changed`] after this call.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Notify>>> {
        // The map holds no invariant a panicking holder could break.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interest in `device`'s jobs, held for as long as the returned guard lives.
    pub fn interest(&self, device: Uuid) -> Interest<'_> {
        let notify = self.lock().entry(device).or_default().clone();
        Interest {
            hub: self,
            device,
            notify,
        }
    }

    /// Wakes every request waiting for `device`. Call it only after the COMMIT that made the
    /// job visible, or the woken agent finds nothing.
    pub fn notify(&self, device: Uuid) {
        let notify = self.lock().get(&device).cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter, of every device (each looks at the database again).
    pub fn notify_all(&self) {
        let all: Vec<Arc<Notify>> = self.lock().values().cloned().collect();
        for notify in all {
            notify.notify_waiters();
        }
    }

    /// How many devices have a waiter now.
    pub fn waiting_devices(&self) -> usize {
        self.lock().len()
    }
}

/// A registration in the hub; dropping the last one of a device removes its entry.
pub struct Interest<'a> {
    hub: &'a JobHub,
    device: Uuid,
    notify: Arc<Notify>,
}

impl Interest<'_> {
    /// A wake-up future. Call `enable()` on it (pinned) BEFORE reading the database, so that a
    /// notification sent between the read and the wait is not lost.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        let mut waiters = self.hub.lock();
        // Every clone is taken under this lock: 2 means only the map and this guard hold it.
        if Arc::strong_count(&self.notify) == 2
            && waiters
                .get(&self.device)
                .is_some_and(|n| Arc::ptr_eq(n, &self.notify))
        {
            waiters.remove(&self.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_notification_after_enable_is_not_lost() {
        let hub = JobHub::new();
        let device = Uuid::new_v4();
        let interest = hub.interest(device);
        let notified = interest.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Sent after registering but before waiting: the "re-check the database" window.
        hub.notify(device);
        tokio::time::timeout(Duration::from_secs(1), notified)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn only_the_named_device_wakes_and_entries_go_away() {
        let hub = JobHub::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let ia = hub.interest(a);
            let ia2 = hub.interest(a);
            let ib = hub.interest(b);
            assert_eq!(hub.waiting_devices(), 2);
            let na = ia.notified();
            tokio::pin!(na);
            na.as_mut().enable();
            hub.notify(b);
            assert!(
                tokio::time::timeout(Duration::from_millis(50), &mut na)
                    .await
                    .is_err()
            );
            drop(ia2);
            assert_eq!(hub.waiting_devices(), 2);
            drop(ib);
            assert_eq!(hub.waiting_devices(), 1);
            hub.notify(a);
            tokio::time::timeout(Duration::from_secs(1), na)
                .await
                .expect("woken");
        }
        assert_eq!(hub.waiting_devices(), 0);
        // Nobody waiting: a notification is a no-op.
        hub.notify(a);
        assert_eq!(hub.waiting_devices(), 0);
    }
}
