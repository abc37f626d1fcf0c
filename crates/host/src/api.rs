//! Resources of the host API (all under `/ferry/v1`):
//!
//! | method | path | action |
//! |---|---|---|
//! | GET | /health | liveness |
//! | GET | /info | host name, runtime, CRIU version and features, bridge |
//! | POST | /images?name=N[&replace=true] | import an image archive (request body: tar or tar.gz) |
//! | GET | /images, /images/{name} | list / inspect |
//! | DELETE | /images/{name} | remove |
//! | POST | /containers | create (JSON `ContainerRequest`) |
//! | GET | /containers, /containers/{name} | list / inspect |
//! | DELETE | /containers/{name} | stop if running, then remove |
//! | POST | /containers/{name}/start, /stop | lifecycle |
//! | POST | /containers/{name}/checkpoint | CRIU dump (JSON `CheckpointRequest`) |
//! | POST | /containers/{name}/restore | CRIU restore (JSON `RestoreRequest`) |
//! | POST | /containers/{name}/migrate | starts a live migration (JSON `MigrateRequest`): 202 + `Location` |
//! | GET | /migrations, /migrations/{id} | the migrations of this host, either way (`MigrationView`) |
//! | POST | /migrations/{id}/settle | operator: settle a migration in doubt (`SettleRequest`) |
//! | * | /channel/... | the target side of the migration channel (`ferry_wire::channel`) |
//!
//! And `GET /metrics` (outside the base; Prometheus' text format, see [`crate::metrics`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, Path, Query, State};
use axum::http::HeaderMap;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::TryStreamExt;
use mec_api::problem::ProblemDetails;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use ferry_migration::Engine;
use ferry_runtime::{CheckpointRequest, ContainerRequest, RestoreRequest, Runtime};
use ferry_tls::{Identity, Peer};
use ferry_wire::channel::{RestoreOrder, RoundRequest};
use ferry_wire::migration::{MigrateRequest, MigrationId, MigrationView, SettleRequest};
use ferry_wire::ProblemType;

use crate::error::ApiError;
use crate::API_BASE;

type Rt = Arc<Runtime>;

/// What every handler can reach: the runtime and this host's migrations.
#[derive(Clone)]
pub struct AppState {
    pub rt: Rt,
    pub engine: Arc<Engine>,
    /// Callers come over mutual TLS and are authorized by identity ([`crate::access`]).
    pub mutual_tls: bool,
    pub metrics: crate::metrics::HostMetrics,
}

impl FromRef<AppState> for Rt {
    fn from_ref(s: &AppState) -> Rt {
        s.rt.clone()
    }
}

/// What the OpenAPI document says of the API besides its routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ferry host API",
        description = "One MEC host's containers and live migrations (`ferry host`), and the \
            target side of the host-to-host migration channel. Mutual TLS: callers are \
            authorized by the identity their certificate names (control and the operator \
            everything but the channel; another host only the channel, per migration only \
            its source). Errors are ProblemDetails whose `type` is `urn:ferry:problem:<kind>`."
    ),
    tags(
        (name = "host", description = "the host itself"),
        (name = "images", description = "app images, imported once per host"),
        (name = "containers", description = "containers and their checkpoints on this host"),
        (name = "migrations", description = "live migrations as operation resources"),
        (name = "channel", description = "host to host: the target side of a migration"),
    )
)]
struct HostDoc;

/// The API's routes, each with its OpenAPI operation: the router and the document are made
/// from the same list, so neither has a route the other lacks.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(HostDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(info))
        .routes(routes!(openapi_json))
        .routes(routes!(list_images, import_image))
        .routes(routes!(get_image, delete_image))
        .routes(routes!(list_containers, create_container))
        .routes(routes!(get_container, delete_container))
        .routes(routes!(start_container))
        .routes(routes!(stop_container))
        .routes(routes!(checkpoint_container))
        .routes(routes!(restore_container))
        .routes(routes!(migrate_container))
        .routes(routes!(list_migrations))
        .routes(routes!(get_migration))
        .routes(routes!(settle_migration))
        .routes(routes!(channel_offer))
        .routes(routes!(channel_state))
        .routes(routes!(channel_round))
        .routes(routes!(channel_images))
        .routes(routes!(channel_commit))
        .routes(routes!(channel_abort))
}

/// The OpenAPI document of the host API (paths under [`API_BASE`]).
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        OpenApiRouter::<AppState>::new()
            .nest(API_BASE, routes())
            .split_for_parts()
            .1
    })
}

#[utoipa::path(get, path = "/openapi.json", tag = "host", description = "This document.", responses((status = 200, body = serde_json::Value)))]
async fn openapi_json() -> impl IntoResponse {
    Json(openapi())
}

pub fn router(state: AppState) -> Router {
    let api = routes()
        .split_for_parts()
        .0
        .fallback(not_found)
        .with_state(state.clone());
    let metrics = state.metrics.clone();
    Router::new()
        .nest(API_BASE, api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            mec_http::http::require_json_accept,
        ))
        // After the JSON-only rule: a scraper asks for text.
        .route(
            ferry_metrics::PATH,
            get(ferry_metrics::serve).with_state(metrics.registry.clone()),
        )
        // Who may call what comes before what the request looks like.
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::access::authorize,
        ))
        // Every answer counts, refusals included.
        .layer(axum::middleware::from_fn_with_state(
            metrics.http,
            ferry_metrics::track,
        ))
        // Last, so axum's own rejections (405 with its Allow, 413, ...) are ProblemDetails too.
        .layer(axum::middleware::from_fn(mec_http::http::problem_details))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ProblemType::NoRoute,
        "no such resource in the ferry host API (base /ferry/v1)",
    )
}

/// Runs blocking runtime work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Internal,
            format!("worker failed: {e}"),
        )
    })?
}

/// JSON bodies, read by the tolerant-reader rule (unknown attributes are ignored): a body not
/// declared JSON is a 415, a malformed one or one with a missing or mistyped attribute a 400
/// ProblemDetails, not axum's plain-text rejection.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        let status = match &e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => e.status(),
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(
            status,
            ProblemType::Invalid,
            format!("invalid request body: {}", e.body_text()),
        )
    })
}

/// An optional JSON body: empty means the defaults.
fn optional_json<T: Default + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

#[utoipa::path(get, path = "/health", tag = "host", description = "Liveness: answers any identity of the operator's CA.", responses((status = 200, body = ferry_wire::container::Health)))]
async fn health(State(rt): State<Rt>) -> impl IntoResponse {
    Json(ferry_wire::container::Health {
        status: "ok".into(),
        host: rt.config().name.clone(),
    })
}

#[utoipa::path(get, path = "/info", tag = "host", description = "The host: name, id, state directory, bridge, runc and CRIU versions, CRIU's features, the channel's protocol version.", responses((status = 200, body = serde_json::Value), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn info(State(rt): State<Rt>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        let cfg = rt.config();
        let criu = &cfg.criu;
        Ok(Json(serde_json::json!({
            "host": cfg.name,
            "id": rt.id(),
            "state_dir": cfg.state_dir,
            "bridge": cfg.bridge,
            "gateway": cfg.gateway.to_string(),
            "runtime": ferry_runtime::runc::Runc::version(&cfg.runc),
            "protocol_version": ferry_wire::PROTOCOL_VERSION,
            "criu": {
                "path": criu,
                "version": ferry_runtime::criu::version(criu).map(|(a, b, c)| format!("{a}.{b}.{c}")),
                "features": ferry_runtime::criu::features(criu),
            },
        })))
    })
    .await
}

#[derive(Deserialize)]
struct ImportQuery {
    name: Option<String>,
    #[serde(default)]
    replace: bool,
}

#[utoipa::path(post, path = "/images", tag = "images", params(("name" = String, Query, description = "the image name"), ("replace" = Option<bool>, Query, description = "replace an image of that name no container uses")), request_body(content = Vec<u8>, content_type = "application/x-tar", description = "an OCI image archive (tar or tar.gz), unpacked as it arrives"), responses((status = 201, description = "imported", body = serde_json::Value), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn import_image(
    State(rt): State<Rt>,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = q.name.ok_or_else(|| {
        ApiError::bad_request("query parameter 'name' (the image name) is required")
    })?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    // The bridge blocks on the async body from a blocking thread: the archive is unpacked as
    // it arrives, never buffered whole in memory.
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let image = blocking(move || {
        // An image a container uses is never replaced under it: re-importing the same content
        // is fine (idempotent), different content is a conflict.
        let user = rt.list()?.into_iter().find(|c| c.request.image == name);
        match rt
            .images()
            .import(&name, reader, q.replace && user.is_none())
        {
            Err(ferry_runtime::image::ImageError::AlreadyExists(_)) if user.is_some() => {
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    ProblemType::AlreadyExists,
                    format!(
                        "image '{name}' is used by container '{}' and differs from this archive; \
                     delete the container or import under another name",
                        user.map(|c| c.name).unwrap_or_default()
                    ),
                ))
            }
            other => Ok(other?),
        }
    })
    .await?;
    let location = format!("{API_BASE}/images/{}", image.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(image),
    ))
}

#[utoipa::path(get, path = "/images", tag = "images", responses((status = 200, body = Vec<serde_json::Value>), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn list_images(State(rt): State<Rt>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.images().list()?))).await
}

#[utoipa::path(get, path = "/images/{name}", tag = "images", params(("name" = String, Path, description = "the container (or image) name")), responses((status = 200, body = serde_json::Value), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn get_image(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.images().get(&name)?))).await
}

#[utoipa::path(delete, path = "/images/{name}", tag = "images", params(("name" = String, Path, description = "the container (or image) name")), responses((status = 204, description = "removed"), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn delete_image(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        if let Some(c) = rt.list()?.into_iter().find(|c| c.request.image == name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ProblemType::WrongState,
                format!("image '{name}' is used by container '{}'", c.name),
            ));
        }
        rt.images().remove(&name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[utoipa::path(post, path = "/containers", tag = "containers", request_body = ContainerRequest, responses((status = 201, body = ferry_wire::Container), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn create_container(
    State(rt): State<Rt>,
    body: Result<Json<ContainerRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = json_body(body)?;
    let c = blocking(move || Ok(rt.create(req)?)).await?;
    let location = format!("{API_BASE}/containers/{}", c.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(c)))
}

#[utoipa::path(get, path = "/containers", tag = "containers", responses((status = 200, body = Vec<ferry_wire::Container>), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn list_containers(State(rt): State<Rt>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.list()?))).await
}

#[utoipa::path(get, path = "/containers/{name}", tag = "containers", params(("name" = String, Path, description = "the container (or image) name")), responses((status = 200, body = ferry_wire::Container), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn get_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.get(&name)?))).await
}

#[utoipa::path(delete, path = "/containers/{name}", tag = "containers", description = "Stops the container if it runs, then removes it.", params(("name" = String, Path, description = "the container (or image) name")), responses((status = 204, description = "removed"), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn delete_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        rt.delete(&name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[utoipa::path(post, path = "/containers/{name}/start", tag = "containers", params(("name" = String, Path, description = "the container (or image) name")), responses((status = 200, body = ferry_wire::Container), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn start_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.start(&name)?))).await
}

#[utoipa::path(post, path = "/containers/{name}/stop", tag = "containers", params(("name" = String, Path, description = "the container (or image) name")), responses((status = 200, body = ferry_wire::Container), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn stop_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.stop(&name)?))).await
}

#[utoipa::path(post, path = "/containers/{name}/checkpoint", tag = "containers", description = "A CRIU dump on this host (an empty body takes the defaults).", params(("name" = String, Path, description = "the container (or image) name")), request_body(content = Option<CheckpointRequest>), responses((status = 200, body = ferry_wire::container::CheckpointReport), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn checkpoint_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: CheckpointRequest = optional_json(&body)?;
    blocking(move || Ok(Json(rt.checkpoint(&name, req)?))).await
}

#[utoipa::path(post, path = "/containers/{name}/restore", tag = "containers", description = "A CRIU restore on this host (an empty body takes the defaults).", params(("name" = String, Path, description = "the container (or image) name")), request_body(content = Option<RestoreRequest>), responses((status = 200, body = ferry_wire::container::RestoreReport), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn restore_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: RestoreRequest = optional_json(&body)?;
    blocking(move || Ok(Json(rt.restore(&name, req)?))).await
}

/// Starts the migration and answers at once: 202, `Location` of the operation resource.
#[utoipa::path(post, path = "/containers/{name}/migrate", tag = "migrations", description = "Starts a live migration to the target host; follow it at the Location.", params(("name" = String, Path, description = "the container (or image) name")), request_body = MigrateRequest, responses((status = 202, body = MigrationView, headers(("Location" = String, description = "/ferry/v1/migrations/{id}"))), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn migrate_container(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<MigrateRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = json_body(body)?;
    let view = blocking(move || Ok(app.engine.start(&name, req)?)).await?;
    let location = format!("{API_BASE}/migrations/{}", view.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(MigrationView::Outgoing(view)),
    ))
}

fn migration_id(raw: &str) -> Result<MigrationId, ApiError> {
    raw.parse()
        .map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, ProblemType::UnknownMigration, e))
}

#[utoipa::path(get, path = "/migrations", tag = "migrations", description = "Every migration this host keeps a record of, either way, newest first.", responses((status = 200, body = Vec<MigrationView>), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn list_migrations(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(app.engine.list()))).await
}

#[utoipa::path(get, path = "/migrations/{id}", tag = "migrations", params(("id" = String, Path, description = "the migration id")), responses((status = 200, body = MigrationView), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn get_migration(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.view(&id)?))).await
}

#[utoipa::path(post, path = "/migrations/{id}/settle", tag = "migrations", description = "An operator settles a migration in doubt (or whose rollback failed) to the source or the target.", params(("id" = String, Path, description = "the migration id")), request_body = SettleRequest, responses((status = 200, body = MigrationView), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn settle_migration(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<SettleRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = migration_id(&id)?;
    let req = json_body(body)?;
    blocking(move || Ok(Json(MigrationView::Outgoing(app.engine.settle(&id, req)?)))).await
}

/// The per-migration token from `Authorization: Bearer <token>`.
fn token(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ProblemType::Unauthorized,
                "the migration channel needs Authorization: Bearer <token>",
            )
        })
}

/// The channel's offers are small: the container request and a few fields.
const MAX_OFFER_BYTES: usize = 64 << 10;

#[utoipa::path(post, path = "/channel", tag = "channel", description = "Another host offers a migration (the target side of the channel). Bearer: the migration's token.", request_body = ferry_wire::channel::Offer, responses((status = 201, body = ferry_wire::channel::OfferReply), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn channel_offer(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    if body.len() > MAX_OFFER_BYTES {
        return Err(ApiError::bad_request(format!(
            "an offer is at most {MAX_OFFER_BYTES} bytes"
        )));
    }
    let caller = match peer.identity {
        Some(Identity::Host(name)) => Some(name),
        _ => None,
    };
    blocking(move || {
        let reply = app.engine.offer(&token, &body, caller.as_deref())?;
        Ok((StatusCode::CREATED, Json(reply)))
    })
    .await
}

#[utoipa::path(post, path = "/channel/{id}/rounds", tag = "channel", params(("id" = String, Path, description = "the migration id")), request_body = RoundRequest, responses((status = 200, body = ferry_wire::channel::RoundReply), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn channel_round(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<RoundRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    let req = json_body(body)?;
    blocking(move || Ok(Json(app.engine.round(&id, &token, req)?))).await
}

#[utoipa::path(put, path = "/channel/{id}/images", tag = "channel", description = "The image stream of the final dump: opened before the dump, each image as CRIU closes it, then the rest and the writable layer, last the manifest (sizes and SHA-256) that everything is checked against; once it is in and checked, the target restores the copy and, the source having recorded its commit before sending the manifest, commits it and makes it serve; it answers how that went.", params(("id" = String, Path, description = "the migration id"), ("lazy_page_server_port" = Option<u16>, Query, description = "post-copy: the port of the source's page server, on the address the call comes from")), request_body(content = Vec<u8>, content_type = "application/x-tar"), responses((status = 200, description = "received and verified; the restore's outcome", body = ferry_wire::channel::ImagesReply), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn channel_images(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<RestoreOrder>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    let Query(order) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    // Post-copy pages are pulled from the host that sent the images: the source.
    blocking(move || {
        Ok(Json(app.engine.receive_images(
            &id,
            &token,
            reader,
            order,
            peer.addr.ip(),
        )?))
    })
    .await
}

#[utoipa::path(post, path = "/channel/{id}/commit", tag = "channel", description = "A source settling a commit whose answer it did not hear: commits a restored copy (idempotent).", params(("id" = String, Path, description = "the migration id")), responses((status = 200, body = ferry_wire::channel::ChannelState), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn channel_commit(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.commit(&id, &token)?))).await
}

#[utoipa::path(post, path = "/channel/{id}/abort", tag = "channel", params(("id" = String, Path, description = "the migration id")), responses((status = 200, body = ferry_wire::channel::ChannelState), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn channel_abort(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.abort(&id, &token)?))).await
}

#[utoipa::path(get, path = "/channel/{id}", tag = "channel", params(("id" = String, Path, description = "the migration id")), responses((status = 200, body = ferry_wire::channel::ChannelState), (status = "4XX", description = "refused: the ProblemDetails type says why (urn:ferry:problem:...)", body = ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "the host failed to do its part", body = ProblemDetails, content_type = "application/problem+json")))]
async fn channel_state(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.channel_state(&id, &token)?))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `v` (recursively).
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_covers_the_api_and_its_schemas_resolve() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(
            paths.keys().all(|p| p.starts_with("/ferry/v1/")),
            "{paths:?}"
        );
        for p in [
            "/ferry/v1/containers/{name}/migrate",
            "/ferry/v1/channel/{id}/images",
            "/ferry/v1/openapi.json",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} does not resolve"
            );
        }
    }
}
