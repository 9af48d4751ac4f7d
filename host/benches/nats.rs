//! Criterion benchmarks of one call over NATS, on a real `nats-server`
//! (`lattice_harness::NatsServer`, needs `nats-server` on PATH):
//!
//! * `nats_call/hello_say_hello`: `CtlClient::call` of `hello`'s `SayHello` from
//!   the bench's own NATS connection to an in-process [`Host`] on another
//!   connection: invocation envelope, NATS hop, the host's serve loop, the
//!   actor call and the reply;
//! * `nats_call/raw_echo`: the floor, a plain async-nats request to a responder
//!   on another connection that publishes the payload straight back (the
//!   payload is the same encoded invocation, so the bytes on the wire match).
//!
//! * `nats_control/start_to_first_call`: `CtlClient::start_actor` of a fresh
//!   actor id (module cached, host known) until its first successful call, the
//!   `CtlClient` row of issue 11's "start to first call" target (< 5 ms); the
//!   actor is stopped after each timed run, outside the timing.
//!
//! One call at a time: these are latencies. `scripts/bench.sh` measures
//! throughput with many calls in flight.
//! Run with `cargo bench -p lattice-host --bench nats`.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use lattice::{
    client::CtlClient,
    ctl::StartActor,
    id::{ActorId, LatticeId},
    rpc::Invocation,
};
use lattice_harness::{NatsServer, build_actor, unique_lattice_id};
use lattice_host::{
    config::{HostConfig, RuntimeConfig},
    host::Host,
};

struct Setup {
    host: Host,
    ctl: CtlClient,
    digest: lattice::digest::Digest,
    echo_subject: String,
    echo_payload: bytes::Bytes,
}

/// A host running `hello`, a client on its own connection, and an echo responder
/// on a third connection.
async fn setup(url: &str) -> anyhow::Result<Setup> {
    let wasm = build_actor("hello")?;
    let bytes = std::fs::read(&wasm)?;
    let lattice = LatticeId::new(unique_lattice_id())?;

    let host_nats = lattice_host::nats::connect(url, "bench-host").await?;
    let host = Host::start(
        host_nats,
        lattice.clone(),
        HostConfig {
            name: Some("bench-host".into()),
            ..HostConfig::default()
        },
        RuntimeConfig {
            no_cache: true,
            ..RuntimeConfig::default()
        },
    )
    .await?;

    let ctl = CtlClient::new(
        lattice_host::nats::connect(url, "bench-client").await?,
        lattice.clone(),
    );
    let digest = ctl.artifacts().await?.put(&bytes, None).await?;
    ctl.start_actor(
        host.id(),
        &StartActor {
            actor_id: ActorId::new("hello")?,
            digest: digest.clone(),
            reference: "hello.wasm".into(),
            replicas: 1,
            config: Default::default(),
        },
    )
    .await?;

    let echo = lattice_host::nats::connect(url, "bench-echo").await?;
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
    // The same bytes a Lattice call of SayHello puts on the wire.
    let hello = lattice::rpc::Target::Actor(lattice::id::ActorId::new("hello")?);
    let echo_payload =
        Invocation::new("cli", &hello, "SayHello", rmp_serde::to_vec_named("World")?)
            .as_sent(&lattice::trace::TraceContext::new_root())
            .encode()?
            .into();
    Ok(Setup {
        host,
        ctl,
        digest,
        echo_subject,
        echo_payload,
    })
}

fn nats_call(c: &mut Criterion) {
    let server = NatsServer::start().expect("starting nats-server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let s = rt.block_on(setup(&server.url())).expect("bench setup");

    // Check both paths answer before timing them.
    rt.block_on(async {
        let reply = s
            .ctl
            .call("hello", "SayHello", "World")
            .await
            .expect("call");
        let text: String = rmp_serde::from_slice(&reply).expect("decoding the reply");
        assert_eq!(text, "Hello, World!");
        let echoed = s
            .ctl
            .nats()
            .request(s.echo_subject.clone(), s.echo_payload.clone())
            .await
            .expect("echo");
        assert_eq!(echoed.payload, s.echo_payload);
    });

    // The timed loop runs in a task on a runtime worker, where the connections'
    // I/O also runs, as in a host; driving it from the bench thread with
    // `block_on` would add a cross-thread wake-up to every call.
    let mut group = c.benchmark_group("nats_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hello_say_hello", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let ctl = s.ctl.clone();
            async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let reply = ctl
                            .call("hello", "SayHello", black_box("World"))
                            .await
                            .expect("SayHello over NATS");
                        black_box(reply);
                    }
                    start.elapsed()
                })
                .await
                .expect("bench task")
            }
        });
    });
    group.bench_function("raw_echo", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let nats = s.ctl.nats().clone();
            let (subject, payload) = (s.echo_subject.clone(), s.echo_payload.clone());
            async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let reply = nats
                            .request(subject.clone(), black_box(payload.clone()))
                            .await
                            .expect("echo request");
                        black_box(reply);
                    }
                    start.elapsed()
                })
                .await
                .expect("bench task")
            }
        });
    });
    group.finish();

    // Start a new actor of the cached module on a known host and call it until
    // it answers: what a script driving the lattice through `CtlClient` waits.
    let mut group = c.benchmark_group("nats_control");
    group.sample_size(30);
    let mut run = 0u64;
    group.bench_function("start_to_first_call", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ctl, host, digest) = (s.ctl.clone(), s.host.id().clone(), s.digest.clone());
            let first = run;
            run += iters;
            async move {
                tokio::spawn(async move {
                    let mut timed = Duration::ZERO;
                    for n in first..first + iters {
                        let actor = ActorId::new(format!("start{n}")).expect("actor id");
                        let start = Instant::now();
                        ctl.start_actor(
                            &host,
                            &StartActor {
                                actor_id: actor.clone(),
                                digest: digest.clone(),
                                reference: "hello.wasm".into(),
                                replicas: 1,
                                config: Default::default(),
                            },
                        )
                        .await
                        .expect("start_actor");
                        // The host answers once the actor serves, so the first
                        // call should succeed; retry anyway, as a client would.
                        let mut tries = 0;
                        while let Err(e) = ctl.call(actor.as_str(), "SayHello", "World").await {
                            tries += 1;
                            assert!(tries < 100, "{actor} never answered: {e}");
                        }
                        timed += start.elapsed();
                        ctl.stop_actor(&host, &actor).await.expect("stop_actor");
                    }
                    timed
                })
                .await
                .expect("bench task")
            }
        });
    });
    group.finish();

    rt.block_on(s.host.shutdown("benchmark done"));
    drop(s);
    drop(rt);
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = nats_call
}
criterion_main!(benches);
