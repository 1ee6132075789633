//! The devices API: administration (`/api/v1/admin/devices`), pairing and staying in touch
//! (`/api/v1/agent/{enroll,auth,heartbeat}`) and getting the agent onto a PC (`/agent/*`).
//! Thin handlers over [`super::provisioning`], [`super::pairing`], [`super::heartbeat`] and
//! [`super::distribution`].

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::provisioning::{self, CreateBody, PatchBody};
use super::{distribution, heartbeat, pairing};
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthDevice, client_addr};
use crate::protocol::{DeviceAuthRequest, EnrollRequest, HeartbeatRequest};
use crate::state::AppState;

/// `POST /api/v1/admin/devices`: the device, its token and an enrollment code, shown once.
pub async fn create(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let creds = provisioning::provision(&state, &admin.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(creds))
}

/// `GET /api/v1/admin/devices`
pub async fn list(state: web::Data<AppState>, admin: AdminUser) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok()
        .json(provisioning::list_views(&state.db, admin.0.org, &state.contacts).await?))
}

/// `GET /api/v1/admin/devices/{id}`
pub async fn get(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let view =
        provisioning::find_view(&state.db, admin.0.org, path.into_inner(), &state.contacts).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /api/v1/admin/devices/{id}/rotate-token`: a new token and enrollment code; the old
/// token, the access tokens issued with it and the registered key stop working.
pub async fn rotate_token(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(provisioning::rotate(&state, &admin.0, path.into_inner()).await?))
}

/// `PATCH /api/v1/admin/devices/{id} {hostname?, owner_user_id?}`: renames the device or
/// changes (or clears, with `null`) its owner; audited `DEVICE_UPDATED` with before and after.
pub async fn patch(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, AppError> {
    let view = provisioning::update(&state, &admin.0, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /api/v1/admin/devices/{id}/block`: the device can no longer authenticate, and its
/// access tokens stop working at once.
pub async fn block(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let view = provisioning::set_allowed(&state, &admin.0, path.into_inner(), false).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /api/v1/admin/devices/{id}/unblock`
pub async fn unblock(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let view = provisioning::set_allowed(&state, &admin.0, path.into_inner(), true).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /api/v1/admin/devices/{id}`
pub async fn remove(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    provisioning::retire(&state, &admin.0, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(crate::accounts::routes::Acknowledged { ok: true }))
}

/// `POST /api/v1/agent/enroll`: exchanges a one-time enrollment code for the device's id and a
/// fresh token, registering its public key. Unknown, used and expired codes get the same 410.
pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, AppError> {
    let credentials = pairing::enroll(&state, client_addr(&req), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(credentials))
}

/// `POST /api/v1/agent/auth`: device id + token -> a DEVICE access token. Unknown device and
/// wrong token get the same 401; the first `public_key` is registered, a different one is 409.
pub async fn auth(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<DeviceAuthRequest>,
) -> Result<HttpResponse, AppError> {
    let token = pairing::authenticate(&state, client_addr(&req), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(token))
}

/// `POST /api/v1/agent/heartbeat` (DEVICE): records that the agent is alive and which version
/// it runs; returns the server's clock and the agent policy.
pub async fn heartbeat(
    state: web::Data<AppState>,
    device: AuthDevice,
    body: web::Json<HeartbeatRequest>,
) -> Result<HttpResponse, AppError> {
    let answer = heartbeat::heartbeat(&state, &device, body.into_inner())?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ScriptQuery {
    code: Option<String>,
}

/// `GET /agent/install.ps1?code=ABCD-EFGH-JK`: the script that downloads, checks, installs and
/// pairs (it carries the server's certificate fingerprint and the `.exe`'s SHA-256).
pub async fn script(
    state: web::Data<AppState>,
    query: web::Query<ScriptQuery>,
) -> Result<HttpResponse, AppError> {
    let code = distribution::code_of(query.into_inner().code)?;
    let settings = &state.settings;
    // No agent to serve: the script says so instead of downloading a 404.
    let agent = distribution::agent_file(settings).await.ok();
    let fingerprint = state.tls.as_ref().map(|served| served.fingerprint());
    let script = distribution::install_script(&distribution::ScriptFacts {
        server: &settings.public_url,
        code: code.as_ref(),
        fingerprint: fingerprint.as_ref(),
        agent_sha256: agent.as_ref().map(|a| a.sha256.as_str()),
        plain_http_allowed: distribution::plain_http_allowed(settings),
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(script))
}

/// `GET /agent/certhub-agent.exe`: the agent this server was released with, streamed from
/// disk, with its SHA-256 as `ETag` (`If-None-Match` answers 304), at most
/// [`distribution::DOWNLOADS_PER_MINUTE`] a minute per client address.
pub async fn executable(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if let Some(ip) = client_addr(&req)
        && let Err(refused) = state.download_limiter.check(&ip)
    {
        return Err(AppError::TooManyRequests {
            retry_after_secs: refused.retry_after_secs,
        });
    }
    let file = distribution::agent_file(&state.settings).await?;
    let etag = file.etag();
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    let body = distribution::stream(&file).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/vnd.microsoft.portable-executable",
        ))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"Certhub.Agent.exe\"",
        ))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-SHA256", file.sha256.clone()))
        .no_chunking(file.len)
        .streaming(body))
}
