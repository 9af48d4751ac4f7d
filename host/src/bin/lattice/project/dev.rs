//! `lattice dev [DIR]`: build the project, run it on a lattice, and replace it
//! on every save.
//!
//! It joins the lattice the global flags name when a host answers there;
//! otherwise it starts a host of its own (`lattice up --name dev-NAME`, which
//! starts a local nats-server when none listens), whose log, with a line per
//! call, goes to this terminal. The actor runs under its project name, with
//! the providers and links of `[dev]` in `lattice.toml`. Sources are polled
//! (every `--poll`); a failed build keeps the last good module running. Ctrl-C
//! stops the actor, and the host when `dev` started it. A module that builds
//! but does not start is replaced by the last good one again.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use lattice::{
    client::CtlClient,
    ctl::{StartActor, StartProvider, UpdateActor},
    digest::Digest,
    id::{ActorId, ContractId, HostId, LinkName, ProviderId, ProviderRef},
    link::LinkDefinition,
};
use lattice_host::config::ConnectConfig;

use super::{ProjectFile, build::build};

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// The project directory (default: the current one)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Sign the claims with this issuer seed file
    #[arg(long, env = "LATTICE_ISSUER")]
    issuer: Option<PathBuf>,
    /// How often to look for changed sources
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    poll: Duration,
}

/// How long a host `dev` started may take to join.
const HOST_START: Duration = Duration::from_secs(30);

/// A host process `dev` started; stopped gracefully on drop.
struct OwnHost(std::process::Child);

impl Drop for OwnHost {
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(connect: &ConnectConfig, args: DevArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone();
    let project = ProjectFile::load(&dir)?;
    let name = project.actor.name.clone();
    let actor = ActorId::new(&name)?;
    let issuer = args.issuer.clone();
    // Taken before the first build: a save during it is seen.
    let mut seen = fingerprint(&dir);
    let first = {
        let (dir, issuer) = (dir.clone(), issuer.clone());
        tokio::task::spawn_blocking(move || build(&dir, issuer.as_deref())).await??
    };
    eprintln!(
        "built {} ({})",
        first.module.display(),
        first.digest.short()
    );

    let (ctl, host, own) = join_or_start(connect, &name).await?;
    setup_links(&ctl, &host, &actor, &project).await?;
    // The project's actor id is dev's own: copies elsewhere would answer calls too.
    for inv in ctl.inventories(crate::gather_window(connect)).await? {
        if inv.host.id != host && inv.actors.iter().any(|a| a.id == actor) {
            ctl.stop_actor(&inv.host.id, &actor).await?;
            eprintln!("stopped {name} on host {}", inv.host.name);
        }
    }
    // The module that runs, and the reference it was started from.
    let mut running = upload(&ctl, &actor, &first.module).await?;
    let mut running_ref = first.module.display().to_string();
    run_module(&ctl, &host, &actor, &running, &running_ref).await?;
    println!(
        "running {name} on lattice {:?}; watching {} for changes (every {:?}); Ctrl-C to stop",
        ctl.lattice().as_str(),
        dir.display(),
        args.poll
    );
    // With a host of its own, the host's log shows every call; joining one,
    // dev watches the calls that reach the actor over NATS (calls from the
    // same host, such as its in-process HTTP server, do not pass there).
    let mut calls = match own {
        Some(_) => None,
        None => {
            println!(
                "(joined a running host: calls over NATS are listed here; the actor's own log lines are in that host's output)"
            );
            Some(
                ctl.nats()
                    .subscribe(lattice::subject::actor_rpc(ctl.lattice(), &actor))
                    .await
                    .context("watching the actor's calls")?,
            )
        }
    };

    // One handler for the whole session: a Ctrl-C during a build or a
    // replacement is kept until the loop looks.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("could not watch for Ctrl-C")?;
    let outcome = loop {
        tokio::select! {
            _ = interrupt.recv() => break Ok(()),
            Some(msg) = next_call(&mut calls) => {
                log_call(&name, &msg);
                continue;
            }
            _ = tokio::time::sleep(args.poll) => {}
        }
        let now = fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        let began = Instant::now();
        let (d, i) = (dir.clone(), issuer.clone());
        let built = tokio::select! {
            built = tokio::task::spawn_blocking(move || build(&d, i.as_deref())) => built?,
            _ = interrupt.recv() => break Ok(()),
        };
        let built = match built {
            Ok(built) if built.digest == running => {
                println!("rebuilt {name}: the module is unchanged");
                continue;
            }
            Ok(built) => built,
            Err(e) => {
                eprintln!(
                    "error: {}\n{name} keeps running the last good module",
                    crate::report::one_line(&e)
                );
                continue;
            }
        };
        let digest = upload(&ctl, &actor, &built.module).await?;
        let reference = built.module.display().to_string();
        match run_module(&ctl, &host, &actor, &digest, &reference).await {
            Ok(()) => {
                running = digest;
                running_ref = reference;
                println!(
                    "replaced {name} with {} in {} ms",
                    running.short(),
                    began.elapsed().as_millis()
                );
            }
            Err(e) => {
                // It built but does not start (say, its init traps). A failed
                // update leaves the last good module serving; when nothing
                // runs any more, the last good module is started again.
                let serving = ctl
                    .inventory(&host)
                    .await
                    .is_ok_and(|inv| inv.actors.iter().any(|a| a.id == actor));
                if serving {
                    eprintln!(
                        "error: {}\n{name} keeps running the last good module",
                        crate::report::one_line(&e)
                    );
                    continue;
                }
                eprintln!(
                    "error: {}\n{name} goes back to the last good module",
                    crate::report::one_line(&e)
                );
                if let Err(e) = run_module(&ctl, &host, &actor, &running, &running_ref).await {
                    break Err(e.context("could not restart the last good module"));
                }
            }
        }
    };
    eprintln!("stopping {name}");
    let _ = ctl.stop_actor(&host, &actor).await;
    drop(own);
    outcome.map(|()| ExitCode::SUCCESS)
}

/// The next call seen on the actor's subject; pending forever without a watch.
async fn next_call(calls: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    use futures::StreamExt;
    match calls {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

/// One line per call: operation, caller, argument size.
fn log_call(name: &str, msg: &async_nats::Message) {
    match lattice::rpc::Invocation::decode(&msg.payload) {
        Ok(inv) => println!(
            "call {name} {} from {} ({} bytes)",
            inv.operation,
            inv.origin,
            inv.payload.len()
        ),
        Err(e) => println!("call {name}: unreadable invocation ({e})"),
    }
}

/// A client of the lattice, the host to run on (the first that answers), and
/// the host process started when none answered (then the host is that one).
async fn join_or_start(
    connect: &ConnectConfig,
    name: &str,
) -> anyhow::Result<(CtlClient, HostId, Option<OwnHost>)> {
    if let Ok(ctl) = crate::client(connect).await
        && let Some(first) = ctl
            .ping_hosts(crate::gather_window(connect))
            .await?
            .into_iter()
            .next()
    {
        return Ok((ctl, first.id, None));
    }
    let exe = std::env::current_exe().context("could not find the lattice binary")?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(url) = &connect.nats_url {
        cmd.args(["--nats-url", url]);
    }
    cmd.args(["--lattice", connect.lattice.as_str(), "up", "--name"])
        .arg(format!("dev-{name}"));
    if std::env::var_os("LATTICE_LOG").is_none() {
        cmd.env(
            "LATTICE_LOG",
            "warn,lattice::actor=info,lattice::call=debug,lattice_host=warn",
        );
    }
    eprintln!(
        "no host in lattice {:?}: starting one (dev-{name})",
        connect.lattice.as_str()
    );
    // Its own process group: a Ctrl-C in this terminal reaches dev, which
    // stops the actor first and then the host.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().context("could not start `lattice up`")?;
    let own = OwnHost(child);
    let deadline = Instant::now() + HOST_START;
    // Connected once NATS is up (the host may be starting it), then asked
    // until the host has joined.
    let mut client = None;
    loop {
        if client.is_none() {
            client = crate::client(connect).await.ok();
        }
        if let Some(ctl) = &client
            && let Ok(host) = ctl.resolve_host(&format!("dev-{name}")).await
        {
            return Ok((ctl.clone(), host, Some(own)));
        }
        if Instant::now() > deadline {
            bail!(
                "the host dev started did not join lattice {:?} within {HOST_START:?}; its output is above",
                connect.lattice.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts the `[dev]` providers that do not run yet (on `host`) and puts the
/// actor's links to them.
async fn setup_links(
    ctl: &CtlClient,
    host: &HostId,
    actor: &ActorId,
    project: &ProjectFile,
) -> anyhow::Result<()> {
    if project.dev.links.is_empty() {
        return Ok(());
    }
    let running = ctl.ping_providers(Duration::from_millis(300)).await?;
    let links = ctl.links().await?;
    for link in &project.dev.links {
        let reference = ProviderRef::parse(&link.provider)
            .with_context(|| format!("[dev] link for {}", link.contract))?;
        let provider_id = ProviderId::new(reference.name())?;
        if !running.iter().any(|p| p.id == provider_id) {
            ctl.start_provider(
                host,
                &StartProvider {
                    provider_id: provider_id.clone(),
                    name: reference,
                },
            )
            .await
            .with_context(|| format!("starting provider {}", link.provider))?;
            eprintln!("started provider {provider_id}");
        }
        links
            .put(&LinkDefinition {
                actor_id: actor.clone(),
                provider_id,
                contract: ContractId::new(&link.contract)?,
                link_name: LinkName::default_name(),
                config: link.config.clone(),
            })
            .await?;
    }
    Ok(())
}

/// Uploads `module` to the lattice's artifact store (tag `NAME:dev`).
async fn upload(ctl: &CtlClient, actor: &ActorId, module: &Path) -> anyhow::Result<Digest> {
    let bytes =
        std::fs::read(module).with_context(|| format!("could not read {}", module.display()))?;
    Ok(ctl
        .artifacts()
        .await?
        .put(&bytes, Some((actor.as_str(), "dev")))
        .await?)
}

/// Runs module `digest` as `actor` on `host`, in place of what runs there.
async fn run_module(
    ctl: &CtlClient,
    host: &HostId,
    actor: &ActorId,
    digest: &Digest,
    reference: &str,
) -> anyhow::Result<()> {
    if ctl
        .inventory(host)
        .await?
        .actors
        .iter()
        .any(|a| &a.id == actor)
    {
        // In place: the running module serves until the new one does.
        ctl.update_actor(
            host,
            &UpdateActor {
                actor_id: actor.clone(),
                digest: digest.clone(),
                reference: reference.to_string(),
                config: None,
            },
        )
        .await?;
        return Ok(());
    }
    ctl.start_actor(
        host,
        &StartActor {
            actor_id: actor.clone(),
            digest: digest.clone(),
            reference: reference.to_string(),
            replicas: 1,
            config: Default::default(),
        },
    )
    .await?;
    Ok(())
}

/// What changes when a source is saved: the newest modification time and the
/// number of files, outside build output and hidden directories.
fn fingerprint(dir: &Path) -> (Option<SystemTime>, usize) {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>, count: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "build" || name == "target" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&entry.path(), newest, count);
            } else {
                *count += 1;
                if let Ok(m) = meta.modified() {
                    *newest = (*newest).max(Some(m));
                }
            }
        }
    }
    let (mut newest, mut count) = (None, 0);
    walk(dir, &mut newest, &mut count);
    (newest, count)
}
