//! Install jobs: a user's request to put a certificate on a device (or take it off, a `REMOVE`
//! job), its approval, the agent's claim, payload and result, the installation lease it opens
//! and its end (the 18:00 rule, an early removal, an overdue sweep). Every status change goes
//! through [`transition::apply`]: checked against [`JobStatus::transition`], written with a
//! conditional UPDATE and audited in the same transaction. HTTP handlers are in `routes`.

pub mod claim;
pub mod cleanup;
pub mod entity;
pub mod hub;
pub mod inbox;
pub mod installations;
pub mod lease;
pub mod listener;
pub mod names;
pub mod open_installations;
pub mod payload;
pub mod permission;
pub mod removal;
pub mod requests;
pub mod result;
pub mod routes;
pub mod status;
pub mod sweep;
pub mod tasks;
pub mod transition;
pub mod uninstall;

pub use entity::{Column, ENTITY, InstallJob, InstallJobs, find, not_found};
pub use status::{Event, JobStatus, JobType, TransitionError};
pub use sweep::{Sweep, sweep};
pub use transition::{Changes, NewJob, apply, create};
