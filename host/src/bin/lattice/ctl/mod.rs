//! `lattice ctl ...`: inspect and control the lattice.
//!
//! - [`args`]: the clap types of the subcommands.
//! - [`get`]: `get hosts|inventory|links|providers`, as tables or JSON.
//! - [`actor`]: `start actor` (upload, placement, start), `scale actor`, `update actor`
//!   and `stop actor`.
//! - [`provider`]: `start provider` and `stop provider` (built-ins inside hosts).
//! - [`link`]: `link put|del`.
//! - [`placement`]: which hosts a command acts on (host names, auctions, spread).
//! - [`artifact`]: a module reference as the artifact store knows it.

mod actor;
mod args;
mod artifact;
mod get;
mod link;
mod placement;
mod provider;

use std::process::ExitCode;

use lattice_host::config::ConnectConfig;

pub use args::CtlCommand;
use args::{ScaleCommand, StartCommand, StopCommand, UpdateCommand};

use crate::output::OutputFormat;

pub async fn run(
    connect: &ConnectConfig,
    out: OutputFormat,
    command: CtlCommand,
) -> anyhow::Result<ExitCode> {
    let ctl = crate::client(connect).await?;
    match command {
        CtlCommand::Get { what } => get::run(&ctl, connect, out, what).await,
        CtlCommand::Start {
            what: StartCommand::Actor(args),
        } => actor::start(&ctl, connect, out, args).await,
        CtlCommand::Start {
            what:
                StartCommand::Provider {
                    reference,
                    id,
                    host,
                    count,
                    constraints,
                },
        } => provider::start(&ctl, connect, out, &reference, id, host, count, constraints).await,
        CtlCommand::Stop {
            what: StopCommand::Actor { id, host },
        } => actor::stop(&ctl, connect, out, &id, host.as_deref()).await,
        CtlCommand::Stop {
            what: StopCommand::Provider { id, host },
        } => provider::stop(&ctl, connect, out, &id, host.as_deref()).await,
        CtlCommand::Scale {
            what: ScaleCommand::Actor { id, replicas, host },
        } => actor::scale(&ctl, connect, out, &id, replicas, host.as_deref()).await,
        CtlCommand::Update {
            what:
                UpdateCommand::Actor {
                    id,
                    reference,
                    host,
                    env_vars,
                    clear_env,
                },
        } => {
            let config =
                (clear_env || !env_vars.is_empty()).then(|| env_vars.into_iter().collect());
            actor::update(&ctl, connect, out, &id, &reference, host.as_deref(), config).await
        }
        CtlCommand::Link { what } => link::run(&ctl, out, what).await,
    }
}
