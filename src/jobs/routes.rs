//! The jobs API: what users do with install jobs and installations (`/api/v1/certificados/{id}/
//! install`, `/api/v1/install-jobs`, `/api/v1/installations`, `/api/v1/admin/jobs/reap`) and
//! what the agent does with its own (`/api/v1/agent/jobs`, `.../claim`, `.../payload`,
//! `.../result`, `/api/v1/agent/cleanup`, `/api/v1/agent/installations`). Thin handlers over
//! the rules in the other files of `jobs`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::installations::{self, InstallationFilter, StateFilter};
use super::payload::PAYLOAD_TOKEN_HEADER;
use super::requests::{self, Decision, InstallBody, JobFilter};
use super::{claim, cleanup, inbox, open_installations, result, sweep};
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthDevice, AuthUser};
use crate::paging::Paging;
use crate::protocol::{CleanupRequest, ResultRequest};
use crate::state::AppState;

// ---- users: requests and decisions

/// `POST /api/v1/certificados/{id}/install {device_id, reason?, duration_minutes?}`
pub async fn request_install(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<Uuid>,
    body: web::Json<InstallBody>,
) -> Result<HttpResponse, AppError> {
    let view = requests::request(&state, &user, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    reason: Option<String>,
}

/// `POST /api/v1/install-jobs/{id}/approve {reason?}` (ADMIN/DEV): `REQUESTED` -> `PENDING`.
pub async fn approve(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
    body: web::Json<DecisionBody>,
) -> Result<HttpResponse, AppError> {
    let decision = Decision::Approve(body.into_inner().reason);
    let view = requests::decide(&state, &admin.0, path.into_inner(), decision).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /api/v1/install-jobs/{id}/deny {reason}` (ADMIN/DEV): `REQUESTED` -> `DENIED`.
pub async fn deny(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
    body: web::Json<DecisionBody>,
) -> Result<HttpResponse, AppError> {
    let decision = Decision::Deny(body.into_inner().reason);
    let view = requests::decide(&state, &admin.0, path.into_inner(), decision).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /api/v1/install-jobs/{id}/cancel`: the requester or an ADMIN/DEV, from `REQUESTED` or
/// `PENDING`.
pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let view = requests::decide(&state, &user, path.into_inner(), Decision::Cancel).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /api/v1/install-jobs/{id}`
pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let job = requests::visible(&state.db, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(requests::view(&state.db, job).await?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobListQuery {
    status: Option<String>,
    job_type: Option<String>,
    user_id: Option<Uuid>,
    device_id: Option<Uuid>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/v1/install-jobs?status=&job_type=&user_id=&device_id=&page=&page_size=`: the
/// office's jobs, newest first; a VIEW sees only their own requests.
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<JobListQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let paging = Paging::parse(q.page, q.page_size)?;
    let filter = JobFilter::parse(
        q.status.as_deref(),
        q.job_type.as_deref(),
        q.user_id,
        q.device_id,
    )?;
    let page = requests::find_page(&state.db, &user, &filter, paging).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReapQuery {
    threshold_minutes: Option<i64>,
}

/// `POST /api/v1/admin/jobs/reap?threshold_minutes=60` (ADMIN/DEV): the periodic sweep, now,
/// for the admin's office.
pub async fn reap(
    state: web::Data<AppState>,
    admin: AdminUser,
    query: web::Query<ReapQuery>,
) -> Result<HttpResponse, AppError> {
    let done = sweep::reap_now(&state, &admin.0, query.threshold_minutes).await?;
    Ok(HttpResponse::Ok().json(done))
}

// ---- users: installations

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallationListQuery {
    state: Option<StateFilter>,
    device_id: Option<Uuid>,
    user_id: Option<Uuid>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/v1/installations?state=open|overdue|removed|all&device_id=&user_id=&page=&page_size=`:
/// the office's installations (a VIEW: those of their own requests), newest first.
pub async fn installations(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<InstallationListQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let paging = Paging::parse(q.page, q.page_size)?;
    let filter = InstallationFilter {
        state: q.state.unwrap_or(StateFilter::Open),
        device_id: q.device_id,
        user_id: q.user_id,
    };
    Ok(HttpResponse::Ok().json(installations::find_page(&state, &user, &filter, paging).await?))
}

/// `GET /api/v1/installations/{id}`
pub async fn installation(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let view = installations::find_view(&state, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    reason: Option<String>,
}

/// `POST /api/v1/installations/{id}/remove {reason?}` (the user who asked for the install, or
/// ADMIN/DEV): a `PENDING` `REMOVE` job for the device, delivered through its long-poll; 201,
/// or 200 with the one already open. A removed installation is 409.
pub async fn remove(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<Uuid>,
    body: web::Json<RemoveBody>,
) -> Result<HttpResponse, AppError> {
    let reason = body.into_inner().reason;
    let (view, created) =
        installations::request_removal(&state, &user, path.into_inner(), reason).await?;
    if created {
        Ok(HttpResponse::Created().json(view))
    } else {
        Ok(HttpResponse::Ok().json(view))
    }
}

// ---- the agent

#[derive(Deserialize, schemars::JsonSchema)]
pub struct InboxQuery {
    wait: Option<i64>,
}

/// `GET /api/v1/agent/jobs?wait=N` (DEVICE): this device's `PENDING` and `IN_PROGRESS` jobs,
/// oldest first; with `wait` in `1..=30`, a long-poll (see [`inbox::open_jobs_waiting`]).
pub async fn agent_jobs(
    state: web::Data<AppState>,
    device: AuthDevice,
    query: web::Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    let jobs = inbox::open_jobs_waiting(&state, &device, query.wait).await?;
    Ok(HttpResponse::Ok().json(jobs))
}

/// `POST /api/v1/agent/jobs/{id}/claim` (DEVICE): `PENDING` -> `IN_PROGRESS`, with a one-time
/// payload token for an `INSTALL` job (see [`claim::claim`]).
pub async fn claim(
    state: web::Data<AppState>,
    device: AuthDevice,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(claim::claim(&state, &device, path.into_inner()).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PayloadQuery {
    token: Option<String>,
}

/// `GET /api/v1/agent/jobs/{id}/payload?token=...` (or header `X-Payload-Token`) (DEVICE): the
/// PFX and its password sealed to the device's key, once per token.
pub async fn payload(
    state: web::Data<AppState>,
    device: AuthDevice,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<PayloadQuery>,
) -> Result<HttpResponse, AppError> {
    let presented = query.into_inner().token.or_else(|| {
        req.headers()
            .get(PAYLOAD_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let payload = super::payload::payload(&state, &device, path.into_inner(), presented).await?;
    Ok(HttpResponse::Ok().json(payload))
}

/// `POST /api/v1/agent/jobs/{id}/result {status, thumbprint?, error_code?, error_message?,
/// key_storage?, key_deleted?}` (DEVICE): `IN_PROGRESS` -> `DONE` or `FAILED` (see
/// [`result::report_result`]).
pub async fn result(
    state: web::Data<AppState>,
    device: AuthDevice,
    path: web::Path<Uuid>,
    body: web::Json<ResultRequest>,
) -> Result<HttpResponse, AppError> {
    let answer =
        result::report_result(&state, &device, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /api/v1/agent/cleanup {mode, removed: [{thumbprint, key_deleted}]}` (DEVICE): closes
/// this device's open leases of those certificates.
pub async fn cleanup(
    state: web::Data<AppState>,
    device: AuthDevice,
    body: web::Json<CleanupRequest>,
) -> Result<HttpResponse, AppError> {
    let answer = cleanup::report_cleanup(&state, &device, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /api/v1/agent/uninstall` (DEVICE, blocked too): the agent is leaving the PC.
pub async fn uninstall(
    state: web::Data<AppState>,
    device: AuthDevice,
) -> Result<HttpResponse, AppError> {
    let answer = super::uninstall::uninstalled(&state, &device).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /api/v1/agent/installations` (DEVICE): this device's installations not removed yet,
/// oldest first, with the certificate's name and the lease's end.
pub async fn agent_installations(
    state: web::Data<AppState>,
    device: AuthDevice,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(open_installations::list(&state, &device).await?))
}

#[cfg(test)]
mod future_sizes {
    use super::*;

    fn size_of_future<A, Fut>(_: impl FnOnce(A) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every held long-poll keeps this future for up to 30 s: it must not carry the database
    /// query's state through the wait (2.5 KiB in a debug build before it was boxed).
    #[test]
    fn a_held_long_poll_is_small() {
        let list = size_of_future(
            |(s, d, q): (web::Data<AppState>, AuthDevice, web::Query<InboxQuery>)| {
                agent_jobs(s, d, q)
            },
        );
        assert!(list <= 1024, "the long-poll's future is {list} bytes");
    }
}
