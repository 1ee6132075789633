//! One typed `Settings`, layered: built-in defaults < `config.toml` < `CERTHUB_*` environment.
//!
//! Every key is flat so that its environment override is simply the key upper-cased behind
//! `CERTHUB_` (`listen` -> `CERTHUB_LISTEN`). An invalid value fails start-up with a message
//! that names the key.

pub mod cidr;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::crypto::SecretString;

/// Where the application's data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded SQLite file (the default).
    Sqlite { path: PathBuf },
    /// A PostgreSQL server; the URL may carry a password, so it is never printed whole.
    Postgres { url: String },
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(rest) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(
                    "a sqlite URL needs a file path, e.g. sqlite://./data/certhub.db".into(),
                );
            }
            if path == ":memory:" {
                return Err(
                    "an in-memory SQLite database would lose every certificate on restart".into(),
                );
            }
            return Ok(Self::Sqlite {
                path: PathBuf::from(path),
            });
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres {
                url: raw.to_owned(),
            });
        }
        Err("expected a sqlite://PATH or postgres://... URL".into())
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// The URL with any password replaced, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Postgres { url } => redact_url_password(url),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let tail = tail.split('?').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => format!(
            "{scheme}://{authority}{}",
            tail.split('?').next().unwrap_or_default()
        ),
    }
}

/// The host of an `http(s)://host[:port]/...` URL (an IPv6 address without its brackets).
pub fn url_host(url: &str) -> &str {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    }
}

/// `public_url` as the server will write it into the agent's install script and command: an
/// `http://` or `https://` URL with a host, and nothing PowerShell or a shell could read as
/// the end of a string or the start of an expression (quotes, `$`, backquote, spaces, control
/// characters). Returns it without a trailing `/`.
pub fn check_public_url(url: &str) -> Result<String, &'static str> {
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("expected an http:// or https:// URL")?;
    if let Some(c) = url
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "'\"`$;|&<>(){}\\".contains(*c))
    {
        return Err(match c {
            '\n' | '\r' => "must be one line",
            c if c.is_whitespace() => "must not contain spaces",
            _ => "must not contain quotes, `$`, backquotes, backslashes or shell punctuation",
        });
    }
    if url_host(rest).is_empty() || rest.contains(['?', '#']) {
        return Err("expected scheme://host[:port][/path], without a query");
    }
    Ok(url.to_owned())
}

/// How the server serves HTTPS itself (absent: plain HTTP, or a TLS proxy in front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// `tls = "auto"`: a certificate the server makes on first start and keeps in
    /// `data_dir/tls/` (for the host of `public_url`, localhost and `tls_names`).
    Auto,
    /// The office's own certificate and key (`tls_cert_file`, `tls_key_file`), reloaded when
    /// the files change.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub database_max_connections: u32,
    /// Page cache of each SQLite connection, in KiB ([`DEFAULT_SQLITE_CACHE_KIB`]). The
    /// process's SQLite caches are bounded by (`database_max_connections` + 4 for the job
    /// queue) times this.
    pub sqlite_cache_kib: u32,
    pub timezone: chrono_tz::Tz,
    pub org_id: i64,
    pub org_name: String,
    pub certs_root: Option<PathBuf>,
    pub master_key: Option<SecretString>,
    pub master_key_file: PathBuf,
    pub tls: Option<TlsSettings>,
    /// More names (DNS names, IP addresses) the certificate `tls = "auto"` makes is for.
    pub tls_names: Vec<String>,
    /// The certificate that will replace the one served (a planned change): its fingerprint
    /// is announced to agents with every heartbeat, so they accept it when it takes effect.
    pub tls_next_cert_file: Option<PathBuf>,
    /// Whether `/agent/install.ps1` may run over plain `http://` to a host other than this
    /// one (default: no; the script refuses, since an attacker on the LAN could change it).
    pub agent_install_over_http: bool,
    /// Reverse proxies whose `X-Forwarded-For`/`-Proto` are believed.
    pub trusted_proxies: Vec<cidr::Cidr>,
    /// Cookies carry `Secure` (and the CSRF cookie the `__Host-` prefix): by default when
    /// `public_url` is `https://`, which is how users reach the server behind a TLS proxy.
    pub cookie_secure: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    pub dev_mode: bool,
    pub shutdown_timeout_secs: u64,
    pub password_set_ttl_hours: i64,
    pub access_token_ttl_min: i64,
    pub refresh_ttl_days: i64,
    pub bcrypt_cost: u32,
    pub lockout_threshold: u32,
    pub lockout_window_min: i64,
    pub login_per_ip_per_minute: u32,
    pub max_pfx_bytes: u64,
    pub watcher_debounce_seconds: u64,
    /// How often devices' last contact (kept in memory by heartbeats and agent requests) is
    /// written to the database.
    pub device_contact_flush_seconds: u64,
    pub watcher_max_events_per_minute: u32,
    pub request_ttl_hours: i64,
    pub job_timeout_minutes: i64,
    /// Device authentication and the policy every agent receives with its heartbeat.
    pub agent: AgentSettings,
    /// The agent `.exe` served at `/agent/certhub-agent.exe` for the one-line install.
    pub agent_exe_file: Option<PathBuf>,
}

/// Everything about agents in one place: their tokens, their rate limit and the policy the
/// server hands them on each heartbeat (the agent keeps no policy of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// Lifetime of a DEVICE access token (JWT).
    pub device_token_ttl_min: i64,
    /// `/agent/auth` and `/agent/enroll` calls per minute, per device and per client IP.
    pub device_auth_per_minute: u32,
    /// Local time of the daily removal of installed certificates.
    pub cleanup_time: chrono::NaiveTime,
    /// Longest an installation may be leased for.
    pub max_lease_hours: i64,
    /// Local time the working day starts; with `cleanup_time`, what counts as after hours.
    pub workday_start: chrono::NaiveTime,
    /// Whether installs may be requested and approved after hours (they end at the cap then).
    pub after_hours_installs: bool,
    /// Minutes past a lease's end without a removal report before it counts as overdue.
    pub lease_grace_minutes: i64,
    pub poll_interval_seconds: u64,
    pub long_poll_seconds: u64,
    pub heartbeat_interval_seconds: u64,
}

/// A configuration problem, always naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// The value type of a key, used to read its environment override.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// Every key `config.toml` accepts. Keep `config.toml` in step (a test checks it).
const KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("public_url", Kind::Str),
    ("data_dir", Kind::Str),
    ("database_url", Kind::Str),
    ("database_max_connections", Kind::Int),
    ("sqlite_cache_kib", Kind::Int),
    ("timezone", Kind::Str),
    ("org_id", Kind::Int),
    ("org_name", Kind::Str),
    ("certs_root", Kind::Str),
    ("master_key", Kind::Str),
    ("master_key_file", Kind::Str),
    ("tls", Kind::Str),
    ("tls_names", Kind::Str),
    ("tls_cert_file", Kind::Str),
    ("tls_key_file", Kind::Str),
    ("tls_next_cert_file", Kind::Str),
    ("agent_install_over_http", Kind::Bool),
    ("trusted_proxies", Kind::Str),
    ("cookie_secure", Kind::Bool),
    ("log_level", Kind::Str),
    ("log_format", Kind::Str),
    ("dev_mode", Kind::Bool),
    ("shutdown_timeout_secs", Kind::Int),
    ("password_set_ttl_hours", Kind::Int),
    ("access_token_ttl_min", Kind::Int),
    ("refresh_ttl_days", Kind::Int),
    ("bcrypt_cost", Kind::Int),
    ("lockout_threshold", Kind::Int),
    ("lockout_window_min", Kind::Int),
    ("login_per_ip_per_minute", Kind::Int),
    ("max_pfx_bytes", Kind::Int),
    ("watcher_debounce_seconds", Kind::Int),
    ("device_contact_flush_seconds", Kind::Int),
    ("watcher_max_events_per_minute", Kind::Int),
    ("request_ttl_hours", Kind::Int),
    ("job_timeout_minutes", Kind::Int),
    ("device_token_ttl_min", Kind::Int),
    ("device_auth_per_minute", Kind::Int),
    ("cleanup_time", Kind::Str),
    ("max_lease_hours", Kind::Int),
    ("workday_start", Kind::Str),
    ("after_hours_installs", Kind::Bool),
    ("lease_grace_minutes", Kind::Int),
    ("agent_poll_interval_seconds", Kind::Int),
    ("agent_long_poll_seconds", Kind::Int),
    ("agent_heartbeat_interval_seconds", Kind::Int),
    ("agent_exe_file", Kind::Str),
];

/// The names of every configuration key.
pub fn keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    sqlite_cache_kib: Option<u32>,
    timezone: Option<String>,
    org_id: Option<i64>,
    org_name: Option<String>,
    certs_root: Option<PathBuf>,
    master_key: Option<String>,
    master_key_file: Option<PathBuf>,
    tls: Option<String>,
    tls_names: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_next_cert_file: Option<PathBuf>,
    agent_install_over_http: Option<bool>,
    trusted_proxies: Option<String>,
    cookie_secure: Option<bool>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    dev_mode: Option<bool>,
    shutdown_timeout_secs: Option<u64>,
    password_set_ttl_hours: Option<i64>,
    access_token_ttl_min: Option<i64>,
    refresh_ttl_days: Option<i64>,
    bcrypt_cost: Option<u32>,
    lockout_threshold: Option<u32>,
    lockout_window_min: Option<i64>,
    login_per_ip_per_minute: Option<u32>,
    max_pfx_bytes: Option<u64>,
    watcher_debounce_seconds: Option<u64>,
    device_contact_flush_seconds: Option<u64>,
    watcher_max_events_per_minute: Option<u32>,
    request_ttl_hours: Option<i64>,
    job_timeout_minutes: Option<i64>,
    device_token_ttl_min: Option<i64>,
    device_auth_per_minute: Option<u32>,
    cleanup_time: Option<String>,
    max_lease_hours: Option<i64>,
    workday_start: Option<String>,
    after_hours_installs: Option<bool>,
    lease_grace_minutes: Option<i64>,
    agent_poll_interval_seconds: Option<u64>,
    agent_long_poll_seconds: Option<u64>,
    agent_heartbeat_interval_seconds: Option<u64>,
    agent_exe_file: Option<PathBuf>,
}

/// KiB of page cache per SQLite connection unless configured: with the default pool, the
/// server's SQLite caches stay under 7 MiB. SQLite's own default (2,000 KiB) let a soak's RSS
/// climb by 16 MiB over 25 minutes as the caches filled, for no measured gain
/// (`docs/reliability.md`, "Soak").
pub const DEFAULT_SQLITE_CACHE_KIB: u32 = 512;

impl Settings {
    /// The host of `public_url`: a name, or an IP address (an IPv6 one without its brackets).
    pub fn public_host(&self) -> &str {
        url_host(&self.public_url)
    }

    /// Whether people and agents reach this server over plain HTTP from other machines
    /// (`public_url` is `http://` to a host that is not this one): what an attacker on the LAN
    /// can change in flight.
    pub fn plain_http_beyond_localhost(&self) -> bool {
        if !self.public_url.starts_with("http://") {
            return false;
        }
        let host = self.public_host();
        let local = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        self.tls.is_none() && !local
    }

    /// The office's lease rule: the daily cleanup in its timezone and the longest lease.
    pub fn lease_rule(&self) -> crate::schedule::LeaseRule {
        crate::schedule::LeaseRule {
            cleanup: crate::schedule::DailyCleanup {
                time: self.agent.cleanup_time,
                tz: self.timezone,
            },
            max_hours: self.agent.max_lease_hours,
        }
    }

    /// No install may be asked for or approved at `at`: after hours (see `workday_start`)
    /// in an office with `after_hours_installs = false`.
    pub fn installs_closed(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        !self.agent.after_hours_installs
            && self
                .lease_rule()
                .cleanup
                .is_after_hours(at, self.agent.workday_start)
    }
    /// Loads `path` (or `./config.toml` when it exists) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, |k| std::env::var(k).ok())
    }

    /// Same as [`Settings::load`] with an explicit environment, for tests.
    pub fn load_from(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", p.display()))
                })?,
                p.display().to_string(),
            ),
            None if Path::new("config.toml").is_file() => (
                std::fs::read_to_string("config.toml")
                    .map_err(|e| ConfigError(format!("cannot read config.toml: {e}")))?,
                "config.toml".to_owned(),
            ),
            None => (String::new(), "defaults".to_owned()),
        };
        Self::from_toml_str(&text, &origin, env)
    }

    /// Parses the text of a `config.toml` (`origin` names it in messages) and applies `env`:
    /// everything [`Settings::load_from`] does once the file is read.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError(format!("{origin}: {}", e.message())))?;
        for (key, kind) in KEYS {
            let var = format!("CERTHUB_{}", key.to_uppercase());
            if let Some(value) = env(&var) {
                let value = match kind {
                    Kind::Str => toml::Value::String(value),
                    Kind::Int => toml::Value::Integer(value.trim().parse().map_err(|_| {
                        ConfigError(format!(
                            "`{key}` ({var}): expected an integer, got {value:?}"
                        ))
                    })?),
                    Kind::Bool => toml::Value::Boolean(parse_bool(&value).ok_or_else(|| {
                        ConfigError(format!(
                            "`{key}` ({var}): expected true or false, got {value:?}"
                        ))
                    })?),
                };
                table.insert((*key).to_owned(), value);
            }
        }
        for (key, value) in &table {
            let Some((_, kind)) = KEYS.iter().find(|(k, _)| k == key) else {
                return Err(ConfigError(format!("{origin}: unknown key `{key}`")));
            };
            let expected = match (kind, value) {
                (Kind::Str, toml::Value::String(_))
                | (Kind::Int, toml::Value::Integer(_))
                | (Kind::Bool, toml::Value::Boolean(_)) => None,
                (Kind::Str, _) => Some("a string"),
                (Kind::Int, _) => Some("an integer"),
                (Kind::Bool, _) => Some("true or false"),
            };
            if let Some(expected) = expected {
                return Err(ConfigError(format!(
                    "{origin}: `{key}`: expected {expected}"
                )));
            }
        }
        let raw = RawSettings::deserialize(toml::Value::Table(table)).map_err(|e| {
            ConfigError(format!("{origin}: {}", e.message().trim_end_matches('\n')))
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawSettings) -> Result<Self, ConfigError> {
        let bad = |key: &str, why: String| ConfigError(format!("`{key}`: {why}"));
        let listen: SocketAddr = raw
            .listen
            .as_deref()
            .unwrap_or("0.0.0.0:8010")
            .parse()
            .map_err(|e| {
                bad(
                    "listen",
                    format!("expected HOST:PORT such as 0.0.0.0:8010 ({e})"),
                )
            })?;
        let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let database = match raw.database_url {
            Some(url) => DatabaseUrl::parse(&url).map_err(|why| bad("database_url", why))?,
            None => DatabaseUrl::Sqlite {
                path: data_dir.join("certhub.db"),
            },
        };
        let database_max_connections = raw.database_max_connections.unwrap_or(10);
        if database_max_connections < 2 {
            return Err(bad(
                "database_max_connections",
                "at least 2 (the job queue and HTTP requests share the pool)".into(),
            ));
        }
        let sqlite_cache_kib = raw.sqlite_cache_kib.unwrap_or(DEFAULT_SQLITE_CACHE_KIB);
        if !(64..=1_048_576).contains(&sqlite_cache_kib) {
            return Err(bad(
                "sqlite_cache_kib",
                "from 64 to 1048576 (KiB of page cache per SQLite connection)".into(),
            ));
        }
        let timezone: chrono_tz::Tz = raw
            .timezone
            .as_deref()
            .unwrap_or("America/Sao_Paulo")
            .parse()
            .map_err(|_| {
                bad(
                    "timezone",
                    "expected an IANA name such as America/Sao_Paulo".into(),
                )
            })?;
        let org_id = raw.org_id.unwrap_or(1);
        if org_id < 1 {
            return Err(bad("org_id", "must be a positive organisation id".into()));
        }
        let files = match (raw.tls_cert_file, raw.tls_key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsSettings::Files {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "tls_key_file",
                    "required when tls_cert_file is set".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "tls_cert_file",
                    "required when tls_key_file is set".into(),
                ));
            }
        };
        let tls = match (raw.tls.as_deref().map(str::trim), files) {
            (Some("auto"), None) => Some(TlsSettings::Auto),
            (Some("auto"), Some(_)) => {
                return Err(bad(
                    "tls",
                    "\"auto\" makes the server's own certificate: leave tls_cert_file and tls_key_file out, or tls out".into(),
                ));
            }
            (Some("off") | None, files) => files,
            (Some(other), _) => {
                return Err(bad(
                    "tls",
                    format!("expected \"auto\" or \"off\", not {other:?}"),
                ));
            }
        };
        let tls_names: Vec<String> = raw
            .tls_names
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(n) = tls_names.iter().find(|n| {
            !n.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        }) {
            return Err(bad(
                "tls_names",
                format!("{n:?} is neither a host name nor an IP address"),
            ));
        }
        let public_url = match raw.public_url {
            Some(url) => check_public_url(&url).map_err(|why| bad("public_url", why.into()))?,
            None => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://localhost:{}", listen.port())
            }
        };
        let trusted_proxies = cidr::parse_list(raw.trusted_proxies.as_deref().unwrap_or(""))
            .map_err(|why| bad("trusted_proxies", why))?;
        let cookie_secure = raw
            .cookie_secure
            .unwrap_or(tls.is_some() || public_url.starts_with("https://"));
        let log_level = raw.log_level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(bad(
                "log_level",
                format!("not a valid filter: {log_level:?}"),
            ));
        }
        let shutdown_timeout_secs = raw.shutdown_timeout_secs.unwrap_or(30);
        let password_set_ttl_hours = raw.password_set_ttl_hours.unwrap_or(24);
        if !(1..=24 * 7).contains(&password_set_ttl_hours) {
            return Err(bad("password_set_ttl_hours", "between 1 and 168".into()));
        }
        let access_token_ttl_min = raw.access_token_ttl_min.unwrap_or(15);
        if !(1..=24 * 60).contains(&access_token_ttl_min) {
            return Err(bad("access_token_ttl_min", "between 1 and 1440".into()));
        }
        let refresh_ttl_days = raw.refresh_ttl_days.unwrap_or(7);
        if !(1..=90).contains(&refresh_ttl_days) {
            return Err(bad("refresh_ttl_days", "between 1 and 90".into()));
        }
        let bcrypt_cost = raw.bcrypt_cost.unwrap_or(12);
        if !(12..=16).contains(&bcrypt_cost) {
            return Err(bad("bcrypt_cost", "between 12 and 16".into()));
        }
        let lockout_threshold = raw.lockout_threshold.unwrap_or(5);
        if !(1..=100).contains(&lockout_threshold) {
            return Err(bad("lockout_threshold", "between 1 and 100".into()));
        }
        let lockout_window_min = raw.lockout_window_min.unwrap_or(15);
        if !(1..=24 * 60).contains(&lockout_window_min) {
            return Err(bad("lockout_window_min", "between 1 and 1440".into()));
        }
        let login_per_ip_per_minute = raw.login_per_ip_per_minute.unwrap_or(30);
        if login_per_ip_per_minute == 0 {
            return Err(bad("login_per_ip_per_minute", "at least 1".into()));
        }
        let device_contact_flush_seconds = raw.device_contact_flush_seconds.unwrap_or(5);
        if !(1..=300).contains(&device_contact_flush_seconds) {
            return Err(bad(
                "device_contact_flush_seconds",
                "between 1 and 300".into(),
            ));
        }
        let watcher_debounce_seconds = raw.watcher_debounce_seconds.unwrap_or(2);
        if watcher_debounce_seconds > 300 {
            return Err(bad("watcher_debounce_seconds", "between 0 and 300".into()));
        }
        let watcher_max_events_per_minute = raw.watcher_max_events_per_minute.unwrap_or(600);
        if watcher_max_events_per_minute == 0 {
            return Err(bad("watcher_max_events_per_minute", "at least 1".into()));
        }
        let request_ttl_hours = raw.request_ttl_hours.unwrap_or(24);
        if !(1..=24 * 30).contains(&request_ttl_hours) {
            return Err(bad("request_ttl_hours", "between 1 and 720".into()));
        }
        let job_timeout_minutes = raw.job_timeout_minutes.unwrap_or(60);
        if !(1..=24 * 60).contains(&job_timeout_minutes) {
            return Err(bad("job_timeout_minutes", "between 1 and 1440".into()));
        }
        let agent = AgentSettings {
            device_token_ttl_min: raw.device_token_ttl_min.unwrap_or(60),
            device_auth_per_minute: raw.device_auth_per_minute.unwrap_or(10),
            cleanup_time: chrono::NaiveTime::parse_from_str(
                raw.cleanup_time.as_deref().unwrap_or("18:00"),
                "%H:%M",
            )
            .map_err(|_| bad("cleanup_time", "expected HH:MM such as 18:00".into()))?,
            max_lease_hours: raw
                .max_lease_hours
                .unwrap_or(crate::schedule::DEFAULT_MAX_LEASE_HOURS),
            workday_start: chrono::NaiveTime::parse_from_str(
                raw.workday_start.as_deref().unwrap_or("07:00"),
                "%H:%M",
            )
            .map_err(|_| bad("workday_start", "expected HH:MM such as 07:00".into()))?,
            after_hours_installs: raw.after_hours_installs.unwrap_or(true),
            lease_grace_minutes: raw.lease_grace_minutes.unwrap_or(15),
            poll_interval_seconds: raw.agent_poll_interval_seconds.unwrap_or(5),
            long_poll_seconds: raw.agent_long_poll_seconds.unwrap_or(25),
            heartbeat_interval_seconds: raw.agent_heartbeat_interval_seconds.unwrap_or(60),
        };
        if !(1..=24 * 60).contains(&agent.device_token_ttl_min) {
            return Err(bad("device_token_ttl_min", "between 1 and 1440".into()));
        }
        if agent.device_auth_per_minute == 0 {
            return Err(bad("device_auth_per_minute", "at least 1".into()));
        }
        if agent.workday_start >= agent.cleanup_time {
            return Err(bad("workday_start", "must come before cleanup_time".into()));
        }
        if !(1..=24).contains(&agent.max_lease_hours) {
            return Err(bad("max_lease_hours", "between 1 and 24".into()));
        }
        if !(1..=3600).contains(&agent.poll_interval_seconds) {
            return Err(bad(
                "agent_poll_interval_seconds",
                "between 1 and 3600".into(),
            ));
        }
        if !(1..=24 * 60).contains(&agent.lease_grace_minutes) {
            return Err(bad("lease_grace_minutes", "between 1 and 1440".into()));
        }
        let max_wait = crate::protocol::MAX_WAIT_SECS as u64;
        if !(1..=max_wait).contains(&agent.long_poll_seconds) {
            return Err(bad(
                "agent_long_poll_seconds",
                format!("between 1 and {max_wait} (the longest ?wait= the server accepts)"),
            ));
        }
        if !(5..=3600).contains(&agent.heartbeat_interval_seconds) {
            return Err(bad(
                "agent_heartbeat_interval_seconds",
                "between 5 and 3600".into(),
            ));
        }
        let org_name = raw.org_name.unwrap_or_else(|| "Escritório".into());
        if org_name.trim().is_empty() {
            return Err(bad("org_name", "must not be empty".into()));
        }
        Ok(Self {
            listen,
            public_url,
            master_key_file: raw
                .master_key_file
                .unwrap_or_else(|| data_dir.join("master.key")),
            data_dir,
            database,
            database_max_connections,
            sqlite_cache_kib,
            timezone,
            org_id,
            org_name,
            certs_root: raw.certs_root,
            master_key: raw
                .master_key
                .filter(|k| !k.is_empty())
                .map(SecretString::new),
            tls,
            tls_names,
            tls_next_cert_file: raw.tls_next_cert_file,
            agent_install_over_http: raw.agent_install_over_http.unwrap_or(false),
            trusted_proxies,
            cookie_secure,
            log_level,
            log_format: raw.log_format.unwrap_or(LogFormat::Text),
            dev_mode: raw.dev_mode.unwrap_or(false),
            shutdown_timeout_secs,
            password_set_ttl_hours,
            access_token_ttl_min,
            refresh_ttl_days,
            bcrypt_cost,
            lockout_threshold,
            lockout_window_min,
            login_per_ip_per_minute,
            max_pfx_bytes: raw.max_pfx_bytes.filter(|b| *b > 0).unwrap_or(1024 * 1024),
            watcher_debounce_seconds,
            device_contact_flush_seconds,
            watcher_max_events_per_minute,
            request_ttl_hours,
            job_timeout_minutes,
            agent,
            agent_exe_file: raw.agent_exe_file,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(Some(&path), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_the_documentation() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8010");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("./data/certhub.db")
            }
        );
        assert_eq!(s.timezone, chrono_tz::America::Sao_Paulo);
        assert_eq!(s.org_id, 1);
        assert_eq!(s.public_url, "http://localhost:8010");
        assert!(s.tls.is_none());
        assert_eq!(
            (
                s.request_ttl_hours,
                s.agent.max_lease_hours,
                s.job_timeout_minutes
            ),
            (24, 10, 60)
        );
        assert_eq!(s.agent.device_token_ttl_min, 60);
        assert_eq!(s.agent.device_auth_per_minute, 10);
        assert_eq!(s.agent.cleanup_time.format("%H:%M").to_string(), "18:00");
        assert_eq!(s.agent.max_lease_hours, 10);
        assert_eq!(s.agent.lease_grace_minutes, 15);
        assert_eq!(s.agent.poll_interval_seconds, 5);
        assert_eq!(s.agent.heartbeat_interval_seconds, 60);
        let e = load("cleanup_time = \"6pm\"", &[]).unwrap_err().to_string();
        assert!(e.contains("`cleanup_time`"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = load(
            "listen = \"127.0.0.1:1\"\norg_id = 3\n",
            &[
                ("CERTHUB_LISTEN", "127.0.0.1:9000"),
                ("CERTHUB_ORG_ID", "7"),
                ("CERTHUB_DEV_MODE", "yes"),
            ],
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.org_id, 7);
        assert!(s.dev_mode);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("listen = \"nowhere\"", &[]).unwrap_err().to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = load("lisen = \"x\"", &[]).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = load("", &[("CERTHUB_ORG_ID", "one")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("org_id") && e.contains("CERTHUB_ORG_ID"), "{e}");
        let e = load("timezone = \"Mars/Olympus\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`timezone`"), "{e}");
        let e = load("database_url = \"mysql://x\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`database_url`"), "{e}");
        let e = load("tls_cert_file = \"a.pem\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tls_key_file`"), "{e}");
        let e = load("org_id = \"x\"", &[]).unwrap_err().to_string();
        assert!(e.contains("org_id"), "{e}");
    }

    #[test]
    fn postgres_password_is_redacted() {
        let db =
            DatabaseUrl::parse("postgres://app:s3cret@db:5432/certhub?sslmode=require").unwrap();
        assert_eq!(db.redacted(), "postgres://app:***@db:5432/certhub");
        assert!(!format!("{db:?}").contains("s3cret"));
    }

    #[test]
    fn config_toml_documents_every_key() {
        let text = include_str!("../../config.toml");
        for key in keys() {
            assert!(
                text.contains(&format!("# {key} = ")),
                "config.toml does not document `{key}`"
            );
        }
    }

    #[test]
    fn public_url_is_checked_for_what_powershell_would_read() {
        assert_eq!(
            check_public_url("https://certhub.escritorio:8010/").unwrap(),
            "https://certhub.escritorio:8010"
        );
        assert!(check_public_url("http://[fd00::5]:8010").is_ok());
        for bad in [
            "ftp://x",
            "certhub:8010",
            "http://",
            "http://x'; calc; '",
            "http://x\"",
            "http://x$(calc)",
            "http://x`n",
            "http://x\nirm evil",
            "http://a b",
            "http://x?code=1",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad:?}");
        }
        let e = load("public_url = \"http://x'y\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("public_url"), "{e}");
    }
}
