//! Passwords: the policy, and bcrypt over a SHA-256 pre-hash so that nothing past bcrypt's
//! 72 bytes is ever silently ignored (the seed's pinned passlib truncated).

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::SecretString;
use crate::domain::Email;
use crate::error::AppError;

pub const MIN_CHARS: usize = 10;
/// Longer inputs are refused before hashing (a 10 kB "password" is an attack, not a secret).
pub const MAX_CHARS: usize = 256;

/// A password that passed the policy. Never printed.
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: &str, email: &Email) -> Result<Self, AppError> {
        let chars = raw.chars().count();
        if chars < MIN_CHARS {
            return Err(AppError::Validation(format!(
                "new_password: at least {MIN_CHARS} characters"
            )));
        }
        if chars > MAX_CHARS {
            return Err(AppError::Validation(format!(
                "new_password: at most {MAX_CHARS} characters"
            )));
        }
        if raw.trim().to_lowercase() == email.as_str() {
            return Err(AppError::Validation(
                "new_password: must not be the e-mail address".into(),
            ));
        }
        Ok(Self(SecretString::new(raw.to_owned())))
    }

    /// bcrypt hash (blocking: call from `spawn_blocking`).
    pub fn hash(&self, cost: u32) -> Result<String, AppError> {
        bcrypt::non_truncating_hash(prehash(self.0.expose()).as_bytes(), cost)
            .map_err(|e| AppError::Internal(format!("bcrypt: {e}")))
    }
}

/// Runs bcrypt work (`hash`, `verify`) on the blocking pool, off the request's thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))
}

/// base64(SHA-256(password)): 44 bytes, always within bcrypt's limit, no NUL bytes.
fn prehash(raw: &str) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(Sha256::digest(raw.as_bytes())))
}

/// Checks `raw` against a stored hash; with no hash, burns the same time against a dummy so
/// an unknown e-mail and a wrong password look alike (blocking).
pub fn verify(raw: &str, stored: Option<&str>, cost: u32) -> bool {
    if raw.chars().count() > MAX_CHARS {
        // Still spend the time, on a bounded input.
        let _ = bcrypt::verify(prehash(""), dummy_hash(cost));
        return false;
    }
    match stored {
        Some(hash) => bcrypt::verify(prehash(raw).as_bytes(), hash).unwrap_or(false),
        None => {
            let _ = bcrypt::verify(prehash(raw).as_bytes(), dummy_hash(cost));
            false
        }
    }
}

fn dummy_hash(cost: u32) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| bcrypt::hash("certhub-dummy-password", cost).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("maria@escritorio.com.br").unwrap()
    }

    #[test]
    fn policy() {
        assert!(Password::parse("curta", &email()).is_err());
        assert!(Password::parse("maria@escritorio.com.br", &email()).is_err());
        assert!(Password::parse(&"x".repeat(10_000), &email()).is_err());
        assert!(Password::parse("SenhaForte123!", &email()).is_ok());
    }

    #[test]
    fn long_passwords_are_not_truncated() {
        let a = "a".repeat(72) + "first-ending";
        let b = "a".repeat(72) + "other-ending";
        let hash = Password::parse(&a, &email()).unwrap().hash(12).unwrap();
        assert!(verify(&a, Some(&hash), 12));
        assert!(!verify(&b, Some(&hash), 12), "bytes past 72 must count");
        assert!(!verify("wrong password", None, 12));
    }
}
