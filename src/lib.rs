//! CertHub: the office's A1 certificate vault, approval portal and Windows agent.
//!
//! The server (`certhub serve`) is the default feature; the Windows agent is built with
//! `--no-default-features --features agent` and shares only [`protocol`] and [`crypto`]. The
//! feature `parsers` alone builds the certificate readers and the configuration loader, what
//! the fuzz targets (`fuzz/`) exercise, without the server's stack.

pub mod crypto;
pub mod protocol;

#[cfg(feature = "server")]
pub mod accounts;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "parsers")]
pub mod certificates;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod devices;
#[cfg(feature = "server")]
pub mod doctor;
#[cfg(feature = "server")]
pub mod domain;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod identity;
#[cfg(feature = "server")]
pub mod jobs;
#[cfg(feature = "server")]
pub mod organizations;
#[cfg(feature = "server")]
pub mod paging;
#[cfg(feature = "server")]
pub mod portal;
#[cfg(feature = "server")]
pub mod queue;
#[cfg(any(feature = "parsers", feature = "agent"))]
pub mod schedule;
#[cfg(feature = "parsers")]
pub mod settings;
#[cfg(feature = "server")]
pub mod startup;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "server")]
pub mod throttle;

#[cfg(feature = "agent")]
pub mod agent;
