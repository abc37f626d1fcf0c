//! ferry's own control of the emulated RAN (`/ferry/ran/v1`): list UEs and cells, force a
//! handover. Not an ETSI API; errors are ProblemDetails all the same.
//!
//! - `GET  /ferry/ran/v1/ues`                 -> `[UeView]`
//! - `GET  /ferry/ran/v1/cells`               -> `[CellView]`
//! - `POST /ferry/ran/v1/ues/{ue}/handover`   `{"cell": "..."}` -> `HandoverView`
//!   (404 unknown UE, 400 unknown cell or bad body, 409 already in that cell)
//! - `POST /ferry/ran/v1/handovers` `{"handovers": [{"ue": "...", "cell": "..."}, ...]}` (at
//!   most `MAX_BATCH`): a burst, done in order at one instant -> `BatchView` (how many were
//!   done, and the reason of each refused one)
//! - `PUT  /ferry/ran/v1/ues/{ue}/bearer`     `{"qci": 7, "qosInformation": {...}}` -> `BearerView`:
//!   changes the QoS of the UE's default bearer (E-RAB 1), notified to MEC 012 RabMod and
//!   S1Bearer MODIFY subscribers (404 unknown UE, 400 bad body)
//! - `GET  /ferry/ran/v1/stats`               -> `StatsView`
//! - `GET  /ferry/ran/v1/openapi.json`        -> this API's OpenAPI document, made from the
//!   same list of routes as the router (`api`)

use crate::http::{self, ApiError};
use crate::Ran;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use mec_api::rni::{Ecgi, TimeStamp};
use serde::{Deserialize, Serialize};

/// A UE and where it is.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UeView {
    pub name: String,
    pub address: String,
    pub cell: String,
    /// The MEC host serving the cell (MEC 013 zoneId).
    pub zone: String,
    #[schema(value_type = Object)]
    pub ecgi: Ecgi,
    pub latitude: f64,
    pub longitude: f64,
}

/// A cell and how many UEs it serves.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CellView {
    pub name: String,
    pub zone: String,
    #[schema(value_type = Object)]
    pub ecgi: Ecgi,
    pub users: u32,
}

/// Body of a forced handover.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HandoverRequest {
    pub cell: String,
}

/// Answer of a forced handover.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HandoverView {
    pub ue: String,
    pub address: String,
    pub from_cell: String,
    pub to_cell: String,
    #[schema(value_type = Object)]
    pub at: TimeStamp,
}

/// Body of a bearer QoS change: MEC 012's `ErabQosParameters` (`qosInformation` with the
/// bit rates makes the bearer GBR).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BearerRequest {
    pub qci: u32,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub qos_information: Option<mec_api::rni::QosInformation>,
}

/// Answer of a bearer QoS change.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BearerView {
    pub ue: String,
    pub address: String,
    pub cell: String,
    pub erab_id: u32,
    pub qci: u32,
}

/// One handover of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchItem {
    pub ue: String,
    pub cell: String,
}

/// Body of `POST /ferry/ran/v1/handovers`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchRequest {
    pub handovers: Vec<BatchItem>,
}

/// Answer of a batch: how many handovers were done, when, and why the others were not.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchView {
    pub done: usize,
    /// When the batch's handovers happened (all at one instant).
    #[schema(value_type = Object)]
    pub at: TimeStamp,
    /// "index: reason" of each refused item (e.g. already in that cell).
    pub refused: Vec<String>,
}

/// How one MEC 012 subscription's notifications fare.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub subscription: String,
    pub delivered: u64,
    /// Notifications merged into a later one of the same UE (the queue was full).
    pub merged: u64,
    pub lost: u64,
    pub refused: u64,
    pub waiting: usize,
    /// The callback does not answer: delivery is paused and probes it.
    pub down: bool,
}

impl DeliveryView {
    pub(crate) fn new(subscription: String, s: crate::notify::DeliveryStats) -> DeliveryView {
        DeliveryView {
            subscription,
            delivered: s.delivered,
            merged: s.merged,
            lost: s.lost,
            refused: s.refused,
            waiting: s.waiting,
            down: s.down,
        }
    }
}

/// The emulation's counters.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    pub handovers: u64,
    pub ues: usize,
    #[schema(value_type = Object)]
    pub mobility: crate::MobilityView,
    pub deliveries: Vec<DeliveryView>,
}

/// What the OpenAPI document of `/ferry/ran/v1` says besides its routes.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "ferry RAN API",
    description = "ferry's own control of the emulated RAN (`/ferry/ran/v1`): its UEs and cells, \
        forced handovers, counters. The operator's certificate only. The MEC 012 and MEC 013 \
        APIs the RAN serves have their own ETSI OpenAPI files."
))]
struct RanDoc;

/// `/ferry/ran/v1`: each route with its OpenAPI operation (one list for both).
fn api() -> utoipa_axum::router::OpenApiRouter<Ran> {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(RanDoc::openapi())
        .routes(routes!(ues))
        .routes(routes!(cells))
        .routes(routes!(handover))
        .routes(routes!(handovers))
        .routes(routes!(bearer))
        .routes(routes!(stats))
        .routes(routes!(openapi_json))
}

pub(crate) fn routes() -> Router<Ran> {
    api().split_for_parts().0
}

/// The OpenAPI document of `/ferry/ran/v1`.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| api().split_for_parts().1)
}

#[utoipa::path(get, path = "/ferry/ran/v1/openapi.json", description = "This document.", responses((status = 200, body = serde_json::Value)))]
async fn openapi_json() -> Response {
    http::json(StatusCode::OK, openapi())
}

#[utoipa::path(get, path = "/ferry/ran/v1/stats", description = "Handovers, how the mobility keeps up, how each MEC 012 subscription's delivery fares.", responses((status = 200, body = StatsView)))]
async fn stats(State(ran): State<Ran>) -> Response {
    http::json(StatusCode::OK, &ran.stats())
}

#[utoipa::path(post, path = "/ferry/ran/v1/handovers", description = "A burst of forced handovers, done in order at one instant.", request_body = BatchRequest, responses((status = 200, body = BatchView), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn handovers(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: BatchRequest = http::parse_body(&headers, &body)?;
    if req.handovers.len() > crate::MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "{} handovers in one batch; send at most {} per request",
            req.handovers.len(),
            crate::MAX_BATCH
        )));
    }
    let moves: Vec<(String, String)> = req.handovers.into_iter().map(|h| (h.ue, h.cell)).collect();
    let results = ran.handover_many(&moves);
    let refused: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("{i}: {e}")))
        .collect();
    // One instant for the whole batch: when its handovers happened.
    let at = results
        .iter()
        .flatten()
        .next()
        .map_or_else(std::time::SystemTime::now, |h| h.at);
    let view = BatchView {
        done: results.len() - refused.len(),
        at: TimeStamp::from_system_time(at),
        refused,
    };
    Ok(http::json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/ferry/ran/v1/ues", responses((status = 200, body = Vec<UeView>)))]
async fn ues(State(ran): State<Ran>) -> Response {
    let w = ran.world();
    let list: Vec<UeView> = w
        .ues
        .iter()
        .map(|u| {
            let c = &w.cells[u.cell];
            UeView {
                name: u.name.clone(),
                address: u.address.to_string(),
                cell: c.name.clone(),
                zone: c.zone.clone(),
                ecgi: c.ecgi.clone(),
                latitude: u.latitude,
                longitude: u.longitude,
            }
        })
        .collect();
    http::json(StatusCode::OK, &list)
}

#[utoipa::path(get, path = "/ferry/ran/v1/cells", responses((status = 200, body = Vec<CellView>)))]
async fn cells(State(ran): State<Ran>) -> Response {
    let w = ran.world();
    let list: Vec<CellView> = (0..w.cells.len())
        .map(|i| {
            let c = &w.cells[i];
            CellView {
                name: c.name.clone(),
                zone: c.zone.clone(),
                ecgi: c.ecgi.clone(),
                users: w.users_in_cell(i),
            }
        })
        .collect();
    http::json(StatusCode::OK, &list)
}

#[utoipa::path(post, path = "/ferry/ran/v1/ues/{ue}/handover", description = "Forces a handover of the UE to the cell now.", params(("ue" = String, Path, description = "the UE's name")), request_body = HandoverRequest, responses((status = 200, body = HandoverView), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn handover(
    State(ran): State<Ran>,
    Path(ue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: HandoverRequest = http::parse_body(&headers, &body)?;
    let h = ran.handover(&ue, &req.cell).map_err(|e| match e {
        crate::RanError::UnknownCell(_) => {
            let names: Vec<String> = ran.world().cells.iter().map(|c| c.name.clone()).collect();
            ApiError::bad_request(format!("{e} (cells: {})", names.join(", ")))
        }
        other => ApiError::from(other),
    })?;
    let view = HandoverView {
        ue: h.ue,
        address: h.ue_address.to_string(),
        from_cell: h.from_cell,
        to_cell: h.to_cell,
        at: TimeStamp::from_system_time(h.at),
    };
    Ok(http::json(StatusCode::OK, &view))
}

#[utoipa::path(put, path = "/ferry/ran/v1/ues/{ue}/bearer", description = "Changes the QoS of the UE's default bearer (E-RAB 1): MEC 012 RabMod and S1Bearer MODIFY subscribers are told.", params(("ue" = String, Path, description = "the UE's name")), request_body = BearerRequest, responses((status = 200, body = BearerView), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn bearer(
    State(ran): State<Ran>,
    Path(ue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: BearerRequest = http::parse_body(&headers, &body)?;
    // TS 23.203 standardised QCIs are 1..=254 (0 and 255 are reserved).
    if req.qci == 0 || req.qci > 254 {
        return Err(ApiError::bad_request(format!(
            "qci {} is not a QoS class identifier (1..=254, e.g. 9 best effort, 1 conversational voice)",
            req.qci
        )));
    }
    let qos = mec_api::rni::ErabQosParameters {
        qci: req.qci,
        qos_information: req.qos_information,
    };
    let (address, cell) = crate::rni::modify_bearer(&ran, &ue, qos)?;
    let view = BearerView {
        ue,
        address: address.to_string(),
        cell,
        erab_id: crate::rni::ERAB_ID,
        qci: req.qci,
    };
    Ok(http::json(StatusCode::OK, &view))
}
