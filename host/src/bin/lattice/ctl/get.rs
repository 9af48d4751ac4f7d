//! `lattice ctl get ...`: hosts, inventories, links and providers as tables
//! (a note on stderr when there is nothing to list) or as JSON.

use std::{collections::BTreeMap, process::ExitCode};

use lattice::{client::CtlClient, ctl::HostInventory};
use lattice_host::config::ConnectConfig;
use serde::Serialize;

use super::{args::GetCommand, placement::resolve_host};
use crate::output::{OutputFormat, human_duration, print_json, print_table};

pub(super) async fn run(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    what: GetCommand,
) -> anyhow::Result<ExitCode> {
    match what {
        GetCommand::Hosts => hosts(ctl, connect, out).await,
        GetCommand::Inventory { host } => inventory(ctl, connect, out, host.as_deref()).await,
        GetCommand::Links => links(ctl, out).await,
        GetCommand::Providers => providers(ctl, connect, out).await,
    }
}

/// Prints `value` as JSON, or `rows` as a table under `header`; with no rows,
/// the note `empty` on stderr instead of a table.
fn print_listing(
    out: OutputFormat,
    value: &impl Serialize,
    header: &[&str],
    rows: Vec<Vec<String>>,
    empty: impl FnOnce() -> String,
) -> anyhow::Result<ExitCode> {
    if out == OutputFormat::Json {
        print_json(value)?;
    } else if rows.is_empty() {
        eprintln!("{}", empty());
    } else {
        print_table(header, rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn hosts(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let hosts = ctl.ping_hosts(crate::gather_window(connect)).await?;
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
    print_listing(
        out,
        &hosts,
        &[
            "id", "name", "labels", "actors", "replicas", "uptime", "version",
        ],
        rows,
        || {
            format!(
                "no hosts answered in lattice {:?} (start one with `lattice up`)",
                ctl.lattice().as_str()
            )
        },
    )
}

/// A host's own labels, without the ones every host has.
fn format_labels(labels: &BTreeMap<String, String>) -> String {
    lattice::ctl::format_pairs(
        labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "os" | "arch" | "hostname")),
        ",",
    )
}

async fn inventory(
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
    let rows = inventories
        .iter()
        .flat_map(|inv| {
            inv.actors.iter().map(|a| {
                vec![
                    inv.host.name.clone(),
                    a.id.to_string(),
                    a.kind.to_string(),
                    a.digest.short().to_string(),
                    a.replicas.to_string(),
                    a.warm_instances.to_string(),
                    a.calls.to_string(),
                    a.errors.to_string(),
                    a.status.to_string(),
                    a.reference.clone(),
                ]
            })
        })
        .collect();
    print_listing(
        out,
        &inventories,
        &[
            "host",
            "actor",
            "kind",
            "digest",
            "replicas",
            "warm",
            "calls",
            "errors",
            "status",
            "reference",
        ],
        rows,
        || format!("no actors running ({} hosts)", inventories.len()),
    )
}

async fn links(ctl: &CtlClient, out: OutputFormat) -> anyhow::Result<ExitCode> {
    let links = ctl.links().await?.list().await?;
    let rows = links
        .iter()
        .map(|l| {
            vec![
                l.actor_id.to_string(),
                l.contract.to_string(),
                l.link_name.to_string(),
                l.provider_id.to_string(),
                lattice::ctl::format_pairs(&l.config, ","),
            ]
        })
        .collect();
    print_listing(
        out,
        &links,
        &["actor", "contract", "link name", "provider", "config"],
        rows,
        || format!("no links in lattice {:?}", ctl.lattice().as_str()),
    )
}

async fn providers(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let providers = ctl.ping_providers(crate::gather_window(connect)).await?;
    let rows = providers
        .iter()
        .map(|p| {
            let failed = p.links.iter().filter(|l| l.error.is_some()).count();
            vec![
                p.id.to_string(),
                p.contract.to_string(),
                p.name.clone(),
                p.location.clone(),
                if p.health.healthy {
                    "healthy".to_string()
                } else {
                    format!("unhealthy: {}", p.health.message)
                },
                format!("{} ({failed} failed)", p.links.len()),
            ]
        })
        .collect();
    let code = print_listing(
        out,
        &providers,
        &["id", "contract", "name", "location", "health", "links"],
        rows,
        || format!("no providers in lattice {:?}", ctl.lattice().as_str()),
    )?;
    if out == OutputFormat::Table {
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
    }
    Ok(code)
}
