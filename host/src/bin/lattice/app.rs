//! `lattice app deploy|list|status|undeploy`: declarative apps.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use lattice::{
    app::{AppStatus, DeployedApp, Manifest},
    app_store::AppStore,
    client::CtlClient,
    ctl::HostInventory,
    digest::Digest,
};
use lattice_host::config::ConnectConfig;
use serde::Serialize;

use crate::output::{OutputFormat, print_json, print_table, progress, spinner};

#[derive(clap::Subcommand, Debug)]
pub enum AppCommand {
    /// Deploy (or update) an app from a TOML manifest; the lattice converges to it
    Deploy {
        /// The manifest file
        file: PathBuf,
        /// Wait (up to this long, e.g. 60s) until the app has converged, showing progress
        #[arg(long, value_parser = humantime::parse_duration, value_name = "TIMEOUT")]
        wait: Option<Duration>,
    },
    /// Deployed apps
    List,
    /// Desired vs actual, per actor and provider
    Status {
        /// App name
        name: String,
    },
    /// Remove an app: stop its actors and providers, delete its links
    Undeploy {
        /// App name
        name: String,
    },
}

pub async fn run(
    connect: &ConnectConfig,
    out: OutputFormat,
    command: AppCommand,
) -> anyhow::Result<ExitCode> {
    let ctl = crate::client(connect).await?;
    let store = AppStore::open(ctl.nats().clone(), ctl.lattice()).await?;
    match command {
        AppCommand::Deploy { file, wait } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let manifest = Manifest::from_toml(&text)
                .with_context(|| format!("invalid app manifest {}", file.display()))?;
            let base = file.parent().map(PathBuf::from).unwrap_or_default();
            let artifacts = ctl.artifacts().await?;
            let pb = spinner(format!("uploading the modules of {}", manifest.name));
            let mut digests = BTreeMap::new();
            for a in &manifest.actors {
                let r = a.reference.as_deref().unwrap_or_default();
                let path = base.join(r);
                let digest: Digest = if r.ends_with(".wasm") || path.exists() {
                    let bytes = std::fs::read(&path).with_context(|| {
                        format!("actor {}: could not read {}", a.id, path.display())
                    })?;
                    artifacts
                        .put(&bytes, Some((a.id.as_str(), "latest")))
                        .await?
                } else {
                    artifacts
                        .resolve(r)
                        .await
                        .with_context(|| format!("actor {}: ref {r:?}", a.id))?
                };
                digests.insert(a.id.clone(), digest);
            }
            pb.finish_and_clear();
            let app = store.deploy(manifest, digests).await?;
            if out == OutputFormat::Json {
                print_json(&app)?;
            } else {
                println!(
                    "deployed app {} revision {} ({} actors, {} providers, {} links); `lattice app status {}` shows progress",
                    app.manifest.name,
                    app.revision,
                    app.manifest.actors.len(),
                    app.manifest.providers.len(),
                    app.manifest.links.len(),
                    app.manifest.name
                );
            }
            if let Some(timeout) = wait {
                converge(&ctl, &store, &app.manifest.name, app.revision, timeout).await?;
            }
        }
        AppCommand::List => {
            let apps = store.list().await?;
            if out == OutputFormat::Json {
                print_json(&apps)?;
            } else if apps.is_empty() {
                eprintln!("no apps deployed in lattice {:?}", ctl.lattice().as_str());
            } else {
                let rows = apps
                    .iter()
                    .map(|a| {
                        vec![
                            a.manifest.name.clone(),
                            a.revision.to_string(),
                            a.manifest.actors.len().to_string(),
                            a.manifest.providers.len().to_string(),
                            a.manifest.links.len().to_string(),
                            if a.undeploying {
                                "undeploying".to_string()
                            } else {
                                a.deployed_at.clone()
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "name",
                        "revision",
                        "actors",
                        "providers",
                        "links",
                        "deployed",
                    ],
                    rows,
                );
            }
        }
        AppCommand::Status { name } => return status(&ctl, &store, out, &name).await,
        AppCommand::Undeploy { name } => {
            let pb = spinner(format!("undeploying {name}"));
            let app = undeploy(&ctl, &store, &name, crate::gather_window(connect)).await;
            pb.finish_and_clear();
            let Some(app) = app? else {
                bail!(
                    "no app named {name:?} in lattice {:?}; `lattice app list` shows the deployed ones",
                    ctl.lattice().as_str()
                );
            };
            if out == OutputFormat::Json {
                print_json(&serde_json::json!({ "name": name, "revision": app.revision }))?;
            } else {
                println!("undeployed app {name} (revision {})", app.revision);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until revision `revision` of app `name` has converged, telling how
/// far it is whenever that changes.
async fn converge(
    ctl: &CtlClient,
    store: &AppStore,
    name: &str,
    revision: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let pb = spinner(format!("app {name}: waiting for the reconciler"));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut said = String::new();
    loop {
        let current = current_report(ctl, store, name).await?;
        let Some((app, report)) = current.filter(|(a, _)| a.revision == revision) else {
            pb.finish_and_clear();
            bail!("app {name} changed while waiting for revision {revision} to converge");
        };
        if report.converged {
            pb.finish_and_clear();
            eprintln!("app {name} revision {revision} converged");
            return Ok(());
        }
        let actors: u32 = report.actors.iter().map(|a| a.actual.min(a.desired)).sum();
        let want: u32 = report.actors.iter().map(|a| a.desired).sum();
        let providers = report.providers.iter().filter(|p| p.running).count();
        let now = format!(
            "app {name}: {actors}/{want} actor replicas, {providers}/{} providers{}",
            app.manifest.providers.len(),
            report
                .problem
                .as_deref()
                .map_or(String::new(), |p| format!("; problem: {p}"))
        );
        if now != said {
            progress(&pb, now.clone());
            said = now;
        }
        if tokio::time::Instant::now() >= deadline {
            pb.finish_and_clear();
            bail!(
                "app {name} revision {revision} has not converged within {}: {said}; `lattice app status {name}` shows what is missing",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Marks app `name` for removal and waits (up to 15 s) for the reconciler
/// leader to remove what it runs and then its record; when none does (every
/// host runs with `--no-reconcile`), removes it from here. Returns the app as
/// it was, `None` when there is no such app.
pub(crate) async fn undeploy(
    ctl: &CtlClient,
    store: &AppStore,
    name: &str,
    window: Duration,
) -> anyhow::Result<Option<DeployedApp>> {
    let Some(app) = store.mark_undeploying(name).await? else {
        return Ok(None);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        match store.get(name).await? {
            None => return Ok(Some(app)),
            Some(now) if !now.undeploying => {
                return Err(lattice::Error::AppRedeployed {
                    name: name.to_string(),
                    revision: now.revision,
                }
                .into());
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("warning: no reconciler removed app {name} within 15 s; cleaning up from here");
    let inventories = ctl.inventories(window).await?;
    let failures = ctl.remove_app_resources(&app, &inventories).await;
    if !failures.is_empty() {
        bail!("could not undeploy app {name}: {}", failures.join("; "));
    }
    store.remove(name).await?;
    Ok(Some(app))
}

/// Desired against actual for one app: what `app status` prints and the
/// dashboard shows.
#[derive(Serialize)]
pub(crate) struct StatusReport {
    name: String,
    revision: u64,
    converged: bool,
    actors: Vec<ActorLine>,
    providers: Vec<lattice::app::ProviderStatusLine>,
    reconciler: Option<String>,
    observed_at: Option<String>,
    problem: Option<String>,
}

#[derive(Serialize)]
struct ActorLine {
    id: String,
    desired: u32,
    actual: u32,
    problem: Option<String>,
}

/// App `name` and its status now, `None` when there is no such app.
async fn current_report(
    ctl: &CtlClient,
    store: &AppStore,
    name: &str,
) -> anyhow::Result<Option<(DeployedApp, StatusReport)>> {
    let Some(app) = store.get(name).await? else {
        return Ok(None);
    };
    let seen = store.status(name).await?;
    // Actual counts are read live, not from the reconciler's last pass.
    let invs = ctl.inventories(lattice::client::DEFAULT_GATHER).await?;
    let report = status_report(&app, seen, &invs);
    Ok(Some((app, report)))
}

/// The status of `app` from the reconciler's last word on it (`seen`) and
/// live inventories.
pub(crate) fn status_report(
    app: &DeployedApp,
    seen: Option<AppStatus>,
    invs: &[HostInventory],
) -> StatusReport {
    let actors: Vec<ActorLine> = app
        .manifest
        .actors
        .iter()
        .map(|a| {
            let digest = app.digests.get(&a.id);
            let actual = invs
                .iter()
                .flat_map(|i| i.actors.iter())
                .filter(|x| x.id.as_str() == a.id && Some(&x.digest) == digest)
                .map(|x| x.replicas)
                .sum();
            let problem = seen
                .as_ref()
                .and_then(|s| s.actors.iter().find(|l| l.id == a.id))
                .and_then(|l| l.problem.clone());
            ActorLine {
                id: a.id.clone(),
                desired: a.replicas.max(0) as u32,
                actual,
                problem,
            }
        })
        .collect();
    let providers = seen
        .as_ref()
        .map(|s| s.providers.clone())
        .unwrap_or_default();
    StatusReport {
        name: app.manifest.name.clone(),
        revision: app.revision,
        // Converged only once the reconciler has looked at this very revision:
        // before its first pass, no provider is listed at all.
        converged: actors.iter().all(|a| a.actual == a.desired)
            && seen.as_ref().is_some_and(|s| s.revision == app.revision)
            && providers.len() == app.manifest.providers.len()
            && providers.iter().all(|p| p.running)
            && seen.as_ref().is_some_and(|s| s.problem.is_none()),
        problem: seen.as_ref().and_then(|s| s.problem.clone()),
        actors,
        providers,
        reconciler: seen.as_ref().map(|s| s.reconciler.clone()),
        observed_at: seen.as_ref().map(|s| s.observed_at.clone()),
    }
}

async fn status(
    ctl: &CtlClient,
    store: &AppStore,
    out: OutputFormat,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let Some((_, report)) = current_report(ctl, store, name).await? else {
        bail!(
            "no app named {name:?} in lattice {:?}; `lattice app list` shows the deployed ones",
            ctl.lattice().as_str()
        );
    };
    if out == OutputFormat::Json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "app {} revision {}: {}",
        report.name,
        report.revision,
        if report.converged {
            "converged"
        } else {
            "converging"
        }
    );
    if let Some(problem) = &report.problem {
        println!("problem: {problem}");
    }
    let rows = report
        .actors
        .iter()
        .map(|a| {
            vec![
                "actor".to_string(),
                a.id.clone(),
                a.desired.to_string(),
                a.actual.to_string(),
                a.problem.clone().unwrap_or_default(),
            ]
        })
        .chain(report.providers.iter().map(|p| {
            vec![
                "provider".to_string(),
                p.id.clone(),
                p.desired.to_string(),
                p.actual.to_string(),
                p.problem.clone().unwrap_or_default(),
            ]
        }))
        .collect();
    print_table(&["kind", "id", "desired", "actual", "problem"], rows);
    match (&report.reconciler, &report.observed_at) {
        (Some(r), Some(t)) => println!("last reconciled by {r} at {t}"),
        _ => println!("not reconciled yet (is any host running with reconcile enabled?)"),
    }
    Ok(ExitCode::SUCCESS)
}
