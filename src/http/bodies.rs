//! How requests are read: the largest JSON body, and the errors of actix-web's own
//! extractors (a malformed JSON body, path or query) in the stable error shape.

use actix_web::web;

use crate::error::AppError;

/// Largest JSON body any endpoint accepts.
pub const JSON_LIMIT: usize = 256 * 1024;

fn json_error(err: actix_web::error::JsonPayloadError) -> AppError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => {
            AppError::PayloadTooLarge(format!("JSON body larger than {JSON_LIMIT} bytes"))
        }
        E::ContentType => AppError::BadRequest("expected Content-Type: application/json".into()),
        E::Deserialize(e) => {
            let msg = e.to_string();
            // Field names are safe to echo; values (which may be passwords) are not.
            if msg.starts_with("missing field") || msg.starts_with("unknown field") {
                AppError::BadRequest(format!("invalid JSON body: {msg}"))
            } else {
                AppError::BadRequest(format!(
                    "invalid JSON body ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ))
            }
        }
        other => AppError::BadRequest(format!("invalid JSON body: {other}")),
    }
}

pub async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound("no such route".into()))
}

/// JSON bodies: at most [`JSON_LIMIT`], errors as [`AppError`].
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(JSON_LIMIT)
        .error_handler(|err, _| json_error(err).into())
}

/// A path parameter that does not parse (a malformed id) is a route that does not exist.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _| AppError::NotFound(err.to_string()).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _| AppError::BadRequest(err.to_string()).into())
}
