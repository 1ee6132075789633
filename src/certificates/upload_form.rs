//! Reading an upload's `multipart/form-data` body, streamed part by part with size caps:
//! `file` parts (repeated, the name from the part's `filename`) and optional `password`
//! parts (the i-th for the i-th file, an empty one or none means the file name's), and for
//! the portal one `csrf` part. What it reads goes to [`super::upload::upload`].

use std::cell::Cell;
use std::rc::Rc;

use actix_multipart::{Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use futures_util::StreamExt;

use super::upload::{MAX_FILES, UploadedFile, request_limit, too_many_files};
use super::vault::MAX_PASSWORD_CHARS;
use crate::crypto::SecretString;
use crate::error::AppError;

fn too_large(limit: u64) -> AppError {
    AppError::PayloadTooLarge(format!(
        "an upload is at most {MAX_FILES} files of max_pfx_bytes each ({limit} bytes in all)"
    ))
}

/// Reads an upload's `multipart/form-data` body, streamed: the body is
/// capped at [`request_limit`], each file at `max_pfx_bytes` + 1 (enough for [`super::upload::upload`] to
/// refuse it), each password at [`MAX_PASSWORD_CHARS`].
pub async fn read_form(
    headers: &HeaderMap,
    payload: web::Payload,
    max_pfx_bytes: u64,
) -> Result<Vec<UploadedFile>, AppError> {
    // The API has no CSRF field: it is authenticated by its bearer token.
    read_parts(headers, payload, max_pfx_bytes, false)
        .await
        .map(|(files, _)| files)
}

/// [`read_form`] that also accepts the portal's `csrf` part, returned for the caller to check
/// before anything is stored.
pub async fn read_form_with_csrf(
    headers: &HeaderMap,
    payload: web::Payload,
    max_pfx_bytes: u64,
) -> Result<(Vec<UploadedFile>, Option<String>), AppError> {
    read_parts(headers, payload, max_pfx_bytes, true).await
}

async fn read_parts(
    headers: &HeaderMap,
    payload: web::Payload,
    max_pfx_bytes: u64,
    allow_csrf: bool,
) -> Result<(Vec<UploadedFile>, Option<String>), AppError> {
    let mut csrf = None;
    let limit = request_limit(max_pfx_bytes);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    let overflowed = Rc::new(Cell::new(false));
    let capped = {
        let overflowed = overflowed.clone();
        let mut seen: u64 = 0;
        payload.map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > limit {
                overflowed.set(true);
                return Err(PayloadError::Overflow);
            }
            Ok(chunk)
        })
    };
    let malformed = |e: MultipartError| {
        if overflowed.get() {
            too_large(limit)
        } else {
            AppError::BadRequest(format!("malformed multipart/form-data body: {e}"))
        }
    };
    let mut multipart = Multipart::new(headers, capped);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut passwords: Vec<SecretString> = Vec::new();
    let keep = usize::try_from(max_pfx_bytes.saturating_add(1)).unwrap_or(usize::MAX);
    let max_password_bytes = MAX_PASSWORD_CHARS * 4;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        let part = field.name().unwrap_or_default().to_owned();
        match part.as_str() {
            "file" => {
                if files.len() == MAX_FILES {
                    return Err(too_many_files());
                }
                let name = field
                    .content_disposition()
                    .and_then(|cd| {
                        cd.get_filename().map(str::to_owned).or_else(|| {
                            String::from_utf8(cd.get_filename_ext()?.value.clone()).ok()
                        })
                    })
                    .ok_or_else(|| {
                        AppError::BadRequest(
                            "each `file` part needs a filename in its Content-Disposition".into(),
                        )
                    })?;
                let mut bytes = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(malformed)?;
                    // Past the cap the rest is read and dropped: the body cap bounds it.
                    let room = keep.saturating_sub(bytes.len());
                    bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                files.push((name, bytes));
            }
            "password" => {
                let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(max_password_bytes));
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(malformed)?;
                    if bytes.len() + chunk.len() > max_password_bytes {
                        return Err(AppError::Validation(format!(
                            "password: at most {MAX_PASSWORD_CHARS} characters"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| AppError::BadRequest("password: not valid UTF-8".into()))?;
                passwords.push(SecretString::new(text.to_owned()));
            }
            "csrf" if allow_csrf && csrf.is_none() => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(malformed)?;
                    if bytes.len() + chunk.len() > 256 {
                        return Err(AppError::BadRequest("csrf: too long".into()));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                csrf = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            other => {
                let other: String = other.chars().take(64).collect();
                return Err(AppError::BadRequest(format!(
                    "unexpected part {other:?}: an upload has `file` and `password` parts"
                )));
            }
        }
    }
    if files.is_empty() {
        return Err(AppError::Validation(
            "no `file` part: nothing to upload".into(),
        ));
    }
    if passwords.len() > files.len() {
        return Err(AppError::BadRequest(
            "more `password` parts than `file` parts".into(),
        ));
    }
    let mut passwords = passwords.into_iter();
    let files = files
        .into_iter()
        .map(|(file_name, bytes)| UploadedFile {
            file_name,
            bytes,
            password: passwords.next(),
        })
        .collect();
    Ok((files, csrf))
}

/// The parts of `POST /api/v1/admin/certificates/upload` (`multipart/form-data`), for the API's
/// description: the form is read part by part, never into one value.
pub struct UploadForm;

impl schemars::JsonSchema for UploadForm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UploadForm".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "description": "Certificate files (.pfx, .p12), at most 20",
                    "type": "array",
                    "maxItems": 20,
                    "items": {"type": "string", "format": "binary"}
                },
                "password": {
                    "description": "The i-th password for the i-th file; empty = the file name's",
                    "type": "array",
                    "items": {"type": "string", "writeOnly": true}
                }
            }
        })
    }
}
