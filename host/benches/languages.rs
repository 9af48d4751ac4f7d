//! Actors in Rust, C and Go side by side: module size, start-up and warm call
//! latency of `hello` (Rust, `examples/hello`), `echo-c` (C,
//! `examples/echo-c`) and `hello-go` (Go, `examples/hello-go`), each built
//! from source. Prints two Markdown tables (the form `docs/performance.md`
//! keeps them in); not a criterion bench, as most numbers are one-off
//! start-up costs.
//!
//! * In-process, the wasm side alone (no NATS): compile with no cache, load the
//!   compiled code from a disk cache as a restarted host does, start the actor
//!   and answer a first call, instantiate a fresh instance with its init
//!   functions, and warm calls (`Actor::invoke`).
//! * Through a host: one `lattice up` process (no module cache) on a real
//!   nats-server; from `ctl start actor` (upload, compile, eager instance) to
//!   the first reply, then warm calls over NATS (`CtlClient::call_raw`).
//!
//! Warm calls are `Echo` with 16 bytes for all three, and `SayHello` for the
//! two hello actors.
//!
//! Needs nats-server, clang with wasi-libc and Go (`scripts/prereqs.sh`).
//! Run with `cargo bench -p lattice-host --bench languages`, optionally naming
//! the languages to measure (`-- rust go`); `--profile dev` measures a debug
//! host build instead of a release one.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use lattice::{
    client::CtlClient,
    ctl::StartActor,
    digest::Digest,
    id::{ActorId, HostId, LatticeId},
    trace::TraceContext,
};
use lattice_harness::{
    HostOptions, HostProcess, NatsServer, build_actor, build_c_actor, build_go_actor,
    unique_lattice_id, workspace_root,
};
use lattice_host::{
    config::RuntimeConfig,
    runtime::{LoadedFrom, Runtime},
};

/// The `lattice` binary built for this bench.
const BIN: &str = env!("CARGO_BIN_EXE_lattice");

/// Fresh instances timed per actor.
const INSTANTIATIONS: usize = 200;
/// Warm in-process calls timed per operation, after [`WARM_UP`] untimed ones.
const CALLS_IN_PROCESS: usize = 3000;
/// Warm calls over NATS timed per operation, after [`WARM_UP`] untimed ones.
const CALLS_OVER_NATS: usize = 1000;
/// Calls made before timing starts.
const WARM_UP: usize = 100;

/// An operation measured: its payload and the reply it must give.
struct Op {
    name: &'static str,
    payload: Vec<u8>,
    reply: Vec<u8>,
}

impl Op {
    /// `Echo` of 16 bytes: the same work for every SDK.
    fn echo() -> Self {
        let payload = b"sixteen bytes!!!".to_vec();
        Op {
            name: "Echo",
            reply: payload.clone(),
            payload,
        }
    }

    /// `SayHello` of `"World"`: msgpack decoding and encoding in the SDK.
    fn say_hello() -> Result<Self> {
        Ok(Op {
            name: "SayHello",
            payload: rmp_serde::to_vec_named("World")?,
            reply: rmp_serde::to_vec_named("Hello, World!")?,
        })
    }

    fn check(&self, reply: &[u8]) -> Result<()> {
        ensure!(
            reply == self.reply,
            "{} replied {reply:?}, expected {:?}",
            self.name,
            self.reply
        );
        Ok(())
    }
}

/// One actor to measure.
struct Subject {
    /// The language; named on the command line in any case.
    language: &'static str,
    /// The actor id, also its row label.
    id: &'static str,
    wasm: PathBuf,
    /// The first is also the first call after start.
    ops: Vec<Op>,
}

/// The actors of the `languages` named (all when none is), built from source.
fn subjects(languages: &[String]) -> Result<Vec<Subject>> {
    let wanted =
        |l: &str| languages.is_empty() || languages.iter().any(|w| w.eq_ignore_ascii_case(l));
    let example = |name: &str| workspace_root().join("examples").join(name);
    let mut out = Vec::new();
    if wanted("Rust") {
        out.push(Subject {
            language: "Rust",
            id: "hello",
            wasm: build_actor("hello")?,
            ops: vec![Op::echo(), Op::say_hello()?],
        });
    }
    if wanted("C") {
        out.push(Subject {
            language: "C",
            id: "echo-c",
            wasm: build_c_actor(&example("echo-c"))?,
            ops: vec![Op::echo()],
        });
    }
    if wanted("Go") {
        out.push(Subject {
            language: "Go",
            id: "hello-go",
            wasm: build_go_actor(&example("hello-go"))?,
            ops: vec![Op::echo(), Op::say_hello()?],
        });
    }
    if out.is_empty() {
        bail!("no actor for {languages:?}; the languages are rust, c and go");
    }
    Ok(out)
}

/// (median, p99) of `samples`.
fn median_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn median_p99_us((median, p99): (Duration, Duration)) -> String {
    format!("{} / {}", us(median), us(p99))
}

/// The wasm side of one actor, in this process.
struct InProcess {
    size: usize,
    compile: Duration,
    from_disk: Duration,
    start_and_first_call: Duration,
    instantiate: Duration,
    /// (median, p99) per operation of the subject.
    calls: Vec<(Duration, Duration)>,
}

async fn in_process(s: &Subject) -> Result<InProcess> {
    let bytes = std::fs::read(&s.wasm).with_context(|| format!("reading {}", s.wasm.display()))?;
    let digest = Digest::of(&bytes);
    let cache = tempfile::tempdir()?;
    let config = RuntimeConfig {
        no_cache: false,
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let what = format!("actor {}", s.id);
    // The first load compiles (and fills the disk cache), as a host's first start does.
    let runtime = Runtime::new(config.clone())?;
    let began = Instant::now();
    let (module, from) = runtime
        .load(&what, &digest, Arc::new(bytes.clone()))
        .await?;
    let compile = began.elapsed();
    ensure!(from == LoadedFrom::Compiled, "{from:?}");
    // A new runtime (a restarted host) loads the compiled code from disk.
    let restarted = Runtime::new(config)?;
    let began = Instant::now();
    let (_, from) = restarted
        .load(&what, &digest, Arc::new(bytes.clone()))
        .await?;
    let from_disk = began.elapsed();
    ensure!(from == LoadedFrom::Disk, "{from:?}");

    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    let first = &s.ops[0];
    let began = Instant::now();
    let actor = common::start_actor(&runtime, s.id, digest, &module).await?;
    let reply = actor
        .invoke(
            first.name,
            first.payload.clone(),
            TraceContext::new_root(),
            deadline(),
        )
        .await?;
    let start_and_first_call = began.elapsed();
    first.check(&reply)?;

    let mut instantiate = Vec::with_capacity(INSTANTIATIONS);
    for _ in 0..INSTANTIATIONS {
        let began = Instant::now();
        actor.instantiate_cold().await?;
        instantiate.push(began.elapsed());
    }
    let mut calls = Vec::new();
    for op in &s.ops {
        let mut samples = Vec::with_capacity(CALLS_IN_PROCESS);
        for i in 0..WARM_UP + CALLS_IN_PROCESS {
            let began = Instant::now();
            let reply = actor
                .invoke(
                    op.name,
                    op.payload.clone(),
                    TraceContext::new_root(),
                    deadline(),
                )
                .await?;
            if i >= WARM_UP {
                samples.push(began.elapsed());
            }
            op.check(&reply)?;
        }
        calls.push(median_p99(samples));
    }
    actor.stop(Duration::from_secs(5)).await;
    Ok(InProcess {
        size: bytes.len(),
        compile,
        from_disk,
        start_and_first_call,
        instantiate: median_p99(instantiate).0,
        calls,
    })
}

/// A lattice of one host process on a nats-server of its own.
struct Lattice {
    ctl: CtlClient,
    host: HostProcess,
    // Dropped after the host and the client.
    _nats: NatsServer,
    _dir: tempfile::TempDir,
}

impl Lattice {
    async fn start() -> Result<Self> {
        let nats = NatsServer::start().context("starting nats-server")?;
        let lattice = unique_lattice_id();
        // An empty config file keeps a developer's own out of the host.
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "")?;
        let opts = HostOptions::new(nats.url(), &lattice, "measured")
            .env_var("LATTICE_CONFIG", config.display().to_string())
            .arg("--no-cache");
        let host = HostProcess::spawn(BIN, &opts).await?;
        let ctl = CtlClient::new(
            async_nats::connect(nats.url()).await?,
            LatticeId::new(lattice)?,
        )
        // A Go module compiles for seconds in a debug build.
        .with_timeout(Duration::from_secs(60));
        Ok(Lattice {
            ctl,
            host,
            _nats: nats,
            _dir: dir,
        })
    }

    /// Uploads `wasm` and starts it on the host with one replica.
    async fn start_actor(&self, wasm: &Path, id: &str) -> Result<()> {
        let bytes = std::fs::read(wasm)?;
        let digest = self.ctl.artifacts().await?.put(&bytes, None).await?;
        let cmd = StartActor {
            actor_id: ActorId::new(id)?,
            digest,
            reference: id.into(),
            replicas: 1,
            config: Default::default(),
        };
        self.ctl
            .start_actor(&HostId::new(self.host.host_id())?, &cmd)
            .await?;
        Ok(())
    }
}

/// One actor through the host.
struct ThroughAHost {
    start_to_first_reply: Duration,
    /// (median, p99) per operation of the subject.
    calls: Vec<(Duration, Duration)>,
}

async fn through_a_host(t: &Lattice, s: &Subject) -> Result<ThroughAHost> {
    let first = &s.ops[0];
    let began = Instant::now();
    t.start_actor(&s.wasm, s.id).await?;
    let reply = t
        .ctl
        .call_raw(s.id, first.name, first.payload.clone())
        .await?;
    let start_to_first_reply = began.elapsed();
    first.check(&reply)?;
    let mut calls = Vec::new();
    for op in &s.ops {
        let mut samples = Vec::with_capacity(CALLS_OVER_NATS);
        for i in 0..WARM_UP + CALLS_OVER_NATS {
            let began = Instant::now();
            let reply = t.ctl.call_raw(s.id, op.name, op.payload.clone()).await?;
            if i >= WARM_UP {
                samples.push(began.elapsed());
            }
            op.check(&reply)?;
        }
        calls.push(median_p99(samples));
    }
    Ok(ThroughAHost {
        start_to_first_reply,
        calls,
    })
}

async fn measure(languages: &[String]) -> Result<()> {
    let subjects = tokio::task::spawn_blocking({
        let languages = languages.to_vec();
        move || subjects(&languages)
    })
    .await??;
    let mut rows = Vec::new();
    for s in &subjects {
        let inproc = in_process(s)
            .await
            .with_context(|| format!("measuring {} in-process", s.id))?;
        rows.push(inproc);
    }
    let t = Lattice::start().await?;
    let mut hosted = Vec::new();
    for s in &subjects {
        let h = through_a_host(&t, s)
            .await
            .with_context(|| format!("measuring {} through a host", s.id))?;
        hosted.push(h);
    }

    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "\n{build} host build; in-process is wasmtime alone, via a host is one `lattice up` process (no module cache) over NATS\n"
    );
    println!(
        "| actor | module size | compile, no cache | load from disk cache | instantiate + init (median) | start + first call in-process | `ctl start` → first reply via a host |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((s, p), h) in subjects.iter().zip(&rows).zip(&hosted) {
        println!(
            "| {} ({}) | {:.1} KiB | {} | {} | {} | {} | {} |",
            s.id,
            s.language,
            p.size as f64 / 1024.0,
            ms(p.compile),
            ms(p.from_disk),
            us(p.instantiate),
            ms(p.start_and_first_call),
            ms(h.start_to_first_reply),
        );
    }
    println!("\n| actor | warm call | in-process, median / p99 | over NATS, median / p99 |");
    println!("|---|---|---|---|");
    for ((s, p), h) in subjects.iter().zip(&rows).zip(&hosted) {
        for (i, op) in s.ops.iter().enumerate() {
            println!(
                "| {} ({}) | `{}` | {} | {} |",
                s.id,
                s.language,
                op.name,
                median_p99_us(p.calls[i]),
                median_p99_us(h.calls[i]),
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and gets
    // no measurement.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "languages: a measurement; run it with `cargo bench -p lattice-host --bench languages`"
        );
        return Ok(());
    }
    let languages: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(&languages))
}
