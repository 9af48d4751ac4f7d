//! Tests of the harness itself against a real nats-server.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream;
use lattice_harness::{HostOptions, HostProcess, NatsServer, unique_lattice_id, wait_until};

#[tokio::test]
async fn jetstream_kv_survives_restart_on_same_port() -> Result<()> {
    let mut nats = NatsServer::start()?;
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    assert!(nats.log_tail(50).contains("Server is ready"));

    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: "harness".into(),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("creating KV bucket")?;
    kv.put("greeting", "hello".into()).await?;

    let pid_before = nats.pid();
    nats.restart()?;
    assert_eq!(nats.port(), port, "restart keeps the port");
    assert_ne!(nats.pid(), pid_before, "restart runs a new process");

    // A fresh connection sees the data written before the restart.
    let fresh = jetstream::new(async_nats::connect(nats.url()).await?);
    let kv_after = fresh.get_key_value("harness").await?;
    let value = kv_after
        .get("greeting")
        .await?
        .context("key lost on restart")?;
    assert_eq!(&value[..], b"hello");

    // The old client reconnects by itself to the same URL.
    wait_until(
        "the first client to reconnect",
        Duration::from_secs(10),
        || {
            let state = client.connection_state();
            async move { Ok((state == async_nats::connection::State::Connected).then_some(())) }
        },
    )
    .await?;
    kv.put("after", "restart".into()).await?;
    let value = kv_after.get("after").await?.context("put after restart")?;
    assert_eq!(&value[..], b"restart");
    Ok(())
}

#[test]
fn drop_kills_server_frees_port_and_removes_dir() -> Result<()> {
    let nats = NatsServer::start()?;
    let port = nats.port();
    let store = nats.store_dir();
    let pid = nats.pid().context("running server has a pid")?;
    assert!(store.exists());
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).context("server accepts connections")?;
    drop(nats);

    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "nothing listens after drop"
    );
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).context("port is free again after drop")?;
    assert!(!store.exists(), "temp dir removed");
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "server process reaped"
    );
    Ok(())
}

#[test]
fn stop_then_restart_brings_server_back() -> Result<()> {
    let mut nats = NatsServer::start()?;
    assert!(nats.is_running());
    nats.stop()?;
    nats.stop()?; // idempotent
    assert!(!nats.is_running());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, nats.port())).is_err());
    nats.restart()?;
    assert!(nats.is_running());
    TcpStream::connect((Ipv4Addr::LOCALHOST, nats.port()))?;
    Ok(())
}

#[test]
fn servers_run_side_by_side() -> Result<()> {
    let a = NatsServer::start()?;
    let b = NatsServer::start()?;
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
    Ok(())
}

/// A stand-in for `lattice up`: parses the same flags and publishes a
/// `host_started` CloudEvent over a raw NATS connection (bash's /dev/tcp),
/// preceded by another host's event that the harness must skip.
const FAKE_HOST: &str = r#"#!/usr/bin/env bash
set -eu
[ "$1" = up ] || { echo "expected 'up', got '$1'" >&2; exit 2; }
shift
labels=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nats-url) url=$2; shift 2 ;;
    --lattice) lid=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --label) labels="$labels $2"; shift 2 ;;
    *) echo "extra arg: $1"; shift ;;
  esac
done
echo "fake host $name starting, labels:$labels"
if [ "${FAKE_HOST_FAIL:-}" = 1 ]; then echo "boom: refusing to start" >&2; exit 3; fi
trap 'echo "got SIGTERM"; exit 0' TERM
addr=${url#nats://}
exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}"
other='{"type":"host_started","data":{"host_id":"NOTME","name":"someone-else"}}'
mine='{"specversion":"1.0","id":"1","type":"host_started","source":"HFAKE","time":"2025-01-01T00:00:00Z","data":{"host_id":"HFAKE-'"$name"'","name":"'"$name"'","labels":{},"version":"0.0.0"}}'
printf 'CONNECT {"verbose":false}\r\nPUB lattice.%s.evt.host_started %d\r\n%s\r\nPUB lattice.%s.evt.host_started %d\r\n%s\r\nPING\r\n' \
  "$lid" "${#other}" "$other" "$lid" "${#mine}" "$mine" >&3
while :; do sleep 0.05; done
"#;

fn fake_host() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lattice");
    std::fs::write(&path, FAKE_HOST)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

#[tokio::test]
async fn host_process_waits_for_its_own_host_started_event() -> Result<()> {
    let nats = NatsServer::start()?;
    let bin_dir = fake_host()?;
    let opts = HostOptions::new(nats.url(), unique_lattice_id(), "host-a")
        .label("zone", "a")
        .arg("--extra");
    let mut host = HostProcess::spawn(bin_dir.path().join("lattice"), &opts).await?;
    assert_eq!(host.host_id(), "HFAKE-host-a");
    assert_eq!(host.name(), "host-a");
    assert_eq!(host.started_event()["type"], "host_started");
    assert!(host.pid() > 0);
    let log = host.log();
    assert!(log.contains("labels: zone=a"), "{log}");
    assert!(log.contains("extra arg: --extra"), "{log}");

    let status = host.terminate().await?;
    assert!(status.success(), "{status}");
    assert!(host.log().contains("got SIGTERM"));
    Ok(())
}

#[tokio::test]
async fn host_process_fails_early_with_log_when_host_exits() -> Result<()> {
    let nats = NatsServer::start()?;
    let bin_dir = fake_host()?;
    let opts =
        HostOptions::new(nats.url(), unique_lattice_id(), "host-b").env_var("FAKE_HOST_FAIL", "1");
    let started = std::time::Instant::now();
    let err = HostProcess::spawn(bin_dir.path().join("lattice"), &opts)
        .await
        .expect_err("host exits before host_started");
    let msg = format!("{err:#}");
    assert!(msg.contains("exited"), "{msg}");
    assert!(msg.contains("boom: refusing to start"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed early");
    Ok(())
}

#[tokio::test]
async fn host_process_kill_reaps() -> Result<()> {
    let nats = NatsServer::start()?;
    let bin_dir = fake_host()?;
    let opts = HostOptions::new(nats.url(), unique_lattice_id(), "host-c");
    let mut host = HostProcess::spawn(bin_dir.path().join("lattice"), &opts).await?;
    assert!(host.try_wait()?.is_none());
    host.kill()?;
    assert!(host.try_wait()?.is_some());
    host.kill()?; // idempotent
    Ok(())
}

#[test]
#[ignore = "builds an actor crate for wasm32-wasip1 (slow on a cold target dir)"]
fn build_actor_builds_once_for_concurrent_callers() -> Result<()> {
    let paths = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| lattice_harness::build_actor("hello")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("build thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    assert!(paths.iter().all(|p| p == &paths[0]));
    assert!(
        paths[0].ends_with("wasm32-wasip1/wasm/hello.wasm"),
        "{paths:?}"
    );
    let bytes = std::fs::read(&paths[0])?;
    assert_eq!(&bytes[..4], b"\0asm");

    let err = lattice_harness::build_actor("no-such-actor-package").unwrap_err();
    assert!(
        format!("{err:#}").contains("no-such-actor-package"),
        "{err:#}"
    );
    Ok(())
}
