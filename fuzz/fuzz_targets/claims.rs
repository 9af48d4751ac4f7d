//! The claims custom section of an uploaded module: unsigned JSON or a signed
//! token, and the token text on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lattice::claims::read(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lattice::claims::token::Token::decode(text);
    }
});
