//! Writes the fuzzers' seed inputs for scripts/fuzz.sh: `fuzz_seeds OUT_DIR` fills
//! `OUT_DIR/<target>/` from tests/fixtures (PKCS#12 files with their passwords and their
//! certificates), the file names the tests use, blobs sealed by the crate's own `seal`, and
//! the repository's config.toml. The input formats live in fuzz/src/lib.rs.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod inputs;

use std::path::{Path, PathBuf};

use certhub::crypto::{
    self, DeviceSecretKey, InstallSecret, MasterKey, PayloadContext, SecretString,
};
use inputs::EnvelopeInput;
use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
use sha2::{Digest, Sha256};

/// Every file in tests/fixtures/pfx and the password that opens it.
const PFX: &[(&str, &str)] = &[
    ("ecnpj-aes.pfx", "1234"),
    ("ecnpj-empty-password.pfx", ""),
    ("ecnpj-nokey.pfx", "1234"),
    ("ecnpj-octet-legacy.pfx", "abc123"),
    ("ecnpj-renewed.pfx", "1234"),
    ("ecpf-nomac.pfx", "nomac123"),
    ("ecpf-utf8.pfx", "sénha-ção"),
    ("keytool-aes.p12", "chave-java"),
    ("two-keys.p12", "senha123"),
];

/// Names the tests give to the office's files.
const FILE_NAMES: &[&str] = &[
    "EMPRESA X LTDA Senha 1234.pfx",
    "PADARIA BOA senha_abc123.pfx",
    "JOSÉ DA SILVA senha errada.pfx",
    "joao silva - senha_abc123.pfx",
    "MERCADO BOM PRECO (senha 1234).p12",
    "Padaria Pão Quente senha: 9x8y7z.PFX",
    "CONSTRUTORA ÁGUA SENHA-A1b2C3.pfx",
    "clinica SENHA_Zz@99!.pfx",
    "DUAS CHAVES Senha senha123.p12",
    "MERCADO Senha1234.pfx",
    "Senha 4321 Oficina Mecânica.pfx",
    "ACME [senha=acme2024] 2026.pfx",
    "JOSE Senha sénha-ção.pfx",
    "EMPRESA SEM SENHA.pfx",
    "Contrasenhado 123.pfx",
    "senha.pfx",
    "sub/dentro Senha 1234.pfx",
    "C:\\Certs\\EMPRESA X Senha 1.pfx",
];

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds OUT_DIR"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let mut pkcs12 = Vec::new();
    for (file, password) in PFX {
        let data = std::fs::read(root.join("tests/fixtures/pfx").join(file)).unwrap();
        pkcs12.push(inputs::pkcs12_encode_pfx(password, &data));
        pkcs12.push(inputs::pkcs12_encode_pfx("senha-errada", &data));
        let store = KeyStore::from_pkcs12(&data, password, Pkcs12ImportPolicy::Strict).unwrap();
        for (_, entry) in store.entries() {
            let certs = match entry {
                KeyStoreEntry::PrivateKeyChain(chain) => chain.certs().to_vec(),
                KeyStoreEntry::Certificate(cert) => vec![cert.clone()],
                KeyStoreEntry::Secret(_) => vec![],
            };
            for cert in certs {
                pkcs12.push(inputs::pkcs12_encode_certificate(cert.as_der()));
            }
        }
    }
    write(&out, "pkcs12", pkcs12);

    write(
        &out,
        "file_name",
        FILE_NAMES.iter().map(|n| n.as_bytes().to_vec()).collect(),
    );

    let master = MasterKey::from_base64(inputs::MASTER_KEY_BASE64).unwrap();
    let device = DeviceSecretKey::from_bytes(&inputs::DEVICE_SECRET_KEY).unwrap();
    let context = PayloadContext::new(inputs::JOB_ID, inputs::DEVICE_ID);
    let aes = std::fs::read(root.join("tests/fixtures/pfx/ecnpj-aes.pfx")).unwrap();
    let mut envelope = Vec::new();
    for plaintext in [&b"1234"[..], b"", b"s\xc3\xa9nha-\xc3\xa7\xc3\xa3o", &aes] {
        let sealed = master.seal(plaintext, inputs::SEAL_CONTEXT);
        envelope.push(inputs::envelope_encode(EnvelopeInput::Sealed(&sealed)));
    }
    for (pfx, password) in [
        (&b"\x30\x82fake pfx"[..], "Senh@ 123 ção"),
        (&aes[..], "1234"),
    ] {
        let secret = InstallSecret::new(pfx.to_vec(), SecretString::new(password.into()));
        let sealed = crypto::seal(&device.public_key(), &context, &secret);
        let json = serde_json::to_vec(&sealed).unwrap();
        envelope.push(inputs::envelope_encode(EnvelopeInput::Payload(&json)));
    }
    for plaintext in [
        r#"{"pfx_base64":"MIIBAA==","password":"1234"}"#,
        r#"{"pfx_base64":"","password":""}"#,
        r#"{"password":"x","pfx_base64":"MA==","extra":[1,2,{"a":null}]}"#,
    ] {
        envelope.push(inputs::envelope_encode(EnvelopeInput::Plaintext(
            plaintext.as_bytes(),
        )));
    }
    write(&out, "envelope", envelope);

    let config_toml = std::fs::read_to_string(root.join("config.toml")).unwrap();
    // Every documented key set to its default.
    let uncommented: String = config_toml
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|kv| kv.contains(" = "))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = vec![
        inputs::config_encode(&config_toml, &[]),
        inputs::config_encode(&uncommented, &[]),
        inputs::config_encode("", &[]),
        inputs::config_encode(
            "listen = \"127.0.0.1:9000\"\ndatabase_url = \"postgres://u:p@db/certhub\"\n\
             tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\ntrusted_proxies = \"10.0.0.0/8, ::1\"\n\
             cleanup_time = \"17:30\"\nlog_level = \"certhub=debug,actix_web=warn\"\n",
            &[],
        ),
        inputs::config_encode(
            "org_name = \"Contábil\"\n",
            &[
                ("CERTHUB_LISTEN", "0.0.0.0:8010"),
                ("CERTHUB_DEV_MODE", "yes"),
                ("CERTHUB_ORG_ID", "2"),
                ("CERTHUB_TIMEZONE", "America/Manaus"),
            ],
        ),
    ];
    write(&out, "config", config);
}

/// One file per seed, named by its SHA-256 like libFuzzer's corpus files.
fn write(out: &Path, target: &str, seeds: Vec<Vec<u8>>) {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for seed in &seeds {
        std::fs::write(dir.join(hex::encode(Sha256::digest(seed))), seed).unwrap();
    }
    println!("{target}: {} seeds in {}", seeds.len(), dir.display());
}
