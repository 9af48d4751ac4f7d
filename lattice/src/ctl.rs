//! Control-plane messages (JSON).
//!
//! Requests go to `lattice.{lid}.ctl.*` subjects (see [`crate::subject`]); every
//! reply is a [`CtlReply`]: `{"ok": ...}` or `{"error": "..."}`. JSON keeps
//! `nats sub 'lattice.>'` readable; only the data plane is msgpack.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Error,
    digest::Digest,
    id::{ActorId, ContractId, HostId, LatticeId, LinkName, ProviderId, ProviderRef},
};

/// The reply to every control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlReply<T> {
    /// The request succeeded.
    Ok(T),
    /// The request failed; the message says why and names the input.
    Error(String),
}

impl<T> CtlReply<T> {
    /// Converts into a `Result`, mapping the error message to [`Error::Remote`].
    ///
    /// # Errors
    /// [`Error::Remote`] with the host's message.
    pub fn into_result(self) -> Result<T, Error> {
        match self {
            CtlReply::Ok(v) => Ok(v),
            CtlReply::Error(e) => Err(Error::Remote(e)),
        }
    }
}

impl<T, E: std::fmt::Display> From<Result<T, E>> for CtlReply<T> {
    fn from(r: Result<T, E>) -> Self {
        match r {
            Ok(v) => CtlReply::Ok(v),
            Err(e) => CtlReply::Error(e.to_string()),
        }
    }
}

/// What a host says about itself: the answer to a ping, and part of its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Unique id of this host process.
    pub id: HostId,
    /// Human name (`--name`, or generated).
    pub name: String,
    /// The lattice it belongs to.
    pub lattice: LatticeId,
    /// Labels: user-given plus `os`, `arch`, `hostname`.
    pub labels: BTreeMap<String, String>,
    /// Version of the host software.
    pub version: String,
    /// Seconds since the host started.
    pub uptime_secs: u64,
    /// Number of distinct actors running.
    pub actors: usize,
    /// Total replicas of all actors (the host's load for auctions).
    pub replicas: u64,
}

/// What an actor's code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A core WebAssembly module speaking waPC (`__guest_call`).
    #[default]
    Module,
    /// A WASI 0.2 component (`wasi:http/incoming-handler`).
    Component,
}

impl std::fmt::Display for ActorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActorKind::Module => "module",
            ActorKind::Component => "component",
        })
    }
}

/// State of an actor on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorStatus {
    /// Serving calls.
    Running,
    /// Stopping: no new calls, in-flight calls finishing.
    Stopping,
}

impl std::fmt::Display for ActorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActorStatus::Running => "running",
            ActorStatus::Stopping => "stopping",
        })
    }
}

/// One actor on one host, as listed in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorDescription {
    /// The actor's id.
    pub id: ActorId,
    /// Digest of the module it runs.
    pub digest: Digest,
    /// The reference it was started from (file name, tag or digest).
    pub reference: String,
    /// A waPC module or a component; `module` from hosts older than this field.
    #[serde(default)]
    pub kind: ActorKind,
    /// Replicas on this host: how many calls it may serve at once here.
    pub replicas: u32,
    /// Warm instances kept ready right now.
    pub warm_instances: usize,
    /// Calls served since the actor started on this host (updates included).
    pub calls: u64,
    /// Calls that failed (trap, deadline, actor error, or given up unfinished
    /// because the caller went away) since the actor started on this host.
    pub errors: u64,
    /// Microseconds spent in calls since the actor started on this host: the
    /// difference between two inventories over the difference in `calls` is
    /// the mean latency between them. Zero from hosts older than this field.
    #[serde(default)]
    pub call_time_us: u64,
    /// Running or stopping.
    pub status: ActorStatus,
}

/// Everything a host runs, or one page of it: a host with many actors (ten
/// thousand take about 2.5 MB of JSON) answers in pages that fit the NATS max
/// payload, and [`crate::client::CtlClient::inventory`] asks for the next
/// page while [`HostInventory::next`] is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInventory {
    /// The host itself.
    pub host: HostInfo,
    /// Its actors, sorted by id.
    pub actors: Vec<ActorDescription>,
    /// Its providers, sorted by id (on the first page only).
    #[serde(default)]
    pub providers: Vec<ProviderDescription>,
    /// More actors follow this page: ask again with
    /// [`InventoryRequest::after`] set to this id (the last one listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ActorId>,
}

impl HostInventory {
    /// The page of this inventory that starts after actor `after` (from the
    /// first actor when `None`) and holds as many actors as fit in about
    /// `budget` bytes of JSON, at least one. Providers go on the first page.
    pub fn page(mut self, after: Option<&ActorId>, budget: usize) -> HostInventory {
        let start = match after {
            Some(a) => self.actors.partition_point(|d| &d.id <= a),
            None => 0,
        };
        if after.is_some() {
            self.providers.clear();
        }
        let mut used = serde_json::to_vec(&self.host).map_or(0, |v| v.len())
            + serde_json::to_vec(&self.providers).map_or(0, |v| v.len());
        let mut end = start;
        for d in &self.actors[start..] {
            let size = serde_json::to_vec(d).map_or(0, |v| v.len()) + 1;
            if end > start && used + size > budget {
                break;
            }
            used += size;
            end += 1;
        }
        self.next =
            (end < self.actors.len() && end > start).then(|| self.actors[end - 1].id.clone());
        self.actors.truncate(end);
        self.actors.drain(..start);
        self
    }
}

/// Body of an inventory request; `null` (or `{}`) asks for the first page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRequest {
    /// List actors after this one (the [`HostInventory::next`] of the page before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ActorId>,
}

/// Whether a provider works, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `true` when it serves calls normally.
    pub healthy: bool,
    /// Why not, or a short status.
    #[serde(default)]
    pub message: String,
}

impl Health {
    /// Healthy, no message.
    pub fn ok() -> Self {
        Health {
            healthy: true,
            message: String::new(),
        }
    }
}

/// The state of one link at the provider that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The linked actor.
    pub actor_id: ActorId,
    /// The link name.
    pub link_name: LinkName,
    /// Set when the provider could not apply the link (e.g. port in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A provider, as listed in inventories and by `ctl get providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderDescription {
    /// The provider id (the rpc subject token).
    pub id: ProviderId,
    /// What it is, e.g. `builtin:keyvalue`, or a process provider's own name.
    pub name: String,
    /// The contract it serves.
    pub contract: ContractId,
    /// Where it runs: `host <name>` for built-ins, `process <pid>@<hostname>` otherwise.
    pub location: String,
    /// Its health.
    pub health: Health,
    /// Links it serves.
    #[serde(default)]
    pub links: Vec<LinkStatus>,
}

/// Host-targeted: start a built-in provider in the host process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProvider {
    /// Id to run it under.
    pub provider_id: ProviderId,
    /// What to start: `builtin:keyvalue` (on the wire a string; the `builtin:`
    /// prefix is optional when read).
    pub name: ProviderRef,
}

/// The NATS header every host sets on its control replies, naming itself, so a
/// scatter-gather knows who has answered (an auction's `{"ok": null}` included).
pub const HOST_HEADER: &str = "Lattice-Host";

/// Reply to [`StartProvider`] and [`StopProvider`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAck {
    /// The host.
    pub host_id: HostId,
    /// The host's name.
    pub host_name: String,
    /// The provider id.
    pub provider_id: ProviderId,
    /// The contract it serves.
    pub contract: ContractId,
}

/// Host-targeted: stop a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopProvider {
    /// The provider id.
    pub provider_id: ProviderId,
}

/// Lattice-wide auction: which hosts can take replicas of this actor?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionRequest {
    /// The actor to place.
    pub actor_id: ActorId,
    /// Labels a host must have (all must match exactly).
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Contracts the actor's claims list; hosts that run a linked provider for
    /// them in-process say so in their bid and win.
    #[serde(default)]
    pub contracts: Vec<String>,
}

/// A host's answer to an [`AuctionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The bidding host.
    pub host_id: HostId,
    /// Its name, for messages.
    pub host_name: String,
    /// Its current load: replicas of all actors. Lower wins.
    pub load: u64,
    /// Replicas of this very actor it already runs.
    pub running: u32,
    /// How many of the requested contracts this host serves in-process through
    /// a provider linked to the actor. More wins over less load.
    #[serde(default)]
    pub local_contracts: u32,
}

/// Host-targeted: start (or add) replicas of an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartActor {
    /// Id to run the actor under.
    pub actor_id: ActorId,
    /// Module digest in the lattice's artifact store.
    pub digest: Digest,
    /// The reference the user typed, kept for inventories.
    pub reference: String,
    /// Replicas to add on this host (at least 1).
    pub replicas: u32,
    /// Configuration the actor sees as WASI environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// Reply to [`StartActor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorStarted {
    /// Host that started it.
    pub host_id: HostId,
    /// Host name.
    pub host_name: String,
    /// The actor.
    pub actor_id: ActorId,
    /// Replicas it now has on this host.
    pub replicas: u32,
    /// Whether the module was compiled now (`false`: loaded from the on-disk cache or memory).
    pub compiled: bool,
    /// Milliseconds from request to ready, including fetch and compile.
    pub elapsed_ms: u64,
}

/// Host-targeted: replace the module (and configuration) an actor runs on
/// this host, keeping its replicas. The new module is fetched, checked,
/// compiled and subscribed before the old one stops, so calls never find the
/// actor missing: for a few moments both answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateActor {
    /// The actor, which must already run on the host.
    pub actor_id: ActorId,
    /// The module to run from now on, in the lattice's artifact store.
    pub digest: Digest,
    /// The reference the user typed, kept for inventories.
    pub reference: String,
    /// Configuration the actor sees as WASI environment variables from now
    /// on; absent: the configuration it runs with now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// Reply to [`UpdateActor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorUpdated {
    /// Host that updated it.
    pub host_id: HostId,
    /// Host name.
    pub host_name: String,
    /// The actor.
    pub actor_id: ActorId,
    /// The module it ran before.
    pub from: Digest,
    /// The module it runs now.
    pub to: Digest,
    /// Its replicas on this host (as before).
    pub replicas: u32,
    /// Milliseconds from request to the old module stopped.
    pub elapsed_ms: u64,
}

/// Host-targeted: stop an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopActor {
    /// The actor to stop on this host.
    pub actor_id: ActorId,
}

/// Reply to [`StopActor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorStopped {
    /// Host that stopped it.
    pub host_id: HostId,
    /// The actor.
    pub actor_id: ActorId,
    /// Replicas that were running.
    pub replicas: u32,
}

/// Host-targeted: set the replicas an actor runs on this host, up or down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleActor {
    /// The actor, which must already run on the host.
    pub actor_id: ActorId,
    /// Replicas it should run here: at least 1 (stop it to run none).
    pub replicas: u32,
}

/// Reply to [`ScaleActor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorScaled {
    /// Host that scaled it.
    pub host_id: HostId,
    /// Host name.
    pub host_name: String,
    /// The actor.
    pub actor_id: ActorId,
    /// Replicas before.
    pub before: u32,
    /// Replicas now.
    pub replicas: u32,
}

/// `k=v` pairs joined by `sep`, for labels, constraints and link config in
/// tables and messages.
pub fn format_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    sep: &str,
) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(n: usize) -> HostInventory {
        let host: HostInfo = serde_json::from_value(serde_json::json!({
            "id": "H1", "name": "h", "lattice": "default", "labels": {}, "version": "0",
            "uptime_secs": 0, "actors": n, "replicas": n
        }))
        .expect("host info");
        let actors = (0..n)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "id": format!("a{i:03}"),
                    "digest": format!("sha256:{}", "0".repeat(64)),
                    "reference": "x".repeat(100), "replicas": 1, "warm_instances": 0,
                    "calls": 0, "errors": 0, "status": "running"
                }))
                .expect("actor description")
            })
            .collect();
        HostInventory {
            host,
            actors,
            providers: vec![],
            next: None,
        }
    }

    #[test]
    fn pages_cover_every_actor_once_within_the_budget() {
        let all = inventory(100);
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = all.clone().page(after.as_ref(), 4096);
            let size = serde_json::to_vec(&page).unwrap().len();
            assert!(size <= 4096 + 300, "page of {size} bytes");
            seen.extend(page.actors.iter().map(|a| a.id.clone()));
            pages += 1;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert!(pages > 3, "{pages} pages");
        let want: Vec<_> = all.actors.iter().map(|a| a.id.clone()).collect();
        assert_eq!(seen, want);
        // A budget smaller than one actor still makes progress.
        let tiny = all.clone().page(None, 1);
        assert_eq!(tiny.actors.len(), 1);
        assert_eq!(tiny.next.as_ref().map(|a| a.as_str()), Some("a000"));
        // Past the end: an empty last page.
        let last = all.page(Some(&ActorId::new("a999").unwrap()), 4096);
        assert!(last.actors.is_empty() && last.next.is_none());
    }

    #[test]
    fn reply_shapes() {
        let ok: CtlReply<u32> = Ok::<_, String>(3).into();
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"ok":3}"#);
        let err: CtlReply<u32> = Err::<u32, _>("nope").into();
        assert_eq!(serde_json::to_string(&err).unwrap(), r#"{"error":"nope"}"#);
        assert_eq!(err.into_result().unwrap_err().to_string(), "nope");
    }
}
