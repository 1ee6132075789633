//! Request context for every response: a request id, one access-log line (path only: query
//! strings carry tokens, bodies carry secrets, neither is ever logged), security headers, and
//! the stable JSON error shape for errors the framework produces itself.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;
use uuid::Uuid;

use super::error::{code_for_status, json_error};
use crate::error::AppError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id, available to handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Whether the server speaks HTTPS itself (adds HSTS).
#[derive(Debug, Clone, Copy)]
pub struct Tls(pub bool);

fn incoming_request_id(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| v.to_owned())
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, Error> {
    let started = Instant::now();
    let request_id =
        incoming_request_id(&req).unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let tls = req
        .app_data::<actix_web::web::Data<Tls>>()
        .map(|t| t.0)
        .unwrap_or(false);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let origin = super::extract::client_origin(req.request());
    let peer = origin.ip.map(|ip| ip.to_string()).unwrap_or_default();
    // HTTPS here, or at a trusted proxy in front (`trusted_proxies`).
    let tls = tls || origin.forwarded_https;
    let span = tracing::info_span!("http", request_id = %request_id);

    let res = next.call(req).instrument(span.clone()).await?;

    let status = res.status();
    let is_json_or_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    let mut res = if status.as_u16() >= 400 && !is_json_or_html {
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        let (http_req, old) = res.into_parts();
        let mut new = json_error(status, code_for_status(status), &message);
        // Keep framework headers such as Allow (405) and Retry-After (429).
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                new.headers_mut().insert(name.clone(), value.clone());
            }
        }
        ServiceResponse::new(http_req, new).map_into_right_body()
    } else {
        res.map_into_left_body()
    };

    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, v);
    }
    let defaults: [(HeaderName, &str); 6] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Links carry one-time tokens in their query: never leak them through Referer.
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        (header::CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }

    let _entered = span.enter();
    tracing::info!(
        target: "certhub::access",
        %method,
        path = %path,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        peer = %peer,
        "request"
    );
    Ok(res)
}

/// Text the database cannot store: a NUL character, which PostgreSQL's `text` refuses (a
/// statement failing mid-request) and SQLite would keep. Refused for every route before any
/// handler runs, wherever a request carries text: its query string (`%00`) and a JSON
/// (`\u0000`) or form (`%00`) body, with 422 (an API route) or the portal's error page.
/// Multipart bodies (certificate files) are left to their handler, which stores no part's text.
pub async fn refuse_nul_text(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, Error> {
    use futures_util::StreamExt;

    if req.query_string().contains("%00") {
        return Ok(refused(req, nul_refused()));
    }
    // The types actix-web's extractors read: JSON for `*/json` and `*/*+json`, a form for
    // `application/x-www-form-urlencoded`.
    use actix_web::mime;
    let text_body = match req.mime_type() {
        Ok(Some(m)) if m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON) => Some(true),
        Ok(Some(m))
            if m.type_() == mime::APPLICATION && m.subtype() == mime::WWW_FORM_URLENCODED =>
        {
            Some(false)
        }
        _ => None,
    };
    if let Some(json) = text_body {
        // The whole body, as the extractor would read it (it refuses more than JSON_LIMIT).
        let mut payload = req.take_payload();
        let mut body = actix_web::web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > super::bodies::JSON_LIMIT {
                let too_large = AppError::PayloadTooLarge(format!(
                    "body larger than {} bytes",
                    super::bodies::JSON_LIMIT
                ));
                return Ok(refused(req, too_large));
            }
            body.extend_from_slice(&chunk);
        }
        let holds_nul = if json {
            json_holds_nul(&body)
        } else {
            body.contains(&0) || body.windows(3).any(|w| w == b"%00")
        };
        if holds_nul {
            return Ok(refused(req, nul_refused()));
        }
        req.set_payload(actix_web::dev::Payload::from(body.freeze()));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn nul_refused() -> AppError {
    AppError::Validation("text may not contain a NUL character (U+0000)".into())
}

/// How a request refused before its handler is answered off the APIs: the portal's error
/// page, given by the app (`startup`), so this edge names no page.
#[derive(Clone, Copy)]
pub struct ErrorPage(pub fn(AppError) -> actix_web::HttpResponse);

/// The answer to a request refused before its handler: JSON on the APIs, a page on the portal.
fn refused<B>(req: ServiceRequest, error: AppError) -> ServiceResponse<EitherBody<B>> {
    use actix_web::ResponseError;
    let path = req.path();
    let api = path.starts_with("/api/") || path.starts_with("/agent/") || path == "/health";
    let page = req
        .app_data::<actix_web::web::Data<ErrorPage>>()
        .map(|p| p.0)
        .filter(|_| !api);
    let res = match page {
        Some(render) => render(error),
        None => error.error_response(),
    };
    req.into_response(res).map_into_right_body()
}

/// Whether a JSON text holds the escape `\u0000` inside a string (a raw NUL byte is not JSON,
/// and the parser refuses it): a `\` that escapes, i.e. one ending an odd run of backslashes.
fn json_holds_nul(body: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in body.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if b == b'u' && backslashes % 2 == 1 && body[i + 1..].starts_with(b"0000") {
            return true;
        }
        backslashes = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::json_holds_nul;

    #[test]
    fn a_nul_escape_is_found_only_where_it_escapes() {
        assert!(json_holds_nul(br#"{"a":"x\u0000y"}"#));
        assert!(json_holds_nul(br#"{"a":"\\\u0000"}"#));
        assert!(json_holds_nul(br#"{"a\u0000":1}"#));
        // An escaped backslash followed by the letters "u0000" is text, not a NUL.
        assert!(!json_holds_nul(br#"{"a":"\\u0000"}"#));
        assert!(json_holds_nul(br#"{"a":"\u00001"}"#));
        assert!(!json_holds_nul(br#"{"a":"\u0001 u0000"}"#));
        assert!(!json_holds_nul(b""));
    }
}
