//! Names of lattices, hosts and actors.
//!
//! Ids become NATS subject tokens (`lattice.{lid}.rpc.{actor}`), so they must not
//! contain `.`, `*`, `>` or whitespace. We go further and allow only
//! `[A-Za-z0-9_-]`, which is also what JetStream bucket names accept.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest id we accept; keeps subjects and bucket names well under server limits.
pub const MAX_ID_LEN: usize = 128;

/// Checks that `value` is usable as an id of the given kind.
///
/// # Errors
/// [`Error::InvalidId`] naming the kind, the value and the rule it broke.
pub fn validate(kind: &'static str, value: &str) -> Result<(), Error> {
    let fail = |reason| {
        Err(Error::InvalidId {
            kind,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("must not be empty");
    }
    if value.len() > MAX_ID_LEN {
        return fail("must be at most 128 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail("may contain only ASCII letters, digits, '-' and '_'");
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            ///
            /// # Errors
            /// [`Error::InvalidId`] if the value is empty, too long or has a character
            /// that is not allowed in a subject token.
            pub fn new(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self, Error> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(value: &str) -> Result<Self, Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Hashes and compares exactly like the inner `String`, so maps keyed by
        // the id can be looked up with a plain `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of a lattice. Several lattices can share one NATS cluster without
    /// seeing each other's subjects or buckets.
    LatticeId,
    "lattice id"
);
id_type!(
    /// The id of a host process, unique per `lattice up`.
    HostId,
    "host id"
);
id_type!(
    /// The user-chosen id of an actor (`hello`, `counter`), shared by all its replicas.
    ActorId,
    "actor id"
);

impl Default for LatticeId {
    fn default() -> Self {
        LatticeId("default".to_string())
    }
}

impl HostId {
    /// Generates a fresh, random host id (`H` + 32 hex digits).
    pub fn generate() -> Self {
        HostId(format!("H{}", uuid::Uuid::new_v4().simple()).to_uppercase())
    }

    /// The first 8 characters after the `H`, for tables where width matters.
    pub fn short(&self) -> &str {
        let end = self.0.len().min(9);
        &self.0[..end]
    }
}

/// Generates a friendly host name such as `brave-otter-4821`.
///
/// Names are for people; uniqueness is only likely, the [`HostId`] is the real key.
pub fn generate_host_name() -> String {
    const ADJ: &[&str] = &[
        "amber", "brave", "calm", "deft", "eager", "fair", "gentle", "hardy", "keen", "lucid",
        "merry", "nimble", "proud", "quiet", "rapid", "swift", "tidy", "vivid", "wise", "zesty",
    ];
    const NOUN: &[&str] = &[
        "badger", "crane", "dingo", "eagle", "ferret", "gecko", "heron", "ibis", "jackal", "koala",
        "lemur", "marten", "newt", "otter", "puffin", "quail", "raven", "stoat", "tapir", "wren",
    ];
    let n = uuid::Uuid::new_v4().as_u128();
    format!(
        "{}-{}-{:04}",
        ADJ[(n % ADJ.len() as u128) as usize],
        NOUN[((n >> 16) % NOUN.len() as u128) as usize],
        (n >> 32) % 10_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        assert!(ActorId::new("hello").is_ok());
        assert!(ActorId::new("kv-counter_2").is_ok());
        assert_eq!(LatticeId::default().as_str(), "default");
    }

    #[test]
    fn rejects_subject_breakers() {
        for bad in ["", "a.b", "a*", "a>", "a b", "ünï", &"x".repeat(129)] {
            let err = ActorId::new(bad).unwrap_err().to_string();
            assert!(err.contains("invalid actor id"), "{err}");
        }
    }

    #[test]
    fn host_ids_are_unique_and_valid() {
        let a = HostId::generate();
        let b = HostId::generate();
        assert_ne!(a, b);
        assert!(HostId::new(a.as_str()).is_ok());
        assert_eq!(a.short().len(), 9);
    }

    #[test]
    fn serde_validates() {
        let ok: ActorId = serde_json::from_str("\"hello\"").unwrap();
        assert_eq!(ok.as_str(), "hello");
        assert!(serde_json::from_str::<ActorId>("\"a.b\"").is_err());
    }
}
