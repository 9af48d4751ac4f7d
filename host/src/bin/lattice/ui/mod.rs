//! `lattice ui`: a live dashboard of the lattice in the browser.
//!
//! One page (`index.html`, built into the binary, no build step) reads three
//! endpoints: `GET /api/state` (hosts with their actors and providers, links,
//! apps with their status), `GET /api/events` (the lattice's events as
//! server-sent events) and three actions (`POST /api/actors/{id}/scale`,
//! `/api/actors/{id}/stop`, `/api/apps/{name}/undeploy`). The server is a NATS
//! client like any CLI command: it runs on any machine that reaches NATS, with
//! the credentials it was given.
//!
//! Whoever reaches the port may act with those credentials, so the defaults are
//! narrow: it listens on loopback; it answers only requests addressed to an IP
//! address, `localhost` or a name given with `--allow-host` (no DNS
//! rebinding); actions take JSON bodies only and refuse a foreign `Origin` (no
//! cross-site form posts).

use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::{Path, RawQuery, Request, State, rejection::JsonRejection},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::{
        Html, IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::{Stream, StreamExt};
use lattice::{
    app_store::AppStore,
    auth::Refusals,
    client::CtlClient,
    ctl::{ActorScaled, ActorStopped, HostInventory, ProviderDescription},
    event::Event,
    id::{ActorId, HostId},
    link::LinkDefinition,
};
use lattice_host::config::ConnectConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::app::{StatusReport, status_report, undeploy};

/// The page; its script polls `/api/state` and listens to `/api/events`.
const INDEX: &str = include_str!("index.html");

/// How long requests in flight may finish after Ctrl-C.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Event streams open at once: each holds a NATS subscription.
const MAX_EVENT_STREAMS: usize = 64;

#[derive(clap::Args, Debug)]
pub struct UiArgs {
    /// Address to serve the dashboard on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// A DNS name browsers may reach the dashboard by (besides IP addresses
    /// and localhost); repeat for more
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
}

struct Ui {
    ctl: CtlClient,
    apps: AppStore,
    window: Duration,
    /// DNS names requests may give in `Host`; IP addresses always pass.
    hosts: Vec<String>,
    streams: Arc<Semaphore>,
    /// Turns true at Ctrl-C: event streams end, so the graceful shutdown
    /// does not wait on open tabs.
    stopping: tokio::sync::watch::Receiver<bool>,
}

pub async fn run(connect: &ConnectConfig, args: UiArgs) -> anyhow::Result<ExitCode> {
    let ctl = crate::client(connect).await?;
    let apps = AppStore::open(ctl.nats().clone(), ctl.lattice()).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| {
            format!(
                "could not listen on {}; pick another address with `lattice ui --addr 127.0.0.1:PORT`",
                args.addr
            )
        })?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: serving on {addr}: anyone who reaches it can scale and stop actors with this command's NATS credentials"
        );
    }
    let mut hosts: Vec<String> = args
        .allow_host
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    hosts.push("localhost".to_string());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let ui = Arc::new(Ui {
        stopping,
        window: crate::gather_window(connect),
        ctl,
        apps,
        hosts,
        streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
    });
    println!(
        "dashboard of lattice {:?} at http://{addr}/; Ctrl-C to stop",
        ui.ctl.lattice().as_str()
    );
    let mut stop_seen = ui.stopping.clone();
    let server = axum::serve(listener, router(ui)).with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    // Requests in flight get a few seconds after Ctrl-C, not for ever.
    tokio::select! {
        result = server => result.context("the dashboard server failed")?,
        _ = async {
            let _ = stop_seen.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_LIMIT).await;
        } => eprintln!("stopped with requests still open after {SHUTDOWN_LIMIT:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/api/state", get(state))
        .route("/api/events", get(events))
        .route("/api/actors/{id}/scale", post(scale))
        .route("/api/actors/{id}/stop", post(stop))
        .route("/api/apps/{name}/undeploy", post(undeploy_app))
        .fallback(|| async {
            failure(
                StatusCode::NOT_FOUND,
                "no such page; the dashboard is at /".to_string(),
            )
        })
        .layer(middleware::from_fn_with_state(ui.clone(), guard))
        .with_state(ui)
}

/// Whether a `Host` header names an IP address or one of `names`: a page
/// that reached us through its own DNS name (DNS rebinding) gives its name.
fn host_allowed(host: &str, names: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<IpAddr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.parse::<IpAddr>().is_ok() || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Refuses requests for another host name (DNS rebinding) and actions from
/// another origin (cross-site posts).
async fn guard(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, &ui.hosts) {
        return failure(
            StatusCode::FORBIDDEN,
            format!(
                "this dashboard answers requests for IP addresses and {} only, not for Host {host:?}; add the name with `lattice ui --allow-host NAME`",
                ui.hosts.join(", ")
            ),
        );
    }
    if request.method() == Method::POST
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("");
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            return failure(
                StatusCode::FORBIDDEN,
                format!("actions are taken from the dashboard's own page, not from {origin:?}"),
            );
        }
    }
    next.run(request).await
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(Failure { error: message })).into_response()
}

#[derive(Serialize)]
struct Failure {
    error: String,
}

/// An error as a JSON `{"error": ...}` with a status that says whose fault it was.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        failure(self.0, self.1)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError(r.status(), r.body_text())
    }
}

impl From<lattice::Error> for ApiError {
    fn from(e: lattice::Error) -> Self {
        let status = match &e {
            lattice::Error::InvalidId { .. } => StatusCode::BAD_REQUEST,
            // The host refused: its message names what was wrong with the request.
            lattice::Error::Remote(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

/// Everything the page shows, read in one go.
#[derive(Serialize)]
struct LatticeState {
    lattice: String,
    hosts: Vec<HostInventory>,
    providers: Vec<ProviderDescription>,
    links: Vec<LinkDefinition>,
    apps: Vec<StatusReport>,
}

/// Runs `work`, failing it with 403 and NATS's words when NATS refuses
/// something meanwhile (a permission violation: the dashboard's credentials
/// lack a role). Refusals are reported per connection, not per request: with
/// requests from several tabs at once, another request may take the blame.
async fn refusable<T>(work: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    let mut refused = crate::REFUSALS.subscribe();
    tokio::select! {
        result = work => result,
        refusal = Refusals::next(&mut refused) => {
            Err(ApiError(StatusCode::FORBIDDEN, refusal.to_string()))
        }
    }
}

async fn state(State(ui): State<Arc<Ui>>) -> Result<Json<LatticeState>, ApiError> {
    refusable(read_state(&ui)).await.map(Json)
}

async fn read_state(ui: &Ui) -> Result<LatticeState, ApiError> {
    let (hosts, providers, links, apps) = tokio::try_join!(
        ui.ctl.inventories(ui.window),
        ui.ctl.ping_providers(ui.window),
        async { ui.ctl.links().await?.list().await },
        async {
            let apps = ui.apps.list().await?;
            let seen = futures::future::try_join_all(
                apps.iter().map(|a| ui.apps.status(&a.manifest.name)),
            )
            .await?;
            Ok::<_, lattice::Error>(apps.into_iter().zip(seen).collect::<Vec<_>>())
        },
    )?;
    let apps = apps
        .iter()
        .map(|(app, seen)| status_report(app, seen.clone(), &hosts))
        .collect();
    Ok(LatticeState {
        lattice: ui.ctl.lattice().as_str().to_string(),
        hosts,
        providers,
        links,
        apps,
    })
}

async fn events(
    State(ui): State<Arc<Ui>>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, ApiError> {
    // `?heartbeats=1`: heartbeats (a whole inventory each) only when asked for.
    let heartbeats = query.is_some_and(|q| q.split('&').any(|p| p == "heartbeats=1"));
    let permit = ui.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_EVENT_STREAMS} event streams are open already; close a dashboard tab"),
        )
    })?;
    let sub = ui.ctl.events().await?;
    let stream = sub.filter_map(move |msg| {
        // The permit lives as long as the stream.
        let _held = &permit;
        let event = serde_json::from_slice::<Event>(&msg.payload)
            .ok()
            .filter(|e| heartbeats || e.kind != "host_heartbeat");
        async move {
            let event = event?;
            SseEvent::default().json_data(&event).ok().map(Ok)
        }
    });
    let mut stopping = ui.stopping.clone();
    let stream = stream.take_until(async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Body of the actions: the host to act on (id or name); every host running
/// the actor when absent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    #[serde(default)]
    host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: u32,
    #[serde(default)]
    host: Option<String>,
}

async fn scale(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    body: Result<Json<ScaleBody>, JsonRejection>,
) -> Result<Json<Vec<ActorScaled>>, ApiError> {
    let actor = ActorId::new(&id)?;
    let Json(body) = body?;
    if body.replicas == 0 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("replicas for actor {actor} must be at least 1; stop it to run none"),
        ));
    }
    refusable(async {
        let hosts = running(&ui, &actor, body.host.as_deref()).await?;
        let done = futures::future::try_join_all(
            hosts
                .iter()
                .map(|h| ui.ctl.scale_actor(h, &actor, body.replicas)),
        )
        .await?;
        Ok(Json(done))
    })
    .await
}

async fn stop(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    body: Result<Json<Target>, JsonRejection>,
) -> Result<Json<Vec<ActorStopped>>, ApiError> {
    let actor = ActorId::new(&id)?;
    let Json(body) = body?;
    refusable(async {
        let hosts = running(&ui, &actor, body.host.as_deref()).await?;
        let done =
            futures::future::try_join_all(hosts.iter().map(|h| ui.ctl.stop_actor(h, &actor)))
                .await?;
        Ok(Json(done))
    })
    .await
}

/// The hosts running `actor` (only `host`, id or name, when given).
async fn running(ui: &Ui, actor: &ActorId, host: Option<&str>) -> Result<Vec<HostId>, ApiError> {
    let invs = ui.ctl.inventories(ui.window).await?;
    let hosts: Vec<HostId> = invs
        .iter()
        .filter(|i| host.is_none_or(|h| i.host.id.as_str() == h || i.host.name == h))
        .filter(|i| i.actors.iter().any(|a| &a.id == actor))
        .map(|i| i.host.id.clone())
        .collect();
    if hosts.is_empty() {
        let place = host.map_or_else(|| "any host".to_string(), |h| format!("host {h:?}"));
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "actor {actor} is not running on {place} in lattice {:?}",
                ui.ctl.lattice().as_str()
            ),
        ));
    }
    Ok(hosts)
}

#[derive(Serialize)]
struct Undeployed {
    name: String,
    revision: u64,
}

async fn undeploy_app(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Undeployed>, ApiError> {
    // No body to read: insist on the JSON type all the same, so a cross-site
    // form cannot post here.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "actions take Content-Type: application/json".to_string(),
        ));
    }
    let result = refusable(async {
        undeploy(&ui.ctl, &ui.apps, &name, ui.window)
            .await
            .map_err(|e| {
                let status = match e.downcast_ref::<lattice::Error>() {
                    Some(lattice::Error::AppRedeployed { .. }) => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                ApiError(status, crate::report::one_line(&e))
            })
    })
    .await;
    match result {
        Ok(Some(app)) => Ok(Json(Undeployed {
            name,
            revision: app.revision,
        })),
        Ok(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no app named {name:?} in lattice {:?}",
                ui.ctl.lattice().as_str()
            ),
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ip_addresses_and_allowed_names_pass_as_host() {
        let names = vec!["localhost".to_string(), "dash.example".to_string()];
        for ok in [
            "127.0.0.1:8000",
            "10.0.0.5",
            "[::1]:8000",
            "localhost:8000",
            "DASH.example:80",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for bad in [
            "evil.example:8000",
            "",
            "127.0.0.1.evil.example",
            "[nonsense]:1",
            "localhost.evil:8000",
        ] {
            assert!(!host_allowed(bad, &names), "{bad}");
        }
    }
}
