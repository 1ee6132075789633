//! The certificate store the agent installs into: Windows' CurrentUser `MY` in production
//! (`agent/windows/store.rs`), a folder of JSON records on other systems (the real
//! `certhub-agent` runs end to end on Linux in tests), and memory in unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::crypto::SecretString;

/// Why an import or a removal failed; each maps to an `error_code` of the job's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The password does not open the PFX.
    #[error("the PFX password is wrong")]
    WrongPassword,
    /// The PFX could not be imported (corrupt, unsupported, no private key).
    #[error("the PFX could not be imported: {0}")]
    ImportRefused(String),
    /// The store refused to take the certificate, or to let it go.
    #[error("the certificate store refused: {0}")]
    StoreRefused(String),
    /// The key was imported exportable: the import was undone.
    #[error("the private key is exportable; the import was undone")]
    KeyExportable,
    /// The user already has this certificate and the agent did not put it there.
    #[error("the certificate is already in the store and was not installed by CertHub")]
    AlreadyInstalled,
    /// Asked to remove a certificate this agent did not import (the user's own, or one a
    /// server named that it never installed): nothing was touched.
    #[error("the certificate in the store was not installed by this agent; it was left in place")]
    NotInstalledByAgent,
    /// Not a SHA-1 thumbprint (40 hexadecimal digits): refused before any file or store use.
    #[error("not a SHA-1 thumbprint (40 hexadecimal digits)")]
    InvalidThumbprint,
}

impl StoreError {
    /// The documented `error_code` of a `FAILED` result (`docs/protocol.md`).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::WrongPassword => "WRONG_PASSWORD",
            StoreError::ImportRefused(_) => "IMPORT_REFUSED",
            StoreError::StoreRefused(_) => "STORE_REFUSED",
            StoreError::KeyExportable => "KEY_EXPORTABLE",
            StoreError::AlreadyInstalled => "ALREADY_INSTALLED",
            StoreError::NotInstalledByAgent => "NOT_INSTALLED_BY_AGENT",
            StoreError::InvalidThumbprint => "INVALID_THUMBPRINT",
        }
    }
}

/// What an import left in the store: enough to find and delete both halves later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// SHA-1 of the certificate, upper-case hex.
    pub thumbprint: String,
    /// Where the private key went: `CNG`, `CAPI` (Windows) or `DIRECTORY`/`MEMORY`.
    pub key_storage: String,
    /// The CNG key name or CryptoAPI container, to delete the key with the certificate.
    pub key_name: String,
    /// The mark the import left on the certificate ([`MARK_PREFIX`] and a random id, a
    /// certificate property on Windows): what makes it this agent's to remove. Empty for an
    /// entry rebuilt from the server's list, or recorded before marks existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mark: String,
}

/// How every mark this agent leaves begins.
pub const MARK_PREFIX: &str = "CertHub-install:";

/// A new mark for an import.
pub fn new_mark() -> String {
    format!("{MARK_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

impl Installed {
    /// Whether the certificate found in the store (carrying `mark`, its key at `key_name`) is
    /// the one this record says the agent imported. With a recorded mark, the marks must be
    /// equal; without one (rebuilt from the server's list, or an older record), the
    /// certificate must carry a CertHub mark, or its key be the very one this record names.
    /// A certificate the user put there has neither: it is never removed.
    pub fn owns(&self, mark: Option<&str>, key_name: Option<&str>) -> bool {
        if !self.mark.is_empty() {
            return mark == Some(self.mark.as_str());
        }
        mark.is_some_and(|m| m.starts_with(MARK_PREFIX))
            || (!self.key_name.is_empty() && key_name == Some(self.key_name.as_str()))
    }
}

/// A SHA-1 thumbprint as the server sends it: 40 hexadecimal digits (spaces and colons
/// ignored), upper case. Anything else is refused before it reaches a file name or the store.
pub fn parse_thumbprint(text: &str) -> Result<String, StoreError> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if digits.len() == 40 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digits.to_ascii_uppercase())
    } else {
        Err(StoreError::InvalidThumbprint)
    }
}

/// The outcome of a removal: the certificate is gone; was its key deleted too?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// The certificate was in the store before this call.
    pub was_present: bool,
    pub key_deleted: bool,
}

/// A certificate store. Implementations remove only what they are asked to, by thumbprint,
/// and treat "already absent" as removed.
pub trait CertStore: Send + Sync {
    /// Imports the PFX with a non-exportable key and a friendly name; verifies the store holds
    /// it with its key. A failure leaves nothing behind.
    fn install(
        &self,
        pfx: &[u8],
        password: &SecretString,
        friendly_name: &str,
    ) -> Result<Installed, StoreError>;

    /// Whether the certificate with `thumbprint` is in the store.
    fn contains(&self, thumbprint: &str) -> Result<bool, StoreError>;

    /// Removes the certificate and deletes its private key (`record` names the key), commits
    /// the store and checks both are gone. Absent counts as removed.
    fn remove_with_key(&self, record: &Installed) -> Result<Removal, StoreError>;

    /// The SHA-1 of the certificate a PFX holds, without installing it (the leaf, upper hex);
    /// `None` when the store only knows once it has imported (the agent then checks the
    /// imported thumbprint and undoes a mismatch).
    fn thumbprint_of(
        &self,
        pfx: &[u8],
        password: &SecretString,
    ) -> Result<Option<String>, StoreError> {
        let _ = (pfx, password);
        Ok(None)
    }
}

/// A store in memory for unit tests: the "PFX" is `thumbprint:password`.
#[derive(Default)]
pub struct MemoryStore {
    certs: Mutex<BTreeMap<String, Installed>>,
    /// Certificates the user installed by hand.
    foreign: Mutex<Vec<String>>,
    removals: Mutex<u32>,
}

impl MemoryStore {
    /// A fake PFX for [`MemoryStore`].
    pub fn pfx(thumbprint: &str, password: &str) -> Vec<u8> {
        format!("{thumbprint}:{password}").into_bytes()
    }

    pub fn add_foreign(&self, thumbprint: &str) {
        self.foreign.lock().unwrap().push(thumbprint.to_owned());
    }

    pub fn thumbprints(&self) -> Vec<String> {
        self.certs.lock().unwrap().keys().cloned().collect()
    }

    /// How many removals found something to remove.
    pub fn removals(&self) -> u32 {
        *self.removals.lock().unwrap()
    }
}

impl CertStore for MemoryStore {
    fn install(
        &self,
        pfx: &[u8],
        password: &SecretString,
        _friendly_name: &str,
    ) -> Result<Installed, StoreError> {
        let thumbprint = self.leaf(pfx, password)?;
        if self.foreign.lock().unwrap().contains(&thumbprint) {
            return Err(StoreError::AlreadyInstalled);
        }
        let installed = Installed {
            key_name: format!("memory-{}", uuid::Uuid::new_v4().simple()),
            thumbprint: thumbprint.clone(),
            key_storage: "MEMORY".into(),
            mark: new_mark(),
        };
        self.certs
            .lock()
            .unwrap()
            .insert(thumbprint, installed.clone());
        Ok(installed)
    }

    fn contains(&self, thumbprint: &str) -> Result<bool, StoreError> {
        Ok(self.certs.lock().unwrap().contains_key(thumbprint)
            || self.foreign.lock().unwrap().iter().any(|t| t == thumbprint))
    }

    fn remove_with_key(&self, record: &Installed) -> Result<Removal, StoreError> {
        let thumbprint = record.thumbprint.to_ascii_uppercase();
        if self.foreign.lock().unwrap().contains(&thumbprint) {
            return Err(StoreError::NotInstalledByAgent);
        }
        let mut certs = self.certs.lock().unwrap();
        if let Some(found) = certs.get(&thumbprint)
            && !record.owns(Some(&found.mark), Some(&found.key_name))
        {
            return Err(StoreError::NotInstalledByAgent);
        }
        let was_present = certs.remove(&thumbprint).is_some();
        drop(certs);
        if was_present {
            *self.removals.lock().unwrap() += 1;
        }
        Ok(Removal {
            was_present,
            key_deleted: true,
        })
    }

    fn thumbprint_of(
        &self,
        pfx: &[u8],
        password: &SecretString,
    ) -> Result<Option<String>, StoreError> {
        self.leaf(pfx, password).map(Some)
    }
}

impl MemoryStore {
    fn leaf(&self, pfx: &[u8], password: &SecretString) -> Result<String, StoreError> {
        let text =
            std::str::from_utf8(pfx).map_err(|_| StoreError::ImportRefused("not a PFX".into()))?;
        let (thumbprint, expected) = text
            .split_once(':')
            .ok_or_else(|| StoreError::ImportRefused("not a PFX".into()))?;
        if expected != password.expose() {
            return Err(StoreError::WrongPassword);
        }
        Ok(thumbprint.to_ascii_uppercase())
    }
}

#[cfg(not(windows))]
pub use directory::DirectoryStore;

#[cfg(not(windows))]
mod directory {
    use std::fs;
    use std::path::PathBuf;

    use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
    use serde::{Deserialize, Serialize};
    use sha1::{Digest, Sha1};

    use crate::agent::config::write_json;
    use crate::agent::store::{
        CertStore, Installed, Removal, StoreError, new_mark, parse_thumbprint,
    };
    use crate::crypto::SecretString;

    /// A store for systems without Windows' one: a folder with one JSON record per
    /// certificate (thumbprint, friendly name, subject, a stand-in key name). It never holds
    /// the PFX or its password.
    pub struct DirectoryStore {
        dir: PathBuf,
    }

    #[derive(Serialize, Deserialize)]
    struct Record {
        thumbprint: String,
        friendly_name: String,
        subject: String,
        key_name: String,
        installed_at: chrono::DateTime<chrono::Utc>,
        /// The agent's mark (absent on a certificate put there by hand).
        #[serde(default)]
        mark: Option<String>,
    }

    impl DirectoryStore {
        pub fn new(dir: impl Into<PathBuf>) -> Self {
            Self { dir: dir.into() }
        }

        /// The record of `thumbprint`: only ever a name of 40 hex digits in the folder.
        fn path(&self, thumbprint: &str) -> Result<PathBuf, StoreError> {
            Ok(self
                .dir
                .join(format!("{}.json", parse_thumbprint(thumbprint)?)))
        }

        /// The stand-in key file: only names this store makes (`certhub-` and hex digits).
        fn key_path(&self, key_name: &str) -> Option<PathBuf> {
            let id = key_name.strip_prefix("certhub-")?;
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| self.dir.join("keys").join(key_name))
        }

        /// Thumbprints in the store, sorted.
        pub fn list(&self) -> Vec<String> {
            let mut out: Vec<String> = fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_suffix(".json").map(str::to_owned)
                })
                .collect();
            out.sort();
            out
        }

        /// Puts a certificate in as the user would by hand (tests of `ALREADY_INSTALLED`).
        pub fn add_foreign(&self, thumbprint: &str) -> Result<(), StoreError> {
            let record = Record {
                thumbprint: thumbprint.to_ascii_uppercase(),
                friendly_name: "installed by hand".into(),
                subject: String::new(),
                key_name: String::new(),
                installed_at: chrono::Utc::now(),
                mark: None,
            };
            write_json(&self.path(thumbprint)?, &record)
                .map_err(|e| StoreError::StoreRefused(e.to_string()))
        }

        fn leaf(pfx: &[u8], password: &SecretString) -> Result<(String, String), StoreError> {
            let store = KeyStore::from_pkcs12(pfx, password.expose(), Pkcs12ImportPolicy::Strict)
                .map_err(|e| match e {
                p12_keystore::error::Error::MacError(_)
                | p12_keystore::error::Error::UnpadError => StoreError::WrongPassword,
                other => StoreError::ImportRefused(other.to_string()),
            })?;
            let chain = store
                .entries()
                .find_map(|(_, e)| match e {
                    KeyStoreEntry::PrivateKeyChain(chain) => Some(chain),
                    _ => None,
                })
                .ok_or_else(|| StoreError::ImportRefused("no private key in the PFX".into()))?;
            let leaf = chain
                .certs()
                .first()
                .ok_or_else(|| StoreError::ImportRefused("no certificate in the PFX".into()))?;
            Ok((
                hex::encode_upper(Sha1::digest(leaf.as_der())),
                leaf.subject().to_owned(),
            ))
        }
    }

    impl CertStore for DirectoryStore {
        fn install(
            &self,
            pfx: &[u8],
            password: &SecretString,
            friendly_name: &str,
        ) -> Result<Installed, StoreError> {
            let (thumbprint, subject) = Self::leaf(pfx, password)?;
            let path = self.path(&thumbprint)?;
            if path.exists() {
                return Err(StoreError::AlreadyInstalled);
            }
            let key_name = format!("certhub-{}", uuid::Uuid::new_v4().simple());
            let mark = new_mark();
            let record = Record {
                thumbprint: thumbprint.clone(),
                friendly_name: friendly_name.to_owned(),
                subject,
                key_name: key_name.clone(),
                installed_at: chrono::Utc::now(),
                mark: Some(mark.clone()),
            };
            // The "key" is a marker, so removal can show it deleted the key too.
            let key = self
                .key_path(&key_name)
                .ok_or_else(|| StoreError::StoreRefused("key name".into()))?;
            crate::agent::config::write_atomic(&key, b"non-exportable stand-in")
                .map_err(|e| StoreError::StoreRefused(e.to_string()))?;
            if let Err(e) = write_json(&path, &record) {
                let _ = fs::remove_file(&key);
                return Err(StoreError::StoreRefused(e.to_string()));
            }
            Ok(Installed {
                thumbprint,
                key_storage: "DIRECTORY".into(),
                key_name,
                mark,
            })
        }

        fn contains(&self, thumbprint: &str) -> Result<bool, StoreError> {
            Ok(self.path(thumbprint)?.exists())
        }

        fn remove_with_key(&self, record: &Installed) -> Result<Removal, StoreError> {
            let path = self.path(&record.thumbprint)?;
            let found: Option<Record> = crate::agent::config::read_json(&path)
                .map_err(|e| StoreError::StoreRefused(e.to_string()))?;
            if let Some(found) = &found
                && !record.owns(found.mark.as_deref(), Some(&found.key_name))
            {
                return Err(StoreError::NotInstalledByAgent);
            }
            let was_present = found.is_some();
            if was_present {
                fs::remove_file(&path).map_err(|e| StoreError::StoreRefused(e.to_string()))?;
            }
            let key_deleted = match self.key_path(&record.key_name) {
                None => false,
                Some(key) => {
                    let _ = fs::remove_file(&key);
                    !key.exists()
                }
            };
            Ok(Removal {
                was_present,
                key_deleted,
            })
        }

        fn thumbprint_of(
            &self,
            pfx: &[u8],
            password: &SecretString,
        ) -> Result<Option<String>, StoreError> {
            Self::leaf(pfx, password).map(|(t, _)| Some(t))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const PFX: &[u8] = include_bytes!("../../tests/fixtures/pfx/ecnpj-aes.pfx");

        /// Issue 23: only what the store itself imported (its mark) is removed; a thumbprint
        /// that is a path never becomes one.
        #[test]
        fn only_its_own_imports_are_removed_and_a_path_is_not_a_thumbprint() {
            let dir = tempfile::tempdir().unwrap();
            let store = DirectoryStore::new(dir.path().join("store"));
            let victim = dir.path().join("VICTIM.json");
            std::fs::write(&victim, b"{}").unwrap();
            let hostile = Installed {
                thumbprint: "../VICTIM".into(),
                key_storage: String::new(),
                key_name: "../../VICTIM.json".into(),
                mark: String::new(),
            };
            assert_eq!(
                store.remove_with_key(&hostile),
                Err(StoreError::InvalidThumbprint)
            );
            assert!(victim.exists());

            let users = "D".repeat(40);
            store.add_foreign(&users).unwrap();
            let named = Installed {
                thumbprint: users.clone(),
                key_storage: String::new(),
                key_name: String::new(),
                mark: String::new(),
            };
            assert_eq!(
                store.remove_with_key(&named),
                Err(StoreError::NotInstalledByAgent)
            );
            assert!(store.contains(&users).unwrap());

            // Its own import, known only from the server's list (no mark recorded): removed.
            let pw = SecretString::new("1234".into());
            let ours = store.install(PFX, &pw, "x").unwrap();
            assert!(ours.mark.starts_with(crate::agent::store::MARK_PREFIX));
            let rebuilt = Installed {
                key_name: String::new(),
                mark: String::new(),
                ..ours.clone()
            };
            assert!(store.remove_with_key(&rebuilt).unwrap().was_present);
            // A recorded mark must be the one in the store.
            let again = store.install(PFX, &pw, "x").unwrap();
            let other = Installed {
                mark: crate::agent::store::new_mark(),
                ..again.clone()
            };
            assert_eq!(
                store.remove_with_key(&other),
                Err(StoreError::NotInstalledByAgent)
            );
            assert!(store.remove_with_key(&again).unwrap().was_present);
        }

        #[test]
        fn installs_records_and_removes_with_the_key() {
            let dir = tempfile::tempdir().unwrap();
            let store = DirectoryStore::new(dir.path());
            let pw = SecretString::new("1234".into());
            assert_eq!(
                store.install(PFX, &SecretString::new("nope".into()), "x"),
                Err(StoreError::WrongPassword)
            );
            let installed = store
                .install(PFX, &pw, "CertHub · EMPRESA X LTDA · até 18:00")
                .unwrap();
            assert_eq!(installed.thumbprint.len(), 40);
            assert_eq!(
                store.thumbprint_of(PFX, &pw).unwrap(),
                Some(installed.thumbprint.clone())
            );
            assert_eq!(store.list(), vec![installed.thumbprint.clone()]);
            assert_eq!(
                store.install(PFX, &pw, "x"),
                Err(StoreError::AlreadyInstalled)
            );
            let text =
                std::fs::read_to_string(dir.path().join(format!("{}.json", installed.thumbprint)))
                    .unwrap();
            assert!(
                !text.contains("1234") && text.contains("até 18:00"),
                "{text}"
            );
            let removal = store.remove_with_key(&installed).unwrap();
            assert_eq!(
                removal,
                Removal {
                    was_present: true,
                    key_deleted: true
                }
            );
            assert!(!store.contains(&installed.thumbprint).unwrap());
            let again = store.remove_with_key(&installed).unwrap();
            assert_eq!(
                again,
                Removal {
                    was_present: false,
                    key_deleted: true
                }
            );
        }
    }
}

/// A shared store is a store (tests keep a handle on the one the agent uses).
impl<S: CertStore + ?Sized> CertStore for std::sync::Arc<S> {
    fn install(
        &self,
        pfx: &[u8],
        password: &SecretString,
        friendly_name: &str,
    ) -> Result<Installed, StoreError> {
        (**self).install(pfx, password, friendly_name)
    }
    fn contains(&self, thumbprint: &str) -> Result<bool, StoreError> {
        (**self).contains(thumbprint)
    }
    fn remove_with_key(&self, record: &Installed) -> Result<Removal, StoreError> {
        (**self).remove_with_key(record)
    }
    fn thumbprint_of(
        &self,
        pfx: &[u8],
        password: &SecretString,
    ) -> Result<Option<String>, StoreError> {
        (**self).thumbprint_of(pfx, password)
    }
}
