//! The embedded job queue: apalis on the application's database server (apalis-postgres in
//! schema `apalis`; with SQLite, apalis-sqlite in a file beside the application's, see
//! [`sqlite_queue_path`]), one in-process worker started by `serve`, and periodic jobs (see
//! [`periodic`]). It runs what the areas register ([`Registry`]) and imports none of them.

mod periodic;
pub mod registry;
mod storage;
mod tasks;
mod worker;

pub use registry::{Periodic, Queued, Registry, Task};
pub use storage::{HEARTBEAT, QUEUE_NAME, Queue, QueueError, sqlite_queue_path};
pub use worker::{POLL_INTERVAL, monitor, run_until};
