//! AES-256-GCM sealing of secrets at rest. A sealed blob is
//! `b"CHS1" | key id (8 bytes) | nonce (12 bytes) | ciphertext + tag`, so that blobs name the
//! key that sealed them and keys can be rotated later.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"CHS1";
const HEADER: usize = 4 + 8 + 12;

/// The public identifier of a master key: the first 8 bytes of a hash of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the master key must be 32 bytes encoded in standard base64")]
    BadKeyEncoding,
    #[error("sealed data is malformed")]
    Malformed,
    #[error("sealed with key {found}, but the master key is {ours}")]
    WrongKey { found: String, ours: String },
    #[error("sealed data failed authentication (wrong key or tampered)")]
    Tampered,
}

/// The 256-bit master key. Zeroized on drop; `Debug` shows only its id.
pub struct MasterKey {
    id: KeyId,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        Self::from_bytes(key)
    }

    fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        let digest = Sha256::new()
            .chain_update(b"certhub-master-key-id")
            .chain_update(key.as_ref())
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self { id: KeyId(id), key }
    }

    /// Parses the base64 form used in the key file and in `CERTHUB_MASTER_KEY`.
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| SealError::BadKeyEncoding)?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadKeyEncoding)?;
        Ok(Self::from_bytes(Zeroizing::new(key)))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.as_ref()))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Seals `plaintext`; `context` (e.g. `"certificates.pfx:<id>"`) binds the blob to its place
    /// so a sealed value cannot be moved to another row or column.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let cipher = Aes256Gcm::new_from_slice(self.key.as_ref()).expect("32-byte key");
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory data");
        let mut out = Vec::with_capacity(HEADER + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The key id a sealed blob names, without opening it.
    pub fn key_id_of(sealed: &[u8]) -> Result<KeyId, SealError> {
        if sealed.len() < HEADER + 16 || &sealed[..4] != MAGIC {
            return Err(SealError::Malformed);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&sealed[4..12]);
        Ok(KeyId(id))
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let id = Self::key_id_of(sealed)?;
        if id != self.id {
            return Err(SealError::WrongKey {
                found: id.to_hex(),
                ours: self.id.to_hex(),
            });
        }
        let cipher = Aes256Gcm::new_from_slice(self.key.as_ref()).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(&sealed[12..HEADER]),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }
}

#[cfg(feature = "server")]
impl MasterKey {
    /// A subkey for another purpose (e.g. signing access tokens): HMAC-SHA256(master, label).
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref()).expect("any key length");
        mac.update(label.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"senha 1234", "certificates.password:1");
        assert!(!sealed.windows(10).any(|w| w == b"senha 1234"));
        assert_eq!(
            key.open(&sealed, "certificates.password:1")
                .unwrap()
                .as_slice(),
            b"senha 1234"
        );
        assert_eq!(
            key.open(&sealed, "certificates.password:2"),
            Err(SealError::Tampered)
        );
    }

    #[test]
    fn wrong_key_and_tampering_are_detected() {
        let key = MasterKey::generate();
        let other = MasterKey::generate();
        let mut sealed = key.seal(b"x", "c");
        assert!(matches!(
            other.open(&sealed, "c"),
            Err(SealError::WrongKey { .. })
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open(&sealed, "c"), Err(SealError::Tampered));
        assert_eq!(key.open(b"short", "c"), Err(SealError::Malformed));
    }

    #[test]
    fn base64_form_round_trips_and_validates() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key.id(), again.id());
        assert_eq!(
            MasterKey::from_base64("abc").unwrap_err(),
            SealError::BadKeyEncoding
        );
        assert!(!format!("{key:?}").contains(key.to_base64().as_str()));
    }
}
