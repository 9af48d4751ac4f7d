//! `lattice up`: run a host in the foreground.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;
use figment::{Figment, providers::Serialized};
use lattice_host::{
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
    /// Where compiled modules are cached
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled modules on disk
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_cache: bool,
    /// The nats-server binary for the embedded server
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    nats_server_bin: Option<PathBuf>,
    /// Where the embedded server keeps its data
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
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

    // Embedded default: no URL configured and nothing on 127.0.0.1:4222 → start one.
    let mut _embedded = None;
    let url = match &connect.nats_url {
        Some(url) => url.clone(),
        None => {
            let addr = config::DEFAULT_NATS_ADDR;
            if !nats::is_listening(addr) {
                let data_dir = host_cfg
                    .data_dir
                    .clone()
                    .or_else(|| {
                        directories::ProjectDirs::from("dev", "lattice", "lattice")
                            .map(|d| d.data_dir().to_path_buf())
                    })
                    .context("cannot find a data directory; pass --data-dir")?;
                let server =
                    EmbeddedNats::start(host_cfg.nats_server_bin.as_deref(), addr, &data_dir)?;
                tracing::info!(
                    bin = %server.bin.display(),
                    store = %server.store_dir.display(),
                    "no NATS configured: started an embedded nats-server -js on {addr}"
                );
                eprintln!(
                    "started embedded nats-server on nats://{addr} (JetStream data in {})",
                    server.store_dir.display()
                );
                _embedded = Some(server);
            }
            format!("nats://{addr}")
        }
    };
    let client = nats::connect(&url, "lattice-host").await?;
    let host = Host::start(client, connect.lattice.clone(), host_cfg, runtime_cfg)
        .await
        .context("could not start the host")?;
    println!(
        "host {} ({}) joined lattice {:?} at {url}; Ctrl-C to stop",
        host.name(),
        host.id(),
        connect.lattice.as_str()
    );

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
