//! Bad input and faults: each gives the caller a clear error naming what failed,
//! and the host keeps serving every other actor.
//!
//! Real nats-server, real `lattice up` processes, real actors (`hello`, and
//! `probe-actor`, which misbehaves on request).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lattice::id::HostId;
use lattice_harness::{HostProcess, free_port, wait_until};

use crate::common::{
    TestLattice, actor_wasm, probe_call, run_cli, wait_for_hosts, wat, write_file,
};

/// Starts a lattice with one host (`flags` on top of the test defaults)
/// running `hello`.
async fn lattice_with_hello(flags: &[(&str, &str)]) -> Result<(TestLattice, HostProcess)> {
    let hello = actor_wasm("hello")?;
    let lat = TestLattice::start().await?;
    let host = lat.host("host-a", flags).await?;
    lat.start_actor(&host, &hello, "hello", 1).await?;
    Ok((lat, host))
}

/// The host still serves: `hello` answers on it.
async fn hello_still_works(lat: &TestLattice, after: &str) -> Result<()> {
    let greeting = lat
        .say_hello(after)
        .await
        .with_context(|| format!("hello must keep working after {after}"))?;
    assert_eq!(greeting, format!("Hello, {after}!"));
    Ok(())
}

const GUEST_CALL: &str =
    r#"(func (export "__guest_call") (param i32 i32) (result i32) i32.const 1)"#;

/// Modules that are not actors (or whose init traps) are refused at start, with
/// the reason and the module named once; nothing is left running and the host
/// keeps serving.
#[tokio::test]
async fn bad_modules_are_refused_with_clear_errors() -> Result<()> {
    let (lat, host) = lattice_with_hello(&[]).await?;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "notwasm.wasm",
            b"this is a text file, not a module\n".to_vec(),
            vec!["notwasm.wasm", "is not a WebAssembly module", "magic bytes"],
        ),
        (
            "noguest.wasm",
            wat(r#"(module (memory (export "memory") 1))"#)?,
            vec![
                "noguest",
                "does not follow the Lattice actor ABI",
                "missing export `__guest_call`",
            ],
        ),
        (
            "envimport.wasm",
            wat(&format!(
                r#"(module (import "env" "foo" (func)) (memory (export "memory") 1) {GUEST_CALL})"#
            ))?,
            vec![
                "envimport",
                "imports `env::foo`",
                "only the `wapc` and `wasi_snapshot_preview1`",
            ],
        ),
        (
            "nope.wasm",
            wat(&format!(
                r#"(module (import "wapc" "__nope" (func)) (memory (export "memory") 1) {GUEST_CALL})"#
            ))?,
            vec![
                "nope",
                "imports `wapc::__nope`",
                "which the host does not provide",
            ],
        ),
        (
            "inittrap.wasm",
            wat(&format!(
                r#"(module (memory (export "memory") 1) (func (export "_initialize") unreachable) {GUEST_CALL})"#
            ))?,
            vec![
                "could not instantiate actor inittrap",
                "`_initialize` failed",
            ],
        ),
    ];
    for (file, bytes, expected) in cases {
        let path = write_file(lat.dir.path(), file, &bytes)?;
        let out = lat
            .cli(&[
                "ctl",
                "start",
                "actor",
                &path.display().to_string(),
                "--host",
                "host-a",
            ])
            .await?
            .failure()?;
        out.stderr_has(&["host-a"])?;
        out.stderr_has(&expected)?;
        assert!(
            out.stderr.matches("could not instantiate").count() <= 1,
            "the actor is named once: {}",
            out.stderr
        );
        let inv = lat.inventory(&host).await?;
        let ids: Vec<_> = inv.actors.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["hello"], "only hello runs after {file}");
        hello_still_works(&lat, file).await?;
    }
    Ok(())
}

/// A trap (Rust panic in the actor) names the trap and the panic message; the
/// trapped instance is replaced, so the next call works on a fresh one.
#[tokio::test]
async fn trap_is_reported_and_the_instance_replaced() -> Result<()> {
    let probe = actor_wasm("probe-actor")?;
    let (lat, host) = lattice_with_hello(&[]).await?;
    lat.start_actor(&host, &probe, "probe", 1).await?;

    assert_eq!(lat.call::<_, u64>("probe", "Count", &()).await?, 1);
    assert_eq!(lat.call::<_, u64>("probe", "Count", &()).await?, 2);
    let err = lat
        .ctl
        .call("probe", "Panic", &())
        .await
        .unwrap_err()
        .to_string();
    for part in ["probe", "trapped in Panic", "probe panicked on purpose"] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    // A fresh instance: its counter starts again.
    assert_eq!(lat.call::<_, u64>("probe", "Count", &()).await?, 1);
    hello_still_works(&lat, "a trap").await?;

    // The CLI shows the same, with a non-zero exit.
    let out = lat.cli(&["call", "probe", "Panic"]).await?.failure()?;
    out.stderr_has(&[
        "call probe Panic failed",
        "trapped",
        "probe panicked on purpose",
    ])?;
    let d = lat.actor_on(&host, "probe").await?.context("probe")?;
    assert_eq!((d.calls, d.errors), (5, 2));
    Ok(())
}

/// An endless loop is interrupted at the call deadline (`--call-timeout 1s`)
/// with an error that says so; the next call works.
#[tokio::test]
async fn endless_loop_is_stopped_at_the_deadline() -> Result<()> {
    let probe = actor_wasm("probe-actor")?;
    let (lat, host) = lattice_with_hello(&[("--call-timeout", "1s")]).await?;
    lat.start_actor(&host, &probe, "probe", 1).await?;

    let began = Instant::now();
    let err = lat
        .ctl
        .call("probe", "Loop", &())
        .await
        .unwrap_err()
        .to_string();
    let took = began.elapsed();
    for part in ["probe", "exceeded the call deadline of 1000 ms in Loop"] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "interrupted at the 1 s deadline, took {took:?}"
    );
    assert_eq!(lat.call::<_, u64>("probe", "Count", &()).await?, 1);
    hello_still_works(&lat, "an endless loop").await?;
    Ok(())
}

/// A module whose memory starts larger than an instance may be (here 64 MiB on
/// a host allowing 32) or whose table starts larger than the slots' tables is
/// refused at start with both sizes and the setting named; the host keeps
/// serving.
#[tokio::test]
async fn a_module_larger_than_an_instance_slot_is_refused_at_start() -> Result<()> {
    let (lat, host) = lattice_with_hello(&[("--max-memory-mib", "32")]).await?;
    let cases = [
        (
            "bigmem",
            format!(r#"(module (memory (export "memory") 1024) {GUEST_CALL})"#),
            vec![
                "bigmem",
                "64 MiB (1024 pages of 64 KiB)",
                "32 MiB",
                "max_memory_mib",
            ],
        ),
        (
            "bigtable",
            format!(r#"(module (memory (export "memory") 1) (table 200000 funcref) {GUEST_CALL})"#),
            vec!["bigtable", "200000 elements", "100000"],
        ),
    ];
    for (id, module, parts) in cases {
        let path = lat.dir.path().join(format!("{id}.wasm"));
        std::fs::write(&path, wat(&module)?)?;
        let err = format!(
            "{:#}",
            lat.start_actor(&host, &path, id, 1)
                .await
                .expect_err("an oversized module must be refused")
        );
        for part in parts {
            ensure!(err.contains(part), "{part:?} not in {err}");
        }
    }
    hello_still_works(&lat, "oversized modules").await
}

/// Growing memory past `--max-memory-mib` fails the call with an error naming
/// the limit; the next call works.
#[tokio::test]
async fn memory_growth_past_the_limit_is_refused() -> Result<()> {
    let probe = actor_wasm("probe-actor")?;
    let (lat, host) = lattice_with_hello(&[("--max-memory-mib", "32")]).await?;
    lat.start_actor(&host, &probe, "probe", 1).await?;

    let err = lat
        .ctl
        .call("probe", "Grow", &64u32)
        .await
        .unwrap_err()
        .to_string();
    for part in ["probe", "Grow", "memory limit", "32 MiB"] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert_eq!(lat.call::<_, u32>("probe", "Grow", &4u32).await?, 4);
    hello_still_works(&lat, "memory growth").await?;
    Ok(())
}

/// A call to an actor nobody runs fails fast with "no responders", from the
/// client and from the CLI.
#[tokio::test]
async fn call_to_an_unknown_actor_fails_fast() -> Result<()> {
    let (lat, _host) = lattice_with_hello(&[]).await?;
    let began = Instant::now();
    let err = lat.ctl.call("nobody", "Anything", &()).await.unwrap_err();
    let took = began.elapsed();
    let msg = err.to_string();
    assert!(
        msg.contains("no responders") && msg.contains("nobody"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(1), "fails fast, took {took:?}");

    let out = lat.cli(&["call", "nobody", "Anything"]).await?.failure()?;
    out.stderr_has(&["no responders", "nobody"])?;
    hello_still_works(&lat, "an unknown actor").await?;
    Ok(())
}

/// A payload that is not valid msgpack for the operation is an error that
/// names the operation, whether it is JSON of the wrong type or raw garbage.
#[tokio::test]
async fn malformed_payload_names_the_operation() -> Result<()> {
    let (lat, _host) = lattice_with_hello(&[]).await?;
    let out = lat
        .cli(&["call", "hello", "SayHello", "123"])
        .await?
        .failure()?;
    out.stderr_has(&["hello", "SayHello", "not valid msgpack"])?;

    let err = lat
        .ctl
        .call_raw("hello", "SayHello", vec![0xc1, 0xff, 0x00])
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "actor hello failed SayHello",
        "SayHello: payload is not valid msgpack",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    let err = lat
        .ctl
        .call("hello", "Shout", "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown operation \"Shout\""), "{err}");
    hello_still_works(&lat, "garbage").await?;
    Ok(())
}

/// `lattice call` refuses an argument that is not JSON, saying so.
#[tokio::test]
async fn invalid_json_argument_is_refused() -> Result<()> {
    let (lat, host) = lattice_with_hello(&[]).await?;
    let out = lat
        .cli(&["call", "hello", "SayHello", "world"])
        .await?
        .failure()?;
    out.stderr_has(&["not valid JSON", "world"])?;
    let out = lat
        .cli(&["call", "hello", "SayHello", r#"{"a":"#])
        .await?
        .failure()?;
    out.stderr_has(&["not valid JSON"])?;
    // Nothing reached the actor.
    assert_eq!(
        lat.actor_on(&host, "hello").await?.context("hello")?.calls,
        0
    );
    hello_still_works(&lat, "bad JSON").await?;
    Ok(())
}

/// Unknown host ids and names are clear errors with a non-zero exit.
#[tokio::test]
async fn unknown_host_is_a_clear_error() -> Result<()> {
    let hello = actor_wasm("hello")?;
    let (lat, _host) = lattice_with_hello(&[]).await?;
    let ghost = HostId::generate();
    let out = lat
        .cli(&["ctl", "get", "inventory", ghost.as_str()])
        .await?
        .failure()?;
    out.stderr_has(&["no host with id", ghost.as_str(), &lat.id])?;
    let out = lat
        .cli(&["ctl", "get", "inventory", "nope"])
        .await?
        .failure()?;
    out.stderr_has(&["no host with id or name \"nope\""])?;
    let out = lat
        .cli(&[
            "ctl",
            "start",
            "actor",
            &hello.display().to_string(),
            "--host",
            "nope",
        ])
        .await?
        .failure()?;
    out.stderr_has(&["no host with id or name \"nope\""])?;
    let out = lat
        .cli(&["ctl", "stop", "actor", "hello", "--host", ghost.as_str()])
        .await?
        .failure()?;
    out.stderr_has(&["no host with id", ghost.as_str()])?;
    let err = lat.ctl.inventory(&ghost).await.unwrap_err().to_string();
    assert!(err.contains("no host with id"), "{err}");
    hello_still_works(&lat, "unknown hosts").await?;
    Ok(())
}

/// Invalid actor ids and `--count 0` are refused before anything starts.
#[tokio::test]
async fn invalid_actor_id_and_zero_count_are_refused() -> Result<()> {
    let hello = actor_wasm("hello")?;
    let wasm = hello.display().to_string();
    let (lat, host) = lattice_with_hello(&[]).await?;
    let out = lat
        .cli(&["ctl", "start", "actor", &wasm, "--id", "a.b"])
        .await?
        .failure()?;
    out.stderr_has(&["invalid actor id \"a.b\"", "'-' and '_'"])?;
    let out = lat
        .cli(&[
            "ctl", "start", "actor", &wasm, "--id", "zero", "--count", "0",
        ])
        .await?
        .failure()?;
    out.stderr_has(&["--count must be at least 1"])?;
    let out = lat
        .cli(&[
            "ctl",
            "start",
            "actor",
            &wasm,
            "--id",
            "many",
            "--count",
            "4294967295",
        ])
        .await?
        .failure()?;
    out.stderr_has(&["--count 4294967295 is more than the 1000 replicas"])?;
    // The same bound on the wire, whoever sends the request: 2^30 replicas
    // would wrap the actor's concurrency limit.
    let host_id = lattice::id::HostId::new(host.host_id())?;
    let digest = lat.inventory(&host).await?.actors[0].digest.clone();
    let start = |replicas: u32| lattice::ctl::StartActor {
        actor_id: lattice::id::ActorId::new("hello").unwrap(),
        digest: digest.clone(),
        reference: "hello".into(),
        replicas,
        config: Default::default(),
    };
    let err = lat
        .ctl
        .start_actor(&host_id, &start(1 << 30))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("actor hello may run at most 1000 replicas on host")
            && err.contains("it runs 1 and 1073741824 more were asked for"),
        "{err}"
    );
    let err = lat
        .ctl
        .start_actor(&host_id, &start(1000))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("it runs 1 and 1000 more"), "{err}");
    hello_still_works(&lat, "replica overflow").await?;
    let out = lat
        .cli(&["call", "a.b", "SayHello", "\"x\""])
        .await?
        .failure()?;
    out.stderr_has(&["invalid actor id \"a.b\""])?;
    let inv = lat.inventory(&host).await?;
    let ids: Vec<_> = inv.actors.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["hello"]);
    Ok(())
}

/// A payload over the server's max payload (1 MiB) is refused with a clear
/// error before it is sent; smaller ones still work.
#[tokio::test]
async fn oversized_payload_is_refused() -> Result<()> {
    let (lat, _host) = lattice_with_hello(&[]).await?;
    let max = lat.ctl.nats().server_info().max_payload;
    assert_eq!(max, 1 << 20, "nats-server's default max payload");
    let began = Instant::now();
    let err = lat
        .ctl
        .call_raw("hello", "Echo", vec![7; 2 << 20])
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "hello",
        "larger than the server's max payload of 1048576 bytes",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert!(began.elapsed() < Duration::from_secs(1));
    let big = vec![7; 512 << 10];
    assert_eq!(lat.ctl.call_raw("hello", "Echo", big.clone()).await?, big);
    hello_still_works(&lat, "an oversized payload").await?;
    Ok(())
}

/// With no NATS server at the URL, `lattice up` and the CLI exit non-zero
/// quickly with a message naming the URL.
#[tokio::test]
async fn unreachable_nats_is_reported_quickly() -> Result<()> {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let out = run_cli(
        &["up", "--nats-url", &url, "--no-cache", "--name", "lonely"],
        &[],
    )
    .await?
    .failure()?;
    out.stderr_has(&["could not connect to NATS at", &url])?;
    ensure!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );

    let out = run_cli(&["--nats-url", &url, "ctl", "get", "hosts"], &[])
        .await?
        .failure()?;
    out.stderr_has(&["could not connect to NATS at", &url])?;
    ensure!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    Ok(())
}

/// When nats-server restarts under running hosts, they reconnect and keep
/// their actors (same instances: the probe's counter continues), and calls,
/// local and across hosts, work again.
#[tokio::test]
async fn hosts_survive_a_nats_restart() -> Result<()> {
    let hello = actor_wasm("hello")?;
    let probe = actor_wasm("probe-actor")?;
    let mut lat = TestLattice::start().await?;
    let a = lat.host("host-a", &[]).await?;
    let b = lat.host("host-b", &[]).await?;
    lat.start_actor(&a, &probe, "probe", 1).await?;
    lat.start_actor(&b, &hello, "hello", 1).await?;
    assert_eq!(lat.call::<_, u64>("probe", "Count", &()).await?, 1);
    hello_still_works(&lat, "start").await?;

    lat.nats.restart()?;

    wait_until(
        "hello to answer after the restart",
        Duration::from_secs(30),
        || async { Ok(lat.say_hello("again").await.ok()) },
    )
    .await?;
    wait_until(
        "probe to answer after the restart",
        Duration::from_secs(30),
        || async { Ok(lat.call::<_, u64>("probe", "Count", &()).await.ok()) },
    )
    .await
    .and_then(|n| {
        ensure!(
            n == 2,
            "the probe kept its instance across the restart (Count = {n})"
        );
        Ok(())
    })?;
    let greet = probe_call("hello", "SayHello", &rmp_serde::to_vec_named("again")?)?;
    let reply = lat.ctl.call_raw("probe", "Call", greet).await?;
    assert_eq!(rmp_serde::from_slice::<String>(&reply)?, "Hello, again!");

    wait_for_hosts(&lat.ctl, &["host-a", "host-b"], Duration::from_secs(10)).await?;
    assert!(lat.actor_on(&a, "probe").await?.is_some());
    assert!(lat.actor_on(&b, "hello").await?.is_some());
    Ok(())
}

/// A host asked to stop while NATS is down still exits, cleanly and in
/// bounded time, instead of waiting forever to flush its goodbye events.
#[tokio::test]
async fn sigterm_while_nats_is_down_still_exits() -> Result<()> {
    let (mut lat, mut host) = lattice_with_hello(&[("--drain-timeout", "2s")]).await?;
    hello_still_works(&lat, "start").await?;
    lat.nats.stop()?;
    let began = Instant::now();
    let status = host.terminate().await?;
    assert_eq!(status.code(), Some(0), "{status}");
    ensure!(
        began.elapsed() < Duration::from_secs(8),
        "took {:?} to exit",
        began.elapsed()
    );
    Ok(())
}

/// The reported hang: with providers and links running, NATS goes away and
/// SIGTERM must still end the host (within its drain timeout plus a few
/// seconds; the harness gives it 10 s).
#[tokio::test]
async fn sigterm_with_providers_while_nats_is_down_still_exits() -> Result<()> {
    let (mut lat, mut host) = lattice_with_hello(&[("--drain-timeout", "2s")]).await?;
    for provider in ["builtin:keyvalue", "builtin:httpserver"] {
        lat.cli(&["ctl", "start", "provider", provider])
            .await?
            .success()?;
    }
    let port = lattice_harness::free_port();
    lat.link_put("hello", "keyvalue", "lattice:keyvalue", &[])
        .await?;
    lat.link_put(
        "hello",
        "httpserver",
        "lattice:httpserver",
        &[&format!("address=127.0.0.1:{port}")],
    )
    .await?;
    hello_still_works(&lat, "providers").await?;
    lat.nats.stop()?;
    let status = host.terminate().await?;
    assert_eq!(status.code(), Some(0), "{status}");
    Ok(())
}

/// An actor module whose `_initialize` spins until the init deadline (10 s):
/// a start that takes long and burns CPU all the while.
fn slow_init_module() -> Result<Vec<u8>> {
    wat(&format!(
        r#"(module (memory (export "memory") 1)
             (func (export "_initialize") (local $i i64)
               (local.set $i (i64.const 40000000000))
               (loop $spin
                 (local.set $i (i64.sub (local.get $i) (i64.const 1)))
                 (br_if $spin (i64.ne (local.get $i) (i64.const 0)))))
             {GUEST_CALL})"#
    ))
}

/// A slow start (here an `_initialize` that spins for many seconds) holds up no
/// other start: hello starts and answers while the slow actor is still being
/// set up. Before, the whole start ran under a host-wide lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_start_does_not_hold_up_another() -> Result<()> {
    let t = TestLattice::start().await?;
    let host = t.host("a", &[("--call-timeout", "120s")]).await?;
    let slow = slow_init_module()?;
    let slow_path = t.dir.path().join("slow.wasm");
    std::fs::write(&slow_path, slow)?;
    let hello = actor_wasm("hello")?;
    let slow_start = t.start_actor(&host, &slow_path, "slow", 1);
    let hello_start = async {
        t.start_actor(&host, &hello, "hello", 1).await?;
        t.say_hello("meanwhile").await
    };
    tokio::select! {
        r = slow_start => anyhow::bail!("the slow start finished first ({:?}): it held hello up", r.map(|s| s.elapsed_ms)),
        r = hello_start => ensure!(r? == "Hello, meanwhile!"),
    }
    Ok(())
}

/// The host's resident memory (VmRSS), in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// A flood of large requests to one slow actor: the calls past its limits
/// (2 in flight + 4 queued) are answered "busy" at once, another actor on the
/// same host is still served and `ctl get inventory` still answers while the
/// flood is held, and the host's resident memory grows by less than
/// [`FLOOD_RSS_BOUND_MIB`] although 56 MiB of requests arrive at once.
#[tokio::test]
async fn flood_is_refused_busy_and_memory_stays_bounded() -> Result<()> {
    /// Requests sent at once.
    const N: usize = 112;
    /// Bytes each carries (on top of its `Sleep` argument). N × PAD = 56 MiB
    /// stays under nats-server's default `max_pending` (64 MiB a
    /// connection): a larger burst than the host reads in time makes NATS
    /// cut the host off as a slow consumer (it reconnects at once, but the
    /// calls in flight are lost), which is NATS's bound, not the host's.
    const PAD: usize = 512 << 10;
    /// How much the host's RSS may grow: 6 admitted calls × 2 copies of
    /// 512 KiB, the NATS client's read buffers and the messages it holds
    /// until the serving loop answers them, allocator slack (28–42 MiB seen
    /// in a debug build). Unbounded, 112 waiting tasks would hold
    /// 112 × 2 × 512 KiB = 112 MiB.
    const FLOOD_RSS_BOUND_MIB: u64 = 80;

    let probe = actor_wasm("probe-actor")?;
    let (lat, host) = lattice_with_hello(&[
        ("--call-timeout", "30s"),
        ("--max-concurrency-per-replica", "2"),
        ("--max-queued-per-replica", "4"),
    ])
    .await?;
    lat.start_actor(&host, &probe, "probe", 1).await?;

    // Sleep decodes its u32 and ignores the padding after it.
    let request = |ms: u32| -> Result<Vec<u8>> {
        let mut payload = rmp_serde::to_vec(&ms)?;
        payload.resize(payload.len() + PAD, 0xc0);
        Ok(payload)
    };
    // Warm both instances with a large call each, so their memory is grown
    // before the baseline.
    let warm = lat.ctl.clone();
    let (a, b) = tokio::join!(
        warm.call_raw("probe", "Sleep", request(1)?),
        warm.call_raw("probe", "Sleep", request(1)?)
    );
    a?;
    b?;
    let baseline = rss_kib(host.pid())?;

    // RSS sampled until the flood is over; the peak is what counts.
    let pid = host.pid();
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            tokio::select! {
                _ = done_rx.changed() => break peak,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });

    // The flood comes on a connection of its own, so the calls below do not
    // queue behind 120 MiB in the test's own socket.
    let flood_client = async_nats::connect(lat.nats.url()).await?;
    let flooder = lattice::client::CtlClient::new(
        flood_client,
        lattice::id::LatticeId::new(lat.id.as_str())?,
    )
    .with_timeout(Duration::from_secs(60));
    let (busy_tx, mut busy_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..N {
        let (flooder, busy_tx, payload) = (flooder.clone(), busy_tx.clone(), request(1500)?);
        calls.spawn(async move {
            let result = flooder.call_raw("probe", "Sleep", payload).await;
            if let Err(e) = &result {
                let _ = busy_tx.send(e.to_string());
            }
            result.map(|_| ()).map_err(|e| e.to_string())
        });
    }
    drop(busy_tx);

    // Once the first refusal is in, the flood is on: the host must still serve.
    let first = tokio::time::timeout(Duration::from_secs(60), busy_rx.recv())
        .await
        .context("no refusal within 60 s")?
        .context("every flood call finished without an error")?;
    assert!(
        first.contains(
            "actor probe is busy: 2 calls in flight and 4 queued on host host-a; retry later"
        ),
        "{first}"
    );
    hello_still_works(&lat, "a flood of another actor").await?;
    let inv = lat.inventory(&host).await?;
    assert!(inv.actors.iter().any(|a| a.id.as_str() == "probe"));

    let (mut ok, mut busy, mut other) = (0, 0, Vec::new());
    while let Some(r) = calls.join_next().await {
        match r? {
            Ok(()) => ok += 1,
            Err(e) if e.contains("is busy: ") && e.ends_with("retry later") => busy += 1,
            Err(e) => other.push(e),
        }
    }
    let _ = done_tx.send(true);
    let peak = sampler.await?;
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "flood of {N} × {} KiB: {ok} served, {busy} busy; host RSS {} MiB before, peak {} MiB (+{growth_mib} MiB)",
        PAD >> 10,
        baseline / 1024,
        peak / 1024
    );
    ensure!(other.is_empty(), "only busy refusals: {other:?}");
    ensure!(
        ok >= 6 && busy >= 1 && ok + busy == N,
        "{ok} served, {busy} busy"
    );
    ensure!(
        growth_mib < FLOOD_RSS_BOUND_MIB,
        "host RSS grew by {growth_mib} MiB (from {} MiB to {} MiB), bound {FLOOD_RSS_BOUND_MIB} MiB",
        baseline / 1024,
        peak / 1024
    );
    // The refusals counted as failed calls; the actor is healthy after.
    assert_eq!(lat.call::<_, u32>("probe", "Sleep", &1u32).await?, 1);
    let d = lat.actor_on(&host, "probe").await?.context("probe")?;
    assert_eq!(d.errors as usize, busy);
    Ok(())
}

/// A call in flight on a host that dies (SIGKILL) fails as soon as the
/// caller notices the silence, not after its 30 s timeout: the error says the
/// serving host went silent and that the call may or may not have run. A
/// shorter call on the same host before the kill, longer than the progress
/// interval, is not taken for a death.
#[tokio::test]
async fn a_call_on_a_host_that_dies_fails_at_once() -> Result<()> {
    let lat = TestLattice::start().await?;
    let mut host = lat.host("doomed", &[("--call-timeout", "30s")]).await?;
    let probe = actor_wasm("probe-actor")?;
    lat.start_actor(&host, &probe, "probe", 1).await?;
    let ctl = lat.ctl.clone().with_timeout(Duration::from_secs(30));
    // 1.5 s: longer than the silence limit, alive thanks to progress messages.
    let reply = ctl.call("probe", "Sleep", &1500u32).await?;
    ensure!(rmp_serde::from_slice::<u32>(&reply)? == 1500);

    let call = tokio::spawn(async move { ctl.call("probe", "Sleep", &20_000u32).await });
    wait_until(
        "the long call to start",
        Duration::from_secs(10),
        || async {
            let d = lat.actor_on(&host, "probe").await?.context("probe")?;
            Ok((d.calls >= 2).then_some(()))
        },
    )
    .await?;
    host.kill()?;
    let err = call.await?.expect_err("the host died mid-call");
    ensure!(
        matches!(err, lattice::Error::ServerLost { .. }),
        "expected ServerLost, got: {err}"
    );
    let text = err.to_string();
    ensure!(
        text.contains("actor \"probe\"") && text.contains("may or may not have run"),
        "{text}"
    );
    Ok(())
}

/// A control request to a host that dies while serving it (here a start whose
/// `_initialize` spins) fails within about a second of the death, because the
/// host sends progress while the start runs: the caller (and the reconciler)
/// does not wait out the 120 s start timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_host_that_dies_fails_at_once() -> Result<()> {
    let t = TestLattice::start().await?;
    let mut host = t.host("doomed", &[("--call-timeout", "120s")]).await?;
    let slow = slow_init_module()?;
    let digest = t.ctl.artifacts().await?.put(&slow, None).await?;
    let cmd = lattice::ctl::StartActor {
        actor_id: lattice::id::ActorId::new("slow")?,
        digest,
        reference: "slow.wasm".into(),
        replicas: 1,
        config: Default::default(),
    };
    let pid = host.pid();
    let cpu_before = cpu_ticks(pid)?;
    let start = {
        let ctl = t.ctl.clone();
        let id = HostId::new(host.host_id())?;
        tokio::spawn(async move { ctl.start_actor(&id, &cmd).await })
    };
    // The spinning `_initialize` shows as the host's CPU time: once it has
    // burnt 1.5 s (longer than the silence limit) the start is under way and
    // was kept alive by progress messages.
    wait_until(
        "the slow start to spin",
        Duration::from_secs(60),
        || async { Ok((cpu_ticks(pid)? >= cpu_before + 150).then_some(())) },
    )
    .await?;
    ensure!(
        !start.is_finished(),
        "the slow start ended early: {:?}",
        start.await?
    );
    host.kill()?;
    let err = start.await?.expect_err("the host died mid-start");
    ensure!(
        matches!(err, lattice::Error::ServerLost { .. }),
        "expected ServerLost, got: {err}"
    );
    ensure!(err.to_string().contains("actor.start"), "{err}");
    Ok(())
}

/// The CPU time (user + system) process `pid` has used, in clock ticks
/// (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14.
    let rest = stat.rsplit_once(')').context("no ) in /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}
