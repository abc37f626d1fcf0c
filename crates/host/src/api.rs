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
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};

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

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/images", get(list_images).post(import_image))
        .route("/images/{name}", get(get_image).delete(delete_image))
        .route("/containers", get(list_containers).post(create_container))
        .route(
            "/containers/{name}",
            get(get_container).delete(delete_container),
        )
        .route("/containers/{name}/start", post(start_container))
        .route("/containers/{name}/stop", post(stop_container))
        .route("/containers/{name}/checkpoint", post(checkpoint_container))
        .route("/containers/{name}/restore", post(restore_container))
        .route("/containers/{name}/migrate", post(migrate_container))
        .route("/migrations", get(list_migrations))
        .route("/migrations/{id}", get(get_migration))
        .route("/migrations/{id}/settle", post(settle_migration))
        .route("/channel", post(channel_offer))
        .route("/channel/{id}", get(channel_state))
        .route("/channel/{id}/rounds", post(channel_round))
        .route("/channel/{id}/images", put(channel_images))
        .route("/channel/{id}/restore", post(channel_restore))
        .route("/channel/{id}/commit", post(channel_commit))
        .route("/channel/{id}/abort", post(channel_abort))
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
        ProblemType::NotFound,
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

async fn health(State(rt): State<Rt>) -> impl IntoResponse {
    Json(ferry_wire::container::Health {
        status: "ok".into(),
        host: rt.config().name.clone(),
    })
}

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

async fn list_images(State(rt): State<Rt>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.images().list()?))).await
}

async fn get_image(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.images().get(&name)?))).await
}

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

async fn create_container(
    State(rt): State<Rt>,
    body: Result<Json<ContainerRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = json_body(body)?;
    let c = blocking(move || Ok(rt.create(req)?)).await?;
    let location = format!("{API_BASE}/containers/{}", c.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(c)))
}

async fn list_containers(State(rt): State<Rt>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.list()?))).await
}

async fn get_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.get(&name)?))).await
}

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

async fn start_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.start(&name)?))).await
}

async fn stop_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(rt.stop(&name)?))).await
}

async fn checkpoint_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: CheckpointRequest = optional_json(&body)?;
    blocking(move || Ok(Json(rt.checkpoint(&name, req)?))).await
}

async fn restore_container(
    State(rt): State<Rt>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: RestoreRequest = optional_json(&body)?;
    blocking(move || Ok(Json(rt.restore(&name, req)?))).await
}

/// Starts the migration and answers at once: 202, `Location` of the operation resource.
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

async fn list_migrations(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(app.engine.list()))).await
}

async fn get_migration(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.view(&id)?))).await
}

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

async fn channel_images(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    blocking(move || {
        app.engine.receive_images(&id, &token, reader)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn channel_restore(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    let order: RestoreOrder = optional_json(&body)?;
    // Post-copy pages are pulled from the host that asked for the restore: the source.
    blocking(move || {
        Ok(Json(app.engine.restore(
            &id,
            &token,
            order,
            peer.addr.ip(),
        )?))
    })
    .await
}

async fn channel_commit(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.commit(&id, &token)?))).await
}

async fn channel_abort(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.abort(&id, &token)?))).await
}

async fn channel_state(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = token(&headers)?;
    let id = migration_id(&id)?;
    blocking(move || Ok(Json(app.engine.channel_state(&id, &token)?))).await
}
