//! Where work goes: one ranking of hosts for actors and providers.
//!
//! The CLI (after an auction), the reconciler (from inventories) and provider
//! placement all ask the same question — which hosts, in which order — and get
//! the same answer from here:
//!
//! 1. only hosts whose labels satisfy the constraints take part ([`labels_match`]);
//! 2. a host serving more of the actor's contracts in-process, through a provider
//!    linked to it, wins: its calls skip a NATS round trip;
//! 3. then a host running fewer replicas of this very actor (spread for
//!    availability: losing one host loses as few replicas as possible);
//! 4. then the least loaded host (replicas of all actors);
//! 5. then name and id, so the choice is the same on every run and every machine.
//!
//! Replicas are dealt round robin in that order, so no host gets a second new
//! replica before every candidate has one.
//!
//! ```
//! use lattice::{id::HostId, placement::{Candidate, spread}};
//!
//! let host = |name: &str, load| Candidate {
//!     host_id: HostId::new(format!("H{name}")).unwrap(),
//!     host_name: name.into(),
//!     load,
//!     running: 0,
//!     local_contracts: 0,
//! };
//! let plan = spread(vec![host("a", 4), host("b", 0)], 3);
//! let names: Vec<_> = plan.iter().map(|(c, n)| (c.host_name.as_str(), *n)).collect();
//! assert_eq!(names, [("b", 2), ("a", 1)]);
//! ```

use std::{cmp::Ordering, collections::BTreeMap};

use crate::{
    ctl::{Bid, HostInfo, HostInventory},
    id::{ActorId, HostId, ProviderId},
};

/// A host as placement weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The host.
    pub host_id: HostId,
    /// Its name, for messages and as a stable tie-breaker.
    pub host_name: String,
    /// Replicas of all actors it runs. Lower wins.
    pub load: u64,
    /// Replicas of the actor being placed that it already runs. Lower wins.
    pub running: u32,
    /// How many of the actor's contracts it serves in-process through a provider
    /// linked to the actor. More wins, over everything else.
    pub local_contracts: u32,
}

impl From<Bid> for Candidate {
    fn from(b: Bid) -> Self {
        Candidate {
            host_id: b.host_id,
            host_name: b.host_name,
            load: b.load,
            running: b.running,
            local_contracts: b.local_contracts,
        }
    }
}

impl Candidate {
    /// A host known from a heartbeat or ping, for placing something it does not
    /// run yet (a provider): only its load counts.
    pub fn from_host(host: &HostInfo) -> Self {
        Candidate {
            host_id: host.id.clone(),
            host_name: host.name.clone(),
            load: host.replicas,
            running: 0,
            local_contracts: 0,
        }
    }

    /// A host known from its inventory, for placing `actor`: the replicas of
    /// `actor` it runs count, and the contracts in `links` (`(contract,
    /// provider id)` pairs linked to the actor) whose provider runs on it.
    pub fn from_inventory(inv: &HostInventory, actor: &ActorId, links: &[(&str, &str)]) -> Self {
        let local = links
            .iter()
            .filter(|(_, provider)| inv.providers.iter().any(|p| p.id == *provider))
            .map(|(contract, _)| *contract)
            .collect::<std::collections::BTreeSet<_>>();
        Candidate {
            running: inv
                .actors
                .iter()
                .find(|a| &a.id == actor)
                .map_or(0, |a| a.replicas),
            local_contracts: local.len() as u32,
            ..Candidate::from_host(&inv.host)
        }
    }

    /// The order of preference: `Less` means `self` is the better host.
    fn rank(&self, other: &Self) -> Ordering {
        other
            .local_contracts
            .cmp(&self.local_contracts)
            .then(self.running.cmp(&other.running))
            .then(self.load.cmp(&other.load))
            .then(self.host_name.cmp(&other.host_name))
            .then(self.host_id.cmp(&other.host_id))
    }
}

/// Whether a host with `labels` satisfies every constraint (exact matches; no
/// constraints match every host).
pub fn labels_match(
    labels: &BTreeMap<String, String>,
    constraints: &BTreeMap<String, String>,
) -> bool {
    constraints.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The candidates best first, each host once.
pub fn ranked(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(Candidate::rank);
    // Sorting by rank does not bring a host's duplicates together (their other
    // fields may differ), so keep the first, best, sighting of each.
    let mut seen = std::collections::BTreeSet::new();
    candidates.retain(|c| seen.insert(c.host_id.clone()));
    candidates
}

/// The one best host, e.g. for a provider; `None` when there is no candidate.
pub fn best(candidates: Vec<Candidate>) -> Option<Candidate> {
    ranked(candidates).into_iter().next()
}

/// Where a provider id runs and may start, among the hosts matching its
/// constraints: an id runs at most once per host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderHosts {
    /// Matching hosts that run it, by name.
    pub running: Vec<Candidate>,
    /// Matching hosts that do not, best (least loaded) first.
    pub free: Vec<Candidate>,
}

/// Splits the hosts of `invs` whose labels match `constraints` into those
/// running provider `id` and those that could start it, best first.
pub fn provider_hosts(
    invs: &[HostInventory],
    id: &ProviderId,
    constraints: &BTreeMap<String, String>,
) -> ProviderHosts {
    let (running, free): (Vec<_>, Vec<_>) = invs
        .iter()
        .filter(|i| labels_match(&i.host.labels, constraints))
        .partition(|i| i.providers.iter().any(|p| &p.id == id));
    let mut running: Vec<_> = running
        .into_iter()
        .map(|i| Candidate::from_host(&i.host))
        .collect();
    running.sort_by(|a, b| (&a.host_name, &a.host_id).cmp(&(&b.host_name, &b.host_id)));
    running.dedup_by(|a, b| a.host_id == b.host_id);
    let mut free = ranked(
        free.into_iter()
            .map(|i| Candidate::from_host(&i.host))
            .collect(),
    );
    free.retain(|c| !running.iter().any(|r| r.host_id == c.host_id));
    ProviderHosts { running, free }
}

/// Deals `count` new replicas over the candidates round robin, best first.
///
/// Returns `(host, replicas)` pairs with at least one replica each, best host
/// first; empty when there are no candidates or `count` is 0.
pub fn spread(candidates: Vec<Candidate>, count: u32) -> Vec<(Candidate, u32)> {
    let hosts = ranked(candidates);
    if hosts.is_empty() || count == 0 {
        return Vec::new();
    }
    let n = hosts.len() as u32;
    hosts
        .into_iter()
        .enumerate()
        .map(|(i, host)| {
            let i = i as u32;
            (host, count / n + u32::from(i < count % n))
        })
        .filter(|(_, r)| *r > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, load: u64) -> Candidate {
        Candidate {
            host_id: HostId::new(format!("H{name}")).unwrap(),
            host_name: name.into(),
            load,
            running: 0,
            local_contracts: 0,
        }
    }

    fn names(plan: &[(Candidate, u32)]) -> Vec<(&str, u32)> {
        plan.iter()
            .map(|(c, r)| (c.host_name.as_str(), *r))
            .collect()
    }

    #[test]
    fn least_loaded_first_and_round_robin() {
        let plan = spread(vec![host("a", 5), host("b", 0), host("c", 2)], 2);
        assert_eq!(names(&plan), [("b", 1), ("c", 1)]);
        let plan = spread(vec![host("a", 0), host("b", 0)], 5);
        assert_eq!(names(&plan), [("a", 3), ("b", 2)]);
    }

    #[test]
    fn nothing_to_place_or_nowhere_to_place() {
        assert!(spread(vec![], 3).is_empty());
        assert!(spread(vec![host("a", 0)], 0).is_empty());
        assert_eq!(best(vec![]), None);
    }

    #[test]
    fn a_local_provider_beats_load_and_spread() {
        let mut near = host("z", 9);
        near.local_contracts = 1;
        near.running = 3;
        let plan = spread(vec![host("a", 0), near], 1);
        assert_eq!(names(&plan), [("z", 1)]);
    }

    #[test]
    fn spread_beats_load() {
        let mut busy_with_it = host("a", 1);
        busy_with_it.running = 1;
        let plan = spread(vec![busy_with_it, host("b", 7)], 1);
        assert_eq!(names(&plan), [("b", 1)]);
    }

    #[test]
    fn ties_break_by_name_then_id_and_hosts_count_once() {
        let mut twin = host("a", 0);
        twin.host_id = HostId::new("HA2").unwrap();
        let plan = spread(vec![twin.clone(), host("a", 0), host("a", 0)], 4);
        let ids: Vec<_> = plan.iter().map(|(c, r)| (c.host_id.as_str(), *r)).collect();
        assert_eq!(ids, [("HA2", 2), ("Ha", 2)]);
        assert_eq!(
            best(vec![host("b", 1), host("c", 1)]).unwrap().host_name,
            "b"
        );
    }

    #[test]
    fn provider_hosts_once_per_host_matching_least_loaded_first() {
        let inv = |name: &str, replicas: u64, zone: &str, runs: bool| -> HostInventory {
            let providers = if runs {
                serde_json::json!([{"id": "http", "name": "builtin:httpserver",
                    "contract": "lattice:httpserver", "location": format!("host {name}"),
                    "health": {"healthy": true}}])
            } else {
                serde_json::json!([])
            };
            serde_json::from_value(serde_json::json!({
                "host": {"id": format!("H{name}"), "name": name, "lattice": "default",
                         "labels": {"zone": zone}, "version": "0", "uptime_secs": 1,
                         "actors": 0, "replicas": replicas},
                "actors": [], "providers": providers
            }))
            .unwrap()
        };
        let invs = [
            inv("a", 0, "x", true),
            inv("b", 5, "x", false),
            inv("c", 1, "x", false),
            inv("d", 0, "y", false),
        ];
        let http = ProviderId::new("http").unwrap();
        let zone_x: BTreeMap<_, _> = [("zone".to_string(), "x".to_string())].into();
        let hosts = provider_hosts(&invs, &http, &zone_x);
        let names = |v: &[Candidate]| v.iter().map(|c| c.host_name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&hosts.running), ["a"]);
        assert_eq!(names(&hosts.free), ["c", "b"]);
        let all = provider_hosts(&invs, &http, &BTreeMap::new());
        assert_eq!(names(&all.free), ["d", "c", "b"]);
    }

    #[test]
    fn constraints() {
        let labels: BTreeMap<_, _> = [("zone".to_string(), "a".to_string())].into();
        let mut c = BTreeMap::new();
        assert!(labels_match(&labels, &c));
        c.insert("zone".to_string(), "a".to_string());
        assert!(labels_match(&labels, &c));
        c.insert("gpu".to_string(), "yes".to_string());
        assert!(!labels_match(&labels, &c));
    }

    #[test]
    fn inventory_counts_replicas_and_distinct_local_contracts() {
        let digest = format!("sha256:{}", "0".repeat(64));
        let inv: HostInventory = serde_json::from_value(serde_json::json!({
            "host": {"id": "Hx", "name": "x", "lattice": "default", "labels": {},
                     "version": "0", "uptime_secs": 1, "actors": 1, "replicas": 4},
            "actors": [{"id": "hello", "digest": digest, "reference": "hello",
                        "replicas": 2, "warm_instances": 0, "calls": 0, "errors": 0,
                        "status": "running"}],
            "providers": [{"id": "kv", "name": "builtin:keyvalue", "contract": "lattice:keyvalue",
                           "location": "host x", "health": {"healthy": true}}]
        }))
        .unwrap();
        let hello = ActorId::new("hello").unwrap();
        let links = [
            ("lattice:keyvalue", "kv"),
            ("lattice:keyvalue", "kv"),
            ("lattice:httpserver", "http"),
        ];
        let c = Candidate::from_inventory(&inv, &hello, &links);
        assert_eq!((c.load, c.running, c.local_contracts), (4, 2, 1));
        let other = Candidate::from_inventory(&inv, &ActorId::new("other").unwrap(), &[]);
        assert_eq!((other.running, other.local_contracts), (0, 0));
    }
}
