//! The `certificates` table: the catalogue's rows, with the sealed file, password and path.

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

pub type Certificates = Entity;
pub type Certificate = Model;
