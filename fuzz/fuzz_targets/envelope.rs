//! The sealed secrets: `MasterKey::open` on a blob from the database and `crypto::open` on the
//! payload an agent receives, with fixed keys; a forged or mangled input is an error.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certhub::crypto::{self, DeviceSecretKey, EnvelopeError, MasterKey, PayloadContext};
use certhub::protocol::SealedPayload;
use certhub_fuzz::{
    DEVICE_ID, DEVICE_SECRET_KEY, EnvelopeInput, JOB_ID, MASTER_KEY_BASE64, SEAL_CONTEXT,
    envelope_decode,
};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeS, Serializable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some(input) = envelope_decode(input) else {
        return;
    };
    match input {
        EnvelopeInput::Sealed(blob) => {
            let key = MasterKey::from_base64(MASTER_KEY_BASE64).unwrap();
            let _ = MasterKey::key_id_of(blob);
            let _ = key.open(blob, SEAL_CONTEXT);
        }
        EnvelopeInput::Payload(json) => {
            let Ok(sealed) = serde_json::from_slice::<SealedPayload>(json) else {
                return;
            };
            let _ = crypto::open(&device_key(), &context(), &sealed);
        }
        EnvelopeInput::Plaintext(plaintext) => {
            let sealed = seal_raw(plaintext);
            match crypto::open(&device_key(), &context(), &sealed) {
                Ok(_) | Err(EnvelopeError::BadPlaintext) => {}
                Err(other) => panic!("a payload sealed to this key failed with {other:?}"),
            }
        }
    }
});

fn device_key() -> DeviceSecretKey {
    DeviceSecretKey::from_bytes(&DEVICE_SECRET_KEY).unwrap()
}

fn context() -> PayloadContext {
    PayloadContext::new(JOB_ID, DEVICE_ID)
}

/// Seals any bytes the way `crypto::seal` seals its JSON.
fn seal_raw(plaintext: &[u8]) -> SealedPayload {
    type Kem = X25519HkdfSha256;
    let public =
        <Kem as hpke::Kem>::PublicKey::from_bytes(device_key().public_key().as_bytes()).unwrap();
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &public,
        &context().info(),
        plaintext,
        b"",
    )
    .unwrap();
    SealedPayload {
        enc: STANDARD.encode(enc.to_bytes()),
        ciphertext: STANDARD.encode(ciphertext),
    }
}
