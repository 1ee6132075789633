//! An admin sends certificate files from the browser or the API. The folder stays the source of
//! truth: each accepted file is written into it (atomically, never over another file) and then
//! ingested by the folder's own rules; a password typed for a file its name gave no working
//! password for is stored as [`vault::store_password`] does. Every file gets its outcome and an
//! audit entry; a typed password is never written into a file name, a log, the audit or an answer.

use std::io::Write;
use std::path::{Path, PathBuf};

use sea_orm::entity::prelude::*;
use sea_orm::{Condition, QuerySelect};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::entity::{Column, Entity as Certificates};
use super::file_name;
use super::ingest::{self, Action, PathKey, ReadRefusal};
use super::pkcs12;
use super::vault::{self, MAX_PASSWORD_CHARS};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::SecretString;
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

/// Files one upload may carry.
pub const MAX_FILES: usize = 20;
/// Room per file for its part headers and its password part.
const PART_SLACK: u64 = 8 * 1024;
/// Room for the rest of a multipart body (the closing boundary, a stray preamble).
const BODY_SLACK: u64 = 64 * 1024;
/// Longest file name most file systems take, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// Temporary files start with this (a hidden name without a certificate extension, which the
/// watcher and the scan ignore); an uploaded name may not.
const TEMP_PREFIX: &str = ".certhub-upload-";

/// One file an admin sent.
pub struct UploadedFile {
    /// The name as sent, which may hold the password ("EMPRESA X Senha 1234.pfx").
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// A typed password; `None` (or empty) means the file name's.
    pub password: Option<SecretString>,
}

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new certificate in the catalogue.
    Ingested,
    /// An existing row now holds this file (or got its password).
    Updated,
    /// The folder already held these exact bytes under this name.
    Unchanged,
    /// The file was read but is not a usable certificate (wrong password, corrupt...): nothing
    /// of it is kept.
    Failed,
    /// Not accepted at all (name, size, duplicate, another file under the same name).
    Refused,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UploadResult {
    /// The file name with any password replaced by `***`.
    pub file: String,
    pub outcome: Outcome,
    /// The certificate the file became; for a refused duplicate, the one already holding it.
    pub certificate_id: Option<Uuid>,
    /// Why, for a failed or refused file.
    pub detail: Option<String>,
}

impl UploadResult {
    fn new(
        file: &str,
        outcome: Outcome,
        certificate_id: Option<Uuid>,
        detail: Option<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            outcome,
            certificate_id,
            detail,
        }
    }
}

/// The largest multipart body an upload may have: [`MAX_FILES`] files of `max_pfx_bytes` each,
/// with their headers and passwords.
pub fn request_limit(max_pfx_bytes: u64) -> u64 {
    MAX_FILES as u64 * (max_pfx_bytes + PART_SLACK) + BODY_SLACK
}

/// Whether `admin` may send files to the folder at all, and where it is: checked before any
/// body is read.
pub fn folder_for(state: &AppState, admin: &AuthUser) -> Result<PathBuf, AppError> {
    if !admin.is_admin() {
        return Err(AppError::Forbidden("requires the ADMIN or DEV role".into()));
    }
    if admin.org.0 != state.settings.org_id {
        return Err(AppError::Forbidden(
            "the certificates folder belongs to another office".into(),
        ));
    }
    state
        .settings
        .certs_root
        .clone()
        .ok_or_else(|| AppError::Validation("certs_root is not configured".into()))
}

/// Writes each file into the office's folder and ingests it; one result per file, in order.
/// A bad file is a result, not an error: `Err` is for the request (role, too many files) or
/// the database.
pub async fn upload(
    state: &AppState,
    admin: &AuthUser,
    files: Vec<UploadedFile>,
) -> Result<Vec<UploadResult>, AppError> {
    let root = folder_for(state, admin)?;
    if files.len() > MAX_FILES {
        return Err(too_many_files());
    }
    let mut results = Vec::with_capacity(files.len());
    for file in files {
        let result = upload_one(state, admin, &root, file).await?;
        let mut entry = Entry::new(
            admin.org,
            AuditAction::CertUploaded,
            Actor::User(admin.user.id),
        )
        .meta(json!({"file": result.file, "outcome": result.outcome, "detail": result.detail}))
        .ip(admin.ip.clone());
        if let Some(id) = result.certificate_id {
            entry = entry.entity("certificate", id);
        }
        audit::record(&state.db, entry).await?;
        tracing::info!(
            file = %result.file,
            outcome = ?result.outcome,
            detail = result.detail.as_deref().unwrap_or(""),
            "certificate file uploaded"
        );
        results.push(result);
    }
    Ok(results)
}

pub fn too_many_files() -> AppError {
    AppError::Validation(format!("at most {MAX_FILES} files per upload"))
}

/// The name as results and logs show it: password redacted, no control characters, bounded.
fn shown_name(raw: &str) -> String {
    file_name::parse(raw)
        .redacted
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .take(MAX_NAME_BYTES)
        .collect()
}

/// Why a name cannot be a file of the folder: it must be a plain `.pfx`/`.p12` name.
fn refuse_name(name: &str) -> Option<String> {
    let why = if name.trim().is_empty() {
        "the file has no name"
    } else if name.len() > MAX_NAME_BYTES {
        "the file name is longer than 255 bytes"
    } else if name.contains(['/', '\\']) {
        "the file name must be a plain name, without / or \\"
    } else if name.contains("..") {
        "the file name must not contain \"..\""
    } else if name.chars().any(char::is_control) {
        "the file name holds control characters"
    } else if name.starts_with('.') {
        "the file name must not start with \".\""
    } else if !ingest::is_certificate_name(name) {
        "only .pfx and .p12 files are accepted"
    } else {
        return None;
    };
    Some(why.to_owned())
}

/// The id of the row at `key`, and whether it holds an unreadable file.
async fn row_at(state: &AppState, key: &PathKey) -> Result<Option<(Uuid, bool)>, AppError> {
    let row: Option<(Uuid, Option<String>)> = Certificates::find()
        .select_only()
        .columns([Column::Id, Column::ParseError])
        .filter(Column::OrgId.eq(state.settings.org_id))
        .filter(Column::SourcePathHash.eq(key.as_str()))
        .into_tuple()
        .one(&state.db)
        .await?;
    Ok(row.map(|(id, error)| (id, error.is_some())))
}

async fn upload_one(
    state: &AppState,
    admin: &AuthUser,
    root: &Path,
    file: UploadedFile,
) -> Result<UploadResult, AppError> {
    let UploadedFile {
        file_name,
        bytes,
        password,
    } = file;
    let shown = shown_name(&file_name);
    let refused = |why: String| -> Result<UploadResult, AppError> {
        Ok(UploadResult::new(&shown, Outcome::Refused, None, Some(why)))
    };
    let failed = |why: String| -> Result<UploadResult, AppError> {
        Ok(UploadResult::new(&shown, Outcome::Failed, None, Some(why)))
    };
    if let Some(why) = refuse_name(&file_name) {
        return refused(why);
    }
    let max = state.settings.max_pfx_bytes;
    if bytes.len() as u64 > max {
        return refused(format!("larger than max_pfx_bytes ({max} bytes)"));
    }
    let password = password.filter(|p| !p.expose().is_empty());
    if password
        .as_ref()
        .is_some_and(|p| p.expose().chars().count() > MAX_PASSWORD_CHARS)
    {
        return refused(format!("password: at most {MAX_PASSWORD_CHARS} characters"));
    }

    let org = OrgId(state.settings.org_id);
    let path = root.join(&file_name);
    let key = PathKey::of(&path);

    // Opened before anything is written: a file no password opens is never half-stored. The
    // folder's candidates, the typed password first: one stored for this name, the name's.
    let mut candidates: Vec<SecretString> = password.iter().cloned().collect();
    candidates.extend(stored_password(state, &key).await?);
    candidates.extend(file_name::parse(&file_name).password);
    candidates.push(SecretString::new(String::new()));
    let (bytes, opened) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = candidates.iter().map(SecretString::expose).collect();
        let opened = pkcs12::open_with_any(&bytes, &refs).map(|(info, _)| info);
        (bytes, opened)
    })
    .await
    .map_err(|e| AppError::Internal(format!("certificate parser stopped: {e}")))?;
    let info = match opened {
        Ok(info) => info,
        Err(e) => return failed(e.to_string()),
    };

    let sha256 = hex::encode(Sha256::digest(&bytes));
    let written = match same_bytes_at(&path, max, &sha256).await? {
        Some(true) => false,
        Some(false) => {
            return refused(
                "the folder already holds a different file with this name; rename the file or remove the old one first"
                    .into(),
            );
        }
        None => {
            // The catalogue matches paths without letter case (as the seed did): "a.pfx" beside
            // "A.pfx" would be one row for two files.
            match case_twin(root, &file_name).await? {
                Ok(None) => {}
                Ok(Some(twin)) => {
                    return refused(format!(
                        "the folder already holds \"{}\", a name that differs only in letter case",
                        shown_name(&twin)
                    ));
                }
                Err(e) => {
                    return failed(format!("cannot read the certificates folder: {}", e.kind()));
                }
            }
            // Another file holding the same certificate would make the two files fight over
            // one catalogue row.
            if let Some((id, name)) = Certificates::find()
                .select_only()
                .columns([Column::Id, Column::Name])
                .filter(Column::OrgId.eq(org.0))
                .filter(Column::Sha1.eq(info.sha1.as_str()))
                .filter(Column::IsAvailable.eq(true))
                .filter(
                    Condition::any()
                        .add(Column::SourcePathHash.ne(key.as_str()))
                        .add(Column::SourcePathHash.is_null()),
                )
                .into_tuple::<(Uuid, String)>()
                .one(&state.db)
                .await?
            {
                return Ok(UploadResult::new(
                    &shown,
                    Outcome::Refused,
                    Some(id),
                    Some(format!(
                        "duplicate: the vault already holds this certificate (thumbprint {}) as \"{name}\"",
                        info.sha1
                    )),
                ));
            }
            let placed = {
                let (root, path) = (root.to_owned(), path.clone());
                tokio::task::spawn_blocking(move || place(&root, &path, &bytes))
                    .await
                    .map_err(|e| AppError::Internal(format!("writing an uploaded file: {e}")))?
            };
            match placed {
                Ok(true) => true,
                Ok(false) => {
                    return refused(
                        "a file with this name arrived in the folder meanwhile; send it again"
                            .into(),
                    );
                }
                Err(e) => {
                    tracing::error!(file = %shown, error = %e.kind(), "cannot write an uploaded certificate into the folder");
                    return failed(format!(
                        "cannot write into the certificates folder: {}",
                        e.kind()
                    ));
                }
            }
        }
    };

    let existed = row_at(state, &key).await?.is_some();
    let mut result = match ingest_retrying(state, &path, password.as_ref()).await {
        Ok(item) => {
            let outcome = match item.action {
                Action::Ingested => Outcome::Ingested,
                Action::Updated => Outcome::Updated,
                Action::Unchanged => Outcome::Unchanged,
                Action::Failed | Action::Skipped | Action::Removed => Outcome::Failed,
            };
            UploadResult::new(&shown, outcome, None, item.detail)
        }
        Err(e) => {
            tracing::error!(file = %shown, error = %e, "ingesting an uploaded certificate failed");
            UploadResult::new(
                &shown,
                Outcome::Failed,
                None,
                Some("the file could not be stored; the server log has the reason".into()),
            )
        }
    };
    let row = row_at(state, &key).await?;
    result.certificate_id = row.map(|(id, _)| id);
    // An unchanged file that did not open before: the typed one, by the admin's own rule.
    if let (Some((id, true)), Some(password)) = (row, password) {
        match vault::store_password(state, admin, id, password).await {
            Ok(_) => {
                result.outcome = if existed {
                    Outcome::Updated
                } else {
                    Outcome::Ingested
                };
                result.detail = None;
            }
            Err(e) => {
                result.outcome = Outcome::Failed;
                result.detail = Some(match e {
                    AppError::Validation(m) | AppError::Conflict(m) => m,
                    other => {
                        tracing::error!(file = %shown, error = %other, "storing an uploaded certificate's password failed");
                        "the password could not be stored; the server log has the reason".into()
                    }
                });
            }
        }
    }
    let stored = matches!(result.outcome, Outcome::Ingested | Outcome::Updated);
    if stored && info.not_after <= chrono::Utc::now() {
        // Kept (the folder is the source of truth), but never offered as available.
        result.detail = Some(format!(
            "expired on {}: stored, but it cannot be installed",
            info.not_after.format("%Y-%m-%d")
        ));
    }
    if written && result.outcome == Outcome::Failed {
        undo(state, &path, &shown).await;
        result.certificate_id = None;
    }
    Ok(result)
}

/// The password an admin typed for the file at `key`, as the folder's ingest would try it.
async fn stored_password(
    state: &AppState,
    key: &PathKey,
) -> Result<Option<SecretString>, AppError> {
    let row: Option<(Uuid, Option<Vec<u8>>)> = Certificates::find()
        .select_only()
        .columns([Column::Id, Column::PasswordSealed])
        .filter(Column::OrgId.eq(state.settings.org_id))
        .filter(Column::SourcePathHash.eq(key.as_str()))
        .into_tuple()
        .one(&state.db)
        .await?;
    Ok(row.and_then(|(id, sealed)| {
        let plain = state
            .master_key
            .open(&sealed?, &format!("certificates.password:{id}"))
            .ok()?;
        Some(SecretString::new(
            String::from_utf8_lossy(&plain).into_owned(),
        ))
    }))
}

/// Another entry of the folder whose name is `name` in other letter case.
async fn case_twin(root: &Path, name: &str) -> Result<std::io::Result<Option<String>>, AppError> {
    let (root, name) = (root.to_owned(), name.to_lowercase());
    tokio::task::spawn_blocking(move || {
        Ok(std::fs::read_dir(&root)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|other| other.to_lowercase() == name))
    })
    .await
    .map_err(|e| AppError::Internal(format!("reading the certificates folder: {e}")))
}

/// Whether the folder holds a file at `path` with these bytes (`None`: no file there).
async fn same_bytes_at(path: &Path, max: u64, sha256: &str) -> Result<Option<bool>, AppError> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || ingest::read_certificate_file(&path, max))
        .await
        .map_err(|e| AppError::Internal(format!("reading a certificate file: {e}")))?;
    Ok(match read {
        Ok(bytes) => Some(hex::encode(Sha256::digest(&bytes)) == sha256),
        Err(ReadRefusal::Io(std::io::ErrorKind::NotFound)) => None,
        // A link, a directory, a larger file: something else is there.
        Err(_) => Some(false),
    })
}

/// The folder's ingest of one file, once more if it fails: the watcher may be storing the
/// same new file at the same moment, and the second try then finds it stored.
/// The typed password is tried first, so a file it opens is stored right the first time (no
/// `CERT_PARSE_FAILED` before the `CERT_INGESTED`).
async fn ingest_retrying(
    state: &AppState,
    path: &Path,
    password: Option<&SecretString>,
) -> Result<ingest::Item, AppError> {
    match ingest::ingest_file_with(state, path, password.cloned()).await {
        Ok(item) => Ok(item),
        Err(first) => {
            tracing::warn!(error = %first, "ingesting an uploaded certificate: trying again");
            ingest::ingest_file_with(state, path, password.cloned()).await
        }
    }
}

/// Takes back a file this upload wrote that did not become a usable certificate: the file
/// leaves the folder, and its row (if any) becomes unavailable as for any file that left.
async fn undo(state: &AppState, path: &Path, shown: &str) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::error!(file = %shown, error = %e.kind(), "cannot remove a failed upload from the folder");
        return;
    }
    if let Err(e) = ingest::remove_file(state, path).await {
        tracing::error!(file = %shown, error = %e, "cannot mark a failed upload unavailable");
    }
}

/// Writes `bytes` at `target` in `dir` without ever showing a partial file or replacing one:
/// a temporary file the watcher ignores, flushed to disk, then linked to its name (which
/// fails if the name is taken). `Ok(false)`: the name was taken.
fn place(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let temp = dir.join(format!("{TEMP_PREFIX}{}.tmp", Uuid::new_v4().simple()));
    let placed = write_and_link(&temp, target, bytes);
    let _ = std::fs::remove_file(&temp);
    if matches!(placed, Ok(true)) {
        // The new name itself survives a crash once the folder is flushed.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    placed
}

fn write_and_link(temp: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // The file's name carries its password: only the server's account reads it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    match std::fs::hard_link(temp, target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links (some network shares): a rename after a last look,
        // which a file arriving in between could lose to.
        Err(_) => {
            if target.symlink_metadata().is_ok() {
                return Ok(false);
            }
            std::fs::rename(temp, target)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_certificate_names_are_accepted() {
        for good in [
            "EMPRESA X LTDA Senha 1234.pfx",
            "a.P12",
            "Padaria senha: 9x.PFX",
        ] {
            assert_eq!(refuse_name(good), None, "{good}");
        }
        for bad in [
            "",
            "notas.txt",
            "a.pfx.tmp",
            "../x.pfx",
            "sub/x.pfx",
            "C:\\certs\\x.pfx",
            "a..pfx",
            "x\n.pfx",
            ".certhub-upload-1.pfx",
            &format!("{}.pfx", "a".repeat(252)),
        ] {
            assert!(refuse_name(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn shown_names_hide_the_password_and_control_characters() {
        assert_eq!(
            shown_name("EMPRESA X Senha 1234.pfx"),
            "EMPRESA X Senha ***.pfx"
        );
        assert_eq!(shown_name("a\u{1b}[2J.pfx"), "a\u{FFFD}[2J.pfx");
    }

    #[test]
    fn a_placed_file_never_replaces_another() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.pfx");
        assert!(place(dir.path(), &target, b"first").unwrap());
        assert!(!place(dir.path(), &target, b"second").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
    }
}
