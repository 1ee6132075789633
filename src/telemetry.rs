//! Logging. Statement logging of the database layers is capped at WARN unless explicitly
//! asked for, because sea-orm's debug output interpolates bound values.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

pub fn filter_for(level: &str) -> String {
    let mut directives = level.to_owned();
    for noisy in [
        "sea_orm",
        "sqlx",
        "sea_orm_migration",
        "apalis",
        "apalis_core",
        "apalis_sqlite",
        "apalis_postgres",
    ] {
        if !level.contains(noisy) {
            directives.push_str(&format!(",{noisy}=warn"));
        }
    }
    directives
}

/// Installs the global subscriber (stderr). Safe to call once per process.
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(filter_for(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Before settings are known (a config error), log plainly.
pub fn init_fallback() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .try_init();
}
