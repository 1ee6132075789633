//! One agent per user session: a named mutex.

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ALREADY_EXISTS, HANDLE, SetLastError};
use windows_sys::Win32::System::Threading::CreateMutexW;

use super::{last_error, wide};

/// The agent's mutex: `Local\` keeps it per logon session, so each user runs their own agent.
pub const AGENT_MUTEX_NAME: &str = r"Local\CertHubAgent";

/// Held while this process is the one instance; dropping it releases the name.
#[derive(Debug)]
pub struct InstanceGuard(HANDLE);

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateMutexW and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// `CreateMutexW(name)`: `Some(guard)` when this is the first instance, `None` when another
/// holder of the name exists (in this or another process).
pub fn single_instance(name: &str) -> std::io::Result<Option<InstanceGuard>> {
    let name = wide(name);
    // SAFETY: only clears the thread's last error, so a stale ERROR_ALREADY_EXISTS cannot leak in.
    unsafe { SetLastError(0) };
    // SAFETY: default security, not initially owned, a NUL-terminated name.
    let handle = unsafe { CreateMutexW(std::ptr::null(), 0, name.as_ptr()) };
    if handle.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let guard = InstanceGuard(handle);
    if last_error() == ERROR_ALREADY_EXISTS {
        return Ok(None);
    }
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_instance_is_refused_until_the_first_is_dropped() {
        let name = r"Local\CertHubAgentTest-mutex-1";
        let first = single_instance(name).unwrap();
        assert!(first.is_some());
        assert!(single_instance(name).unwrap().is_none());
        drop(first);
        assert!(single_instance(name).unwrap().is_some());
    }

    #[test]
    fn different_names_do_not_collide() {
        let a = single_instance(r"Local\CertHubAgentTest-mutex-a").unwrap();
        let b = single_instance(r"Local\CertHubAgentTest-mutex-b").unwrap();
        assert!(a.is_some() && b.is_some());
    }
}
