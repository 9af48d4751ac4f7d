//! Checks that a module follows the actor ABI before anything runs.
//!
//! wasmtime would also refuse a module with an unknown import, but only at link
//! time and in its own words; we check up front and name what is wrong in terms of
//! the actor ABI.

use wasmtime::{ExternType, Module, ValType};

use crate::error::RuntimeError;

/// Host functions of module `wapc` that actors may import.
pub const WAPC_IMPORTS: &[&str] = &[
    "__guest_request",
    "__guest_response",
    "__guest_error",
    "__host_call",
    "__host_response_len",
    "__host_response",
    "__host_error_len",
    "__host_error",
    "__console_log",
];

/// The WASI preview 1 module name.
pub const WASI_P1: &str = "wasi_snapshot_preview1";

/// Checks the magic bytes, so "not wasm" is said plainly.
///
/// # Errors
/// [`RuntimeError::NotWasm`].
pub fn check_magic(what: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(RuntimeError::NotWasm {
            what: what.into(),
            reason: format!(
                "expected the magic bytes 00 61 73 6d (\"\\0asm\"), found {} ({} bytes in all)",
                if head.is_empty() {
                    "nothing".into()
                } else {
                    head
                },
                bytes.len()
            ),
        });
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(RuntimeError::NotWasm {
            what: what.into(),
            reason: "it is a WebAssembly component or a newer binary version; Lattice actors are core modules built for wasm32-wasip1".into(),
        });
    }
    Ok(())
}

/// Checks exports and imports of a compiled module.
///
/// # Errors
/// [`RuntimeError::BadAbi`] naming the missing export or the unknown import.
pub fn check_abi(what: &str, module: &Module) -> Result<(), RuntimeError> {
    let bad = |reason: String| RuntimeError::BadAbi {
        what: what.into(),
        reason,
    };
    match module.get_export("__guest_call") {
        Some(ExternType::Func(f)) => {
            let params: Vec<_> = f.params().collect();
            let results: Vec<_> = f.results().collect();
            if !(params.len() == 2
                && params.iter().all(|p| matches!(p, ValType::I32))
                && results.len() == 1
                && matches!(results[0], ValType::I32))
            {
                return Err(bad(format!(
                    "export `__guest_call` must have type (i32, i32) -> i32, found {f}"
                )));
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "export `__guest_call` is not a function but {other:?}"
            )));
        }
        None => {
            let hint = if module.get_export("_start").is_some() {
                " (the module looks like a WASI command: build it as a reactor/library, e.g. Go with -buildmode=c-shared, Rust with crate-type = [\"cdylib\"])"
            } else {
                ""
            };
            return Err(bad(format!("missing export `__guest_call`{hint}")));
        }
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(bad("missing export `memory`".into()));
    }
    for import in module.imports() {
        match import.module() {
            "wapc" if WAPC_IMPORTS.contains(&import.name()) => {}
            "wapc" => {
                return Err(bad(format!(
                    "imports `wapc::{}`, which the host does not provide (it provides {})",
                    import.name(),
                    WAPC_IMPORTS.join(", ")
                )));
            }
            WASI_P1 => {}
            other => {
                return Err(bad(format!(
                    "imports `{other}::{}`, but a Lattice host provides only the `wapc` and `{WASI_P1}` modules",
                    import.name()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        let err = check_magic("x.wasm", b"hello world")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a WebAssembly module"), "{err}");
        assert!(err.contains("68 65 6c 6c"), "{err}");
        assert!(
            check_magic("e", b"")
                .unwrap_err()
                .to_string()
                .contains("nothing")
        );
        assert!(check_magic("ok", b"\0asm\x01\0\0\0").is_ok());
        assert!(
            check_magic("c", b"\0asm\x0d\0\x01\0")
                .unwrap_err()
                .to_string()
                .contains("component")
        );
    }
}
