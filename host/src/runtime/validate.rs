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

/// Checks the magic bytes and the version (a core module or a component), so
/// "not wasm" is said plainly.
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
    // A core module (version 1) or a component (version 0xd, layer 1).
    if bytes[4..8] != [1, 0, 0, 0] && bytes[4..8] != [0x0d, 0, 1, 0] {
        return Err(RuntimeError::NotWasm {
            what: what.into(),
            reason: format!(
                "unknown binary version {:02x?}: Lattice runs core modules (version 1, \
                 wasm32-wasip1) and WASI 0.2 components",
                &bytes[4..8]
            ),
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

/// Elements a table may hold (the pooling allocator's slots are this large).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Refuses, before compiling, a module whose memory or table starts larger
/// than an instance may ever be on this host, naming both sizes and the
/// setting: it could never be instantiated, and wasmtime's own message speaks
/// of pooling slots in bytes. Malformed sections are left to the compiler.
///
/// # Errors
/// [`RuntimeError::TooLarge`] with the initial size and the limit.
pub fn check_sizes(what: &str, bytes: &[u8], max_memory_mib: u32) -> Result<(), RuntimeError> {
    use wasmparser::{Parser, Payload};
    let too_big = |reason: String| RuntimeError::TooLarge {
        what: what.into(),
        reason,
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::MemorySection(memories)) => {
                for memory in memories.into_iter().flatten() {
                    let mib = memory.initial.saturating_mul(64) >> 10;
                    if mib > u64::from(max_memory_mib) {
                        return Err(too_big(format!(
                            "its memory starts at {mib} MiB ({} pages of 64 KiB), more than the \
                             {max_memory_mib} MiB an instance may have on this host \
                             (max_memory_mib)",
                            memory.initial
                        )));
                    }
                }
            }
            Ok(Payload::TableSection(tables)) => {
                for table in tables.into_iter().flatten() {
                    if table.ty.initial > MAX_TABLE_ELEMENTS as u64 {
                        return Err(too_big(format!(
                            "its table starts with {} elements, more than the \
                             {MAX_TABLE_ELEMENTS} an instance may have",
                            table.ty.initial
                        )));
                    }
                }
            }
            Ok(Payload::CodeSectionStart { .. }) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Refuses a module built by the standard Go toolchain as a WASI *command*
/// (`go build` without `-buildmode=c-shared`): it exports `_start` and no
/// `_initialize`, and Go's runtime exits when `main` returns, so its exported
/// functions cannot be called afterwards. Checked on the raw bytes, before
/// compiling: Go marks its modules with a `go:buildid` custom section (TinyGo
/// does not, and a TinyGo or C command is left to the usual `_start` path).
///
/// # Errors
/// [`RuntimeError::BadAbi`] saying how to rebuild the module.
pub fn check_go_reactor(what: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    let mut go = false;
    let (mut start, mut initialize) = (false, false);
    for (id, body) in sections(bytes) {
        match id {
            0 => go |= custom_section_name(body) == Some(b"go:buildid".as_slice()),
            7 => {
                for name in export_names(body) {
                    start |= name == b"_start";
                    initialize |= name == b"_initialize";
                }
            }
            _ => {}
        }
    }
    if go && start && !initialize {
        return Err(RuntimeError::BadAbi {
            what: what.into(),
            reason: "it is a Go module built without -buildmode=c-shared: it exports `_start` \
                     (a WASI command, whose runtime exits when main returns) instead of \
                     `_initialize`, so its exported functions cannot be called. Rebuild it as a \
                     reactor: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm ."
                .into(),
        });
    }
    Ok(())
}

/// The top-level sections of a module as (id, body); stops quietly at the
/// first malformed one (compilation reports those).
fn sections(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 8;
    std::iter::from_fn(move || {
        let id = *bytes.get(pos)?;
        pos += 1;
        let len = read_leb_u32(bytes, &mut pos)? as usize;
        let body = bytes.get(pos..pos.checked_add(len)?)?;
        pos += len;
        Some((id, body))
    })
}

fn custom_section_name(body: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    let len = read_leb_u32(body, &mut pos)? as usize;
    body.get(pos..pos.checked_add(len)?)
}

/// The names in an export section body.
fn export_names(body: &[u8]) -> Vec<&[u8]> {
    let mut names = Vec::new();
    let mut pos = 0;
    let Some(count) = read_leb_u32(body, &mut pos) else {
        return names;
    };
    for _ in 0..count {
        let Some(len) = read_leb_u32(body, &mut pos) else {
            break;
        };
        let Some(name) = pos
            .checked_add(len as usize)
            .and_then(|end| body.get(pos..end))
        else {
            break;
        };
        pos += len as usize + 1; // the name, then the export kind byte
        if read_leb_u32(body, &mut pos).is_none() {
            break; // the index
        }
        names.push(name);
    }
    names
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
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
        assert!(check_magic("component", b"\0asm\x0d\0\x01\0").is_ok());
        assert!(
            check_magic("v2", b"\0asm\x02\0\0\0")
                .unwrap_err()
                .to_string()
                .contains("unknown binary version [02, 00, 00, 00]")
        );
    }

    /// A minimal module: exports (function 0 for each name) and optionally
    /// the `go:buildid` custom section Go writes.
    fn module(exports: &[&str], go: bool) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        if go {
            let name = b"go:buildid";
            let mut body = vec![name.len() as u8];
            body.extend_from_slice(name);
            body.extend_from_slice(b"\xff Go build ID");
            m.push(0);
            m.push(body.len() as u8);
            m.extend_from_slice(&body);
        }
        let mut body = vec![exports.len() as u8];
        for e in exports {
            body.push(e.len() as u8);
            body.extend_from_slice(e.as_bytes());
            body.extend_from_slice(&[0, 0]);
        }
        m.push(7);
        m.push(body.len() as u8);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn go_command_modules_are_refused() {
        let cmd = module(&["_start", "__guest_call", "memory"], true);
        let err = check_go_reactor("actor x (x.wasm)", &cmd)
            .unwrap_err()
            .to_string();
        assert!(err.contains("-buildmode=c-shared"), "{err}");
        assert!(err.contains("`_start`"), "{err}");
        assert!(err.starts_with("actor x (x.wasm) does not follow"), "{err}");
        // Go reactors, and commands from other toolchains, pass.
        let reactor = module(&["_initialize", "__guest_call", "memory"], true);
        assert!(check_go_reactor("r", &reactor).is_ok());
        assert!(check_go_reactor("t", &module(&["_start", "__guest_call"], false)).is_ok());
        // Garbage is left to the compiler.
        assert!(check_go_reactor("g", b"\0asm\x01\0\0\0\x07\xff").is_ok());
    }
}
