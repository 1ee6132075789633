//! Files that left the folder: their rows stay (with jobs and audit) but become unavailable.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseTransaction};
use serde_json::json;

use super::super::entity::{Column, Entity as Certificates};
use super::report::{Action, Item, item};
use super::rows::{Listed, listed};
use super::source::{PathKey, SourceFile};
use super::supersession::{Holder, refresh_supersession};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::state::AppState;

/// Marks a row unavailable because its file left the folder.
pub(super) async fn mark_unavailable(
    txn: &DatabaseTransaction,
    org: OrgId,
    row: &Listed,
    strategy: &str,
    audit: &mut Vec<Entry>,
) -> Result<bool, AppError> {
    // Conditional: a job that moved the row to another path (a rename) in the meantime wins.
    let still_there = match &row.source_path_hash {
        Some(h) => Column::SourcePathHash.eq(h.as_str()),
        None => Column::SourcePathHash.is_null(),
    };
    let changed = Certificates::update_many()
        .col_expr(Column::IsAvailable, Expr::value(false))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(row.id))
        .filter(Column::IsAvailable.eq(true))
        .filter(still_there)
        .exec(txn)
        .await?
        .rows_affected
        > 0;
    if changed {
        audit.push(
            Entry::new(org, AuditAction::CertRemovedFromSource, Actor::System)
                .entity("certificate", row.id)
                .meta(json!({"name": row.name, "sha1": row.sha1, "strategy": strategy})),
        );
    }
    Ok(changed)
}

/// Rows whose file is no longer in the folder become unavailable (their jobs and audit stay).
pub(super) async fn mark_missing(
    state: &AppState,
    org: OrgId,
    present: &HashSet<PathKey>,
    dry_run: bool,
) -> Result<Vec<Item>, AppError> {
    let missing: Vec<Listed> = listed(
        &state.db,
        org,
        Condition::all().add(Column::IsAvailable.eq(true)),
    )
    .await?
    .into_iter()
    .filter(|row| {
        row.source_path_hash
            .as_ref()
            .is_some_and(|h| !present.contains(&PathKey(h.clone())))
    })
    .collect();
    let items: Vec<Item> = missing
        .iter()
        .map(|row| item(&row.name, Action::Removed, None))
        .collect();
    if dry_run || missing.is_empty() {
        return Ok(items);
    }
    let txn = crate::db::begin_write(&state.db).await?;
    let mut holders = HashSet::new();
    let mut audit = Vec::with_capacity(missing.len());
    for row in &missing {
        if mark_unavailable(&txn, org, row, "full_scan", &mut audit).await? {
            holders.extend(Holder::of_row(row));
        }
    }
    audit::append_many(&txn, org, audit).await?;
    refresh_supersession(&txn, org, &holders).await?;
    txn.commit().await?;
    Ok(items)
}

/// A file left the folder (the watcher's delete job): its row becomes unavailable, found by the
/// normalised source path, else (a UNC path against a drive letter) by the file's display name,
/// never taking a certificate whose own file is still on disk.
pub async fn remove_file(state: &AppState, path: &Path) -> Result<Item, AppError> {
    let file = match SourceFile::new(path.to_owned()) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let shown = file.name.redacted.clone();
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        return Ok(item(
            &shown,
            Action::Unchanged,
            Some("the file is back in the folder".into()),
        ));
    }
    let org = OrgId(state.settings.org_id);
    let txn = crate::db::begin_write(&state.db).await?;
    let by_path = listed(
        &txn,
        org,
        Condition::all()
            .add(Column::IsAvailable.eq(true))
            .add(Column::SourcePathHash.eq(file.key.as_str())),
    )
    .await?;
    let (strategy, found) = if by_path.is_empty() {
        let by_stem = listed(
            &txn,
            org,
            Condition::all()
                .add(Column::IsAvailable.eq(true))
                .add(Column::FileStem.eq(file.name.display.to_lowercase())),
        )
        .await?;
        let mut gone = Vec::new();
        for row in by_stem {
            if !own_file_exists(state, &row).await {
                gone.push(row);
            }
        }
        ("file_stem", gone)
    } else {
        ("source_path", by_path)
    };
    let mut holders = HashSet::new();
    let mut audit = Vec::with_capacity(found.len());
    let mut removed = 0;
    for row in &found {
        if mark_unavailable(&txn, org, row, strategy, &mut audit).await? {
            removed += 1;
            holders.extend(Holder::of_row(row));
        }
    }
    audit::append_many(&txn, org, audit).await?;
    refresh_supersession(&txn, org, &holders).await?;
    txn.commit().await?;
    tracing::info!(
        file = %shown,
        strategy,
        rowcount = removed,
        found_ids_count = found.len(),
        "certificate file removed from the folder"
    );
    Ok(if removed == 0 {
        item(
            &shown,
            Action::Unchanged,
            Some("not in the catalogue".into()),
        )
    } else {
        item(&shown, Action::Removed, None)
    })
}

/// Whether the file a row was read from is still on disk.
pub(super) async fn own_file_exists(state: &AppState, row: &Listed) -> bool {
    let Some(sealed) = &row.source_path_sealed else {
        return false;
    };
    let Ok(raw) = state
        .master_key
        .open(sealed, &format!("certificates.source_path:{}", row.id))
    else {
        return false;
    };
    let path = PathBuf::from(String::from_utf8_lossy(&raw).into_owned());
    tokio::fs::symlink_metadata(path).await.is_ok()
}
