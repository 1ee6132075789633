//! The audit API (ADMIN/DEV): the filtered, paged listing, the same filters as a streamed CSV,
//! and the verification of the office's hash chain. Thin handlers over [`super::query`],
//! [`super::export`] and [`super::verification`].

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use futures_util::StreamExt;

use super::query::{self, AuditQuery};
use super::{export, verification};
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthUser};
use crate::state::AppState;

/// `GET /api/v1/audit?action=&user_id=&device_id=&entity_id=&from=&to=&page=&page_size=`
/// (ADMIN/DEV): the office's audit rows, newest first.
pub async fn list(
    state: web::Data<AppState>,
    admin: AdminUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query::find_page(&state, &admin.0, &query.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/v1/audit/export.csv` with the filters of [`list`] (ADMIN/DEV): every matching
/// row, newest first, streamed a chunk at a time; UTF-8 with a BOM so Excel reads accents.
pub async fn export_csv(
    state: web::Data<AppState>,
    admin: AdminUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    csv_response(
        &state,
        &admin.0,
        &query.into_inner(),
        export::CsvFormat::machine(),
    )
}

/// The CSV attachment `auditoria.csv` of every row these filters select (the API's export
/// and the portal's download).
pub fn csv_response(
    state: &AppState,
    admin: &AuthUser,
    q: &AuditQuery,
    format: export::CsvFormat,
) -> Result<HttpResponse, AppError> {
    let chunks = export::csv_chunks(state, admin, q, format)?.map(|chunk| chunk.map(Bytes::from));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"auditoria.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(chunks))
}

/// `GET /api/v1/audit/verify` (ADMIN/DEV): the office's hash chain, checked now.
pub async fn verify(
    state: web::Data<AppState>,
    admin: AdminUser,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(
        verification::verify_chain(&state, &admin.0, crate::audit::breaks::FoundBy::Api).await?,
    ))
}
