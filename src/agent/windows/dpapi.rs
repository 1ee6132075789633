//! DPAPI: secrets sealed to the current Windows user (the agent's device key and tokens at
//! rest), with an application entropy so another program of the same user cannot just ask.

use std::ptr;

use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData, CryptUnprotectData,
};
use zeroize::{Zeroize, Zeroizing};

use super::{blob_of, last_error, wide};

/// DPAPI refused to seal or open (wrong entropy, another user's blob, corrupt data).
#[derive(Debug, Clone, thiserror::Error)]
#[error("DPAPI could not {operation} (error {code:#010x})")]
pub struct DpapiError {
    pub operation: &'static str,
    pub code: u32,
}

/// `CryptProtectData` for the current user, never showing UI.
pub fn protect(data: &[u8], entropy: &[u8]) -> Result<Vec<u8>, DpapiError> {
    let description = wide("CertHub agent");
    let (input, entropy) = (blob_of(data), blob_of(entropy));
    let mut output = CRYPT_INTEGER_BLOB::default();
    // SAFETY: the input blobs borrow live slices; the output is LocalAlloc'd by Windows.
    let ok = unsafe {
        CryptProtectData(
            &input,
            description.as_ptr(),
            &entropy,
            ptr::null(),
            ptr::null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut output,
        )
    };
    let mut sealed = take_output(ok, &output, "protect the data")?;
    Ok(std::mem::take(&mut *sealed))
}

/// `CryptUnprotectData` with the same entropy; the plaintext is zeroized when dropped, and so
/// is Windows' copy before it is freed.
pub fn unprotect(blob: &[u8], entropy: &[u8]) -> Result<Zeroizing<Vec<u8>>, DpapiError> {
    let (input, entropy) = (blob_of(blob), blob_of(entropy));
    let mut output = CRYPT_INTEGER_BLOB::default();
    // SAFETY: the input blobs borrow live slices; the output is LocalAlloc'd by Windows.
    let ok = unsafe {
        CryptUnprotectData(
            &input,
            ptr::null_mut(),
            &entropy,
            ptr::null(),
            ptr::null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut output,
        )
    };
    take_output(ok, &output, "unprotect the data")
}

/// A DPAPI call's outcome: its error, or its output copied out of Windows' buffer, which is
/// wiped and freed (DPAPI allocates it with `LocalAlloc`).
fn take_output(
    ok: i32,
    output: &CRYPT_INTEGER_BLOB,
    operation: &'static str,
) -> Result<Zeroizing<Vec<u8>>, DpapiError> {
    if ok == 0 {
        return Err(DpapiError {
            operation,
            code: last_error(),
        });
    }
    // SAFETY: Windows returned `cbData` writable bytes at `pbData`, ours to copy, wipe and free.
    let data = unsafe { std::slice::from_raw_parts_mut(output.pbData, output.cbData as usize) };
    let copy = Zeroizing::new(data.to_vec());
    data.zeroize();
    // SAFETY: allocated by CryptProtectData / CryptUnprotectData with LocalAlloc.
    unsafe { LocalFree(output.pbData.cast()) };
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_the_same_entropy() {
        let sealed = protect(b"device secret key", b"certhub-entropy").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"device"));
        let opened = unprotect(&sealed, b"certhub-entropy").unwrap();
        assert_eq!(opened.as_slice(), b"device secret key");
    }

    #[test]
    fn wrong_entropy_fails() {
        let sealed = protect(b"device secret key", b"certhub-entropy").unwrap();
        assert!(unprotect(&sealed, b"other-entropy").is_err());
    }

    #[test]
    fn tampered_blob_fails() {
        let mut sealed = protect(b"device secret key", b"e").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 0x01;
        assert!(unprotect(&sealed, b"e").is_err());
    }
}
