//! How a fuzzer's bytes become each parser's arguments, and back: the targets decode with
//! these functions and `examples/fuzz_seeds.rs` (root crate) encodes the seeds with them, so
//! the two cannot drift apart. No dependencies, so the example can include this file.

/// The master key the envelope target opens sealed blobs with (32 bytes of 0x5A, base64).
pub const MASTER_KEY_BASE64: &str = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=";
/// The context sealed blobs are bound to.
pub const SEAL_CONTEXT: &str = "certificates.pfx:00000000-0000-4000-8000-000000000001";
/// The device's X25519 secret key for install payloads.
pub const DEVICE_SECRET_KEY: [u8; 32] = [0x07; 32];
pub const JOB_ID: &str = "7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
pub const DEVICE_ID: &str = "2b9e8d7c-6f5a-4b3c-9d2e-1f0a9b8c7d6e";

/// Longest password the pkcs12 input carries.
const PASSWORD_MAX: usize = 0x3f;
/// The first byte's flag for "a DER certificate, no PKCS#12 around it".
const CERTIFICATE_FLAG: u8 = 0x80;

/// pkcs12 target: `[flags|password length] [password] [data]`.
pub enum Pkcs12Input<'a> {
    /// A PKCS#12 file and the password to open it with (`pkcs12::open`).
    Pfx { password: String, data: &'a [u8] },
    /// A DER certificate (`pkcs12::describe`: X.509 and the ICP-Brasil fields); behind a
    /// PKCS#12 MAC a mutated certificate is almost never reached.
    Certificate(&'a [u8]),
}

pub fn pkcs12_decode(input: &[u8]) -> Option<Pkcs12Input<'_>> {
    let (&first, rest) = input.split_first()?;
    if first & CERTIFICATE_FLAG != 0 {
        return Some(Pkcs12Input::Certificate(rest));
    }
    let len = usize::from(first) & PASSWORD_MAX;
    if rest.len() < len {
        return None;
    }
    let (password, data) = rest.split_at(len);
    Some(Pkcs12Input::Pfx {
        password: String::from_utf8_lossy(password).into_owned(),
        data,
    })
}

pub fn pkcs12_encode_pfx(password: &str, data: &[u8]) -> Vec<u8> {
    let password = password.as_bytes();
    assert!(password.len() <= PASSWORD_MAX, "seed password too long");
    let mut out = vec![password.len() as u8];
    out.extend_from_slice(password);
    out.extend_from_slice(data);
    out
}

pub fn pkcs12_encode_certificate(der: &[u8]) -> Vec<u8> {
    let mut out = vec![CERTIFICATE_FLAG];
    out.extend_from_slice(der);
    out
}

/// envelope target: `[kind] [bytes]`, kind modulo 3.
pub enum EnvelopeInput<'a> {
    /// A blob sealed with the master key (`MasterKey::open`).
    Sealed(&'a [u8]),
    /// The JSON `SealedPayload` the agent receives (`crypto::open`).
    Payload(&'a [u8]),
    /// A plaintext the target seals to the device key first, so that `crypto::open` reaches
    /// its JSON and base64 reading.
    Plaintext(&'a [u8]),
}

pub fn envelope_decode(input: &[u8]) -> Option<EnvelopeInput<'_>> {
    let (&kind, rest) = input.split_first()?;
    Some(match kind % 3 {
        0 => EnvelopeInput::Sealed(rest),
        1 => EnvelopeInput::Payload(rest),
        _ => EnvelopeInput::Plaintext(rest),
    })
}

pub fn envelope_encode(input: EnvelopeInput<'_>) -> Vec<u8> {
    let (kind, bytes) = match input {
        EnvelopeInput::Sealed(b) => (0, b),
        EnvelopeInput::Payload(b) => (1, b),
        EnvelopeInput::Plaintext(b) => (2, b),
    };
    let mut out = vec![kind];
    out.extend_from_slice(bytes);
    out
}

/// config target: the TOML text, then optionally a NUL and `NAME=value` lines standing for
/// the process environment.
pub struct ConfigInput<'a> {
    pub toml: &'a str,
    pub env: Vec<(&'a str, &'a str)>,
}

pub fn config_decode(input: &[u8]) -> Option<ConfigInput<'_>> {
    let text = std::str::from_utf8(input).ok()?;
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    let env = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    Some(ConfigInput { toml, env })
}

pub fn config_encode(toml: &str, env: &[(&str, &str)]) -> Vec<u8> {
    let mut out = toml.as_bytes().to_vec();
    if !env.is_empty() {
        out.push(0);
        for (name, value) in env {
            out.extend_from_slice(format!("{name}={value}\n").as_bytes());
        }
    }
    out
}
