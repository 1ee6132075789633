//! Ingest: the office's folder of `.pfx`/`.p12` files becomes sealed catalogue rows. Only files
//! directly in the folder count; the raw path and the file name hold passwords, so they are
//! sealed (with a hash of the normalised path for matching) and only redacted forms are logged.

use std::collections::HashSet;
use std::path::Path;

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use serde::Serialize;
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::entity::{self, Column, Entity as Certificates};
use super::file_name::{self, FileName};
use super::pkcs12::{self, CertificateInfo, PfxError};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::http::AppError;
use crate::startup::AppState;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Ingested,
    Updated,
    Unchanged,
    /// Stored with a `parse_error` (wrong password, corrupt file...).
    Failed,
    /// Marked unavailable: the file left the folder.
    Removed,
    /// Not a candidate (directory, symbolic link, too large, bad name); logged, not stored.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The file name with any password replaced by `***`.
    pub file: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub ingested: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub removed: usize,
    pub skipped: usize,
    pub items: Vec<Item>,
}

impl Report {
    fn new(dry_run: bool, items: Vec<Item>) -> Self {
        let count = |a: Action| items.iter().filter(|i| i.action == a).count();
        Self {
            dry_run,
            ingested: count(Action::Ingested),
            updated: count(Action::Updated),
            unchanged: count(Action::Unchanged),
            failed: count(Action::Failed),
            removed: count(Action::Removed),
            skipped: count(Action::Skipped),
            items,
        }
    }
}

/// The seed's matching key: SHA-1 of the lower-cased path with `\` as `/` (drive letters and
/// UNC paths normalise the same way).
pub fn path_key(path: &str) -> String {
    let normalised = path.replace('\\', "/").to_lowercase();
    hex::encode(Sha1::digest(normalised.as_bytes()))
}

fn is_certificate_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    lower.ends_with(".pfx") || lower.ends_with(".p12")
}

fn item(file: &str, action: Action, detail: Option<String>) -> Item {
    Item {
        file: file.to_owned(),
        action,
        detail,
    }
}

/// Scans the configured folder (`certs_root`): ingests what changed and, on a full scan
/// (`limit == 0`), marks rows whose file left the folder as unavailable.
pub async fn scan(state: &AppState, dry_run: bool, limit: usize) -> Result<Report, AppError> {
    let root = state
        .settings
        .certs_root
        .clone()
        .ok_or_else(|| AppError::Validation("certs_root is not configured".into()))?;
    let mut entries = tokio::fs::read_dir(&root)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot read the certificates folder: {e}")))?;
    let mut paths = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot read the certificates folder: {e}")))?
    {
        paths.push(entry.path());
    }
    paths.sort();
    let mut items = Vec::new();
    let mut present = HashSet::new();
    let mut considered = 0;
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            tracing::warn!("certificates folder: skipping a file whose name is not valid UTF-8");
            items.push(item(
                "<invalid UTF-8 name>",
                Action::Skipped,
                Some("file name is not valid UTF-8".into()),
            ));
            continue;
        };
        if !is_certificate_name(name) {
            continue;
        }
        if limit > 0 && considered >= limit {
            break;
        }
        considered += 1;
        present.insert(path_key(&path.to_string_lossy()));
        items.push(ingest_path(state, &path, dry_run).await?);
    }
    if limit == 0 {
        items.extend(mark_missing(state, &present, dry_run).await?);
    }
    Ok(Report::new(dry_run, items))
}

/// Ingests one file (also used by the watcher).
pub async fn ingest_path(state: &AppState, path: &Path, dry_run: bool) -> Result<Item, AppError> {
    let raw_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let parsed_name = file_name::parse(raw_name);
    let shown = parsed_name.redacted.clone();
    let skip = |why: String| {
        tracing::info!(file = %shown, reason = %why, "certificate file skipped");
        Ok(item(&shown, Action::Skipped, Some(why)))
    };
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(m) => m,
        Err(e) => return skip(format!("cannot read: {e}")),
    };
    if meta.file_type().is_symlink() {
        return skip("symbolic link".into());
    }
    if !meta.is_file() {
        return skip("not a regular file".into());
    }
    if meta.len() > state.settings.max_pfx_bytes {
        return skip(format!(
            "larger than max_pfx_bytes ({} bytes)",
            state.settings.max_pfx_bytes
        ));
    }
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return skip(format!("cannot read: {e}")),
    };
    let file_sha256 = hex::encode(Sha256::digest(&bytes));
    let key = path_key(&path.to_string_lossy());
    let org = OrgId(state.settings.org_id);
    let existing = Certificates::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::SourcePathHash.eq(key.as_str()))
        .one(&state.db)
        .await?;
    if let Some(row) = &existing
        && row.file_sha256.as_deref() == Some(file_sha256.as_str())
        && row.is_available
    {
        return Ok(item(&shown, Action::Unchanged, None));
    }

    // Candidates: a password an admin typed for this file, the file name's, the empty one.
    let mut candidates: Vec<String> = Vec::new();
    if let Some(sealed) = existing.as_ref().and_then(|r| r.password_sealed.as_ref()) {
        let context = format!(
            "certificates.password:{}",
            existing.as_ref().map(|r| r.id).unwrap_or_default()
        );
        if let Ok(pw) = state.master_key.open(sealed, &context) {
            candidates.push(String::from_utf8_lossy(&pw).into_owned());
        }
    }
    if let Some(pw) = &parsed_name.password {
        candidates.push(pw.expose().to_owned());
    }
    candidates.push(String::new());
    let opened = {
        let bytes = bytes.clone();
        let candidates = candidates.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
            pkcs12::open_with_any(&bytes, &refs).map(|(info, i)| (info, candidates[i].clone()))
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
    };
    if dry_run {
        let (action, detail) = match (&opened, &existing) {
            (Ok(_), None) => (Action::Ingested, None),
            (Ok(_), Some(_)) => (Action::Updated, None),
            (Err(e), _) => (Action::Failed, Some(e.to_string())),
        };
        return Ok(item(&shown, action, detail));
    }
    store(
        state,
        org,
        path,
        &parsed_name,
        &key,
        bytes,
        file_sha256,
        existing,
        opened,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn store(
    state: &AppState,
    org: OrgId,
    path: &Path,
    name: &FileName,
    key: &str,
    bytes: Vec<u8>,
    file_sha256: String,
    existing: Option<entity::Model>,
    opened: Result<(CertificateInfo, String), PfxError>,
) -> Result<Item, AppError> {
    let txn = crate::db::begin_write(&state.db).await?;
    // The same certificate under another name is the same row (dedup by thumbprint).
    let same_cert = match (&opened, &existing) {
        (Ok((info, _)), None) => {
            Certificates::find()
                .filter(Column::OrgId.eq(org.0))
                .filter(Column::Sha1.eq(info.sha1.as_str()))
                .one(&txn)
                .await?
        }
        _ => None,
    };
    let previous = existing.or(same_cert);
    let id = previous.as_ref().map(|r| r.id).unwrap_or_else(Uuid::new_v4);
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
        name_search: Set(Some(super::catalogue::name_search(
            &name.display,
            opened.as_ref().ok().map(|(info, _)| info),
        ))),
        source_path_sealed: Set(Some(seal("source_path", path.to_string_lossy().as_bytes()))),
        source_path_hash: Set(Some(key.to_owned())),
        file_stem: Set(Some(name.display.to_lowercase())),
        pfx_sealed: Set(Some(seal("pfx", &bytes))),
        file_sha256: Set(Some(file_sha256)),
        is_available: Set(true),
        updated_at: Set(now),
        ..Default::default()
    };
    let (action, audit_action, detail, meta) = match &opened {
        Ok((info, password)) => {
            row.password_sealed = Set(Some(seal("password", password.as_bytes())));
            set_metadata(&mut row, info);
            let meta =
                json!({"file": name.redacted, "sha1": info.sha1, "not_after": info.not_after});
            if previous.is_some() {
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
    if previous.is_some() {
        Certificates::update(row).exec(&txn).await?;
    } else {
        row.created_at = Set(now);
        row.superseded_by = Set(None);
        row.expiry_alert_days = Set(None);
        Certificates::insert(row)
            .exec_without_returning(&txn)
            .await?;
    }
    audit::append(
        &txn,
        Entry::new(org, audit_action, Actor::System)
            .entity("certificate", id)
            .meta(meta),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(file = %name.redacted, action = ?action, "certificate file processed");
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

/// Rows whose file is no longer in the folder become unavailable (their jobs and audit stay).
async fn mark_missing(
    state: &AppState,
    present: &HashSet<String>,
    dry_run: bool,
) -> Result<Vec<Item>, AppError> {
    let org = OrgId(state.settings.org_id);
    let rows = Certificates::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::IsAvailable.eq(true))
        .all(&state.db)
        .await?;
    let mut items = Vec::new();
    for row in rows {
        if row
            .source_path_hash
            .as_ref()
            .is_none_or(|h| present.contains(h))
        {
            continue;
        }
        items.push(item(&row.name, Action::Removed, None));
        if dry_run {
            continue;
        }
        let txn = crate::db::begin_write(&state.db).await?;
        Certificates::update(entity::ActiveModel {
            id: Set(row.id),
            is_available: Set(false),
            updated_at: Set(Utc::now()),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        audit::append(
            &txn,
            Entry::new(org, AuditAction::CertRemovedFromSource, Actor::System)
                .entity("certificate", row.id)
                .meta(json!({"name": row.name, "sha1": row.sha1})),
        )
        .await?;
        txn.commit().await?;
    }
    Ok(items)
}
