//! Links: which provider serves an actor's contract, under which link name, with
//! what configuration.
//!
//! Links live in the lattice's KV bucket (key [`LinkDefinition::key`]), so a host
//! or provider that starts later, on any machine, gets them by watching
//! [`KEY_PREFIX`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, claims::validate_contract_id, id::ActorId};

/// KV keys of links start with this.
pub const KEY_PREFIX: &str = "link.";

/// The link name used when none is given (and for `""` in `__host_call`).
pub const DEFAULT_LINK_NAME: &str = "default";

/// One link: (actor, contract, link name) → provider, with config values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDefinition {
    /// The actor allowed to use the provider.
    pub actor_id: ActorId,
    /// The provider id that serves the contract for it.
    pub provider_id: String,
    /// The contract, e.g. `lattice:keyvalue`.
    pub contract: String,
    /// The link name, so an actor can use two providers of one contract.
    pub link_name: String,
    /// Provider-specific settings, e.g. `address=0.0.0.0:8080`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl LinkDefinition {
    /// Checks every part.
    ///
    /// # Errors
    /// [`Error::InvalidId`] naming the bad part.
    pub fn validate(&self) -> Result<(), Error> {
        crate::id::validate("provider id", &self.provider_id)?;
        crate::id::validate("link name", &self.link_name)?;
        validate_contract_id(&self.contract)
    }

    /// The KV key: `link.{actor}.{contract with ':' as '='}.{link name}`.
    pub fn key(&self) -> String {
        key(&self.actor_id, &self.contract, &self.link_name)
    }
}

/// The KV key of the link (actor, contract, link name). KV keys cannot hold `:`,
/// so the contract's `:` is written `=`.
pub fn key(actor: &ActorId, contract: &str, link_name: &str) -> String {
    format!(
        "{KEY_PREFIX}{actor}.{}.{link_name}",
        contract.replace(':', "=")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_validation() {
        let l = LinkDefinition {
            actor_id: ActorId::new("counter").unwrap(),
            provider_id: "kv".into(),
            contract: "lattice:keyvalue".into(),
            link_name: DEFAULT_LINK_NAME.into(),
            config: BTreeMap::new(),
        };
        assert_eq!(l.key(), "link.counter.lattice=keyvalue.default");
        assert!(l.validate().is_ok());
        let bad = LinkDefinition {
            link_name: "a.b".into(),
            ..l.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("link name")
        );
        let bad = LinkDefinition {
            contract: "keyvalue".into(),
            ..l
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("contract id")
        );
    }
}
