//! Claims: what an actor module says about itself, and which contracts it may use.
//!
//! Claims are JSON in a custom section named [`SECTION`] of the module, so they
//! travel with the bytes (and their digest) wherever the module goes. An actor
//! without claims may call no contract. Claims are not signed yet: anyone who can
//! push a module can claim anything; signing with ed25519 is planned.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Name of the custom section holding the claims.
pub const SECTION: &str = "lattice:claims";

/// The claims of an actor module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Claims {
    /// Human name of the actor.
    pub name: String,
    /// Version string, free form.
    #[serde(default)]
    pub version: String,
    /// Contract ids the actor may call, e.g. `lattice:keyvalue`.
    #[serde(default)]
    pub contracts: Vec<String>,
}

impl Claims {
    /// Whether the actor may call `contract`.
    pub fn allows(&self, contract: &str) -> bool {
        self.contracts.iter().any(|c| c == contract)
    }

    /// Checks names: a non-empty name, contract ids of the form `namespace:name`.
    ///
    /// # Errors
    /// [`Error::InvalidId`] naming the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.name.trim().is_empty() {
            return Err(Error::InvalidId {
                kind: "claims name",
                value: self.name.clone(),
                reason: "must not be empty",
            });
        }
        for c in &self.contracts {
            validate_contract_id(c)?;
        }
        Ok(())
    }
}

/// Checks a contract id: `namespace:name`, each part `[a-z0-9_-]+`.
///
/// # Errors
/// [`Error::InvalidId`].
pub fn validate_contract_id(id: &str) -> Result<(), Error> {
    crate::id::ContractId::new(id).map(|_| ())
}

fn not_wasm(reason: impl Into<String>) -> Error {
    Error::Codec {
        action: "read",
        what: "WebAssembly module".into(),
        reason: reason.into(),
    }
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Result<u32, Error> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| not_wasm("truncated LEB128 number"))?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| not_wasm("LEB128 number too large"));
        }
    }
    Err(not_wasm("LEB128 number too long"))
}

fn write_leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One top-level section: id, and the byte range of the whole section.
struct Section<'a> {
    id: u8,
    range: std::ops::Range<usize>,
    body: &'a [u8],
}

fn sections(wasm: &[u8]) -> Result<Vec<Section<'_>>, Error> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(not_wasm("missing the \\0asm magic bytes"));
    }
    if wasm[4..8] != [1, 0, 0, 0] {
        return Err(not_wasm(
            "not a core module (version 1); components are not actors",
        ));
    }
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < wasm.len() {
        let start = pos;
        let id = wasm[pos];
        pos += 1;
        let len = read_leb_u32(wasm, &mut pos)? as usize;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= wasm.len())
            .ok_or_else(|| not_wasm(format!("section at byte {start} runs past the end")))?;
        out.push(Section {
            id,
            range: start..end,
            body: &wasm[pos..end],
        });
        pos = end;
    }
    Ok(out)
}

fn custom_name(body: &[u8]) -> Option<(&str, &[u8])> {
    let mut pos = 0;
    let len = read_leb_u32(body, &mut pos).ok()? as usize;
    let name = std::str::from_utf8(body.get(pos..pos + len)?).ok()?;
    Some((name, &body[pos + len..]))
}

/// Reads the claims of a module; `Ok(None)` when it has none.
///
/// # Errors
/// [`Error::Codec`] when the bytes are not a core wasm module or the claims are not
/// valid JSON.
pub fn read(wasm: &[u8]) -> Result<Option<Claims>, Error> {
    for s in sections(wasm)? {
        if s.id != 0 {
            continue;
        }
        if let Some((SECTION, data)) = custom_name(s.body) {
            let claims: Claims = serde_json::from_slice(data).map_err(|e| Error::Codec {
                action: "decode",
                what: format!("the {SECTION} custom section"),
                reason: e.to_string(),
            })?;
            return Ok(Some(claims));
        }
    }
    Ok(None)
}

/// Returns `wasm` with its claims replaced by `claims` (any existing claims
/// section is removed; the new one is appended).
///
/// # Errors
/// [`Error::Codec`] when the bytes are not a core module; [`Error::InvalidId`] when
/// the claims are invalid.
pub fn embed(wasm: &[u8], claims: &Claims) -> Result<Vec<u8>, Error> {
    claims.validate()?;
    let secs = sections(wasm)?;
    let mut out = Vec::with_capacity(wasm.len() + 256);
    out.extend_from_slice(&wasm[..8]);
    for s in &secs {
        let is_claims = s.id == 0 && matches!(custom_name(s.body), Some((SECTION, _)));
        if !is_claims {
            out.extend_from_slice(&wasm[s.range.clone()]);
        }
    }
    let json = serde_json::to_vec(claims).map_err(|e| Error::Codec {
        action: "encode",
        what: "claims".into(),
        reason: e.to_string(),
    })?;
    let mut body = Vec::new();
    write_leb_u32(&mut body, SECTION.len() as u32);
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(&json);
    out.push(0);
    write_leb_u32(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // (module (memory (export "memory") 1)) plus a name-less custom section "x"
    const TINY: &[u8] =
        b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01\x07\x0a\x01\x06memory\x02\x00\x00\x03\x01x\x07";

    #[test]
    fn embed_then_read_round_trips_and_replaces() {
        assert_eq!(read(TINY).unwrap(), None);
        let c = Claims {
            name: "kv".into(),
            version: "1.0".into(),
            contracts: vec!["lattice:keyvalue".into()],
        };
        let with = embed(TINY, &c).unwrap();
        assert_eq!(read(&with).unwrap(), Some(c.clone()));
        assert!(with.starts_with(TINY), "other sections are kept in place");
        let c2 = Claims {
            contracts: vec![],
            ..c
        };
        let again = embed(&with, &c2).unwrap();
        assert_eq!(read(&again).unwrap(), Some(c2));
        assert_eq!(again.len(), with.len() - "lattice:keyvalue".len() - 2);
    }

    #[test]
    fn bad_input() {
        assert!(read(b"not wasm at all").is_err());
        assert!(
            read(b"\0asm\x01\0\0\0\x01\x7f").is_err(),
            "truncated section"
        );
        let bad = Claims {
            name: "x".into(),
            version: String::new(),
            contracts: vec!["keyvalue".into()],
        };
        let err = embed(TINY, &bad).unwrap_err().to_string();
        assert!(err.contains("invalid contract id"), "{err}");
        assert!(
            embed(TINY, &Claims::default())
                .unwrap_err()
                .to_string()
                .contains("claims name")
        );
    }
}
