//! Opening an A1 certificate file in pure Rust: PKCS#12 with p12-keystore (legacy RC2/3DES,
//! OpenSSL 3 AES/PBKDF2, no MAC, any password), the end-entity certificate that goes with the
//! private key, and its metadata with x509-parser, ICP-Brasil fields included.

use chrono::{DateTime, Utc};
use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
use sha1::{Digest, Sha1};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::document::{Cnpj, Cpf};

/// Why a file could not be opened. Messages never include the password or the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PfxError {
    #[error("wrong password")]
    WrongPassword,
    #[error("not a readable PKCS#12 file: {0}")]
    Corrupt(String),
    #[error("the file holds no private key with its certificate")]
    NoPrivateKey,
    #[error("the file holds {0} private keys; expected one")]
    SeveralKeys(usize),
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
}

/// What kind of A1 certificate it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    ECnpj,
    ECpf,
    Other,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::ECnpj => "E_CNPJ",
            CertKind::ECpf => "E_CPF",
            CertKind::Other => "OTHER",
        }
    }
}

/// Metadata of the end-entity certificate of a PFX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub cn: Option<String>,
    pub issuer: String,
    /// Serial number, upper-case hex.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-1 of the DER certificate, upper-case hex: the thumbprint Windows shows.
    pub sha1: String,
    pub key_algorithm: String,
    pub key_size: Option<u32>,
    pub kind: CertKind,
    pub cnpj: Option<Cnpj>,
    /// The holder's CPF (e-CPF) or the responsible person's (e-CNPJ).
    pub cpf: Option<Cpf>,
    pub responsible_name: Option<String>,
}

const OID_CPF_HOLDER: &str = "2.16.76.1.3.1";
const OID_RESPONSIBLE_NAME: &str = "2.16.76.1.3.2";
const OID_CNPJ: &str = "2.16.76.1.3.3";
const OID_CPF_RESPONSIBLE: &str = "2.16.76.1.3.4";

/// Opens `data` with `password`.
pub fn open(data: &[u8], password: &str) -> Result<CertificateInfo, PfxError> {
    let store =
        KeyStore::from_pkcs12(data, password, Pkcs12ImportPolicy::Strict).map_err(classify)?;
    let chains: Vec<_> = store
        .entries()
        .filter_map(|(_, e)| match e {
            KeyStoreEntry::PrivateKeyChain(chain) => Some(chain),
            _ => None,
        })
        .collect();
    let chain = match chains.as_slice() {
        [] => return Err(PfxError::NoPrivateKey),
        [one] => *one,
        more => return Err(PfxError::SeveralKeys(more.len())),
    };
    // The keystore links the key to its certificate by localKeyId; the first is the leaf.
    let leaf = chain.certs().first().ok_or(PfxError::NoPrivateKey)?;
    describe(leaf.as_der())
}

/// Tries each candidate password in order; returns the info and the index of the one that
/// opened the file.
pub fn open_with_any(
    data: &[u8],
    candidates: &[&str],
) -> Result<(CertificateInfo, usize), PfxError> {
    let mut first_other = None;
    let mut wrong_password = false;
    for (i, pw) in candidates.iter().enumerate() {
        match open(data, pw) {
            Ok(info) => return Ok((info, i)),
            Err(PfxError::WrongPassword) => wrong_password = true,
            // The password opened the file; what it holds is the answer.
            Err(e @ (PfxError::NoPrivateKey | PfxError::SeveralKeys(_))) => return Err(e),
            // A file without a MAC can decrypt to garbage under a wrong password, which reads
            // as corruption: keep trying the other candidates.
            Err(other) => {
                first_other.get_or_insert(other);
            }
        }
    }
    match first_other {
        Some(e) if !wrong_password => Err(e),
        _ => Err(PfxError::WrongPassword),
    }
}

fn classify(e: p12_keystore::error::Error) -> PfxError {
    use p12_keystore::error::Error as E;
    match e {
        // A MAC mismatch, or (files without a MAC) a decryption that does not unpad.
        E::MacError(_) | E::UnpadError => PfxError::WrongPassword,
        other => PfxError::Corrupt(other.to_string()),
    }
}

/// Metadata of a DER certificate.
pub fn describe(der: &[u8]) -> Result<CertificateInfo, PfxError> {
    let bad = |e: &dyn std::fmt::Display| PfxError::BadCertificate(e.to_string());
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(&e))?;
    let time = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .ok_or_else(|| PfxError::BadCertificate("date out of range".into()))
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let spki = cert.public_key();
    let key_algorithm = match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        "1.2.840.10045.2.1" => "EC".to_owned(),
        "1.3.101.112" => "Ed25519".to_owned(),
        other => other.to_owned(),
    };
    let key_size = spki
        .parsed()
        .ok()
        .map(|k| k.key_size() as u32)
        .filter(|s| *s > 0);
    let icp = icp_fields(&cert, cn.as_deref());
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode_upper(cert.raw_serial()),
        not_before: time(cert.validity().not_before.timestamp())?,
        not_after: time(cert.validity().not_after.timestamp())?,
        sha1: hex::encode_upper(Sha1::digest(der)),
        key_algorithm,
        key_size,
        kind: icp.kind,
        cnpj: icp.cnpj,
        cpf: icp.cpf,
        responsible_name: icp.responsible_name,
        cn,
    })
}

struct Icp {
    kind: CertKind,
    cnpj: Option<Cnpj>,
    cpf: Option<Cpf>,
    responsible_name: Option<String>,
}

/// Reads one DER TLV: (tag, content, rest).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// How many `[0]` wrappers an otherName value may have (one is usual); deeper nesting in a
/// crafted file is refused instead of followed.
const OTHER_NAME_MAX_DEPTH: usize = 4;

/// The text of an otherName value: `[0] EXPLICIT` around an OCTET STRING, PrintableString,
/// UTF8String or IA5String (all seen in ICP-Brasil certificates).
fn other_name_text(value: &[u8]) -> Option<String> {
    let mut value = value;
    for _ in 0..=OTHER_NAME_MAX_DEPTH {
        let (tag, content, _) = tlv(value)?;
        match tag {
            0xA0 => value = content,
            0x04 | 0x13 | 0x0C | 0x16 => {
                return Some(String::from_utf8_lossy(content).trim().to_owned());
            }
            _ => return None,
        }
    }
    None
}

/// CPF inside the "birth date (8) + CPF (11) + ..." layout; all zeros means absent.
fn cpf_in(layout: &str) -> Option<Cpf> {
    let digits: String = layout.chars().skip(8).take(11).collect();
    Cpf::parse(&digits).filter(|c| c.as_str() != "00000000000")
}

fn icp_fields(cert: &X509Certificate<'_>, cn: Option<&str>) -> Icp {
    let mut icp = Icp {
        kind: CertKind::Other,
        cnpj: None,
        cpf: None,
        responsible_name: None,
    };
    let mut holder_cpf = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let GeneralName::OtherName(oid, value) = name else {
                continue;
            };
            let Some(text) = other_name_text(value) else {
                continue;
            };
            match oid.to_id_string().as_str() {
                OID_CNPJ => {
                    icp.cnpj = Cnpj::parse(&text).filter(|c| c.as_str() != "00000000000000")
                }
                OID_CPF_RESPONSIBLE => icp.cpf = cpf_in(&text),
                OID_CPF_HOLDER => holder_cpf = cpf_in(&text),
                OID_RESPONSIBLE_NAME => icp.responsible_name = Some(text).filter(|t| !t.is_empty()),
                _ => {}
            }
        }
    }
    if icp.cnpj.is_none() {
        // "NOME DA EMPRESA:12345678000195"
        icp.cnpj = cn
            .and_then(|cn| cn.rsplit_once(':'))
            .and_then(|(_, n)| Cnpj::parse(n));
    }
    if icp.cnpj.is_some() {
        icp.kind = CertKind::ECnpj;
    } else if holder_cpf.is_some() {
        icp.kind = CertKind::ECpf;
        icp.cpf = holder_cpf;
    }
    icp
}

#[cfg(test)]
mod tests {
    use super::*;

    const AES: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecnpj-aes.pfx");
    const LEGACY_OCTET: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecnpj-octet-legacy.pfx");
    const UTF8: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecpf-utf8.pfx");
    const NOMAC: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecpf-nomac.pfx");
    const EMPTY: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecnpj-empty-password.pfx");
    const NOKEY: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecnpj-nokey.pfx");
    const KEYTOOL: &[u8] = include_bytes!("../../tests/fixtures/pfx/keytool-aes.p12");
    const TWO_KEYS: &[u8] = include_bytes!("../../tests/fixtures/pfx/two-keys.p12");
    const RENEWED: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecnpj-renewed.pfx");
    const THUMBPRINTS: &str = include_str!("../../tests/fixtures/pfx/thumbprints.txt");

    fn thumbprint(name: &str) -> &'static str {
        THUMBPRINTS
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap()
    }

    /// `[0]` wrapped `depth` times around a PrintableString, as a crafted file could hold.
    fn nested_other_name(depth: usize) -> Vec<u8> {
        let inner = [0x13, 3, b'a', b'b', b'c'];
        let mut value = Vec::with_capacity(inner.len() + 6 * depth);
        for layer in 0..depth {
            let content = inner.len() + 6 * (depth - 1 - layer);
            value.extend_from_slice(&[0xA0, 0x84]);
            value.extend_from_slice(&(content as u32).to_be_bytes());
        }
        value.extend_from_slice(&inner);
        value
    }

    #[test]
    fn other_name_nesting_is_bounded_not_followed() {
        assert_eq!(
            other_name_text(&nested_other_name(1)).as_deref(),
            Some("abc")
        );
        assert_eq!(
            other_name_text(&nested_other_name(OTHER_NAME_MAX_DEPTH)).as_deref(),
            Some("abc")
        );
        assert_eq!(
            other_name_text(&nested_other_name(OTHER_NAME_MAX_DEPTH + 1)),
            None
        );
        // Deep enough to overflow the stack of a recursive reader.
        assert_eq!(other_name_text(&nested_other_name(300_000)), None);
    }

    #[test]
    fn openssl3_default_file_with_a_ca_in_the_chain() {
        let info = open(AES, "1234").unwrap();
        assert_eq!(info.kind, CertKind::ECnpj);
        assert_eq!(info.cnpj.as_ref().unwrap().as_str(), "11222333000181");
        assert!(info.cnpj.as_ref().unwrap().is_valid());
        assert_eq!(info.cpf.as_ref().unwrap().as_str(), "52998224725");
        assert_eq!(info.responsible_name.as_deref(), Some("MARIA RESPONSAVEL"));
        assert_eq!(info.cn.as_deref(), Some("EMPRESA X LTDA:11222333000181"));
        assert_eq!(info.sha1, thumbprint("ecnpj"), "the leaf, not the CA");
        assert_eq!(
            (info.key_algorithm.as_str(), info.key_size),
            ("RSA", Some(2048))
        );
        assert!(info.issuer.contains("AC CertHub Teste"));
        assert!(info.not_after > info.not_before);
    }

    #[test]
    fn legacy_file_with_octet_string_values_and_a_bad_check_digit() {
        let info = open(LEGACY_OCTET, "abc123").unwrap();
        assert_eq!(info.kind, CertKind::ECnpj);
        let cnpj = info.cnpj.unwrap();
        assert_eq!(cnpj.as_str(), "11222333000182");
        assert!(!cnpj.is_valid(), "kept and flagged, not dropped");
        assert_eq!(info.responsible_name.as_deref(), Some("JOAO DONO"));
        assert_eq!(info.sha1, thumbprint("ecnpj_octet"));
    }

    #[test]
    fn ecpf_with_utf8_values_and_a_non_ascii_password() {
        let info = open(UTF8, "sénha-ção").unwrap();
        assert_eq!(info.kind, CertKind::ECpf);
        assert_eq!(info.cpf.unwrap().as_str(), "52998224725");
        assert!(info.cnpj.is_none());
        assert_eq!(info.key_size, Some(3072));
        assert_eq!(info.sha1, thumbprint("ecpf"));
    }

    #[test]
    fn no_mac_and_empty_password_files() {
        assert_eq!(open(NOMAC, "nomac123").unwrap().kind, CertKind::ECpf);
        assert!(open(NOMAC, "wrong-password").is_err());
        let (_, i) = open_with_any(NOMAC, &["", "x", "wrong", "nomac123"]).unwrap();
        assert_eq!(i, 3);
        assert_eq!(open(EMPTY, "").unwrap().sha1, thumbprint("ecnpj"));
    }

    #[test]
    fn clean_errors() {
        assert_eq!(open(AES, "4321"), Err(PfxError::WrongPassword));
        assert_eq!(open(LEGACY_OCTET, "wrong"), Err(PfxError::WrongPassword));
        assert_eq!(open(NOKEY, "1234"), Err(PfxError::NoPrivateKey));
        assert!(matches!(
            open(&AES[..AES.len() / 2], "1234"),
            Err(PfxError::Corrupt(_))
        ));
        assert!(matches!(open(b"", "1234"), Err(PfxError::Corrupt(_))));
        assert!(matches!(
            open(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3], "x"),
            Err(PfxError::Corrupt(_))
        ));
        let msg = open(AES, "4321").unwrap_err().to_string();
        assert!(!msg.contains("4321"));
    }

    #[test]
    fn candidates_in_order() {
        let (info, i) = open_with_any(AES, &["", "senha", "1234"]).unwrap();
        assert_eq!(i, 2);
        assert_eq!(info.kind, CertKind::ECnpj);
        assert_eq!(open_with_any(AES, &["", "x"]), Err(PfxError::WrongPassword));
        assert!(matches!(
            open_with_any(b"garbage", &["", "x"]),
            Err(PfxError::Corrupt(_))
        ));
    }

    #[test]
    fn what_the_right_password_finds_wins_over_a_wrong_candidate() {
        assert_eq!(
            open_with_any(NOKEY, &["1234", ""]),
            Err(PfxError::NoPrivateKey)
        );
        assert_eq!(
            open_with_any(NOKEY, &["", "1234"]),
            Err(PfxError::NoPrivateKey)
        );
        assert_eq!(
            open_with_any(TWO_KEYS, &["x", "senha123", ""]),
            Err(PfxError::SeveralKeys(2))
        );
    }

    #[test]
    fn java_keytool_files() {
        let info = open(KEYTOOL, "chave-java").unwrap();
        assert_eq!(info.sha1, thumbprint("ecnpj"));
        assert_eq!(open(KEYTOOL, "1234"), Err(PfxError::WrongPassword));
        assert_eq!(open(TWO_KEYS, "senha123"), Err(PfxError::SeveralKeys(2)));
    }

    #[test]
    fn a_renewal_has_the_same_cnpj_and_a_later_expiry() {
        let old = open(AES, "1234").unwrap();
        let new = open(RENEWED, "1234").unwrap();
        assert_eq!(new.cnpj, old.cnpj);
        assert!(new.not_after > old.not_after);
        assert_eq!(new.sha1, thumbprint("ecnpj_renewed"));
    }
}
