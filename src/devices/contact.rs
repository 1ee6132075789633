//! Devices' last contact without a write per request. Heartbeats and agent requests record
//! `last_seen_at`, `last_heartbeat_at` and `agent_version` here, in memory; a task writes what
//! changed in one transaction every `device_contact_flush_seconds`, and once more at a clean
//! stop. A crash loses at most one interval of "last seen", nothing else. The admin views show
//! the fresher of memory and database.
//!
//! Several server processes on one PostgreSQL database each keep their own book; a flush never
//! moves a time backwards, so the freshest contact wins whichever process wrote last.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{Condition, DatabaseConnection};

use super::{Column, Devices};

/// What a device's requests told the server since the last flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
}

impl Contact {
    fn merge(&mut self, newer: Contact) {
        self.last_seen_at = self.last_seen_at.max(newer.last_seen_at);
        self.last_heartbeat_at = self.last_heartbeat_at.max(newer.last_heartbeat_at);
        if newer.agent_version.is_some() {
            self.agent_version = newer.agent_version;
        }
    }
}

/// The contacts not yet written, and the last ones written (for the admin views while a flush
/// is in flight).
#[derive(Debug, Default)]
pub struct ContactBook {
    pending: Mutex<HashMap<Uuid, Contact>>,
    /// Contacts taken by the flush in progress, until it commits.
    flushing: Mutex<HashMap<Uuid, Contact>>,
}

impl ContactBook {
    fn record(&self, device: Uuid, contact: Contact) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.entry(device).or_default().merge(contact);
    }

    /// Any authenticated agent request.
    pub fn seen(&self, device: Uuid, at: DateTime<Utc>) {
        self.record(
            device,
            Contact {
                last_seen_at: Some(at),
                ..Default::default()
            },
        );
    }

    /// `POST /api/v1/agent/heartbeat`.
    pub fn heartbeat(&self, device: Uuid, at: DateTime<Utc>, agent_version: Option<String>) {
        self.record(
            device,
            Contact {
                last_seen_at: Some(at),
                last_heartbeat_at: Some(at),
                agent_version,
            },
        );
    }

    /// What memory knows of `device` beyond the database (pending or being written).
    pub fn unwritten(&self, device: Uuid) -> Option<Contact> {
        let mut found: Option<Contact> = None;
        for map in [&self.flushing, &self.pending] {
            let map = map.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(&device) {
                found.get_or_insert_with(Contact::default).merge(c.clone());
            }
        }
        found
    }

    /// How many devices have contact not yet written.
    pub fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Writes every pending contact in one transaction; on failure they go back to pending
    /// (merged with whatever arrived meanwhile) for the next flush. Returns how many devices
    /// were written.
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<usize, DbErr> {
        let taken = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *pending)
        };
        if taken.is_empty() {
            return Ok(0);
        }
        {
            let mut flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
            flushing.clone_from(&taken);
        }
        let written = write(db, &taken).await;
        self.flushing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        match written {
            Ok(()) => Ok(taken.len()),
            Err(e) => {
                for (device, contact) in taken {
                    self.record(device, contact);
                }
                Err(e)
            }
        }
    }
}

/// One transaction, one conditional `UPDATE` per device: a time only ever moves forward.
async fn write(db: &DatabaseConnection, contacts: &HashMap<Uuid, Contact>) -> Result<(), DbErr> {
    let txn = crate::db::begin_write(db).await?;
    for (device, c) in contacts {
        let mut update = Devices::update_many();
        let mut newer = Condition::any();
        if let Some(seen) = c.last_seen_at {
            update = update.col_expr(Column::LastSeenAt, latest(Column::LastSeenAt, seen));
            newer = newer
                .add(Column::LastSeenAt.is_null())
                .add(Column::LastSeenAt.lt(seen));
        }
        if let Some(beat) = c.last_heartbeat_at {
            update = update.col_expr(
                Column::LastHeartbeatAt,
                latest(Column::LastHeartbeatAt, beat),
            );
            newer = newer
                .add(Column::LastHeartbeatAt.is_null())
                .add(Column::LastHeartbeatAt.lt(beat));
        }
        if let Some(v) = &c.agent_version {
            update = update.col_expr(Column::AgentVersion, Expr::value(v.clone()));
        }
        update
            .filter(Column::Id.eq(*device))
            .filter(newer)
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// `column` becomes `at` unless it already holds a later time.
fn latest(column: Column, at: DateTime<Utc>) -> sea_orm::sea_query::SimpleExpr {
    Expr::case(
        Condition::any().add(column.is_null()).add(column.lt(at)),
        Expr::value(at),
    )
    .finally(Expr::col(column))
    .into()
}

/// Flushes every `every` until `stop`, then once more.
pub async fn run(
    book: std::sync::Arc<ContactBook>,
    db: DatabaseConnection,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = book.flush(&db).await {
            tracing::warn!(error = %e, devices = book.pending_len(), "device contact flush failed; retrying next interval");
        }
    }
    match book.flush(&db).await {
        Ok(n) => tracing::debug!(devices = n, "device contact flushed at stop"),
        Err(e) => tracing::warn!(error = %e, "device contact could not be flushed at stop"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn contacts_merge_to_the_latest() {
        let book = ContactBook::default();
        let d = Uuid::new_v4();
        let t0 = Utc::now();
        book.heartbeat(d, t0, Some("1.0.0".into()));
        book.seen(d, t0 - Duration::seconds(5));
        book.seen(d, t0 + Duration::seconds(5));
        let c = book.unwritten(d).unwrap();
        assert_eq!(c.last_seen_at, Some(t0 + Duration::seconds(5)));
        assert_eq!(c.last_heartbeat_at, Some(t0));
        assert_eq!(c.agent_version.as_deref(), Some("1.0.0"));
        assert_eq!(book.pending_len(), 1);
        assert!(book.unwritten(Uuid::new_v4()).is_none());
    }
}
