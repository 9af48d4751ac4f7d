//! `lattice claims put|sign|inspect`: the claims embedded in an actor module.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use lattice::claims::{
    self, Claims, Embedded,
    token::{self, Token},
};
use serde::Serialize;

use crate::output::{OutputFormat, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum ClaimsCommand {
    /// Write unsigned claims into a module (replacing any it has)
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
        /// An actor id the actor may call, or * for every actor (repeatable)
        #[arg(long = "actor")]
        actors: Vec<String>,
        /// Where to write the result [default: overwrite MODULE]
        #[arg(long = "out", short = 'o')]
        out_file: Option<PathBuf>,
    },
    /// Sign claims into a module with an issuer key (replacing any claims it has)
    ///
    /// Without --name the module's own claims (from `claims!` or `claims put`)
    /// are signed, and --version, --contract and --actor replace their parts;
    /// with --name the claims are exactly the flags, as for `claims put`.
    Sign {
        /// The actor module
        module: PathBuf,
        /// The issuer's seed file, from `lattice keys gen`
        #[arg(long, env = "LATTICE_ISSUER")]
        issuer: PathBuf,
        /// Human name of the actor [default: the module's claims]
        #[arg(long)]
        name: Option<String>,
        /// Version string [default: the module's claims (without --name), else 0.1.0]
        #[arg(long)]
        version: Option<String>,
        /// A contract the actor may call (repeatable) [default: the module's claims]
        #[arg(long = "contract")]
        contracts: Vec<String>,
        /// An actor id the actor may call, or * for every actor (repeatable)
        /// [default: the module's claims]
        #[arg(long = "actor")]
        actors: Vec<String>,
        /// How long the signature stays valid, e.g. 90d [default: forever]
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        /// Where to write the result [default: overwrite MODULE]
        #[arg(long = "out", short = 'o')]
        out_file: Option<PathBuf>,
    },
    /// Show a module's claims, their issuer and whether the signature verifies
    Inspect {
        /// The actor module
        module: PathBuf,
    },
}

/// What `claims inspect --output json` prints: the claims, plus the token's
/// details when they are signed.
#[derive(Serialize)]
struct Inspected {
    #[serde(flatten)]
    claims: Claims,
    digest: String,
    signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    /// Whether the signature, the module hash and the expiry check out.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

fn read_module(module: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(module).with_context(|| format!("could not read {}", module.display()))
}

/// Reads an issuer seed file (`lattice keys gen`).
pub(crate) fn read_issuer(file: &Path) -> anyhow::Result<nkeys::KeyPair> {
    let seed = std::fs::read_to_string(file)
        .with_context(|| format!("could not read the issuer seed file {}", file.display()))?;
    let kp = nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{} holds no nkeys seed ({e}); make one with `lattice keys gen`",
            file.display()
        )
    })?;
    if kp.key_pair_type() != nkeys::KeyPairType::Account {
        bail!(
            "{} holds a {:?} key, not an account (issuer) key; make one with `lattice keys gen`",
            file.display(),
            kp.key_pair_type()
        );
    }
    Ok(kp)
}

pub fn run(out: OutputFormat, command: ClaimsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClaimsCommand::Put {
            module,
            name,
            version,
            contracts,
            actors,
            out_file,
        } => {
            let bytes = read_module(&module)?;
            let claims = Claims {
                name,
                version,
                contracts,
                actors,
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
                    "wrote claims of {:?} to {} (contracts: {}; actors: {})",
                    claims.name,
                    target.display(),
                    list(&claims.contracts),
                    list(&claims.actors)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClaimsCommand::Sign {
            module,
            issuer,
            name,
            version,
            contracts,
            actors,
            expires_in,
            out_file,
        } => {
            let bytes = read_module(&module)?;
            let key = read_issuer(&issuer)?;
            let existing = claims::read(&bytes)
                .with_context(|| format!("could not read the claims of {}", module.display()))?;
            let mut claims = match (name, existing) {
                (Some(name), _) => Claims {
                    name,
                    ..Claims::default()
                },
                (None, Some(c)) => c,
                (None, None) => bail!(
                    "{} has no claims to sign; give them with --name (and --contract, --actor)",
                    module.display()
                ),
            };
            if let Some(v) = version {
                claims.version = v;
            }
            if claims.version.is_empty() {
                claims.version = "0.1.0".into();
            }
            if !contracts.is_empty() {
                claims.contracts = contracts;
            }
            if !actors.is_empty() {
                claims.actors = actors;
            }
            let now = token::now();
            let expires = expires_in.map(|d| now.saturating_add(d.as_secs()));
            let signed = token::sign(&bytes, &claims, &key, now, expires)
                .with_context(|| format!("could not sign the claims of {}", module.display()))?;
            let target = out_file.unwrap_or(module);
            std::fs::write(&target, &signed)
                .with_context(|| format!("could not write {}", target.display()))?;
            if out == OutputFormat::Json {
                print_json(&inspect(&signed)?)?;
            } else {
                println!(
                    "signed claims of {:?} into {} as issuer {} (contracts: {}; actors: {}; expires: {})",
                    claims.name,
                    target.display(),
                    key.public_key(),
                    list(&claims.contracts),
                    list(&claims.actors),
                    expires.map_or("never".into(), token::format_time)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClaimsCommand::Inspect { module } => {
            let bytes = read_module(&module)?;
            let embedded = claims::read_embedded(&bytes)
                .with_context(|| format!("could not read the claims of {}", module.display()))?;
            match (out, embedded) {
                (OutputFormat::Json, None) => print_json(&None::<Claims>)?,
                (OutputFormat::Json, Some(_)) => print_json(&inspect(&bytes)?)?,
                (_, None) => println!(
                    "{} has no claims: as an actor it may call no contract and no actor",
                    module.display()
                ),
                (_, Some(_)) => {
                    let i = inspect(&bytes)?;
                    println!("name:      {}", i.claims.name);
                    println!("version:   {}", i.claims.version);
                    println!("contracts: {}", list(&i.claims.contracts));
                    println!("actors:    {}", list(&i.claims.actors));
                    println!("digest:    {}", i.digest);
                    match (&i.issuer, i.verified) {
                        (Some(issuer), Some(ok)) => {
                            println!("issuer:    {issuer}");
                            println!("issued:    {}", i.issued_at.as_deref().unwrap_or("?"));
                            println!("expires:   {}", i.expires.as_deref().unwrap_or("never"));
                            if ok {
                                println!("signature: valid (the module is as signed)");
                            } else {
                                println!(
                                    "signature: INVALID: {}",
                                    i.problem.as_deref().unwrap_or("?")
                                );
                            }
                        }
                        _ => println!("signature: none (unsigned claims)"),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The claims of `bytes` (which has some) and, when signed, the verdict.
fn inspect(bytes: &[u8]) -> anyhow::Result<Inspected> {
    let embedded = claims::read_embedded(bytes)?.context("the module has no claims")?;
    let digest = lattice::digest::Digest::of(bytes).to_string();
    Ok(match embedded {
        Embedded::Unsigned(claims) => Inspected {
            claims,
            digest,
            signed: false,
            issuer: None,
            issued_at: None,
            expires: None,
            verified: None,
            problem: None,
        },
        Embedded::Signed(t) => {
            let verdict = Token::verify(&t, bytes, token::now());
            Inspected {
                digest,
                signed: true,
                issuer: Some(t.body.issuer.clone()),
                issued_at: Some(token::format_time(t.body.issued_at)),
                expires: t.body.expires.map(token::format_time),
                verified: Some(verdict.is_ok()),
                problem: verdict.err().map(|e| e.to_string()),
                claims: t.body.claims,
            }
        }
    })
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
