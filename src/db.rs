//! Connecting to SQLite (embedded default) or PostgreSQL, and running migrations.

use std::time::Duration;

use certhub_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionOptions, TransactionTrait,
};

use crate::settings::{DatabaseUrl, Settings};

/// `synchronous` for the application's SQLite file. FULL: a committed transaction survives a
/// power loss, which the audit log of legal identities needs; the cost is one extra fsync per
/// commit, irrelevant at an office's write rate. (apalis' own setup would set OFF: see
/// [`crate::queue`], which runs it on a throw-away connection.)
pub const SQLITE_SYNCHRONOUS: SqliteSynchronous = SqliteSynchronous::Full;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open database {url}: {source}")]
    Open {
        url: String,
        source: sea_orm::sqlx::Error,
    },
    #[error("migrating database {url} failed: {source}")]
    Migrate { url: String, source: DbErr },
}

/// SQLite connection options used for every connection to the application's file.
pub fn sqlite_options(path: &std::path::Path, settings: &Settings) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SQLITE_SYNCHRONOUS)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Negative: a size in KiB rather than in pages.
        .pragma("cache_size", format!("-{}", settings.sqlite_cache_kib))
}

/// Creates the data directory readable by the server's user only (0700). An existing one is
/// left as the operator set it.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates the SQLite file (and its WAL and shared-memory companions, which SQLite gives the
/// database file's mode) readable by the server's user only (0600) before SQLite opens it.
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens the pool (creating the SQLite file and its folder when needed). Does not migrate.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, ConnectError> {
    let url = settings.database.redacted();
    match &settings.database {
        DatabaseUrl::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir).map_err(|source| ConnectError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            create_private_file(path).map_err(|source| ConnectError::DataDir {
                path: path.display().to_string(),
                source,
            })?;
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.database_max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_release(|conn, _| Box::pin(not_in_a_transaction(conn)))
                .connect_with(sqlite_options(path, settings))
                .await
                .map_err(|source| ConnectError::Open { url, source })?;
            Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
        }
        DatabaseUrl::Postgres { url: raw } => {
            let pool = PgPoolOptions::new()
                .max_connections(settings.database_max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(raw)
                .await
                .map_err(|source| ConnectError::Open { url, source })?;
            Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
        }
    }
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection, settings: &Settings) -> Result<(), ConnectError> {
    Migrator::up(db, None)
        .await
        .map_err(|source| ConnectError::Migrate {
            url: settings.database.redacted(),
            source,
        })
}

/// Whether a SQLite connection coming back to the pool may be reused: not while it is still
/// inside a transaction. A COMMIT refused on a full disk leaves SQLite's transaction open (or
/// rolls it back behind the driver's back, so the driver's own ROLLBACK fails); reused, such a
/// connection kept the write lock (every other writer then failed "database is locked") and
/// nested the next request's writes in a transaction nobody committed. It is closed instead,
/// which rolls back whatever it held.
pub(crate) async fn not_in_a_transaction(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::{Connection, Database, Sqlite};
    use sqlx_core::transaction::TransactionManager;
    // Runs after any rollback queued by a dropped transaction (one worker, in order).
    conn.ping().await?;
    let depth = <Sqlite as Database>::TransactionManager::get_transaction_depth(conn);
    if depth > 0 {
        tracing::warn!(
            depth,
            "a database connection came back inside a transaction: closed"
        );
    }
    Ok(depth == 0)
}

/// Starts a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (IMMEDIATE), so two writers queue on the busy timeout instead of failing on upgrade.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// `NOTIFY channel, payload` inside the caller's transaction on PostgreSQL (delivered to every
/// listener at COMMIT, never on rollback); nothing on SQLite, whose one server process needs no
/// telling.
pub async fn notify<C: ConnectionTrait>(
    conn: &C,
    channel: &str,
    payload: &str,
) -> Result<(), DbErr> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    conn.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    ))
    .await
    .map(|_| ())
}

/// A cheap round trip, for `/health`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;

    /// `sqlite_cache_kib` sizes the page cache of the pool's connections.
    #[tokio::test]
    async fn the_sqlite_cache_is_the_configured_size() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let settings = Settings::from_toml_str("sqlite_cache_kib = 300", "test", |k| {
            (k == "CERTHUB_DATA_DIR").then(|| data.clone())
        })
        .unwrap();
        let db = connect(&settings).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "PRAGMA cache_size",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), -300);
    }
}
