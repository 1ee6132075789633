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
    let origin = super::auth::client_origin(req.request());
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
