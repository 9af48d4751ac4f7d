//! `lattice ctl start actor` (upload or resolve the module, place the
//! replicas, start them), `lattice ctl scale actor`, `lattice ctl update
//! actor` and `lattice ctl stop actor`.

use std::process::ExitCode;

use anyhow::bail;
use lattice::{
    client::CtlClient,
    ctl::{ActorStarted, StartActor, UpdateActor},
    digest::Digest,
    id::{ActorId, HostId},
};
use lattice_host::config::ConnectConfig;
use serde::Serialize;

use super::{
    args::StartActorArgs,
    artifact::{LocalModule, display_reference, resolve},
    placement::{actor_replicas, hosts_running, resolve_host},
};
use crate::output::{OutputFormat, print_json, print_table, spinner};

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

pub(super) async fn start(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    args: StartActorArgs,
) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if i64::from(args.count) > lattice::app::MAX_REPLICAS {
        bail!(
            "--count {} is more than the {} replicas an actor may have",
            args.count,
            lattice::app::MAX_REPLICAS
        );
    }
    let actor_id = match &args.id {
        Some(id) => ActorId::new(id.as_str())?,
        None => crate::default_actor_id(&args.reference)?,
    };
    let local = LocalModule::read(&args.reference)?;
    let (digest, contracts) = match &local {
        Some(m) => (m.digest.clone(), m.contracts.clone()),
        None => resolve(ctl, &args.reference).await?,
    };
    let pb = spinner(match &local {
        Some(m) => format!(
            "uploading {} ({:.1} KiB) and starting {actor_id}",
            args.reference,
            m.bytes.len() as f64 / 1024.0
        ),
        None => format!("starting {actor_id}"),
    });
    let start_on = |host: &HostId, name: &str, replicas: u32| {
        let cmd = StartActor {
            actor_id: actor_id.clone(),
            digest: digest.clone(),
            reference: display_reference(&args.reference),
            replicas,
            config: args.env_vars.iter().cloned().collect(),
        };
        let (host, name) = (host.clone(), name.to_string());
        async move {
            ctl.start_actor(&host, &cmd)
                .await
                .map_err(|e| StartFailure {
                    host: name,
                    error: e.to_string(),
                })
        }
    };
    // A host that has the module cached starts it without the store, so the
    // starts go out while a local file is uploaded; one that needed the upload
    // is asked again once it is done.
    let place_and_start = async {
        let plan = match args.host.as_deref() {
            Some(h) => vec![(resolve_host(ctl, h).await?, h.to_string(), args.count)],
            None => {
                actor_replicas(
                    ctl,
                    connect,
                    &actor_id,
                    contracts,
                    args.count,
                    &args.constraints,
                )
                .await?
            }
        };
        let results =
            futures::future::join_all(plan.iter().map(|(h, name, n)| start_on(h, name, *n))).await;
        anyhow::Ok((plan, results))
    };
    let upload = async {
        match &local {
            Some(m) => m.upload(ctl, &args.reference).await,
            None => Ok(false),
        }
    };
    let (placed, uploaded) = tokio::join!(place_and_start, upload);
    let uploaded = uploaded?;
    let (plan, mut results) = placed?;
    if uploaded {
        for ((host, name, n), result) in plan.iter().zip(results.iter_mut()) {
            if result.is_err() {
                *result = start_on(host, name, *n).await;
            }
        }
    }
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

#[derive(Serialize)]
struct StopReport {
    host_id: HostId,
    host_name: String,
    replicas: u32,
}

pub(super) async fn stop(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    id: &str,
    host: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let actor = ActorId::new(id)?;
    let pb = spinner(format!("stopping {actor}"));
    let done = on_each_host(ctl, connect, &actor, host, |h, name| {
        let actor = actor.clone();
        async move {
            ctl.stop_actor(&h, &actor).await.map(|s| StopReport {
                host_id: s.host_id,
                host_name: name,
                replicas: s.replicas,
            })
        }
    })
    .await;
    pb.finish_and_clear();
    let (stopped, ok) = done?;
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
    Ok(exit(ok))
}

pub(super) async fn scale(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    id: &str,
    replicas: u32,
    host: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let actor = ActorId::new(id)?;
    let (scaled, ok) = on_each_host(ctl, connect, &actor, host, |h, _| {
        let actor = actor.clone();
        async move { ctl.scale_actor(&h, &actor, replicas).await }
    })
    .await?;
    if out == OutputFormat::Json {
        print_json(&scaled)?;
    } else {
        for s in &scaled {
            println!(
                "scaled {actor} on {} from {} to {} replicas",
                s.host_name, s.before, s.replicas
            );
        }
    }
    Ok(exit(ok))
}

pub(super) async fn update(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    out: OutputFormat,
    id: &str,
    reference: &str,
    host: Option<&str>,
    config: Option<std::collections::BTreeMap<String, String>>,
) -> anyhow::Result<ExitCode> {
    let actor = ActorId::new(id)?;
    // Hosts fetch the module from the store, so it is there before they are asked.
    let digest = match LocalModule::read(reference)? {
        Some(m) => {
            let pb = spinner(format!(
                "uploading {reference} ({:.1} KiB)",
                m.bytes.len() as f64 / 1024.0
            ));
            let uploaded = m.upload(ctl, reference).await;
            pb.finish_and_clear();
            uploaded?;
            m.digest
        }
        None => resolve(ctl, reference).await?.0,
    };
    let cmd = UpdateActor {
        actor_id: actor.clone(),
        digest: digest.clone(),
        reference: display_reference(reference),
        config,
    };
    let pb = spinner(format!("updating {actor} to {}", digest.short()));
    let done = on_each_host(ctl, connect, &actor, host, |h, _| {
        let cmd = cmd.clone();
        async move { ctl.update_actor(&h, &cmd).await }
    })
    .await;
    pb.finish_and_clear();
    let (updated, ok) = done?;
    if out == OutputFormat::Json {
        print_json(&updated)?;
    } else {
        for u in &updated {
            println!(
                "updated {actor} on {} from {} to {} ({} replicas, {} ms)",
                u.host_name,
                u.from.short(),
                u.to.short(),
                u.replicas,
                u.elapsed_ms
            );
        }
    }
    Ok(exit(ok))
}

/// Runs `act` on every host running `actor` (only `host`, id or name, when
/// given), all at once. Returns what succeeded and whether everything did;
/// each failure is printed.
async fn on_each_host<T, Fut>(
    ctl: &CtlClient,
    connect: &ConnectConfig,
    actor: &ActorId,
    host: Option<&str>,
    act: impl Fn(HostId, String) -> Fut,
) -> anyhow::Result<(Vec<T>, bool)>
where
    Fut: Future<Output = Result<T, lattice::Error>>,
{
    let targets = hosts_running(
        ctl,
        connect,
        host,
        |inv| inv.actors.iter().any(|a| &a.id == actor),
        || {
            format!(
                "actor {actor} is not running on any host in lattice {:?}; `lattice ctl get inventory` lists what runs",
                ctl.lattice().as_str()
            )
        },
    )
    .await?;
    let results =
        futures::future::join_all(targets.into_iter().map(|(h, name)| act(h, name))).await;
    let mut done = Vec::new();
    let mut ok = true;
    for r in results {
        match r {
            Ok(v) => done.push(v),
            Err(e) => {
                ok = false;
                eprintln!("error: {e}");
            }
        }
    }
    Ok((done, ok))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
