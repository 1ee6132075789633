//! Small domain types shared by several areas.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// An office (organisation). Every row that belongs to an office carries its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct OrgId(pub i64);

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Global role of a user inside their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Dev,
    Admin,
    View,
}

impl Role {
    /// Whether a user of this role may administer an account of role `target` (change it,
    /// issue its password-set link): only a DEV may act on a DEV.
    pub fn may_administer(self, target: Role) -> bool {
        target != Role::Dev || self == Role::Dev
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dev => "DEV",
            Role::Admin => "ADMIN",
            Role::View => "VIEW",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEV" => Ok(Role::Dev),
            "ADMIN" => Ok(Role::Admin),
            "VIEW" => Ok(Role::View),
            _ => Err(format!("unknown role {s:?}: expected ADMIN, DEV or VIEW")),
        }
    }
}

/// A normalised e-mail address (trimmed, lower-case, one `@`, a dot in the domain).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if valid {
            Ok(Self(email))
        } else {
            Err(format!("invalid e-mail address {raw:?}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certificate's SHA-1 thumbprint as Windows shows it: 40 upper-case hex digits. Spaces and
/// colons that copies from `certmgr` carry are dropped; case does not matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "server", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Thumbprint(String);

impl Thumbprint {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let hex: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect::<String>()
            .to_ascii_uppercase();
        if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex))
        } else {
            Err("expected 40 hexadecimal digits (SHA-1)".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text a person or an agent typed (a host name, a reason, an error message): trimmed,
/// never blank, at most `MAX` characters. Blank text is no text: [`Text::optional`] gives
/// `None` for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text<const MAX: usize>(String);

/// A device's host name, domain or OS version.
pub type Label = Text<255>;
/// A version string an agent reports.
pub type Version = Text<64>;
/// Why a user asks, approves, denies or removes.
pub type Reason = Text<500>;

impl<const MAX: usize> Text<MAX> {
    /// `raw` trimmed, `None` when absent or blank; longer than `MAX` characters is refused,
    /// naming `field`.
    pub fn optional(field: &str, raw: Option<String>) -> Result<Option<Self>, AppError> {
        let Some(text) = raw.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        if text.chars().count() > MAX {
            return Err(AppError::Validation(format!(
                "{field}: at most {MAX} characters"
            )));
        }
        Ok(Some(Self(text)))
    }

    /// As [`Text::optional`], for text that must be there: blank is refused with `missing`.
    pub fn required(field: &str, raw: String, missing: &str) -> Result<Self, AppError> {
        Self::optional(field, Some(raw))?
            .ok_or_else(|| AppError::Validation(format!("{field}: {missing}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> From<Text<MAX>> for String {
    fn from(text: Text<MAX>) -> Self {
        text.0
    }
}

impl<const MAX: usize> fmt::Display for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively() {
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert_eq!(Role::View.to_string(), "VIEW");
        assert!("ROOT".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse(" Maria@Escritorio.com.br ").unwrap().as_str(),
            "maria@escritorio.com.br"
        );
        assert_eq!(
            Email::parse("joão@contábil.com.br").unwrap().as_str(),
            "joão@contábil.com.br"
        );
        for bad in ["", "a", "a@b", "a@@b.c", "a b@c.d", "@c.d", "a@.c", "a@c."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thumbprints_normalise() {
        let t = Thumbprint::parse(" ab:cd 0123456789abcdef0123456789abcdef0123 ").unwrap();
        assert_eq!(t.as_str(), "ABCD0123456789ABCDEF0123456789ABCDEF0123");
        assert!(Thumbprint::parse("ABCD").is_err());
        assert!(Thumbprint::parse(&"G".repeat(40)).is_err());
    }

    #[test]
    fn free_text_is_trimmed_blank_is_none_and_long_is_refused() {
        assert_eq!(
            Text::<5>::optional("f", Some("  abc \n".into()))
                .unwrap()
                .unwrap()
                .as_str(),
            "abc"
        );
        assert_eq!(Text::<5>::optional("f", Some(" \t ".into())).unwrap(), None);
        assert_eq!(Text::<5>::optional("f", None).unwrap(), None);
        assert!(
            Text::<5>::optional("f", Some("ééééé".into()))
                .unwrap()
                .is_some()
        );
        let err = Text::<5>::optional("hostname", Some("abcdef".into())).unwrap_err();
        assert_eq!(err.to_string(), "hostname: at most 5 characters");
        let err = Text::<5>::required("hostname", " ".into(), "required").unwrap_err();
        assert_eq!(err.to_string(), "hostname: required");
    }
}
