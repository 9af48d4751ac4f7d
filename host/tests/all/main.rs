//! The integration tests of `lattice-host`, in one test binary so the host
//! and wasmtime are linked once (`cargo test -p lattice-host --test all`).
//! A module per area; filter by its name, e.g.
//! `cargo test -p lattice-host --test all -- contracts::`.
//!
//! Everything runs for real: nats-server, `lattice up` host processes of the
//! built binary, actors built from source (Rust, C, Go). Shared helpers are in
//! [`common`]; actor builds are cached per process, so modules share them.

mod common;

mod apps;
mod auth;
mod c;
mod cli;
mod cluster;
mod components;
mod contracts;
mod decoders;
mod faults;
mod go;
mod lattice;
mod metrics;
mod new;
mod polyglot;
mod traces;
mod trust;
mod ui;
