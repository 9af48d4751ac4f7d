//! `lattice ui` and `lattice ctl scale actor`: the dashboard in a real browser
//! (Debian's Chromium driven by playwright-core, both installed by
//! `scripts/prereqs.sh`), its API's answers to bad requests, and scaling from
//! the CLI.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use lattice_harness::workspace_root;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::common::{BIN, TestLattice, actor_wasm, without_lattice_env};

/// How long the browser script may take for one step.
const STEP: Duration = Duration::from_secs(60);

/// A `lattice ui` process on a free port of 127.0.0.1, killed on drop.
pub(crate) struct Dashboard {
    _child: Child,
    /// `http://127.0.0.1:PORT/`
    pub(crate) url: String,
}

impl Dashboard {
    async fn start(lat: &TestLattice) -> Result<Self> {
        let config = lat.config_file().display().to_string();
        Self::spawn(&[
            "--nats-url",
            &lat.nats.url(),
            "--lattice",
            &lat.id,
            "--config",
            &config,
        ])
        .await
    }

    /// `lattice GLOBAL_ARGS… ui --addr 127.0.0.1:0`, once it serves.
    pub(crate) async fn spawn(global_args: &[&str]) -> Result<Self> {
        let mut cmd = std::process::Command::new(BIN);
        without_lattice_env(&mut cmd);
        cmd.args(global_args)
            .args(["ui", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .context("starting lattice ui")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(STEP, BufReader::new(stdout).lines().next_line())
            .await
            .context("lattice ui said nothing within a minute")??
            .context("lattice ui exited before serving")?;
        // "dashboard of lattice "x" at http://127.0.0.1:PORT/; Ctrl-C to stop"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches(';').to_string())
            .with_context(|| format!("no address in {line:?}"))?;
        Ok(Dashboard { _child: child, url })
    }
}

/// The playwright-core package `scripts/prereqs.sh` installs (or
/// `LATTICE_PLAYWRIGHT_CORE`).
fn playwright_core() -> Result<PathBuf> {
    let path = std::env::var_os("LATTICE_PLAYWRIGHT_CORE").map_or_else(
        || workspace_root().join("target/browser/node_modules/playwright-core"),
        PathBuf::from,
    );
    ensure!(
        path.join("package.json").exists(),
        "playwright-core is not installed at {}; run `scripts/test.sh`, or `. scripts/prereqs.sh && lattice_prereqs_browser` (installs Chromium and playwright-core)",
        path.display()
    );
    Ok(path)
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Result<String> {
    tokio::time::timeout(STEP, lines.next_line())
        .await
        .with_context(|| format!("the browser script did not get to {what} within a minute"))??
        .with_context(|| format!("the browser script ended before {what}"))
}

#[tokio::test]
async fn the_dashboard_shows_the_lattice_and_scales_an_actor_in_a_browser() -> Result<()> {
    let playwright = playwright_core()?;
    let wasm = actor_wasm("hello")?;
    let lat = TestLattice::start().await?;
    let host = lat.host("ui-host", &[]).await?;
    lat.start_actor(&host, &wasm, "hello", 1).await?;
    let ui = Dashboard::start(&lat).await?;

    let script = workspace_root().join("host/tests/browser/dashboard.cjs");
    let mut node = Command::new("node")
        .arg(&script)
        .args([ui.url.as_str(), "hello", "ui-host"])
        .env("LATTICE_PLAYWRIGHT_CORE", &playwright)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (the browser test needs Node.js)")?;
    let mut stdin = node.stdin.take().context("no stdin")?;
    let mut lines = BufReader::new(node.stdout.take().context("no stdout")?).lines();

    let first = next_line(&mut lines, "showing the actor").await?;
    let Some(calls) = first.strip_prefix("calls ") else {
        bail!("browser: {first}");
    };
    let calls: u64 = calls
        .parse()
        .with_context(|| format!("calls in {first:?}"))?;
    assert_eq!(lat.say_hello("browser").await?, "Hello, browser!");
    stdin.write_all(b"called\n").await?;
    let last = next_line(&mut lines, "the end").await?;
    ensure!(last == "ok", "browser: {last}");
    let status = tokio::time::timeout(STEP, node.wait()).await??;
    ensure!(status.success(), "the browser script exited with {status}");

    // The page said so; the lattice agrees.
    let hello = lat
        .actor_on(&host, "hello")
        .await?
        .context("hello stopped")?;
    assert_eq!(hello.replicas, 3, "the scale to 3 replicas took effect");
    assert!(hello.calls > calls, "the host counted the call");
    assert!(hello.call_time_us > 0, "call time is reported");
    Ok(())
}

#[tokio::test]
async fn the_dashboard_api_refuses_bad_requests_by_name() -> Result<()> {
    let wasm = actor_wasm("hello")?;
    let lat = TestLattice::start().await?;
    let host = lat.host("api-host", &[]).await?;
    lat.start_actor(&host, &wasm, "hello", 1).await?;
    let ui = Dashboard::start(&lat).await?;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{}", ui.url, path.trim_start_matches('/'));

    let state: serde_json::Value = http.get(url("/api/state")).send().await?.json().await?;
    ensure!(
        state["lattice"] == lat.id.as_str()
            && state["hosts"][0]["host"]["name"] == "api-host"
            && state["hosts"][0]["actors"][0]["id"] == "hello",
        "state lacks the host or the actor: {state}"
    );
    let page = http.get(url("/")).send().await?.text().await?;
    ensure!(page.contains("<title>Lattice</title>"), "no page at /");

    let json = "application/json";
    // (path, content type, origin, body, status, words the error must hold)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        u16,
        &'a [&'a str],
    );
    let cases: &[Case<'_>] = &[
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            r#"{"replicas":0}"#,
            400,
            &["at least 1", "hello"],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            r#"{"replicas":-1}"#,
            422,
            &["replicas", "-1"],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            r#"{"replicas":"x"}"#,
            422,
            &["replicas", "\"x\""],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            r#"{"replicas":5000}"#,
            422,
            &["at most 1000", "5000", "api-host"],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            r#"{"replicas":2,"extra":1}"#,
            422,
            &["unknown field `extra`"],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            "{",
            400,
            &["JSON"],
        ),
        (
            "/api/actors/hello/scale",
            None,
            None,
            r#"{"replicas":2}"#,
            415,
            &["Content-Type: application/json"],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            Some("http://evil.example"),
            r#"{"replicas":2}"#,
            403,
            &["evil.example"],
        ),
        (
            "/api/actors/hello/scale",
            Some(json),
            None,
            r#"{"replicas":2,"host":"nope"}"#,
            404,
            &["hello", "\"nope\""],
        ),
        (
            "/api/actors/nobody/scale",
            Some(json),
            None,
            r#"{"replicas":2}"#,
            404,
            &["nobody", "not running"],
        ),
        (
            "/api/actors/a%20b/stop",
            Some(json),
            None,
            "{}",
            400,
            &["invalid actor id", "a b"],
        ),
        (
            "/api/apps/none/undeploy",
            Some(json),
            None,
            "{}",
            404,
            &["no app named", "none"],
        ),
        (
            "/api/apps/none/undeploy",
            Some("text/plain"),
            None,
            "{}",
            415,
            &["application/json"],
        ),
        (
            "/api/nothing",
            Some(json),
            None,
            "{}",
            404,
            &["no such page"],
        ),
    ];
    for &(path, content_type, origin, body, status, words) in cases {
        let mut req = http.post(url(path)).body(body.to_string());
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await?;
        let got = resp.status().as_u16();
        let raw = resp.text().await?;
        // Every error is `{"error": "..."}`: read the message itself.
        let error: serde_json::Value = serde_json::from_str(&raw)
            .with_context(|| format!("POST {path}: not a JSON error: {raw}"))?;
        let text = error["error"].as_str().unwrap_or_default();
        ensure!(
            got == status && words.iter().all(|w| text.contains(w)),
            "POST {path} {body}: expected {status} naming {words:?}, got {got} {text}"
        );
    }
    // A request addressed to another name (DNS rebinding) is refused.
    let port = ui
        .url
        .rsplit(':')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    let resp = http
        .get(url("/api/state"))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 403);
    ensure!(resp.text().await?.contains("evil.example"));

    // None of that touched the actor; it still serves.
    let hello = lat
        .actor_on(&host, "hello")
        .await?
        .context("hello stopped")?;
    assert_eq!(hello.replicas, 1);
    assert_eq!(lat.say_hello("still").await?, "Hello, still!");

    // A good action does what it says.
    let resp = http
        .post(url("/api/actors/hello/stop"))
        .header("content-type", json)
        .body("{}")
        .send()
        .await?;
    ensure!(resp.status().is_success(), "stop: {}", resp.text().await?);
    ensure!(
        lat.actor_on(&host, "hello").await?.is_none(),
        "hello still runs"
    );
    Ok(())
}

#[tokio::test]
async fn ctl_scale_actor_sets_replicas_up_and_down() -> Result<()> {
    let wasm = actor_wasm("hello")?;
    let lat = TestLattice::start().await?;
    let host = lat.host("scale-host", &[]).await?;
    lat.start_actor(&host, &wasm, "hello", 1).await?;

    let out = lat
        .cli(&["ctl", "scale", "actor", "hello", "--replicas", "4"])
        .await?
        .success()?;
    ensure!(
        out.stdout.contains("from 1 to 4 replicas"),
        "scale output: {}",
        out.stdout
    );
    assert_eq!(
        lat.actor_on(&host, "hello").await?.map(|a| a.replicas),
        Some(4)
    );
    let out = lat
        .cli(&[
            "ctl",
            "scale",
            "actor",
            "hello",
            "--replicas",
            "2",
            "--host",
            "scale-host",
            "--output",
            "json",
        ])
        .await?
        .success()?;
    let scaled: serde_json::Value = serde_json::from_str(&out.stdout)?;
    ensure!(
        scaled[0]["before"] == 4 && scaled[0]["replicas"] == 2,
        "json: {scaled}"
    );
    assert_eq!(
        lat.actor_on(&host, "hello").await?.map(|a| a.replicas),
        Some(2)
    );
    assert_eq!(lat.say_hello("scaled").await?, "Hello, scaled!");

    // Bad input: clap refuses 0, the host refuses past its limit, an actor
    // that runs nowhere is named.
    lat.cli(&["ctl", "scale", "actor", "hello", "--replicas", "0"])
        .await?
        .failure()?
        .stderr_has(&["--replicas", "0"])?;
    lat.cli(&["ctl", "scale", "actor", "hello", "--replicas", "5000"])
        .await?
        .failure()?
        .stderr_has(&["at most 1000", "5000"])?;
    lat.cli(&["ctl", "scale", "actor", "nobody", "--replicas", "2"])
        .await?
        .failure()?
        .stderr_has(&["nobody", "not running"])?;
    assert_eq!(
        lat.actor_on(&host, "hello").await?.map(|a| a.replicas),
        Some(2)
    );
    Ok(())
}
