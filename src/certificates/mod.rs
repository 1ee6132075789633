//! The certificate vault: PKCS#12 parsing, folder ingest and watcher, and the catalogue as
//! every role of the office sees it.

pub mod document;
pub mod file_name;
pub mod ingest;
pub mod pkcs12;
pub mod watcher;

use actix_web::{HttpResponse, web};
use sea_orm::QueryOrder;
use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::http::AppError;
use crate::http::auth::{AdminUser, AuthUser};
use crate::startup::AppState;

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
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What every role may see of a certificate: never its file, password or source path.
#[derive(Serialize)]
pub struct CertificateView {
    pub id: Uuid,
    pub name: String,
    pub cn: Option<String>,
    pub cert_kind: Option<String>,
    pub cnpj: Option<String>,
    pub cpf: Option<String>,
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    pub sha1: Option<String>,
    pub is_available: bool,
    pub parse_error: Option<String>,
}

/// `GET /api/v1/certificados`
pub async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, AppError> {
    use entity::Column;
    let rows = entity::Entity::find()
        .filter(Column::OrgId.eq(user.org.0))
        .order_by_asc(Column::Name)
        .all(&state.db)
        .await?;
    let items: Vec<CertificateView> = rows
        .into_iter()
        .map(|c| CertificateView {
            id: c.id,
            name: c.name,
            cn: c.cn,
            cert_kind: c.cert_kind,
            cnpj: c.cnpj,
            cpf: c.cpf,
            not_after: c.not_after,
            sha1: c.sha1,
            is_available: c.is_available,
            parse_error: c.parse_error,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"total": items.len(), "items": items})))
}

#[derive(serde::Deserialize, Default)]
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
    if admin.0.org.0 != state.settings.org_id {
        return Err(AppError::Forbidden(
            "the certificates folder belongs to another office".into(),
        ));
    }
    let report = ingest::scan(&state, body.dry_run, body.limit).await?;
    Ok(HttpResponse::Ok().json(report))
}
