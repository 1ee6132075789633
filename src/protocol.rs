//! Request and response types shared by the server and the agent (serde only).

use serde::{Deserialize, Serialize};

/// Body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The one shape of every 4xx/5xx body: a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// An install payload sealed to one device's key (HPKE, see `docs/protocol.md`, "Payload
/// envelope (v1)"). Both fields are standard base64; only that device can open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// The 32-byte HPKE encapsulated key (the sender's ephemeral X25519 public key).
    pub enc: String,
    /// ChaCha20-Poly1305 ciphertext of the JSON plaintext, tag included.
    pub ciphertext: String,
}
