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
//! narrow: it listens on loopback; on loopback it answers only requests
//! addressed to a loopback name (no DNS rebinding); actions take JSON bodies
//! only and refuse a foreign `Origin` (no cross-site form posts).

use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::{Path, Request, State, rejection::JsonRejection},
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

/// Event streams open at once: each holds a NATS subscription.
const MAX_EVENT_STREAMS: usize = 64;

#[derive(clap::Args, Debug)]
pub struct UiArgs {
    /// Address to serve the dashboard on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
}

struct Ui {
    ctl: CtlClient,
    apps: AppStore,
    window: Duration,
    /// Requests must name one of these in `Host` (empty: any name).
    hosts: Vec<String>,
    streams: Arc<Semaphore>,
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
    let hosts = if addr.ip().is_loopback() {
        allowed_hosts(addr)
    } else {
        eprintln!(
            "warning: serving on {addr}: anyone who reaches it can scale and stop actors with this command's NATS credentials"
        );
        Vec::new()
    };
    let ui = Arc::new(Ui {
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
    axum::serve(listener, router(ui))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the dashboard server failed")?;
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

/// `Host` values a loopback server answers: its port under each loopback name.
fn allowed_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut names = vec![
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    if let IpAddr::V4(ip) = addr.ip()
        && ip != std::net::Ipv4Addr::LOCALHOST
    {
        names.push(format!("{ip}:{port}"));
    }
    names
}

/// Refuses requests for another host name (DNS rebinding) and actions from
/// another origin (cross-site posts).
async fn guard(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !ui.hosts.is_empty() && !ui.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return failure(
            StatusCode::FORBIDDEN,
            format!(
                "this dashboard answers requests for {} only, not for Host {host:?}",
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
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, ApiError> {
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
        let event = serde_json::from_slice::<Event>(&msg.payload).ok();
        async move {
            let event = event?;
            SseEvent::default().json_data(&event).ok().map(Ok)
        }
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
            .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")))
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
