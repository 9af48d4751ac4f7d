//! `lattice up --metrics-addr`: Prometheus metrics of a host, scraped over
//! HTTP from a real host process while a real actor serves HTTP requests
//! through the in-host HTTP provider and counts them in the key-value provider.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lattice_harness::wait_until;

use crate::common::{TestLattice, actor_wasm, get_until, metrics_url, sample};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_host_counts_calls_links_and_http_requests() -> Result<()> {
    let t = TestLattice::start().await?;
    let host = t
        .host("metered", &[("--metrics-addr", "127.0.0.1:0")])
        .await?;
    let url = wait_until("the host to print its metrics address", WAIT, || {
        let url = metrics_url(&host.log());
        async move { Ok(url) }
    })
    .await?;
    let wasm = actor_wasm("kvcounter")?.display().to_string();
    let port = t.serve_counter(&wasm, "kvcounter").await?;
    let hits = format!("http://127.0.0.1:{port}/hits");
    get_until(&hits, 200).await?;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http.get(&hits).send().await?;
        ensure!(r.status() == 200, "GET {hits}: {}", r.status());
    }

    let scrape = http.get(&url).send().await.context("scraping")?;
    ensure!(scrape.status() == 200, "GET {url}: {}", scrape.status());
    let content_type = scrape.headers()["content-type"].to_str()?.to_string();
    ensure!(
        content_type.starts_with("application/openmetrics-text"),
        "content type {content_type}"
    );
    let text = scrape.text().await?;
    let at_least = |series: &str, n: f64| -> Result<()> {
        let v = sample(&text, series).with_context(|| format!("no {series} in\n{text}"))?;
        ensure!(v >= n, "{series} is {v}, expected at least {n}\n{text}");
        Ok(())
    };
    let kv = r#"actor="kvcounter",contract="lattice:keyvalue",link="default",provider="keyvalue""#;
    at_least(
        r#"lattice_actor_calls_total{actor="kvcounter",operation="HttpServer.HandleRequest"}"#,
        4.0,
    )?;
    at_least(&format!("lattice_link_calls_total{{{kv}}}"), 4.0)?;
    at_least(r#"lattice_http_requests_total{status="200"}"#, 4.0)?;
    at_least(
        r#"lattice_actor_call_duration_seconds_count{actor="kvcounter"}"#,
        4.0,
    )?;
    at_least(r#"lattice_actor_replicas{actor="kvcounter"}"#, 1.0)?;
    at_least("lattice_host_replicas", 1.0)?;
    at_least("lattice_pool_slots_in_use", 1.0)?;
    at_least("lattice_pool_slots", 1.0)?;
    at_least(r#"lattice_actor_calls_in_flight{actor="kvcounter"}"#, 0.0)?;
    ensure!(
        sample(&text, "lattice_nats_reconnects_total") == Some(0.0),
        "no reconnects yet\n{text}"
    );

    // Anything but /metrics is a 404 that says where the metrics are.
    let other = http.get(url.replace("/metrics", "/")).send().await?;
    ensure!(other.status() == 404, "GET /: {}", other.status());
    ensure!(other.text().await?.contains("/metrics"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_or_malformed_metrics_address_is_refused_by_name() -> Result<()> {
    let t = TestLattice::start().await?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let out = t
        .cli(&["up", "--name", "clash", "--metrics-addr", &addr])
        .await?
        .failure()?;
    out.stderr_has(&["cannot serve metrics on", &addr])?;

    let out = t
        .cli(&["up", "--metrics-addr", "localhost"])
        .await?
        .failure()?;
    out.stderr_has(&["--metrics-addr", "localhost"])?;
    Ok(())
}
