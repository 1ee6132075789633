//! What the catalogue already holds for the folder, read without any sealed column.

use std::collections::HashMap;

use sea_orm::entity::prelude::*;
use sea_orm::{Condition, FromQueryResult, QuerySelect};

use super::super::entity::{Column, Entity as Certificates};
use super::source::PathKey;
use crate::domain::OrgId;

/// What the catalogue already holds for a path: enough to skip unchanged files and to retry
/// a password an admin typed, without loading any sealed file.
#[derive(Debug, Clone, FromQueryResult)]
pub(super) struct Known {
    pub(super) id: Uuid,
    pub(super) source_path_hash: Option<String>,
    pub(super) file_sha256: Option<String>,
    pub(super) is_available: bool,
    pub(super) password_sealed: Option<Vec<u8>>,
}

pub(super) async fn known_paths(
    db: &impl ConnectionTrait,
    org: OrgId,
    only: Option<&PathKey>,
) -> Result<HashMap<String, Known>, DbErr> {
    let mut query = Certificates::find()
        .select_only()
        .columns([
            Column::Id,
            Column::SourcePathHash,
            Column::FileSha256,
            Column::IsAvailable,
            Column::PasswordSealed,
        ])
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::SourcePathHash.is_not_null());
    if let Some(key) = only {
        query = query.filter(Column::SourcePathHash.eq(key.as_str()));
    }
    Ok(query
        .into_model::<Known>()
        .all(db)
        .await?
        .into_iter()
        .filter_map(|k| Some((k.source_path_hash.clone()?, k)))
        .collect())
}

/// What the folder bookkeeping needs of a row, without the sealed file: a full rescan of a
/// large catalogue stays small in memory.
#[derive(Debug, Clone, FromQueryResult)]
pub(super) struct Listed {
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) sha1: Option<String>,
    pub(super) source_path_hash: Option<String>,
    pub(super) source_path_sealed: Option<Vec<u8>>,
    pub(super) file_sha256: Option<String>,
    pub(super) is_available: bool,
    pub(super) cert_kind: Option<String>,
    pub(super) cnpj: Option<String>,
    pub(super) cpf: Option<String>,
}

/// Rows matching `filter`, as [`Listed`].
pub(super) async fn listed(
    db: &impl ConnectionTrait,
    org: OrgId,
    filter: Condition,
) -> Result<Vec<Listed>, DbErr> {
    Certificates::find()
        .select_only()
        .columns([
            Column::Id,
            Column::Name,
            Column::Sha1,
            Column::SourcePathHash,
            Column::SourcePathSealed,
            Column::FileSha256,
            Column::IsAvailable,
            Column::CertKind,
            Column::Cnpj,
            Column::Cpf,
        ])
        .filter(Column::OrgId.eq(org.0))
        .filter(filter)
        .into_model::<Listed>()
        .all(db)
        .await
}
