//! `lattice auth init`: nkey seeds per role and a nats-server config enforcing them.

use std::{path::PathBuf, process::ExitCode};

use lattice::id::LatticeId;
use lattice_host::auth::{self, Role};

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

pub fn run(lattice: &LatticeId, command: AuthCommand) -> anyhow::Result<ExitCode> {
    let AuthCommand::Init { out } = command;
    let files = auth::init(&out, lattice)?;
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
