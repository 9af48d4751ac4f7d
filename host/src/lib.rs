//! The Lattice host runtime and the `lattice` binary.
//!
//! A host joins a lattice over NATS, runs WebAssembly actors in wasmtime and answers
//! the control interface. The pieces:
//!
//! * [`runtime`]: the wasmtime engine, the waPC ABI, compiled-module caches, actors;
//! * [`host`]: the host process' life: control requests, the data plane, events;
//! * [`nats`]: connecting to NATS, and the embedded `nats-server` for one machine;
//! * [`reconcile`]: the leader-elected loop that keeps deployed apps running;
//! * [`trust`]: which modules may start (the issuer policy, signed claims);
//! * [`config`]: layered configuration; [`telemetry`]: logging.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use lattice_host::{config::{HostConfig, RuntimeConfig}, host::Host};
//!
//! let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let host = Host::start(nats, Default::default(), HostConfig::default(), RuntimeConfig::default()).await?;
//! println!("host {} is up", host.name());
//! let reason = host.stop_requested().await;
//! host.shutdown(&reason).await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod error;
pub mod host;
pub mod metrics;
pub mod nats;
pub mod reconcile;
pub mod runtime;
pub mod telemetry;
pub mod trust;
