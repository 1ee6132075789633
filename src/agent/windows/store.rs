//! The CurrentUser `MY` certificate store: importing a PFX with a non-exportable, persisted key,
//! finding a certificate by thumbprint, and removing a certificate together with its key.

use std::ffi::c_void;
use std::ptr;

use chrono::{DateTime, Utc};
use windows_sys::Win32::Foundation::{ERROR_INVALID_PASSWORD, FILETIME, NTE_BAD_DATA};
use windows_sys::Win32::Security::Cryptography::{
    CERT_CONTEXT, CERT_FIND_SHA1_HASH, CERT_FRIENDLY_NAME_PROP_ID, CERT_KEY_CONTEXT_PROP_ID,
    CERT_KEY_PROV_INFO_PROP_ID, CERT_SHA1_HASH_PROP_ID, CERT_STORE_ADD_NEW, CERT_STORE_CTRL_COMMIT,
    CERT_STORE_PROV_SYSTEM_W, CERT_SYSTEM_STORE_CURRENT_USER, CRYPT_INTEGER_BLOB,
    CRYPT_KEY_PROV_INFO, CRYPT_USER_KEYSET, CertAddCertificateContextToStore, CertControlStore,
    CertDeleteCertificateFromStore, CertDuplicateCertificateContext, CertEnumCertificatesInStore,
    CertFindCertificateInStore, CertGetCertificateContextProperty, CertOpenStore,
    CertSetCertificateContextProperty, PFXImportCertStore, PFXIsPFXBlob, PKCS_7_ASN_ENCODING,
    PKCS12_NO_PERSIST_KEY, PKCS12_PREFER_CNG_KSP, X509_ASN_ENCODING,
};
use zeroize::Zeroizing;

use super::handles::{Cert, Store};
use super::keys::{self, KeyError, KeyLocation, KeyStorage};
use super::{blob_of, from_wide_ptr, last_error, wide};

const ENCODING: u32 = X509_ASN_ENCODING | PKCS_7_ASN_ENCODING;
/// What `PFXImportCertStore` leaves on a wrong password: `ERROR_INVALID_PASSWORD` (also as an
/// HRESULT), or `NTE_BAD_DATA` when a PFX without a MAC fails to decrypt.
const WRONG_PASSWORD_CODES: [u32; 3] = [ERROR_INVALID_PASSWORD, 0x8007_0056, NTE_BAD_DATA as u32];
/// `CRYPT_E_EXISTS`: `CERT_STORE_ADD_NEW` found the certificate already there.
const CRYPT_E_EXISTS: u32 = 0x8009_2005;

/// What `import_non_exportable` installed.
#[derive(Debug, Clone)]
pub struct ImportedCertificate {
    /// SHA-1 of the certificate, upper-case hex (what Windows shows).
    pub thumbprint: String,
    pub key_storage: KeyStorage,
    pub key: KeyLocation,
    pub not_after: Option<DateTime<Utc>>,
    /// The mark left on it ([`CERTHUB_MARK_PROP_ID`]): what makes it the agent's to remove.
    pub mark: String,
}

/// Where the agent leaves its mark on every certificate it imports: the certificate's
/// description (`CERT_DESCRIPTION_PROP_ID`, shown in certmgr.msc's properties), holding the
/// import's mark (`crate::agent::store::new_mark`). A certificate without it was not put
/// there by CertHub.
// why: not a property id of our own (the user range from 0x8000): Wine refuses those.
pub const CERTHUB_MARK_PROP_ID: u32 =
    windows_sys::Win32::Security::Cryptography::CERT_DESCRIPTION_PROP_ID;

/// A certificate found in CurrentUser `MY`.
#[derive(Debug, Clone)]
pub struct FoundCertificate {
    pub thumbprint: String,
    pub friendly_name: Option<String>,
    /// The certificate names a key and that key can be opened.
    pub has_private_key: bool,
    pub key: Option<KeyLocation>,
    pub not_after: Option<DateTime<Utc>>,
    /// CertHub's mark, when the agent imported it.
    pub mark: Option<String>,
}

/// What `remove_with_key` did. `Ok` always means the certificate is no longer in `MY`
/// (checked by reopening the store); `certificate_removed` says whether this call removed it
/// (false: it was already absent, which the protocol counts as removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalOutcome {
    pub certificate_removed: bool,
    /// The key was deleted and can no longer be opened.
    pub key_deleted: bool,
    /// Why the key was not deleted, when it was not (None when it was, or the certificate was
    /// absent).
    pub key_kept: Option<KeyKept>,
}

/// Why `remove_with_key` left a key in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKept {
    /// The certificate named no private key.
    NoKey,
    /// Another certificate in `MY` uses the same key; deleting it would break that one
    /// (Wine keeps every imported key in one container; on Windows each import has its own).
    SharedWithAnotherCertificate,
    /// Deleting the key failed (the Windows error code).
    DeletionFailed { code: u32 },
    /// The key was deleted but can still be opened.
    StillOpenable,
}

/// Failures of the store operations, one per protocol `error_code` (see [`StoreError::code`]).
/// Messages never contain the password or the PFX bytes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the PFX password is wrong")]
    WrongPassword,
    #[error("the PFX could not be imported: {reason} (error {code:#010x})")]
    ImportRefused { reason: &'static str, code: u32 },
    #[error("the certificate store refused to {operation} (error {code:#010x})")]
    StoreRefused { operation: &'static str, code: u32 },
    #[error("the imported private key can be exported")]
    KeyExportable,
    #[error("no certificate with that thumbprint in CurrentUser\\My")]
    NotFound,
    #[error("a certificate with that thumbprint is already in CurrentUser\\My")]
    AlreadyInstalled,
    #[error("not a SHA-1 thumbprint (40 hexadecimal digits)")]
    InvalidThumbprint,
    #[error("the certificate in CurrentUser\\My was not installed by CertHub; left in place")]
    NotInstalledByAgent,
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl StoreError {
    /// The protocol's `error_code` for an install or remove result.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::WrongPassword => "WRONG_PASSWORD",
            StoreError::ImportRefused { .. } => "IMPORT_REFUSED",
            StoreError::StoreRefused { .. } => "STORE_REFUSED",
            StoreError::KeyExportable => "KEY_EXPORTABLE",
            StoreError::NotFound => "NOT_FOUND",
            StoreError::AlreadyInstalled => "ALREADY_INSTALLED",
            StoreError::InvalidThumbprint => "INVALID_THUMBPRINT",
            StoreError::NotInstalledByAgent => "NOT_INSTALLED_BY_AGENT",
            StoreError::Key(_) => "KEY_ERROR",
        }
    }
}

/// Imports `pfx` into CurrentUser `MY` with a persisted, non-exportable key (CNG when Windows
/// accepts it, else CryptoAPI) and the given friendly name. On any failure nothing is left
/// behind: no certificate and no key. A certificate already in `MY` with the same thumbprint
/// is `AlreadyInstalled` (check first with [`find_by_thumbprint`] to decide what to do).
pub fn import_non_exportable(
    pfx: &[u8],
    password: &str,
    friendly_name: &str,
) -> Result<ImportedCertificate, StoreError> {
    import_into_my(pfx, password, friendly_name, 0, true)
}

/// The import, with extra `PFXImportCertStore` flags (tests pass `CRYPT_EXPORTABLE` as a
/// control) and whether to insist on a non-exportable key.
pub(super) fn import_into_my(
    pfx: &[u8],
    password: &str,
    friendly_name: &str,
    extra_flags: u32,
    require_non_exportable: bool,
) -> Result<ImportedCertificate, StoreError> {
    let password = Zeroizing::new(wide(password));
    let my = open_my_store()?;
    let imported = import_pfx_preferring_cng(pfx, &password, CRYPT_USER_KEYSET | extra_flags)?;
    let cert = single_certificate_with_key(&imported, &my)?;
    let key = key_location(&cert).ok_or(StoreError::ImportRefused {
        reason: "the PFX holds no private key",
        code: 0,
    })?;
    let mark = crate::agent::store::new_mark();
    let result = add_imported_to_my(&my, &cert, friendly_name, &mark, require_non_exportable);
    if result.is_err() {
        discard_key_unless_used(&my, &key);
    }
    let thumbprint = result?;
    Ok(ImportedCertificate {
        thumbprint,
        key_storage: key.storage,
        not_after: not_after(&cert),
        key,
        mark,
    })
}

/// Checks, names and adds the freshly imported certificate to `MY`; returns its thumbprint.
fn add_imported_to_my(
    my: &Store,
    cert: &Cert,
    friendly_name: &str,
    mark: &str,
    require_non_exportable: bool,
) -> Result<String, StoreError> {
    let hash = sha1_hash(cert)?;
    if find_in_store(my, &hash).is_some() {
        return Err(StoreError::AlreadyInstalled);
    }
    if require_non_exportable && !keys::context_key_refuses_export(cert)? {
        return Err(StoreError::KeyExportable);
    }
    set_friendly_name(cert, friendly_name).map_err(|code| StoreError::StoreRefused {
        operation: "set the friendly name",
        code,
    })?;
    set_mark(cert, mark).map_err(|code| StoreError::StoreRefused {
        operation: "mark the certificate as CertHub's",
        code,
    })?;
    add_to_store(my, cert).map_err(|code| match code {
        CRYPT_E_EXISTS => StoreError::AlreadyInstalled,
        code => StoreError::StoreRefused {
            operation: "add the certificate to CurrentUser\\My",
            code,
        },
    })?;
    // Adding persists at once on Windows; the commit is harmless and Wine wants it.
    commit_store(my);
    Ok(hex::encode_upper(hash))
}

/// `PFXImportCertStore` into a temporary store, asking for a CNG key first.
fn import_pfx_preferring_cng(
    pfx: &[u8],
    password: &[u16],
    flags: u32,
) -> Result<Store, StoreError> {
    if let Ok(store) = import_pfx(pfx, password, flags | PKCS12_PREFER_CNG_KSP) {
        return Ok(store);
    }
    // why: Wine refuses the CNG flags (NULL, last error 0); Windows takes them unless the key
    // cannot live in CNG, and then the CryptoAPI import below is what Windows would do anyway.
    import_pfx(pfx, password, flags).map_err(|code| import_failure(pfx, code))
}

/// One `PFXImportCertStore` call; an empty password is also tried as NULL, since PKCS#12
/// writers disagree on how an empty password is encoded.
fn import_pfx(pfx: &[u8], password: &[u16], flags: u32) -> Result<Store, u32> {
    let blob = blob_of(pfx);
    // SAFETY: the blob borrows `pfx`, the password is NUL-terminated; both outlive the call.
    let store = unsafe { PFXImportCertStore(&blob, password.as_ptr(), flags) };
    if !store.is_null() {
        return Ok(Store(store));
    }
    let code = last_error();
    if password.len() == 1 {
        // SAFETY: as above, with a NULL password.
        let store = unsafe { PFXImportCertStore(&blob, ptr::null(), flags) };
        if !store.is_null() {
            return Ok(Store(store));
        }
    }
    Err(code)
}

/// Names a failed import from Windows' error code: a wrong password when Windows says so.
fn import_failure(pfx: &[u8], code: u32) -> StoreError {
    // why: Wine leaves an unrelated code (0 or ERROR_INVALID_HANDLE) on a wrong password, and
    // its PFXVerifyPassword is a stub that always says no, so under Wine this is ImportRefused.
    if WRONG_PASSWORD_CODES.contains(&code) {
        return StoreError::WrongPassword;
    }
    StoreError::ImportRefused {
        reason: if is_pfx(pfx) {
            "Windows refused the PFX"
        } else {
            "not a PFX"
        },
        code,
    }
}

/// `PFXIsPFXBlob`: the bytes decode as PKCS#12.
fn is_pfx(pfx: &[u8]) -> bool {
    let blob = blob_of(pfx);
    // SAFETY: the blob borrows `pfx` for the call.
    unsafe { PFXIsPFXBlob(&blob) != 0 }
}

/// The one certificate of the imported PFX that has a private key; the CA certificates that
/// may come with it are neither installed nor trusted. Zero or several keys: refused, and the
/// imported keys are deleted.
fn single_certificate_with_key(imported: &Store, my: &Store) -> Result<Cert, StoreError> {
    let mut with_key: Vec<Cert> = certificates_in(imported)
        .into_iter()
        .filter(|c| key_location(c).is_some())
        .collect();
    match with_key.len() {
        1 => Ok(with_key.remove(0)),
        0 => Err(StoreError::ImportRefused {
            reason: "the PFX holds no private key",
            code: 0,
        }),
        _ => {
            for cert in &with_key {
                if let Some(key) = key_location(cert) {
                    discard_key_unless_used(my, &key);
                }
            }
            Err(StoreError::ImportRefused {
                reason: "the PFX holds more than one private key",
                code: 0,
            })
        }
    }
}

/// Deletes a key we imported, unless a certificate in `MY` uses it.
fn discard_key_unless_used(my: &Store, key: &KeyLocation) {
    // why: Wine puts every imported key in one container, so it may be another certificate's.
    if !key_in_use(my, key, None) {
        let _ = keys::delete_key(key);
    }
}

/// The SHA-1 thumbprint (upper-case hex) of the PFX's certificate with a private key, without
/// installing anything: the PFX is opened in memory and its key is not persisted. Lets the
/// agent refuse a payload whose certificate is not the job's before touching the store.
pub fn pfx_thumbprint(pfx: &[u8], password: &str) -> Result<String, StoreError> {
    let password = Zeroizing::new(wide(password));
    let opened = import_pfx(pfx, &password, PKCS12_NO_PERSIST_KEY)
        .map_err(|code| import_failure(pfx, code))?;
    let certs = certificates_in(&opened);
    let with_key: Vec<&Cert> = certs
        .iter()
        .filter(|c| {
            property(c, CERT_KEY_PROV_INFO_PROP_ID).is_some()
                || property(c, CERT_KEY_CONTEXT_PROP_ID).is_some()
        })
        .collect();
    let chosen = match with_key.as_slice() {
        [one] => Some(*one),
        _ => leaf_of(&certs),
    }
    .ok_or(StoreError::ImportRefused {
        reason: "the PFX holds no certificate",
        code: 0,
    })?;
    sha1_hash(chosen).map(hex::encode_upper)
}

/// The certificate that issued none of the others (the end entity of a chain).
fn leaf_of(certs: &[Cert]) -> Option<&Cert> {
    let name = |cert: &Cert, subject: bool| -> Vec<u8> {
        // SAFETY: a valid context always has its CERT_INFO, whose name blobs it owns.
        unsafe {
            let Some(info) = (*cert.as_ptr()).pCertInfo.as_ref() else {
                return Vec::new();
            };
            let blob = if subject { info.Subject } else { info.Issuer };
            if blob.pbData.is_null() {
                return Vec::new();
            }
            std::slice::from_raw_parts(blob.pbData, blob.cbData as usize).to_vec()
        }
    };
    certs.iter().find(|cert| {
        let subject = name(cert, true);
        !certs
            .iter()
            .any(|other| !ptr::eq(other.as_ptr(), cert.as_ptr()) && name(other, false) == subject)
    })
}

/// Deletes a key whose certificate is already gone from `MY` (a removal interrupted between
/// the two), unless a certificate in `MY` still uses it. `Ok(true)` when the key is gone.
pub fn delete_orphan_key(key: &KeyLocation) -> Result<bool, StoreError> {
    let my = open_my_store()?;
    if key_in_use(&my, key, None) {
        return Ok(false);
    }
    if keys::key_exists(key) {
        keys::delete_key(key)?;
    }
    Ok(!keys::key_exists(key))
}

/// The private key of the certificate with `thumbprint` in CurrentUser `MY` refuses to be
/// exported (true is what CertHub wants).
pub fn key_refuses_export(thumbprint: &str) -> Result<bool, StoreError> {
    let hash = parse_thumbprint(thumbprint)?;
    let my = open_my_store()?;
    let cert = find_in_store(&my, &hash).ok_or(StoreError::NotFound)?;
    Ok(keys::context_key_refuses_export(&cert)?)
}

/// Finds a certificate in CurrentUser `MY` by its SHA-1 thumbprint (hex, any case).
pub fn find_by_thumbprint(thumbprint: &str) -> Result<Option<FoundCertificate>, StoreError> {
    let hash = parse_thumbprint(thumbprint)?;
    let my = open_my_store()?;
    Ok(find_in_store(&my, &hash).map(|cert| describe(&cert)))
}

/// Every certificate in CurrentUser `MY` (the caller picks its own, e.g. by friendly name).
pub fn list_my_certificates() -> Result<Vec<FoundCertificate>, StoreError> {
    let my = open_my_store()?;
    Ok(certificates_in(&my).iter().map(describe).collect())
}

/// Removes the certificate with `thumbprint` from CurrentUser `MY` and deletes its private key
/// first (a key without its certificate could not be found again), then checks both are gone.
/// An absent certificate is `Ok` with `certificate_removed: false`.
pub fn remove_with_key(thumbprint: &str) -> Result<RemovalOutcome, StoreError> {
    remove_if_owned(thumbprint, |_, _| true)
}

/// [`remove_with_key`], only when `owned(mark, key)` says the certificate found is the
/// agent's (its CertHub mark, where its key is); else `NotInstalledByAgent`, nothing touched.
pub fn remove_if_owned(
    thumbprint: &str,
    owned: impl Fn(Option<&str>, Option<&KeyLocation>) -> bool,
) -> Result<RemovalOutcome, StoreError> {
    let hash = parse_thumbprint(thumbprint)?;
    let my = open_my_store()?;
    let Some(cert) = find_in_store(&my, &hash) else {
        return Ok(RemovalOutcome {
            certificate_removed: false,
            key_deleted: false,
            key_kept: None,
        });
    };
    let key = key_location(&cert);
    if !owned(mark_of(&cert).as_deref(), key.as_ref()) {
        return Err(StoreError::NotInstalledByAgent);
    }
    let key_kept = match &key {
        None => Some(KeyKept::NoKey),
        Some(k) if key_in_use(&my, k, Some(&hash)) => Some(KeyKept::SharedWithAnotherCertificate),
        Some(k) => keys::delete_key(k)
            .err()
            .map(|e| KeyKept::DeletionFailed { code: e.code }),
    };
    delete_from_store(cert).map_err(|code| StoreError::StoreRefused {
        operation: "delete the certificate",
        code,
    })?;
    // why: under Wine the deletion does not persist without an explicit commit.
    commit_store(&my);
    drop(my);

    if find_in_store(&open_my_store()?, &hash).is_some() {
        return Err(StoreError::StoreRefused {
            operation: "delete the certificate (still there when reopened)",
            code: 0,
        });
    }
    let key_kept = match (key_kept, &key) {
        (None, Some(k)) if keys::key_exists(k) => Some(KeyKept::StillOpenable),
        (kept, _) => kept,
    };
    Ok(RemovalOutcome {
        certificate_removed: true,
        key_deleted: key_kept.is_none(),
        key_kept,
    })
}

/// Parses a SHA-1 thumbprint (the core's rule: 40 hex digits, spaces and colons ignored)
/// into its bytes.
pub(super) fn parse_thumbprint(thumbprint: &str) -> Result<[u8; 20], StoreError> {
    let digits = crate::agent::store::parse_thumbprint(thumbprint)
        .map_err(|_| StoreError::InvalidThumbprint)?;
    let mut hash = [0u8; 20];
    hex::decode_to_slice(&digits, &mut hash).map_err(|_| StoreError::InvalidThumbprint)?;
    Ok(hash)
}

/// Opens CurrentUser `MY` (the "Personal" store certmgr.msc shows).
pub(super) fn open_my_store() -> Result<Store, StoreError> {
    let name = wide("MY");
    // SAFETY: the provider takes a NUL-terminated UTF-16 store name as its parameter.
    let store = unsafe {
        CertOpenStore(
            CERT_STORE_PROV_SYSTEM_W,
            0,
            0,
            CERT_SYSTEM_STORE_CURRENT_USER,
            name.as_ptr().cast::<c_void>(),
        )
    };
    if store.is_null() {
        return Err(StoreError::StoreRefused {
            operation: "open CurrentUser\\My",
            code: last_error(),
        });
    }
    Ok(Store(store))
}

/// `CertFindCertificateInStore` by SHA-1 hash.
pub(super) fn find_in_store(store: &Store, hash: &[u8; 20]) -> Option<Cert> {
    let blob = blob_of(hash);
    // SAFETY: the blob borrows `hash` for the call; the result is a context we now own.
    let found = unsafe {
        CertFindCertificateInStore(
            store.0,
            ENCODING,
            0,
            CERT_FIND_SHA1_HASH,
            (&blob as *const CRYPT_INTEGER_BLOB).cast::<c_void>(),
            ptr::null(),
        )
    };
    (!found.is_null()).then_some(Cert(found))
}

/// Every certificate in a store, each with its own reference.
fn certificates_in(store: &Store) -> Vec<Cert> {
    let mut all = Vec::new();
    let mut previous: *const CERT_CONTEXT = ptr::null();
    loop {
        // SAFETY: `previous` is null or the last context returned (this call frees it).
        let next = unsafe { CertEnumCertificatesInStore(store.0, previous) };
        if next.is_null() {
            return all;
        }
        // SAFETY: `next` is a valid context; the duplicate is a reference we own.
        all.push(Cert(unsafe { CertDuplicateCertificateContext(next) }));
        previous = next;
    }
}

/// Another certificate in the store (not `except`) uses this key.
fn key_in_use(store: &Store, key: &KeyLocation, except: Option<&[u8; 20]>) -> bool {
    certificates_in(store).iter().any(|cert| {
        let is_except = except.is_some_and(|h| sha1_hash(cert).is_ok_and(|c| &c == h));
        !is_except && key_location(cert).is_some_and(|k| k.same_key_as(key))
    })
}

fn describe(cert: &Cert) -> FoundCertificate {
    let key = key_location(cert);
    FoundCertificate {
        thumbprint: sha1_hash(cert).map(hex::encode_upper).unwrap_or_default(),
        friendly_name: friendly_name(cert),
        has_private_key: key.as_ref().is_some_and(keys::key_exists),
        key,
        not_after: not_after(cert),
        mark: mark_of(cert),
    }
}

/// A certificate property's bytes, 8-byte aligned (some properties are structures).
fn property(cert: &Cert, id: u32) -> Option<Vec<u64>> {
    let mut size = 0u32;
    // SAFETY: a size query with a null buffer.
    let ok =
        unsafe { CertGetCertificateContextProperty(cert.as_ptr(), id, ptr::null_mut(), &mut size) };
    if ok == 0 {
        return None;
    }
    let mut buffer = vec![0u64; (size as usize).div_ceil(8)];
    // SAFETY: the buffer holds at least `size` bytes.
    let ok = unsafe {
        CertGetCertificateContextProperty(
            cert.as_ptr(),
            id,
            buffer.as_mut_ptr().cast::<c_void>(),
            &mut size,
        )
    };
    (ok != 0).then_some(buffer)
}

/// `CERT_SHA1_HASH_PROP_ID`: the thumbprint's bytes.
fn sha1_hash(cert: &Cert) -> Result<[u8; 20], StoreError> {
    let bytes = property(cert, CERT_SHA1_HASH_PROP_ID).ok_or(StoreError::StoreRefused {
        operation: "read the certificate's SHA-1 hash",
        code: last_error(),
    })?;
    let mut hash = [0u8; 20];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = bytes[i / 8].to_ne_bytes()[i % 8];
    }
    Ok(hash)
}

/// `CERT_KEY_PROV_INFO_PROP_ID`: where the certificate's private key is, if it names one.
pub(super) fn key_location(cert: &Cert) -> Option<KeyLocation> {
    let buffer = property(cert, CERT_KEY_PROV_INFO_PROP_ID)?;
    // SAFETY: the property is a CRYPT_KEY_PROV_INFO followed by the strings it points to,
    // and the buffer is aligned for it.
    let info = unsafe { &*buffer.as_ptr().cast::<CRYPT_KEY_PROV_INFO>() };
    // SAFETY: both strings point inside `buffer` and are NUL-terminated (or null).
    let (container, provider) = unsafe {
        (
            from_wide_ptr(info.pwszContainerName),
            from_wide_ptr(info.pwszProvName),
        )
    };
    Some(KeyLocation {
        storage: if info.dwProvType == 0 {
            KeyStorage::Cng
        } else {
            KeyStorage::Capi
        },
        provider,
        container,
        provider_type: info.dwProvType,
        key_spec: info.dwKeySpec,
    })
}

/// `CERT_FRIENDLY_NAME_PROP_ID`, the name certmgr.msc and the browser's picker show.
fn friendly_name(cert: &Cert) -> Option<String> {
    let buffer = property(cert, CERT_FRIENDLY_NAME_PROP_ID)?;
    // SAFETY: the property is a NUL-terminated UTF-16 string inside the zero-padded buffer.
    Some(unsafe { from_wide_ptr(buffer.as_ptr().cast::<u16>()) })
}

/// The certificate's CertHub mark ([`CERTHUB_MARK_PROP_ID`], a UTF-16 string), when it
/// carries one.
fn mark_of(cert: &Cert) -> Option<String> {
    let buffer = property(cert, CERTHUB_MARK_PROP_ID)?;
    // SAFETY: the property is a NUL-terminated UTF-16 string inside the zero-padded buffer.
    let text = unsafe { from_wide_ptr(buffer.as_ptr().cast::<u16>()) };
    text.starts_with(crate::agent::store::MARK_PREFIX)
        .then_some(text)
}

fn set_mark(cert: &Cert, mark: &str) -> Result<(), u32> {
    set_text_property(cert, CERTHUB_MARK_PROP_ID, mark)
}

fn set_friendly_name(cert: &Cert, name: &str) -> Result<(), u32> {
    set_text_property(cert, CERT_FRIENDLY_NAME_PROP_ID, name)
}

/// Sets a string property (friendly name, description), NUL-terminated UTF-16.
fn set_text_property(cert: &Cert, id: u32, text: &str) -> Result<(), u32> {
    let text = wide(text);
    let blob = CRYPT_INTEGER_BLOB {
        cbData: (text.len() * 2) as u32,
        pbData: text.as_ptr() as *mut u8,
    };
    // SAFETY: the blob borrows `text` for the call; Windows copies it.
    let ok = unsafe {
        CertSetCertificateContextProperty(
            cert.as_ptr(),
            id,
            0,
            (&blob as *const CRYPT_INTEGER_BLOB).cast::<c_void>(),
        )
    };
    if ok == 0 { Err(last_error()) } else { Ok(()) }
}

/// `CertAddCertificateContextToStore` with `CERT_STORE_ADD_NEW`: the context's properties
/// (key location, friendly name) come along.
fn add_to_store(store: &Store, cert: &Cert) -> Result<(), u32> {
    // SAFETY: both handles are valid; we do not ask for the added context.
    let ok = unsafe {
        CertAddCertificateContextToStore(
            store.0,
            cert.as_ptr(),
            CERT_STORE_ADD_NEW,
            ptr::null_mut(),
        )
    };
    if ok == 0 { Err(last_error()) } else { Ok(()) }
}

/// `CertDeleteCertificateFromStore`, which frees the context whatever happens.
fn delete_from_store(cert: Cert) -> Result<(), u32> {
    // SAFETY: the context belongs to a store we hold open; the call takes our reference.
    let ok = unsafe { CertDeleteCertificateFromStore(cert.into_raw()) };
    if ok == 0 { Err(last_error()) } else { Ok(()) }
}

/// `CertControlStore(CERT_STORE_CTRL_COMMIT)`: write pending changes to the registry.
fn commit_store(store: &Store) -> bool {
    // SAFETY: a valid store handle and no parameter.
    unsafe { CertControlStore(store.0, 0, CERT_STORE_CTRL_COMMIT, ptr::null()) != 0 }
}

/// The certificate's notAfter.
fn not_after(cert: &Cert) -> Option<DateTime<Utc>> {
    // SAFETY: a valid context always has its CERT_INFO.
    let info = unsafe { (*cert.as_ptr()).pCertInfo.as_ref()? };
    filetime_to_utc(info.NotAfter)
}

/// A FILETIME (100 ns since 1601-01-01 UTC) as a UTC time.
fn filetime_to_utc(t: FILETIME) -> Option<DateTime<Utc>> {
    const UNIX_EPOCH_AS_FILETIME: i64 = 116_444_736_000_000_000;
    let ticks = (i64::from(t.dwHighDateTime) << 32) | i64::from(t.dwLowDateTime);
    let since_unix = ticks - UNIX_EPOCH_AS_FILETIME;
    DateTime::from_timestamp(
        since_unix.div_euclid(10_000_000),
        (since_unix.rem_euclid(10_000_000) * 100) as u32,
    )
}

#[cfg(test)]
mod tests {
    use windows_sys::Win32::Security::Cryptography::CRYPT_EXPORTABLE;

    use super::*;
    use crate::agent::windows::keys::key_exists;
    use crate::agent::windows::registry::hkcu_key_exists;
    use crate::agent::windows::test_support::*;

    fn registry_path(thumbprint: &str) -> String {
        format!(r"Software\Microsoft\SystemCertificates\MY\Certificates\{thumbprint}")
    }

    #[test]
    fn a_pfx_thumbprint_is_read_without_installing_anything() {
        let _store = lock_store();
        let before = list_my_certificates().unwrap().len();
        assert_eq!(
            pfx_thumbprint(ECNPJ_AES, ECNPJ_AES_PASSWORD).unwrap(),
            ECNPJ_AES_THUMBPRINT,
            "the leaf, not the CA that came with it"
        );
        assert_eq!(
            pfx_thumbprint(ECNPJ_LEGACY, ECNPJ_LEGACY_PASSWORD).unwrap(),
            ECNPJ_LEGACY_THUMBPRINT
        );
        assert!(pfx_thumbprint(b"not a pfx", "x").is_err());
        assert_eq!(list_my_certificates().unwrap().len(), before);
        assert!(find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().is_none());
    }

    #[test]
    fn import_is_non_exportable_named_and_found_with_its_key() {
        let _store = lock_store();
        let imported =
            import_non_exportable(ECNPJ_AES, ECNPJ_AES_PASSWORD, "CertHub - EMPRESA X").unwrap();
        assert_eq!(imported.thumbprint, ECNPJ_AES_THUMBPRINT);
        // why: Wine refuses CNG imports, so the fallback is what runs here.
        if is_wine() {
            assert_eq!(imported.key_storage, KeyStorage::Capi);
        }
        assert!(!imported.key.container.is_empty());
        assert!(!imported.key.provider.is_empty());
        let not_after = imported.not_after.expect("notAfter");
        assert!(not_after > Utc::now());

        let found = find_by_thumbprint(&imported.thumbprint.to_lowercase())
            .unwrap()
            .expect("in MY");
        assert_eq!(found.friendly_name.as_deref(), Some("CertHub - EMPRESA X"));
        assert!(found.has_private_key);
        assert_eq!(found.key.as_ref(), Some(&imported.key));
        assert!(hkcu_key_exists(&registry_path(ECNPJ_AES_THUMBPRINT)));
        assert!(key_refuses_export(ECNPJ_AES_THUMBPRINT).unwrap());
        // Only the end-entity certificate is installed, not the CA that came in the PFX.
        let in_my = list_my_certificates().unwrap();
        assert_eq!(
            in_my
                .iter()
                .filter(|c| c.thumbprint == ECNPJ_AES_THUMBPRINT)
                .count(),
            1
        );

        remove_with_key(ECNPJ_AES_THUMBPRINT).unwrap();
    }

    #[test]
    fn control_an_exportable_import_can_be_exported() {
        let _store = lock_store();
        let imported = import_into_my(
            ECNPJ_LEGACY,
            ECNPJ_LEGACY_PASSWORD,
            "CertHub - control",
            CRYPT_EXPORTABLE,
            false,
        )
        .unwrap();
        assert!(!key_refuses_export(&imported.thumbprint).unwrap());
        remove_with_key(&imported.thumbprint).unwrap();
    }

    #[test]
    fn an_exportable_key_is_refused_and_leaves_nothing() {
        let _store = lock_store();
        let err = import_into_my(
            ECNPJ_LEGACY,
            ECNPJ_LEGACY_PASSWORD,
            "CertHub - control",
            CRYPT_EXPORTABLE,
            true,
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::KeyExportable), "{err}");
        assert_eq!(err.code(), "KEY_EXPORTABLE");
        assert!(
            find_by_thumbprint(ECNPJ_LEGACY_THUMBPRINT)
                .unwrap()
                .is_none()
        );
        assert_eq!(wine_orphan_key_containers(), Vec::<String>::new());
    }

    #[test]
    fn pfx_variants_offices_have_import() {
        let _store = lock_store();
        let mut cases = vec![
            (ECNPJ_LEGACY, ECNPJ_LEGACY_PASSWORD, ECNPJ_LEGACY_THUMBPRINT),
            (ECNPJ_EMPTY_PASSWORD, "", ECNPJ_AES_THUMBPRINT),
            (KEYTOOL_AES, KEYTOOL_AES_PASSWORD, ECNPJ_AES_THUMBPRINT),
            (ECPF_NOMAC, ECPF_NOMAC_PASSWORD, ECPF_THUMBPRINT),
        ];
        // why: Wine (GnuTLS) fails to decrypt a PFX whose password is not ASCII; Windows can.
        if !is_wine() {
            cases.push((ECPF_UTF8, ECPF_UTF8_PASSWORD, ECPF_THUMBPRINT));
        }
        for (pfx, password, thumbprint) in cases {
            let imported = import_non_exportable(pfx, password, "CertHub - test").unwrap();
            assert_eq!(imported.thumbprint, thumbprint);
            assert!(key_refuses_export(thumbprint).unwrap());
            let outcome = remove_with_key(thumbprint).unwrap();
            assert!(
                outcome.certificate_removed && outcome.key_deleted,
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_pfx_with_two_keys_is_refused() {
        let _store = lock_store();
        let result = import_non_exportable(TWO_KEYS, TWO_KEYS_PASSWORD, "CertHub - two");
        if is_wine() {
            // why: Wine imports only the first key of a PFX, so it never sees two.
            remove_with_key(&result.unwrap().thumbprint).unwrap();
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err, StoreError::ImportRefused { .. }), "{err:?}");
        }
    }

    #[test]
    fn wrong_password_is_reported_and_leaves_nothing() {
        let _store = lock_store();
        let before = list_my_certificates().unwrap().len();
        let err = import_non_exportable(ECNPJ_AES, "wrong-password", "CertHub - x").unwrap_err();
        // why: Wine gives no password error code, so the most it can say is ImportRefused.
        if is_wine() {
            assert!(
                matches!(
                    err,
                    StoreError::WrongPassword | StoreError::ImportRefused { .. }
                ),
                "{err:?}"
            );
        } else {
            assert!(matches!(err, StoreError::WrongPassword), "{err:?}");
            assert_eq!(err.code(), "WRONG_PASSWORD");
        }
        assert!(!err.to_string().contains("wrong-password"));
        assert!(find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().is_none());
        assert_eq!(list_my_certificates().unwrap().len(), before);
        assert_eq!(wine_orphan_key_containers(), Vec::<String>::new());
    }

    #[test]
    fn a_pfx_without_a_key_or_not_a_pfx_is_refused() {
        let _store = lock_store();
        let err = import_non_exportable(ECNPJ_NOKEY, "1234", "CertHub - x").unwrap_err();
        assert!(matches!(err, StoreError::ImportRefused { .. }), "{err:?}");
        let err = import_non_exportable(b"not a pfx", "1234", "CertHub - x").unwrap_err();
        assert!(matches!(err, StoreError::ImportRefused { .. }), "{err:?}");
        assert!(find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().is_none());
    }

    #[test]
    fn a_second_import_of_the_same_certificate_is_already_installed() {
        let _store = lock_store();
        import_non_exportable(ECNPJ_AES, ECNPJ_AES_PASSWORD, "CertHub - first").unwrap();
        let err =
            import_non_exportable(ECNPJ_AES, ECNPJ_AES_PASSWORD, "CertHub - second").unwrap_err();
        assert!(matches!(err, StoreError::AlreadyInstalled), "{err:?}");
        let found = find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().unwrap();
        assert_eq!(found.friendly_name.as_deref(), Some("CertHub - first"));
        assert!(found.has_private_key, "the first import keeps its key");
        remove_with_key(ECNPJ_AES_THUMBPRINT).unwrap();
    }

    #[test]
    fn remove_deletes_the_certificate_and_its_key() {
        let _store = lock_store();
        let imported =
            import_non_exportable(ECNPJ_AES, ECNPJ_AES_PASSWORD, "CertHub - EMPRESA X").unwrap();
        assert!(key_exists(&imported.key));
        if is_wine() {
            let container = format!(r"Software\Wine\Crypto\RSA\{}", imported.key.container);
            assert!(hkcu_key_exists(&container), "{container} is missing");
            assert!(wine_key_containers().contains(&imported.key.container));
        }

        // Any case, with the separators certmgr.msc and OpenSSL print.
        let outcome =
            remove_with_key(" 7b:3c:17:8d:ec:16:a2:43:f7:40:32:d9:5d:4d:54:29:55:c5:a8:d3 ")
                .unwrap();
        assert_eq!(
            outcome,
            RemovalOutcome {
                certificate_removed: true,
                key_deleted: true,
                key_kept: None
            }
        );
        assert!(find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().is_none());
        assert!(!hkcu_key_exists(&registry_path(ECNPJ_AES_THUMBPRINT)));
        assert_eq!(wine_orphan_key_containers(), Vec::<String>::new());
        assert!(
            !key_exists(&imported.key),
            "the key container can still be opened"
        );
        if is_wine() {
            // Independent of CryptoAPI: where Wine keeps the container.
            let container = format!(r"Software\Wine\Crypto\RSA\{}", imported.key.container);
            assert!(!hkcu_key_exists(&container), "{container} is still there");
        }

        // Absent counts as removed; nothing to delete.
        let again = remove_with_key(ECNPJ_AES_THUMBPRINT).unwrap();
        assert!(!again.certificate_removed && !again.key_deleted);
        assert!(matches!(
            remove_with_key("not-a-thumbprint"),
            Err(StoreError::InvalidThumbprint)
        ));
    }

    #[test]
    fn removing_ours_leaves_a_certificate_the_user_installed() {
        let _store = lock_store();
        let ours =
            import_non_exportable(ECNPJ_AES, ECNPJ_AES_PASSWORD, "CertHub - EMPRESA X").unwrap();
        install_like_a_user(ECNPJ_LEGACY, ECNPJ_LEGACY_PASSWORD);
        let users = find_by_thumbprint(ECNPJ_LEGACY_THUMBPRINT)
            .unwrap()
            .expect("user's");
        let users_key = users.key.clone().expect("user's key");

        let outcome = remove_with_key(&ours.thumbprint).unwrap();
        assert!(outcome.certificate_removed);
        assert!(find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().is_none());
        assert!(
            find_by_thumbprint(ECNPJ_LEGACY_THUMBPRINT)
                .unwrap()
                .is_some()
        );
        if users_key.same_key_as(&ours.key) {
            // why: Wine keeps both keys in one container; deleting it would break the user's.
            assert_eq!(
                outcome.key_kept,
                Some(KeyKept::SharedWithAnotherCertificate)
            );
            assert!(key_exists(&users_key));
        } else {
            assert!(outcome.key_deleted, "{outcome:?}");
            assert!(key_exists(&users_key), "the user's key must survive");
        }
        remove_with_key(ECNPJ_LEGACY_THUMBPRINT).unwrap();
    }

    /// Issue 23: a certificate the user put in `MY` (with its key) has no CertHub mark and is
    /// not removed when asked by thumbprint; the agent's own import carries its mark, which
    /// the store keeps, and is removed.
    #[test]
    fn a_certificate_the_user_installed_is_left_and_ours_carries_its_mark() {
        let _store = lock_store();
        let by_agent = |mark: Option<&str>, _: Option<&KeyLocation>| {
            mark.is_some_and(|m| m.starts_with(crate::agent::store::MARK_PREFIX))
        };
        install_like_a_user(ECNPJ_AES, ECNPJ_AES_PASSWORD);
        let users = find_by_thumbprint(ECNPJ_AES_THUMBPRINT)
            .unwrap()
            .expect("the user's certificate");
        assert_eq!(users.mark, None);
        assert!(matches!(
            remove_if_owned(ECNPJ_AES_THUMBPRINT, by_agent),
            Err(StoreError::NotInstalledByAgent)
        ));
        let still = find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap();
        assert!(
            still.is_some_and(|c| c.has_private_key),
            "the user's certificate and key stay"
        );
        remove_with_key(ECNPJ_AES_THUMBPRINT).unwrap();

        let ours =
            import_non_exportable(ECNPJ_AES, ECNPJ_AES_PASSWORD, "CertHub - EMPRESA X").unwrap();
        let found = find_by_thumbprint(ECNPJ_AES_THUMBPRINT).unwrap().unwrap();
        assert_eq!(found.mark.as_deref(), Some(ours.mark.as_str()));
        let other = crate::agent::store::new_mark();
        assert!(matches!(
            remove_if_owned(ECNPJ_AES_THUMBPRINT, |m, _| m == Some(other.as_str())),
            Err(StoreError::NotInstalledByAgent)
        ));
        let outcome = remove_if_owned(ECNPJ_AES_THUMBPRINT, by_agent).unwrap();
        assert!(
            outcome.certificate_removed && outcome.key_deleted,
            "{outcome:?}"
        );
    }
}
