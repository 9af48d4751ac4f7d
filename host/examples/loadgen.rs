//! `loadgen`: measures Lattice latency and throughput and prints one table.
//!
//! Rows:
//!
//! 1. `hello` `SayHello` in-process ([`Host::call_local`]) on an in-process host;
//! 2. the same call over NATS: [`CtlClient::call_raw`] from this process' own
//!    connection to that host (its own connection);
//! 3. a raw async-nats request-reply echo in the same run (a responder on a
//!    third connection publishes the request payload straight back), and the
//!    ratio of (2) to (3): what Lattice adds on top of the NATS hop;
//! 4. the time from `lattice ctl start actor` (the real CLI, spawned) to the
//!    first successful call, on a fresh `lattice up` process: cold (empty
//!    compile cache dir) and warm (the cache dir a cold run filled).
//!
//! With `--metrics`, rows (1m) and (2m) repeat rows 1 and 2 against a second
//! in-process host that serves Prometheus metrics (`metrics_addr`), running
//! the same module as actor `hellom`, in the same rounds: the cost of metrics
//! is the ratio (1m)/(1) and (2m)/(2). With `--otlp` as well, those two rows
//! also export their spans over OTLP (to a collector in this process that
//! reads and drops them), and the ratios are the cost of metrics and tracing.
//!
//! Rows 1–3 run a bounded number of calls (`--calls`, `--max-time`) with
//! `--concurrency` calls in flight, after `--warmup` calls that are not counted;
//! latencies go into an HDR histogram. The three rows take turns in `--rounds`
//! rounds, so other load on the machine falls on all of them alike and the
//! ratio (2)/(3) stays fair.
//!
//! Usually run by `scripts/bench.sh`; by hand:
//!
//! ```text
//! cargo build --release -p lattice-host --bin lattice
//! cargo run --release -p lattice-host --example loadgen -- --concurrency 1,16
//! ```
//!
//! Without `--nats-url` it starts its own `nats-server` (from PATH) on a free
//! port on 127.0.0.1.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use lattice::{
    client::CtlClient,
    ctl::StartActor,
    id::{ActorId, LatticeId},
    rpc::Invocation,
};
use lattice_harness::{HostOptions, HostProcess, NatsServer, build_actor, unique_lattice_id};
use lattice_host::{
    config::{HostConfig, RuntimeConfig},
    host::Host,
};

/// Measures Lattice call latency/throughput and actor start times; prints a table.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// NATS server to use (127.0.0.1 only); default: start a nats-server from PATH
    #[arg(long)]
    nats_url: Option<String>,
    /// The `lattice` binary for the start rows [default: `lattice` next to this
    /// example's directory, i.e. target/<profile>/lattice]
    #[arg(long)]
    lattice_bin: Option<PathBuf>,
    /// Most calls per row (after warm-up)
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Most time per row, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    max_time: Duration,
    /// Calls in flight; a comma-separated list runs every row at each level
    #[arg(long, value_delimiter = ',', default_value = "16")]
    concurrency: Vec<usize>,
    /// Uncounted calls before each row
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Rows 1-3 take turns in this many rounds, each with 1/rounds of the calls
    /// and time, so a change in machine load hits all of them alike
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Replicas of hello on the in-process host
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Cold and warm start measurements (each a fresh host process)
    #[arg(long, default_value_t = 3)]
    start_runs: usize,
    /// Skip the start rows (no `lattice` binary needed)
    #[arg(long)]
    skip_start: bool,
    /// Also run rows 1 and 2 against a host that keeps and serves metrics
    #[arg(long)]
    metrics: bool,
    /// With --metrics: rows (1m) and (2m) also export their spans over OTLP
    /// (to a collector in this process that reads and drops them); the other
    /// rows run with export paused
    #[arg(long, requires = "metrics")]
    otlp: bool,
    /// Run only row 1, 2 or 3 (with --metrics also 4 = 1m, 5 = 2m), for
    /// --max-time at the first --concurrency level, and print its numbers:
    /// one path alone, to profile it (e.g. `perf record -p PID` while it runs)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    only_row: Option<u8>,
}

/// The outcome of one measured row.
struct Measured {
    calls: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
    elapsed: Duration,
}

impl Measured {
    fn empty() -> Self {
        Measured {
            calls: 0,
            errors: 0,
            first_error: None,
            hist: histogram(),
            elapsed: Duration::ZERO,
        }
    }
    fn merge(&mut self, other: Measured) {
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds");
        self.calls += other.calls;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
    fn per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs `call` with `concurrency` calls in flight until `calls` were issued or
/// `max_time` passed; every successful call's latency is recorded.
async fn drive<F, Fut>(concurrency: usize, calls: u64, max_time: Duration, call: F) -> Measured
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max_time;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (issued, call) = (issued.clone(), call.clone());
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
                while issued.fetch_add(1, Ordering::Relaxed) < calls && Instant::now() < deadline {
                    let t = Instant::now();
                    match call().await {
                        Ok(()) => {
                            hist.saturating_record(t.elapsed().as_nanos() as u64);
                            ok += 1;
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (hist, ok, errors, first_error)
            })
        })
        .collect();
    let mut out = Measured::empty();
    for w in futures::future::join_all(workers).await {
        let (hist, calls, errors, first_error) = w.expect("load worker panicked");
        out.merge(Measured {
            calls,
            errors,
            first_error,
            hist,
            elapsed: Duration::ZERO,
        });
    }
    out.elapsed = started.elapsed();
    out
}

/// The measured call paths of rows 1-3.
#[derive(Clone, Copy)]
enum Row {
    InProcess,
    Nats,
    Echo,
    InProcessMetered,
    NatsMetered,
}

impl Row {
    fn all(metrics: bool) -> Vec<Row> {
        let mut rows = vec![Row::InProcess, Row::Nats, Row::Echo];
        if metrics {
            rows.extend([Row::InProcessMetered, Row::NatsMetered]);
        }
        rows
    }

    fn name(self) -> &'static str {
        match self {
            Row::InProcess => "(1) hello in-process (Host::call_local)",
            Row::Nats => "(2) hello over NATS (CtlClient::call -> host)",
            Row::Echo => "(3) raw async-nats request-reply echo",
            Row::InProcessMetered => "(1m) = (1) with metrics (and spans if --otlp)",
            Row::NatsMetered => "(2m) = (2) with metrics (and spans if --otlp)",
        }
    }
}

/// One start measurement: CLI spawn to first successful reply.
struct StartRun {
    total: Duration,
    cli: Duration,
    host_ms: u64,
    compiled: bool,
}

/// Everything the rows share.
struct Bench {
    args: Args,
    url: String,
    lattice: LatticeId,
    wasm: PathBuf,
    host: Host,
    /// The host of rows (1m) and (2m), with metrics on.
    metered: Option<Host>,
    ctl: CtlClient,
    echo_subject: String,
    say_hello: Vec<u8>,
    echo_payload: bytes::Bytes,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.otlp {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");

    // Our own server unless one was given; kept alive until the end.
    let own_server = match &args.nats_url {
        Some(_) => None,
        None => Some(NatsServer::start().context("starting nats-server")?),
    };
    let url = args
        .nats_url
        .clone()
        .or_else(|| own_server.as_ref().map(NatsServer::url))
        .expect("a NATS URL");
    if !url.contains("127.0.0.1") && !url.contains("localhost") {
        bail!("loadgen only talks to a NATS server on 127.0.0.1, not {url}");
    }

    eprintln!("==> building the hello actor (wasm32-wasip1)");
    let wasm = build_actor("hello")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let telemetry = match args.otlp {
            true => {
                let log = lattice_host::config::LogConfig {
                    log: std::env::var("RUST_LOG").ok(),
                    otlp_endpoint: Some(otlp_sink().await?),
                    ..Default::default()
                };
                Some(lattice_host::telemetry::init(&log, "warn", "loadgen")?)
            }
            false => None,
        };
        let bench = Bench::setup(args, url, wasm).await?;
        let result = bench.run(&command).await;
        if let Some(t) = telemetry {
            t.shutdown();
            println!(
                "OTLP: the collector received {} exports, {} KiB of spans",
                OTLP_EXPORTS.load(Ordering::Relaxed),
                OTLP_BYTES.load(Ordering::Relaxed) / 1024
            );
        }
        bench.host.shutdown("loadgen done").await;
        if let Some(m) = &bench.metered {
            m.shutdown("loadgen done").await;
        }
        result
    })?;
    // Connections close with the runtime, before their server goes away.
    drop(rt);
    drop(own_server);
    Ok(())
}

impl Bench {
    async fn setup(args: Args, url: String, wasm: PathBuf) -> Result<Self> {
        let lattice = LatticeId::new(unique_lattice_id().replace("test-", "bench-"))?;
        let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;

        let host = Host::start(
            lattice_host::nats::connect(&url, "loadgen-host").await?,
            lattice.clone(),
            HostConfig {
                name: Some("loadgen-host".into()),
                ..HostConfig::default()
            },
            // In-process rows: no disk cache, so nothing of the user's is touched.
            RuntimeConfig {
                no_cache: true,
                ..RuntimeConfig::default()
            },
        )
        .await?;
        let metered = match args.metrics {
            true => Some(
                Host::start(
                    lattice_host::nats::connect(&url, "loadgen-metered").await?,
                    lattice.clone(),
                    HostConfig {
                        name: Some("loadgen-metered".into()),
                        metrics_addr: Some(([127, 0, 0, 1], 0).into()),
                        ..HostConfig::default()
                    },
                    RuntimeConfig {
                        no_cache: true,
                        ..RuntimeConfig::default()
                    },
                )
                .await?,
            ),
            false => None,
        };
        let ctl = CtlClient::new(
            lattice_host::nats::connect(&url, "loadgen-client").await?,
            lattice.clone(),
        );
        let digest = ctl.artifacts().await?.put(&bytes, None).await?;
        let on_hosts =
            std::iter::once((&host, "hello")).chain(metered.iter().map(|m| (m, "hellom")));
        for (host, actor) in on_hosts {
            ctl.start_actor(
                host.id(),
                &StartActor {
                    actor_id: ActorId::new(actor)?,
                    digest: digest.clone(),
                    reference: "hello.wasm".into(),
                    replicas: args.replicas.max(1),
                    config: Default::default(),
                },
            )
            .await?;
        }

        // The echo responder: its own connection, replies inline.
        let echo = lattice_host::nats::connect(&url, "loadgen-echo").await?;
        let echo_subject = format!("bench.{lattice}.echo");
        let mut sub = echo.subscribe(echo_subject.clone()).await?;
        echo.flush().await?;
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = echo.publish(reply, msg.payload).await;
                }
            }
        });

        let say_hello = rmp_serde::to_vec_named("World")?;
        // Echo the same bytes a call of SayHello puts on the wire.
        let hello = lattice::rpc::Target::Actor(lattice::id::ActorId::new("hello")?);
        let echo_payload = Invocation::new("cli", &hello, "SayHello", say_hello.clone())
            .as_sent(&lattice::trace::TraceContext::new_root())
            .encode()?
            .into();
        Ok(Bench {
            args,
            url,
            lattice,
            wasm,
            host,
            metered,
            ctl,
            echo_subject,
            say_hello,
            echo_payload,
        })
    }

    async fn run(&self, command: &str) -> Result<()> {
        self.check().await?;
        if let Some(n) = self.args.only_row {
            let rows = Row::all(self.args.metrics);
            let row = *rows
                .get(usize::from(n).wrapping_sub(1))
                .with_context(|| format!("--only-row {n}: there are rows 1 to {}", rows.len()))?;
            let c = self.args.concurrency.first().copied().unwrap_or(1);
            eprintln!(
                "==> {} alone, {c} in flight, pid {}",
                row.name(),
                std::process::id()
            );
            let m = self.row(row, c, self.args.calls, self.args.max_time).await;
            println!(
                "{}: {} calls, {} errors, p50 {}, p99 {}, {:.0} calls/s",
                row.name(),
                m.calls,
                m.errors,
                fmt_ns(m.p(0.50)),
                fmt_ns(m.p(0.99)),
                m.per_sec()
            );
            return Ok(());
        }
        let server = &self.ctl.nats().server_info();
        let mut out = String::new();
        out.push_str(&format!(
            "Lattice loadgen: {} CPUs, nats-server {} at {}, lattice {}\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            server.version,
            self.url,
            self.lattice
        ));
        out.push_str(&format!("command: {command}\n"));
        out.push_str(&format!(
            "rows 1-3: up to {} calls or {:?} per row (in {} interleaved rounds) after {} warm-up calls; hello with {} replica(s) x {} concurrent calls\n\n",
            self.args.calls,
            self.args.max_time,
            self.args.rounds.max(1),
            self.args.warmup,
            self.args.replicas.max(1),
            RuntimeConfig::default().max_concurrency_per_replica
        ));
        out.push_str(&format!(
            "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10}\n",
            "row", "in-flight", "calls", "errors", "p50", "p99", "calls/s"
        ));
        print!("{out}");
        let mut errors = Vec::new();
        let mut levels = self.args.concurrency.clone();
        levels.dedup();
        let rounds = self.args.rounds.max(1);
        let (round_calls, round_time) = (
            self.args.calls.div_ceil(rounds),
            self.args.max_time / rounds as u32,
        );
        for &c in &levels {
            let rows = Row::all(self.args.metrics);
            for &row in &rows {
                let _ = self.row(row, c, self.args.warmup, self.args.max_time).await;
            }
            // The rows take turns, round by round, so that rows 2 and 3 see the
            // same machine (other load, CPU frequency) and their ratio is fair.
            let mut measured: Vec<Measured> = rows.iter().map(|_| Measured::empty()).collect();
            for _ in 0..rounds {
                for (i, &row) in rows.iter().enumerate() {
                    measured[i].merge(self.row(row, c, round_calls, round_time).await);
                }
            }
            let (local, nats, echo) = (&measured[0], &measured[1], &measured[2]);
            for (&row, m) in rows.iter().zip(&measured) {
                let name = row.name();
                println!(
                    "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10.0}",
                    name,
                    c,
                    m.calls,
                    m.errors,
                    fmt_ns(m.p(0.50)),
                    fmt_ns(m.p(0.99)),
                    m.per_sec()
                );
                if let Some(e) = &m.first_error {
                    errors.push(format!("{name} at {c} in flight: {e}"));
                }
            }
            println!(
                "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10}",
                "    ratio (2)/(3)",
                c,
                "",
                "",
                ratio(nats.p(0.50) as f64, echo.p(0.50) as f64),
                ratio(nats.p(0.99) as f64, echo.p(0.99) as f64),
                ratio(nats.per_sec(), echo.per_sec()),
            );
            if let [_, _, _, local_m, nats_m] = measured.as_slice() {
                for (name, with, without) in [
                    ("    ratio (1m)/(1)", local_m, local),
                    ("    ratio (2m)/(2)", nats_m, nats),
                ] {
                    println!(
                        "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10}",
                        name,
                        c,
                        "",
                        "",
                        ratio(with.p(0.50) as f64, without.p(0.50) as f64),
                        ratio(with.p(0.99) as f64, without.p(0.99) as f64),
                        ratio(with.per_sec(), without.per_sec()),
                    );
                }
            }
        }
        println!(
            "ratio (2)/(3): latency p50 and p99 (above 1 = slower than the bare NATS round trip), calls/s (below 1 = fewer)"
        );
        if !self.args.skip_start {
            let bin = self.lattice_bin()?;
            let dir = tempfile::Builder::new()
                .prefix("lattice-bench-cache-")
                .tempdir()?;
            let (mut cold, mut warm) = (Vec::new(), Vec::new());
            let (mut cold_failed, mut warm_failed) = (0u64, 0u64);
            for run in 0..self.args.start_runs {
                // Cold: a cache dir nobody has used, a new host process.
                let cache = dir.path().join(format!("run-{run}"));
                match self.start_run(&bin, &cache, &format!("cold-{run}")).await {
                    Ok(r) => cold.push(r),
                    Err(e) => {
                        cold_failed += 1;
                        errors.push(format!("cold start run {run}: {e:#}"));
                        continue;
                    }
                }
                // Warm: the cache the cold run filled, another new host process.
                match self.start_run(&bin, &cache, &format!("warm-{run}")).await {
                    Ok(r) => warm.push(r),
                    Err(e) => {
                        warm_failed += 1;
                        errors.push(format!("warm start run {run}: {e:#}"));
                    }
                }
            }
            println!();
            println!(
                "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10}",
                "(4) ctl start actor -> first successful call",
                "",
                "runs",
                "errors",
                "p50",
                "max",
                "module"
            );
            for (name, runs, failures, want_compiled) in [
                (
                    "    cold: empty cache dir, new host process",
                    &cold,
                    cold_failed,
                    true,
                ),
                (
                    "    warm: cache populated, new host process",
                    &warm,
                    warm_failed,
                    false,
                ),
            ] {
                let total: Vec<u64> = runs.iter().map(|r| r.total.as_nanos() as u64).collect();
                let modules = if runs.iter().all(|r| r.compiled == want_compiled) {
                    if want_compiled { "compiled" } else { "cached" }
                } else {
                    "MIXED"
                };
                println!(
                    "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10}",
                    name,
                    "",
                    runs.len(),
                    failures,
                    fmt_opt(median(&total)),
                    fmt_opt(total.iter().copied().max()),
                    modules
                );
                let cli: Vec<u64> = runs.iter().map(|r| r.cli.as_nanos() as u64).collect();
                let host: Vec<u64> = runs.iter().map(|r| r.host_ms * 1_000_000).collect();
                println!(
                    "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10}",
                    "      of which the CLI ran (spawn to exit)",
                    "",
                    "",
                    "",
                    fmt_opt(median(&cli)),
                    fmt_opt(cli.iter().copied().max()),
                );
                println!(
                    "{:<46} {:>9} {:>8} {:>7} {:>10} {:>10}",
                    "      of which the host started it (elapsed_ms)",
                    "",
                    "",
                    "",
                    fmt_opt(median(&host)),
                    fmt_opt(host.iter().copied().max()),
                );
            }
        }
        if !errors.is_empty() {
            println!("\nerrors:");
            for e in &errors {
                println!("  {e}");
            }
            bail!("{} row(s) had errors", errors.len());
        }
        Ok(())
    }

    /// Every path answers correctly before anything is timed.
    async fn check(&self) -> Result<()> {
        let local = self
            .host
            .call_local("hello", "SayHello", self.say_hello.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        let remote = self
            .ctl
            .call_raw("hello", "SayHello", self.say_hello.clone())
            .await?;
        for reply in [local, remote] {
            let text: String = rmp_serde::from_slice(&reply)?;
            if text != "Hello, World!" {
                bail!("hello answered {text:?}");
            }
        }
        let echoed = self
            .ctl
            .nats()
            .request(self.echo_subject.clone(), self.echo_payload.clone())
            .await?;
        if echoed.payload != self.echo_payload {
            bail!("the echo responder changed the payload");
        }
        Ok(())
    }

    /// Runs one row's calls: `calls` at most, for `max_time` at most.
    async fn row(&self, row: Row, concurrency: usize, calls: u64, max_time: Duration) -> Measured {
        let payload = self.say_hello.clone();
        let (host, actor) = match (row, &self.metered) {
            (Row::InProcessMetered | Row::NatsMetered, Some(m)) => (m.clone(), "hellom"),
            _ => (self.host.clone(), "hello"),
        };
        if self.args.otlp {
            lattice_host::telemetry::set_exporting(matches!(
                row,
                Row::InProcessMetered | Row::NatsMetered
            ));
        }
        match row {
            Row::InProcess | Row::InProcessMetered => {
                drive(concurrency, calls, max_time, move || {
                    let (host, payload) = (host.clone(), payload.clone());
                    async move {
                        host.call_local(actor, "SayHello", payload)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                })
                .await
            }
            Row::Nats | Row::NatsMetered => {
                let ctl = self.ctl.clone();
                drive(concurrency, calls, max_time, move || {
                    let (ctl, payload) = (ctl.clone(), payload.clone());
                    async move {
                        ctl.call_raw(actor, "SayHello", payload)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                })
                .await
            }
            Row::Echo => {
                let nats = self.ctl.nats().clone();
                let (subject, payload) = (self.echo_subject.clone(), self.echo_payload.clone());
                drive(concurrency, calls, max_time, move || {
                    let (nats, subject, payload) = (nats.clone(), subject.clone(), payload.clone());
                    async move {
                        nats.request(subject, payload)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                })
                .await
            }
        }
    }

    /// Starts a `lattice up` process with `cache` as its compile cache, then times
    /// `lattice ctl start actor hello.wasm --host <it>` and calls until the first
    /// reply. The host is stopped afterwards.
    async fn start_run(&self, bin: &Path, cache: &Path, tag: &str) -> Result<StartRun> {
        let opts = HostOptions::new(&self.url, self.lattice.as_str(), format!("loadgen-{tag}"))
            .arg("--cache-dir")
            .arg(cache.to_string_lossy());
        let mut host = HostProcess::spawn(bin, &opts).await?;
        let actor = format!("hello-{tag}");
        let result = self.time_start(bin, &host, &actor).await;
        let result = result.with_context(|| format!("host log:\n{}", host.log_tail(30)));
        host.terminate().await?;
        result
    }

    async fn time_start(&self, bin: &Path, host: &HostProcess, actor: &str) -> Result<StartRun> {
        let t0 = Instant::now();
        let out = tokio::process::Command::new(bin)
            .args(["--nats-url", &self.url, "--lattice", self.lattice.as_str()])
            .args(["--output", "json", "ctl", "start", "actor"])
            .arg(&self.wasm)
            .args(["--id", actor, "--host", host.host_id()])
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output()
            .await
            .context("running lattice ctl start actor")?;
        let cli = t0.elapsed();
        if !out.status.success() {
            bail!(
                "lattice ctl start actor failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let deadline = t0 + Duration::from_secs(60);
        loop {
            match self
                .ctl
                .call_raw(actor, "SayHello", self.say_hello.clone())
                .await
            {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!("no successful call of {actor} within 60 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        let total = t0.elapsed();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "reading the CLI's JSON: {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        let started = &report["started"][0];
        Ok(StartRun {
            total,
            cli,
            host_ms: started["elapsed_ms"].as_u64().unwrap_or_default(),
            compiled: started["compiled"].as_bool().unwrap_or_default(),
        })
    }

    fn lattice_bin(&self) -> Result<PathBuf> {
        let bin = match &self.args.lattice_bin {
            Some(b) => b.clone(),
            None => {
                // target/<profile>/examples/loadgen -> target/<profile>/lattice
                let exe = std::env::current_exe()?;
                exe.parent()
                    .and_then(Path::parent)
                    .map(|d| d.join("lattice"))
                    .context("cannot locate the lattice binary; pass --lattice-bin")?
            }
        };
        if !bin.is_file() {
            bail!(
                "{} does not exist: build it (`cargo build --release -p lattice-host --bin lattice`), pass --lattice-bin, or --skip-start",
                bin.display()
            );
        }
        Ok(bin)
    }
}

fn median(v: &[u64]) -> Option<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

fn fmt_opt(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), fmt_ns)
}

/// A duration in nanoseconds with three significant digits and a fitting unit.
fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "us")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {unit}")
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// Exports and bytes [`otlp_sink`] received.
static OTLP_EXPORTS: AtomicU64 = AtomicU64::new(0);
static OTLP_BYTES: AtomicU64 = AtomicU64::new(0);

/// An OTLP/HTTP collector on a free port of 127.0.0.1 that reads every
/// export and answers 200: the exporter's whole cost, no backend's. Returns
/// its URL.
async fn otlp_sink() -> Result<String> {
    use http_body_util::{BodyExt, Empty};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        if let Ok(body) = req.into_body().collect().await {
                            OTLP_EXPORTS.fetch_add(1, Ordering::Relaxed);
                            OTLP_BYTES.fetch_add(body.to_bytes().len() as u64, Ordering::Relaxed);
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            Empty::<bytes::Bytes>::new(),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}
