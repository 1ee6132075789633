//! The install payload envelope, v1 (`docs/protocol.md`, "Payload envelope (v1)"): a
//! certificate's PFX and password sealed to one device's X25519 key with HPKE (RFC 9180) base
//! mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, single shot. The `info`
//! binds the payload to one job and one device; the aad is empty.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::SecretString;
use crate::protocol::SealedPayload;

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = ChaCha20Poly1305;

const KEY_LEN: usize = 32;
const INFO_PREFIX: &str = "certhub-payload-v1";
/// RFC 9180 lets the application bind extra data here; v1 binds everything through `info`.
const AAD: &[u8] = b"";

/// Why a key or an envelope was refused. Messages name the field, never its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("{field} is not standard base64")]
    BadBase64 { field: &'static str },
    #[error("{field} must be {expected} bytes, got {found}")]
    BadLength {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("the public key is not a usable X25519 key (low-order point)")]
    UnusableKey,
    #[error("the payload did not open: another device's key, another job or device, or tampered")]
    DecryptionFailed,
    #[error("the payload opened but is not the expected JSON")]
    BadPlaintext,
}

/// A device's X25519 public key, as registered: standard base64 of the raw 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DevicePublicKey([u8; KEY_LEN]);

impl DevicePublicKey {
    /// Parses the `public_key` field a device registers.
    pub fn parse(base64: &str) -> Result<Self, EnvelopeError> {
        let field = "public_key";
        let bytes = STANDARD
            .decode(base64)
            .map_err(|_| EnvelopeError::BadBase64 { field })?;
        let bytes: [u8; KEY_LEN] =
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| EnvelopeError::BadLength {
                    field,
                    expected: KEY_LEN,
                    found: b.len(),
                })?;
        Self::from_bytes(bytes)
    }

    /// Refuses low-order points up front, so that sealing to a registered key cannot fail.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<Self, EnvelopeError> {
        let key = Self(bytes);
        hpke::single_shot_seal::<Aead, Kdf, Kem>(&OpModeS::Base, &key.to_hpke(), b"", b"", AAD)
            .map_err(|_| EnvelopeError::UnusableKey)?;
        Ok(key)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn to_hpke(self) -> <Kem as hpke::Kem>::PublicKey {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0).expect("32 bytes is an X25519 key")
    }
}

impl fmt::Debug for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevicePublicKey({})", self.to_base64())
    }
}

impl fmt::Display for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A device's X25519 secret key. Zeroized on drop and never printed; the agent keeps its bytes
/// protected at rest (DPAPI) and rebuilds the key with [`DeviceSecretKey::from_bytes`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecretKey([u8; KEY_LEN]);

impl DeviceSecretKey {
    pub fn generate() -> Self {
        let (secret, _) = Kem::gen_keypair();
        let mut bytes = secret.to_bytes();
        let key = Self(bytes.into());
        bytes.zeroize();
        key
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| EnvelopeError::BadLength {
            field: "device secret key",
            expected: KEY_LEN,
            found: bytes.len(),
        })?;
        Ok(Self(bytes))
    }

    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0)
    }

    pub fn public_key(&self) -> DevicePublicKey {
        let public = Kem::sk_to_pk(&self.to_hpke()).to_bytes();
        DevicePublicKey(public.into())
    }

    /// The crate's key zeroizes itself on drop (x25519-dalek's `zeroize` feature).
    fn to_hpke(&self) -> <Kem as hpke::Kem>::PrivateKey {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&self.0).expect("32 bytes is an X25519 key")
    }
}

impl fmt::Debug for DeviceSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecretKey(***)")
    }
}

/// Which job and which device a payload is for; sealed into the HPKE `info`, so a payload
/// opens only for that pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadContext {
    job_id: String,
    device_id: String,
}

impl PayloadContext {
    /// The ids exactly as the API prints them (UUIDs in lower-case hyphenated form).
    pub fn new(job_id: impl fmt::Display, device_id: impl fmt::Display) -> Self {
        Self {
            job_id: job_id.to_string(),
            device_id: device_id.to_string(),
        }
    }

    /// `certhub-payload-v1:{job_id}:{device_id}` in UTF-8.
    pub fn info(&self) -> Vec<u8> {
        format!("{INFO_PREFIX}:{}:{}", self.job_id, self.device_id).into_bytes()
    }
}

/// What the agent needs to install a certificate: the PFX file and its password.
pub struct InstallSecret {
    pfx: Zeroizing<Vec<u8>>,
    password: SecretString,
}

/// The JSON plaintext, `{"pfx_base64": "...", "password": "..."}`.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Plaintext {
    pfx_base64: String,
    password: String,
}

impl InstallSecret {
    pub fn new(pfx: Vec<u8>, password: SecretString) -> Self {
        Self {
            pfx: Zeroizing::new(pfx),
            password,
        }
    }

    pub fn pfx(&self) -> &[u8] {
        &self.pfx
    }

    pub fn password(&self) -> &SecretString {
        &self.password
    }

    fn to_plaintext(&self) -> Zeroizing<Vec<u8>> {
        let plaintext = Plaintext {
            pfx_base64: STANDARD.encode(self.pfx.as_slice()),
            password: self.password.expose().to_owned(),
        };
        Zeroizing::new(serde_json::to_vec(&plaintext).expect("two strings always serialize"))
    }

    fn from_plaintext(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let plaintext: Plaintext =
            serde_json::from_slice(bytes).map_err(|_| EnvelopeError::BadPlaintext)?;
        let pfx = STANDARD
            .decode(&plaintext.pfx_base64)
            .map_err(|_| EnvelopeError::BadPlaintext)?;
        Ok(Self::new(
            pfx,
            SecretString::new(plaintext.password.clone()),
        ))
    }
}

impl fmt::Debug for InstallSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InstallSecret {{ pfx: *** ({} bytes), password: *** }}",
            self.pfx.len()
        )
    }
}

/// Seals an install secret to one device for one job. Each call uses a fresh ephemeral key.
pub fn seal(
    public_key: &DevicePublicKey,
    context: &PayloadContext,
    secret: &InstallSecret,
) -> SealedPayload {
    let (enc, ciphertext) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &public_key.to_hpke(),
        &context.info(),
        &secret.to_plaintext(),
        AAD,
    )
    .expect("DevicePublicKey refuses keys that cannot be sealed to");
    SealedPayload {
        enc: STANDARD.encode(enc.to_bytes()),
        ciphertext: STANDARD.encode(ciphertext),
    }
}

/// Opens a payload with the device's secret key; fails unless it was sealed to this key for
/// exactly this job and device and arrived untouched.
pub fn open(
    secret_key: &DeviceSecretKey,
    context: &PayloadContext,
    sealed: &SealedPayload,
) -> Result<InstallSecret, EnvelopeError> {
    let enc = decode("enc", &sealed.enc)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| {
        EnvelopeError::BadLength {
            field: "enc",
            expected: KEY_LEN,
            found: enc.len(),
        }
    })?;
    let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
    let plaintext = Zeroizing::new(
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &secret_key.to_hpke(),
            &enc,
            &context.info(),
            &ciphertext,
            AAD,
        )
        .map_err(|_| EnvelopeError::DecryptionFailed)?,
    );
    InstallSecret::from_plaintext(&plaintext)
}

fn decode(field: &'static str, value: &str) -> Result<Vec<u8>, EnvelopeError> {
    STANDARD
        .decode(value)
        .map_err(|_| EnvelopeError::BadBase64 { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const DEVICE: &str = "2b9e8d7c-6f5a-4b3c-9d2e-1f0a9b8c7d6e";
    const VECTOR: &str = include_str!("../../tests/fixtures/hpke/payload-v1.json");

    fn secret() -> InstallSecret {
        InstallSecret::new(
            b"\x30\x82fake pfx bytes\x00\xff".to_vec(),
            SecretString::new("Senh@ 123 ção".into()),
        )
    }

    fn context() -> PayloadContext {
        PayloadContext::new(JOB, DEVICE)
    }

    #[test]
    fn round_trip() {
        let key = DeviceSecretKey::generate();
        let sealed = seal(&key.public_key(), &context(), &secret());
        let opened = open(&key, &context(), &sealed).unwrap();
        assert_eq!(opened.pfx(), secret().pfx());
        assert_eq!(opened.password().expose(), "Senh@ 123 ção");
    }

    #[test]
    fn each_seal_uses_a_fresh_ephemeral_key() {
        let key = DeviceSecretKey::generate();
        let a = seal(&key.public_key(), &context(), &secret());
        let b = seal(&key.public_key(), &context(), &secret());
        assert_ne!(a.enc, b.enc);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn another_devices_key_cannot_open() {
        let key = DeviceSecretKey::generate();
        let sealed = seal(&key.public_key(), &context(), &secret());
        let other = DeviceSecretKey::generate();
        let err = open(&other, &context(), &sealed).unwrap_err();
        assert_eq!(err, EnvelopeError::DecryptionFailed);
    }

    #[test]
    fn another_job_or_device_cannot_open() {
        let key = DeviceSecretKey::generate();
        let sealed = seal(&key.public_key(), &context(), &secret());
        let other_job = PayloadContext::new("00000000-0000-4000-8000-000000000000", DEVICE);
        let other_device = PayloadContext::new(JOB, "00000000-0000-4000-8000-000000000000");
        for context in [other_job, other_device] {
            let err = open(&key, &context, &sealed).unwrap_err();
            assert_eq!(err, EnvelopeError::DecryptionFailed);
        }
    }

    #[test]
    fn tampered_ciphertext_or_enc_fails() {
        let key = DeviceSecretKey::generate();
        let sealed = seal(&key.public_key(), &context(), &secret());

        let mut ciphertext = STANDARD.decode(&sealed.ciphertext).unwrap();
        ciphertext[3] ^= 0x01;
        let tampered = SealedPayload {
            ciphertext: STANDARD.encode(&ciphertext),
            ..sealed.clone()
        };
        assert_eq!(
            open(&key, &context(), &tampered).unwrap_err(),
            EnvelopeError::DecryptionFailed
        );

        let mut enc = STANDARD.decode(&sealed.enc).unwrap();
        enc[0] ^= 0x01;
        let tampered = SealedPayload {
            enc: STANDARD.encode(&enc),
            ..sealed.clone()
        };
        assert_eq!(
            open(&key, &context(), &tampered).unwrap_err(),
            EnvelopeError::DecryptionFailed
        );

        let truncated = SealedPayload {
            enc: STANDARD.encode(&enc[..31]),
            ..sealed
        };
        assert_eq!(
            open(&key, &context(), &truncated).unwrap_err(),
            EnvelopeError::BadLength {
                field: "enc",
                expected: 32,
                found: 31
            }
        );
    }

    #[test]
    fn plaintext_is_the_documented_json() {
        let plaintext = secret().to_plaintext();
        let expected = format!(
            r#"{{"pfx_base64":"{}","password":"Senh@ 123 ção"}}"#,
            STANDARD.encode(secret().pfx())
        );
        assert_eq!(std::str::from_utf8(&plaintext).unwrap(), expected);
    }

    #[test]
    fn info_is_prefix_job_and_device() {
        let info = context().info();
        assert_eq!(
            std::str::from_utf8(&info).unwrap(),
            "certhub-payload-v1:7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f:2b9e8d7c-6f5a-4b3c-9d2e-1f0a9b8c7d6e"
        );
    }

    /// Sealed by Python `cryptography` (OpenSSL), see `scripts/hpke-test-vector.py`.
    #[test]
    fn opens_the_python_test_vector() {
        let v: serde_json::Value = serde_json::from_str(VECTOR).unwrap();
        let field = |name: &str| v[name].as_str().unwrap().to_owned();

        let key =
            DeviceSecretKey::from_bytes(&hex::decode(field("recipient_secret_key_hex")).unwrap())
                .unwrap();
        assert_eq!(
            key.public_key().to_base64(),
            field("recipient_public_key_base64")
        );
        let context = PayloadContext::new(field("job_id"), field("device_id"));
        assert_eq!(context.info(), field("info").into_bytes());

        let sealed = SealedPayload {
            enc: field("enc"),
            ciphertext: field("ciphertext"),
        };
        let opened = open(&key, &context, &sealed).unwrap();
        assert_eq!(STANDARD.encode(opened.pfx()), field("pfx_base64"));
        assert_eq!(opened.password().expose(), field("password"));

        let wrong_device = PayloadContext::new(field("job_id"), JOB);
        assert!(open(&key, &wrong_device, &sealed).is_err());
    }

    /// Prints a payload for the reverse check: Python opens what Rust seals. Run with
    /// `cargo test --lib print_payload_for_python -- --ignored --nocapture`, then
    /// `python3 scripts/hpke-test-vector.py open <printed arguments>`.
    #[test]
    #[ignore = "prints arguments for scripts/hpke-test-vector.py; nothing to assert here"]
    fn print_payload_for_python() {
        let key = DeviceSecretKey::generate();
        let sealed = seal(&key.public_key(), &context(), &secret());
        println!(
            "{} {JOB} {DEVICE} {} {}",
            hex::encode(key.to_bytes().as_ref()),
            sealed.enc,
            sealed.ciphertext
        );
    }

    #[test]
    fn public_key_parses_only_32_usable_bytes() {
        let key = DeviceSecretKey::generate().public_key();
        assert_eq!(DevicePublicKey::parse(&key.to_base64()).unwrap(), key);
        assert_eq!(
            DevicePublicKey::parse("not base64!").unwrap_err(),
            EnvelopeError::BadBase64 {
                field: "public_key"
            }
        );
        assert_eq!(
            DevicePublicKey::parse(&STANDARD.encode([7u8; 31])).unwrap_err(),
            EnvelopeError::BadLength {
                field: "public_key",
                expected: 32,
                found: 31
            }
        );
        // The all-zero point has order 1: every shared secret with it is zero.
        assert_eq!(
            DevicePublicKey::parse(&STANDARD.encode([0u8; 32])).unwrap_err(),
            EnvelopeError::UnusableKey
        );
    }

    #[test]
    fn secret_key_bytes_round_trip() {
        let key = DeviceSecretKey::generate();
        let again = DeviceSecretKey::from_bytes(key.to_bytes().as_ref()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(DeviceSecretKey::from_bytes(&[1u8; 31]).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let key = DeviceSecretKey::generate();
        let key_hex = hex::encode(key.to_bytes().as_ref());
        let printed = format!("{key:?} {:?}", secret());
        assert!(!printed.contains(&key_hex));
        assert!(!printed.contains("Senh@"));
        assert!(printed.contains("***"));

        let other = DeviceSecretKey::generate();
        let sealed = seal(&key.public_key(), &context(), &secret());
        let err = open(&other, &context(), &sealed).unwrap_err().to_string();
        assert!(!err.contains("Senh@") && !err.contains(&key_hex));
    }
}
