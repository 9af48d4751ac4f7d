//! `lattice keys gen`: make an issuer key pair for signing actor claims.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::PathBuf, process::ExitCode};

use anyhow::Context;
use serde::Serialize;

use crate::output::{OutputFormat, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Make an issuer key pair: write its seed (mode 0600) and print the public key
    ///
    /// The public key (starting with `A`) goes to `lattice up --allowed-issuer`;
    /// the seed file to `lattice claims sign --issuer`. Keep it secret.
    Gen {
        /// Where to write the seed
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
    },
}

#[derive(Serialize)]
struct Generated {
    public_key: String,
    seed_file: PathBuf,
}

pub fn run(out: OutputFormat, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Gen { out: file, force } => {
            let kp = nkeys::KeyPair::new_account();
            let seed = kp
                .seed()
                .map_err(|e| anyhow::anyhow!("could not encode the seed: {e}"))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).mode(0o600);
            if force {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            let mut f = options.open(&file).with_context(|| {
                if file.exists() && !force {
                    format!(
                        "{} exists; pass --force to replace it (and every signature made with it stops verifying against the new key)",
                        file.display()
                    )
                } else {
                    format!("could not create {}", file.display())
                }
            })?;
            // An existing file keeps its mode through truncate: make sure it is 0600.
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .with_context(|| format!("could not restrict {} to mode 0600", file.display()))?;
            f.write_all(format!("{seed}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("could not write {}", file.display()))?;
            if out == OutputFormat::Json {
                print_json(&Generated {
                    public_key: kp.public_key(),
                    seed_file: file,
                })?;
            } else {
                println!("{}", kp.public_key());
                eprintln!(
                    "wrote the issuer seed to {} (mode 0600; keep it secret). Sign with `lattice claims sign MODULE --issuer {}`; trust with `lattice up --allowed-issuer {}`",
                    file.display(),
                    file.display(),
                    kp.public_key()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
