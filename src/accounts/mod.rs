//! Users of an office and the one-time links with which they choose a password.
//! (Login, sessions and the user API arrive with the accounts issue.)

pub mod password_set;
pub mod user;

pub use password_set::PasswordSetLink;
pub use user::{NewUser, User};
