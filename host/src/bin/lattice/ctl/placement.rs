//! Which hosts a command acts on: a host named on the command line, the
//! winners of an auction with replicas spread over them, or the least loaded
//! host matching constraints.

use std::collections::BTreeMap;

use anyhow::bail;
use lattice::{
    client::CtlClient,
    ctl::{AuctionRequest, HostInventory},
    id::{ActorId, HostId, ProviderId},
    placement::{self, Candidate},
};
use lattice_host::config::ConnectConfig;

/// Accepts a host id as is (an unknown one fails on use with "no host with id"),
/// and looks names up.
pub(super) async fn resolve_host(ctl: &CtlClient, id_or_name: &str) -> anyhow::Result<HostId> {
    if id_or_name.starts_with('H') && id_or_name.len() == 33 {
        return Ok(HostId::new(id_or_name)?);
    }
    Ok(ctl.resolve_host(id_or_name).await?)
}

/// Where `count` replicas of `actor_id` start, as (host id, host name as
/// shown, replicas): spread over the hosts that bid in an auction (matching
/// `constraints`, able to serve `contracts`). (`--host` skips the auction.)
pub(super) async fn actor_replicas(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    actor_id: &ActorId,
    contracts: Vec<String>,
    count: u32,
    constraints: &[(String, String)],
) -> anyhow::Result<Vec<(HostId, String, u32)>> {
    let constraints: BTreeMap<_, _> = constraints.iter().cloned().collect();
    let bids = ctl
        .auction_actor(
            &AuctionRequest {
                actor_id: actor_id.clone(),
                constraints: constraints.clone(),
                contracts,
            },
            crate::gather_window(connect),
        )
        .await?;
    if bids.is_empty() {
        if constraints.is_empty() {
            bail!(
                "no hosts answered the auction in lattice {:?} (start one with `lattice up`)",
                ctl.lattice().as_str()
            );
        }
        bail!(
            "no host in lattice {:?} matches the constraints {}",
            ctl.lattice().as_str(),
            lattice::ctl::format_pairs(&constraints, ", ")
        );
    }
    Ok(
        placement::spread(bids.into_iter().map(Candidate::from).collect(), count)
            .into_iter()
            .map(|(c, n)| (c.host_id, c.host_name, n))
            .collect(),
    )
}

/// The hosts a built-in provider starts on, as (host id, host name as shown):
/// `host` when given, else the `count` best (least loaded) hosts whose labels
/// match `constraints` and that do not run `provider` yet (an id runs once per
/// host); an error naming the shortfall when fewer are available.
pub(super) async fn provider_hosts(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    provider: &ProviderId,
    host: Option<&str>,
    count: u32,
    constraints: Vec<(String, String)>,
) -> anyhow::Result<Vec<(HostId, String)>> {
    if let Some(h) = host {
        return Ok(vec![(resolve_host(ctl, h).await?, h.to_string())]);
    }
    let constraints: BTreeMap<_, _> = constraints.into_iter().collect();
    let invs = ctl.inventories(crate::gather_window(connect)).await?;
    let hosts = placement::provider_hosts(&invs, provider, &constraints);
    let matching = if constraints.is_empty() {
        format!("in lattice {:?}", ctl.lattice().as_str())
    } else {
        format!(
            "in lattice {:?} matching [{}]",
            ctl.lattice().as_str(),
            lattice::ctl::format_pairs(&constraints, ", ")
        )
    };
    if hosts.free.is_empty() && hosts.running.is_empty() {
        bail!("no host {matching} (start one with `lattice up`)");
    }
    if (hosts.free.len() as u64) < u64::from(count) {
        let running: Vec<_> = hosts.running.iter().map(|c| c.host_name.as_str()).collect();
        bail!(
            "cannot start provider {provider} on {count} more hosts: it runs once per host, {} hosts {matching} do not run it{}",
            hosts.free.len(),
            if running.is_empty() {
                String::new()
            } else {
                format!(" (it runs on {})", running.join(", "))
            }
        );
    }
    Ok(hosts
        .free
        .into_iter()
        .take(count as usize)
        .map(|c| (c.host_id, c.host_name))
        .collect())
}

/// The hosts to stop something on, as (host id, host name as shown): `host`
/// when given, else every host whose inventory `runs` says has it; the error
/// `not_running` when that is none.
pub(super) async fn hosts_running(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    host: Option<&str>,
    runs: impl Fn(&HostInventory) -> bool,
    not_running: impl FnOnce() -> String,
) -> anyhow::Result<Vec<(HostId, String)>> {
    let targets: Vec<_> = match host {
        Some(h) => vec![(resolve_host(ctl, h).await?, h.to_string())],
        None => ctl
            .inventories(crate::gather_window(connect))
            .await?
            .into_iter()
            .filter(|inv| runs(inv))
            .map(|inv| (inv.host.id, inv.host.name))
            .collect(),
    };
    if targets.is_empty() {
        bail!("{}", not_running());
    }
    Ok(targets)
}
