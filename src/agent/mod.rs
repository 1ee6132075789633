//! The Windows agent. Its capabilities (pairing, install, cleanup) arrive with the agent issue;
//! for now the feature builds a binary that reports its version.

pub mod task_xml;
pub mod tray_model;
#[cfg(windows)]
pub mod windows;

/// Version string the agent reports to the server in its heartbeat.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
