//! Criterion benchmarks of the wasm side of a host, no NATS involved:
//!
//! * `actor/instantiate_cold`: a fresh instance of the `hello` actor from its
//!   `InstancePre`, running its init functions ([`Actor::instantiate_cold`]);
//!   what a call pays when no warm instance is free;
//! * `actor/invoke_say_hello`: one in-process call of `hello`'s `SayHello` on a
//!   warm instance ([`Actor::invoke`]).
//!
//! The `hello` actor is built from source (`lattice_harness::build_actor`).
//! Run with `cargo bench -p lattice-host --bench actor`.

mod common;

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lattice::{digest::Digest, trace::TraceContext};
use lattice_host::{
    config::RuntimeConfig,
    runtime::{Runtime, actor::Actor},
};

/// Builds `hello`, compiles it (no disk cache) and starts it with one replica.
fn start_hello(rt: &tokio::runtime::Runtime) -> Arc<Actor> {
    let wasm = lattice_harness::build_actor("hello").expect("building the hello actor");
    let bytes = std::fs::read(&wasm).expect("reading hello.wasm");
    let digest = Digest::of(&bytes);
    rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            no_cache: true,
            cache_dir: None,
            ..RuntimeConfig::default()
        })
        .expect("creating the wasm runtime");
        let (module, _) = runtime
            .load("actor hello (bench)", &digest, Arc::new(bytes))
            .await
            .expect("compiling hello");
        common::start_actor(&runtime, "hello", digest, &module)
            .await
            .expect("starting hello")
    })
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

fn actor(c: &mut Criterion) {
    // One thread: the numbers are the cost of the work, not of scheduling.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let hello = start_hello(&rt);
    let payload = rmp_serde::to_vec_named("World").expect("encoding the name");

    // Check the call works before timing it.
    let reply = rt
        .block_on(hello.invoke(
            "SayHello",
            payload.clone(),
            TraceContext::new_root(),
            deadline(),
        ))
        .expect("SayHello");
    let text: String = rmp_serde::from_slice(&reply).expect("decoding the reply");
    assert_eq!(text, "Hello, World!");

    let mut group = c.benchmark_group("actor");
    group.throughput(Throughput::Elements(1));
    group.bench_function("instantiate_cold", |b| {
        b.to_async(&rt)
            .iter(|| async { hello.instantiate_cold().await.expect("instantiate") });
    });
    group.bench_function("invoke_say_hello", |b| {
        b.to_async(&rt).iter(|| async {
            let reply = hello
                .invoke(
                    "SayHello",
                    black_box(payload.clone()),
                    TraceContext::new_root(),
                    deadline(),
                )
                .await
                .expect("SayHello");
            black_box(reply)
        });
    });
    group.finish();
    rt.block_on(hello.stop(Duration::from_secs(5)));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = actor
}
criterion_main!(benches);
