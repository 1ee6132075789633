//! Where the agent keeps what pairing gave it: `config.json` (server, device id, portal) and the
//! secrets (device token, X25519 secret key) behind a [`Secrets`] trait — DPAPI on Windows, a
//! 0600 file elsewhere. Every file is written atomically: a crash never leaves half a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{DeviceSecretKey, SecretString};

/// The agent's file as the person at the PC runs it: the Windows build is installed as
/// `Certhub.Agent.exe` (the runbook's name), elsewhere it is `certhub-agent`.
pub const AGENT_EXE: &str = if cfg!(windows) {
    "Certhub.Agent.exe"
} else {
    "certhub-agent"
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("URL do servidor inválida: {0}")]
    BadUrl(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "Agente não pareado: rode `{AGENT_EXE} pair --server URL --code CÓDIGO` (ou --device-id ID --device-token TOKEN)"
    )]
    NotPaired,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The agent's folder: `%LOCALAPPDATA%\CertHubAgent\` on Windows; elsewhere
/// `CERTHUB_AGENT_HOME`, or `$XDG_DATA_HOME/certhub-agent`, or `~/.local/share/certhub-agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(home) = var("CERTHUB_AGENT_HOME") {
            return Ok(Self(home.into()));
        }
        let found = if cfg!(windows) {
            var("LOCALAPPDATA").map(|d| PathBuf::from(d).join("CertHubAgent"))
        } else {
            var("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .map(|d| d.join("certhub-agent"))
        };
        found.map(Self).ok_or_else(|| ConfigError::Io {
            path: PathBuf::from("CERTHUB_AGENT_HOME"),
            source: std::io::Error::other("no data folder: set CERTHUB_AGENT_HOME"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn secrets(&self) -> PathBuf {
        self.0.join("secrets.dat")
    }
    /// What the agent installed (the seed's name; the user may edit it).
    pub fn ledger(&self) -> PathBuf {
        self.0.join("installed_thumbprints.json")
    }
    pub fn outbox(&self) -> PathBuf {
        self.0.join("outbox.json")
    }
    /// Last heartbeat, policy and clock skew, for `status` and offline cleanups.
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    /// The server certificate fingerprints pinned at pairing (absent: the system's roots).
    pub fn server_certificate(&self) -> PathBuf {
        self.0.join("server_certificate.json")
    }
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }
    /// The directory certificate store of non-Windows builds.
    pub fn store(&self) -> PathBuf {
        self.0.join("store")
    }

    pub fn create(&self) -> Result<(), ConfigError> {
        fs::create_dir_all(&self.0).map_err(io(&self.0))
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part:
/// a temporary file beside it (owner-only), fsync, rename over, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Reads a JSON file; `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ConfigError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ConfigError::Damaged {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ConfigError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ConfigError::Damaged {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// The server's base URL, as typed with or without `/api/v1` (the seed's examples include it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerUrl(String);

impl ServerUrl {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadUrl(text.to_owned());
        let mut url = text.trim().trim_end_matches('/').to_owned();
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
            .ok_or_else(bad)?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err(bad());
        }
        for suffix in ["/api/v1", "/api"] {
            if url.to_ascii_lowercase().ends_with(suffix) {
                url.truncate(url.len() - suffix.len());
                url = url.trim_end_matches('/').to_owned();
            }
        }
        Ok(Self(url))
    }

    /// `path` under `/api/v1` (`path` starts with `/`).
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn portal(&self) -> String {
        format!("{}/", self.0)
    }
}

impl TryFrom<String> for ServerUrl {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ServerUrl> for String {
    fn from(u: ServerUrl) -> String {
        u.0
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `config.json`: nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub server_url: ServerUrl,
    pub device_id: uuid::Uuid,
    pub portal_url: String,
    pub paired_at: chrono::DateTime<chrono::Utc>,
}

impl Config {
    pub fn load(dir: &DataDir) -> Result<Self, ConfigError> {
        read_json(&dir.config())?.ok_or(ConfigError::NotPaired)
    }

    pub fn save(&self, dir: &DataDir) -> Result<(), ConfigError> {
        write_json(&dir.config(), self)
    }
}

/// What only this device may know: its token and its X25519 secret key.
pub struct DeviceSecrets {
    pub device_token: SecretString,
    pub key: DeviceSecretKey,
}

#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct SecretsFile {
    device_token: String,
    x25519_secret: String,
}

impl DeviceSecrets {
    /// The bytes a [`Secrets`] implementation protects (DPAPI wraps exactly these).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let file = SecretsFile {
            device_token: self.device_token.expose().to_owned(),
            x25519_secret: STANDARD.encode(*self.key.to_bytes()),
        };
        Zeroizing::new(serde_json::to_vec(&file).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let file: SecretsFile = serde_json::from_slice(bytes).map_err(|_| "not JSON".to_owned())?;
        let raw = Zeroizing::new(
            STANDARD
                .decode(&file.x25519_secret)
                .map_err(|_| "bad key".to_owned())?,
        );
        let key = DeviceSecretKey::from_bytes(&raw).map_err(|e| e.to_string())?;
        Ok(Self {
            device_token: SecretString::new(file.device_token.clone()),
            key,
        })
    }
}

/// Keeps [`DeviceSecrets`] on this machine. Windows: DPAPI (CurrentUser, with entropy) in
/// `secrets.dat`; other systems and tests: [`FileSecrets`].
pub trait Secrets: Send + Sync {
    fn load(&self) -> Result<Option<DeviceSecrets>, ConfigError>;
    fn save(&self, secrets: &DeviceSecrets) -> Result<(), ConfigError>;
    fn clear(&self) -> Result<(), ConfigError>;
}

/// `secrets.dat` readable by its owner only (0600), written atomically.
pub struct FileSecrets {
    path: PathBuf,
}

impl FileSecrets {
    pub fn new(dir: &DataDir) -> Self {
        Self {
            path: dir.secrets(),
        }
    }
}

impl Secrets for FileSecrets {
    fn load(&self) -> Result<Option<DeviceSecrets>, ConfigError> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                DeviceSecrets::decode(&bytes)
                    .map(Some)
                    .map_err(|reason| ConfigError::Damaged {
                        path: self.path.clone(),
                        reason,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&self.path)(e)),
        }
    }

    fn save(&self, secrets: &DeviceSecrets) -> Result<(), ConfigError> {
        write_atomic(&self.path, &secrets.encode())
    }

    fn clear(&self) -> Result<(), ConfigError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&self.path)(e)),
            _ => Ok(()),
        }
    }
}

/// Records a new identity. Secrets first, then `config.json`: a crash between the two leaves
/// the old config with new secrets, which fails authentication and asks for pairing again
/// instead of mixing identities silently.
pub fn save_identity(
    dir: &DataDir,
    secrets: &dyn Secrets,
    config: &Config,
    device: &DeviceSecrets,
) -> Result<(), ConfigError> {
    dir.create()?;
    secrets.save(device)?;
    config.save(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised_with_or_without_the_api_prefix() {
        for typed in [
            "http://10.0.0.5:8080",
            "http://10.0.0.5:8080/",
            "http://10.0.0.5:8080/api/v1",
            "http://10.0.0.5:8080/api/v1/",
            " http://10.0.0.5:8080/API/V1 ",
            "http://10.0.0.5:8080/api",
        ] {
            let url = ServerUrl::parse(typed).unwrap();
            assert_eq!(url.as_str(), "http://10.0.0.5:8080", "{typed}");
            assert_eq!(
                url.api("/agent/auth"),
                "http://10.0.0.5:8080/api/v1/agent/auth"
            );
        }
        let sub = ServerUrl::parse("https://escritorio.example/certhub/api/v1").unwrap();
        assert_eq!(sub.as_str(), "https://escritorio.example/certhub");
        for bad in [
            "",
            "10.0.0.5:8080",
            "ftp://x",
            "http://",
            "http:///x",
            "http://a b",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        write_atomic(&path, b"{\"a\": 1}").unwrap();
        write_atomic(&path, b"{\"a\": 2}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\": 2}");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        assert!(read_json::<Config>(&path).unwrap().is_none());
        fs::write(&path, b"{\"server_url\": ").unwrap();
        assert!(matches!(
            read_json::<Config>(&path),
            Err(ConfigError::Damaged { .. })
        ));
    }

    #[test]
    fn pairing_again_replaces_the_old_identity() {
        let dir = DataDir::new(tempfile::tempdir().unwrap().keep());
        let secrets = FileSecrets::new(&dir);
        assert!(matches!(Config::load(&dir), Err(ConfigError::NotPaired)));
        assert!(secrets.load().unwrap().is_none());
        let first = DeviceSecrets {
            device_token: SecretString::new("token-one".into()),
            key: DeviceSecretKey::generate(),
        };
        let config = Config {
            server_url: ServerUrl::parse("http://a:1/api/v1").unwrap(),
            device_id: uuid::Uuid::new_v4(),
            portal_url: "http://a:1/".into(),
            paired_at: chrono::Utc::now(),
        };
        save_identity(&dir, &secrets, &config, &first).unwrap();
        let second = DeviceSecrets {
            device_token: SecretString::new("token-two".into()),
            key: DeviceSecretKey::generate(),
        };
        let config2 = Config {
            device_id: uuid::Uuid::new_v4(),
            ..config.clone()
        };
        save_identity(&dir, &secrets, &config2, &second).unwrap();
        let loaded = secrets.load().unwrap().unwrap();
        assert_eq!(loaded.device_token.expose(), "token-two");
        assert_eq!(
            loaded.key.public_key().to_base64(),
            second.key.public_key().to_base64()
        );
        assert_eq!(Config::load(&dir).unwrap(), config2);
        let text = fs::read_to_string(dir.config()).unwrap();
        assert!(
            !text.contains("token"),
            "config.json holds no secret: {text}"
        );
        secrets.clear().unwrap();
        assert!(secrets.load().unwrap().is_none());
        let _ = fs::remove_dir_all(dir.path());
    }
}
