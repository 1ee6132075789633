use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::SecretString;

/// A fresh 256-bit random bearer token (password-set links, refresh and payload tokens).
/// Only its [`TokenHash`] is ever stored.
pub struct Token(SecretString);

impl Token {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut bytes);
        let token = Self(SecretString::new(URL_SAFE_NO_PAD.encode(bytes)));
        zeroize::Zeroize::zeroize(&mut bytes);
        token
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose())
    }
}

/// SHA-256 of a token, hex-encoded: what the database keeps and looks tokens up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(presented: &str) -> Self {
        Self(hex::encode(Sha256::digest(presented.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a stored hash.
    pub fn matches(&self, stored: &str) -> bool {
        self.0.as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert!(a.hash().matches(TokenHash::of(a.expose()).as_str()));
        assert!(!a.hash().matches(b.hash().as_str()));
        assert_ne!(a.hash().as_str(), a.expose());
    }
}
