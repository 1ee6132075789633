//! Windows handles the agent owns, each closed or freed when dropped: an open certificate store
//! and a reference to a certificate context.

use windows_sys::Win32::Security::Cryptography::{
    CERT_CONTEXT, CertCloseStore, CertFreeCertificateContext, HCERTSTORE,
};

/// An open certificate store, closed on drop.
pub(super) struct Store(pub(super) HCERTSTORE);

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle came from CertOpenStore/PFXImportCertStore and is closed once.
        unsafe { CertCloseStore(self.0, 0) };
    }
}

#[cfg(test)]
impl Store {
    pub(super) fn raw(&self) -> HCERTSTORE {
        self.0
    }
}

/// A certificate context we own a reference to, freed on drop.
pub(super) struct Cert(pub(super) *const CERT_CONTEXT);

impl Cert {
    pub(super) fn as_ptr(&self) -> *const CERT_CONTEXT {
        self.0
    }

    /// Gives up ownership without freeing (for calls that free the context themselves).
    pub(super) fn into_raw(self) -> *const CERT_CONTEXT {
        let p = self.0;
        std::mem::forget(self);
        p
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        // SAFETY: we own one reference to this context.
        unsafe { CertFreeCertificateContext(self.0) };
    }
}
