//! Start at logon: the value `CertHubAgent` under HKCU `...\CurrentVersion\Run`.
//!
//! Why no crate: winreg 0.56 is a thin layer over the windows-sys 0.61 we link, for three calls.

use std::ptr;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, ERROR_SUCCESS};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_CURRENT_USER, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE, REG_SZ, RRF_RT_REG_SZ,
    RegCloseKey, RegCreateKeyExW, RegDeleteValueW, RegGetValueW, RegSetValueExW,
};

use super::wide;

const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";
const RUN_VALUE: &str = "CertHubAgent";

/// A registry call failed (the Win32 error code).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the registry refused to {operation} (error {code})")]
pub struct RegistryError {
    pub operation: &'static str,
    pub code: u32,
}

/// Starts the agent at logon with this command line (quote the exe path if it has spaces).
pub fn set_run_at_logon(command_line: &str) -> Result<(), RegistryError> {
    let key = create_hkcu_key(RUN_KEY)?;
    let name = wide(RUN_VALUE);
    let data = wide(command_line);
    // SAFETY: a valid key, NUL-terminated name, and `data` as bytes including its NUL.
    let status = unsafe {
        RegSetValueExW(
            key.0,
            name.as_ptr(),
            0,
            REG_SZ,
            data.as_ptr().cast::<u8>(),
            (data.len() * 2) as u32,
        )
    };
    check(status, "write the Run value")
}

/// The command line the agent starts with at logon, if it is set.
pub fn run_at_logon() -> Result<Option<String>, RegistryError> {
    read_hkcu_string(RUN_KEY, RUN_VALUE)
}

/// Stops starting the agent at logon; true when there was something to remove.
pub fn remove_run_at_logon() -> Result<bool, RegistryError> {
    let key = match create_hkcu_key(RUN_KEY) {
        Ok(key) => key,
        Err(e) if e.code == ERROR_FILE_NOT_FOUND => return Ok(false),
        Err(e) => return Err(e),
    };
    let name = wide(RUN_VALUE);
    // SAFETY: a valid key and a NUL-terminated value name.
    match unsafe { RegDeleteValueW(key.0, name.as_ptr()) } {
        ERROR_SUCCESS => Ok(true),
        ERROR_FILE_NOT_FOUND => Ok(false),
        code => Err(RegistryError {
            operation: "delete the Run value",
            code,
        }),
    }
}

/// A string value under HKCU, `None` when the key or value is absent.
fn read_hkcu_string(subkey: &str, value: &str) -> Result<Option<String>, RegistryError> {
    let (subkey, value) = (wide(subkey), wide(value));
    let mut size = 0u32;
    loop {
        let mut buffer = vec![0u16; (size as usize).div_ceil(2)];
        let data = if buffer.is_empty() {
            ptr::null_mut()
        } else {
            buffer.as_mut_ptr().cast()
        };
        // SAFETY: NUL-terminated names; `data` is null (size query) or holds `size` bytes.
        let status = unsafe {
            RegGetValueW(
                HKEY_CURRENT_USER,
                subkey.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                ptr::null_mut(),
                data,
                &mut size,
            )
        };
        match status {
            ERROR_FILE_NOT_FOUND => return Ok(None),
            ERROR_SUCCESS if !buffer.is_empty() => {
                let len = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
                return Ok(Some(String::from_utf16_lossy(&buffer[..len])));
            }
            // The size query answered, or the value grew in between: ask again with room.
            ERROR_SUCCESS | ERROR_MORE_DATA if size > 0 => continue,
            ERROR_SUCCESS => return Ok(Some(String::new())),
            code => {
                return Err(RegistryError {
                    operation: "read the value",
                    code,
                });
            }
        }
    }
}

/// An HKCU key open for setting values, closed on drop.
struct Key(HKEY);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the key was opened by RegCreateKeyExW and is closed once.
        unsafe { RegCloseKey(self.0) };
    }
}

/// `RegCreateKeyExW` under HKCU (opens the key when it exists).
fn create_hkcu_key(subkey: &str) -> Result<Key, RegistryError> {
    let subkey = wide(subkey);
    let mut key: HKEY = ptr::null_mut();
    // SAFETY: a NUL-terminated path and an out-pointer to a local.
    let status = unsafe {
        RegCreateKeyExW(
            HKEY_CURRENT_USER,
            subkey.as_ptr(),
            0,
            ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            ptr::null(),
            &mut key,
            ptr::null_mut(),
        )
    };
    check(status, "open the key").map(|()| Key(key))
}

fn check(status: u32, operation: &'static str) -> Result<(), RegistryError> {
    if status == ERROR_SUCCESS {
        Ok(())
    } else {
        Err(RegistryError {
            operation,
            code: status,
        })
    }
}

/// An HKCU key exists (tests check the store's registry keys from outside the store API).
#[cfg(test)]
pub(super) fn hkcu_key_exists(subkey: &str) -> bool {
    use windows_sys::Win32::System::Registry::{KEY_READ, RegOpenKeyExW};
    let subkey = wide(subkey);
    let mut key: HKEY = ptr::null_mut();
    // SAFETY: a NUL-terminated path and an out-pointer to a local.
    let status =
        unsafe { RegOpenKeyExW(HKEY_CURRENT_USER, subkey.as_ptr(), 0, KEY_READ, &mut key) };
    if status == ERROR_SUCCESS {
        drop(Key(key));
    }
    status == ERROR_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_at_logon_set_get_remove() {
        let command = r#""C:\Program Files\CertHub\certhub-agent.exe" --tray"#;
        set_run_at_logon(command).unwrap();
        assert_eq!(run_at_logon().unwrap().as_deref(), Some(command));
        assert!(remove_run_at_logon().unwrap());
        assert_eq!(run_at_logon().unwrap(), None);
        assert!(!remove_run_at_logon().unwrap());
    }
}
