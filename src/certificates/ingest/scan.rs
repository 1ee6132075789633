//! The scan of the whole folder, and one file's ingest (the watcher's job): read and parse
//! in parallel, store in batches.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sea_orm::entity::prelude::*;

use super::prepare::{Prepared, dry_run_item, prepare};
use super::removal::mark_missing;
use super::report::{Action, Item, Report, item};
use super::rows::{Known, known_paths};
use super::source::{PathKey, SourceFile, is_certificate_name};
use super::store::{BATCH, store_batch};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::state::AppState;

pub(super) fn root(state: &AppState) -> Result<PathBuf, AppError> {
    state
        .settings
        .certs_root
        .clone()
        .ok_or_else(|| AppError::Validation("certs_root is not configured".into()))
}

/// Scans the configured folder (`certs_root`): ingests what changed and, on a full scan
/// (`limit == 0`), marks rows whose file left the folder as unavailable.
pub async fn scan(state: &AppState, dry_run: bool, limit: usize) -> Result<Report, AppError> {
    let root = root(state)?;
    let unreadable = |e: std::io::Error| {
        AppError::Unavailable(format!("cannot read the certificates folder: {e}"))
    };
    let mut entries = tokio::fs::read_dir(&root).await.map_err(unreadable)?;
    let mut paths = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
        paths.push(entry.path());
    }
    paths.sort();
    let mut items = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        // Other files of the folder are none of ours: not even parsed or reported.
        if !is_certificate_name(&path.to_string_lossy()) {
            continue;
        }
        let file = match SourceFile::new(path) {
            Ok(f) => f,
            Err(skip) => {
                items.push(skip);
                continue;
            }
        };
        if limit > 0 && files.len() >= limit {
            break;
        }
        files.push(file);
    }
    let org = OrgId(state.settings.org_id);
    let present: HashSet<PathKey> = files.iter().map(|f| f.key.clone()).collect();
    let known = known_paths(&state.db, org, None).await?;
    items.extend(process(state, org, files, &known, dry_run).await?);
    if limit == 0 {
        items.extend(mark_missing(state, org, &present, dry_run).await?);
    }
    Ok(Report::new(dry_run, items))
}

/// Ingests one file of the folder (the watcher's job).
pub async fn ingest_file(state: &AppState, path: &Path) -> Result<Item, AppError> {
    ingest_file_with(state, path, None).await
}

/// [`ingest_file`], trying `typed_password` (an upload's) first: one ingest, one audit row.
pub async fn ingest_file_with(
    state: &AppState,
    path: &Path,
    typed_password: Option<crate::crypto::SecretString>,
) -> Result<Item, AppError> {
    let mut file = match SourceFile::new(path.to_owned()) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    file.typed_password = typed_password;
    let org = OrgId(state.settings.org_id);
    let known = known_paths(&state.db, org, Some(&file.key)).await?;
    let mut items = process(state, org, vec![file], &known, false).await?;
    Ok(items
        .pop()
        .unwrap_or_else(|| item("", Action::Skipped, None)))
}

/// Reads, parses (in parallel) and stores (in batches) `files`.
pub(super) async fn process(
    state: &AppState,
    org: OrgId,
    files: Vec<SourceFile>,
    known: &HashMap<String, Known>,
    dry_run: bool,
) -> Result<Vec<Item>, AppError> {
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    // While a large scan fills the table PostgreSQL's statistics go stale, and with a stale
    // "tiny table" it looks rows up by scanning them all: refresh them as the table doubles.
    let analyse = state.settings.database.is_postgres() && files.len() > BATCH;
    let mut batches: u32 = 0;
    let mut prepared = futures_util::stream::iter(files)
        .map(|file| {
            let known = known.get(file.key.as_str());
            prepare(state, file, known)
        })
        .buffered(parallel * 2)
        .ready_chunks(BATCH);
    let mut items = Vec::new();
    while let Some(chunk) = prepared.next().await {
        let mut batch = Vec::with_capacity(chunk.len());
        for p in chunk {
            match p? {
                Prepared::Done(i) => items.push(i),
                Prepared::Parsed(p) if dry_run => items.push(dry_run_item(&p)),
                Prepared::Parsed(p) => batch.push(*p),
            }
        }
        if !batch.is_empty() {
            items.extend(store_batch(state, org, batch).await?);
            batches += 1;
            if analyse && batches.is_power_of_two() {
                state.db.execute_unprepared("ANALYZE certificates").await?;
            }
        }
    }
    Ok(items)
}

/// The scan, now, asked for by an ADMIN/DEV of the office the folder belongs to (`POST
/// /api/v1/admin/certificates/ingest-from-fs`); `dry_run` reports without writing.
pub async fn scan_now(
    state: &AppState,
    admin: &crate::identity::AuthUser,
    dry_run: bool,
    limit: usize,
) -> Result<Report, AppError> {
    admin.require_admin()?;
    if admin.org.0 != state.settings.org_id {
        return Err(AppError::Forbidden(
            "the certificates folder belongs to another office".into(),
        ));
    }
    scan(state, dry_run, limit).await
}
