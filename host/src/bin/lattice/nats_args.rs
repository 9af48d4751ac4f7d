//! `--nats-creds`, `--nats-nkey` and the TLS flags every connecting command
//! takes, in one group so every command gets the same. User, password and
//! token have no flags on purpose: they come from the environment
//! (`LATTICE_NATS_USER`, `LATTICE_NATS_PASSWORD`, `LATTICE_NATS_TOKEN`) or the
//! config file, never from argv where other users can read them.

use std::path::PathBuf;

use serde::Serialize;

/// NATS credential and TLS flags; each overrides `LATTICE_*` env and the config
/// file (the keys of [`lattice::auth::NatsAuth`]).
#[derive(clap::Args, Debug, Default, Serialize)]
pub struct NatsArgs {
    /// JWT credentials file (.creds) [env: LATTICE_NATS_CREDS]
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_creds: Option<PathBuf>,
    /// nkey seed file, e.g. one written by `lattice auth init` [env: LATTICE_NATS_NKEY]
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_nkey: Option<PathBuf>,
    /// CA certificate (PEM) of the NATS server; implies TLS [env: LATTICE_TLS_CA]
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS [env: LATTICE_TLS_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert [env: LATTICE_TLS_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}
