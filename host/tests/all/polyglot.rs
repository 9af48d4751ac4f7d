//! The polyglot shop (`examples/polyglot-shop`) end to end: an HTTP frontend
//! in Rust calling an inventory actor in Go (stock in key-value) and a pricing
//! actor in C, actor to actor, deployed as an app.
//!
//! Every part is built from source (`build_actor`, `build_go_actor`,
//! `build_c_actor`; the Go and C claims come from their Makefiles), the hosts
//! are processes of the built `lattice` binary on a real nats-server, the app
//! goes in with `lattice app deploy`, and the checks are HTTP requests.
//!
//! * `shop_across_three_hosts`: the frontend (and the HTTP server) on an edge
//!   host, inventory and pricing on two backend hosts, so every call from the
//!   frontend crosses hosts.
//! * `shop_on_one_host`: all three actors and both providers on one host of
//!   two, so every call stays in-process; also calls the Go and C actors
//!   directly for their replies and error messages.
//! * `inventory_vet_and_unit_tests`: `go vet` and `go test` of the Go actor.
//! * `shipped_manifest_is_valid`: `app.toml` parses and matches `deploy.sh`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use lattice::{app::Manifest, claims};
use lattice_harness::{build_c_actor, build_go_actor, free_port, wait_until};
use serde_json::json;

use crate::common::{TestLattice, actor_wasm, example_dir, go_vet_and_test, write_file};

/// Deploy to converged: three modules compiled on each host (no module cache
/// in tests), a Go module among them, on a shared 2-core machine.
const CONVERGE: Duration = Duration::from_secs(120);
/// One HTTP answer once the app runs.
const WAIT: Duration = Duration::from_secs(30);
/// Reconcile passes every 2 s: the lease lasts three intervals, longer than a
/// pass that compiles the Go module on a busy machine.
const RECONCILE: (&str, &str) = ("--reconcile-interval", "2s");

const APP: &str = "shop";
const ACTORS: [&str; 3] = ["frontend", "inventory", "pricing"];

/// The three modules, built from source.
struct Modules {
    frontend: PathBuf,
    inventory: PathBuf,
    pricing: PathBuf,
}

fn shop_dir() -> PathBuf {
    example_dir("polyglot-shop")
}

fn build_modules() -> Result<Modules> {
    let modules = Modules {
        frontend: actor_wasm("shop-frontend")?,
        inventory: build_go_actor(&shop_dir().join("inventory"))
            .context("building examples/polyglot-shop/inventory (Go)")?,
        pricing: build_c_actor(&shop_dir().join("pricing"))
            .context("building examples/polyglot-shop/pricing (C)")?,
    };
    // Claims: the Rust crate embeds its own (claims!), the Makefiles give the
    // Go and C ones.
    for (path, name, contracts) in [
        (
            &modules.frontend,
            "shop-frontend",
            &["lattice:httpserver"][..],
        ),
        (&modules.inventory, "inventory", &["lattice:keyvalue"][..]),
        (&modules.pricing, "pricing", &[][..]),
    ] {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let c =
            claims::read(&bytes)?.with_context(|| format!("{} has no claims", path.display()))?;
        ensure!(
            c.name == name && c.contracts == contracts,
            "claims of {}: {c:?}",
            path.display()
        );
    }
    Ok(modules)
}

/// Builds the modules off the async runtime's threads (cargo, go and clang
/// take a while on a cold cache).
async fn modules() -> Result<Modules> {
    tokio::task::spawn_blocking(build_modules).await?
}

/// A manifest of the shop's shape (`examples/polyglot-shop/app.toml`) with the
/// built modules, an HTTP port of the test's own, and placement constraints on
/// the label `role`: the frontend and the HTTP server where `role=edge`,
/// inventory, pricing and the key-value provider where `role=back`.
fn manifest(m: &Modules, port: u16, edge: &str, back: &str, replicas: u32) -> String {
    let r = |p: &Path| p.display().to_string();
    format!(
        r#"
name = "{APP}"
description = "polyglot shop under test"

[[actors]]
id = "frontend"
ref = "{frontend}"
replicas = {replicas}
constraints = {{ role = "{edge}" }}

[[actors]]
id = "inventory"
ref = "{inventory}"
replicas = {replicas}
constraints = {{ role = "{back}" }}

[[actors]]
id = "pricing"
ref = "{pricing}"
replicas = {replicas}
constraints = {{ role = "{back}" }}

[[providers]]
id = "httpserver"
ref = "builtin:httpserver"
constraints = {{ role = "{edge}" }}

[[providers]]
id = "keyvalue"
ref = "builtin:keyvalue"
constraints = {{ role = "{back}" }}

[[links]]
actor = "frontend"
provider = "httpserver"
contract = "lattice:httpserver"
config = {{ address = "127.0.0.1:{port}" }}

[[links]]
actor = "inventory"
provider = "keyvalue"
contract = "lattice:keyvalue"
"#,
        frontend = r(&m.frontend),
        inventory = r(&m.inventory),
        pricing = r(&m.pricing),
    )
}

/// Per actor of the shop: host name → replicas, over the hosts that answer.
type Placement = BTreeMap<String, BTreeMap<String, u32>>;

async fn placement(t: &TestLattice) -> Result<Placement> {
    let mut out = Placement::new();
    for h in t.ctl.ping_hosts(Duration::from_millis(300)).await? {
        let Ok(inv) = t.ctl.inventory(&h.id).await else {
            continue;
        };
        for a in inv.actors {
            if ACTORS.contains(&a.id.as_str()) {
                out.entry(a.id.to_string())
                    .or_default()
                    .insert(inv.host.name.clone(), a.replicas);
            }
        }
    }
    Ok(out)
}

/// Calls handled per actor on each host: actor → host name → calls.
async fn calls(t: &TestLattice) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for h in t.ctl.ping_hosts(Duration::from_millis(300)).await? {
        let inv = t.ctl.inventory(&h.id).await?;
        for a in inv.actors {
            out.entry(a.id.to_string())
                .or_default()
                .insert(inv.host.name.clone(), a.calls);
        }
    }
    Ok(out)
}

/// Deploys `text` as the app and waits until `lattice app status` says
/// converged and every actor runs `replicas` replicas, all on hosts in
/// `allowed` (actor → host names). Returns the placement.
async fn deploy_and_converge(
    t: &TestLattice,
    text: &str,
    replicas: u32,
    allowed: &BTreeMap<&str, Vec<&str>>,
) -> Result<Placement> {
    let file = write_file(t.dir.path(), "shop.toml", text.as_bytes())?;
    let out = t
        .cli(&["app", "deploy", &file.display().to_string()])
        .await?
        .success()?;
    ensure!(
        out.stdout.contains("deployed app shop revision 1"),
        "{}",
        out.stdout
    );
    wait_until(
        "lattice app status shop to say converged",
        CONVERGE,
        || async {
            let out = t.cli(&["app", "status", APP, "--output", "json"]).await?;
            let v: serde_json::Value = match serde_json::from_str(&out.stdout) {
                Ok(v) => v,
                Err(_) => return Ok(None),
            };
            // Before the reconciler's first pass the status lists no providers.
            let providers_up = v["providers"]
                .as_array()
                .is_some_and(|ps| ps.len() == 2 && ps.iter().all(|p| p["running"] == true));
            Ok((v["converged"] == true && providers_up).then_some(()))
        },
    )
    .await?;
    // Settled: exactly the desired replicas, each where the constraints allow
    // (a second reconciler that briefly took over may have started extras,
    // which the leader stops again).
    wait_until(
        format!("{replicas} replicas of each actor on {allowed:?}"),
        CONVERGE,
        || async {
            let p = placement(t).await?;
            let settled = ACTORS.iter().all(|a| {
                p.get(*a).is_some_and(|hosts| {
                    hosts.values().sum::<u32>() == replicas
                        && hosts.keys().all(|h| allowed[a].contains(&h.as_str()))
                })
            });
            Ok(settled.then_some(p))
        },
    )
    .await
}

/// One HTTP exchange: status and body.
async fn http(client: &reqwest::Client, method: &str, url: &str) -> Result<(u16, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let resp = client
        .request(method.clone(), url)
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// Waits until the whole chain answers (HTTP server listening, frontend,
/// pricing and inventory reachable): `GET /quote/fig` is 200.
async fn wait_for_shop(client: &reqwest::Client, base: &str) -> Result<()> {
    let url = format!("{base}/quote/fig");
    wait_until(format!("GET {url} to answer 200"), WAIT, || async {
        Ok(match http(client, "GET", &url).await {
            Ok((200, _)) => Some(()),
            _ => None,
        })
    })
    .await
}

async fn expect(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    status: u16,
    body: &str,
) -> Result<()> {
    let got = http(client, method, url).await?;
    ensure!(
        got == (status, body.to_owned()),
        "{method} {url}: expected {status} {body:?}, got {got:?}"
    );
    Ok(())
}

/// What the shop answers, whatever the placement.
async fn shop_answers(base: &str) -> Result<()> {
    let c = reqwest::Client::new();
    wait_for_shop(&c, base).await?;

    // Not stocked yet: priced, but not in stock.
    expect(
        &c,
        "GET",
        &format!("{base}/quote/apple?qty=3"),
        200,
        r#"{"item":"apple","qty":3,"in_stock":false,"stock":0,"unit_cents":50,"total_cents":150}"#,
    )
    .await?;
    expect(
        &c,
        "POST",
        &format!("{base}/stock/apple?add=7"),
        200,
        r#"{"item":"apple","stock":7}"#,
    )
    .await?;
    expect(
        &c,
        "GET",
        &format!("{base}/quote/apple?qty=3"),
        200,
        r#"{"item":"apple","qty":3,"in_stock":true,"stock":7,"unit_cents":50,"total_cents":150}"#,
    )
    .await?;
    expect(
        &c,
        "GET",
        &format!("{base}/quote/apple?qty=8"),
        200,
        r#"{"item":"apple","qty":8,"in_stock":false,"stock":7,"unit_cents":50,"total_cents":400}"#,
    )
    .await?;
    // An item that was never stocked.
    expect(
        &c,
        "GET",
        &format!("{base}/quote/fig?qty=2"),
        200,
        r#"{"item":"fig","qty":2,"in_stock":false,"stock":0,"unit_cents":120,"total_cents":240}"#,
    )
    .await?;
    // An item pricing does not know: 404 with the C actor's own message.
    expect(
        &c,
        "GET",
        &format!("{base}/quote/kiwi?qty=1"),
        404,
        "unknown item \"kiwi\"\n",
    )
    .await?;
    expect(
        &c,
        "GET",
        &format!("{base}/quote/green%20fig"),
        404,
        "unknown item \"green fig\"\n",
    )
    .await?;

    // Other failures of a called actor: 502 with the message.
    let (status, body) = http(&c, "GET", &format!("{base}/quote/fig?qty={}", i64::MAX)).await?;
    ensure!(
        status == 502
            && body.starts_with("call to pricing Quote failed:")
            && body.contains(&format!("qty {} is too large to price", i64::MAX)),
        "pricing overflow: {status} {body:?}"
    );
    let (status, body) = http(&c, "POST", &format!("{base}/stock/apple?add={}", i64::MAX)).await?;
    ensure!(
        status == 502 && body.starts_with("call to inventory AddStock failed:"),
        "stock overflow (the Go actor passes on the key-value error): {status} {body:?}"
    );

    // Requests the frontend refuses by itself.
    let (status, body) = http(&c, "GET", &format!("{base}/nope")).await?;
    ensure!(
        status == 404 && body.starts_with("no route for /nope"),
        "{status} {body:?}"
    );
    let (status, _) = http(&c, "GET", &format!("{base}/quote/apple?qty=0")).await?;
    ensure!(status == 400, "qty=0: {status}");
    let (status, _) = http(&c, "POST", &format!("{base}/quote/apple")).await?;
    ensure!(status == 405, "POST /quote: {status}");

    // Increments through whichever inventory replica answers (they share the
    // JetStream bucket): every one counts, in order.
    for n in 1..=6 {
        expect(
            &c,
            "POST",
            &format!("{base}/stock/pear?add=1"),
            200,
            &format!(r#"{{"item":"pear","stock":{n}}}"#),
        )
        .await?;
    }
    expect(
        &c,
        "GET",
        &format!("{base}/quote/pear?qty=6"),
        200,
        r#"{"item":"pear","qty":6,"in_stock":true,"stock":6,"unit_cents":75,"total_cents":450}"#,
    )
    .await?;
    Ok(())
}

/// Calls pricing and inventory directly, as `lattice call` does: replies and
/// their own error messages.
async fn direct_calls(t: &TestLattice) -> Result<()> {
    let quote: serde_json::Value = t
        .call("pricing", "Quote", &json!({"item": "plum", "qty": 4}))
        .await?;
    ensure!(
        quote == json!({"item": "plum", "qty": 4, "unit_cents": 90, "total_cents": 360}),
        "{quote}"
    );
    for (arg, message) in [
        (
            json!({"item": "plum", "qty": 0}),
            "qty must be at least 1, got 0",
        ),
        (json!({"item": "kiwi", "qty": 1}), "unknown item \"kiwi\""),
        (json!({"item": "plum"}), "missing field `qty`"),
        (json!("plum"), "Quote: payload is not an {item, qty} map"),
    ] {
        let err = t
            .call::<_, serde_json::Value>("pricing", "Quote", &arg)
            .await
            .expect_err("pricing refuses it")
            .to_string();
        ensure!(err.contains(message), "pricing Quote {arg}: {err}");
    }
    let level: serde_json::Value = t
        .call("inventory", "Stock", &json!({"item": "pear"}))
        .await?;
    ensure!(level == json!({"item": "pear", "stock": 6}), "{level}");
    let level: serde_json::Value = t
        .call("inventory", "AddStock", &json!({"item": "plum", "qty": 2}))
        .await?;
    ensure!(level == json!({"item": "plum", "stock": 2}), "{level}");
    for (op, arg, message) in [
        (
            "AddStock",
            json!({"item": "plum", "qty": 0}),
            "qty must be at least 1, got 0",
        ),
        ("Stock", json!({"item": ""}), "item must not be empty"),
        ("Stock", json!({}), "missing field \"item\""),
    ] {
        let err = t
            .call::<_, serde_json::Value>("inventory", op, &arg)
            .await
            .expect_err("inventory refuses it")
            .to_string();
        ensure!(err.contains(message), "inventory {op} {arg}: {err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_across_three_hosts() -> Result<()> {
    let m = modules().await?;
    let t = TestLattice::start().await?;
    let _edge = t
        .host("edge", &[RECONCILE, ("--label", "role=edge")])
        .await?;
    let _b1 = t
        .host("back-1", &[RECONCILE, ("--label", "role=back")])
        .await?;
    let _b2 = t
        .host("back-2", &[RECONCILE, ("--label", "role=back")])
        .await?;

    let port = free_port();
    let allowed = BTreeMap::from([
        ("frontend", vec!["edge"]),
        ("inventory", vec!["back-1", "back-2"]),
        ("pricing", vec!["back-1", "back-2"]),
    ]);
    let placed =
        deploy_and_converge(&t, &manifest(&m, port, "edge", "back", 2), 2, &allowed).await?;
    let hosts: BTreeSet<&String> = placed.values().flat_map(|h| h.keys()).collect();
    ensure!(hosts.len() > 1, "spread over several hosts: {placed:?}");

    shop_answers(&format!("http://127.0.0.1:{port}")).await?;

    // The frontend runs only on edge, inventory and pricing only on the
    // backend hosts, and they answered: every one of those calls crossed hosts.
    let calls = calls(&t).await?;
    for actor in ["inventory", "pricing"] {
        let on = &calls[actor];
        ensure!(
            !on.contains_key("edge") && on.values().sum::<u64>() > 0,
            "{actor} served the frontend from the backend hosts: {calls:?}"
        );
    }
    ensure!(
        calls["frontend"].keys().map(String::as_str).eq(["edge"]),
        "the frontend runs on edge only: {calls:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_on_one_host() -> Result<()> {
    let m = modules().await?;
    let t = TestLattice::start().await?;
    let _solo = t
        .host("solo", &[RECONCILE, ("--label", "role=solo")])
        .await?;
    let _spare = t
        .host("spare", &[RECONCILE, ("--label", "role=spare")])
        .await?;

    let port = free_port();
    let allowed = BTreeMap::from([
        ("frontend", vec!["solo"]),
        ("inventory", vec!["solo"]),
        ("pricing", vec!["solo"]),
    ]);
    let placed =
        deploy_and_converge(&t, &manifest(&m, port, "solo", "solo", 2), 2, &allowed).await?;
    ensure!(
        placed
            .values()
            .all(|h| h.keys().map(String::as_str).eq(["solo"])),
        "everything on solo: {placed:?}"
    );

    shop_answers(&format!("http://127.0.0.1:{port}")).await?;

    // The Go and C actors on their own, through the lattice (`lattice call`).
    direct_calls(&t).await?;

    // Nothing ran on the spare host: every call stayed in solo's process.
    let spare = t
        .ctl
        .ping_hosts(Duration::from_millis(300))
        .await?
        .into_iter()
        .find(|h| h.name == "spare")
        .context("the spare host answers")?;
    let inv = t.ctl.inventory(&spare.id).await?;
    ensure!(
        inv.actors.is_empty() && inv.providers.is_empty(),
        "the spare host runs nothing: {inv:?}"
    );
    Ok(())
}

/// `go vet` (native and wasip1) and `go test` of the inventory actor (unit
/// tests with a stand-in key-value store).
#[test]
fn inventory_vet_and_unit_tests() -> Result<()> {
    go_vet_and_test(&shop_dir().join("inventory"))
}

/// The shipped manifest parses and has the shape the tests deploy: the three
/// actors with two replicas each, at the paths `deploy.sh` copies the modules
/// to, both providers, and the two links.
#[test]
fn shipped_manifest_is_valid() -> Result<()> {
    let path = shop_dir().join("app.toml");
    let text = std::fs::read_to_string(&path)?;
    let app = Manifest::from_toml(&text).with_context(|| format!("{}", path.display()))?;
    ensure!(app.name == APP);
    let actors: Vec<(&str, Option<&str>, i64)> = app
        .actors
        .iter()
        .map(|a| (a.id.as_str(), a.reference.as_deref(), a.replicas))
        .collect();
    ensure!(
        actors
            == [
                ("frontend", Some("build/shop-frontend.wasm"), 2),
                ("inventory", Some("build/inventory.wasm"), 2),
                ("pricing", Some("build/pricing.wasm"), 2),
            ],
        "{actors:?}"
    );
    let providers: Vec<(&str, Option<&str>)> = app
        .providers
        .iter()
        .map(|p| (p.id.as_str(), p.reference.as_deref()))
        .collect();
    ensure!(
        providers
            == [
                ("httpserver", Some("builtin:httpserver")),
                ("keyvalue", Some("builtin:keyvalue")),
            ],
        "{providers:?}"
    );
    let links: Vec<(&str, &str, &str)> = app
        .links
        .iter()
        .map(|l| (l.actor.as_str(), l.provider.as_str(), l.contract.as_str()))
        .collect();
    ensure!(
        links
            == [
                ("frontend", "httpserver", "lattice:httpserver"),
                ("inventory", "keyvalue", "lattice:keyvalue"),
            ],
        "{links:?}"
    );
    ensure!(
        app.links[0].config.get("address").map(String::as_str) == Some("127.0.0.1:8081"),
        "{:?}",
        app.links[0].config
    );
    // deploy.sh copies the modules to exactly those paths.
    let script = std::fs::read_to_string(shop_dir().join("deploy.sh"))?;
    for a in &app.actors {
        let target = format!(
            "\"$BUILD/{}\"",
            a.reference
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches("build/")
        );
        ensure!(script.contains(&target), "deploy.sh copies to {target}");
    }
    Ok(())
}
