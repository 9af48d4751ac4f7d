//! Claims: what an actor module says about itself, which contracts and which
//! other actors it may call.
//!
//! Claims live in a custom section named [`SECTION`] of the module, so they
//! travel with the bytes (and their digest) wherever the module goes. The
//! section holds either
//!
//! * plain JSON of [`Claims`] (unsigned: whoever can push a module can claim
//!   anything), or
//! * a signed token ([`token`]): the claims, the issuer's public key and the
//!   sha256 of the module without its claims section, signed with ed25519 by
//!   the issuer, the shape wasmCloud's `wascap` uses. A host with an issuer
//!   policy ([`token::IssuerPolicy`]) runs only modules signed by an allowed
//!   issuer whose bytes did not change after signing.
//!
//! A WASI 0.2 component carries its claims the same way: a top-level custom
//! section (components frame their sections like modules do).
//!
//! An actor without claims may call no contract and no other actor.

pub mod token;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Name of the custom section holding the claims.
pub const SECTION: &str = "lattice:claims";

/// In [`Claims::actors`]: the actor may call every actor.
pub const ANY_ACTOR: &str = "*";

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
    /// Ids of the actors this actor may call; `*` stands for every actor.
    #[serde(default)]
    pub actors: Vec<String>,
}

impl Claims {
    /// Whether the actor may call `contract`.
    pub fn allows(&self, contract: &str) -> bool {
        self.contracts.iter().any(|c| c == contract)
    }

    /// Whether the actor may call the actor `target` (listed by id, or `*`).
    pub fn allows_actor(&self, target: &str) -> bool {
        self.actors.iter().any(|a| a == ANY_ACTOR || a == target)
    }

    /// Checks names: a non-empty name, contract ids of the form `namespace:name`,
    /// actor ids (or `*`).
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
        for a in &self.actors {
            if a != ANY_ACTOR {
                crate::id::ActorId::new(a.as_str())?;
            }
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
    // A core module (version 1) or a component (version 0xd, layer 1): both
    // frame their top-level sections the same way, custom sections included.
    if wasm[4..8] != [1, 0, 0, 0] && wasm[4..8] != [0x0d, 0, 1, 0] {
        return Err(not_wasm(format!(
            "unknown binary version {:02x?}: neither a core module nor a WASI 0.2 component",
            &wasm[4..8]
        )));
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

/// What a module's claims section holds: plain JSON or a signed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    /// Unsigned JSON claims.
    Unsigned(Claims),
    /// A signed token, decoded but not verified (see [`token::Token::verify`]).
    Signed(token::Token),
}

impl Embedded {
    /// The claims, signed or not.
    pub fn claims(&self) -> &Claims {
        match self {
            Embedded::Unsigned(c) => c,
            Embedded::Signed(t) => &t.body.claims,
        }
    }

    /// The claims, signed or not.
    pub fn into_claims(self) -> Claims {
        match self {
            Embedded::Unsigned(c) => c,
            Embedded::Signed(t) => t.body.claims,
        }
    }
}

/// The raw contents of the claims section; `Ok(None)` when there is none.
fn section_data(wasm: &[u8]) -> Result<Option<&[u8]>, Error> {
    for s in sections(wasm)? {
        if s.id != 0 {
            continue;
        }
        if let Some((SECTION, data)) = custom_name(s.body) {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Reads what the claims section holds, without verifying a signature;
/// `Ok(None)` when the module has no claims.
///
/// A section whose first non-blank byte is `{` is unsigned JSON; anything else
/// must be a token.
///
/// # Errors
/// [`Error::Codec`] when the bytes are neither a module nor a component, or the section is
/// neither valid JSON claims nor a well-formed token.
pub fn read_embedded(wasm: &[u8]) -> Result<Option<Embedded>, Error> {
    let Some(data) = section_data(wasm)? else {
        return Ok(None);
    };
    let bad = |reason: String| Error::Codec {
        action: "decode",
        what: format!("the {SECTION} custom section"),
        reason,
    };
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        let claims: Claims = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        return Ok(Some(Embedded::Unsigned(claims)));
    }
    let text = std::str::from_utf8(data)
        .map_err(|_| bad("neither JSON claims nor a claims token (not UTF-8)".into()))?;
    let token = token::Token::decode(text.trim()).map_err(|e| bad(e.to_string()))?;
    Ok(Some(Embedded::Signed(token)))
}

/// Reads the claims of a module, signed or not, without verifying a
/// signature; `Ok(None)` when it has none.
///
/// # Errors
/// [`Error::Codec`] when the bytes are neither a module nor a component, or the claims
/// section does not decode.
pub fn read(wasm: &[u8]) -> Result<Option<Claims>, Error> {
    Ok(read_embedded(wasm)?.map(Embedded::into_claims))
}

/// Returns `wasm` without its claims section(s); every other section stays in
/// place, byte for byte.
///
/// # Errors
/// [`Error::Codec`] when the bytes are neither a core module nor a component.
pub fn strip(wasm: &[u8]) -> Result<Vec<u8>, Error> {
    let secs = sections(wasm)?;
    let mut out = Vec::with_capacity(wasm.len());
    out.extend_from_slice(&wasm[..8]);
    for s in &secs {
        let is_claims = s.id == 0 && matches!(custom_name(s.body), Some((SECTION, _)));
        if !is_claims {
            out.extend_from_slice(&wasm[s.range.clone()]);
        }
    }
    Ok(out)
}

/// The hex sha256 of the module without its claims section: the subject a
/// claims token is signed for, unchanged by re-signing or replacing claims.
///
/// # Errors
/// [`Error::Codec`] when the bytes are neither a core module nor a component.
pub fn module_hash(wasm: &[u8]) -> Result<String, Error> {
    use sha2::Digest as _;
    Ok(hex::encode(sha2::Sha256::digest(strip(wasm)?)))
}

/// Returns `wasm` without claims, with a claims section holding `data` appended.
fn with_section(wasm: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = strip(wasm)?;
    let mut body = Vec::with_capacity(data.len() + SECTION.len() + 5);
    write_leb_u32(&mut body, SECTION.len() as u32);
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(data);
    out.push(0);
    write_leb_u32(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Returns `wasm` with its claims replaced by unsigned `claims` (any existing
/// claims section, signed or not, is removed; the new one is appended).
///
/// # Errors
/// [`Error::Codec`] when the bytes are neither a core module nor a component; [`Error::InvalidId`] when
/// the claims are invalid.
pub fn embed(wasm: &[u8], claims: &Claims) -> Result<Vec<u8>, Error> {
    claims.validate()?;
    let json = serde_json::to_vec(claims).map_err(|e| Error::Codec {
        action: "encode",
        what: "claims".into(),
        reason: e.to_string(),
    })?;
    with_section(wasm, &json)
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
            actors: vec!["pricing".into(), ANY_ACTOR.into()],
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
    fn components_carry_claims_like_modules() {
        // The empty component: magic, version 0x0d, layer 1.
        let component = b"\0asm\x0d\0\x01\0";
        let claims = Claims {
            name: "web".into(),
            contracts: vec!["lattice:keyvalue".into()],
            ..Claims::default()
        };
        let with = embed(component, &claims).unwrap();
        assert!(with.starts_with(component));
        assert_eq!(read(&with).unwrap(), Some(claims));
        assert_eq!(strip(&with).unwrap(), component.to_vec());
        let err = read(b"\0asm\x02\0\0\0").unwrap_err().to_string();
        assert!(err.contains("unknown binary version"), "{err}");
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
            actors: vec![],
        };
        let err = embed(TINY, &bad).unwrap_err().to_string();
        assert!(err.contains("invalid contract id"), "{err}");
        assert!(
            embed(TINY, &Claims::default())
                .unwrap_err()
                .to_string()
                .contains("claims name")
        );
        let bad_actor = Claims {
            name: "x".into(),
            actors: vec!["no spaces".into()],
            ..Claims::default()
        };
        let err = embed(TINY, &bad_actor).unwrap_err().to_string();
        assert!(err.contains("no spaces"), "{err}");
    }

    #[test]
    fn actor_list() {
        let c = Claims {
            name: "f".into(),
            actors: vec!["pricing".into()],
            ..Claims::default()
        };
        assert!(c.allows_actor("pricing"));
        assert!(!c.allows_actor("inventory"));
        let any = Claims {
            actors: vec![ANY_ACTOR.into()],
            ..c
        };
        assert!(any.allows_actor("inventory"));
        assert!(!Claims::default().allows_actor("pricing"));
        let old: Claims = serde_json::from_str(r#"{"name":"old","contracts":[]}"#).unwrap();
        assert!(
            old.actors.is_empty(),
            "claims from before actor lists call no actor"
        );
    }

    #[test]
    fn strip_and_hash_ignore_the_claims() {
        let c = Claims {
            name: "kv".into(),
            ..Claims::default()
        };
        let with = embed(TINY, &c).unwrap();
        assert_eq!(strip(&with).unwrap(), TINY);
        assert_eq!(module_hash(&with).unwrap(), module_hash(TINY).unwrap());
        let mut other = TINY.to_vec();
        *other.last_mut().unwrap() = 8;
        assert_ne!(module_hash(&other).unwrap(), module_hash(TINY).unwrap());
    }
}
