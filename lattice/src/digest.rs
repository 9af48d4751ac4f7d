//! Content addresses of artifacts: `sha256:<64 hex digits>`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// The sha256 digest of an artifact (an actor module), written `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

const PREFIX: &str = "sha256:";

impl Digest {
    /// Computes the digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("{PREFIX}{}", hex::encode(Sha256::digest(bytes))))
    }

    /// Parses `sha256:<64 hex>`.
    ///
    /// # Errors
    /// [`Error::InvalidId`] when the prefix or the hex part is wrong.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidId {
            kind: "digest",
            value: s.to_string(),
            reason,
        };
        let hex_part = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("must start with \"sha256:\""))?;
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("must be \"sha256:\" followed by 64 hex digits"));
        }
        Ok(Digest(s.to_ascii_lowercase()))
    }

    /// The hex part, usable in file names and object names.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    /// The full `sha256:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(d.short(), "ba7816bf8f01");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Digest::parse("md5:abc").is_err());
        assert!(Digest::parse("sha256:xyz").is_err());
    }
}
