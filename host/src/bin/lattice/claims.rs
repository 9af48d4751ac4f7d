//! `lattice claims put|inspect`: the claims embedded in an actor module.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use lattice::claims::{self, Claims};

use crate::output::{OutputFormat, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum ClaimsCommand {
    /// Write claims into a module (replacing any it has)
    Put {
        /// The actor module
        module: PathBuf,
        /// Human name of the actor
        #[arg(long)]
        name: String,
        /// Version string
        #[arg(long, default_value = "0.1.0")]
        version: String,
        /// A contract the actor may call, e.g. lattice:keyvalue (repeatable)
        #[arg(long = "contract")]
        contracts: Vec<String>,
        /// Where to write the result [default: overwrite MODULE]
        #[arg(long = "out", short = 'o')]
        out_file: Option<PathBuf>,
    },
    /// Show a module's claims
    Inspect {
        /// The actor module
        module: PathBuf,
    },
}

pub fn run(out: OutputFormat, command: ClaimsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClaimsCommand::Put {
            module,
            name,
            version,
            contracts,
            out_file,
        } => {
            let bytes = std::fs::read(&module)
                .with_context(|| format!("could not read {}", module.display()))?;
            let claims = Claims {
                name,
                version,
                contracts,
            };
            let with = claims::embed(&bytes, &claims)
                .with_context(|| format!("could not write claims into {}", module.display()))?;
            let target = out_file.unwrap_or(module);
            std::fs::write(&target, with)
                .with_context(|| format!("could not write {}", target.display()))?;
            if out == OutputFormat::Json {
                print_json(&claims)?;
            } else {
                println!(
                    "wrote claims of {:?} to {} (contracts: {})",
                    claims.name,
                    target.display(),
                    list(&claims.contracts)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClaimsCommand::Inspect { module } => {
            let bytes = std::fs::read(&module)
                .with_context(|| format!("could not read {}", module.display()))?;
            let claims = claims::read(&bytes)
                .with_context(|| format!("could not read the claims of {}", module.display()))?;
            match (out, claims) {
                (OutputFormat::Json, c) => print_json(&c)?,
                (_, None) => println!(
                    "{} has no claims: as an actor it may call no contract",
                    module.display()
                ),
                (_, Some(c)) => {
                    println!("name:      {}", c.name);
                    println!("version:   {}", c.version);
                    println!("contracts: {}", list(&c.contracts));
                    println!("digest:    {}", lattice::digest::Digest::of(&bytes));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
