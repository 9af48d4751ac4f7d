//! App manifests: TOML from users, and JSON records read back from KV.
#![no_main]

use lattice::app::{DeployedApp, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = Manifest::from_toml(text) {
            let _ = m.link_definitions();
        }
    }
    let _ = serde_json::from_slice::<DeployedApp>(data);
});
