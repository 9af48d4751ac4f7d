//! Declarative apps and the reconciler: deploy, converge, heal after a host or
//! the leader dies, bad manifests, concurrent deploys, undeploy.
//!
//! Real nats-server, real host processes, real wasm actors built from source.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lattice::{app_store::AppStore, id::HostId};
use lattice_harness::{HostProcess, free_port, wait_until};
use lattice_host::reconcile::lease::Lease;

use crate::common::{
    TestLattice, actor_wasm, kvcounter_app, kvcounter_hits, reconciler_leader, replicas_by_host,
    write_file,
};

const CONVERGE: Duration = Duration::from_secs(30);
/// Hosts beat every second here, so a killed host is gone after three.
const FAST: &[(&str, &str)] = &[("--reconcile-interval", "500ms")];

/// Writes `toml` to `file` in the test's directory and deploys it.
async fn deploy(t: &TestLattice, file: &str, toml: &str) -> Result<()> {
    let f = write_file(t.dir.path(), file, toml.as_bytes())?;
    t.cli(&["app", "deploy", &f.display().to_string()])
        .await?
        .success()?;
    Ok(())
}

/// Waits until `want` replicas of `actor` run in all; returns them per host.
async fn wait_replicas(t: &TestLattice, actor: &str, want: u32) -> Result<Vec<(String, u32)>> {
    wait_until(format!("{want} replicas of {actor}"), CONVERGE, || async {
        let r = replicas_by_host(&t.ctl, actor).await?;
        Ok((r.iter().map(|(_, n)| n).sum::<u32>() == want).then_some(r))
    })
    .await
}

/// The kvcounter app's count, once it answers.
async fn count(port: u16) -> Result<i64> {
    kvcounter_hits(port, CONVERGE).await
}

/// The kvcounter app with `replicas`, its HTTP server on the edge host.
fn manifest(replicas: u32, port: u16) -> String {
    kvcounter_app("kvcounter.wasm", replicas, port, r#"{ role = "edge" }"#)
}

async fn hosts(t: &TestLattice) -> Result<(HostProcess, HostProcess, HostProcess)> {
    let edge = t.host("edge", &[FAST[0], ("--label", "role=edge")]).await?;
    let w1 = t
        .host("worker-1", &[FAST[0], ("--label", "role=worker")])
        .await?;
    let w2 = t
        .host("worker-2", &[FAST[0], ("--label", "role=worker")])
        .await?;
    Ok((edge, w1, w2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_converges_heals_after_a_host_dies_and_updates() -> Result<()> {
    let t = TestLattice::start().await?;
    let (_edge, mut w1, _w2) = hosts(&t).await?;
    let module = actor_wasm("kvcounter")?;
    std::fs::copy(&module, t.dir.path().join("kvcounter.wasm"))?;
    let port = free_port();
    let file = write_file(t.dir.path(), "app.toml", manifest(3, port).as_bytes())?;
    let file_s = file.display().to_string();
    t.cli(&["app", "deploy", &file_s]).await?.success()?;
    let placed = wait_replicas(&t, "kvcounter", 3).await?;
    ensure!(placed.len() == 3, "one replica per host first: {placed:?}");
    let before = count(port).await?;
    ensure!(count(port).await? == before + 1);

    let status = wait_until("status to say converged", CONVERGE, || async {
        let out = t.cli(&["app", "status", "counter"]).await?;
        Ok(out.stdout.contains("converged").then_some(out.stdout))
    })
    .await?;
    ensure!(
        status.contains("kvcounter") && status.contains("httpserver"),
        "{status}"
    );
    let list = t
        .cli(&["app", "list", "--output", "json"])
        .await?
        .success()?;
    ensure!(list.stdout.contains("\"revision\": 1"), "{}", list.stdout);

    // A worker dies without a goodbye: its replica comes back elsewhere once the
    // host misses three heartbeats; the data written before is still there.
    w1.kill()?;
    let healed = wait_replicas(&t, "kvcounter", 3).await?;
    ensure!(
        healed.iter().all(|(h, _)| h != "worker-1"),
        "nothing left on the dead host: {healed:?}"
    );
    ensure!(count(port).await? == before + 2, "key-value kept the count");

    // A changed manifest rolls to revision 2.
    std::fs::write(&file, manifest(1, port))?;
    let out = t.cli(&["app", "deploy", &file_s]).await?.success()?;
    ensure!(out.stdout.contains("revision 2"), "{}", out.stdout);
    wait_replicas(&t, "kvcounter", 1).await?;

    // Undeploy stops everything and removes the links.
    t.cli(&["app", "undeploy", "counter"]).await?.success()?;
    ensure!(replicas_by_host(&t.ctl, "kvcounter").await?.is_empty());
    let links = t.ctl.links().await?.list().await?;
    ensure!(links.is_empty(), "{links:?}");
    t.cli(&["app", "status", "counter"])
        .await?
        .failure()?
        .stderr_has(&["no app named \"counter\""])?;
    Ok(())
}

/// An app scaled down on a host that runs more replicas than the excess is
/// scaled down there: the actor is never stopped (which, on its only host,
/// left no replica at all until the next pass) and answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_an_app_down_keeps_its_actor_serving() -> Result<()> {
    let t = TestLattice::start().await?;
    let _solo = t.host("solo", FAST).await?;
    let hello = actor_wasm("hello")?;
    let app = |n: u32| {
        format!(
            "name = \"greeter\"\n[[actors]]\nid = \"hello\"\nref = \"{}\"\nreplicas = {n}\n",
            hello.display()
        )
    };
    deploy(&t, "app.toml", &app(3)).await?;
    wait_replicas(&t, "hello", 3).await?;
    let mut events = t.events().await?;

    deploy(&t, "app.toml", &app(2)).await?;
    let change = events
        .wait_for("hello scaled or stopped", CONVERGE, |e| {
            e.kind == "actor_scaled" || e.kind == "actor_stopped"
        })
        .await?;
    ensure!(
        change.kind == "actor_scaled",
        "the reconciler stopped hello instead of scaling it down: {change:?}"
    );
    let placed = wait_replicas(&t, "hello", 2).await?;
    ensure!(placed == [("solo".to_string(), 2)], "{placed:?}");
    let greeting: String = t.call("hello", "SayHello", "World").await?;
    ensure!(greeting == "Hello, World!", "{greeting}");
    Ok(())
}

/// A deployed app whose module changes is updated in place on the hosts that
/// run it: the new module serves before the old one stops, so calls made all
/// through the update succeed (before, the old module was stopped and the new
/// one started, and calls in between found no actor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_is_rolled_out_without_a_failed_call() -> Result<()> {
    let t = TestLattice::start().await?;
    let _solo = t.host("solo", FAST).await?;
    let v1 = actor_wasm("hello")?;
    // The same code as another module: a custom section changes the digest.
    let mut bytes = std::fs::read(&v1)?;
    bytes.extend_from_slice(&[0, 3, 1, b'2', 1]);
    let v2 = write_file(t.dir.path(), "hello-v2.wasm", &bytes)?;
    let app = |module: &std::path::Path| {
        format!(
            "name = \"greeter\"\n[[actors]]\nid = \"hello\"\nref = \"{}\"\nreplicas = 2\n",
            module.display()
        )
    };
    deploy(&t, "app.toml", &app(&v1)).await?;
    wait_replicas(&t, "hello", 2).await?;
    let mut events = t.events().await?;

    // Calls all through the update, one after another.
    let calling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let caller = tokio::spawn({
        let (ctl, calling) = (t.ctl.clone(), calling.clone());
        async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while calling.load(std::sync::atomic::Ordering::Relaxed) {
                match ctl.call("hello", "SayHello", "World").await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }
    });
    deploy(&t, "app.toml", &app(&v2)).await?;
    let change = events
        .wait_for("hello updated or stopped", CONVERGE, |e| {
            e.kind == "actor_updated" || e.kind == "actor_stopped"
        })
        .await?;
    ensure!(
        change.kind == "actor_updated",
        "the reconciler stopped hello instead of updating it: {change:?}"
    );
    let v2_digest = lattice::digest::Digest::of(&bytes);
    wait_until("hello to run the new module", CONVERGE, || async {
        let inv = t.ctl.inventories(Duration::from_millis(300)).await?;
        let hello = inv
            .iter()
            .flat_map(|i| &i.actors)
            .find(|a| a.id.as_str() == "hello");
        Ok(hello
            .is_some_and(|a| a.digest == v2_digest && a.replicas == 2)
            .then_some(()))
    })
    .await?;
    // A few calls to the new module alone.
    for _ in 0..3 {
        let _: String = t.call("hello", "SayHello", "World").await?;
    }
    calling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = caller.await?;
    ensure!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    ensure!(ok > 0, "no call was made during the update");
    Ok(())
}

/// The reconciler places like `ctl start actor` does: a host running the
/// actor's linked providers in-process wins over hosts that sort before it and
/// carry the same load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_places_actors_beside_their_linked_providers() -> Result<()> {
    let t = TestLattice::start().await?;
    let _a = t.host("a-worker", &[FAST[0]]).await?;
    let _b = t.host("b-worker", &[FAST[0]]).await?;
    let _edge = t
        .host("z-edge", &[FAST[0], ("--label", "role=edge")])
        .await?;
    std::fs::copy(
        actor_wasm("kvcounter")?,
        t.dir.path().join("kvcounter.wasm"),
    )?;
    let port = free_port();
    let both_on_edge = manifest(1, port).replace(
        "ref = \"builtin:keyvalue\"\n",
        "ref = \"builtin:keyvalue\"\nconstraints = { role = \"edge\" }\n",
    );
    ensure!(both_on_edge.matches("role = \"edge\"").count() == 2);
    deploy(&t, "app.toml", &both_on_edge).await?;
    let placed = wait_replicas(&t, "kvcounter", 1).await?;
    ensure!(
        placed.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>() == ["z-edge"],
        "the actor runs beside its providers: {placed:?}"
    );
    ensure!(count(port).await? >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_takes_over_when_the_leader_dies() -> Result<()> {
    let t = TestLattice::start().await?;
    let (edge, w1, w2) = hosts(&t).await?;
    let store = AppStore::open(t.ctl.nats().clone(), &t.id.parse()?).await?;
    let first = wait_until("a reconciler leader", CONVERGE, || {
        reconciler_leader(&store)
    })
    .await?;
    let mut all = vec![edge, w1, w2];
    let idx = all
        .iter()
        .position(|h| h.host_id() == first)
        .context("the leader is one of our hosts")?;
    let mut leader = all.remove(idx);
    leader.kill()?;
    let second = wait_until("a new leader", CONVERGE, || async {
        Ok(reconciler_leader(&store).await?.filter(|l| *l != first))
    })
    .await?;
    ensure!(all.iter().any(|h| h.host_id() == second));

    // The new leader reconciles: deploy now, it converges on the survivors.
    let module = actor_wasm("hello")?;
    deploy(
        &t,
        "hello.toml",
        &format!(
            "name = \"greeter\"\n[[actors]]\nid = \"hello\"\nref = \"{}\"\nreplicas = 2\n",
            module.display()
        ),
    )
    .await?;
    wait_replicas(&t, "hello", 2).await?;
    ensure!(t.say_hello("again").await? == "Hello, again!");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_for_the_lease_yields_one_leader() -> Result<()> {
    let t = TestLattice::start().await?;
    let store = AppStore::open(t.ctl.nats().clone(), &t.id.parse()?).await?;
    let mut leases: Vec<Lease> = (0..4)
        .map(|_| {
            Lease::new(
                store.kv().clone(),
                HostId::generate(),
                Duration::from_millis(600),
            )
        })
        .collect();
    for _ in 0..5 {
        let results = futures::future::join_all(leases.iter_mut().map(|l| l.step())).await;
        let leaders = results.iter().filter(|r| **r).count();
        ensure!(leaders <= 1, "two leaders at once: {results:?}");
    }
    ensure!(leases.iter().filter(|l| l.is_leader()).count() == 1);
    // The leader stops renewing: exactly one follower takes over after the timeout.
    let old = leases
        .iter()
        .position(Lease::is_leader)
        .context("a leader")?;
    let mut old_lease = leases.remove(old);
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let results = futures::future::join_all(leases.iter_mut().map(|l| l.step())).await;
        let n = results.iter().filter(|r| **r).count();
        ensure!(n <= 1, "two leaders at once: {results:?}");
        if n == 1 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no follower took over the lease"
        );
        // Lease steps are paced like the reconciler's ticks.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old leader notices it lost the lease on its next renewal.
    ensure!(!old_lease.step().await, "the deposed leader steps down");
    Ok(())
}

/// A record put into the apps bucket behind `app deploy`'s back (here with
/// 2^30 replicas, which would wrap the host's concurrency limit) is checked
/// again by the reconciler: nothing starts, and `app status` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_refuses_an_invalid_manifest_written_straight_to_kv() -> Result<()> {
    let t = TestLattice::start().await?;
    let _h = t.host("only", &[FAST[0]]).await?;
    let module = actor_wasm("hello")?;
    deploy(
        &t,
        "hello.toml",
        &format!(
            "name = \"greeter\"\n[[actors]]\nid = \"hello\"\nref = \"{}\"\nreplicas = 0\n",
            module.display()
        ),
    )
    .await?;
    let store = AppStore::open(t.ctl.nats().clone(), &t.id.parse()?).await?;
    let mut app = store.get("greeter").await?.context("deployed")?;
    app.manifest.actors[0].replicas = 1 << 30;
    store
        .kv()
        .put("app.greeter", serde_json::to_vec(&app)?.into())
        .await?;
    let status = wait_until("status to name the invalid manifest", CONVERGE, || async {
        let out = t.cli(&["app", "status", "greeter"]).await?;
        Ok(out
            .stdout
            .contains("stored manifest is invalid")
            .then_some(out.stdout))
    })
    .await?;
    ensure!(
        status.contains("replicas must be at most 1000, got 1073741824")
            && status.contains("converging"),
        "{status}"
    );
    ensure!(replicas_by_host(&t.ctl, "hello").await?.is_empty());
    Ok(())
}

/// A deploy that lands while an app is being undeployed survives the
/// undeploy's delete (compare-and-set on the KV revision), and an app deployed
/// again after a delete counts its revisions on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_during_undeploy_is_kept_and_revisions_count_on() -> Result<()> {
    let t = TestLattice::start().await?;
    let store = AppStore::open(t.ctl.nats().clone(), &t.id.parse()?).await?;
    let manifest = lattice::app::Manifest::from_toml(
        "name = \"race\"\n[[actors]]\nid = \"hello\"\nref = \"hello.wasm\"\nreplicas = 0\n",
    )?;
    let first = store.deploy(manifest.clone(), Default::default()).await?;
    ensure!(first.revision == 1);
    store.mark_undeploying("race").await?.context("marked")?;
    // A deploy between the mark and the delete.
    let second = store.deploy(manifest.clone(), Default::default()).await?;
    ensure!(second.revision == 2);
    let err = store.remove("race").await.unwrap_err();
    ensure!(
        matches!(err, lattice::Error::AppRedeployed { revision: 2, .. }),
        "{err}"
    );
    ensure!(
        err.to_string()
            .contains("app race was deployed again (revision 2)"),
        "{err}"
    );
    let kept = store.get("race").await?.context("the new deploy is kept")?;
    ensure!(kept.revision == 2 && !kept.undeploying);

    // Undeployed for real, then deployed again: revision 3, not 1.
    store.mark_undeploying("race").await?.context("marked")?;
    ensure!(store.remove("race").await?.is_some());
    ensure!(store.get("race").await?.is_none());
    let again = store.deploy(manifest, Default::default()).await?;
    ensure!(again.revision == 3, "revision {}", again.revision);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_and_concurrent_deploys() -> Result<()> {
    let t = TestLattice::start().await?;
    let _h = t
        .host("only", &[FAST[0], ("--label", "role=worker")])
        .await?;
    let module = actor_wasm("hello")?;
    let m = module.display().to_string();
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown field",
            format!("name = \"x\"\n[[actors]]\nid = \"hello\"\nref = \"{m}\"\ncolour = \"red\"\n"),
            "unknown field `colour`",
        ),
        (
            "missing ref",
            "name = \"x\"\n[[actors]]\nid = \"hello\"\n".to_string(),
            "has no ref",
        ),
        (
            "undeclared provider",
            format!(
                "name = \"x\"\n[[actors]]\nid = \"hello\"\nref = \"{m}\"\n[[links]]\nactor = \"hello\"\nprovider = \"kv\"\ncontract = \"lattice:keyvalue\"\n"
            ),
            "provider \"kv\" is not declared",
        ),
        (
            "negative replicas",
            format!("name = \"x\"\n[[actors]]\nid = \"hello\"\nref = \"{m}\"\nreplicas = -2\n"),
            "replicas must be 0 or more, got -2",
        ),
        (
            "missing file",
            "name = \"x\"\n[[actors]]\nid = \"hello\"\nref = \"nope.wasm\"\n".to_string(),
            "nope.wasm",
        ),
    ];
    for (what, text, needle) in cases {
        let f = write_file(t.dir.path(), "bad.toml", text.as_bytes())?;
        t.cli(&["app", "deploy", &f.display().to_string()])
            .await?
            .failure()
            .with_context(|| format!("case {what}"))?
            .stderr_has(&[needle])
            .with_context(|| format!("case {what}"))?;
    }

    // Constraints no host meets: the status says why it does not converge.
    deploy(
        &t,
        "stuck.toml",
        &format!(
            "name = \"stuck\"\n[[actors]]\nid = \"hello\"\nref = \"{m}\"\nconstraints = {{ zone = \"mars\" }}\n"
        ),
    )
    .await?;
    wait_until("status to explain", CONVERGE, || async {
        let out = t.cli(&["app", "status", "stuck"]).await?;
        Ok(out
            .stdout
            .contains("no live host matches the constraints [zone=mars]")
            .then_some(()))
    })
    .await?;
    t.cli(&["app", "undeploy", "stuck"]).await?.success()?;

    // The same app deployed twice at once: both succeed, one after the other.
    let f = write_file(
        t.dir.path(),
        "twice.toml",
        format!("name = \"twice\"\n[[actors]]\nid = \"hello\"\nref = \"{m}\"\nreplicas = 1\n")
            .as_bytes(),
    )?;
    let fs = f.display().to_string();
    let args = ["app", "deploy", fs.as_str()];
    let (a, b) = tokio::join!(t.cli(&args), t.cli(&args));
    let (a, b) = (a?.success()?, b?.success()?);
    let revs: Vec<bool> = [&a, &b]
        .iter()
        .map(|o| o.stdout.contains("revision 1"))
        .collect();
    ensure!(
        revs.iter().filter(|r| **r).count() == 1,
        "one deploy got revision 1, the other 2: {} / {}",
        a.stdout,
        b.stdout
    );
    wait_replicas(&t, "hello", 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_config_reaches_the_actor_as_environment() -> Result<()> {
    let t = TestLattice::start().await?;
    let _h = t.host("only", &[FAST[0]]).await?;
    let probe = actor_wasm("probe-actor")?;
    deploy(
        &t,
        "cfg.toml",
        &format!(
            "name = \"cfg\"\n[[actors]]\nid = \"probe\"\nref = \"{}\"\nconfig = {{ GREETING = \"hola\" }}\n",
            probe.display()
        ),
    )
    .await?;
    wait_replicas(&t, "probe", 1).await?;
    let v: Option<String> = t.call("probe", "Env", "GREETING").await?;
    ensure!(v.as_deref() == Some("hola"), "{v:?}");
    let none: Option<String> = t.call("probe", "Env", "NOT_SET").await?;
    ensure!(none.is_none());
    Ok(())
}

/// libfaketime shifts a process' wall clock (not its monotonic clock). The lease
/// and liveness use only monotonic time, so a host 30 days ahead leads like any
/// other.
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_a_clock_far_off_leads_and_heals() -> Result<()> {
    if !std::path::Path::new(FAKETIME_LIB).exists() {
        // scripts/prereqs.sh installs it; say so loudly rather than pass silently.
        anyhow::bail!(
            "{FAKETIME_LIB} is missing: apt-get install faketime (scripts/prereqs.sh does)"
        );
    }
    let t = TestLattice::start().await?;
    let opts = t
        .host_options("skewed", &[FAST[0]])
        .env_var("LD_PRELOAD", FAKETIME_LIB)
        .env_var("FAKETIME", "+30d")
        .env_var("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let skewed = HostProcess::spawn(crate::common::BIN, &opts).await?;
    let started = skewed.started_event()["time"]
        .as_str()
        .context("event time")?
        .to_string();
    let when = humantime::parse_rfc3339_weak(started.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(&started))?;
    let ahead = when
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    ensure!(
        ahead > Duration::from_secs(29 * 86400),
        "the skewed host's clock is 30 days ahead: {started}"
    );
    let store = AppStore::open(t.ctl.nats().clone(), &t.id.parse()?).await?;
    let leader = wait_until("a reconciler leader", CONVERGE, || {
        reconciler_leader(&store)
    })
    .await?;
    ensure!(leader == skewed.host_id(), "the only host leads");
    let mut normal = t.host("normal", &[FAST[0]]).await?;
    let module = actor_wasm("hello")?;
    deploy(
        &t,
        "skew.toml",
        &format!(
            "name = \"skew\"\n[[actors]]\nid = \"hello\"\nref = \"{}\"\nreplicas = 2\n",
            module.display()
        ),
    )
    .await?;
    let placed = wait_replicas(&t, "hello", 2).await?;
    ensure!(placed.len() == 2, "spread over both hosts: {placed:?}");
    // The normal host dies; the skewed leader notices (monotonic liveness) and heals.
    normal.kill()?;
    let healed = wait_replicas(&t, "hello", 2).await?;
    ensure!(healed.iter().all(|(h, _)| h == "skewed"), "{healed:?}");
    ensure!(t.say_hello("skew").await? == "Hello, skew!");
    Ok(())
}

/// The status line of the first provider of app `app`, as JSON.
async fn provider_status(t: &TestLattice, app: &str) -> Result<serde_json::Value> {
    let out = t
        .cli(&["app", "status", app, "--output", "json"])
        .await?
        .success()?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
    Ok(v["providers"][0].clone())
}

/// Where provider `id` runs, as the sorted locations of its instances.
async fn provider_locations(t: &TestLattice, id: &str) -> Result<Vec<String>> {
    let mut locs: Vec<String> = t
        .ctl
        .ping_providers(Duration::from_millis(500))
        .await?
        .into_iter()
        .filter(|p| p.id == id)
        .map(|p| p.location)
        .collect();
    locs.sort();
    Ok(locs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_on_every_matching_host_once_each() -> Result<()> {
    let t = TestLattice::start().await?;
    let (_edge, _w1, _w2) = hosts(&t).await?;
    deploy(
        &t,
        "every.toml",
        r#"name = "every"
[[providers]]
id = "kv"
ref = "builtin:keyvalue"
constraints = { role = "worker" }
on_every_host = true
"#,
    )
    .await?;
    let want = ["host worker-1", "host worker-2"];
    wait_until("kv on both workers, not on edge", CONVERGE, || async {
        Ok((provider_locations(&t, "kv").await? == want).then_some(()))
    })
    .await?;
    let line = wait_until("app status: kv on 2 of 2 hosts", CONVERGE, || async {
        let line = provider_status(&t, "every").await?;
        Ok((line["desired"] == 2 && line["actual"] == 2).then_some(line))
    })
    .await?;
    ensure!(line["running"] == true, "{line}");

    // A host that joins with the label gets its own instance; still one per host.
    let _w3 = t
        .host("worker-3", &[FAST[0], ("--label", "role=worker")])
        .await?;
    wait_until("kv on the new worker too", CONVERGE, || async {
        Ok((provider_locations(&t, "kv").await?
            == ["host worker-1", "host worker-2", "host worker-3"])
        .then_some(()))
    })
    .await?;
    wait_until("app status: kv on 3 of 3 hosts", CONVERGE, || async {
        let line = provider_status(&t, "every").await?;
        Ok((line["desired"] == 3 && line["actual"] == 3).then_some(()))
    })
    .await?;
    Ok(())
}

/// An app record larger than the NATS max payload (here 8,000 actors, about
/// 1.4 MB of JSON against 1 MiB) is refused with both sizes named, not taken
/// for a deploy conflict and retried.
#[tokio::test]
async fn an_app_over_the_max_payload_is_refused_with_its_size() -> Result<()> {
    let t = TestLattice::start().await?;
    let mut toml = String::from("name = \"huge\"\n");
    let mut digests = std::collections::BTreeMap::new();
    let digest = lattice::digest::Digest::of(b"module");
    for i in 0..8000 {
        toml.push_str(&format!(
            "[[actors]]\nid = \"a{i}\"\nref = \"hello.wasm\"\nreplicas = 1\n"
        ));
        digests.insert(format!("a{i}"), digest.clone());
    }
    let manifest = lattice::app::Manifest::from_toml(&toml)?;
    let store = AppStore::open(t.ctl.nats().clone(), t.ctl.lattice()).await?;
    let err = store
        .deploy(manifest, digests)
        .await
        .expect_err("too large to store");
    let text = err.to_string();
    ensure!(
        matches!(err, lattice::Error::TooLarge { .. }),
        "expected TooLarge, got: {text}"
    );
    for part in ["app huge (8000 actors", "max payload of 1048576 bytes"] {
        ensure!(text.contains(part), "{part:?} not in {text}");
    }
    Ok(())
}

#[tokio::test]
async fn deploy_wait_reports_progress_until_converged_or_the_timeout() -> Result<()> {
    let t = TestLattice::start().await?;
    let _host = t.host("solo", FAST).await?;
    std::fs::copy(
        actor_wasm("kvcounter")?,
        t.dir.path().join("kvcounter.wasm"),
    )?;
    let toml = kvcounter_app("kvcounter.wasm", 2, free_port(), "");
    let file = write_file(t.dir.path(), "counter.toml", toml.as_bytes())?;
    let file = file.display().to_string();

    // Too short a wait fails naming the app and the command that shows why.
    let out = t
        .cli(&["app", "deploy", &file, "--wait", "1ms"])
        .await?
        .failure()?;
    out.stderr_has(&["counter", "has not converged", "lattice app status counter"])?;

    let out = t
        .cli(&["app", "deploy", &file, "--wait", "60s"])
        .await?
        .success()?;
    // Not a terminal: plain progress lines, then the verdict.
    out.stderr_has(&["app counter", "converged"])?;
    let status = t
        .cli(&["app", "status", "counter", "--output", "json"])
        .await?
        .success()?;
    let status: serde_json::Value = serde_json::from_str(&status.stdout)?;
    ensure!(status["converged"] == true, "{status}");
    Ok(())
}
