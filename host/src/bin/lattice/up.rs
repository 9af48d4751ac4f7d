//! `lattice up`: run a host in the foreground.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;
use figment::{Figment, providers::Serialized};
use lattice::auth::NatsAuth;
use lattice_host::{
    auth::{self, Role},
    config::{self, ConnectConfig, HostConfig, RuntimeConfig},
    host::Host,
    nats::{self, EmbeddedNats},
};
use serde::Serialize;

/// Flags of `lattice up`; each overrides the config file and `LATTICE_*` env.
#[derive(clap::Args, Debug, Serialize)]
pub struct UpArgs {
    /// Human name of this host [default: generated, e.g. brave-otter-4821]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Label for placement, KEY=VALUE (repeatable)
    #[arg(long = "label", value_parser = crate::parse_kv)]
    #[serde(skip)]
    labels: Vec<(String, String)>,
    /// Heartbeat interval, e.g. 5s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_interval: Option<String>,
    /// Deadline of one call into an actor, e.g. 5s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    call_timeout: Option<String>,
    /// How long stopping waits for in-flight calls, e.g. 10s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_timeout: Option<String>,
    /// Linear memory cap per actor instance, MiB
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_memory_mib: Option<u32>,
    /// Concurrent calls per replica
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency_per_replica: Option<u32>,
    /// Calls each replica may hold waiting for a free instance; past
    /// replicas × (concurrency + queue) a call is refused at once as busy [default: 16]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_queued_per_replica: Option<u32>,
    /// Calls in flight plus queued across all actors of this host; past it
    /// every call is refused at once as busy [default: 512]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_calls_per_host: Option<u32>,
    /// Instance slots of the pooling allocator, across all actors [default: 1000]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_instances: Option<u32>,
    /// Most instances one actor may hold on this host (also caps its calls in
    /// flight here) [default: a quarter of max-instances]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_instances_per_actor: Option<u32>,
    /// Idle time after which an actor's warm instances are dropped, e.g. 60s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_idle_timeout: Option<String>,
    /// Where compiled modules are cached
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled modules on disk
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_cache: bool,
    /// Reuse a component's instance for its next request (default: a fresh
    /// instance per request; JavaScript components need that)
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reuse_component_instances: bool,
    /// The nats-server binary for the embedded server
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    nats_server_bin: Option<PathBuf>,
    /// Where the embedded server keeps its data
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Address the embedded nats-server listens on [default: 127.0.0.1:4222];
    /// beyond loopback it enforces the roles of `lattice auth init` (files in
    /// the data dir) unless --insecure
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Allow --listen beyond loopback with an open server (anyone who reaches it owns the lattice)
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    /// Time between reconcile passes of deployed apps, e.g. 1s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    reconcile_interval: Option<String>,
    /// Do not take part in reconciling deployed apps
    #[arg(long)]
    #[serde(skip)]
    no_reconcile: bool,
    /// Run only modules whose claims this issuer signed (an `A...` public key
    /// from `lattice keys gen`; repeatable) [env: LATTICE_ALLOWED_ISSUERS, comma-separated]
    #[arg(long = "allowed-issuer", value_name = "PUBKEY")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_issuers: Vec<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9090
    /// (port 0 picks one; the address is printed) [env: LATTICE_METRICS_ADDR]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_addr: Option<std::net::SocketAddr>,
}

pub async fn run(figment: Figment, args: UpArgs) -> anyhow::Result<std::process::ExitCode> {
    let labels: BTreeMap<_, _> = args.labels.iter().cloned().collect();
    let figment = figment
        .merge(Serialized::globals(&args))
        .merge(Serialized::global("labels", labels));
    let connect: ConnectConfig = figment.extract().context("invalid configuration")?;
    let mut host_cfg: HostConfig = figment.extract().context("invalid host configuration")?;
    if args.no_reconcile {
        host_cfg.reconcile = false;
    }
    let runtime_cfg: RuntimeConfig = figment.extract().context("invalid runtime configuration")?;

    let mut connect = connect;
    let (url, _embedded) = embedded_or_configured(&mut connect, &host_cfg)?;
    let client = nats::connect_with(&url, "lattice-host", &connect.auth, None).await?;
    let host = Host::start(client, connect.lattice.clone(), host_cfg, runtime_cfg)
        .await
        .context("could not start the host")?;
    println!(
        "host {} ({}) joined lattice {:?} at {url}; Ctrl-C to stop",
        host.name(),
        host.id(),
        connect.lattice.as_str()
    );
    if let Some(addr) = host.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }

    let reason = tokio::select! {
        r = lattice::process::shutdown_signal() => r,
        r = host.stop_requested() => r,
    };
    // A second SIGINT/SIGTERM while draining stops at once.
    tokio::select! {
        () = host.shutdown(&reason) => {}
        again = lattice::process::shutdown_signal() => {
            eprintln!("{again} during shutdown: stopping at once");
            drop(_embedded);
            return Ok(std::process::ExitCode::from(130));
        }
    }
    drop(_embedded);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The URL to connect to, starting the embedded server when no URL is
/// configured: on 127.0.0.1 (reusing a server already there), or on `--listen`
/// beyond loopback with the generated roles (or open with `--insecure`).
fn embedded_or_configured(
    connect: &mut ConnectConfig,
    host_cfg: &HostConfig,
) -> anyhow::Result<(String, Option<EmbeddedNats>)> {
    if let Some(url) = &connect.nats_url {
        anyhow::ensure!(
            host_cfg.listen.is_none(),
            "--listen configures the embedded nats-server, which is not started when \
             --nats-url ({url}) is given; use one or the other"
        );
        return Ok((url.clone(), None));
    }
    let addr = host_cfg
        .listen
        .clone()
        .unwrap_or_else(|| config::DEFAULT_NATS_ADDR.to_string());
    let (listen_host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("--listen {addr:?}: expected HOST:PORT"))?;
    let loopback = is_loopback(listen_host);
    let local = format!("127.0.0.1:{port}");
    let url = format!("nats://{local}");
    if loopback && nats::is_listening(&addr) {
        return Ok((format!("nats://{addr}"), None));
    }
    let data_dir = host_cfg
        .data_dir
        .clone()
        .or_else(|| {
            directories::ProjectDirs::from("dev", "lattice", "lattice")
                .map(|d| d.data_dir().to_path_buf())
        })
        .context("cannot find a data directory; pass --data-dir")?;
    let bin = host_cfg.nats_server_bin.as_deref();
    if loopback {
        let server = EmbeddedNats::start(bin, &addr, &data_dir)?;
        eprintln!(
            "started embedded nats-server on nats://{addr} (JetStream data in {})",
            server.store_dir.display()
        );
        return Ok((format!("nats://{addr}"), Some(server)));
    }
    if host_cfg.insecure {
        let server = EmbeddedNats::start(bin, &addr, &data_dir)?;
        eprintln!(
            "WARNING: embedded nats-server listens on {addr} WITHOUT authentication (--insecure): \
             anyone who reaches it can stop hosts and run code in lattice {:?}",
            connect.lattice.as_str()
        );
        return Ok((url, Some(server)));
    }
    let dir = data_dir.join("auth");
    let files = auth::init(&dir, &connect.lattice)
        .with_context(|| format!("cannot write the roles into {}", dir.display()))?;
    let server = EmbeddedNats::start_with_config(bin, &addr, &data_dir, Some(&files.nats_conf))?;
    let host_seed = Role::Host.seed_file(&dir);
    if connect.auth == NatsAuth::default() {
        connect.auth.nats_nkey = Some(host_seed.clone());
    }
    eprintln!(
        "started embedded nats-server on {addr} enforcing the roles of {conf} \
         (JetStream data in {store}).\n\
         A host on another machine needs {seed}: copy it there (keep it mode 0600) and run\n  \
         lattice up --nats-url nats://THIS-MACHINE:{port} --nats-nkey host.nk --lattice {lattice}\n\
         Other roles' seeds (admin, caller, observer, provider) are beside it. The connection \
         is not encrypted: put TLS in front (tls block in {conf}, --tls-ca on clients) on \
         untrusted networks.",
        conf = files.nats_conf.display(),
        store = server.store_dir.display(),
        seed = host_seed.display(),
        lattice = connect.lattice.as_str(),
    );
    Ok((url, Some(server)))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
