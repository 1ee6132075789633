//! The audit log: every step of the office's day, append-only, written in the same transaction
//! as the change it records and tamper-evident (a hash chain per office, see [`chain`]); its
//! filtered listing, CSV export and verification; the queue probe. HTTP handlers in `routes`.

mod action;
pub mod breaks;
pub mod chain;
pub mod export;
pub mod probe;
pub mod query;
pub mod routes;
pub mod tasks;
pub mod verification;

pub use action::AuditAction;
pub use chain::{
    Actor, AuditError, AuditLog, AuditRow, Break, Checkpoint, Checkpoints, Entry, GENESIS,
    VerifyReport, append, append_many, entity, record, verify, verify_org, verify_org_from,
};
