//! The C SDK (`actors/c`) and the C echo actor (`examples/echo-c`) in a real
//! lattice: a real nats-server, host processes, the built-in HTTP server and
//! key-value providers, Rust actors built from source, and the C actor built
//! with clang + wasi-libc (`lattice_harness::build_c_actor`).
//!
//! Needs the Debian packages clang, lld, wasi-libc and libclang-rt-dev-wasm32
//! (`scripts/prereqs.sh` installs them); a missing toolchain fails the tests
//! with a message naming them.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use lattice::contracts::httpserver::HttpRequest;
use lattice_harness::{build_c_actor, free_port, wait_until};
use rmpv::Value;

use crate::common::{TestLattice, actor_wasm, example_dir, find_actor, get_until, probe_call};

const WAIT: Duration = Duration::from_secs(20);

/// The operations echo-c registers, in order.
const ECHO_C_OPS: &str = "HttpServer.HandleRequest, Echo, Fail, Call, KeyValue, Stats, Leak";

/// `examples/echo-c` built to `target/actors/c/echo-c.wasm`, claims included.
pub(crate) fn echo_c() -> Result<PathBuf> {
    build_c_actor(&example_dir("echo-c"))
}

fn msgpack(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value)?;
    Ok(out)
}

fn unpack(bytes: &[u8]) -> Result<Value> {
    rmpv::decode::read_value(&mut &bytes[..]).context("the reply is not msgpack")
}

/// A field of a msgpack map.
fn field<'a>(map: &'a Value, name: &str) -> Result<&'a Value> {
    map.as_map()
        .context("not a map")?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
        .with_context(|| format!("no field {name} in {map}"))
}

fn uint(map: &Value, name: &str) -> Result<u64> {
    field(map, name)?
        .as_u64()
        .with_context(|| format!("{name} is not a uint in {map}"))
}

/// Every byte value, `n` bytes long.
fn all_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8) ^ ((i >> 8) as u8)).collect()
}

/// A lattice with one host running echo-c.
async fn lattice_with_echo_c(t: &TestLattice) -> Result<lattice_harness::HostProcess> {
    let wasm = echo_c()?;
    let a = t.host("a", &[]).await?;
    t.start_actor(&a, &wasm, "echo-c", 1).await?;
    Ok(a)
}

/// The SDK's own unit tests (msgpack, buffers, dispatch, per-call memory,
/// contract clients against a mock host), compiled natively with the build
/// machine's C compiler, under AddressSanitizer and UBSan where available.
#[test]
fn c_sdk_unit_tests_pass_natively() -> Result<()> {
    let sdk = lattice_harness::c_sdk_dir();
    let dir = tempfile::tempdir()?;
    let exe = dir.path().join("lattice_test");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compile = |sanitize: bool| -> Result<std::process::Output> {
        let mut cmd = Command::new(&cc);
        cmd.args(["-std=c11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"]);
        if sanitize {
            cmd.args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]);
        }
        cmd.arg("-I")
            .arg(&sdk)
            .arg(sdk.join("lattice.c"))
            .arg(sdk.join("test").join("lattice_test.c"))
            .arg("-o")
            .arg(&exe);
        cmd.output()
            .with_context(|| format!("running the C compiler `{cc}` (set $CC to choose one)"))
    };
    let mut out = compile(true)?;
    let sanitized = out.status.success();
    if !sanitized {
        // No sanitizer runtime: the checks still run, without it.
        out = compile(false)?;
    }
    ensure!(
        out.status.success(),
        "compiling the C SDK's unit tests failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    ensure!(
        run.status.success() && stdout.contains(" passed, 0 failed"),
        "the C SDK's unit tests failed ({}; sanitizers: {sanitized}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    println!(
        "C SDK unit tests: {} (sanitizers: {sanitized})",
        stdout.trim()
    );
    Ok(())
}

/// A C file that does not compile: the error names the actor and carries
/// clang's message; a module without `Makefile` claims builds without claims.
#[test]
fn build_errors_are_clear_and_claims_are_optional() -> Result<()> {
    let bad = tempfile::Builder::new().prefix("bad-c-").tempdir()?;
    std::fs::write(
        bad.path().join("bad.c"),
        "#include \"lattice.h\"\nvoid wapc_init(void) { lattice_register(\"X\", 42) }\n",
    )?;
    let err = format!("{:#}", build_c_actor(bad.path()).unwrap_err());
    ensure!(
        err.contains("compiling C actor bad-c-") && err.contains("bad.c") && err.contains("error"),
        "{err}"
    );
    ensure!(!err.contains("toolchain looks incomplete"), "{err}");

    let plain = tempfile::Builder::new().prefix("plain-c-").tempdir()?;
    std::fs::write(
        plain.path().join("a.c"),
        "#include \"lattice.h\"\nvoid wapc_init(void) {}\n",
    )?;
    let wasm = build_c_actor(plain.path())?;
    ensure!(lattice::claims::read(&std::fs::read(&wasm)?)?.is_none());
    std::fs::remove_file(wasm)?;

    let claims = lattice::claims::read(&std::fs::read(echo_c()?)?)?.context("echo-c claims")?;
    ensure!(
        claims.name == "echo-c" && claims.version == "0.1.0",
        "{claims:?}"
    );
    ensure!(
        claims.contracts == ["lattice:httpserver", "lattice:keyvalue"],
        "{claims:?}"
    );
    Ok(())
}

/// echo-c answers `Echo` with the exact bytes (every byte value, empty, large),
/// through the control client and the CLI; with a replica on each of two hosts
/// both serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_c_answers_on_one_host_and_across_two() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = lattice_with_echo_c(&t).await?;

    for payload in [all_bytes(256), Vec::new(), all_bytes(512 * 1024)] {
        let reply = t.ctl.call_raw("echo-c", "Echo", payload.clone()).await?;
        ensure!(
            reply == payload,
            "Echo of {} bytes came back as {} bytes",
            payload.len(),
            reply.len()
        );
    }
    let out = t
        .cli(&["call", "echo-c", "Echo", r#"{"a":[1,-2,"three"],"b":null}"#])
        .await?
        .success()?;
    ensure!(
        serde_json::from_str::<serde_json::Value>(&out.stdout)?
            == serde_json::json!({"a": [1, -2, "three"], "b": null}),
        "{}",
        out.stdout
    );

    // A second host with a replica: NATS spreads calls over both.
    let b = t.host("b", &[]).await?;
    t.start_actor(&b, &echo_c()?, "echo-c", 1).await?;
    const CALLS: usize = 40;
    for i in 0..CALLS {
        let payload = format!("call {i}").into_bytes();
        ensure!(t.ctl.call_raw("echo-c", "Echo", payload.clone()).await? == payload);
    }
    let on_a = t.actor_on(&a, "echo-c").await?.context("echo-c on a")?;
    let on_b = t.actor_on(&b, "echo-c").await?.context("echo-c on b")?;
    ensure!(
        on_b.calls > 0 && on_a.calls > 4,
        "both hosts serve echo-c: a={} b={}",
        on_a.calls,
        on_b.calls
    );
    ensure!(on_a.calls + on_b.calls == CALLS as u64 + 4);
    Ok(())
}

/// `HttpServer.HandleRequest` through the built-in HTTP server: method, path,
/// query and a binary body round-trip; JSON mode; an actor error is a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_c_serves_http() -> Result<()> {
    let t = TestLattice::start().await?;
    let _a = lattice_with_echo_c(&t).await?;
    t.cli(&["ctl", "start", "provider", "builtin:httpserver"])
        .await?
        .success()?;
    let port = free_port();
    let address = format!("address=127.0.0.1:{port}");
    t.link_put("echo-c", "httpserver", "lattice:httpserver", &[&address])
        .await?;
    let base = format!("http://127.0.0.1:{port}");
    get_until(&format!("{base}/ready"), 200).await?;
    let client = reqwest::Client::new();

    let body = all_bytes(64 * 1024);
    let r = client
        .post(format!("{base}/some/path?x=1&y=%20"))
        .header("content-type", "application/x-test")
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 200, "status {}", r.status());
    let h = r.headers().clone();
    ensure!(h["x-method"] == "POST", "{h:?}");
    ensure!(h["x-path"] == "/some/path", "{h:?}");
    ensure!(h["x-query"] == "x=1&y=%20", "{h:?}");
    ensure!(h["content-type"] == "application/x-test", "{h:?}");
    ensure!(
        r.bytes().await?.as_ref() == body.as_slice(),
        "the body round-trips"
    );

    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = client
            .request(method.parse()?, format!("{base}/a%20b/{method}"))
            .send()
            .await?;
        ensure!(r.status() == 200, "{method}: status {}", r.status());
        let h = r.headers().clone();
        ensure!(h["x-method"] == method, "{h:?}");
        ensure!(h["x-path"] == format!("/a%20b/{method}").as_str(), "{h:?}");
        ensure!(!h.contains_key("x-query"), "{h:?}");
        ensure!(h["content-type"] == "application/octet-stream", "{h:?}");
        ensure!(r.bytes().await?.is_empty());
    }

    let r = client
        .post(format!("{base}/j?format=json"))
        .body("h\u{e9}llo \"q\"\n\u{1}".as_bytes().to_vec())
        .send()
        .await?;
    ensure!(r.status() == 200);
    ensure!(r.headers()["content-type"] == "application/json");
    let v: serde_json::Value = r.json().await?;
    ensure!(
        v == serde_json::json!({
            "method": "POST",
            "path": "/j",
            "query": "format=json",
            "body": "h\u{e9}llo \"q\"\n\u{1}",
        }),
        "{v}"
    );
    let r = client
        .post(format!("{base}/bin?format=json"))
        .body(vec![b'a', 0xff, b'b'])
        .send()
        .await?;
    let v: serde_json::Value = r.json().await?;
    ensure!(
        v["body"] == "a\u{fffd}b",
        "invalid UTF-8 becomes U+FFFD: {v}"
    );

    let r = client.get(format!("{base}/fail")).send().await?;
    ensure!(r.status() == 500, "status {}", r.status());
    let text = r.text().await?;
    ensure!(
        text.contains("actor error") && text.contains("echo-c refused GET /fail"),
        "{text}"
    );
    Ok(())
}

/// A handler's error reaches the caller as the call's error; an unknown
/// operation lists the registered ones; a malformed payload is named; a
/// contract without a link is refused naming actor, contract and link. The
/// instance keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_c_errors_reach_the_caller() -> Result<()> {
    let t = TestLattice::start().await?;
    let _a = lattice_with_echo_c(&t).await?;

    let err = t.ctl.call("echo-c", "Fail", "boom").await.unwrap_err();
    let msg = err.to_string();
    ensure!(msg.contains("echo-c failed on purpose: boom"), "{msg}");
    let msg = t
        .ctl
        .call_raw("echo-c", "Fail", Vec::new())
        .await
        .unwrap_err()
        .to_string();
    ensure!(msg.contains("echo-c failed on purpose"), "{msg}");

    let out = t
        .cli(&["call", "echo-c", "Fail", r#""from the cli""#])
        .await?
        .failure()?;
    out.stderr_has(&["echo-c failed on purpose: from the cli"])?;

    let msg = t
        .ctl
        .call_raw("echo-c", "Nope", vec![1])
        .await
        .unwrap_err()
        .to_string();
    let want = format!("unknown operation \"Nope\"; this actor handles: {ECHO_C_OPS}");
    ensure!(msg.contains(&want), "{msg}\nwanted: {want}");

    let msg = t
        .ctl
        .call("echo-c", "Call", &7u8)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        msg.contains(
            "Call: payload is not a {target, operation, payload} map: msgpack: expected map at byte 0, found uint"
        ),
        "{msg}"
    );
    let msg = t
        .ctl
        .call_raw("echo-c", "Call", vec![0x82, 0xa6])
        .await
        .unwrap_err()
        .to_string();
    ensure!(msg.contains("truncated input"), "{msg}");

    let tour = msgpack(&Value::Map(vec![(Value::from("key"), Value::from("k"))]))?;
    let msg = t
        .ctl
        .call_raw("echo-c", "KeyValue", tour)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "call to lattice:keyvalue KeyValue.Set failed",
        "actor echo-c may not call contract lattice:keyvalue through link \"default\"",
        "no such link",
    ] {
        ensure!(msg.contains(part), "{part:?} not in {msg}");
    }

    // Guest errors do not trap: the same instance keeps serving.
    ensure!(t.ctl.call_raw("echo-c", "Echo", vec![9]).await? == [9]);
    let stats = unpack(&t.ctl.call_raw("echo-c", "Stats", Vec::new()).await?)?;
    ensure!(uint(&stats, "calls")? >= 7, "one warm instance: {stats}");
    Ok(())
}

/// Actor-to-actor: the C actor calls the Rust `hello` (on another host, over
/// NATS), the Rust probe calls the C actor (in-process), and a chain
/// probe → echo-c → hello; errors travel back naming the callee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_and_rust_actors_call_each_other() -> Result<()> {
    let hello = actor_wasm("hello")?;
    let probe = actor_wasm("probe-actor")?;
    let t = TestLattice::start().await?;
    let a = lattice_with_echo_c(&t).await?;
    t.start_actor(&a, &probe, "probe", 1).await?;
    let b = t.host("b", &[]).await?;
    t.start_actor(&b, &hello, "hello", 1).await?;

    // C → Rust, across hosts.
    let say_world = rmp_serde::to_vec_named("world")?;
    let greet = probe_call("hello", "SayHello", &say_world)?;
    let reply = t.ctl.call_raw("echo-c", "Call", greet.clone()).await?;
    ensure!(rmp_serde::from_slice::<String>(&reply)? == "Hello, world!");
    ensure!(t.actor_on(&b, "hello").await?.context("hello on b")?.calls == 1);

    // Rust → C, in-process.
    let echo = probe_call("echo-c", "Echo", &all_bytes(1000))?;
    ensure!(t.ctl.call_raw("probe", "Call", echo).await? == all_bytes(1000));

    // Rust → C → Rust.
    let chain = probe_call("echo-c", "Call", &greet)?;
    let reply = t.ctl.call_raw("probe", "Call", chain).await?;
    ensure!(rmp_serde::from_slice::<String>(&reply)? == "Hello, world!");

    // Errors name the callee, through every hop.
    let bad = probe_call("hello", "SayHello", &rmp_serde::to_vec_named(&7u8)?)?;
    let msg = t
        .ctl
        .call_raw("echo-c", "Call", bad)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        msg.contains("call to hello SayHello failed")
            && msg.contains("SayHello: payload is not valid msgpack"),
        "{msg}"
    );
    let fail = probe_call("echo-c", "Fail", &rmp_serde::to_vec_named("deep")?)?;
    let msg = t
        .ctl
        .call_raw("probe", "Call", fail)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        msg.contains("echo-c") && msg.contains("echo-c failed on purpose: deep"),
        "{msg}"
    );
    let nobody = probe_call("nobody", "Anything", &[])?;
    let began = Instant::now();
    let msg = t
        .ctl
        .call_raw("echo-c", "Call", nobody)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        msg.contains("call to nobody Anything failed") && msg.contains("no responders"),
        "{msg}"
    );
    ensure!(began.elapsed() < Duration::from_secs(1), "fails fast");
    ensure!(find_actor(&t.inventory(&a).await?, "hello").is_none());
    Ok(())
}

/// The C key-value client against the built-in provider: every operation once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_c_uses_keyvalue() -> Result<()> {
    let t = TestLattice::start().await?;
    let _a = lattice_with_echo_c(&t).await?;
    t.cli(&["ctl", "start", "provider", "builtin:keyvalue"])
        .await?
        .success()?;
    t.link_put(
        "echo-c",
        "keyvalue",
        "lattice:keyvalue",
        &["backend=memory"],
    )
    .await?;
    let value = vec![0u8, 1, 2, 0xc1, 0xff];
    let tour = msgpack(&Value::Map(vec![
        (Value::from("key"), Value::from("tour")),
        (Value::from("value"), Value::Binary(value.clone())),
    ]))?;
    // The link reaches the host through the KV watch: retry until it is there.
    let reply = wait_until("the key-value link to apply", WAIT, || async {
        match t.ctl.call_raw("echo-c", "KeyValue", tour.clone()).await {
            Ok(reply) => Ok(Some(reply)),
            Err(e) if e.to_string().contains("no such link") => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let v = unpack(&reply)?;
    ensure!(field(&v, "found")?.as_bool() == Some(true), "{v}");
    ensure!(field(&v, "value")?.as_slice() == Some(&value[..]), "{v}");
    ensure!(field(&v, "contains")?.as_bool() == Some(true), "{v}");
    ensure!(field(&v, "counter")?.as_i64() == Some(3), "{v}");
    let keys: Vec<&str> = field(&v, "keys")?
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(keys == ["tour", "tour/counter", "tour/ttl"], "{v}");
    ensure!(field(&v, "deleted")?.as_bool() == Some(true), "{v}");
    ensure!(field(&v, "contains_after")?.as_bool() == Some(false), "{v}");
    ensure!(field(&v, "found_after")?.as_bool() == Some(false), "{v}");

    // Again: the counter goes on (3 + 3), the key was deleted and is set anew.
    let v = unpack(&t.ctl.call_raw("echo-c", "KeyValue", tour).await?)?;
    ensure!(field(&v, "counter")?.as_i64() == Some(6), "{v}");
    ensure!(field(&v, "deleted")?.as_bool() == Some(true), "{v}");
    Ok(())
}

/// Many calls in a row (large payloads, HTTP requests, errors, host calls)
/// leave the instance's memory where it was: the SDK holds the same blocks
/// between calls and linear memory does not grow. A real leak (`Leak`) does
/// show up, so the check can see one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_c_memory_stays_flat_over_many_calls() -> Result<()> {
    let t = TestLattice::start().await?;
    let _a = lattice_with_echo_c(&t).await?;
    let big = all_bytes(200 * 1024);
    let http = rmp_serde::to_vec_named(&HttpRequest {
        method: "POST".into(),
        path: "/p".into(),
        query: "a=b".into(),
        headers: [("content-type".to_owned(), vec!["x/y".to_owned()])].into(),
        body: all_bytes(64 * 1024),
    })?;
    let fail = rmp_serde::to_vec_named("x")?;
    let nobody = probe_call("nobody", "Op", &[1, 2, 3])?;
    let work = Calls {
        t: &t,
        big: &big,
        http: &http,
        fail: &fail,
        nobody: &nobody,
    };
    for _ in 0..10 {
        work.round().await?;
    }
    let before = work.stats().await?;
    const ROUNDS: u64 = 200;
    let mut calls = 0;
    for _ in 0..ROUNDS {
        calls += work.round().await?;
    }
    let after = work.stats().await?;
    println!("echo-c stats after warm-up: {before}\nafter {calls} more calls: {after}");
    ensure!(
        uint(&after, "calls")? == uint(&before, "calls")? + calls + 1,
        "all calls went to one warm instance: {before} / {after}"
    );
    for counter in ["idle_live_blocks", "idle_live_bytes", "memory_pages"] {
        ensure!(
            uint(&after, counter)? == uint(&before, counter)?,
            "{counter} changed over {calls} calls: {before} → {after}"
        );
    }
    ensure!(
        uint(&after, "idle_live_blocks")? <= 10,
        "between calls the SDK holds only its handler table and first chunk: {after}"
    );
    ensure!(
        uint(&after, "peak_call_bytes")? >= 200 * 1024,
        "big calls did use per-call memory: {after}"
    );

    // The negative control: memory that is never freed shows.
    for _ in 0..8 {
        t.ctl.call("echo-c", "Leak", &(1024u32 * 1024)).await?;
    }
    let leaked = work.stats().await?;
    ensure!(
        uint(&leaked, "memory_pages")? >= uint(&after, "memory_pages")? + 100,
        "8 MiB leaked shows as growth: {after} → {leaked}"
    );
    Ok(())
}

/// The calls of one round of the memory test.
struct Calls<'a> {
    t: &'a TestLattice,
    big: &'a [u8],
    http: &'a [u8],
    fail: &'a [u8],
    nobody: &'a [u8],
}

impl Calls<'_> {
    /// Echo (200 KiB), HandleRequest (64 KiB body), Fail, an unknown
    /// operation, and a host call that fails: returns the number of calls.
    async fn round(&self) -> Result<u64> {
        let ctl = &self.t.ctl;
        let reply = ctl.call_raw("echo-c", "Echo", self.big.to_vec()).await?;
        ensure!(reply.len() == self.big.len());
        let reply = ctl
            .call_raw("echo-c", "HttpServer.HandleRequest", self.http.to_vec())
            .await?;
        ensure!(uint(&unpack(&reply)?, "status")? == 200);
        ensure!(
            ctl.call_raw("echo-c", "Fail", self.fail.to_vec())
                .await
                .is_err()
        );
        ensure!(ctl.call_raw("echo-c", "Nope", Vec::new()).await.is_err());
        ensure!(
            ctl.call_raw("echo-c", "Call", self.nobody.to_vec())
                .await
                .is_err()
        );
        Ok(5)
    }

    async fn stats(&self) -> Result<Value> {
        unpack(&self.t.ctl.call_raw("echo-c", "Stats", Vec::new()).await?)
    }
}
