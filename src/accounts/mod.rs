//! Accounts: the office's users and their roles, passwords and the one-time links that set
//! them, logins (sessions, lockout, access tokens) and user administration. HTTP handlers are
//! in `routes`; everything else knows nothing of actix.

pub mod access_token;
pub mod administration;
pub mod authentication;
pub mod first_access;
pub mod lockout;
pub mod login;
pub mod password;
pub mod password_set;
pub mod routes;
pub mod session;
pub mod tasks;
pub mod user;

pub use password::Password;
pub use password_set::PasswordSetLink;
pub use user::{NewUser, User};
