//! The single mapping from domain errors to HTTP responses. Every 4xx/5xx body has the
//! stable shape `{"error": code, "message": ...}`; 5xx messages never carry internal detail.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::protocol::ApiError;

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

impl From<crate::audit::AuditError> for AppError {
    fn from(e: crate::audit::AuditError) -> Self {
        match e {
            crate::audit::AuditError::Db(db) => AppError::Db(db),
            other => AppError::Internal(other.to_string()),
        }
    }
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

impl AppError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation(_) => "validation_error",
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized => "unauthorized",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::ResultDuplicate(_) => "result_duplicate",
            AppError::Gone(_) => "gone",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::TooManyRequests { .. } => "rate_limited",
            AppError::Unavailable(_) => "unavailable",
            AppError::Db(e) if storage_full(e) => "insufficient_storage",
            AppError::Db(e) if database_unreachable(e) => "unavailable",
            AppError::Internal(_) | AppError::Db(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            AppError::Db(e) if storage_full(e) => {
                "the database's disk is full: nothing was changed; reading still works".into()
            }
            AppError::Db(e) if database_unreachable(e) => {
                "the database is unreachable; try again shortly".into()
            }
            AppError::Internal(_) | AppError::Db(_) => {
                "internal error; the request id identifies it in the server log".into()
            }
            other => other.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized | AppError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) | AppError::ResultDuplicate(_) => StatusCode::CONFLICT,
            AppError::Gone(_) => StatusCode::GONE,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(e) if storage_full(e) => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Db(e) if database_unreachable(e) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) | AppError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut res = json_error(self.status_code(), self.code(), &self.public_message());
        if let AppError::TooManyRequests { retry_after_secs } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        res
    }
}

/// The stable error body, for errors that do not come from [`AppError`].
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ApiError {
        error: code.to_owned(),
        message: message.to_owned(),
    })
}

/// Code for a bare status produced by the framework (unknown route, wrong method...).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        410 => "gone",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_error",
        429 => "rate_limited",
        503 => "unavailable",
        507 => "insufficient_storage",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}
