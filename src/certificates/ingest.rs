//! Ingest: the office's folder of `.pfx`/`.p12` files becomes sealed catalogue rows. Only files
//! directly in the folder count; the raw path and the file name hold passwords, so they are
//! sealed (with a hash of the normalised path for matching) and only redacted forms are logged.
//!
//! Files are parsed in parallel (PKCS#12 key derivation is the cost) and committed in batches,
//! each batch one transaction with its audit rows.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::Utc;
use futures_util::StreamExt;
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseTransaction, FromQueryResult, QuerySelect};
use serde::Serialize;
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::entity::{self, Column, Entity as Certificates};
use super::file_name::{self, FileName};
use super::pkcs12::{self, CertKind, CertificateInfo, PfxError};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::SecretString;
use crate::domain::OrgId;
use crate::error::AppError;
use crate::state::AppState;

/// Files committed per transaction: large enough to amortise the commit (an fsync on SQLite),
/// small enough to keep memory flat and a failure local.
const BATCH: usize = 64;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Ingested,
    Updated,
    Unchanged,
    /// Stored with a `parse_error` (wrong password, corrupt file...), or refused while the
    /// last good copy is kept.
    Failed,
    /// Marked unavailable: the file left the folder.
    Removed,
    /// Not a candidate (directory, symbolic link, too large, bad name); logged, not stored.
    Skipped,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Item {
    /// The file name with any password replaced by `***`.
    pub file: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn item(file: &str, action: Action, detail: Option<String>) -> Item {
    Item {
        file: file.to_owned(),
        action,
        detail,
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

/// The seed's matching key for a source path: SHA-1 (hex) of the path lower-cased with `\` as
/// `/`, so `G:\Certs\X.pfx` and `g:/certs/x.pfx` match. A UNC path and a drive letter for the
/// same share still differ; the file-stem fallback of [`remove_file`] covers that.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathKey(String);

impl PathKey {
    pub fn of(path: &Path) -> Self {
        Self::of_str(&path.to_string_lossy())
    }

    pub fn of_str(path: &str) -> Self {
        let normalised = path.replace('\\', "/").to_lowercase();
        Self(hex::encode(Sha1::digest(normalised.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a file name is a certificate the folder may hold (`.pfx`/`.p12`, any case).
pub fn is_certificate_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    lower.ends_with(".pfx") || lower.ends_with(".p12")
}

/// A file of the folder with its name understood.
struct SourceFile {
    path: PathBuf,
    name: FileName,
    key: PathKey,
}

impl SourceFile {
    /// `Err` (a skip) when the name is not UTF-8: it could not be shown or matched reliably.
    fn new(path: PathBuf) -> Result<Self, Item> {
        let Some(raw) = path.file_name().and_then(|n| n.to_str()) else {
            tracing::warn!("certificates folder: skipping a file whose name is not valid UTF-8");
            return Err(item(
                "<invalid UTF-8 name>",
                Action::Skipped,
                Some("file name is not valid UTF-8".into()),
            ));
        };
        Ok(Self {
            name: file_name::parse(raw),
            key: PathKey::of(&path),
            path,
        })
    }
}

/// What the catalogue already holds for a path: enough to skip unchanged files and to retry
/// a password an admin typed, without loading any sealed file.
#[derive(Debug, Clone, FromQueryResult)]
struct Known {
    id: Uuid,
    source_path_hash: Option<String>,
    file_sha256: Option<String>,
    is_available: bool,
    password_sealed: Option<Vec<u8>>,
}

async fn known_paths(
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
struct Listed {
    id: Uuid,
    name: String,
    sha1: Option<String>,
    source_path_hash: Option<String>,
    source_path_sealed: Option<Vec<u8>>,
    file_sha256: Option<String>,
    is_available: bool,
    cert_kind: Option<String>,
    cnpj: Option<String>,
    cpf: Option<String>,
}

/// Rows matching `filter`, as [`Listed`].
async fn listed(
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

/// A file read and parsed, ready to be stored.
struct Parsed {
    file: SourceFile,
    bytes: Vec<u8>,
    sha256: String,
    known: bool,
    opened: Result<(CertificateInfo, SecretString), PfxError>,
}

enum Prepared {
    /// Nothing to store (skipped or unchanged).
    Done(Item),
    Parsed(Box<Parsed>),
}

fn root(state: &AppState) -> Result<PathBuf, AppError> {
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
    let file = match SourceFile::new(path.to_owned()) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let org = OrgId(state.settings.org_id);
    let known = known_paths(&state.db, org, Some(&file.key)).await?;
    let mut items = process(state, org, vec![file], &known, false).await?;
    Ok(items
        .pop()
        .unwrap_or_else(|| item("", Action::Skipped, None)))
}

/// Reads, parses (in parallel) and stores (in batches) `files`.
async fn process(
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

fn dry_run_item(p: &Parsed) -> Item {
    let (action, detail) = match (&p.opened, p.known) {
        (Ok(_), false) => (Action::Ingested, None),
        (Ok(_), true) => (Action::Updated, None),
        (Err(e), _) => (Action::Failed, Some(e.to_string())),
    };
    item(&p.file.name.redacted, action, detail)
}

/// Why a file in the folder was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadRefusal {
    #[error("symbolic link")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than max_pfx_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("cannot read: {0}")]
    Io(std::io::ErrorKind),
}

/// Reads a certificate file safely: the path is opened without following a symbolic link and
/// without blocking (a FIFO), the *opened* handle must be a regular file, and at most
/// `max + 1` bytes are read, so a file swapped after the folder scan (a link to `/dev/zero`,
/// a pipe, a file still growing) cannot make the worker read forever.
pub fn read_certificate_file(path: &Path, max: u64) -> Result<Vec<u8>, ReadRefusal> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadRefusal::Symlink),
        Err(e) => return Err(ReadRefusal::Io(e.kind())),
    };
    let meta = file.metadata().map_err(|e| ReadRefusal::Io(e.kind()))?;
    if !meta.is_file() {
        return Err(ReadRefusal::NotRegular);
    }
    if meta.len() > max {
        return Err(ReadRefusal::TooLarge(max));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadRefusal::Io(e.kind()))?;
    // It may have grown between the check and the read (a copy in progress).
    if bytes.len() as u64 > max {
        return Err(ReadRefusal::TooLarge(max));
    }
    Ok(bytes)
}

/// Reads one file and, unless it is unchanged, opens it with the candidate passwords.
async fn prepare(
    state: &AppState,
    file: SourceFile,
    known: Option<&Known>,
) -> Result<Prepared, AppError> {
    let shown = file.name.redacted.clone();
    let skip = |why: String| {
        tracing::info!(file = %shown, reason = %why, "certificate file skipped");
        Ok(Prepared::Done(item(&shown, Action::Skipped, Some(why))))
    };
    let max = state.settings.max_pfx_bytes;
    let path = file.path.clone();
    let read = tokio::task::spawn_blocking(move || read_certificate_file(&path, max))
        .await
        .map_err(|e| AppError::Internal(format!("reading a certificate file: {e}")))?;
    let bytes = match read {
        Ok(b) => b,
        Err(refusal) => return skip(refusal.to_string()),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(k) = known
        && k.is_available
        && k.file_sha256.as_deref() == Some(sha256.as_str())
    {
        return Ok(Prepared::Done(item(&shown, Action::Unchanged, None)));
    }

    // Candidates: a password an admin typed for this file, the file name's, the empty one.
    let mut candidates: Vec<SecretString> = Vec::new();
    if let Some(k) = known
        && let Some(sealed) = &k.password_sealed
        && let Ok(pw) = state
            .master_key
            .open(sealed, &format!("certificates.password:{}", k.id))
    {
        candidates.push(SecretString::new(String::from_utf8_lossy(&pw).into_owned()));
    }
    if let Some(pw) = &file.name.password {
        candidates.push(pw.clone());
    }
    candidates.push(SecretString::new(String::new()));
    let (bytes, opened) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = candidates.iter().map(SecretString::expose).collect();
        let opened =
            pkcs12::open_with_any(&bytes, &refs).map(|(info, i)| (info, candidates[i].clone()));
        (bytes, opened)
    })
    .await
    .map_err(|e| AppError::Internal(format!("certificate parser stopped: {e}")))?;
    Ok(Prepared::Parsed(Box::new(Parsed {
        file,
        bytes,
        sha256,
        known: known.is_some(),
        opened,
    })))
}

/// The number a renewal shares with the certificate it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Company(String),
    Person(String),
}

impl Holder {
    fn of(kind: Option<&str>, cnpj: Option<&str>, cpf: Option<&str>) -> Option<Self> {
        match kind {
            Some(k) if k == CertKind::ECnpj.as_str() => cnpj.map(|c| Self::Company(c.to_owned())),
            Some(k) if k == CertKind::ECpf.as_str() => cpf.map(|c| Self::Person(c.to_owned())),
            _ => None,
        }
    }

    fn of_info(info: &CertificateInfo) -> Option<Self> {
        Self::of(
            Some(info.kind.as_str()),
            info.cnpj.as_ref().map(|c| c.as_str()),
            info.cpf.as_ref().map(|c| c.as_str()),
        )
    }

    fn of_row(row: &Listed) -> Option<Self> {
        Self::of(
            row.cert_kind.as_deref(),
            row.cnpj.as_deref(),
            row.cpf.as_deref(),
        )
    }
}

/// Stores a batch in one transaction, audit rows included.
async fn store_batch(
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
async fn lock_catalogue(txn: &DatabaseTransaction, org: OrgId) -> Result<(), DbErr> {
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
struct Lookup {
    by_path: HashMap<String, Listed>,
    by_sha1: HashMap<String, Uuid>,
    by_serial: HashMap<(String, String), Uuid>,
}

impl Lookup {
    async fn load(txn: &DatabaseTransaction, org: OrgId, batch: &[Parsed]) -> Result<Self, DbErr> {
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

    fn remember(&mut self, id: Uuid, sha1: Option<String>, serial: Option<(String, String)>) {
        if let Some(sha1) = sha1 {
            self.by_sha1.entry(sha1).or_insert(id);
        }
        if let Some(key) = serial {
            self.by_serial.entry(key).or_insert(id);
        }
    }

    /// The row already holding this certificate: same thumbprint, else same serial and issuer.
    fn certificate(&self, info: &CertificateInfo) -> Option<Uuid> {
        self.by_sha1.get(&info.sha1).copied().or_else(|| {
            self.by_serial
                .get(&(info.serial.clone(), info.issuer.clone()))
                .copied()
        })
    }
}

async fn store_one(
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
        name_search: Set(Some(super::catalogue::name_search(
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
async fn detach_row(
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

/// Marks a row unavailable because its file left the folder.
async fn mark_unavailable(
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
async fn refresh_supersession(
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

/// Rows whose file is no longer in the folder become unavailable (their jobs and audit stay).
async fn mark_missing(
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
async fn own_file_exists(state: &AppState, row: &Listed) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_swapped_for_a_link_a_pipe_or_a_big_file_is_refused_without_reading_forever() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pfx");
        std::fs::write(&good, b"0123456789").unwrap();
        assert_eq!(read_certificate_file(&good, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_certificate_file(&good, 9),
            Err(ReadRefusal::TooLarge(9))
        ));

        let zero = dir.path().join("zero.pfx");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_certificate_file(&zero, 1_000_000),
            Err(ReadRefusal::Symlink)
        ));
        // The device itself, reached without a link: not a regular file, never read.
        assert!(matches!(
            read_certificate_file(Path::new("/dev/zero"), 1_000_000),
            Err(ReadRefusal::NotRegular)
        ));

        let fifo = dir.path().join("fifo.pfx");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang here forever.
        assert!(matches!(
            read_certificate_file(&fifo, 1_000_000),
            Err(ReadRefusal::NotRegular)
        ));
    }

    #[test]
    fn windows_paths_normalise_like_the_seed() {
        assert_eq!(
            PathKey::of_str(r"C:\Certs\EMPRESA X Senha 1.pfx"),
            PathKey::of_str("c:/certs/empresa x senha 1.PFX")
        );
        assert_eq!(
            PathKey::of_str(r"\\servidor\share\certs\a.pfx"),
            PathKey::of_str("//SERVIDOR/share/certs/A.pfx")
        );
        assert_ne!(
            PathKey::of_str(r"C:\certs\a.pfx"),
            PathKey::of_str(r"C:\certs\b.pfx")
        );
        // The seed's key: sha1 of the lower-cased path with forward slashes.
        assert_eq!(
            PathKey::of_str(r"C:\certs\teste.pfx").as_str(),
            hex::encode(Sha1::digest(b"c:/certs/teste.pfx"))
        );
    }

    #[test]
    fn certificate_names() {
        assert!(is_certificate_name("a.pfx"));
        assert!(is_certificate_name("A Senha 1.PFX"));
        assert!(is_certificate_name("b.P12"));
        assert!(!is_certificate_name("notas.txt"));
        assert!(!is_certificate_name("a.pfx.tmp"));
    }
}
