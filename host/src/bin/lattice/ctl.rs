//! `lattice ctl ...`: inspect and control the lattice.

use std::{collections::BTreeMap, path::Path, process::ExitCode};

use anyhow::{Context, bail};
use lattice::{
    client::CtlClient,
    ctl::{ActorStarted, AuctionRequest, HostInventory, StartActor, plan_spread},
    digest::Digest,
    id::{ActorId, HostId},
};
use lattice_host::config::ConnectConfig;
use serde::Serialize;

use crate::output::{OutputFormat, human_duration, print_json, print_table, spinner};

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// List hosts or inventories
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Start actors
    Start {
        #[command(subcommand)]
        what: StartCommand,
    },
    /// Stop actors and providers
    Stop {
        #[command(subcommand)]
        what: StopCommand,
    },
    /// Put or delete links between actors and providers
    Link {
        #[command(subcommand)]
        what: LinkCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum LinkCommand {
    /// Link an actor's use of CONTRACT (under a link name) to PROVIDER, with config
    Put {
        /// Actor id
        actor: String,
        /// Provider id
        provider: String,
        /// Contract id, e.g. lattice:keyvalue
        contract: String,
        /// Link name
        #[arg(long, default_value = lattice::link::DEFAULT_LINK_NAME)]
        link_name: String,
        /// Config values for the provider, KEY=VALUE
        #[arg(value_parser = crate::parse_kv, value_name = "KEY=VALUE")]
        values: Vec<(String, String)>,
    },
    /// Delete a link
    Del {
        /// Actor id
        actor: String,
        /// Contract id
        contract: String,
        /// Link name
        #[arg(long, default_value = lattice::link::DEFAULT_LINK_NAME)]
        link_name: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum GetCommand {
    /// Every host in the lattice
    Hosts,
    /// What runs where: one host (id or name), or every host
    Inventory {
        /// Host id or name
        host: Option<String>,
    },
    /// Every link in the lattice
    Links,
    /// Every provider, built-in or standalone, with health
    Providers,
}

#[derive(clap::Subcommand, Debug)]
pub enum StartCommand {
    /// Start an actor from a .wasm file, a digest or a name:tag in the lattice's store
    Actor(StartActorArgs),
    /// Start a built-in provider (builtin:httpserver, builtin:keyvalue) inside a host
    Provider {
        /// builtin:NAME
        reference: String,
        /// Provider id [default: NAME]
        #[arg(long)]
        id: Option<String>,
        /// Start on this host (id or name) [default: the least loaded matching host]
        #[arg(long)]
        host: Option<String>,
        /// Only hosts with this label, KEY=VALUE (repeatable)
        #[arg(long = "constraint", value_parser = crate::parse_kv)]
        constraints: Vec<(String, String)>,
    },
}

#[derive(clap::Args, Debug)]
pub struct StartActorArgs {
    /// A local .wasm file, sha256:<hex>, or name[:tag] already in the store
    reference: String,
    /// Actor id [default: derived from the file name or tag]
    #[arg(long)]
    id: Option<String>,
    /// Start on this host (id or name) instead of holding an auction
    #[arg(long)]
    host: Option<String>,
    /// Replicas to start, spread over hosts
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Only hosts with this label, KEY=VALUE (repeatable)
    #[arg(long = "constraint", value_parser = crate::parse_kv)]
    constraints: Vec<(String, String)>,
    /// Configuration the actor sees as environment variables, KEY=VALUE (repeatable)
    #[arg(long = "env", value_parser = crate::parse_kv)]
    env_vars: Vec<(String, String)>,
}

#[derive(clap::Subcommand, Debug)]
pub enum StopCommand {
    /// Stop an actor everywhere, or on one host
    Actor {
        /// Actor id
        id: String,
        /// Only on this host (id or name)
        #[arg(long)]
        host: Option<String>,
    },
    /// Stop a provider running inside a host
    Provider {
        /// Provider id
        id: String,
        /// Only on this host (id or name)
        #[arg(long)]
        host: Option<String>,
    },
}

pub async fn run(
    connect: &ConnectConfig,
    out: OutputFormat,
    command: CtlCommand,
) -> anyhow::Result<ExitCode> {
    let ctl = crate::client(connect).await?;
    match command {
        CtlCommand::Get {
            what: GetCommand::Hosts,
        } => get_hosts(&ctl, connect, out).await,
        CtlCommand::Get {
            what: GetCommand::Inventory { host },
        } => get_inventory(&ctl, connect, out, host.as_deref()).await,
        CtlCommand::Start {
            what: StartCommand::Actor(args),
        } => start_actor(&ctl, connect, out, args).await,
        CtlCommand::Stop {
            what: StopCommand::Actor { id, host },
        } => stop_actor(&ctl, connect, out, &id, host.as_deref()).await,
        CtlCommand::Get {
            what: GetCommand::Links,
        } => get_links(&ctl, out).await,
        CtlCommand::Get {
            what: GetCommand::Providers,
        } => get_providers(&ctl, connect, out).await,
        CtlCommand::Start {
            what:
                StartCommand::Provider {
                    reference,
                    id,
                    host,
                    constraints,
                },
        } => start_provider(&ctl, connect, out, &reference, id, host, constraints).await,
        CtlCommand::Stop {
            what: StopCommand::Provider { id, host },
        } => stop_provider(&ctl, connect, out, &id, host.as_deref()).await,
        CtlCommand::Link { what } => link(&ctl, out, what).await,
    }
}

async fn get_hosts(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let hosts = ctl.ping_hosts(crate::gather_window(connect)).await?;
    if out == OutputFormat::Json {
        print_json(&hosts)?;
        return Ok(ExitCode::SUCCESS);
    }
    if hosts.is_empty() {
        eprintln!(
            "no hosts answered in lattice {:?} (start one with `lattice up`)",
            ctl.lattice().as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows = hosts
        .iter()
        .map(|h| {
            vec![
                h.id.to_string(),
                h.name.clone(),
                format_labels(&h.labels),
                h.actors.to_string(),
                h.replicas.to_string(),
                human_duration(h.uptime_secs),
                h.version.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "id", "name", "labels", "actors", "replicas", "uptime", "version",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn format_labels(labels: &BTreeMap<String, String>) -> String {
    lattice::ctl::format_pairs(
        labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "os" | "arch" | "hostname")),
        ",",
    )
}

async fn get_inventory(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    host: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let inventories: Vec<HostInventory> = match host {
        Some(h) => {
            let id = resolve_host(ctl, h).await?;
            vec![ctl.inventory(&id).await?]
        }
        None => ctl.inventories(crate::gather_window(connect)).await?,
    };
    if out == OutputFormat::Json {
        print_json(&inventories)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for inv in &inventories {
        for a in &inv.actors {
            rows.push(vec![
                inv.host.name.clone(),
                a.id.to_string(),
                a.digest.short().to_string(),
                a.replicas.to_string(),
                a.warm_instances.to_string(),
                a.calls.to_string(),
                a.errors.to_string(),
                a.status.to_string(),
                a.reference.clone(),
            ]);
        }
    }
    if rows.is_empty() {
        eprintln!("no actors running ({} hosts)", inventories.len());
        return Ok(ExitCode::SUCCESS);
    }
    print_table(
        &[
            "host",
            "actor",
            "digest",
            "replicas",
            "warm",
            "calls",
            "errors",
            "status",
            "reference",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Accepts a host id as is (an unknown one fails on use with "no host with id"),
/// and looks names up.
async fn resolve_host(ctl: &CtlClient, id_or_name: &str) -> anyhow::Result<HostId> {
    if id_or_name.starts_with('H') && id_or_name.len() == 33 {
        return Ok(HostId::new(id_or_name)?);
    }
    Ok(ctl.resolve_host(id_or_name).await?)
}

#[derive(Serialize)]
struct StartReport {
    actor_id: ActorId,
    digest: Digest,
    reference: String,
    started: Vec<ActorStarted>,
    failed: Vec<StartFailure>,
}

#[derive(Serialize)]
struct StartFailure {
    host: String,
    error: String,
}

async fn start_actor(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    args: StartActorArgs,
) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let actor_id = match &args.id {
        Some(id) => ActorId::new(id.as_str())?,
        None => crate::default_actor_id(&args.reference)?,
    };
    let (digest, contracts) = push_or_resolve(ctl, &args.reference).await?;

    let plan: Vec<(HostId, String, u32)> = match &args.host {
        Some(h) => {
            let id = resolve_host(ctl, h).await?;
            vec![(id, h.clone(), args.count)]
        }
        None => {
            let constraints: BTreeMap<_, _> = args.constraints.iter().cloned().collect();
            let bids = ctl
                .auction_actor(
                    &AuctionRequest {
                        actor_id: actor_id.clone(),
                        constraints: constraints.clone(),
                        contracts: contracts.clone(),
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
            plan_spread(bids, args.count)
                .into_iter()
                .map(|(b, n)| (b.host_id, b.host_name, n))
                .collect()
        }
    };

    let pb = spinner(format!("starting {actor_id} on {} host(s)", plan.len()));
    let starts = plan.iter().map(|(host, name, n)| {
        let cmd = StartActor {
            actor_id: actor_id.clone(),
            digest: digest.clone(),
            reference: display_reference(&args.reference),
            replicas: *n,
            config: args.env_vars.iter().cloned().collect(),
        };
        async move {
            ctl.start_actor(host, &cmd).await.map_err(|e| StartFailure {
                host: name.clone(),
                error: e.to_string(),
            })
        }
    });
    let results = futures::future::join_all(starts).await;
    pb.finish_and_clear();
    let (mut started, mut failed) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(s) => started.push(s),
            Err(f) => failed.push(f),
        }
    }
    let ok = failed.is_empty();
    let report = StartReport {
        actor_id,
        digest,
        reference: args.reference,
        started,
        failed,
    };
    if out == OutputFormat::Json {
        print_json(&report)?;
    } else {
        if !report.started.is_empty() {
            let rows = report
                .started
                .iter()
                .map(|s| {
                    vec![
                        s.actor_id.to_string(),
                        s.host_name.clone(),
                        s.replicas.to_string(),
                        if s.compiled { "compiled" } else { "cached" }.to_string(),
                        format!("{} ms", s.elapsed_ms),
                    ]
                })
                .collect();
            print_table(&["actor", "host", "replicas", "module", "time"], rows);
        }
        for f in &report.failed {
            eprintln!("error: host {}: {}", f.host, f.error);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What inventories show: a file's name rather than its full local path.
fn display_reference(reference: &str) -> String {
    let path = Path::new(reference);
    if path.exists()
        && let Some(name) = path.file_name()
    {
        return name.to_string_lossy().into_owned();
    }
    reference.to_string()
}

/// A local file is pushed to the lattice's artifact store (tagged `<stem>:latest`);
/// anything else must already be there. Also returns the contracts the module's
/// claims list, for the auction.
async fn push_or_resolve(
    ctl: &CtlClient,
    reference: &str,
) -> anyhow::Result<(Digest, Vec<String>)> {
    let path = Path::new(reference);
    let looks_like_file = path.exists() || reference.ends_with(".wasm") || reference.contains('/');
    let store = ctl
        .artifacts()
        .await
        .context("could not open the lattice's artifact store")?;
    let contracts_of = |bytes: &[u8]| {
        lattice::claims::read(bytes)
            .ok()
            .flatten()
            .map(|c| c.contracts)
            .unwrap_or_default()
    };
    if !looks_like_file {
        let digest = store.resolve(reference).await?;
        let bytes = store.get(&digest).await?;
        return Ok((digest, contracts_of(&bytes)));
    }
    let bytes = std::fs::read(path).with_context(|| format!("could not read {reference}"))?;
    let stem = crate::default_actor_id(reference)?;
    let pb = spinner(format!(
        "uploading {} ({:.1} KiB)",
        path.display(),
        bytes.len() as f64 / 1024.0
    ));
    let digest = store
        .put(&bytes, Some((stem.as_str(), "latest")))
        .await
        .with_context(|| format!("could not upload {reference}"));
    pb.finish_and_clear();
    Ok((digest?, contracts_of(&bytes)))
}

#[derive(Serialize)]
struct StopReport {
    host_id: HostId,
    host_name: String,
    replicas: u32,
}

async fn stop_actor(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    id: &str,
    host: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let actor = ActorId::new(id)?;
    let targets: Vec<(HostId, String)> = match host {
        Some(h) => vec![(resolve_host(ctl, h).await?, h.to_string())],
        None => ctl
            .inventories(crate::gather_window(connect))
            .await?
            .into_iter()
            .filter(|inv| inv.actors.iter().any(|a| a.id == actor))
            .map(|inv| (inv.host.id, inv.host.name))
            .collect(),
    };
    if targets.is_empty() {
        bail!(
            "actor {actor} is not running on any host in lattice {:?}",
            ctl.lattice().as_str()
        );
    }
    let pb = spinner(format!("stopping {actor}"));
    let results = futures::future::join_all(targets.iter().map(|(h, name)| {
        let actor = actor.clone();
        async move {
            ctl.stop_actor(h, &actor).await.map(|s| StopReport {
                host_id: s.host_id,
                host_name: name.clone(),
                replicas: s.replicas,
            })
        }
    }))
    .await;
    pb.finish_and_clear();
    let mut stopped = Vec::new();
    let mut ok = true;
    for r in results {
        match r {
            Ok(s) => stopped.push(s),
            Err(e) => {
                ok = false;
                eprintln!("error: {e}");
            }
        }
    }
    if out == OutputFormat::Json {
        print_json(&stopped)?;
    } else {
        for s in &stopped {
            println!(
                "stopped {actor} on {} ({} replicas)",
                s.host_name, s.replicas
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn get_links(ctl: &CtlClient, out: OutputFormat) -> anyhow::Result<ExitCode> {
    let links = ctl.links().await?.list().await?;
    if out == OutputFormat::Json {
        print_json(&links)?;
        return Ok(ExitCode::SUCCESS);
    }
    if links.is_empty() {
        eprintln!("no links in lattice {:?}", ctl.lattice().as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let rows = links
        .iter()
        .map(|l| {
            vec![
                l.actor_id.to_string(),
                l.contract.clone(),
                l.link_name.clone(),
                l.provider_id.clone(),
                lattice::ctl::format_pairs(&l.config, ","),
            ]
        })
        .collect();
    print_table(
        &["actor", "contract", "link name", "provider", "config"],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

async fn get_providers(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let providers = ctl.ping_providers(crate::gather_window(connect)).await?;
    if out == OutputFormat::Json {
        print_json(&providers)?;
        return Ok(ExitCode::SUCCESS);
    }
    if providers.is_empty() {
        eprintln!("no providers in lattice {:?}", ctl.lattice().as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let rows = providers
        .iter()
        .map(|p| {
            let failed: Vec<_> = p
                .links
                .iter()
                .filter_map(|l| {
                    l.error
                        .as_ref()
                        .map(|e| format!("{}/{}: {e}", l.actor_id, l.link_name))
                })
                .collect();
            vec![
                p.id.clone(),
                p.contract.clone(),
                p.name.clone(),
                p.location.clone(),
                if p.health.healthy {
                    "healthy".to_string()
                } else {
                    format!("unhealthy: {}", p.health.message)
                },
                format!("{} ({} failed)", p.links.len(), failed.len()),
            ]
        })
        .collect();
    print_table(
        &["id", "contract", "name", "location", "health", "links"],
        rows,
    );
    for p in &providers {
        for l in p.links.iter().filter(|l| l.error.is_some()) {
            eprintln!(
                "link {}/{} on provider {}: {}",
                l.actor_id,
                l.link_name,
                p.id,
                l.error.as_deref().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn start_provider(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    reference: &str,
    id: Option<String>,
    host: Option<String>,
    constraints: Vec<(String, String)>,
) -> anyhow::Result<ExitCode> {
    let Some(name) = reference.strip_prefix("builtin:") else {
        bail!(
            "provider reference {reference:?} is not supported: use builtin:httpserver or builtin:keyvalue, or run your own provider process with the lattice-provider SDK"
        );
    };
    let provider_id = id.unwrap_or_else(|| name.to_string());
    lattice::id::validate("provider id", &provider_id)?;
    let host_id = match host {
        Some(h) => resolve_host(ctl, &h).await?,
        None => {
            let constraints: BTreeMap<_, _> = constraints.into_iter().collect();
            let hosts = ctl.ping_hosts(crate::gather_window(connect)).await?;
            hosts
                .into_iter()
                .filter(|h| lattice::ctl::labels_match(&h.labels, &constraints))
                .min_by_key(|h| (h.replicas, h.name.clone()))
                .map(|h| h.id)
                .with_context(|| {
                    format!(
                        "no host in lattice {:?} matches the constraints [{}]",
                        ctl.lattice().as_str(),
                        lattice::ctl::format_pairs(&constraints, ", ")
                    )
                })?
        }
    };
    let pb = spinner(format!("starting provider {provider_id}"));
    let ack = ctl
        .start_provider(
            &host_id,
            &lattice::ctl::StartProvider {
                provider_id: provider_id.clone(),
                name: name.to_string(),
            },
        )
        .await;
    pb.finish_and_clear();
    let ack = ack.with_context(|| format!("could not start provider {provider_id}"))?;
    if out == OutputFormat::Json {
        print_json(&ack)?;
    } else {
        println!(
            "started provider {} ({}) on {}",
            ack.provider_id, ack.contract, ack.host_name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop_provider(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    id: &str,
    host: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let targets: Vec<HostId> = match host {
        Some(h) => vec![resolve_host(ctl, h).await?],
        None => ctl
            .inventories(crate::gather_window(connect))
            .await?
            .into_iter()
            .filter(|inv| inv.providers.iter().any(|p| p.id == id))
            .map(|inv| inv.host.id)
            .collect(),
    };
    if targets.is_empty() {
        bail!(
            "provider {id} is not running inside any host of lattice {:?} (a standalone provider process stops with Ctrl-C/SIGTERM)",
            ctl.lattice().as_str()
        );
    }
    let mut acks = Vec::new();
    for h in &targets {
        acks.push(ctl.stop_provider(h, id).await?);
    }
    if out == OutputFormat::Json {
        print_json(&acks)?;
    } else {
        for a in &acks {
            println!("stopped provider {} on {}", a.provider_id, a.host_name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn link(ctl: &CtlClient, out: OutputFormat, what: LinkCommand) -> anyhow::Result<ExitCode> {
    let store = ctl.links().await?;
    match what {
        LinkCommand::Put {
            actor,
            provider,
            contract,
            link_name,
            values,
        } => {
            let link = lattice::link::LinkDefinition {
                actor_id: ActorId::new(actor)?,
                provider_id: provider,
                contract,
                link_name,
                config: values.into_iter().collect(),
            };
            store.put(&link).await?;
            publish_event(ctl, lattice::event::EventData::LinkPut(link.clone())).await;
            let providers = ctl
                .ping_providers(lattice::client::DEFAULT_GATHER)
                .await
                .unwrap_or_default();
            match providers.iter().find(|p| p.id == link.provider_id) {
                None => eprintln!(
                    "warning: no provider with id {:?} is running in lattice {:?}; calls over this link fail until one starts",
                    link.provider_id,
                    ctl.lattice().as_str()
                ),
                Some(p) if p.contract != link.contract => eprintln!(
                    "warning: provider {:?} serves {}, not {}",
                    p.id, p.contract, link.contract
                ),
                Some(_) => {}
            }
            if out == OutputFormat::Json {
                print_json(&link)?;
            } else {
                println!(
                    "linked {} {} (link {:?}) to provider {}",
                    link.actor_id, link.contract, link.link_name, link.provider_id
                );
            }
        }
        LinkCommand::Del {
            actor,
            contract,
            link_name,
        } => {
            let actor = ActorId::new(actor)?;
            match store.delete(&actor, &contract, &link_name).await? {
                Some(link) => {
                    publish_event(
                        ctl,
                        lattice::event::EventData::LinkDeleted {
                            actor_id: link.actor_id.clone(),
                            contract: link.contract.clone(),
                            link_name: link.link_name.clone(),
                        },
                    )
                    .await;
                    if out == OutputFormat::Json {
                        print_json(&link)?;
                    } else {
                        println!("deleted link {actor} {contract} (link {link_name:?})");
                    }
                }
                None => bail!("there is no link {actor} {contract} with link name {link_name:?}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn publish_event(ctl: &CtlClient, event: lattice::event::EventData) {
    let kind = event.kind();
    if let Ok(body) = serde_json::to_vec(&event.into_event("cli")) {
        let _ = ctl
            .nats()
            .publish(lattice::subject::event(ctl.lattice(), kind), body.into())
            .await;
        let _ = ctl.nats().flush().await;
    }
}
