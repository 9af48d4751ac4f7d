//! `lattice`: the host agent (`lattice up`) and the command-line client.

mod app;
mod auth;
mod call;
mod claims;
mod ctl;
mod events;
mod hint;
mod keys;
mod nats_args;
mod output;
mod project;
mod provider;
mod report;
mod ui;
mod up;

use std::{path::PathBuf, process::ExitCode, sync::LazyLock, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use lattice::{auth::Refusals, client::CtlClient};
use lattice_host::config::{self, ConnectConfig, LogConfig};
use serde::Serialize;

use output::OutputFormat;

/// Lattice: a distributed WebAssembly actor mesh over NATS.
#[derive(Parser, Debug)]
#[command(name = "lattice", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes; each has a `LATTICE_*` twin via the config layers.
#[derive(clap::Args, Debug, Serialize)]
struct GlobalArgs {
    /// NATS server URL [env: LATTICE_NATS_URL] [default: nats://127.0.0.1:4222]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    nats_url: Option<String>,
    /// Lattice id [env: LATTICE_ID] [default: default]
    #[arg(long = "lattice", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lattice: Option<String>,
    /// Timeout of requests and calls, e.g. 10s or 500ms [env: LATTICE_TIMEOUT]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    /// Config file (TOML) [env: LATTICE_CONFIG] [default: ~/.config/lattice/config.toml if present]
    #[arg(long, global = true, env = "LATTICE_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Output format: table for people, json for scripts
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    #[serde(skip)]
    output: OutputFormat,
    /// Export spans to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318 [env: LATTICE_OTLP_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<String>,
    /// Trust only the CA certificates in this PEM file (instead of Mozilla's roots) for an https:// collector [env: LATTICE_OTLP_CERTIFICATE, else OTEL_EXPORTER_OTLP_CERTIFICATE]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_certificate: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    nats: nats_args::NatsArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a host in the foreground and join the lattice
    Up(up::UpArgs),
    /// Inspect and control the lattice
    Ctl {
        #[command(subcommand)]
        command: ctl::CtlCommand,
    },
    /// Call an operation on an actor: JSON in, JSON out (msgpack on the wire)
    Call(call::CallArgs),
    /// Print lattice events as they happen
    Events(events::EventsArgs),
    /// Serve a live dashboard of the lattice in the browser
    Ui(ui::UiArgs),
    /// Write a new actor project (with its SDK) that builds anywhere
    New(project::new::NewArgs),
    /// Build the actor project here (or in DIR): build/NAME.wasm with its claims
    Build(project::build::BuildArgs),
    /// Build, run and replace the actor project on every save
    Dev(project::dev::DevArgs),
    /// Deploy and inspect declarative apps
    App {
        #[command(subcommand)]
        command: app::AppCommand,
    },
    /// Read or write the claims embedded in an actor module
    Claims {
        #[command(subcommand)]
        command: claims::ClaimsCommand,
    },
    /// Make issuer keys for signing actor claims
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Credentials of a lattice's roles, enforced by NATS
    Auth {
        #[command(subcommand)]
        command: auth::AuthCommand,
    },
    /// Run a provider as its own process
    Provider {
        #[command(subcommand)]
        command: provider::ProviderCommand,
    },
    /// Print a shell completion script, e.g. `lattice completions bash >
    /// ~/.local/share/bash-completion/completions/lattice`
    Completions {
        /// The shell to complete in
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A host or provider serves many things at once: one worker per core. The
    // other commands wait on a few requests; one thread starts and stops in
    // a fraction of the time, which a command that takes milliseconds feels.
    let runtime = match &cli.command {
        Command::Up(_) | Command::Provider { .. } => tokio::runtime::Runtime::new(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            // Backtraces only on request: RUST_BACKTRACE is often set globally on
            // developer machines and would bury the message.
            let verbose = std::env::var("LATTICE_BACKTRACE").is_ok_and(|v| v != "0");
            if verbose {
                eprintln!("error: {err:?}");
            } else {
                eprintln!("error: {}", report::one_line(&err));
            }
            if let Some(fix) = hint::fix_for(&err) {
                eprintln!("hint: {fix}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = cli.command {
        // Needs no configuration, NATS or logging: works on a bare machine.
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "lattice", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    let figment = config::figment(cli.global.config.as_deref(), &cli.global);
    let log: LogConfig = figment.extract().context("invalid logging configuration")?;
    let (default_filter, service) = match &cli.command {
        Command::Up(_) => (
            "info,async_nats=warn,cranelift=warn,wasmtime=warn",
            "lattice-host",
        ),
        Command::Provider { .. } => ("info,async_nats=warn", "lattice-provider"),
        Command::Auth { .. } => ("warn", "lattice-cli"),
        _ => ("warn,async_nats=off", "lattice-cli"),
    };
    let telemetry = lattice_host::telemetry::init(&log, default_filter, service)?;
    let result = match cli.command {
        Command::Up(args) => up::run(figment, args).await,
        Command::Provider { command } => {
            let connect: ConnectConfig = figment.extract().context("invalid configuration")?;
            refusable(provider::run(&connect, command)).await
        }
        Command::Auth { command } => {
            let connect: ConnectConfig = figment.extract().context("invalid configuration")?;
            auth::run(&connect.lattice, cli.global.output, command)
        }
        // A server: a refused request fails that request, not the dashboard.
        Command::Ui(args) => {
            let connect: ConnectConfig = figment.extract().context("invalid configuration")?;
            ui::run(&connect, args).await
        }
        command => {
            let connect: ConnectConfig = figment.extract().context("invalid configuration")?;
            let out = cli.global.output;
            refusable(async {
                match command {
                    Command::Ctl { command } => ctl::run(&connect, out, command).await,
                    Command::Call(args) => call::run(&connect, out, args).await,
                    Command::Events(args) => events::run(&connect, out, args).await,
                    Command::Claims { command } => claims::run(out, command),
                    Command::Keys { command } => keys::run(out, command),
                    Command::New(args) => project::new::run(out, args),
                    Command::Build(args) => project::build::run(out, args),
                    Command::Dev(args) => project::dev::run(&connect, args).await,
                    Command::App { command } => app::run(&connect, out, command).await,
                    Command::Up(_)
                    | Command::Ui(_)
                    | Command::Provider { .. }
                    | Command::Auth { .. }
                    | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
            .await
        }
    };
    telemetry.shutdown();
    result
}

/// Where the CLI's NATS connections report permission violations.
static REFUSALS: LazyLock<Refusals> = LazyLock::new(Refusals::new);

/// Runs a command, failing at once when NATS refuses something it sent (a
/// permission violation names subject, role and credential) instead of letting
/// it wait for a reply that will never come.
async fn refusable(
    work: impl Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let mut refused = REFUSALS.subscribe();
    tokio::select! {
        result = work => result,
        refusal = Refusals::next(&mut refused) => Err(anyhow::Error::new(refusal)),
    }
}

/// Connects as a client; used by every command but `up`.
async fn client(connect: &ConnectConfig) -> anyhow::Result<CtlClient> {
    let url = connect
        .nats_url
        .clone()
        .unwrap_or_else(|| format!("nats://{}", config::DEFAULT_NATS_ADDR));
    let nats = lattice_host::nats::connect_with(
        &url,
        "lattice-cli",
        &connect.auth,
        Some(REFUSALS.clone()),
    )
    .await?;
    Ok(CtlClient::new(nats, connect.lattice.clone()).with_timeout(connect.timeout))
}

/// Parses `K=V` pairs (labels, constraints).
fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// A default actor id from a file name or tag: invalid characters become `-`.
fn default_actor_id(reference: &str) -> anyhow::Result<lattice::id::ActorId> {
    let stem = std::path::Path::new(reference)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| reference.to_string());
    let stem = stem.split(':').next().unwrap_or(&stem);
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    lattice::id::ActorId::new(cleaned)
        .context("cannot derive an actor id from the reference; pass --id")
}

fn gather_window(connect: &ConnectConfig) -> Duration {
    lattice::client::DEFAULT_GATHER.min(connect.timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Global flags are merged into subcommands at parse time; an argument id
    /// clash only shows up then (as a panic), so parse one line of each command.
    #[test]
    fn every_command_parses() {
        let lines: &[&[&str]] = &[
            &["up", "--name", "a", "--label", "k=v", "--no-reconcile"],
            &["ctl", "get", "hosts", "--output", "json"],
            &["ctl", "get", "inventory", "h"],
            &["ctl", "get", "links"],
            &["ctl", "get", "providers"],
            &[
                "ctl",
                "start",
                "actor",
                "x.wasm",
                "--count",
                "2",
                "--constraint",
                "a=b",
                "--env",
                "K=V",
            ],
            &["ctl", "stop", "actor", "x", "--host", "h"],
            &["ctl", "start", "provider", "builtin:keyvalue", "--id", "kv"],
            &["ctl", "stop", "provider", "kv"],
            &[
                "ctl",
                "link",
                "put",
                "a",
                "p",
                "lattice:keyvalue",
                "--link-name",
                "n",
                "k=v",
            ],
            &["ctl", "link", "del", "a", "lattice:keyvalue"],
            &["call", "hello", "SayHello", "\"x\"", "--raw"],
            &["events", "--no-heartbeats", "--count", "1"],
            &["app", "deploy", "a.toml"],
            &["app", "status", "a"],
            &[
                "claims",
                "put",
                "x.wasm",
                "--name",
                "n",
                "--contract",
                "lattice:keyvalue",
                "-o",
                "y.wasm",
            ],
            &["claims", "inspect", "x.wasm"],
            &[
                "claims", "put", "x.wasm", "--name", "n", "--actor", "pricing", "--actor", "*",
            ],
            &[
                "claims",
                "sign",
                "x.wasm",
                "--issuer",
                "i.nk",
                "--actor",
                "*",
                "--expires-in",
                "30d",
                "-o",
                "y.wasm",
            ],
            &["keys", "gen", "--out", "i.nk"],
            &["up", "--allowed-issuer", "AABC", "--allowed-issuer", "AXYZ"],
            &["provider", "run", "keyvalue", "--id", "kv"],
            &["auth", "init", "--out", "d"],
            &["up", "--listen", "0.0.0.0:4222", "--insecure"],
            &[
                "call",
                "hello",
                "SayHello",
                "--nats-nkey",
                "caller.nk",
                "--tls-ca",
                "ca.pem",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
            &["events", "--nats-creds", "u.creds"],
        ];
        for line in lines {
            let argv = std::iter::once("lattice")
                .chain(["--config", "c.toml", "--timeout", "1s"])
                .chain(line.iter().copied());
            let parsed = Cli::try_parse_from(argv);
            assert!(
                parsed.is_ok(),
                "{line:?}: {}",
                parsed.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }
    }

    #[test]
    fn kv_pairs() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn actor_ids_from_references() {
        assert_eq!(
            default_actor_id("target/x/hello.wasm").unwrap().as_str(),
            "hello"
        );
        assert_eq!(
            default_actor_id("kv.counter.wasm").unwrap().as_str(),
            "kv-counter"
        );
        assert_eq!(default_actor_id("hello:v2").unwrap().as_str(), "hello");
    }
}
