//! The certificate vault: ingest of the office's folder, the catalogue every role searches,
//! the admin's vault operations, and expiry tracking.

// The parsers (feature `parsers`, which the fuzz targets build alone): PKCS#12 + X.509 +
// ICP-Brasil, CNPJ/CPF, the password in a file name.
pub mod document;
pub mod file_name;
pub mod pkcs12;

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod catalogue;
#[cfg(feature = "server")]
pub mod expiry;
#[cfg(feature = "server")]
pub mod ingest;
#[cfg(feature = "server")]
pub mod tasks;
#[cfg(feature = "server")]
pub mod upload;
#[cfg(feature = "server")]
pub mod watcher;

#[cfg(feature = "server")]
use actix_web::{HttpResponse, web};

#[cfg(feature = "server")]
use crate::error::AppError;
#[cfg(feature = "server")]
use crate::http::extract::AdminUser;
#[cfg(feature = "server")]
use crate::state::AppState;

#[cfg(feature = "server")]
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certificates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub name: String,
        pub source_path_sealed: Option<Vec<u8>>,
        pub source_path_hash: Option<String>,
        pub file_stem: Option<String>,
        pub pfx_sealed: Option<Vec<u8>>,
        pub password_sealed: Option<Vec<u8>>,
        pub subject: Option<String>,
        pub cn: Option<String>,
        pub issuer: Option<String>,
        pub serial: Option<String>,
        pub not_before: Option<DateTimeUtc>,
        pub not_after: Option<DateTimeUtc>,
        pub sha1: Option<String>,
        pub key_algorithm: Option<String>,
        pub key_size: Option<i32>,
        pub cert_kind: Option<String>,
        pub cnpj: Option<String>,
        pub cpf: Option<String>,
        pub responsible_name: Option<String>,
        pub parse_error: Option<String>,
        pub is_available: bool,
        pub superseded_by: Option<Uuid>,
        pub expiry_alert_days: Option<i32>,
        pub file_sha256: Option<String>,
        /// Display name, CN and responsible person folded by `catalogue::search_key`.
        pub name_search: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[cfg(feature = "server")]
#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
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
#[cfg(feature = "server")]
pub async fn ingest_from_fs(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: web::Json<IngestBody>,
) -> Result<HttpResponse, AppError> {
    if admin.0.org.0 != state.settings.org_id {
        return Err(AppError::Forbidden(
            "the certificates folder belongs to another office".into(),
        ));
    }
    let report = ingest::scan(&state, body.dry_run, body.limit).await?;
    Ok(HttpResponse::Ok().json(report))
}
