//! The Windows edge of the agent: one small function per Windows call, named for what it does.
//! Everything here is tested for real under Wine (`scripts/wine-runner.sh`); where Wine behaves
//! differently from Windows the code says why in a line, and follows Windows.

pub mod acl;
pub mod app;
pub mod dpapi;
mod handles;
pub mod keys;
pub mod mutex;
pub mod paths;
pub mod platform;
pub mod registry;
pub mod store;
pub mod task;
pub mod tray;
pub mod ui;

#[cfg(test)]
mod test_support;

use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::Security::Cryptography::CRYPT_INTEGER_BLOB;

/// `s` as a NUL-terminated UTF-16 string for the `W` functions.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A NUL-terminated UTF-16 string owned by Windows, copied into a `String`.
///
/// # Safety
/// `p` is null or points to a NUL-terminated UTF-16 string.
unsafe fn from_wide_ptr(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the caller promises a terminating NUL.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}

/// The calling thread's last Win32 error (0 when the failed call left none, as Wine often does).
fn last_error() -> u32 {
    // SAFETY: no arguments; reads thread-local state.
    unsafe { GetLastError() }
}

/// A blob that borrows `bytes`, for the calls that only read their input.
fn blob_of(bytes: &[u8]) -> CRYPT_INTEGER_BLOB {
    CRYPT_INTEGER_BLOB {
        cbData: bytes.len() as u32,
        pbData: bytes.as_ptr() as *mut u8,
    }
}
