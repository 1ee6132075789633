//! Renewals: among the readable certificates of one holder, the one that expires last is the
//! default to install; the others point to it (`superseded_by`).

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseTransaction, FromQueryResult, QuerySelect};

use super::super::entity::{self, Column, Entity as Certificates};
use super::super::pkcs12::{CertKind, CertificateInfo};
use super::rows::Listed;
use crate::domain::OrgId;

/// The number a renewal shares with the certificate it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Holder {
    Company(String),
    Person(String),
}

impl Holder {
    pub(super) fn of(kind: Option<&str>, cnpj: Option<&str>, cpf: Option<&str>) -> Option<Self> {
        match kind {
            Some(k) if k == CertKind::ECnpj.as_str() => cnpj.map(|c| Self::Company(c.to_owned())),
            Some(k) if k == CertKind::ECpf.as_str() => cpf.map(|c| Self::Person(c.to_owned())),
            _ => None,
        }
    }

    pub(super) fn of_info(info: &CertificateInfo) -> Option<Self> {
        Self::of(
            Some(info.kind.as_str()),
            info.cnpj.as_ref().map(|c| c.as_str()),
            info.cpf.as_ref().map(|c| c.as_str()),
        )
    }

    pub(super) fn of_row(row: &Listed) -> Option<Self> {
        Self::of(
            row.cert_kind.as_deref(),
            row.cnpj.as_deref(),
            row.cpf.as_deref(),
        )
    }
}

/// Recomputes which of the holder's certificates is the default after `info`'s row changed
/// outside a scan (an admin typed its password).
pub async fn refresh_supersession_of(
    txn: &DatabaseTransaction,
    org: OrgId,
    info: &CertificateInfo,
) -> Result<(), DbErr> {
    refresh_supersession(txn, org, &Holder::of_info(info).into_iter().collect()).await
}

/// Among the readable certificates of one holder, the one that expires last is the default to
/// install; the others point to it (`superseded_by`). Available ones win over unavailable ones.
/// One query for all the holders a batch touched.
pub(super) async fn refresh_supersession(
    txn: &DatabaseTransaction,
    org: OrgId,
    holders: &HashSet<Holder>,
) -> Result<(), DbErr> {
    #[derive(FromQueryResult)]
    struct Candidate {
        id: Uuid,
        not_after: Option<DateTimeUtc>,
        is_available: bool,
        superseded_by: Option<Uuid>,
        cert_kind: Option<String>,
        cnpj: Option<String>,
        cpf: Option<String>,
    }
    if holders.is_empty() {
        return Ok(());
    }
    // One IN list per index (CNPJ, CPF); the certificate kind is checked below.
    let cnpjs: Vec<&str> = holders
        .iter()
        .filter_map(|h| match h {
            Holder::Company(c) => Some(c.as_str()),
            Holder::Person(_) => None,
        })
        .collect();
    let cpfs: Vec<&str> = holders
        .iter()
        .filter_map(|h| match h {
            Holder::Person(c) => Some(c.as_str()),
            Holder::Company(_) => None,
        })
        .collect();
    let mut rows = Vec::new();
    for filter in [Column::Cnpj.is_in(cnpjs), Column::Cpf.is_in(cpfs)] {
        rows.extend(
            Certificates::find()
                .select_only()
                .columns([
                    Column::Id,
                    Column::NotAfter,
                    Column::IsAvailable,
                    Column::SupersededBy,
                    Column::CertKind,
                    Column::Cnpj,
                    Column::Cpf,
                ])
                .filter(Column::OrgId.eq(org.0))
                .filter(filter)
                .filter(Column::ParseError.is_null())
                .filter(Column::NotAfter.is_not_null())
                .into_model::<Candidate>()
                .all(txn)
                .await?,
        );
    }
    let mut by_holder: HashMap<Holder, HashMap<Uuid, &Candidate>> = HashMap::new();
    for row in &rows {
        if let Some(h) = Holder::of(
            row.cert_kind.as_deref(),
            row.cnpj.as_deref(),
            row.cpf.as_deref(),
        ) && holders.contains(&h)
        {
            by_holder.entry(h).or_default().insert(row.id, row);
        }
    }
    for rows in by_holder.values() {
        let newest = rows
            .values()
            .filter(|r| r.is_available)
            .max_by_key(|r| (r.not_after, r.id))
            .or_else(|| rows.values().max_by_key(|r| (r.not_after, r.id)));
        let Some(newest) = newest else {
            continue;
        };
        for row in rows.values() {
            let wanted = (row.not_after < newest.not_after).then_some(newest.id);
            if row.superseded_by != wanted {
                Certificates::update(entity::ActiveModel {
                    id: Set(row.id),
                    superseded_by: Set(wanted),
                    ..Default::default()
                })
                .exec(txn)
                .await?;
            }
        }
    }
    Ok(())
}
