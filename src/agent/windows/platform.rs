//! The agent's [`Platform`] on Windows: the device secrets under DPAPI, CurrentUser `MY` as the
//! certificate store, HKCU Run, the "CertHub Cleanup 18h" task, the session mutex and the
//! tray's balloons. Each method is a thin adapter over one function of this module's siblings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveTime;

use super::keys::{KeyLocation, KeyStorage};
use super::{acl, app, dpapi, mutex, paths, registry, store, task};
use crate::agent::config::{ConfigError, DataDir, DeviceSecrets, Secrets, write_atomic};
use crate::agent::pairing::pair_with;
use crate::agent::platform::{InstanceGuard, Platform};
use crate::agent::runtime::Agent;
use crate::agent::store::{CertStore, Installed, Removal, StoreError};
use crate::agent::task_xml::{CLEANUP_TASK_NAME, render_cleanup_task};
use crate::crypto::SecretString;

/// The runbook's name for the installed agent.
pub const INSTALLED_EXE: &str = "Certhub.Agent.exe";

/// DPAPI's optional entropy: another program of the same user must also know it to unprotect
/// `secrets.dat` with `CryptUnprotectData`.
const SECRETS_ENTROPY: &[u8] = b"CertHub agent device secrets v1";

pub struct Windows;

struct SessionGuard(#[allow(dead_code)] mutex::InstanceGuard);

// SAFETY: the guard only holds a mutex handle, which any thread may close.
unsafe impl Send for SessionGuard {}

impl InstanceGuard for SessionGuard {}

impl Platform for Windows {
    fn single_instance(&self) -> Result<Option<Box<dyn InstanceGuard>>, String> {
        mutex::single_instance(mutex::AGENT_MUTEX_NAME)
            .map(|g| g.map(|g| Box::new(SessionGuard(g)) as Box<dyn InstanceGuard>))
            .map_err(|e| format!("cannot create the session mutex: {e}"))
    }

    fn secrets(&self, dir: &DataDir) -> Box<dyn Secrets> {
        Box::new(DpapiSecrets {
            path: dir.secrets(),
        })
    }

    fn store(&self, _dir: &DataDir) -> Box<dyn CertStore> {
        Box::new(CurrentUserMy)
    }

    fn notify(&self, title: &str, message: &str) {
        crate::agent::log::info(format!("{title}: {message}"));
        app::balloon(title, message);
    }

    fn set_autostart(&self, enabled: bool) -> Result<(), String> {
        if enabled {
            let exe = installed_exe().or_else(|_| current_exe())?;
            registry::set_run_at_logon(&format!("\"{}\" run", exe.display()))
                .map_err(|e| format!("HKCU Run: {e}"))
        } else {
            registry::remove_run_at_logon()
                .map(|_| ())
                .map_err(|e| format!("HKCU Run: {e}"))
        }
    }

    fn install_exe(&self) -> Result<PathBuf, String> {
        let target = installed_exe()?;
        let running = current_exe()?;
        if same_file(&running, &target) {
            return Ok(target);
        }
        if let Some(dir) = target.parent() {
            owned_folder(dir)?;
        }
        // Through a temporary name, so a crash never leaves half an executable in place.
        let partial = target.with_extension("exe.partial");
        std::fs::copy(&running, &partial)
            .and_then(|_| std::fs::rename(&partial, &target))
            .map_err(|e| format!("cannot copy the agent to {}: {e}", target.display()))?;
        Ok(target)
    }

    fn remove_exe(&self) -> Result<(), String> {
        let target = installed_exe()?;
        if same_file(&current_exe()?, &target) {
            // why: Windows cannot delete a running executable; the folder stays until the next
            // uninstall from the downloaded copy.
            crate::agent::log::info(format!("{} is running; left in place", target.display()));
            return Ok(());
        }
        match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", target.display()))
            }
            _ => Ok(()),
        }
    }

    fn install_cleanup_task(&self, exe: &Path, cleanup_time: &str) -> Result<(), String> {
        let at = NaiveTime::parse_from_str(cleanup_time, "%H:%M")
            .map_err(|_| format!("cleanup_time {cleanup_time:?} is not HH:MM"))?;
        task::create_task_from_xml(
            CLEANUP_TASK_NAME,
            &render_cleanup_task(&exe.display().to_string(), at),
        )
        .map_err(|e| format!("scheduled task {CLEANUP_TASK_NAME:?}: {e}"))
    }

    fn remove_cleanup_task(&self) -> Result<(), String> {
        // Uninstalling twice (or without `install`) is not an error.
        if !task::task_exists(CLEANUP_TASK_NAME) {
            return Ok(());
        }
        task::delete_task(CLEANUP_TASK_NAME)
            .map_err(|e| format!("scheduled task {CLEANUP_TASK_NAME:?}: {e}"))
    }

    fn has_tray(&self) -> bool {
        true
    }

    fn stop_running_agent(&self) -> Result<bool, String> {
        let asked = mutex::request_stop(mutex::STOP_EVENT_NAME)
            .map_err(|e| format!("cannot ask the running agent to stop: {e}"))?;
        if !asked {
            return Ok(false);
        }
        // Stopped once the session's instance mutex is free.
        for _ in 0..60 {
            if mutex::single_instance(mutex::AGENT_MUTEX_NAME)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Ok(true);
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        Err("the running agent did not stop within 15 s: close it from the tray (Sair) and run uninstall again".into())
    }

    fn stop_when_asked(&self) {
        match mutex::StopEvent::create(mutex::STOP_EVENT_NAME) {
            Ok(event) => {
                std::thread::spawn(move || {
                    event.wait();
                    crate::agent::log::info("Stopped: the agent is being uninstalled");
                    std::process::exit(0);
                });
            }
            Err(e) => crate::agent::log::warn(format!("No stop event for uninstall: {e}")),
        }
    }

    fn offer_pairing(&self, dir: &DataDir) -> bool {
        loop {
            let Ok(Some(request)) = super::ui::show_pair_dialog("") else {
                return false;
            };
            match pair_with(dir, self, request) {
                Ok(_) => return true,
                // The dialog comes back for another try; the reason is in the log.
                Err(message) => crate::agent::log::warn(format!("Pairing failed: {message}")),
            }
        }
    }

    fn run_tray(&self, agent: Arc<Agent>) {
        let dir = agent.dir.clone();
        if let Err(e) = app::run(&dir, self, agent) {
            crate::agent::log::error(e);
        }
    }
}

fn current_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the running agent: {e}"))
}

/// `%ProgramData%\CertHubAgent\publish\Certhub.Agent.exe`, where the runbook looks.
fn installed_exe() -> Result<PathBuf, String> {
    paths::publish_dir()
        .map(|d| d.join(INSTALLED_EXE))
        .ok_or_else(|| "%ProgramData% is not set".to_owned())
}

/// Makes `publish` and its parent (`%ProgramData%\CertHubAgent`) with a protected DACL (this
/// user, SYSTEM, Administrators), or uses them when they are already this user's (their DACL
/// made protected again) or an administrator's; refuses a folder another account made.
fn owned_folder(publish: &Path) -> Result<(), String> {
    use crate::agent::install_folder::{may_install_into, protected_sddl};
    let user = acl::current_user_sid().map_err(|e| format!("who am I: {e}"))?;
    let sddl = protected_sddl(&user);
    let folders = [publish.parent(), Some(publish)];
    for folder in folders.into_iter().flatten() {
        let shown = folder.display().to_string();
        let made = acl::create_dir_with(folder, &sddl)
            .map_err(|e| format!("cannot create {shown}: {e}"))?;
        if made {
            continue;
        }
        let owner = acl::owner_sid(folder).map_err(|e| format!("owner of {shown}: {e}"))?;
        may_install_into(&shown, &owner, &user).map_err(|e| e.to_string())?;
        if owner.eq_ignore_ascii_case(&user) {
            acl::protect(folder, &sddl).map_err(|e| format!("permissions of {shown}: {e}"))?;
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `secrets.dat`: the device token and X25519 secret, protected with DPAPI (CurrentUser, with
/// an entropy value) and written atomically.
struct DpapiSecrets {
    path: PathBuf,
}

impl Secrets for DpapiSecrets {
    fn load(&self) -> Result<Option<DeviceSecrets>, ConfigError> {
        let blob = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let damaged = |reason: String| ConfigError::Damaged {
            path: self.path.clone(),
            reason,
        };
        let plain = dpapi::unprotect(&blob, SECRETS_ENTROPY).map_err(|e| {
            damaged(format!(
                "DPAPI cannot open it ({e}): was it copied from another user or PC? Pair again"
            ))
        })?;
        DeviceSecrets::decode(&plain).map(Some).map_err(damaged)
    }

    fn save(&self, secrets: &DeviceSecrets) -> Result<(), ConfigError> {
        let blob =
            dpapi::protect(&secrets.encode(), SECRETS_ENTROPY).map_err(|e| ConfigError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!("DPAPI: {e}")),
            })?;
        write_atomic(&self.path, &blob)
    }

    fn clear(&self) -> Result<(), ConfigError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ConfigError::Io {
                path: self.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// CurrentUser `MY` through [`store`]: imports non-exportable, removes with the key.
struct CurrentUserMy;

/// `Installed::key_name` on Windows: enough to delete the key if its certificate is gone.
fn encode_key(key: &KeyLocation) -> String {
    format!(
        "{}|{}|{}|{}",
        key.storage.as_str(),
        key.provider_type,
        key.provider,
        key.container
    )
}

fn decode_key(text: &str) -> Option<KeyLocation> {
    let mut parts = text.splitn(4, '|');
    let storage = match parts.next()? {
        "CNG" => KeyStorage::Cng,
        "CAPI" => KeyStorage::Capi,
        _ => return None,
    };
    Some(KeyLocation {
        storage,
        provider_type: parts.next()?.parse().ok()?,
        provider: parts.next()?.to_owned(),
        container: parts.next()?.to_owned(),
        key_spec: 0,
    })
}

fn to_agent_error(e: store::StoreError) -> StoreError {
    match e {
        store::StoreError::WrongPassword => StoreError::WrongPassword,
        store::StoreError::KeyExportable => StoreError::KeyExportable,
        store::StoreError::AlreadyInstalled => StoreError::AlreadyInstalled,
        store::StoreError::NotInstalledByAgent => StoreError::NotInstalledByAgent,
        store::StoreError::InvalidThumbprint => StoreError::InvalidThumbprint,
        e @ store::StoreError::ImportRefused { .. } => StoreError::ImportRefused(e.to_string()),
        e => StoreError::StoreRefused(e.to_string()),
    }
}

impl CertStore for CurrentUserMy {
    fn install(
        &self,
        pfx: &[u8],
        password: &SecretString,
        friendly_name: &str,
    ) -> Result<Installed, StoreError> {
        let imported = store::import_non_exportable(pfx, password.expose(), friendly_name)
            .map_err(to_agent_error)?;
        // Verify what the store now holds: the certificate, with its key, which refuses export.
        let found = store::find_by_thumbprint(&imported.thumbprint).map_err(to_agent_error)?;
        let installed = Installed {
            thumbprint: imported.thumbprint.clone(),
            key_storage: imported.key_storage.as_str().to_owned(),
            key_name: encode_key(&imported.key),
            mark: imported.mark.clone(),
        };
        let verified = match found {
            Some(f) if f.has_private_key => store::key_refuses_export(&imported.thumbprint)
                .map_err(to_agent_error)
                .and_then(|refuses| refuses.then_some(()).ok_or(StoreError::KeyExportable)),
            _ => Err(StoreError::StoreRefused(
                "the certificate or its key is not in CurrentUser\\My after the import".into(),
            )),
        };
        if let Err(e) = verified {
            let _ = store::remove_with_key(&imported.thumbprint);
            return Err(e);
        }
        Ok(installed)
    }

    fn contains(&self, thumbprint: &str) -> Result<bool, StoreError> {
        store::find_by_thumbprint(thumbprint)
            .map(|f| f.is_some())
            .map_err(to_agent_error)
    }

    fn remove_with_key(&self, record: &Installed) -> Result<Removal, StoreError> {
        let outcome = store::remove_if_owned(&record.thumbprint, |mark, key| {
            record.owns(mark, key.map(encode_key).as_deref())
        })
        .map_err(to_agent_error)?;
        let key_deleted = if outcome.certificate_removed {
            outcome.key_deleted
        } else {
            // The certificate was already gone (a removal interrupted, or by hand): its key too.
            match decode_key(&record.key_name) {
                Some(key) => store::delete_orphan_key(&key).map_err(to_agent_error)?,
                None => true,
            }
        };
        Ok(Removal {
            was_present: outcome.certificate_removed,
            key_deleted,
        })
    }

    fn thumbprint_of(
        &self,
        pfx: &[u8],
        password: &SecretString,
    ) -> Result<Option<String>, StoreError> {
        store::pfx_thumbprint(pfx, password.expose())
            .map(Some)
            .map_err(to_agent_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::windows::test_support::*;
    use crate::crypto::DeviceSecretKey;

    #[test]
    fn secrets_are_dpapi_protected_and_come_back() {
        let dir = std::env::temp_dir().join(format!("certhub-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = Windows.secrets(&DataDir::new(&dir));
        assert!(secrets.load().unwrap().is_none());
        let key = DeviceSecretKey::generate();
        let public = key.public_key().to_base64();
        let device = DeviceSecrets {
            device_token: SecretString::new("token-de-teste-123".into()),
            key,
        };
        secrets.save(&device).unwrap();
        let raw = std::fs::read(dir.join("secrets.dat")).unwrap();
        assert!(
            !raw.windows(18).any(|w| w == b"token-de-teste-123"),
            "the token is not in clear on disk"
        );
        let back = secrets.load().unwrap().unwrap();
        assert_eq!(back.device_token.expose(), "token-de-teste-123");
        assert_eq!(back.key.public_key().to_base64(), public);
        // A blob DPAPI did not make for this entropy is refused with a clear error.
        std::fs::write(
            dir.join("secrets.dat"),
            dpapi::protect(b"x", b"other").unwrap(),
        )
        .unwrap();
        assert!(matches!(secrets.load(), Err(ConfigError::Damaged { .. })));
        secrets.clear().unwrap();
        assert!(secrets.load().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_store_installs_verifies_and_removes_with_the_key() {
        let _store = lock_store();
        let my = CurrentUserMy;
        let password = SecretString::new(ECNPJ_AES_PASSWORD.into());
        assert_eq!(
            my.thumbprint_of(ECNPJ_AES, &password).unwrap().as_deref(),
            Some(ECNPJ_AES_THUMBPRINT)
        );
        let installed = my
            .install(ECNPJ_AES, &password, "CertHub · EMPRESA X LTDA · até 18:00")
            .unwrap();
        assert_eq!(installed.thumbprint, ECNPJ_AES_THUMBPRINT);
        assert!(my.contains(ECNPJ_AES_THUMBPRINT).unwrap());
        let key = decode_key(&installed.key_name).unwrap();
        assert!(super::super::keys::key_exists(&key));
        let removal = my.remove_with_key(&installed).unwrap();
        assert!(removal.was_present && removal.key_deleted);
        assert!(!my.contains(ECNPJ_AES_THUMBPRINT).unwrap());
        assert!(!super::super::keys::key_exists(&key));
        // Again: absent counts as removed, and the key is still gone.
        let again = my.remove_with_key(&installed).unwrap();
        assert!(!again.was_present && again.key_deleted);
        let wrong = my.install(ECNPJ_AES, &SecretString::new("errada".into()), "x");
        assert!(matches!(
            wrong,
            Err(StoreError::WrongPassword | StoreError::ImportRefused(_))
        ));
    }
}
