//! Private keys behind certificates: checking that one refuses export, and deleting one from
//! its CryptoAPI container or CNG key storage provider.

use std::ptr;

use windows_sys::Win32::Foundation::NTE_BAD_KEYSET;
use windows_sys::Win32::Security::Cryptography::{
    AT_KEYEXCHANGE, AT_SIGNATURE, CERT_NCRYPT_KEY_SPEC, CRYPT_ACQUIRE_ALLOW_NCRYPT_KEY_FLAG,
    CRYPT_ACQUIRE_SILENT_FLAG, CRYPT_DELETEKEYSET, CRYPT_SILENT, CryptAcquireCertificatePrivateKey,
    CryptAcquireContextW, CryptDestroyKey, CryptExportKey, CryptGetUserKey, CryptReleaseContext,
    NCRYPT_KEY_HANDLE, NCRYPT_PKCS8_PRIVATE_KEY_BLOB, NCRYPT_PROV_HANDLE, NCRYPT_SILENT_FLAG,
    NCryptDeleteKey, NCryptExportKey, NCryptFreeObject, NCryptOpenKey, NCryptOpenStorageProvider,
    PRIVATEKEYBLOB,
};
use zeroize::Zeroizing;

use super::handles::Cert;
use super::{last_error, wide};

/// A key operation Windows refused, with its error code (never key material).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not {operation} (error {code:#010x})")]
pub struct KeyError {
    pub operation: &'static str,
    pub code: u32,
}

/// `NTE_BAD_KEYSET`: the container or key does not exist.
const KEY_ABSENT: u32 = NTE_BAD_KEYSET as u32;

/// Which key store holds a private key; the protocol's `key_storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStorage {
    /// A CNG key storage provider (Windows' default for PFX imports that prefer CNG).
    Cng,
    /// A legacy CryptoAPI cryptographic service provider container.
    Capi,
}

impl KeyStorage {
    /// `"CNG"` or `"CAPI"`, as the install result reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStorage::Cng => "CNG",
            KeyStorage::Capi => "CAPI",
        }
    }
}

/// Where a certificate's private key lives (its `CERT_KEY_PROV_INFO_PROP_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    pub storage: KeyStorage,
    /// Provider name, e.g. "Microsoft Software Key Storage Provider".
    pub provider: String,
    /// CryptoAPI container name, or CNG key name.
    pub container: String,
    /// CryptoAPI provider type (`PROV_RSA_FULL`, ...); 0 for CNG.
    pub provider_type: u32,
    /// `AT_KEYEXCHANGE`, `AT_SIGNATURE` (Wine reports 3), or 0 for CNG.
    pub key_spec: u32,
}

impl KeyLocation {
    pub(super) fn same_key_as(&self, other: &KeyLocation) -> bool {
        self.storage == other.storage
            && self.provider.eq_ignore_ascii_case(&other.provider)
            && self.container.eq_ignore_ascii_case(&other.container)
    }
}

/// Acquires the certificate's private key and tries to export it as plaintext: a
/// `PRIVATEKEYBLOB` for CryptoAPI keys, PKCS#8 for CNG keys. Refused means non-exportable.
pub(super) fn context_key_refuses_export(cert: &Cert) -> Result<bool, KeyError> {
    let mut handle = 0usize;
    let mut key_spec = 0u32;
    let mut caller_frees = 0i32;
    // SAFETY: a valid context and out-pointers to locals.
    let ok = unsafe {
        CryptAcquireCertificatePrivateKey(
            cert.as_ptr(),
            CRYPT_ACQUIRE_SILENT_FLAG | CRYPT_ACQUIRE_ALLOW_NCRYPT_KEY_FLAG,
            ptr::null(),
            &mut handle,
            &mut key_spec,
            &mut caller_frees,
        )
    };
    if ok == 0 {
        return Err(KeyError {
            operation: "acquire the certificate's private key",
            code: last_error(),
        });
    }
    let refuses = if key_spec == CERT_NCRYPT_KEY_SPEC {
        Ok(cng_key_refuses_export(handle))
    } else {
        capi_key_refuses_export(handle, key_spec)
    };
    if caller_frees != 0 {
        // SAFETY: we were told to free this handle, of the kind the key spec says.
        unsafe {
            if key_spec == CERT_NCRYPT_KEY_SPEC {
                NCryptFreeObject(handle);
            } else {
                CryptReleaseContext(handle, 0);
            }
        }
    }
    refuses
}

/// `CryptGetUserKey` + `CryptExportKey(PRIVATEKEYBLOB)` must fail.
fn capi_key_refuses_export(provider: usize, key_spec: u32) -> Result<bool, KeyError> {
    // why: Wine reports key_spec 3, which CryptGetUserKey refuses; AT_KEYEXCHANGE (1) works.
    let specs = [key_spec, AT_KEYEXCHANGE, AT_SIGNATURE];
    let mut key = 0usize;
    // SAFETY: a valid provider handle and an out-pointer to a local.
    let opened = specs
        .iter()
        .any(|&spec| unsafe { CryptGetUserKey(provider, spec, &mut key) } != 0);
    if !opened {
        return Err(KeyError {
            operation: "open the private key in its container",
            code: last_error(),
        });
    }
    let mut len = 0u32;
    // SAFETY: a size query with a null buffer on a valid key.
    let mut exported =
        unsafe { CryptExportKey(key, 0, PRIVATEKEYBLOB, 0, ptr::null_mut(), &mut len) } != 0;
    if exported {
        let mut blob = Zeroizing::new(vec![0u8; len as usize]);
        // SAFETY: the buffer holds `len` bytes.
        exported =
            unsafe { CryptExportKey(key, 0, PRIVATEKEYBLOB, 0, blob.as_mut_ptr(), &mut len) } != 0;
    }
    // SAFETY: the key handle came from CryptGetUserKey.
    unsafe { CryptDestroyKey(key) };
    Ok(!exported)
}

/// `NCryptExportKey(PKCS8_PRIVATEKEY)` must fail.
fn cng_key_refuses_export(key: NCRYPT_KEY_HANDLE) -> bool {
    let mut len = 0u32;
    // SAFETY: a size query with a null buffer on a valid key.
    let status = unsafe {
        NCryptExportKey(
            key,
            0,
            NCRYPT_PKCS8_PRIVATE_KEY_BLOB,
            ptr::null(),
            ptr::null_mut(),
            0,
            &mut len,
            NCRYPT_SILENT_FLAG,
        )
    };
    if status != 0 {
        return true;
    }
    let mut blob = Zeroizing::new(vec![0u8; len as usize]);
    // SAFETY: the buffer holds `len` bytes.
    let status = unsafe {
        NCryptExportKey(
            key,
            0,
            NCRYPT_PKCS8_PRIVATE_KEY_BLOB,
            ptr::null(),
            blob.as_mut_ptr(),
            len,
            &mut len,
            NCRYPT_SILENT_FLAG,
        )
    };
    status != 0
}

/// Deletes the key a certificate points to, CryptoAPI or CNG. An absent key counts as deleted.
pub fn delete_key(key: &KeyLocation) -> Result<(), KeyError> {
    match key.storage {
        KeyStorage::Capi => delete_key_container(&key.provider, &key.container, key.provider_type),
        KeyStorage::Cng => delete_cng_key(&key.provider, &key.container),
    }
}

/// The key a certificate points to can still be opened.
pub fn key_exists(key: &KeyLocation) -> bool {
    match key.storage {
        KeyStorage::Capi => key_container_exists(&key.provider, &key.container, key.provider_type),
        KeyStorage::Cng => cng_key_exists(&key.provider, &key.container),
    }
}

/// `CryptAcquireContextW(CRYPT_DELETEKEYSET)`: deletes a CryptoAPI key container (an absent one
/// counts as deleted).
pub fn delete_key_container(
    provider: &str,
    container: &str,
    provider_type: u32,
) -> Result<(), KeyError> {
    let (provider, container) = (wide(provider), wide(container));
    let mut unused = 0usize;
    // SAFETY: NUL-terminated names; with CRYPT_DELETEKEYSET no handle is returned.
    let ok = unsafe {
        CryptAcquireContextW(
            &mut unused,
            container.as_ptr(),
            provider.as_ptr(),
            provider_type,
            CRYPT_DELETEKEYSET | CRYPT_SILENT,
        )
    };
    match (ok, last_error()) {
        (0, KEY_ABSENT) => Ok(()),
        (0, code) => Err(KeyError {
            operation: "delete the key container",
            code,
        }),
        _ => Ok(()),
    }
}

/// A CryptoAPI key container can be opened.
pub fn key_container_exists(provider: &str, container: &str, provider_type: u32) -> bool {
    let (provider, container) = (wide(provider), wide(container));
    let mut handle = 0usize;
    // SAFETY: NUL-terminated names and an out-pointer to a local.
    let ok = unsafe {
        CryptAcquireContextW(
            &mut handle,
            container.as_ptr(),
            provider.as_ptr(),
            provider_type,
            CRYPT_SILENT,
        )
    };
    if ok != 0 {
        // SAFETY: the handle was just acquired.
        unsafe { CryptReleaseContext(handle, 0) };
    }
    ok != 0
}

/// `NCryptOpenKey` + `NCryptDeleteKey`: deletes a CNG key (an absent one counts as deleted).
/// Wine never puts a PFX key in CNG, so only Windows exercises this.
pub fn delete_cng_key(provider: &str, key_name: &str) -> Result<(), KeyError> {
    let Some(key) = open_cng_key(provider, key_name)? else {
        return Ok(());
    };
    // SAFETY: a valid key handle; on success NCryptDeleteKey also frees it.
    let status = unsafe { NCryptDeleteKey(key, NCRYPT_SILENT_FLAG) };
    if status != 0 {
        // SAFETY: the delete failed, so the handle is still ours to free.
        unsafe { NCryptFreeObject(key) };
        return Err(KeyError {
            operation: "delete the CNG key",
            code: status as u32,
        });
    }
    Ok(())
}

/// A CNG key can be opened.
pub fn cng_key_exists(provider: &str, key_name: &str) -> bool {
    match open_cng_key(provider, key_name) {
        Ok(Some(key)) => {
            // SAFETY: the handle was just opened.
            unsafe { NCryptFreeObject(key) };
            true
        }
        _ => false,
    }
}

/// Opens a user CNG key; `None` when it does not exist.
fn open_cng_key(provider: &str, key_name: &str) -> Result<Option<NCRYPT_KEY_HANDLE>, KeyError> {
    let (provider, key_name) = (wide(provider), wide(key_name));
    let mut storage: NCRYPT_PROV_HANDLE = 0;
    // SAFETY: a NUL-terminated provider name and an out-pointer to a local.
    let status = unsafe { NCryptOpenStorageProvider(&mut storage, provider.as_ptr(), 0) };
    if status != 0 {
        return Err(KeyError {
            operation: "open the CNG key storage provider",
            code: status as u32,
        });
    }
    let mut key: NCRYPT_KEY_HANDLE = 0;
    // SAFETY: a valid provider handle, a NUL-terminated key name, an out-pointer to a local.
    let status =
        unsafe { NCryptOpenKey(storage, &mut key, key_name.as_ptr(), 0, NCRYPT_SILENT_FLAG) };
    // SAFETY: the provider handle is ours; an open key keeps its own reference.
    unsafe { NCryptFreeObject(storage) };
    match status as u32 {
        0 => Ok(Some(key)),
        KEY_ABSENT => Ok(None),
        code => Err(KeyError {
            operation: "open the CNG key",
            code,
        }),
    }
}
