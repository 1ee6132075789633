//! Storing a batch in one transaction, audit rows included: a new row, an update, a file
//! that now holds another certificate; the catalogue lock that keeps two scans apart.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseTransaction, FromQueryResult, QuerySelect};
use serde_json::json;

use super::super::entity::{self, Column, Entity as Certificates};
use super::super::pkcs12::CertificateInfo;
use super::prepare::Parsed;
use super::report::{Action, Item, item};
use super::rows::{Listed, listed};
use super::supersession::{Holder, refresh_supersession};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::state::AppState;

/// Files committed per transaction: large enough to amortise the commit (an fsync on SQLite),
/// small enough to keep memory flat and a failure local.
pub(super) const BATCH: usize = 64;

/// Stores a batch in one transaction, audit rows included.
pub(super) async fn store_batch(
    state: &AppState,
    org: OrgId,
    batch: Vec<Parsed>,
) -> Result<Vec<Item>, AppError> {
    let txn = crate::db::begin_write(&state.db).await?;
    lock_catalogue(&txn, org).await?;
    let mut holders = HashSet::new();
    let mut items = Vec::with_capacity(batch.len());
    let mut lookup = Lookup::load(&txn, org, &batch).await?;
    let mut audit = Vec::with_capacity(batch.len());
    for parsed in batch {
        items.push(
            store_one(
                &txn,
                state,
                org,
                parsed,
                &mut lookup,
                &mut holders,
                &mut audit,
            )
            .await?,
        );
    }
    audit::append_many(&txn, org, audit).await?;
    refresh_supersession(&txn, org, &holders).await?;
    txn.commit().await?;
    for i in &items {
        tracing::info!(file = %i.file, action = ?i.action, "certificate file processed");
    }
    Ok(items)
}

/// Serialises the office's catalogue writers until the end of `txn`, so what a batch looks up
/// is what it writes over: two scans racing (the one a killed process left queued and the
/// start-up rescan; two processes on one PostgreSQL) cannot both take a file for new. SQLite's
/// write transactions are serial already (`begin_write`); PostgreSQL takes an advisory lock.
pub(super) async fn lock_catalogue(txn: &DatabaseTransaction, org: OrgId) -> Result<(), DbErr> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended('certhub.catalogue:' || $1, 0))",
            [org.0.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// What a batch's files already match in the catalogue, found in two queries for the whole
/// batch: rows at their paths, and certificates by thumbprint or serial and issuer.
pub(super) struct Lookup {
    pub(super) by_path: HashMap<String, Listed>,
    pub(super) by_sha1: HashMap<String, Uuid>,
    pub(super) by_serial: HashMap<(String, String), Uuid>,
}

impl Lookup {
    pub(super) async fn load(
        txn: &DatabaseTransaction,
        org: OrgId,
        batch: &[Parsed],
    ) -> Result<Self, DbErr> {
        let paths: Vec<&str> = batch.iter().map(|p| p.file.key.as_str()).collect();
        let by_path = listed(
            txn,
            org,
            Condition::all().add(Column::SourcePathHash.is_in(paths)),
        )
        .await?
        .into_iter()
        .filter_map(|r| Some((r.source_path_hash.clone()?, r)))
        .collect();
        let infos: Vec<&CertificateInfo> = batch
            .iter()
            .filter_map(|p| p.opened.as_ref().ok().map(|(info, _)| info))
            .collect();
        let mut lookup = Self {
            by_path,
            by_sha1: HashMap::new(),
            by_serial: HashMap::new(),
        };
        if infos.is_empty() {
            return Ok(lookup);
        }
        #[derive(FromQueryResult)]
        struct Known {
            id: Uuid,
            sha1: Option<String>,
            serial: Option<String>,
            issuer: Option<String>,
        }
        // One IN list per index (an OR of the two would scan the office's rows on SQLite).
        let by_sha1 = Column::Sha1.is_in(infos.iter().map(|i| i.sha1.as_str()));
        let by_serial = Column::Serial.is_in(infos.iter().map(|i| i.serial.as_str()));
        for filter in [by_sha1, by_serial] {
            let found = Certificates::find()
                .select_only()
                .columns([Column::Id, Column::Sha1, Column::Serial, Column::Issuer])
                .filter(Column::OrgId.eq(org.0))
                .filter(filter)
                .into_model::<Known>()
                .all(txn)
                .await?;
            for k in found {
                lookup.remember(k.id, k.sha1, k.serial.zip(k.issuer));
            }
        }
        Ok(lookup)
    }

    pub(super) fn remember(
        &mut self,
        id: Uuid,
        sha1: Option<String>,
        serial: Option<(String, String)>,
    ) {
        if let Some(sha1) = sha1 {
            self.by_sha1.entry(sha1).or_insert(id);
        }
        if let Some(key) = serial {
            self.by_serial.entry(key).or_insert(id);
        }
    }

    /// The row already holding this certificate: same thumbprint, else same serial and issuer.
    pub(super) fn certificate(&self, info: &CertificateInfo) -> Option<Uuid> {
        self.by_sha1.get(&info.sha1).copied().or_else(|| {
            self.by_serial
                .get(&(info.serial.clone(), info.issuer.clone()))
                .copied()
        })
    }
}

pub(super) async fn store_one(
    txn: &DatabaseTransaction,
    state: &AppState,
    org: OrgId,
    p: Parsed,
    lookup: &mut Lookup,
    holders: &mut HashSet<Holder>,
    audit: &mut Vec<Entry>,
) -> Result<Item, AppError> {
    let name = &p.file.name;
    let at_path = lookup.by_path.remove(p.file.key.as_str());
    // Another writer stored these very bytes at this path since they were read (a scan racing
    // the watcher or another scan): nothing changed, so nothing is written or audited.
    if let Some(row) = &at_path
        && row.is_available
        && row.file_sha256.as_deref() == Some(p.sha256.as_str())
    {
        return Ok(item(&name.redacted, Action::Unchanged, None));
    }
    let (target, detach) = match &p.opened {
        Err(e) => {
            if let Some(row) = &at_path
                && row.sha1.is_some()
            {
                // A readable certificate is never replaced by an unreadable file (a copy in
                // progress, a corrupt overwrite): the vault keeps the last good copy.
                let detail = format!("{e}; the last good copy is kept");
                audit.push(
                    Entry::new(org, AuditAction::CertParseFailed, Actor::System)
                        .entity("certificate", row.id)
                        .meta(json!({"file": name.redacted, "error": e.to_string(), "kept": true})),
                );
                return Ok(item(&name.redacted, Action::Failed, Some(detail)));
            }
            (at_path.map(|r| r.id), None)
        }
        Ok((info, _)) => {
            let same_cert = match &at_path {
                Some(row) if row.sha1.as_deref() == Some(info.sha1.as_str()) => None,
                _ => lookup.certificate(info),
            };
            match (at_path, same_cert) {
                (Some(path_row), None) if path_row.sha1.as_deref() == Some(info.sha1.as_str()) => {
                    (Some(path_row.id), None)
                }
                // The path held an unreadable file: its row becomes the certificate's.
                (Some(path_row), None) if path_row.sha1.is_none() => (Some(path_row.id), None),
                // Another certificate now sits at this path (a renewal saved over the old
                // file): the old row lets go of the path and stays, unavailable.
                (Some(path_row), None) => (None, Some(path_row)),
                (Some(path_row), Some(cert_id)) if path_row.id == cert_id => (Some(cert_id), None),
                (Some(path_row), Some(cert_id)) => (Some(cert_id), Some(path_row)),
                (None, cert_id) => (cert_id, None),
            }
        }
    };
    if let Some(old) = detach {
        detach_row(
            txn,
            org,
            &old,
            "replaced by another file at the same path",
            audit,
        )
        .await?;
        if let Some(h) = Holder::of_row(&old) {
            holders.insert(h);
        }
    }

    let id = target.unwrap_or_else(Uuid::new_v4);
    let now = Utc::now();
    let seal = |what: &str, data: &[u8]| {
        state
            .master_key
            .seal(data, &format!("certificates.{what}:{id}"))
    };
    let mut row = entity::ActiveModel {
        id: Set(id),
        org_id: Set(org.0),
        name: Set(name.display.clone()),
        name_search: Set(Some(super::super::catalogue::name_search(
            &name.display,
            p.opened.as_ref().ok().map(|(info, _)| info),
        ))),
        source_path_sealed: Set(Some(seal(
            "source_path",
            p.file.path.to_string_lossy().as_bytes(),
        ))),
        source_path_hash: Set(Some(p.file.key.as_str().to_owned())),
        file_stem: Set(Some(name.display.to_lowercase())),
        pfx_sealed: Set(Some(seal("pfx", &p.bytes))),
        file_sha256: Set(Some(p.sha256.clone())),
        is_available: Set(true),
        updated_at: Set(now),
        ..Default::default()
    };
    let (action, audit_action, detail, meta) = match &p.opened {
        Ok((info, password)) => {
            row.password_sealed = Set(Some(seal("password", password.expose().as_bytes())));
            set_metadata(&mut row, info);
            let meta =
                json!({"file": name.redacted, "sha1": info.sha1, "not_after": info.not_after});
            holders.extend(Holder::of_info(info));
            lookup.remember(
                id,
                Some(info.sha1.clone()),
                Some((info.serial.clone(), info.issuer.clone())),
            );
            if target.is_some() {
                (Action::Updated, AuditAction::CertUpdated, None, meta)
            } else {
                (Action::Ingested, AuditAction::CertIngested, None, meta)
            }
        }
        Err(e) => {
            row.parse_error = Set(Some(e.to_string()));
            (
                Action::Failed,
                AuditAction::CertParseFailed,
                Some(e.to_string()),
                json!({"file": name.redacted, "error": e.to_string()}),
            )
        }
    };
    if target.is_some() {
        Certificates::update(row).exec(txn).await?;
    } else {
        row.created_at = Set(now);
        row.superseded_by = Set(None);
        row.expiry_alert_days = Set(None);
        Certificates::insert(row)
            .exec_without_returning(txn)
            .await?;
    }
    audit.push(
        Entry::new(org, audit_action, Actor::System)
            .entity("certificate", id)
            .meta(meta),
    );
    Ok(item(&name.redacted, action, detail))
}

/// Copies what the file says about its certificate into a row (and clears `parse_error`).
pub fn set_metadata(row: &mut entity::ActiveModel, info: &CertificateInfo) {
    row.parse_error = Set(None);
    row.subject = Set(Some(info.subject.clone()));
    row.cn = Set(info.cn.clone());
    row.issuer = Set(Some(info.issuer.clone()));
    row.serial = Set(Some(info.serial.clone()));
    row.not_before = Set(Some(info.not_before));
    row.not_after = Set(Some(info.not_after));
    row.sha1 = Set(Some(info.sha1.clone()));
    row.key_algorithm = Set(Some(info.key_algorithm.clone()));
    row.key_size = Set(info.key_size.map(|s| s as i32));
    row.cert_kind = Set(Some(info.kind.as_str().to_owned()));
    row.cnpj = Set(info.cnpj.as_ref().map(|c| c.as_str().to_owned()));
    row.cpf = Set(info.cpf.as_ref().map(|c| c.as_str().to_owned()));
    row.responsible_name = Set(info.responsible_name.clone());
}

/// A row whose file is gone (or now holds something else) stays in the catalogue, with its
/// jobs and audit, but unavailable and no longer tied to the path.
pub(super) async fn detach_row(
    txn: &DatabaseTransaction,
    org: OrgId,
    row: &Listed,
    why: &str,
    audit: &mut Vec<Entry>,
) -> Result<(), AppError> {
    Certificates::update(entity::ActiveModel {
        id: Set(row.id),
        is_available: Set(false),
        source_path_hash: Set(None),
        updated_at: Set(Utc::now()),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    if row.is_available {
        audit.push(
            Entry::new(org, AuditAction::CertRemovedFromSource, Actor::System)
                .entity("certificate", row.id)
                .meta(json!({"name": row.name, "sha1": row.sha1, "reason": why})),
        );
    }
    Ok(())
}
