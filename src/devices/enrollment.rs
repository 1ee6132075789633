//! The enrollment code an admin reads out or types into the agent: short, typeable, single use
//! and valid for 15 minutes; only its hash is stored.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::crypto::{SecretString, Token, TokenHash};

/// How long an enrollment code can be exchanged for the device's credentials.
pub const ENROLLMENT_TTL_MIN: i64 = 15;

/// A device's fresh secrets, shown once to the admin: only their hashes are stored.
pub struct FreshCredentials {
    pub token: Token,
    pub code: EnrollmentCode,
    pub code_expires_at: DateTime<Utc>,
}

impl FreshCredentials {
    pub fn generate(now: DateTime<Utc>) -> Self {
        Self {
            token: Token::generate(),
            code: EnrollmentCode::generate(),
            code_expires_at: now + Duration::minutes(ENROLLMENT_TTL_MIN),
        }
    }
}

/// Crockford's base 32: no I, L, O or U, and a mistyped O, I or L still reads as 0 or 1.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LEN: usize = 10;

/// Ten characters of a 32-letter alphabet (50 bits), shown grouped as `ABCD-EFGH-JK`. Guessing
/// is bounded by the per-IP limit on `/agent/enroll` and the 15-minute lifetime.
pub struct EnrollmentCode(SecretString);

impl EnrollmentCode {
    pub fn generate() -> Self {
        let mut bytes = [0u8; LEN];
        aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut bytes);
        // 256 is a multiple of 32: masking keeps the choice uniform.
        let code: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(b & 31)] as char)
            .collect();
        zeroize::Zeroize::zeroize(&mut bytes);
        Self(SecretString::new(code))
    }

    /// Reads a code as typed: case, spaces and dashes do not matter. `None` when it cannot be
    /// a code at all.
    pub fn parse(typed: &str) -> Option<Self> {
        let code: String = typed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            })
            .collect();
        (code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b)))
            .then(|| Self(SecretString::new(code)))
    }

    /// `ABCD-EFGH-JK`, to show once.
    pub fn grouped(&self) -> String {
        let c = self.0.expose();
        format!("{}-{}-{}", &c[..4], &c[4..8], &c[8..])
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose())
    }
}

impl fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentCode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typeable_and_parse_back() {
        let code = EnrollmentCode::generate();
        let shown = code.grouped();
        assert_eq!(shown.len(), 12);
        assert_eq!(&shown[4..5], "-");
        let typed = shown.to_lowercase().replace('-', " ");
        let back = EnrollmentCode::parse(&typed).unwrap();
        assert_eq!(back.hash(), code.hash());
        assert!(!format!("{code:?}").contains(&shown[..4]));
        assert_ne!(EnrollmentCode::generate().hash(), code.hash());
    }

    #[test]
    fn ambiguous_or_short_input_is_not_a_code() {
        assert!(EnrollmentCode::parse("ABCD-EFGH-J").is_none());
        assert!(EnrollmentCode::parse("ABCD-EFGH-JU").is_none());
        assert!(EnrollmentCode::parse("ABCD-EFGH-JKL").is_none());
        assert!(EnrollmentCode::parse("abcd efgh jk").is_some());
        let o = EnrollmentCode::parse("ABCD-EFGH-JO").unwrap();
        assert_eq!(
            o.hash(),
            EnrollmentCode::parse("ABCD-EFGH-J0").unwrap().hash()
        );
    }
}
