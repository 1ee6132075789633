//! Users of an office and the one-time links with which they choose a password.

pub mod access_token;
pub mod authentication;
pub mod admin;
pub mod api;
pub mod lockout;
pub mod password;
pub mod password_set;
pub mod session;
pub mod tasks;
pub mod user;

pub use password::Password;
pub use password_set::PasswordSetLink;
pub use user::{NewUser, User};
