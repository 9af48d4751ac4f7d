//! Links: which provider serves an actor's contract, under which link name, with
//! what configuration.
//!
//! Links live in the lattice's KV bucket (key [`LinkDefinition::key`]), so a host
//! or provider that starts later, on any machine, gets them by watching
//! [`KEY_PREFIX`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::{ActorId, ContractId, LinkName, ProviderId};

/// KV keys of links start with this.
pub const KEY_PREFIX: &str = "link.";

/// The link name used when none is given (and for `""` in `__host_call`);
/// it belongs with [`LinkName`](crate::id::LinkName).
pub use crate::id::DEFAULT_LINK_NAME;

/// One link: (actor, contract, link name) → provider, with config values.
///
/// Every id is typed and checked when the link is parsed (JSON in the KV
/// bucket, a manifest, a CLI argument), so a stored link with a bad id fails to
/// decode rather than reaching a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDefinition {
    /// The actor allowed to use the provider.
    pub actor_id: ActorId,
    /// The provider id that serves the contract for it.
    pub provider_id: ProviderId,
    /// The contract, e.g. `lattice:keyvalue`.
    pub contract: ContractId,
    /// The link name, so an actor can use two providers of one contract.
    pub link_name: LinkName,
    /// Provider-specific settings, e.g. `address=0.0.0.0:8080`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl LinkDefinition {
    /// The KV key: `link.{actor}.{contract with ':' as '='}.{link name}`.
    pub fn key(&self) -> String {
        key(&self.actor_id, &self.contract, &self.link_name)
    }
}

/// The KV key of the link (actor, contract, link name). KV keys cannot hold `:`,
/// so the contract's `:` is written `=`.
pub fn key(actor: &ActorId, contract: &ContractId, link_name: &LinkName) -> String {
    format!(
        "{KEY_PREFIX}{actor}.{}.{link_name}",
        contract.as_str().replace(':', "=")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_validation() {
        let l = LinkDefinition {
            actor_id: ActorId::new("counter").unwrap(),
            provider_id: ProviderId::new("kv").unwrap(),
            contract: ContractId::new("lattice:keyvalue").unwrap(),
            link_name: LinkName::default_name(),
            config: BTreeMap::new(),
        };
        assert_eq!(l.key(), "link.counter.lattice=keyvalue.default");
        // The JSON shape is the one of plain strings, and bad ids fail to decode,
        // naming the part.
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "actor_id": "counter",
                "provider_id": "kv",
                "contract": "lattice:keyvalue",
                "link_name": "default",
                "config": {},
            })
        );
        assert_eq!(
            serde_json::from_value::<LinkDefinition>(json.clone()).unwrap(),
            l
        );
        let mut bad = json.clone();
        bad["link_name"] = "a.b".into();
        assert!(
            serde_json::from_value::<LinkDefinition>(bad)
                .unwrap_err()
                .to_string()
                .contains("link name")
        );
        let mut bad = json;
        bad["contract"] = "keyvalue".into();
        assert!(
            serde_json::from_value::<LinkDefinition>(bad)
                .unwrap_err()
                .to_string()
                .contains("contract id")
        );
    }
}
