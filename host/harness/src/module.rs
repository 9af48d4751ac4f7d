//! What the C and Go builds share: reading an example's claims from its
//! Makefile, and turning a compiler's output into the final module.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lattice::claims::{self, Claims};

/// The claims of an actor's Makefile, `dir/Makefile`; `None` when there is no
/// Makefile or it sets no `NAME`.
pub(crate) fn read_makefile_claims(dir: &Path) -> Result<Option<Claims>> {
    match std::fs::read_to_string(dir.join("Makefile")) {
        Ok(text) => makefile_claims(&text)
            .with_context(|| format!("reading the claims in {}/Makefile", dir.display())),
        Err(_) => Ok(None),
    }
}

/// The claims in a Makefile's text: its `NAME`, `VERSION`, `CONTRACTS` and
/// `ACTORS` variables (`:=`, `=` or `?=`). `None` when there is no `NAME`.
pub(crate) fn makefile_claims(text: &str) -> Result<Option<Claims>> {
    let Some(name) = makefile_var(text, "NAME") else {
        return Ok(None);
    };
    let claims = Claims {
        name,
        version: makefile_var(text, "VERSION").unwrap_or_default(),
        contracts: makefile_var(text, "CONTRACTS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        actors: makefile_var(text, "ACTORS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    claims.validate()?;
    Ok(Some(claims))
}

/// The value of the first one-line assignment (`:=`, `=`, `?=` or `+=`) to
/// `wanted` in a Makefile's text, trimmed; no expansion.
pub(crate) fn makefile_var(text: &str, wanted: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let key = key.trim_end_matches([':', '?', '+']).trim();
        (key == wanted).then(|| value.trim().to_owned())
    })
}

/// Embeds `claims` (if any) into the compiler's output at `tmp` and moves it to
/// `out` atomically, so concurrent test processes never see half a module.
pub(crate) fn finish_module(
    name: &str,
    tmp: &Path,
    out: PathBuf,
    claims: Option<&Claims>,
) -> Result<PathBuf> {
    let bytes = std::fs::read(tmp).with_context(|| format!("reading {}", tmp.display()))?;
    let bytes = match claims {
        Some(claims) => claims::embed(&bytes, claims)
            .with_context(|| format!("embedding the claims of {name}"))?,
        None => bytes,
    };
    std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(tmp, &out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_come_from_the_makefile() {
        let text = "# comment\nNAME      := echo-c\nVERSION ?= 1.2.3\nCONTRACTS := lattice:httpserver  lattice:keyvalue\nCFLAGS := -O2 -DX=1\n";
        let claims = makefile_claims(text).unwrap().unwrap();
        assert_eq!(claims.name, "echo-c");
        assert_eq!(claims.version, "1.2.3");
        assert_eq!(claims.contracts, ["lattice:httpserver", "lattice:keyvalue"]);
        assert!(claims.actors.is_empty());
        assert_eq!(makefile_claims("CFLAGS := -O2\n").unwrap(), None);
        let claims = makefile_claims("NAME := f\nACTORS := pricing *\n")
            .unwrap()
            .unwrap();
        assert_eq!(claims.actors, ["pricing", "*"]);
        assert!(makefile_claims("NAME := f\nACTORS := a.b\n").is_err());
        let err = makefile_claims("NAME := x\nCONTRACTS := keyvalue\n").unwrap_err();
        assert!(format!("{err:#}").contains("keyvalue"), "{err:#}");
        let text = "NAME      := kvcounter-go\nVERSION   := 0.1.0\nCONTRACTS := lattice:keyvalue lattice:httpserver\nGO ?= go\n";
        let claims = makefile_claims(text).unwrap().unwrap();
        assert_eq!(claims.name, "kvcounter-go");
        assert_eq!(claims.contracts, ["lattice:keyvalue", "lattice:httpserver"]);
        assert_eq!(makefile_claims("GO ?= go\n").unwrap(), None);
    }
}
