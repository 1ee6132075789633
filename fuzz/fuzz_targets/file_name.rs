//! `file_name::parse`, the password in an office's file name: any name gives a display name,
//! maybe a password, and a redacted form, never a panic.
#![no_main]

use certhub::certificates::file_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &str| {
    let parsed = file_name::parse(name);
    if let Some(password) = &parsed.password {
        let password = password.expose();
        assert!(!password.is_empty());
        assert!(!password.contains(char::is_whitespace));
        assert!(parsed.redacted.contains("***"));
        assert!(name.contains(password));
    } else {
        assert_eq!(parsed.redacted, name);
    }
});
