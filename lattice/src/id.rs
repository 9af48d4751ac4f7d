//! Names of lattices, hosts, actors, providers and contracts.
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
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        /// Like the string's: `"hello"`, so `{:?}` in a message quotes the id.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

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

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
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

id_type!(
    /// The id of a running provider (`kv`, `http`): links name it, and every
    /// instance of it in the lattice shares its rpc subject and queue group.
    ProviderId,
    "provider id"
);
id_type!(
    /// The name of a link (`default`, `cache`), so one actor can use two
    /// providers of the same contract.
    LinkName,
    "link name"
);

/// The link name used when none is given (and for `""` in `__host_call`).
pub const DEFAULT_LINK_NAME: &str = "default";

impl LinkName {
    /// The link name used when none is given (and for `""` in `__host_call`).
    pub fn default_name() -> Self {
        LinkName(DEFAULT_LINK_NAME.to_string())
    }
}

/// A capability contract id, `namespace:name` (`lattice:keyvalue`): what an actor's
/// claims list and a provider serves.
///
/// Both parts are `[a-z0-9_-]+`; the `:` is what tells a contract from an actor id,
/// which may not contain one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContractId(String);

/// Like the string's: `"lattice:keyvalue"`.
impl fmt::Debug for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl ContractId {
    /// Validates and wraps a contract id.
    ///
    /// # Errors
    /// [`Error::InvalidId`] unless the value looks like `namespace:name`.
    pub fn new(value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= MAX_ID_LEN
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        match value.split_once(':') {
            Some((ns, name)) if ok_part(ns) && ok_part(name) => Ok(ContractId(value)),
            _ => Err(Error::InvalidId {
                kind: "contract id",
                value,
                reason: "must look like namespace:name, e.g. lattice:keyvalue (lowercase letters, digits, '-', '_')",
            }),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContractId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::new(value)
    }
}

impl std::str::FromStr for ContractId {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self, Error> {
        Self::new(value)
    }
}

impl From<ContractId> for String {
    fn from(id: ContractId) -> String {
        id.0
    }
}

impl PartialEq<str> for ContractId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ContractId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl AsRef<str> for ContractId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ContractId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// What provider implementation to start: today a provider built into the host,
/// written `builtin:NAME` (`builtin:keyvalue`). Parsed here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderRef {
    name: String,
}

impl ProviderRef {
    /// The prefix of built-in provider references.
    pub const BUILTIN_PREFIX: &'static str = "builtin:";

    /// Parses `builtin:NAME`.
    ///
    /// # Errors
    /// [`Error::InvalidId`] when the reference has no `builtin:` prefix or the name
    /// is not a valid id.
    pub fn parse(reference: &str) -> Result<Self, Error> {
        match reference.strip_prefix(Self::BUILTIN_PREFIX) {
            Some(name) => Self::builtin(name),
            None => Err(Error::InvalidId {
                kind: "provider reference",
                value: reference.to_string(),
                reason: "is not supported: use builtin:httpserver or builtin:keyvalue, or run your own provider process with the lattice-provider SDK",
            }),
        }
    }

    /// A built-in provider by its bare name, `builtin:` prefix optional.
    ///
    /// # Errors
    /// [`Error::InvalidId`] when the name is not a valid id.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let name = name.strip_prefix(Self::BUILTIN_PREFIX).unwrap_or(name);
        validate("built-in provider name", name)?;
        Ok(ProviderRef {
            name: name.to_string(),
        })
    }

    /// The bare built-in name (`keyvalue`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::BUILTIN_PREFIX, self.name)
    }
}

impl TryFrom<String> for ProviderRef {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::builtin(&value)
    }
}

impl std::str::FromStr for ProviderRef {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self, Error> {
        Self::parse(value)
    }
}

impl From<ProviderRef> for String {
    fn from(r: ProviderRef) -> String {
        r.to_string()
    }
}

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
    fn contract_ids() {
        assert!(ContractId::new("lattice:keyvalue").is_ok());
        for bad in [
            "keyvalue",
            "lattice:",
            ":kv",
            "Lattice:kv",
            "a:b:c",
            "a.b:c",
        ] {
            let err = ContractId::new(bad).unwrap_err().to_string();
            assert!(err.contains("invalid contract id"), "{bad}: {err}");
        }
    }

    #[test]
    fn provider_refs() {
        let r = ProviderRef::parse("builtin:keyvalue").unwrap();
        assert_eq!(r.name(), "keyvalue");
        assert_eq!(r.to_string(), "builtin:keyvalue");
        assert_eq!(ProviderRef::builtin("keyvalue").unwrap(), r);
        assert_eq!(ProviderRef::builtin("builtin:keyvalue").unwrap(), r);
        let err = ProviderRef::parse("oci://x").unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
        assert!(ProviderRef::parse("builtin:a.b").is_err());
        // On the wire it is the string, prefix optional when read.
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"builtin:keyvalue\"");
        assert_eq!(
            serde_json::from_str::<ProviderRef>("\"keyvalue\"").unwrap(),
            r
        );
    }

    #[test]
    fn debug_is_the_strings() {
        assert_eq!(format!("{:?}", ProviderId::new("kv").unwrap()), "\"kv\"");
        assert_eq!(
            format!("{:?}", ContractId::new("lattice:keyvalue").unwrap()),
            "\"lattice:keyvalue\""
        );
    }

    #[test]
    fn serde_validates() {
        let ok: ActorId = serde_json::from_str("\"hello\"").unwrap();
        assert_eq!(ok.as_str(), "hello");
        assert!(serde_json::from_str::<ActorId>("\"a.b\"").is_err());
    }
}
