//! Shared by the Windows tests: the fixtures, a lock for the certificate store, and a way to
//! install a certificate the way a user would, without our import.

use std::ptr;
use std::sync::{Mutex, MutexGuard};

use windows_sys::Win32::Security::Cryptography::{
    CERT_KEY_PROV_INFO_PROP_ID, CERT_STORE_ADD_REPLACE_EXISTING, CRYPT_USER_KEYSET,
    CertAddCertificateContextToStore, CertCloseStore, CertEnumCertificatesInStore,
    CertGetCertificateContextProperty, PFXImportCertStore,
};

use super::store::{open_my_store, remove_with_key};
use super::wide;

/// e-CNPJ, OpenSSL 3 default (AES-256, PBKDF2), with the CA in the chain; password `1234`.
pub const ECNPJ_AES: &[u8] = include_bytes!("../../../tests/fixtures/pfx/ecnpj-aes.pfx");
pub const ECNPJ_AES_PASSWORD: &str = "1234";
pub const ECNPJ_AES_THUMBPRINT: &str = "7B3C178DEC16A243F74032D95D4D542955C5A8D3";
/// e-CNPJ, legacy RC2/3DES; password `abc123`.
pub const ECNPJ_LEGACY: &[u8] =
    include_bytes!("../../../tests/fixtures/pfx/ecnpj-octet-legacy.pfx");
pub const ECNPJ_LEGACY_PASSWORD: &str = "abc123";
pub const ECNPJ_LEGACY_THUMBPRINT: &str = "DB46F02EB4A5795F5608DBE334C1166D44571444";
/// e-CPF with a non-ASCII password.
pub const ECPF_UTF8: &[u8] = include_bytes!("../../../tests/fixtures/pfx/ecpf-utf8.pfx");
pub const ECPF_UTF8_PASSWORD: &str = "sénha-ção";
pub const ECPF_THUMBPRINT: &str = "8E83D2C56C984A846059FE1CB44FF67873B9D005";
/// A certificate without its private key; password `1234`.
pub const ECNPJ_NOKEY: &[u8] = include_bytes!("../../../tests/fixtures/pfx/ecnpj-nokey.pfx");
/// The e-CNPJ of `ECNPJ_AES` with an empty password.
pub const ECNPJ_EMPTY_PASSWORD: &[u8] =
    include_bytes!("../../../tests/fixtures/pfx/ecnpj-empty-password.pfx");
/// The e-CNPJ of `ECNPJ_AES` re-exported by Java keytool (AES-256, PBKDF2-SHA256).
pub const KEYTOOL_AES: &[u8] = include_bytes!("../../../tests/fixtures/pfx/keytool-aes.p12");
pub const KEYTOOL_AES_PASSWORD: &str = "chave-java";
/// The e-CPF without a MAC.
pub const ECPF_NOMAC: &[u8] = include_bytes!("../../../tests/fixtures/pfx/ecpf-nomac.pfx");
pub const ECPF_NOMAC_PASSWORD: &str = "nomac123";
/// Two private keys in one keystore (keytool).
pub const TWO_KEYS: &[u8] = include_bytes!("../../../tests/fixtures/pfx/two-keys.p12");
pub const TWO_KEYS_PASSWORD: &str = "senha123";
/// The first certificate of `TWO_KEYS`, the one Wine imports.
const TWO_KEYS_FIRST_THUMBPRINT: &str = "F6BC0D9518795A08070D006A6A1EFB2EF4349008";

static STORE: Mutex<()> = Mutex::new(());

/// Serialises the tests that touch CurrentUser `MY` and key containers (Wine keeps every
/// imported key in one container, so two imports at once would trample each other), and
/// starts each from a store without the fixtures.
pub fn lock_store() -> MutexGuard<'static, ()> {
    let guard = STORE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for thumbprint in [
        ECNPJ_AES_THUMBPRINT,
        ECNPJ_LEGACY_THUMBPRINT,
        ECPF_THUMBPRINT,
        TWO_KEYS_FIRST_THUMBPRINT,
    ] {
        remove_with_key(thumbprint).expect("clean the store before the test");
    }
    guard
}

/// Running under Wine (its registry has `HKLM\Software\Wine`).
pub fn is_wine() -> bool {
    use windows_sys::Win32::System::Registry::{
        HKEY_LOCAL_MACHINE, KEY_READ, RegCloseKey, RegOpenKeyExW,
    };
    let path = wide(r"Software\Wine");
    let mut key = ptr::null_mut();
    // SAFETY: a NUL-terminated path and an out-pointer to a local.
    let found =
        unsafe { RegOpenKeyExW(HKEY_LOCAL_MACHINE, path.as_ptr(), 0, KEY_READ, &mut key) } == 0;
    if found {
        // SAFETY: just opened.
        unsafe { RegCloseKey(key) };
    }
    found
}

/// Installs a PFX into `MY` the way a user double-clicking it would (exportable or not is
/// theirs to choose; here the defaults), without going through `import_non_exportable`.
pub fn install_like_a_user(pfx: &[u8], password: &str) {
    let password = wide(password);
    let blob = windows_sys::Win32::Security::Cryptography::CRYPT_INTEGER_BLOB {
        cbData: pfx.len() as u32,
        pbData: pfx.as_ptr() as *mut u8,
    };
    let my = open_my_store().unwrap();
    // SAFETY: the blob and password outlive the calls; every context is freed by the
    // enumeration or below, and the temporary store is closed.
    unsafe {
        let imported = PFXImportCertStore(&blob, password.as_ptr(), CRYPT_USER_KEYSET);
        assert!(!imported.is_null(), "the user's import failed");
        let mut cert = CertEnumCertificatesInStore(imported, ptr::null());
        while !cert.is_null() {
            let mut size = 0;
            let has_key = CertGetCertificateContextProperty(
                cert,
                CERT_KEY_PROV_INFO_PROP_ID,
                ptr::null_mut(),
                &mut size,
            ) != 0;
            if has_key {
                let ok = CertAddCertificateContextToStore(
                    my.raw(),
                    cert,
                    CERT_STORE_ADD_REPLACE_EXISTING,
                    ptr::null_mut(),
                );
                assert!(ok != 0, "the user's add to MY failed");
            }
            cert = CertEnumCertificatesInStore(imported, cert);
        }
        CertCloseStore(imported, 0);
    }
}

/// Under Wine, the CryptoAPI key containers that no certificate in `MY` points to: keys a
/// failed import or a removal left behind. Always empty on Windows.
pub fn wine_orphan_key_containers() -> Vec<String> {
    let used: Vec<String> = super::store::list_my_certificates()
        .unwrap()
        .into_iter()
        .filter_map(|c| c.key.map(|k| k.container))
        .collect();
    wine_key_containers()
        .into_iter()
        .filter(|c| !used.iter().any(|u| u.eq_ignore_ascii_case(c)))
        .collect()
}

/// Under Wine, the CryptoAPI key containers (`HKCU\Software\Wine\Crypto\RSA\<name>`), read
/// from the registry rather than through CryptoAPI. Always empty on Windows, where containers
/// are files.
pub fn wine_key_containers() -> Vec<String> {
    use windows_sys::Win32::System::Registry::{
        HKEY_CURRENT_USER, KEY_READ, RegCloseKey, RegEnumKeyExW, RegOpenKeyExW,
    };
    let path = wide(r"Software\Wine\Crypto\RSA");
    let mut key = ptr::null_mut();
    // SAFETY: a NUL-terminated path and an out-pointer to a local.
    if unsafe { RegOpenKeyExW(HKEY_CURRENT_USER, path.as_ptr(), 0, KEY_READ, &mut key) } != 0 {
        return Vec::new();
    }
    let mut containers = Vec::new();
    for index in 0.. {
        let mut name = [0u16; 256];
        let mut len = name.len() as u32;
        // SAFETY: an open key and a buffer of `len` UTF-16 units.
        let status = unsafe {
            RegEnumKeyExW(
                key,
                index,
                name.as_mut_ptr(),
                &mut len,
                ptr::null(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if status != 0 {
            break;
        }
        containers.push(String::from_utf16_lossy(&name[..len as usize]));
    }
    // SAFETY: opened above.
    unsafe { RegCloseKey(key) };
    containers
}

/// Windows need a desktop: under Wine without `DISPLAY` (os error 1400) the tray and window
/// tests print SKIPPED instead. The screenshot script (scripts/agent-screenshots.sh) is the
/// real UI check; `xvfb-run cargo test ...` runs these.
pub fn has_display(what: &str) -> bool {
    if std::env::var_os("DISPLAY").is_some() || !is_wine() {
        return true;
    }
    println!("SKIPPED: no DISPLAY (run under xvfb-run for the {what} tests)");
    false
}
