//! Capability contracts end to end: claims, links, the built-in HTTP server and
//! key-value providers (in hosts and as processes), and their faults.
//!
//! Real nats-server, real host processes, real wasm actors built from source.

use std::{
    collections::HashSet,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use lattice::{
    claims::{self, Claims},
    contracts::keyvalue,
    ctl::ProviderDescription,
    link::LinkDefinition,
};
use lattice_harness::{free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{BIN, TestLattice, actor_wasm, get_until, probe_call, write_file};

const WAIT: Duration = Duration::from_secs(20);

/// The probe module with claims for `contracts` (and every actor) embedded.
fn probe_with_claims(t: &TestLattice, contracts: &[&str]) -> Result<std::path::PathBuf> {
    let bytes = std::fs::read(actor_wasm("probe-actor")?)?;
    let with = claims::embed(
        &bytes,
        &Claims {
            name: "probe".into(),
            version: "0.0.1".into(),
            contracts: contracts.iter().map(|c| c.to_string()).collect(),
            actors: vec![claims::ANY_ACTOR.into()],
        },
    )?;
    write_file(t.dir.path(), "probe-claims.wasm", &with)
}

/// Calls the probe's `Call` operation with a key-value operation; decodes the reply.
async fn kv<T: serde::de::DeserializeOwned>(
    t: &TestLattice,
    op: &str,
    arg: &impl serde::Serialize,
) -> Result<T> {
    let inner = rmp_serde::to_vec_named(arg)?;
    let reply = t
        .ctl
        .call_raw("probe", "Call", probe_call(keyvalue::CONTRACT, op, &inner)?)
        .await?;
    Ok(rmp_serde::from_slice(&reply)?)
}

async fn increment(t: &TestLattice, key: &str, delta: i64) -> Result<i64> {
    kv(
        t,
        keyvalue::INCREMENT,
        &keyvalue::IncrementRequest {
            key: key.into(),
            delta,
        },
    )
    .await
}

async fn providers(t: &TestLattice) -> Result<Vec<ProviderDescription>> {
    Ok(t.ctl.ping_providers(Duration::from_millis(500)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvcounter_over_http_with_providers_on_two_hosts() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("web", &[]).await?;
    let b = t.host("data", &[]).await?;
    let wasm = actor_wasm("kvcounter")?;
    let wasm_s = wasm.display().to_string();

    let claims = t.cli(&["claims", "inspect", &wasm_s]).await?.success()?;
    ensure!(
        claims.stdout.contains("lattice:keyvalue") && claims.stdout.contains("lattice:httpserver"),
        "kvcounter's claims are embedded at build time: {}",
        claims.stdout
    );

    t.cli(&["ctl", "start", "actor", &wasm_s, "--count", "2"])
        .await?
        .success()?;
    t.start_provider_on("builtin:httpserver", "web").await?;
    t.start_provider_on("builtin:keyvalue", "data").await?;
    let port = free_port();
    let address = format!("address=127.0.0.1:{port}");
    t.link_put("kvcounter", "httpserver", "lattice:httpserver", &[&address])
        .await?;
    t.link_put("kvcounter", "keyvalue", "lattice:keyvalue", &[])
        .await?;

    let url = format!("http://127.0.0.1:{port}/hits");
    let first: serde_json::Value = serde_json::from_str(&get_until(&url, 200).await?)?;
    let mut last = first["count"].as_i64().context("count in the reply")?;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = client.get(&url).send().await?;
        ensure!(r.status() == 200, "status {}", r.status());
        ensure!(
            r.headers()["content-type"] == "application/json",
            "content type"
        );
        let v: serde_json::Value = r.json().await?;
        let n = v["count"].as_i64().context("count")?;
        ensure!(n == last + 1, "counts go up by one: {last} then {n}");
        last = n;
    }
    // Another path is another key.
    let other: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/other"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(other["count"] == 1, "a new path starts at 1: {other}");

    let links: Vec<LinkDefinition> = serde_json::from_str(
        &t.cli(&["ctl", "get", "links", "--output", "json"])
            .await?
            .success()?
            .stdout,
    )?;
    ensure!(links.len() == 2, "two links: {links:?}");
    let table = t.cli(&["ctl", "get", "providers"]).await?.success()?;
    ensure!(
        table.stdout.contains("httpserver") && table.stdout.contains("keyvalue"),
        "{}",
        table.stdout
    );
    let ps = providers(&t).await?;
    ensure!(
        ps.len() == 2 && ps.iter().all(|p| p.health.healthy),
        "{ps:?}"
    );
    let inv = t.inventory(&a).await?;
    ensure!(
        inv.providers.iter().any(|p| p.id == "httpserver"),
        "the web host lists its provider: {inv:?}"
    );
    let inv_b = t.inventory(&b).await?;
    ensure!(
        inv_b.providers.iter().any(|p| p.id == "keyvalue"),
        "{inv_b:?}"
    );

    // Deleting the key-value link: the actor's call is refused, HTTP says 500.
    t.cli(&["ctl", "link", "del", "kvcounter", "lattice:keyvalue"])
        .await?
        .success()?;
    let body = get_until(&url, 500).await?;
    ensure!(
        body.contains("kvcounter") && body.contains("lattice:keyvalue"),
        "the refusal names actor and contract: {body}"
    );
    // Back, and the count continues: the data is durable in JetStream.
    t.link_put("kvcounter", "keyvalue", "lattice:keyvalue", &[])
        .await?;
    let v: serde_json::Value = serde_json::from_str(&get_until(&url, 200).await?)?;
    ensure!(v["count"] == last + 1, "count continues after relink: {v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_calls_need_claims_and_a_link() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;

    // No claims at all (the probe's own, which list no contract, stripped).
    let bare = claims::strip(&std::fs::read(actor_wasm("probe-actor")?)?)?;
    let plain = write_file(t.dir.path(), "probe-bare.wasm", &bare)?;
    t.start_actor(&a, &plain, "probe", 1).await?;
    let err = increment(&t, "k", 1).await.unwrap_err().to_string();
    for needle in ["probe", "lattice:keyvalue", "\"default\"", "no claims"] {
        ensure!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    t.ctl
        .stop_actor(&lattice::id::HostId::new(a.host_id())?, &"probe".parse()?)
        .await?;

    // Claims for another contract only.
    let http_only = probe_with_claims(&t, &["lattice:httpserver"])?;
    t.start_actor(&a, &http_only, "probe", 1).await?;
    let err = increment(&t, "k", 1).await.unwrap_err().to_string();
    ensure!(
        err.contains("do not list the contract") && err.contains("lattice:httpserver"),
        "{err}"
    );
    t.ctl
        .stop_actor(&lattice::id::HostId::new(a.host_id())?, &"probe".parse()?)
        .await?;

    // Claims, but no link.
    let with = probe_with_claims(&t, &[keyvalue::CONTRACT])?;
    t.start_actor(&a, &with, "probe", 1).await?;
    let err = increment(&t, "k", 1).await.unwrap_err().to_string();
    ensure!(
        err.contains("no such link") && err.contains("lattice ctl link put probe"),
        "{err}"
    );

    // A link to a provider that does not exist: refused at once.
    t.link_put("probe", "ghost", "lattice:keyvalue", &[])
        .await?
        .stderr_has(&["no provider with id \"ghost\""])?;
    let started = Instant::now();
    let err = increment(&t, "k", 1).await.unwrap_err().to_string();
    ensure!(
        err.contains("provider ghost") && err.contains("not running anywhere"),
        "{err}"
    );
    ensure!(started.elapsed() < Duration::from_secs(1), "fails fast");

    // The host keeps serving.
    let n: u64 = t.call("probe", "Count", &()).await?;
    ensure!(n >= 1);
    Ok(())
}

/// A standalone `lattice provider run` process.
struct ProviderProcess {
    child: tokio::process::Child,
}

impl ProviderProcess {
    async fn spawn(t: &TestLattice, name: &str, id: &str) -> Result<Self> {
        let mut events = t.events().await?;
        let url = t.nats.url();
        let child = tokio::process::Command::new(BIN)
            .args([
                "--nats-url",
                &url,
                "--lattice",
                &t.id,
                "provider",
                "run",
                name,
                "--id",
                id,
            ])
            .env("LATTICE_CONFIG", t.config_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning lattice provider run")?;
        events
            .wait_for("provider_started", WAIT, |e| {
                e.kind == "provider_started" && e.data["provider_id"] == id
            })
            .await?;
        Ok(ProviderProcess { child })
    }

    async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_provider_killed_and_restarted() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    let with = probe_with_claims(&t, &[keyvalue::CONTRACT])?;
    t.start_actor(&a, &with, "probe", 1).await?;
    t.link_put("probe", "kvproc", "lattice:keyvalue", &[])
        .await?;

    let mut provider = ProviderProcess::spawn(&t, "keyvalue", "kvproc").await?;
    // The process got the link from the KV watch.
    wait_until("the provider process to apply the link", WAIT, || async {
        let ps = providers(&t).await?;
        Ok(ps
            .iter()
            .find(|p| p.id == "kvproc" && p.links.len() == 1)
            .map(|p| p.location.clone()))
    })
    .await
    .map(|loc| assert!(loc.starts_with("process ")))?;
    ensure!(increment(&t, "visits", 5).await? == 5);
    ensure!(increment(&t, "visits", 1).await? == 6);

    // A second provider with the same id is refused.
    let out = crate::common::run_cli(
        &[
            "--nats-url",
            &t.nats.url(),
            "--lattice",
            &t.id,
            "provider",
            "run",
            "keyvalue",
            "--id",
            "kvproc",
        ],
        &[],
    )
    .await?
    .failure()?;
    out.stderr_has(&["already runs"])?;

    provider.kill().await?;
    let err = wait_until("calls to fail once the provider is gone", WAIT, || async {
        Ok(increment(&t, "visits", 1).await.err())
    })
    .await?
    .to_string();
    ensure!(err.contains("not running anywhere"), "{err}");
    let started = Instant::now();
    ensure!(increment(&t, "visits", 1).await.is_err());
    ensure!(started.elapsed() < Duration::from_secs(1), "fails fast");

    // Back: links are re-sent, data (JetStream) survived.
    let _provider = ProviderProcess::spawn(&t, "keyvalue", "kvproc").await?;
    let n = wait_until("calls to work again", WAIT, || async {
        Ok(increment(&t, "visits", 1).await.ok())
    })
    .await?;
    ensure!(n == 7, "the counter continues at 7, got {n}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_are_atomic_across_hosts_and_keys_may_be_odd() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    let b = t.host("b", &[]).await?;
    let with = probe_with_claims(&t, &[keyvalue::CONTRACT])?;
    t.start_actor(&a, &with, "probe", 2).await?;
    t.start_actor(&b, &with, "probe", 2).await?;
    t.start_provider_on("builtin:keyvalue", "a").await?;
    t.link_put("probe", "keyvalue", "lattice:keyvalue", &[])
        .await?;
    wait_until("the link to reach both hosts", WAIT, || async {
        Ok(increment(&t, "warmup", 1).await.ok())
    })
    .await?;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let ctl = t.ctl.clone();
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..25 {
                let inner = rmp_serde::to_vec_named(&keyvalue::IncrementRequest {
                    key: "shared".into(),
                    delta: 1,
                })?;
                let reply = ctl
                    .call_raw(
                        "probe",
                        "Call",
                        probe_call(keyvalue::CONTRACT, keyvalue::INCREMENT, &inner)?,
                    )
                    .await?;
                seen.push(rmp_serde::from_slice::<i64>(&reply)?);
            }
            anyhow::Ok(seen)
        });
    }
    let mut all = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        for n in r?? {
            ensure!(all.insert(n), "value {n} returned twice: a lost update");
        }
    }
    ensure!(all.len() == 200 && all.iter().all(|n| (1..=200).contains(n)));
    ensure!(increment(&t, "shared", 0).await? == 200);
    for host in [&a, &b] {
        let d = t.actor_on(host, "probe").await?.context("probe runs")?;
        ensure!(d.calls > 0, "both hosts served calls: {d:?}");
    }

    // Odd key names and empty values.
    for key in ["a b", "a.b", ".lead", "trail.", "*", ">", "ünï/cødé", ""] {
        let _: () = kv(
            &t,
            keyvalue::SET,
            &keyvalue::SetRequest {
                key: key.into(),
                value: Vec::new(),
                ttl_secs: None,
            },
        )
        .await
        .with_context(|| format!("set {key:?}"))?;
        let got: keyvalue::GetResponse =
            kv(&t, keyvalue::GET, &keyvalue::KeyRequest { key: key.into() }).await?;
        ensure!(got.found && got.value.is_empty(), "{key:?}: {got:?}");
    }
    let keys: Vec<String> = kv(
        &t,
        keyvalue::KEYS,
        &keyvalue::KeysRequest {
            prefix: "ünï".into(),
            ..Default::default()
        },
    )
    .await?;
    ensure!(keys == ["ünï/cødé"], "{keys:?}");

    // Pages of 3 through an actor list the same keys as one answer.
    let all: Vec<String> = kv(&t, keyvalue::KEYS, &keyvalue::KeysRequest::default()).await?;
    let mut paged: Vec<String> = Vec::new();
    loop {
        let request = keyvalue::KeysRequest {
            after: paged.last().cloned(),
            limit: Some(3),
            ..Default::default()
        };
        let page: Vec<String> = kv(&t, keyvalue::KEYS, &request).await?;
        let ended = page.len() < 3;
        paged.extend(page);
        if ended {
            break;
        }
    }
    ensure!(
        paged == all && all.len() > 3,
        "paged {paged:?}, all {all:?}"
    );
    let too_big = keyvalue::KeysRequest {
        limit: Some(5000),
        ..Default::default()
    };
    let refused = kv::<Vec<String>>(&t, keyvalue::KEYS, &too_big).await;
    let why = format!("{:#}", refused.err().context("limit 5000 was accepted")?);
    ensure!(why.contains("limit 5000 is out of range"), "{why}");
    Ok(())
}

/// Sends raw bytes on a fresh connection and returns the status line.
async fn raw_http(port: u16, request: &[u8]) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(request).await?;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await??;
    Ok(String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_faults_give_clear_statuses_and_the_host_keeps_serving() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    t.start_actor(&a, &actor_wasm("probe-actor")?, "probe", 1)
        .await?;
    t.start_actor(&a, &actor_wasm("hello")?, "hello", 1).await?;
    t.start_provider_on("builtin:httpserver", "a").await?;

    // Port already in use: the link fails, reported; nothing else breaks.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken_addr = format!("address={}", taken.local_addr()?);
    let mut events = t.events().await?;
    t.link_put("probe", "httpserver", "lattice:httpserver", &[&taken_addr])
        .await?;
    let failed = events
        .wait_for("link_failed", WAIT, |e| e.kind == "link_failed")
        .await?;
    ensure!(
        failed.data["error"]
            .as_str()
            .unwrap_or_default()
            .contains("in use"),
        "{failed:?}"
    );
    let listing = t.cli(&["ctl", "get", "providers"]).await?.success()?;
    ensure!(listing.stderr.contains("in use"), "{listing:?}");
    ensure!(t.say_hello("still").await? == "Hello, still!");

    // Move the link to a free port, with a small body limit.
    let port = free_port();
    let address = format!("address=127.0.0.1:{port}");
    t.link_put(
        "probe",
        "httpserver",
        "lattice:httpserver",
        &[&address, "max_body_bytes=1024"],
    )
    .await?;
    let base = format!("http://127.0.0.1:{port}");
    ensure!(get_until(&format!("{base}/"), 200).await? == "probe");
    let client = reqwest::Client::new();

    // Binary bodies round-trip unchanged.
    let body: Vec<u8> = (0..=255u8).collect();
    let r = client
        .post(format!("{base}/echo"))
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 200 && r.bytes().await?.to_vec() == body);

    // Over the limit: 413.
    let r = client
        .post(format!("{base}/echo"))
        .body(vec![7u8; 4096])
        .send()
        .await?;
    ensure!(r.status() == 413, "{}", r.status());

    // The actor answers garbage: 500 naming it; an actor error: 500.
    let r = client.get(format!("{base}/garbage")).send().await?;
    ensure!(r.status() == 500);
    ensure!(r.text().await?.contains("malformed"));
    let r = client.get(format!("{base}/error")).send().await?;
    ensure!(r.status() == 500);
    ensure!(r.text().await?.contains("probe refused"));

    // Past the call deadline (2 s in tests): 504, not a hang.
    let r = client.get(format!("{base}/slow")).send().await?;
    ensure!(r.status() == 504, "{}", r.status());

    // A malformed request: 400, and the server still serves.
    let status = raw_http(port, b"GARBAGE\r\n\r\n").await?;
    ensure!(status.contains("400"), "{status}");
    ensure!(get_until(&format!("{base}/"), 200).await? == "probe");

    // The actor stops: 503.
    t.ctl
        .stop_actor(&lattice::id::HostId::new(a.host_id())?, &"probe".parse()?)
        .await?;
    let r = client.get(format!("{base}/")).send().await?;
    ensure!(r.status() == 503, "{}", r.status());
    ensure!(t.say_hello("after").await? == "Hello, after!");

    // Two providers with one id are refused.
    let out = t
        .cli(&[
            "ctl",
            "start",
            "provider",
            "builtin:httpserver",
            "--host",
            "a",
        ])
        .await?;
    if out.status.success() {
        bail!("a second httpserver provider with the same id started: {out:?}");
    }
    out.stderr_has(&["already"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auction_prefers_a_host_with_the_linked_provider_in_process() -> Result<()> {
    let t = TestLattice::start().await?;
    let _empty = t.host("empty", &[]).await?;
    let with_kv = t.host("with-kv", &[]).await?;
    t.start_provider_on("builtin:keyvalue", "with-kv").await?;
    t.link_put("probe", "keyvalue", "lattice:keyvalue", &[])
        .await?;
    // "empty" is less loaded, but "with-kv" serves the probe's contract in-process.
    let module = probe_with_claims(&t, &[keyvalue::CONTRACT])?;
    let out = t
        .cli(&[
            "ctl",
            "start",
            "actor",
            &module.display().to_string(),
            "--id",
            "probe",
            "--output",
            "json",
        ])
        .await?
        .success()?;
    let report: serde_json::Value = serde_json::from_str(&out.stdout)?;
    ensure!(
        report["started"][0]["host_name"] == "with-kv",
        "placed on {}",
        report["started"][0]["host_name"]
    );
    ensure!(t.actor_on(&with_kv, "probe").await?.is_some());
    ensure!(increment(&t, "n", 2).await? == 2);
    Ok(())
}

/// An actor cannot reach a provider by naming its bare id (actors and providers
/// have separate rpc subjects), an actor whose id is a provider's id does not
/// receive that provider's calls, and a raw request to a provider naming an
/// origin it holds no link for is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_ids_are_not_actor_ids_and_forged_origins_are_refused() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    t.cli(&["ctl", "start", "provider", "builtin:keyvalue", "--id", "kv"])
        .await?
        .success()?;
    // The probe has a link to kv but its claims do not list lattice:keyvalue.
    let http_only = probe_with_claims(&t, &["lattice:httpserver"])?;
    t.start_actor(&a, &http_only, "probe", 1).await?;
    t.link_put("probe", "kv", keyvalue::CONTRACT, &[]).await?;

    // The bare provider id as an actor target reaches no provider.
    let get = rmp_serde::to_vec_named(&keyvalue::GetRequest { key: "k".into() })?;
    let err = t
        .ctl
        .call_raw("probe", "Call", probe_call("kv", keyvalue::GET, &get)?)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        err.contains("no responders") && err.contains("actor \"kv\""),
        "the bare id must not reach the provider: {err}"
    );

    // An actor started under the provider's id gets no contract calls: a
    // properly claimed and linked caller still reaches the real provider.
    t.start_actor(&a, &actor_wasm("hello")?, "kv", 1).await?;
    let with = probe_with_claims(&t, &[keyvalue::CONTRACT])?;
    t.ctl
        .stop_actor(&lattice::id::HostId::new(a.host_id())?, &"probe".parse()?)
        .await?;
    t.start_actor(&a, &with, "probe", 1).await?;
    ensure!(increment(&t, "k", 2).await? == 2);
    ensure!(increment(&t, "k", 3).await? == 5);

    // A raw request to the provider's subject with a forged origin that has no
    // link is refused, naming provider, origin and link.
    let lid = lattice::id::LatticeId::new(t.id.as_str())?;
    let target = lattice::rpc::Target::Provider {
        provider: "kv".parse()?,
        contract: keyvalue::CONTRACT.parse()?,
        link: lattice::id::LinkName::default_name(),
    };
    let caller = lattice::rpc::remote::Caller::new(t.ctl.nats().clone());
    let get_as = |origin: &'static str| {
        let inv = lattice::rpc::Invocation::new(origin, &target, keyvalue::GET, get.clone());
        let (caller, lid, target) = (&caller, &lid, &target);
        async move {
            let trace = lattice::trace::TraceContext::new_root();
            caller
                .invoke(lid, target, inv, &trace, Duration::from_secs(5))
                .await
        }
    };
    let err = get_as("kvcounter").await.unwrap_err().to_string();
    for needle in [
        "provider kv refuses",
        "actor kvcounter",
        "\"default\"",
        "no such link",
    ] {
        ensure!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    // The linked origin is served over NATS too.
    get_as("probe").await.context("a linked origin is served")?;
    Ok(())
}

/// GETs `url` `n` times, each on a fresh connection (so the kernel picks a
/// listener each time); how many answered 200.
async fn fresh_gets(url: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a reqwest client");
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http_provider_id_on_two_hosts_shares_a_port_and_survives_a_kill() -> Result<()> {
    let t = TestLattice::start().await?;
    let mut a = t.host("edge-a", &[]).await?;
    let b = t.host("edge-b", &[]).await?;
    let wasm = actor_wasm("hello-http")?;
    t.start_actor(&a, &wasm, "hello-http", 1).await?;
    t.start_actor(&b, &wasm, "hello-http", 1).await?;
    for host in ["edge-a", "edge-b"] {
        t.cli(&[
            "ctl",
            "start",
            "provider",
            "builtin:httpserver",
            "--id",
            "http",
            "--host",
            host,
        ])
        .await?
        .success()?;
    }
    // Once per host: a second start on edge-a is refused, naming both.
    let again = t
        .cli(&[
            "ctl",
            "start",
            "provider",
            "builtin:httpserver",
            "--id",
            "http",
            "--host",
            "edge-a",
        ])
        .await?
        .failure()?;
    again.stderr_has(&["provider http already runs on host edge-a"])?;
    // And `--count` finds no host left without it.
    let none_left = t
        .cli(&[
            "ctl",
            "start",
            "provider",
            "builtin:httpserver",
            "--id",
            "http",
            "--count",
            "1",
        ])
        .await?
        .failure()?;
    none_left.stderr_has(&["runs once per host", "edge-a", "edge-b"])?;

    let port = free_port();
    t.link_put(
        "hello-http",
        "http",
        "lattice:httpserver",
        &[&format!("address=127.0.0.1:{port}")],
    )
    .await?;
    // Both instances bound the same port (SO_REUSEPORT): neither reports the
    // link failed.
    wait_until("both instances to serve the link", WAIT, || async {
        let ps = providers(&t).await?;
        let serving: Vec<_> = ps
            .iter()
            .filter(|p| p.id == "http" && p.links.len() == 1 && p.links[0].error.is_none())
            .map(|p| p.location.clone())
            .collect();
        Ok((serving == ["host edge-a", "host edge-b"]).then_some(()))
    })
    .await?;
    let table = t.cli(&["ctl", "get", "providers"]).await?.success()?;
    ensure!(
        table.stdout.contains("host edge-a") && table.stdout.contains("host edge-b"),
        "each instance is listed with its host: {}",
        table.stdout
    );
    let url = format!("http://127.0.0.1:{port}/");
    get_until(&url, 200).await?;
    ensure!(fresh_gets(&url, 10).await == 10, "requests succeed");

    // kill -9 one host: its listener is gone with the process, so the kernel
    // sends every new connection to the other instance.
    a.kill()?;
    let first = fresh_gets(&url, 1).await;
    wait_until(
        "20 requests in a row to succeed after the kill",
        WAIT,
        || async { Ok((fresh_gets(&url, 20).await == 20).then_some(())) },
    )
    .await
    .with_context(|| format!("the first request after the kill: {first} of 1 succeeded"))?;
    let ps = providers(&t).await?;
    ensure!(
        ps.iter().filter(|p| p.id == "http").count() == 1,
        "one instance left: {ps:?}"
    );
    drop(b);
    Ok(())
}

/// A page of the largest keys (1000 keys of 1 KiB) fits in one NATS message
/// on its way from a provider on another host to the actor, as
/// docs/contracts.md says; the same keys unpaged are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_page_of_the_longest_keys_crosses_nats() -> Result<()> {
    let t = TestLattice::start().await?;
    let web = t.host("web", &[]).await?;
    let _data = t.host("data", &[]).await?;
    let with = probe_with_claims(&t, &[keyvalue::CONTRACT])?;
    t.start_actor(&web, &with, "probe", 1).await?;
    // The provider on the other host only: every call crosses NATS.
    t.start_provider_on("builtin:keyvalue", "data").await?;
    t.link_put("probe", "keyvalue", "lattice:keyvalue", &["backend=memory"])
        .await?;
    wait_until("the link to reach the provider", WAIT, || async {
        Ok(increment(&t, "warmup", 1).await.ok())
    })
    .await?;

    let long = |i: usize| format!("{i:04}{}", "k".repeat(1020));
    let keys: Vec<String> = (0..1000).map(long).collect();
    let set = |key: String| {
        let t = &t;
        async move {
            let request = keyvalue::SetRequest {
                key,
                value: Vec::new(),
                ttl_secs: None,
            };
            kv::<()>(t, keyvalue::SET, &request).await
        }
    };
    futures::stream::iter(keys.iter().cloned().map(set))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;

    let page = keyvalue::KeysRequest {
        limit: Some(keyvalue::MAX_KEYS_PER_PAGE),
        ..Default::default()
    };
    let got: Vec<String> = kv(&t, keyvalue::KEYS, &page).await?;
    ensure!(
        got.len() == 1000 && got.iter().all(|k| k.len() == 1024) && got[..] == keys[..],
        "a full page: {} keys",
        got.len()
    );
    let refused = kv::<Vec<String>>(&t, keyvalue::KEYS, &keyvalue::KeysRequest::default()).await;
    let why = format!(
        "{:#}",
        refused.err().context("1000 KiB of keys came unpaged")?
    );
    ensure!(why.contains(keyvalue::TOO_MANY_KEYS), "{why}");
    Ok(())
}
