//! `pkcs12::open` (PKCS#12, then X.509 and the ICP-Brasil fields) and `pkcs12::describe` on
//! a bare certificate: any input is a value or an error, never a panic.
#![no_main]

use certhub::certificates::pkcs12;
use certhub_fuzz::{Pkcs12Input, pkcs12_decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let info = match pkcs12_decode(input) {
        Some(Pkcs12Input::Pfx { password, data }) => pkcs12::open(data, &password),
        Some(Pkcs12Input::Certificate(der)) => pkcs12::describe(der),
        None => return,
    };
    if let Ok(info) = info {
        // What ingest stores: the thumbprint is a SHA-1 in hex, the documents are digits.
        assert_eq!(info.sha1.len(), 40);
        assert!(info.cnpj.iter().all(|c| c.as_str().len() == 14));
        assert!(info.cpf.iter().all(|c| c.as_str().len() == 11));
    }
});
