//! Many machines on one: a NATS cluster of three servers on loopback (routes
//! between them), hosts attached to different servers, and faults: a host killed,
//! the reconciler leader killed, a NATS server killed. The deployed app converges
//! back and key-value data written before each fault is still there.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lattice::{app_store::AppStore, client::CtlClient, id::LatticeId};
use lattice_harness::{
    HostOptions, HostProcess, NatsCluster, free_port, unique_lattice_id, wait_until,
};

use crate::common::{
    BIN, actor_wasm, kvcounter_app, kvcounter_hits, reconciler_leader, replicas_by_host, write_file,
};

const CONVERGE: Duration = Duration::from_secs(60);

struct Cluster {
    nats: NatsCluster,
    lattice: String,
    ctl: CtlClient,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn host(&self, name: &str, server: usize) -> Result<HostProcess> {
        let config = self.dir.path().join("config.toml");
        let opts = HostOptions::new(self.nats.url(server), &self.lattice, name)
            .env_var("LATTICE_CONFIG", config.display().to_string())
            .arg("--no-cache")
            .arg("--heartbeat-interval")
            .arg("1s")
            .arg("--reconcile-interval")
            .arg("500ms")
            .arg("--call-timeout")
            .arg("3s");
        HostProcess::spawn(BIN, &opts)
            .await
            .with_context(|| format!("starting host {name} on server {server}"))
    }

    async fn replicas(&self, actor: &str) -> Result<u32> {
        let by_host = replicas_by_host(&self.ctl, actor).await?;
        Ok(by_host.iter().map(|(_, n)| n).sum())
    }

    async fn converged(&self, actor: &str, want: u32, what: &str) -> Result<()> {
        wait_until(
            format!("{want} replicas of {actor} after {what}"),
            CONVERGE,
            || async { Ok((self.replicas(actor).await? == want).then_some(())) },
        )
        .await
    }

    async fn leader(&self) -> Result<Option<String>> {
        let store = AppStore::open(self.ctl.nats().clone(), &self.lattice.parse()?).await?;
        reconciler_leader(&store).await
    }
}

/// GETs the counter until it answers; returns the count.
async fn hit(port: u16) -> Result<i64> {
    kvcounter_hits(port, CONVERGE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_survives_host_leader_and_nats_server_failures() -> Result<()> {
    let nats = NatsCluster::start(3)?;
    let lattice = unique_lattice_id();
    // The test's own client knows every server, so it fails over too.
    let client = async_nats::ConnectOptions::new()
        .connect(nats.urls())
        .await
        .context("connecting to the cluster")?;
    let ctl = CtlClient::new(client, LatticeId::new(lattice.as_str())?)
        .with_timeout(Duration::from_secs(10));
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.toml"), "")?;
    let mut c = Cluster {
        nats,
        lattice,
        ctl,
        dir,
    };

    let mut hosts = vec![
        c.host("h0", 0).await?,
        c.host("h1", 1).await?,
        c.host("h2", 2).await?,
    ];
    let module = actor_wasm("kvcounter")?;
    let port = free_port();
    let manifest = kvcounter_app(&module.display().to_string(), 3, port, "");
    let file = write_file(c.dir.path(), "app.toml", manifest.as_bytes())?;
    let out = crate::common::run_cli(
        &[
            "--nats-url",
            &c.nats.url(0),
            "--lattice",
            &c.lattice,
            "app",
            "deploy",
            &file.display().to_string(),
        ],
        &[],
    )
    .await?
    .success()?;
    ensure!(out.stdout.contains("revision 1"), "{}", out.stdout);
    c.converged("kvcounter", 3, "deploy").await?;
    let mut count = hit(port).await?;
    for _ in 0..3 {
        let n = hit(port).await?;
        ensure!(n == count + 1, "{count} then {n}");
        count = n;
    }

    // 1. A host dies without a goodbye (not the leader, so this is only about
    //    replacing its replica).
    let leader = wait_until("a reconciler leader", CONVERGE, || c.leader()).await?;
    let victim = hosts
        .iter()
        .position(|h| h.host_id() != leader)
        .context("a non-leader host")?;
    let mut dead = hosts.remove(victim);
    dead.kill()?;
    c.converged("kvcounter", 3, "a host was killed").await?;
    let n = hit(port).await?;
    ensure!(n > count, "the count survived: {count} then {n}");
    count = n;
    hosts.push(c.host("h3", victim % 3).await?);

    // 2. The leader dies: another host takes the lease and keeps converging.
    let leader = wait_until("a reconciler leader", CONVERGE, || c.leader()).await?;
    let idx = hosts
        .iter()
        .position(|h| h.host_id() == leader)
        .context("the leader is one of our hosts")?;
    let mut old_leader = hosts.remove(idx);
    old_leader.kill()?;
    wait_until("a new leader", CONVERGE, || async {
        Ok(c.leader().await?.filter(|l| *l != leader))
    })
    .await?;
    c.converged("kvcounter", 3, "the leader was killed").await?;
    let n = hit(port).await?;
    ensure!(n > count, "the count survived: {count} then {n}");
    count = n;

    // 3. A NATS server dies: hosts attached to it reconnect to the others; the
    //    lattice's buckets have three replicas, so no data is lost.
    c.nats.kill(1)?;
    c.converged("kvcounter", 3, "a NATS server was killed")
        .await?;
    let n = hit(port).await?;
    ensure!(
        n > count,
        "key-value data survived a server loss: {count} then {n}"
    );
    count = n;
    c.nats.restart(1)?;
    c.converged("kvcounter", 3, "the NATS server came back")
        .await?;
    let n = hit(port).await?;
    ensure!(n > count, "{count} then {n}");
    drop(hosts);
    Ok(())
}
