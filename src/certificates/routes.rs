//! The certificates API: the catalogue (`/api/v1/certificados`), the admin's vault operations
//! (typing a password, revealing a path), uploads and the folder's ingest on demand. Thin
//! handlers over [`super::catalogue`], [`super::vault`], [`super::upload`] and
//! [`super::ingest`].

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalogue::{self, ListQuery, Listing};
use super::upload::{self, UploadResult};
use super::{ingest, upload_form, vault};
use crate::crypto::SecretString;
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthUser};
use crate::state::AppState;

/// `GET /api/v1/certificados?q=&status=&within_days=&page=&page_size=`
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let listing = Listing::try_from(query.into_inner())?;
    let page = catalogue::find_page(&state.db, user.org, &listing, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/v1/certificados/{id}`
pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let view = catalogue::find_view(&state.db, user.org, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: SecretString,
}

/// `POST /api/v1/admin/certificates/{id}/password {"password"}`: see [`vault::store_password`].
pub async fn set_password(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, AppError> {
    let view = vault::store_password(
        &state,
        &admin.0,
        path.into_inner(),
        body.into_inner().password,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Response of `GET /api/v1/admin/certificates/{id}/source-path`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct SourcePath {
    pub source_path: String,
}

/// `GET /api/v1/admin/certificates/{id}/source-path`: the raw path, which may hold the
/// password, for an admin who must find the file; never cached, always audited.
pub async fn source_path(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let raw = vault::reveal_source_path(&state, &admin.0, path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SourcePath { source_path: raw }))
}

/// Response of `POST /api/v1/admin/certificates/upload`: one result per file, in order.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UploadResponse {
    pub results: Vec<UploadResult>,
}

/// `POST /api/v1/admin/certificates/upload` (ADMIN/DEV), `multipart/form-data`: parts named
/// `file` (repeated, the name from the part's `filename`) and optional parts named `password`;
/// the i-th `password` part belongs to the i-th `file` part, an empty one (or none) means the
/// file name's password. Answers `{"results": [UploadResult...]}`.
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: AdminUser,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    upload::folder_for(&state, &admin.0)?;
    let files =
        upload_form::read_form(req.headers(), payload, state.settings.max_pfx_bytes).await?;
    let results = upload::upload(&state, &admin.0, files).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(UploadResponse { results }))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    #[serde(default)]
    dry_run: bool,
    /// 0 = the whole folder (and files that left it are marked unavailable).
    #[serde(default)]
    limit: usize,
}

/// `POST /api/v1/admin/certificates/ingest-from-fs {dry_run, limit}` (ADMIN/DEV of the office
/// the folder belongs to).
pub async fn ingest_from_fs(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: web::Json<IngestBody>,
) -> Result<HttpResponse, AppError> {
    let report = ingest::scan_now(&state, &admin.0, body.dry_run, body.limit).await?;
    Ok(HttpResponse::Ok().json(report))
}
