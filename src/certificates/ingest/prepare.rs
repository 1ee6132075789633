//! One file read and opened with its candidate passwords (the name's, a typed one), ready
//! to store; an unchanged file is skipped before it is parsed.

use sha2::{Digest, Sha256};

use super::super::pkcs12::{self, CertificateInfo, PfxError};
use super::report::{Action, Item, item};
use super::rows::Known;
use super::source::{SourceFile, read_certificate_file};
use crate::crypto::SecretString;
use crate::error::AppError;
use crate::state::AppState;

/// A file read and parsed, ready to be stored.
pub(super) struct Parsed {
    pub(super) file: SourceFile,
    pub(super) bytes: Vec<u8>,
    pub(super) sha256: String,
    pub(super) known: bool,
    pub(super) opened: Result<(CertificateInfo, SecretString), PfxError>,
}

pub(super) enum Prepared {
    /// Nothing to store (skipped or unchanged).
    Done(Item),
    Parsed(Box<Parsed>),
}

pub(super) fn dry_run_item(p: &Parsed) -> Item {
    let (action, detail) = match (&p.opened, p.known) {
        (Ok(_), false) => (Action::Ingested, None),
        (Ok(_), true) => (Action::Updated, None),
        (Err(e), _) => (Action::Failed, Some(e.to_string())),
    };
    item(&p.file.name.redacted, action, detail)
}

/// Reads one file and, unless it is unchanged, opens it with the candidate passwords.
pub(super) async fn prepare(
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

    // Candidates: a password typed with the upload, one an admin typed for this file, the file
    // name's, the empty one.
    let mut candidates: Vec<SecretString> = file.typed_password.iter().cloned().collect();
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
