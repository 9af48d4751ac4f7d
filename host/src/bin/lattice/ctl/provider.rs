//! `lattice ctl start provider` and `lattice ctl stop provider`: built-in
//! providers running inside a host.

use std::process::ExitCode;

use lattice::client::CtlClient;
use lattice_host::config::ConnectConfig;

use super::placement::{hosts_running, provider_hosts};
use crate::output::{OutputFormat, print_json, spinner};

#[allow(clippy::too_many_arguments)]
pub(super) async fn start(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    reference: &str,
    id: Option<String>,
    host: Option<String>,
    count: u32,
    constraints: Vec<(String, String)>,
) -> anyhow::Result<ExitCode> {
    let reference = lattice::id::ProviderRef::parse(reference)?;
    let provider_id =
        lattice::id::ProviderId::new(id.unwrap_or_else(|| reference.name().to_string()))?;
    let hosts = provider_hosts(
        ctl,
        connect,
        &provider_id,
        host.as_deref(),
        count,
        constraints,
    )
    .await?;
    let pb = spinner(format!(
        "starting provider {provider_id} on {} host(s)",
        hosts.len()
    ));
    let cmd = lattice::ctl::StartProvider {
        provider_id: provider_id.clone(),
        name: reference,
    };
    let results = futures::future::join_all(hosts.iter().map(|(h, name)| {
        let cmd = &cmd;
        async move { (name, ctl.start_provider(h, cmd).await) }
    }))
    .await;
    pb.finish_and_clear();
    let mut acks = Vec::new();
    let mut failures = Vec::new();
    for (name, r) in results {
        match r {
            Ok(ack) => acks.push(ack),
            Err(e) => failures.push(format!("on {name}: {e}")),
        }
    }
    if out == OutputFormat::Json {
        // One host asked for: the ack itself, as before `--count`.
        match acks.as_slice() {
            [one] if count == 1 => print_json(one)?,
            [] => {}
            many => print_json(&many)?,
        }
    } else {
        for ack in &acks {
            println!(
                "started provider {} ({}) on {}",
                ack.provider_id, ack.contract, ack.host_name
            );
        }
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "could not start provider {provider_id} {}",
            failures.join("; ")
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
