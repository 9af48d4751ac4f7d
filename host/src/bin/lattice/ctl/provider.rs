//! `lattice ctl start provider` and `lattice ctl stop provider`: built-in
//! providers running inside a host.

use std::process::ExitCode;

use anyhow::Context;
use lattice::client::CtlClient;
use lattice_host::config::ConnectConfig;

use super::placement::{hosts_running, provider_host};
use crate::output::{OutputFormat, print_json, spinner};

pub(super) async fn start(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    reference: &str,
    id: Option<String>,
    host: Option<String>,
    constraints: Vec<(String, String)>,
) -> anyhow::Result<ExitCode> {
    let reference = lattice::id::ProviderRef::parse(reference)?;
    let provider_id =
        lattice::id::ProviderId::new(id.unwrap_or_else(|| reference.name().to_string()))?;
    let host_id = provider_host(ctl, connect, host.as_deref(), constraints).await?;
    let pb = spinner(format!("starting provider {provider_id}"));
    let ack = ctl
        .start_provider(
            &host_id,
            &lattice::ctl::StartProvider {
                provider_id: provider_id.clone(),
                name: reference,
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

pub(super) async fn stop(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    id: &str,
    host: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let id = lattice::id::ProviderId::new(id)?;
    let targets = hosts_running(
        ctl,
        connect,
        host,
        |inv| inv.providers.iter().any(|p| p.id == id),
        || {
            format!(
                "provider {id} is not running inside any host of lattice {:?} (a standalone provider process stops with Ctrl-C/SIGTERM)",
                ctl.lattice().as_str()
            )
        },
    )
    .await?;
    let mut acks = Vec::new();
    for (h, _) in &targets {
        acks.push(ctl.stop_provider(h, &id).await?);
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
