//! The portal: server-rendered pages in pt-BR, one module per area of the office, each calling
//! the same domain functions as the API (one rule, two doors). The frame is in `layout`, the
//! shared pieces in `components`, the form preamble (session, role, CSRF) in `forms`.

mod accounts;
mod audit;
mod audit_view;
mod certificates;
pub mod components;
mod dashboard;
mod devices;
pub mod error;
pub mod forms;
pub mod framing;
mod installations;
pub mod layout;
mod requests;
pub mod respond;
pub mod routes;
pub mod session;
mod users;

pub use routes::{configure, routes};
