//! The single mapping from the crate's error ([`AppError`]) to HTTP responses. Every 4xx/5xx
//! body has the stable shape `{"error": code, "message": ...}`; 5xx messages never carry
//! internal detail.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::error::{AppError, database_unreachable, storage_full};
use crate::protocol::ApiError;

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
