//! The queue's durable storage: apalis-sqlite in a file beside the application's SQLite
//! database, or apalis-postgres in the application's PostgreSQL database (schema `apalis`);
//! pushing a task (once per unique id while it waits) and waking this process's worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures_util::task::AtomicWaker;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::sqlite::SqlitePoolOptions;

use super::registry::{Queued, Task};
use crate::settings::{DatabaseUrl, Settings};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job queue setup failed: {0}")]
    Setup(String),
    #[error("could not enqueue job: {0}")]
    Push(String),
}

/// Where the queue lives beside an SQLite application database: its own file
/// (`certhub.db` -> `certhub-queue.db`). apalis-sqlite fetches inside a transaction that
/// holds the file's write lock and that a stopping worker can leave unpolled; in the
/// application's file that blocked a running job's last write until the busy timeout.
pub fn sqlite_queue_path(app_db: &std::path::Path) -> std::path::PathBuf {
    let stem = app_db
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("certhub");
    app_db.with_file_name(format!("{stem}-queue.db"))
}

/// Durable storage of [`Queued`] tasks: a SQLite file beside the application's, or the
/// application's PostgreSQL database (schema `apalis`).
#[derive(Clone)]
pub struct Queue {
    pub(super) storage: Storage,
    /// Wakes this process's worker when this process queues a task.
    pub(super) wake: Arc<WakeSignal>,
}

#[derive(Clone)]
pub(super) enum Storage {
    Sqlite(SqliteStorage<Queued>),
    Postgres(PostgresStorage<Queued>),
}

/// A wake-up for the worker: set by a push, taken by the worker's poll stream.
#[derive(Default)]
pub(super) struct WakeSignal {
    pub(super) pending: AtomicBool,
    pub(super) waker: AtomicWaker,
}

impl WakeSignal {
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.storage {
            Storage::Sqlite(_) => "Queue(sqlite)",
            Storage::Postgres(_) => "Queue(postgres)",
        })
    }
}

impl Queue {
    fn new(storage: Storage) -> Self {
        Self {
            storage,
            wake: Arc::default(),
        }
    }
}

impl Queue {
    /// Creates the queue's tables and returns its storage.
    pub async fn setup(db: &DatabaseConnection, settings: &Settings) -> Result<Self, QueueError> {
        let setup_err = |e: &dyn std::fmt::Display| QueueError::Setup(e.to_string());
        match &settings.database {
            DatabaseUrl::Sqlite { path } => {
                let path = sqlite_queue_path(path);
                crate::db::create_private_file(&path).map_err(|e| setup_err(&e))?;
                // apalis' setup also sets `PRAGMA synchronous = OFF` on the connection it runs
                // on. That pragma is per connection, so run it on a throw-away one: the
                // queue's pool keeps `crate::db::SQLITE_SYNCHRONOUS` on every connection.
                let setup_pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(crate::db::sqlite_options(&path, settings))
                    .await
                    .map_err(|e| setup_err(&e))?;
                let res = SqliteStorage::setup(&setup_pool).await;
                setup_pool.close().await;
                res.map_err(|e| setup_err(&e))?;
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    // As the application's pool: a connection a full disk left inside a
                    // transaction would hold the queue's write lock for good.
                    .after_release(|conn, _| Box::pin(crate::db::not_in_a_transaction(conn)))
                    .connect_with(crate::db::sqlite_options(&path, settings))
                    .await
                    .map_err(|e| setup_err(&e))?;
                let config = apalis_sqlite::Config::default()
                    .queue(QUEUE_NAME)
                    .heartbeat_interval(HEARTBEAT);
                Ok(Queue::new(Storage::Sqlite(
                    SqliteStorage::new(&pool).with_config(config),
                )))
            }
            DatabaseUrl::Postgres { .. } => {
                let pool = db.get_postgres_connection_pool();
                PostgresStorage::setup(pool)
                    .await
                    .map_err(|e| setup_err(&e))?;
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE_NAME)
                    .heartbeat_interval(HEARTBEAT);
                Ok(Queue::new(Storage::Postgres(
                    PostgresStorage::new(pool).with_config(config),
                )))
            }
        }
    }

    /// The SQLite queue file's pool (for checks); `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&apalis_sqlite::SqlitePool> {
        match &self.storage {
            Storage::Sqlite(s) => Some(s.pool()),
            Storage::Postgres(_) => None,
        }
    }

    /// Closes the queue's own connections (the SQLite file); PostgreSQL shares the app's pool.
    pub async fn close(&self) {
        if let Some(pool) = self.sqlite_pool() {
            pool.close().await;
        }
    }

    /// Adds a task unless one with the same `unique_id` is still waiting (apalis' idempotency
    /// key): a burst of events on one file queues one job. The worker frees the id when the
    /// job starts ([`Queue::release_unique`]), so a later change queues again.
    pub async fn push_unique<T: Task>(&self, task: &T, unique_id: &str) -> Result<(), QueueError> {
        let task = TaskBuilder::new(Queued::new(task).map_err(QueueError::Push)?)
            .idempotency_key(unique_id)
            .build();
        match &self.storage {
            // `INSERT ... ON CONFLICT DO NOTHING`: a waiting duplicate is silently kept.
            Storage::Sqlite(s) => s
                .clone()
                .push_task(task)
                .await
                .map_err(|e| QueueError::Push(e.to_string()))?,
            Storage::Postgres(s) => match s.clone().push_task(task).await {
                Ok(()) => {}
                Err(e) if e.to_string().contains(IDEMPOTENCY_INDEX) => {}
                Err(e) => return Err(QueueError::Push(e.to_string())),
            },
        }
        self.wake.wake();
        Ok(())
    }

    /// Frees a running task's unique id (see [`Queue::push_unique`]).
    pub async fn release_unique(&self, id: &TaskId) -> Result<(), sea_orm::sqlx::Error> {
        use sea_orm::sqlx;
        let id = id.to_string();
        match &self.storage {
            Storage::Sqlite(s) => {
                sqlx::query("UPDATE Jobs SET idempotency_key = NULL WHERE id = ?1 AND idempotency_key IS NOT NULL")
                    .bind(id)
                    .execute(s.pool())
                    .await?;
            }
            Storage::Postgres(s) => {
                sqlx::query("UPDATE apalis.jobs SET idempotency_key = NULL WHERE id = $1 AND idempotency_key IS NOT NULL")
                    .bind(id)
                    .execute(s.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// Adds a task; it survives restarts until a worker completes it.
    pub async fn push<T: Task>(&self, task: &T) -> Result<(), QueueError> {
        let task = Queued::new(task).map_err(QueueError::Push)?;
        let push_err = |e: &dyn std::fmt::Display| QueueError::Push(e.to_string());
        match &self.storage {
            Storage::Sqlite(s) => s.clone().push(task).await.map_err(|e| push_err(&e))?,
            Storage::Postgres(s) => s.clone().push(task).await.map_err(|e| push_err(&e))?,
        }
        self.wake.wake();
        Ok(())
    }
}

/// apalis' unique index on (job_type, idempotency_key); PostgreSQL reports a waiting duplicate
/// as a violation of it.
const IDEMPOTENCY_INDEX: &str = "idx_jobs_idempotency_key";

/// The queue's name in the `Jobs` table: fixed, so renaming a Rust type never orphans tasks.
pub const QUEUE_NAME: &str = "certhub";

/// Worker heartbeat. apalis 1.0's interval polling can stop after a task completes, leaving
/// the heartbeat as the wake-up for tasks pushed by another process (`certhub queue probe`, a
/// second server on PostgreSQL); a short one bounds that wait. It also lets a restarted
/// server re-enqueue a dead worker's tasks after two missed beats instead of a minute.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
