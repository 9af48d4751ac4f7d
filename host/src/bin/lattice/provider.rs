//! `lattice provider run NAME`: a built-in provider as its own process.

use std::process::ExitCode;

use anyhow::Context;
use lattice_host::{config::ConnectConfig, host::providers};

#[derive(clap::Subcommand, Debug)]
pub enum ProviderCommand {
    /// Run a built-in provider in this process, joined to the lattice over NATS
    Run {
        /// Built-in name: httpserver or keyvalue (builtin: prefix optional)
        name: String,
        /// Provider id [default: the name]
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn run(connect: &ConnectConfig, command: ProviderCommand) -> anyhow::Result<ExitCode> {
    let ProviderCommand::Run { name, id } = command;
    let reference = lattice::id::ProviderRef::builtin(&name)?;
    let provider = providers::builtin(&reference, None).with_context(|| {
        format!(
            "unknown built-in provider {name:?}; built-ins are: {}",
            providers::BUILTINS.join(", ")
        )
    })?;
    let id = id.unwrap_or_else(|| reference.name().to_string());
    let ctl = crate::client(connect).await?;
    eprintln!(
        "provider {id} ({reference}) joining lattice {:?}; Ctrl-C to stop",
        connect.lattice.as_str()
    );
    lattice_provider::run_standalone(
        provider,
        ctl.nats().clone(),
        connect.lattice.clone(),
        &id,
        &reference.to_string(),
    )
    .await
    .with_context(|| format!("provider {id} failed"))?;
    Ok(ExitCode::SUCCESS)
}
