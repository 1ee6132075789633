//! HTTPS served by CertHub itself: a certificate the server makes on first start
//! (`tls = "auto"`), or the office's own (`tls_cert_file`/`tls_key_file`), reloaded when its
//! files change. Either way the certificate's SHA-256 fingerprint is what agents pin.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::settings::TlsSettings;

/// How often configured certificate files are looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A certificate's SHA-256 fingerprint (what browsers and `certutil` show, and what the agent
/// pins).
pub use crate::protocol::Fingerprint;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The certificate and key files in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where `tls = "auto"` keeps what it made: `data_dir/tls/`.
pub fn auto_files(data_dir: &Path) -> TlsFiles {
    let dir = data_dir.join("tls");
    TlsFiles {
        cert_file: dir.join("server.crt.pem"),
        key_file: dir.join("server.key.pem"),
    }
}

/// Where the certificate and key of `tls` are (or, for `auto` before the first start, will be).
pub fn files_of(tls: &TlsSettings, data_dir: &Path) -> TlsFiles {
    match tls {
        TlsSettings::Files {
            cert_file,
            key_file,
        } => TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        },
        TlsSettings::Auto => auto_files(data_dir),
    }
}

/// The files to serve with: the configured ones, or (auto) the server's own, made now if
/// they do not exist yet (ECDSA P-256, valid ten years, for `names`: DNS names and IPs).
pub fn files_for(
    tls: &TlsSettings,
    data_dir: &Path,
    names: &[String],
) -> Result<(TlsFiles, bool), TlsError> {
    let files = files_of(tls, data_dir);
    match tls {
        TlsSettings::Files { .. } => Ok((files, false)),
        TlsSettings::Auto => {
            if files.cert_file.exists() && files.key_file.exists() {
                return Ok((files, false));
            }
            make_self_signed(&files, names)?;
            Ok((files, true))
        }
    }
}

/// Makes a self-signed certificate for `names` into `files` (the key 0600).
pub fn make_self_signed(files: &TlsFiles, names: &[String]) -> Result<(), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Invalid(format!("cannot make a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Invalid(format!("`tls_names`: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "CertHub");
    params.distinguished_name = dn;
    let day = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let today = chrono::Utc::now().date_naive();
    params.not_before = day(today - chrono::Days::new(1));
    params.not_after = day(today
        .checked_add_months(chrono::Months::new(120))
        .unwrap_or(today));
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Invalid(format!("cannot make the certificate: {e}")))?;
    if let Some(dir) = files.cert_file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    write_private(&files.key_file, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert_file, cert.pem()).map_err(|source| TlsError::Write {
        path: files.cert_file.clone(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

/// The names a made certificate is for: the host of `public_url`, `localhost`, `127.0.0.1`
/// and `extra` (the `tls_names` setting), each once.
pub fn names_for(public_url: &str, extra: &[String]) -> Vec<String> {
    let host = crate::settings::url_host(public_url);
    let mut names: Vec<String> = Vec::new();
    for n in [host, "localhost", "127.0.0.1"]
        .into_iter()
        .map(str::to_owned)
        .chain(extra.iter().cloned())
    {
        if !n.is_empty() && !names.iter().any(|m| m.eq_ignore_ascii_case(&n)) {
            names.push(n);
        }
    }
    names
}

/// Reads a certificate chain and its key, checked to belong together.
fn load(files: &TlsFiles) -> Result<(Arc<CertifiedKey>, Fingerprint), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let certs = certs_of(&read(&files.cert_file)?, "tls_cert_file")?;
    let fingerprint = Fingerprint::of(certs[0].as_ref());
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut read(&files.key_file)?.as_slice())
            .map_err(|e| TlsError::Invalid(format!("`tls_key_file`: {e}")))?
            .ok_or_else(|| TlsError::Invalid("`tls_key_file` holds no PEM private key".into()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| TlsError::Invalid(format!("certificate and key do not match: {e}")))?;
    Ok((Arc::new(certified), fingerprint))
}

/// When the server's certificate in `cert_file` (its first PEM certificate) ends.
pub fn not_after(cert_file: &Path) -> Result<chrono::DateTime<chrono::Utc>, TlsError> {
    let pem = std::fs::read(cert_file).map_err(|source| TlsError::Read {
        path: cert_file.to_owned(),
        source,
    })?;
    let leaf = leaf_of(&pem, "tls_cert_file")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::Invalid(format!("`tls_cert_file`: {e}")))?;
    chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| TlsError::Invalid("`tls_cert_file`: an end date out of range".into()))
}

/// The PEM certificates in `pem` (at least one; the first is the server's own).
fn certs_of(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("`{key}`: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "`{key}` holds no PEM certificate"
        )));
    }
    Ok(certs)
}

fn leaf_of(pem: &[u8], key: &str) -> Result<CertificateDer<'static>, TlsError> {
    Ok(certs_of(pem, key)?.swap_remove(0))
}

/// The certificate being served, swapped when its files change.
#[derive(Debug)]
pub struct ServedCertificate {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, Fingerprint)>,
    seen: RwLock<Option<(SystemTime, SystemTime)>>,
    /// `tls_next_cert_file`: the certificate of a planned change, announced to agents.
    next_file: Option<PathBuf>,
    next: RwLock<Option<Fingerprint>>,
}

impl ServedCertificate {
    pub fn load(files: TlsFiles, next_file: Option<PathBuf>) -> Result<Arc<Self>, TlsError> {
        let current = load(&files)?;
        let seen = modified(&files);
        let served = Self {
            files,
            current: RwLock::new(current),
            seen: RwLock::new(seen),
            next_file,
            next: RwLock::new(None),
        };
        served.refresh_next()?;
        Ok(Arc::new(served))
    }

    /// The fingerprints agents are told: the one served and the next one, unless it is
    /// already the one served.
    pub fn pins(&self) -> crate::protocol::ServerCertificatePins {
        let current = self.fingerprint();
        let next = self
            .next
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|n| *n != current);
        crate::protocol::ServerCertificatePins { current, next }
    }

    /// Reads `tls_next_cert_file` again (a missing file announces nothing).
    fn refresh_next(&self) -> Result<(), TlsError> {
        let next = match &self.next_file {
            None => None,
            Some(path) => match std::fs::read(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(TlsError::Read {
                        path: path.clone(),
                        source,
                    });
                }
                Ok(pem) => Some(leaf_of(&pem, "tls_next_cert_file").map(|l| Fingerprint::of(&l))?),
            },
        };
        *self.next.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Takes up the files if they changed: `Ok(Some(new fingerprint))` when it did; a file
    /// being written (or wrong) keeps the one served and says why.
    pub fn reload_if_changed(&self) -> Result<Option<Fingerprint>, TlsError> {
        let now = modified(&self.files);
        if now == *self.seen.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(None);
        }
        let loaded = load(&self.files)?;
        *self.seen.write().unwrap_or_else(|p| p.into_inner()) = now;
        let fingerprint = loaded.1.clone();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.1 == fingerprint {
            return Ok(None);
        }
        *current = loaded;
        Ok(Some(fingerprint))
    }

    /// Looks at the files every [`RELOAD_EVERY`] for as long as the server runs.
    pub async fn watch(self: Arc<Self>) {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        let mut complained = false;
        loop {
            every.tick().await;
            if let Err(e) = self.refresh_next() {
                tracing::warn!(error = %e, "tls_next_cert_file cannot be read: no next certificate announced");
            }
            match self.reload_if_changed() {
                Ok(Some(fingerprint)) => {
                    complained = false;
                    tracing::info!(
                        cert_file = %self.files.cert_file.display(),
                        %fingerprint,
                        "TLS certificate reloaded"
                    );
                }
                Ok(None) => complained = false,
                Err(e) if !complained => {
                    complained = true;
                    tracing::error!(error = %e, "TLS certificate files changed but cannot be used; still serving the previous one");
                }
                Err(_) => {}
            }
        }
    }

    /// The rustls configuration that serves whatever is current.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        Ok(rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(Arc::clone(self)))))
    }
}

fn modified(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((at(&files.cert_file)?, at(&files.key_file)?))
}

#[derive(Debug)]
struct Resolver(Arc<ServedCertificate>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.current.read().unwrap_or_else(|p| p.into_inner()).0,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_public_url_and_the_list() {
        assert_eq!(
            names_for(
                "https://certhub.escritorio.local:8010",
                &["10.0.0.5".into()]
            ),
            [
                "certhub.escritorio.local",
                "localhost",
                "127.0.0.1",
                "10.0.0.5"
            ]
        );
        assert_eq!(
            names_for("https://[fd00::5]:8010/", &[]),
            ["fd00::5", "localhost", "127.0.0.1"]
        );
        assert_eq!(
            names_for("https://localhost:8010", &["LOCALHOST".into()]),
            ["localhost", "127.0.0.1"]
        );
    }

    #[test]
    fn a_made_certificate_is_served_with_its_fingerprint_and_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (files, made) = files_for(
            &TlsSettings::Auto,
            dir.path(),
            &names_for("https://pc", &[]),
        )
        .unwrap();
        assert!(made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let served = ServedCertificate::load(files.clone(), None).unwrap();
        let first = served.fingerprint();
        assert_eq!(first.as_str().len(), 32 * 3 - 1);
        // Made once: the next start serves the same.
        let (again, made) = files_for(
            &TlsSettings::Auto,
            dir.path(),
            &names_for("https://pc", &[]),
        )
        .unwrap();
        assert!(!made);
        assert_eq!(
            ServedCertificate::load(again, None).unwrap().fingerprint(),
            first
        );
        // Replaced on disk: taken up; a broken file keeps the one served.
        std::thread::sleep(Duration::from_millis(20));
        make_self_signed(&files, &["pc".into()]).unwrap();
        let changed = served.reload_if_changed().unwrap().expect("reloaded");
        assert_ne!(changed, first);
        std::fs::write(&files.cert_file, "not a pem").unwrap();
        assert!(served.reload_if_changed().is_err());
        assert_eq!(served.fingerprint(), changed);
    }
}
