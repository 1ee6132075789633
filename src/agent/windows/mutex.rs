//! One agent per user session: a named mutex; and a named event `uninstall` sets to stop the
//! agent running in the session.

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ALREADY_EXISTS, HANDLE, SetLastError};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, EVENT_MODIFY_STATE, INFINITE, OpenEventW, SetEvent,
    WaitForSingleObject,
};

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

/// Set by `uninstall`: the running agent stops (`Local\`: this logon session's agent).
pub const STOP_EVENT_NAME: &str = r"Local\CertHubAgentStop";

/// The stop event as the running agent holds it.
#[derive(Debug)]
pub struct StopEvent(HANDLE);

// SAFETY: an event handle is valid in every thread of the process that opened it.
unsafe impl Send for StopEvent {}

impl Drop for StopEvent {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateEventW and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

impl StopEvent {
    /// Creates (or opens) the manual-reset event `name`, not signalled.
    pub fn create(name: &str) -> std::io::Result<Self> {
        let name = wide(name);
        // SAFETY: default security, manual reset, initially not signalled, a NUL-terminated name.
        let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, name.as_ptr()) };
        if handle.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(handle))
    }

    /// Blocks until someone sets the event.
    pub fn wait(&self) {
        // SAFETY: a valid event handle; INFINITE waits for it to be signalled.
        unsafe { WaitForSingleObject(self.0, INFINITE) };
    }
}

/// Sets the event `name` if an agent holds it: `Ok(false)` when none does.
pub fn request_stop(name: &str) -> std::io::Result<bool> {
    let name = wide(name);
    // SAFETY: asks only for the right to set it; a NUL-terminated name.
    let handle = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr()) };
    if handle.is_null() {
        return Ok(false);
    }
    // SAFETY: a valid handle opened with EVENT_MODIFY_STATE.
    let set = unsafe { SetEvent(handle) };
    // SAFETY: the handle came from OpenEventW and is closed once.
    unsafe { CloseHandle(handle) };
    if set == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
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
    fn a_stop_request_reaches_the_holder_and_none_is_made_without_one() {
        let name = r"Local\CertHubAgentTest-stop-1";
        assert!(!request_stop(name).unwrap(), "nobody holds it yet");
        let event = StopEvent::create(name).unwrap();
        let waiter = std::thread::spawn(move || event.wait());
        assert!(request_stop(name).unwrap());
        waiter.join().unwrap();
    }

    #[test]
    fn different_names_do_not_collide() {
        let a = single_instance(r"Local\CertHubAgentTest-mutex-a").unwrap();
        let b = single_instance(r"Local\CertHubAgentTest-mutex-b").unwrap();
        assert!(a.is_some() && b.is_some());
    }
}
