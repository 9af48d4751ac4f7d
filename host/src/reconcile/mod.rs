//! The reconciler: converges the lattice to every deployed app.
//!
//! Every host runs this loop; only the holder of the KV lease ([`lease`]) acts.
//! The leader tracks hosts by their heartbeats (a host silent for three
//! heartbeat intervals is gone), reads each live host's inventory, and per app:
//! starts missing replicas on matching hosts (hosts without the actor first,
//! least loaded first), updates outdated ones in place (the new module
//! serves before the old one stops), scales down or stops extra ones and
//! stops those on hosts that no longer match, starts providers on
//! matching hosts that lack them until each runs on as many hosts as it asks
//! (`count`, or `on_every_host`; an id runs once per host),
//! and puts links that are missing or differ. It writes what it saw to
//! `appstatus.{app}` for `lattice app status`.

pub mod lease;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use lattice::{
    app::{ActorSpec, ActorStatusLine, AppStatus, DeployedApp, ProviderStatusLine},
    app_store::AppStore,
    client::CtlClient,
    ctl::{HostInventory, ProviderDescription, StartActor, StartProvider, UpdateActor},
    event::Event,
    id::{ActorId, HostId, LatticeId},
    link_store::LinkStore,
    placement::{self, Candidate, labels_match},
    subject,
};
use tokio::time::Instant;

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Time between reconcile passes and lease renewals.
    pub interval: Duration,
    /// Heartbeat interval of hosts; three missed beats mean a host is gone.
    pub heartbeat_interval: Duration,
    /// Where leadership and passes are counted, when the host serves metrics.
    pub metrics: Option<crate::metrics::Metrics>,
}

/// Hosts seen alive, by their last heartbeat (or start) on our monotonic clock.
#[derive(Clone, Default)]
struct Liveness(Arc<Mutex<HashMap<HostId, Instant>>>);

impl Liveness {
    fn seen(&self, host: HostId) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host, Instant::now());
    }

    fn gone(&self, host: &HostId) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
    }

    fn alive(&self, within: Duration) -> Vec<HostId> {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| now.duration_since(*t) <= within);
        let mut v: Vec<_> = map.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Runs the reconciler loop until told to stop (or the task is aborted).
/// When it cannot start (its buckets do not answer: a cluster under load, a
/// leader moving), it tries again with a growing pause, up to 30 s: a host
/// whose reconciler gave up would never take part in converging apps again.
pub async fn run(
    nats: async_nats::Client,
    lattice: LatticeId,
    me: HostId,
    cfg: ReconcileConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut pause = Duration::from_secs(1);
    loop {
        match run_inner(
            nats.clone(),
            lattice.clone(),
            me.clone(),
            cfg.clone(),
            stop.clone(),
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?pause, "reconciler stopped; starting it again");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn run_inner(
    nats: async_nats::Client,
    lattice: LatticeId,
    me: HostId,
    cfg: ReconcileConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), lattice::Error> {
    let apps = AppStore::open(nats.clone(), &lattice).await?;
    let links = LinkStore::open(nats.clone(), &lattice).await?;
    let ctl = CtlClient::new(nats.clone(), lattice.clone()).with_timeout(Duration::from_secs(10));
    let liveness = Liveness::default();
    spawn_liveness_tracker(&nats, &lattice, liveness.clone()).await?;
    // The lease is renewed on its own task, so a long pass (compiling a large
    // module) cannot let it lapse while this host still acts as leader.
    let leading = Arc::new(AtomicBool::new(false));
    let lease_task = {
        let mut lease = lease::Lease::new(apps.kv().clone(), me.clone(), cfg.interval * 3);
        let leading = leading.clone();
        let mut stop = stop.clone();
        let interval = cfg.interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => {
                        leading.store(false, Ordering::SeqCst);
                        lease.release().await;
                        return;
                    }
                }
                let now = lease.step().await;
                leading.store(now, Ordering::SeqCst);
            }
        })
    };
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                let _ = lease_task.await;
                return Ok(());
            }
        }
        let is_leader = leading.load(Ordering::SeqCst);
        if let Some(m) = &cfg.metrics {
            m.reconciler_leading(is_leader);
        }
        if !is_leader {
            was_leader = false;
            continue;
        }
        if !was_leader {
            // A new leader learns the hosts now rather than waiting for beats.
            if let Ok(hosts) = ctl.ping_hosts(Duration::from_millis(300)).await {
                for h in hosts {
                    liveness.seen(h.id);
                }
            }
            was_leader = true;
        }
        let pass = Pass {
            ctl: &ctl,
            apps: &apps,
            links: &links,
            me: &me,
            leading: &leading,
        };
        if let Err(e) = pass.run(liveness.alive(cfg.heartbeat_interval * 3)).await {
            tracing::warn!(error = %e, "reconcile pass failed");
        }
        if let Some(m) = &cfg.metrics {
            m.reconcile_pass();
        }
    }
}

async fn spawn_liveness_tracker(
    nats: &async_nats::Client,
    lattice: &LatticeId,
    liveness: Liveness,
) -> Result<(), lattice::Error> {
    let mut sub = nats
        .subscribe(subject::events_all(lattice))
        .await
        .map_err(|e| lattice::Error::nats("subscribe to events", e))?;
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Ok(ev) = serde_json::from_slice::<Event>(&msg.payload) else {
                continue;
            };
            let Ok(host) = HostId::new(ev.source.as_str()) else {
                continue;
            };
            match ev.kind.as_str() {
                "host_heartbeat" | "host_started" => liveness.seen(host),
                "host_stopped" => liveness.gone(&host),
                _ => {}
            }
        }
    });
    Ok(())
}

struct Pass<'a> {
    ctl: &'a CtlClient,
    apps: &'a AppStore,
    links: &'a LinkStore,
    me: &'a HostId,
    /// Cleared by the lease task the moment this host loses the lease; every
    /// action checks it, so a deposed leader stops acting mid-pass.
    leading: &'a AtomicBool,
}

impl Pass<'_> {
    fn still_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    async fn run(&self, alive: Vec<HostId>) -> Result<(), lattice::Error> {
        let apps = self.apps.list().await?;
        if apps.is_empty() {
            return Ok(());
        }
        let mut inventories = self.inventories(&alive).await;
        let providers = self
            .ctl
            .ping_providers(Duration::from_millis(300))
            .await
            .unwrap_or_default();
        let existing_links: BTreeMap<String, lattice::link::LinkDefinition> = self
            .links
            .list()
            .await?
            .into_iter()
            .map(|l| (l.key(), l))
            .collect();
        for app in apps {
            if !self.still_leading() {
                return Ok(());
            }
            if app.undeploying {
                self.remove_app(&app, &inventories).await;
                continue;
            }
            let mut status = AppStatus {
                revision: app.revision,
                reconciler: self.me.to_string(),
                observed_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                ..Default::default()
            };
            // Anyone who can write the apps bucket can put a record that never
            // went through `app deploy`: check it again before acting on it.
            if let Err(e) = app.manifest.validate() {
                tracing::warn!(app = %app.manifest.name, error = %e, "reconciler: invalid manifest in KV; not acting on it");
                status.problem = Some(format!("the stored manifest is invalid: {e}"));
                if let Err(e) = self.apps.put_status(&app.manifest.name, &status).await {
                    tracing::debug!(error = %e, "could not write app status");
                }
                continue;
            }
            // Providers first, so the actors' placement sees where their linked
            // providers run (and prefers those hosts).
            let mut started = false;
            for p in &app.manifest.providers {
                let (line, now) = self.provider(p, &providers, &inventories).await;
                started |= now;
                status.providers.push(line);
            }
            if started {
                inventories = self.inventories(&alive).await;
            }
            for spec in &app.manifest.actors {
                status
                    .actors
                    .push(self.actor(&app, spec, &inventories).await);
            }
            if let Ok(defs) = app.manifest.link_definitions() {
                for l in defs {
                    if existing_links.get(&l.key()) != Some(&l) {
                        tracing::info!(app = %app.manifest.name, link = %l.key(), "reconciler: putting link");
                        if let Err(e) = self.links.put(&l).await {
                            tracing::warn!(error = %e, "reconciler could not put link");
                        }
                    }
                }
            }
            if let Err(e) = self.apps.put_status(&app.manifest.name, &status).await {
                tracing::debug!(error = %e, "could not write app status");
            }
        }
        Ok(())
    }

    /// Stops everything of an app being undeployed, deletes its links, then its
    /// record. Only the leader writes app resources, so nothing races this.
    async fn remove_app(&self, app: &DeployedApp, invs: &[HostInventory]) {
        let name = &app.manifest.name;
        for failure in self.ctl.remove_app_resources(app, invs).await {
            tracing::warn!(app = %name, %failure, "reconciler: undeploy step failed");
        }
        tracing::info!(app = %name, "reconciler: app undeployed");
        if let Err(e) = self.apps.remove(name).await {
            tracing::warn!(error = %e, app = %name, "could not remove app record");
        }
    }

    async fn actor(
        &self,
        app: &DeployedApp,
        spec: &ActorSpec,
        invs: &[HostInventory],
    ) -> ActorStatusLine {
        let desired = spec.replicas.max(0) as u32;
        let mut line = ActorStatusLine {
            id: spec.id.clone(),
            desired,
            actual: 0,
            problem: None,
        };
        let (Ok(actor_id), Some(digest)) =
            (ActorId::new(spec.id.as_str()), app.digests.get(&spec.id))
        else {
            line.problem = Some("the deployed app has no module digest for this actor".into());
            return line;
        };
        // Where it runs now: the right module on a matching host counts;
        // another module on a matching host is updated in place (it serves
        // throughout, and counts once updated); on a host no longer matching
        // it is stopped.
        let mut running: Vec<(&HostInventory, u32)> = Vec::new();
        let mut to_update: Vec<(&HostInventory, u32)> = Vec::new();
        let mut to_stop: Vec<&HostInventory> = Vec::new();
        for inv in invs {
            if let Some(a) = inv.actors.iter().find(|a| a.id == actor_id) {
                match (
                    &a.digest == digest,
                    labels_match(&inv.host.labels, &spec.constraints),
                ) {
                    (true, true) => running.push((inv, a.replicas)),
                    (false, true) => to_update.push((inv, a.replicas)),
                    (_, false) => to_stop.push(inv),
                }
            }
        }
        let mut problems = Vec::new();
        // Hosts whose update failed still serve the old module: better than
        // nothing, so they are stopped only once enough replicas run the new
        // one, and no start is planned there (it would be refused).
        let mut not_updated: Vec<&HostInventory> = Vec::new();
        for (inv, replicas) in to_update {
            if !self.still_leading() {
                return line;
            }
            tracing::info!(actor = %actor_id, host = %inv.host.name, "reconciler: updating the module");
            let cmd = UpdateActor {
                actor_id: actor_id.clone(),
                digest: digest.clone(),
                reference: spec.reference.clone().unwrap_or_default(),
                config: Some(spec.config.clone()),
            };
            match self.ctl.update_actor(&inv.host.id, &cmd).await {
                Ok(_) => running.push((inv, replicas)),
                // The old module keeps serving; tried again next pass.
                Err(e) => {
                    problems.push(format!("host {}: update: {e}", inv.host.name));
                    not_updated.push(inv);
                }
            }
        }
        let actual: u32 = running.iter().map(|(_, r)| r).sum();
        if actual >= desired {
            to_stop.append(&mut not_updated);
        }
        line.actual = actual;
        let matching: Vec<&HostInventory> = invs
            .iter()
            .filter(|i| labels_match(&i.host.labels, &spec.constraints))
            .collect();

        // Too many: taken off the hosts with the most replicas first. A host
        // running no more than what is left of the excess stops the actor; one
        // running more is scaled down, so the actor never stops serving there
        // (stopping it whole and topping up next pass left a gap with no
        // replica at all when it was the only host).
        let mut to_scale: Vec<(&HostInventory, u32)> = Vec::new();
        if actual > desired {
            let mut excess = actual - desired;
            running.sort_by_key(|(_, r)| std::cmp::Reverse(*r));
            for (inv, r) in &running {
                if excess == 0 {
                    break;
                }
                if *r <= excess {
                    to_stop.push(inv);
                    excess -= r;
                } else {
                    to_scale.push((inv, r - excess));
                    excess = 0;
                }
            }
        }
        if !self.still_leading() {
            return line;
        }
        for inv in &to_stop {
            tracing::info!(actor = %actor_id, host = %inv.host.name, "reconciler: stopping");
            if let Err(e) = self.ctl.stop_actor(&inv.host.id, &actor_id).await {
                tracing::warn!(error = %e, "reconciler could not stop actor");
            }
        }
        for (inv, replicas) in to_scale {
            tracing::info!(actor = %actor_id, host = %inv.host.name, replicas, "reconciler: scaling down");
            if let Err(e) = self
                .ctl
                .scale_actor(&inv.host.id, &actor_id, replicas)
                .await
            {
                tracing::warn!(error = %e, "reconciler could not scale actor down");
            }
        }
        if actual >= desired {
            if !problems.is_empty() {
                line.problem = Some(problems.join("; "));
            }
            return line;
        }
        if matching.is_empty() {
            line.problem = Some(format!(
                "no live host matches the constraints [{}] ({} hosts alive)",
                lattice::ctl::format_pairs(&spec.constraints, ", "),
                invs.len()
            ));
            return line;
        }
        // Rank like every placement: linked in-process providers, then spread,
        // then load. Only hosts running the right module count as running it.
        let links: Vec<(&str, &str)> = app
            .manifest
            .links
            .iter()
            .filter(|l| l.actor == spec.id)
            .map(|l| (l.contract.as_str(), l.provider.as_str()))
            .collect();
        let candidates = matching
            .iter()
            .filter(|inv| !not_updated.iter().any(|n| n.host.id == inv.host.id))
            .map(|inv| {
                let mut c = Candidate::from_inventory(inv, &actor_id, &links);
                c.running = running
                    .iter()
                    .find(|(r, _)| r.host.id == inv.host.id)
                    .map_or(0, |(_, n)| *n);
                c
            })
            .collect();
        if !self.still_leading() {
            return line;
        }
        let plan = placement::spread(candidates, desired - actual)
            .into_iter()
            .map(|(c, n)| (c.host_id, n));
        let starts = plan.into_iter().map(|(host, n)| {
            let cmd = StartActor {
                actor_id: actor_id.clone(),
                digest: digest.clone(),
                reference: spec.reference.clone().unwrap_or_default(),
                replicas: n,
                config: spec.config.clone(),
            };
            async move { (host.clone(), self.ctl.start_actor(&host, &cmd).await) }
        });
        for (host, r) in futures::future::join_all(starts).await {
            match r {
                Ok(s) => {
                    tracing::info!(actor = %actor_id, host = %s.host_name, replicas = s.replicas, "reconciler: started")
                }
                Err(e) => problems.push(format!("host {host}: {e}")),
            }
        }
        if !problems.is_empty() {
            line.problem = Some(problems.join("; "));
        }
        line
    }

    /// The inventories of the `alive` hosts that answer.
    async fn inventories(&self, alive: &[HostId]) -> Vec<HostInventory> {
        futures::future::join_all(alive.iter().map(|h| self.ctl.inventory(h)))
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Starts the provider of `spec` on the matching live hosts that lack it
    /// until it runs on as many as the spec wants (`count`, or every matching
    /// host for `on_every_host`), least loaded first; returns its status line
    /// and whether any instance was started now. Extra instances (started by
    /// hand, or on hosts that stopped matching) are left alone.
    async fn provider(
        &self,
        spec: &lattice::app::ProviderSpec,
        answering: &[ProviderDescription],
        invs: &[HostInventory],
    ) -> (ProviderStatusLine, bool) {
        let mut line = ProviderStatusLine {
            id: spec.id.clone(),
            running: false,
            desired: 0,
            actual: 0,
            hosts: Vec::new(),
            problem: None,
        };
        // Manifests are validated when deployed; one edited in KV behind our
        // back is reported here, not started.
        let cmd = match (
            lattice::id::ProviderId::new(spec.id.as_str()),
            lattice::id::ProviderRef::parse(spec.reference.as_deref().unwrap_or_default()),
        ) {
            (Ok(provider_id), Ok(name)) => StartProvider { provider_id, name },
            (Err(e), _) | (_, Err(e)) => {
                line.problem = Some(e.to_string());
                return (line, false);
            }
        };
        let hosts = placement::provider_hosts(invs, &cmd.provider_id, &spec.constraints);
        let matching = hosts.running.len() + hosts.free.len();
        // A standalone process with the id serves it too: it counts as one.
        let processes = answering
            .iter()
            .filter(|p| p.id == cmd.provider_id && p.location.starts_with("process "))
            .count();
        line.desired = spec.desired_hosts(matching);
        line.hosts = hosts.running.iter().map(|c| c.host_name.clone()).collect();
        line.actual = u32::try_from(hosts.running.len() + processes).unwrap_or(u32::MAX);
        let done = |line: &mut ProviderStatusLine| {
            line.running = line.actual > 0 && line.actual >= line.desired;
        };
        done(&mut line);
        if line.actual >= line.desired {
            if line.desired == 0 {
                line.problem = Some(format!(
                    "no live host matches its constraints [{}] ({} hosts alive)",
                    lattice::ctl::format_pairs(&spec.constraints, ", "),
                    invs.len()
                ));
            }
            return (line, false);
        }
        let missing = (line.desired - line.actual) as usize;
        if hosts.free.is_empty() {
            line.problem = Some(if matching == 0 {
                format!(
                    "no live host matches its constraints [{}] ({} hosts alive)",
                    lattice::ctl::format_pairs(&spec.constraints, ", "),
                    invs.len()
                )
            } else {
                format!(
                    "wants {} hosts, only {matching} live hosts match its constraints and it runs once per host",
                    line.desired
                )
            });
            return (line, false);
        }
        if !self.still_leading() {
            return (line, false);
        }
        let targets: Vec<_> = hosts.free.into_iter().take(missing).collect();
        let starts = targets.iter().map(|host| {
            let cmd = &cmd;
            async move { (host, self.ctl.start_provider(&host.host_id, cmd).await) }
        });
        let mut problems = Vec::new();
        let mut started = false;
        for (host, r) in futures::future::join_all(starts).await {
            match r {
                Ok(_) => {
                    tracing::info!(provider = %spec.id, host = %host.host_name, "reconciler: started provider");
                    line.actual += 1;
                    line.hosts.push(host.host_name.clone());
                    started = true;
                }
                Err(e) => problems.push(format!("host {}: {e}", host.host_name)),
            }
        }
        if line.actual < line.desired && problems.is_empty() {
            problems.push(format!(
                "wants {} hosts, only {matching} live hosts match its constraints and it runs once per host",
                line.desired
            ));
        }
        if !problems.is_empty() {
            line.problem = Some(problems.join("; "));
        }
        line.hosts.sort();
        done(&mut line);
        (line, started)
    }
}
