//! The configuration loader, `Settings::from_toml_str` (what `Settings::load` runs once the
//! file is read), on fuzzed TOML and `CERTHUB_*` variables: a bad file is a message.
#![no_main]

use certhub::settings::Settings;
use certhub_fuzz::config_decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some(input) = config_decode(input) else {
        return;
    };
    let env = |name: &str| {
        input
            .env
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let _ = Settings::from_toml_str(input.toml, "fuzz.toml", env);
});
