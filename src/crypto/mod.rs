//! Cryptography shared by the server and the agent: secrets that never print, random tokens
//! stored as hashes, sealing of secrets at rest with the master key, and the HPKE envelope that
//! carries an install payload to one device.

mod envelope;
mod sealing;
mod secret;
mod token;

pub use envelope::{
    DevicePublicKey, DeviceSecretKey, EnvelopeError, InstallSecret, PayloadContext, open, seal,
};
pub use sealing::{KeyId, MasterKey, SealError};
pub use secret::SecretString;
pub use token::{Token, TokenHash};

#[cfg(feature = "server")]
pub mod keystore;
