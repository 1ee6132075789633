//! The crate's one error: what a domain rule can answer (refused, not found, conflicting, a
//! database fault...). It knows nothing of HTTP; `http::error` maps it to a status and the
//! stable `{"error", "message"}` body, once, for the API and the portal alike.

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A second result for an install job (seed: `RESULT_DUPLICATE`).
    #[error("{0}")]
    ResultDuplicate(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Whether `e` says the database cannot be reached (no connection from the pool in time, a
/// connection lost, the server shutting down or starting) rather than that a statement went
/// wrong: a 503 the client may retry, not a 500.
pub fn database_unreachable(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    let sqlx = match e {
        // Taking a connection from the pool, or opening one for it, failed.
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => s,
        _ => return false,
    };
    match sqlx.as_ref() {
        Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
        Sqlx::Protocol(_) | Sqlx::Tls(_) => true,
        // PostgreSQL's classes 08 (connection exception) and 57P (operator intervention:
        // admin_shutdown, crash_shutdown, cannot_connect_now).
        Sqlx::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Whether `e` says the database's disk is full (SQLite's `SQLITE_FULL`, PostgreSQL's
/// `disk_full`): the write was rolled back whole; a 507 until space returns.
pub fn storage_full(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let (DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s))) = e else {
        return false;
    };
    match s.as_ref() {
        sea_orm::sqlx::Error::Database(db) => {
            // SQLite reports its primary result code (13, SQLITE_FULL) or an extended one
            // whose low byte is 13; PostgreSQL class 53 holds disk_full (53100).
            let code = db.code().unwrap_or_default();
            code == "53100"
                || code.parse::<u32>().is_ok_and(|c| c & 0xff == 13)
                || db.message().contains("database or disk is full")
        }
        sea_orm::sqlx::Error::Io(io) => io.raw_os_error() == Some(28),
        _ => false,
    }
}
