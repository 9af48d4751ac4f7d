//! The NATS subjects of a lattice.
//!
//! | subject | what |
//! |---|---|
//! | `lattice.{lid}.ctl.{op}` | lattice-wide control requests (ping, auctions): scatter-gather |
//! | `lattice.{lid}.ctl.host.{host}.{op}` | requests to one host (start/stop actor, inventory, stop host) |
//! | `lattice.{lid}.evt.{type}` | events, JSON CloudEvents |
//! | `lattice.{lid}.rpc.actor.{actor}` | invocations of an actor, msgpack; queue group = actor id |
//! | `lattice.{lid}.rpc.provider.{provider}` | invocations of a provider, msgpack; queue group = provider id |
//!
//! Actors and providers have separate rpc prefixes so an actor can never answer
//! for a provider (or the reverse) by picking its id, and NATS permissions can
//! let a role call actors without reaching providers.
//!
//! Everything takes already validated ids, so the subjects are always well formed.

use crate::id::{ActorId, HostId, LatticeId, ProviderId};

/// Lattice-wide: every host answers with its [`crate::ctl::HostInfo`].
pub const OP_PING_HOSTS: &str = "ping.hosts";
/// Lattice-wide: every host able to run the actor answers with a [`crate::ctl::Bid`].
pub const OP_AUCTION_ACTOR: &str = "auction.actor";
/// Host-targeted: start replicas of an actor ([`crate::ctl::StartActor`]).
pub const OP_ACTOR_START: &str = "actor.start";
/// Host-targeted: stop an actor ([`crate::ctl::StopActor`]).
pub const OP_ACTOR_STOP: &str = "actor.stop";
/// Host-targeted: set an actor's replicas on the host ([`crate::ctl::ScaleActor`]).
pub const OP_ACTOR_SCALE: &str = "actor.scale";
/// Op: replace an actor's module on one host ([`crate::ctl::UpdateActor`]).
pub const OP_ACTOR_UPDATE: &str = "actor.update";
/// Lattice-wide: every provider answers with its [`crate::ctl::ProviderDescription`].
pub const OP_PING_PROVIDERS: &str = "ping.providers";
/// Host-targeted: start a built-in provider ([`crate::ctl::StartProvider`]).
pub const OP_PROVIDER_START: &str = "provider.start";
/// Host-targeted: stop a provider ([`crate::ctl::StopProvider`]).
pub const OP_PROVIDER_STOP: &str = "provider.stop";
/// Host-targeted: the host's [`crate::ctl::HostInventory`].
pub const OP_INVENTORY: &str = "inventory";
/// Host-targeted: stop the host gracefully.
pub const OP_HOST_STOP: &str = "stop";

/// `lattice.{lid}.ctl.{op}`
pub fn ctl(lattice: &LatticeId, op: &str) -> String {
    format!("lattice.{lattice}.ctl.{op}")
}

/// `lattice.{lid}.ctl.host.{host}.{op}`
pub fn host_ctl(lattice: &LatticeId, host: &HostId, op: &str) -> String {
    format!("lattice.{lattice}.ctl.host.{host}.{op}")
}

/// `lattice.{lid}.ctl.host.{host}.>`: what a host subscribes to.
pub fn host_ctl_all(lattice: &LatticeId, host: &HostId) -> String {
    format!("lattice.{lattice}.ctl.host.{host}.>")
}

/// `lattice.{lid}.evt.{type}`
pub fn event(lattice: &LatticeId, kind: &str) -> String {
    format!("lattice.{lattice}.evt.{kind}")
}

/// `lattice.{lid}.evt.>`: every event of a lattice.
pub fn events_all(lattice: &LatticeId) -> String {
    format!("lattice.{lattice}.evt.>")
}

/// `lattice.{lid}.rpc.actor.{actor}`: where every replica of `actor` listens,
/// queue group [`rpc_queue_group`].
pub fn actor_rpc(lattice: &LatticeId, actor: &ActorId) -> String {
    format!("lattice.{lattice}.rpc.actor.{actor}")
}

/// `lattice.{lid}.rpc.provider.{provider}`: where every instance of a provider
/// listens, queue group = the provider id.
pub fn provider_rpc(lattice: &LatticeId, provider: &ProviderId) -> String {
    format!("lattice.{lattice}.rpc.provider.{provider}")
}

/// The queue group replicas of an actor share, so NATS spreads calls across hosts.
pub fn rpc_queue_group(actor: &ActorId) -> String {
    actor.to_string()
}

/// Name of the JetStream Object Store bucket that holds a lattice's artifacts.
pub fn artifact_bucket(lattice: &LatticeId) -> String {
    format!("LATTICE_{lattice}_artifacts")
}

/// Name of the JetStream KV bucket that holds a lattice's shared state (tags, links, config).
pub fn state_bucket(lattice: &LatticeId) -> String {
    format!("LATTICE_{lattice}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let l = LatticeId::new("prod").unwrap();
        let h = HostId::new("HABC").unwrap();
        assert_eq!(ctl(&l, OP_PING_HOSTS), "lattice.prod.ctl.ping.hosts");
        assert_eq!(
            host_ctl(&l, &h, OP_ACTOR_START),
            "lattice.prod.ctl.host.HABC.actor.start"
        );
        assert_eq!(event(&l, "host_started"), "lattice.prod.evt.host_started");
        assert_eq!(
            actor_rpc(&l, &ActorId::new("hello").unwrap()),
            "lattice.prod.rpc.actor.hello"
        );
        assert_eq!(
            provider_rpc(&l, &ProviderId::new("kv").unwrap()),
            "lattice.prod.rpc.provider.kv"
        );
        assert_eq!(artifact_bucket(&l), "LATTICE_prod_artifacts");
    }
}
