//! Ingest: the office's folder of `.pfx`/`.p12` files becomes sealed catalogue rows. Only files
//! directly in the folder count; the raw path and the file name hold passwords, so they are
//! sealed (with a hash of the normalised path for matching) and only redacted forms are logged.
//!
//! Files are parsed in parallel (PKCS#12 key derivation is the cost) and committed in batches,
//! each batch one transaction with its audit rows.

mod prepare;
mod removal;
mod report;
mod rows;
mod scan;
mod source;
mod store;
mod supersession;

pub use removal::remove_file;
pub use report::{Action, Item, Report};
pub use scan::{ingest_file, ingest_file_with, scan, scan_now};
pub use source::{PathKey, ReadRefusal, is_certificate_name, read_certificate_file};
pub use store::set_metadata;
pub use supersession::refresh_supersession_of;
