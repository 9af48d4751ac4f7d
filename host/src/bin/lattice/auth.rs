//! `lattice auth init`: nkey seeds per role and a nats-server config enforcing them.

use std::{path::PathBuf, process::ExitCode};

use lattice::id::LatticeId;
use lattice_host::auth::{self, Role};

use crate::output::{OutputFormat, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum AuthCommand {
    /// Write an nkey seed per role (host, provider, admin, caller, observer) and
    /// DIR/nats.conf, for `nats-server -c DIR/nats.conf -p PORT -sd DATA -js`
    Init {
        /// Directory for the seed files and nats.conf (created, mode 0700)
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(
    lattice: &LatticeId,
    output: OutputFormat,
    command: AuthCommand,
) -> anyhow::Result<ExitCode> {
    let AuthCommand::Init { out } = command;
    let files = auth::init(&out, lattice)?;
    if output == OutputFormat::Json {
        let roles: serde_json::Map<String, serde_json::Value> = files
            .users
            .users
            .iter()
            .map(|(role, public)| {
                (
                    role.name().to_string(),
                    serde_json::json!({
                        "public_key": public.to_string(),
                        "seed_file": role.seed_file(&out),
                    }),
                )
            })
            .collect();
        print_json(&serde_json::json!({
            "lattice": lattice.as_str(),
            "created": files.created,
            "dir": files.dir,
            "nats_conf": files.nats_conf,
            "roles": roles,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} seeds for lattice {:?} in {} (mode 0600); server config {}",
        if files.created {
            "wrote"
        } else {
            "kept existing"
        },
        lattice.as_str(),
        files.dir.display(),
        files.nats_conf.display()
    );
    for (role, public) in &files.users.users {
        println!(
            "  {:<9} {}  {}",
            role.name(),
            public,
            role.seed_file(&out).display()
        );
    }
    println!(
        "run: nats-server -c {} -p 4222 -sd DATA_DIR -js\n\
         hosts: lattice up --nats-url nats://SERVER:4222 --nats-nkey {}",
        files.nats_conf.display(),
        Role::Host.seed_file(&out).display()
    );
    Ok(ExitCode::SUCCESS)
}
