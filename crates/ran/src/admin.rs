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
//! - `GET  /ferry/ran/v1/stats`               -> `StatsView`

use crate::http::{self, ApiError};
use crate::Ran;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use mec_api::rni::{Ecgi, TimeStamp};
use serde::{Deserialize, Serialize};

/// A UE and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UeView {
    pub name: String,
    pub address: String,
    pub cell: String,
    /// The MEC host serving the cell (MEC 013 zoneId).
    pub zone: String,
    pub ecgi: Ecgi,
    pub latitude: f64,
    pub longitude: f64,
}

/// A cell and how many UEs it serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellView {
    pub name: String,
    pub zone: String,
    pub ecgi: Ecgi,
    pub users: u32,
}

/// Body of a forced handover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoverRequest {
    pub cell: String,
}

/// Answer of a forced handover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoverView {
    pub ue: String,
    pub address: String,
    pub from_cell: String,
    pub to_cell: String,
    pub at: TimeStamp,
}

/// One handover of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItem {
    pub ue: String,
    pub cell: String,
}

/// Body of `POST /ferry/ran/v1/handovers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRequest {
    pub handovers: Vec<BatchItem>,
}

/// Answer of a batch: how many handovers were done, when, and why the others were not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchView {
    pub done: usize,
    /// When the batch's handovers happened (all at one instant).
    pub at: TimeStamp,
    /// "index: reason" of each refused item (e.g. already in that cell).
    pub refused: Vec<String>,
}

/// How one MEC 012 subscription's notifications fare.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    pub handovers: u64,
    pub ues: usize,
    pub mobility: crate::MobilityView,
    pub deliveries: Vec<DeliveryView>,
}

pub(crate) fn routes() -> Router<Ran> {
    Router::new()
        .route("/ferry/ran/v1/ues", get(ues))
        .route("/ferry/ran/v1/cells", get(cells))
        .route("/ferry/ran/v1/ues/{ue}/handover", post(handover))
        .route("/ferry/ran/v1/handovers", post(handovers))
        .route("/ferry/ran/v1/stats", get(stats))
}

async fn stats(State(ran): State<Ran>) -> Response {
    http::json(StatusCode::OK, &ran.stats())
}

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
