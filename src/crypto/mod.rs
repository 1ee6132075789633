//! Cryptography shared by the server and the agent: secrets that never print, random tokens
//! stored as hashes, and sealing of secrets at rest with the master key.

mod sealing;
mod secret;
mod token;

pub use sealing::{KeyId, MasterKey, SealError};
pub use secret::SecretString;
pub use token::{Token, TokenHash};

#[cfg(feature = "server")]
pub mod keystore;
