//! Owners and DACLs of folders: the install folder made with a protected DACL, and the owner of
//! one that is already there (the rule is [`crate::agent::install_folder`]).

use std::io;
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, ERROR_SUCCESS, HANDLE, LocalFree, WIN32_ERROR,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorControl, GetSecurityDescriptorDacl,
    GetTokenInformation, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, SE_DACL_PROTECTED, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
    TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::{from_wide_ptr, last_error, wide};

/// Memory Windows allocated for us (`LocalAlloc`), freed when dropped.
struct Local(*mut core::ffi::c_void);

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the call that returned it, freed once.
            unsafe { LocalFree(self.0) };
        }
    }
}

fn failed(what: &str, code: u32) -> io::Error {
    io::Error::other(format!("{what}: Windows error {code}"))
}

fn path_wide(path: &Path) -> Vec<u16> {
    wide(&path.to_string_lossy())
}

/// The SID of the user this process runs as (`S-1-5-21-…`).
pub fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of this process; `token` receives a handle we close below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(failed("OpenProcessToken", last_error()));
    }
    // TOKEN_USER and the SID it points to, in one buffer aligned for the struct.
    let mut buf = vec![0u64; 128];
    let mut len = 0u32;
    // SAFETY: the buffer is writable for the size given; `token` is live.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    let error = last_error();
    // SAFETY: the handle OpenProcessToken gave, closed once.
    unsafe { CloseHandle(token) };
    if ok == 0 {
        return Err(failed("GetTokenInformation", error));
    }
    // SAFETY: filled by GetTokenInformation with a TOKEN_USER at the start of `buf`.
    let user = unsafe { &*(buf.as_ptr() as *const TOKEN_USER) };
    sid_text(user.User.Sid)
}

fn sid_text(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID; `text` receives a LocalAlloc'd string freed below.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(failed("ConvertSidToStringSidW", last_error()));
    }
    let _free = Local(text.cast());
    // SAFETY: a NUL-terminated string from Windows.
    Ok(unsafe { from_wide_ptr(text) })
}

/// `path`'s security descriptor with `what`; the pointers inside it live as long as it does.
fn named_info(path: &Path, what: u32) -> io::Result<(Local, PSID, *mut ACL)> {
    let name = path_wide(path);
    let mut owner: PSID = ptr::null_mut();
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: out-pointers to locals; the descriptor is LocalAlloc'd, freed by `Local`.
    let code: WIN32_ERROR = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            what,
            &mut owner,
            ptr::null_mut(),
            &mut dacl,
            ptr::null_mut(),
            &mut sd,
        )
    };
    if code != ERROR_SUCCESS {
        return Err(failed("GetNamedSecurityInfoW", code));
    }
    Ok((Local(sd), owner, dacl))
}

/// The SID of `path`'s owner.
pub fn owner_sid(path: &Path) -> io::Result<String> {
    let (_sd, owner, _) = named_info(path, OWNER_SECURITY_INFORMATION)?;
    sid_text(owner)
}

/// Whether `path`'s DACL is protected (inherits nothing from its parent).
pub fn dacl_is_protected(path: &Path) -> io::Result<bool> {
    let (sd, _, _) = named_info(path, DACL_SECURITY_INFORMATION)?;
    let mut control = 0u16;
    let mut revision = 0u32;
    // SAFETY: a descriptor Windows just gave us.
    if unsafe { GetSecurityDescriptorControl(sd.0, &mut control, &mut revision) } == 0 {
        return Err(failed("GetSecurityDescriptorControl", last_error()));
    }
    Ok(control & SE_DACL_PROTECTED != 0)
}

fn descriptor(sddl: &str) -> io::Result<Local> {
    let text = wide(sddl);
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: a NUL-terminated SDDL string; `sd` is LocalAlloc'd, freed by `Local`.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(failed(
            "ConvertStringSecurityDescriptorToSecurityDescriptorW",
            last_error(),
        ));
    }
    Ok(Local(sd))
}

/// Makes the folder `path` (its parent exists) with the descriptor `sddl`; `Ok(false)` when it
/// was already there (then nothing about it changed).
pub fn create_dir_with(path: &Path, sddl: &str) -> io::Result<bool> {
    let sd = descriptor(sddl)?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    let name = path_wide(path);
    // SAFETY: a NUL-terminated path and attributes that outlive the call.
    if unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } != 0 {
        return Ok(true);
    }
    match last_error() {
        ERROR_ALREADY_EXISTS => Ok(false),
        code => Err(failed("CreateDirectoryW", code)),
    }
}

/// Puts the DACL of `sddl` on `path`, protected (inheritance off).
pub fn protect(path: &Path, sddl: &str) -> io::Result<()> {
    let sd = descriptor(sddl)?;
    let mut present = 0;
    let mut defaulted = 0;
    let mut dacl: *mut ACL = ptr::null_mut();
    // SAFETY: a descriptor we just made; `dacl` points into it, which outlives the next call.
    if unsafe { GetSecurityDescriptorDacl(sd.0, &mut present, &mut dacl, &mut defaulted) } == 0 {
        return Err(failed("GetSecurityDescriptorDacl", last_error()));
    }
    let name = path_wide(path);
    // SAFETY: as above; no owner, group or SACL is changed.
    let code = unsafe {
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            dacl,
            ptr::null(),
        )
    };
    if code != ERROR_SUCCESS {
        return Err(failed("SetNamedSecurityInfoW", code));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::install_folder::protected_sddl;

    #[test]
    fn a_folder_made_here_is_the_users_and_its_dacl_is_protected() {
        let user = current_user_sid().unwrap();
        assert!(user.starts_with("S-1-5-"), "{user}");
        let base = std::env::temp_dir().join(format!("certhub-acl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let folder = base.join("publish");
        assert!(create_dir_with(&folder, &protected_sddl(&user)).unwrap());
        assert!(
            !create_dir_with(&folder, &protected_sddl(&user)).unwrap(),
            "already there"
        );
        assert_eq!(owner_sid(&folder).unwrap(), user);
        // Wine keeps a folder's descriptor only where the file system takes extended
        // attributes; on Windows (and such a Wine) the DACL reads back protected.
        match dacl_is_protected(&folder) {
            Ok(protected) => eprintln!("protected DACL read back: {protected}"),
            Err(e) => eprintln!("DACL not readable here: {e}"),
        }
        protect(&folder, &protected_sddl(&user)).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
