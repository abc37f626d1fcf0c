//! The emulated RAN: cells, UEs and handovers from a topology file, exposed as the ETSI MEC
//! APIs a MEC platform consumes from a real RAN.
//!
//! - `/rni/v2/...`: MEC 012 RNIS, every subscription type with the notifications the
//!   emulation produces (handovers, bearer changes, measurement reports), the RAB, PLMN, S1
//!   bearer and layer 2 queries (`rni.rs`, docs/rnis.md);
//! - `/location/v2/...`: MEC 013 Location, users, zones (one per MEC host) and access points
//!   (cells), user tracking and zonal traffic subscriptions (`location.rs`); the distance
//!   query, distance, area (circle), periodic and zone status subscriptions
//!   (`location_geo.rs`);
//! - `/ferry/ran/v1/...`: ferry's own control of the emulation: list UEs and cells, force a
//!   handover or a burst of them, change a UE's bearer QoS, counters (`admin.rs`).
//!
//! Notifications go through `mec_http::notify` (per subscriber, in order per UE, several in
//! flight, paused and caught up when the subscriber is down); a full queue merges a UE's
//! CellChange notifications (`rni::merge_cell_changes`) so memory stays bounded by the queue
//! plus one notification per UE.
//!
//! Handovers come from `Ran::handover` (forced), or from the UEs' traces and waypoints once
//! `Ran::start_trace` runs (`trace.rs`); with a topology `[radio]`, the radio model
//! (`radio.rs`, docs/radio.md) decides the walking UEs' handovers by the A3 event, notified
//! to MEC 012 IN_PREPARATION first, and makes every UE's measurement reports. Every completed
//! handover is published to the subscribers of both ETSI APIs and on `Ran::subscribe` (for an
//! embedding testbed).

pub mod admin;
mod http;
pub mod location;
pub mod location_geo;
pub mod measurement;
pub mod metrics;
pub mod mobility;
mod notify;
mod owners;
pub mod radio;
pub mod rni;
mod trace;
pub use trace::MobilityView;
pub mod world;

/// Re-exported so embedders build on the same axum as `Ran::router`.
pub use axum;
/// Re-exported so the CLI reads the topology with the very types `Ran::new` takes.
pub use ferry_topology as topology;

use ferry_topology::Rat;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::broadcast;
use world::{CellChange, World};

/// Errors of the RAN library.
#[derive(Debug, thiserror::Error)]
pub enum RanError {
    #[error("invalid topology for the RAN: {0}")]
    InvalidTopology(String),
    #[error("no UE named '{0}'")]
    UnknownUe(String),
    #[error("no cell named '{0}'")]
    UnknownCell(String),
    #[error("UE '{ue}' is already in cell '{cell}'")]
    SameCell { ue: String, cell: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// A completed handover, as published on `Ran::subscribe`.
#[derive(Clone, Debug)]
pub struct Handover {
    pub ue: String,
    pub ue_address: Ipv4Addr,
    pub from_cell: String,
    pub to_cell: String,
    pub at: SystemTime,
}

impl From<&CellChange> for Handover {
    fn from(c: &CellChange) -> Handover {
        Handover {
            ue: c.ue.clone(),
            ue_address: c.address,
            from_cell: c.from.name.clone(),
            to_cell: c.to.name.clone(),
            at: c.at,
        }
    }
}

/// Subscriptions one client (an app with a token) may hold unless told otherwise.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = owners::DEFAULT_MAX_PER_CLIENT;

/// Handovers buffered per `subscribe` receiver before a slow one starts lagging.
const EVENT_BUFFER: usize = 1024;

/// Tuning of the RAN beyond its topology.
#[derive(Debug, Clone)]
pub struct Options {
    /// Notifications queued per subscription before they coalesce per UE (MEC 012) or are
    /// dropped and counted (the others).
    pub notify_queue: usize,
    /// Overrides the topology's `[radio] meas_period_ms` (only with a `[radio]`).
    pub meas_period_ms: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            notify_queue: mec_http::notify::DEFAULT_QUEUE,
            meas_period_ms: None,
        }
    }
}

/// Most handovers one `Ran::handover_many` (and `POST /ferry/ran/v1/handovers`) takes.
pub const MAX_BATCH: usize = 10_000;

/// The RAN. Cheap to clone: all clones share one state.
#[derive(Clone)]
pub struct Ran {
    inner: Arc<Inner>,
}

struct Inner {
    world: Mutex<World>,
    rni: Mutex<rni::Subscriptions>,
    location: Mutex<location::Subscriptions>,
    geo: Mutex<location_geo::Subscriptions>,
    /// Who holds each subscription (an app sees only its own).
    owners: owners::Owners,
    events: broadcast::Sender<Handover>,
    notifier: notify::Notifier,
    security: Security,
    schedule: trace::Schedule,
    /// The radio model, with the topology's `[radio]`: measurement reports, and A3 decides
    /// the walking UEs' handovers. Without it they go to the nearest covering cell.
    radio: Option<radio::Model>,
    next_id: AtomicU64,
    /// Handovers so far (forced and from the mobility).
    handovers: AtomicU64,
    mobility: trace::MobilityStats,
    metrics: metrics::RanMetrics,
}

/// Locks a mutex even if a panicking thread poisoned it: the state stays consistent because
/// every critical section is a few plain assignments.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ran {
    /// Builds the RAN over a topology: every UE in its start cell, no subscriptions. Serves
    /// plain HTTP without authentication: for loopback only (see [`Ran::with_tls`]).
    pub fn new(topology: &ferry_topology::Topology) -> Result<Ran, RanError> {
        Ran::with_tls(topology, None)
    }

    /// With the RAN's certificate, key and the operator's CA (`ferry pki`): TLS on its
    /// listener (ferry's parts by certificate, applications by access token) and its
    /// notifications to ferry's parts sent as `ran`.
    pub fn with_tls(
        topology: &ferry_topology::Topology,
        tls: Option<&ferry_tls::TlsFiles>,
    ) -> Result<Ran, RanError> {
        Ran::with_options(topology, tls, Options::default())
    }

    /// [`Ran::with_tls`] with tuning.
    pub fn with_options(
        topology: &ferry_topology::Topology,
        tls: Option<&ferry_tls::TlsFiles>,
        options: Options,
    ) -> Result<Ran, RanError> {
        let security = Security::new(tls)?;
        let world = World::from_topology(topology)?;
        let schedule = trace::Schedule::from_topology(topology, &world);
        let radio = match &topology.radio {
            Some(r) => {
                let mut params = r.clone();
                if let Some(ms) = options.meas_period_ms {
                    let range = ferry_topology::MEAS_PERIOD_MS;
                    if !range.contains(&ms) {
                        return Err(RanError::InvalidTopology(format!(
                            "measurement period {ms} ms is outside {}..={} ms",
                            range.start(),
                            range.end()
                        )));
                    }
                    params.meas_period_ms = ms;
                }
                let tx = |c: &ferry_topology::Cell| radio::Transmitter {
                    latitude: c.position.latitude,
                    longitude: c.position.longitude,
                    tx_power_dbm: c.tx_power_dbm,
                    frequency_mhz: c.frequency_mhz,
                };
                let of = |rat| topology.cells.iter().filter(move |c| c.rat == rat);
                let lte: Vec<radio::Transmitter> = of(Rat::Lte).map(tx).collect();
                let nr: Vec<radio::Transmitter> = of(Rat::Nr).map(tx).collect();
                // World::scells lists the secondary carriers in this order.
                let scells: Vec<(usize, radio::Transmitter)> = (of(Rat::Lte).enumerate())
                    .flat_map(|(i, c)| {
                        c.secondary_carriers.iter().map(move |s| {
                            let t = radio::Transmitter {
                                tx_power_dbm: s.tx_power_dbm,
                                frequency_mhz: s.frequency_mhz,
                                ..tx(c)
                            };
                            (i, t)
                        })
                    })
                    .collect();
                Some(radio::Model::with_layers(&lte, &nr, &scells, params))
            }
            None => None,
        };
        let rni = rni::Subscriptions::new(&world);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let metrics = metrics::RanMetrics::new();
        Ok(Ran {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                rni: Mutex::new(rni),
                location: Mutex::new(location::Subscriptions::default()),
                geo: Mutex::new(location_geo::Subscriptions::default()),
                owners: owners::Owners::new(owners::DEFAULT_MAX_PER_CLIENT),
                events,
                notifier: notify::Notifier::with_tls(security.client.clone())
                    .queue(options.notify_queue)
                    .metrics(metrics.delivery.clone()),
                security,
                schedule,
                radio,
                next_id: AtomicU64::new(1),
                handovers: AtomicU64::new(0),
                mobility: trace::MobilityStats::default(),
                metrics,
            }),
        })
    }

    /// All HTTP APIs of the RAN: `/rni/v2`, `/location/v2` and `/ferry/ran/v1`.
    pub fn router(&self) -> axum::Router {
        let etsi = rni::routes()
            .merge(location::routes())
            .merge(location_geo::routes())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                owners::guard,
            ))
            .layer(axum::middleware::from_fn(http::require_json_accept));
        let m = &self.inner.metrics;
        etsi.merge(admin::routes())
            .route(
                ferry_metrics::PATH,
                axum::routing::get(ferry_metrics::serve).with_state(m.registry.clone()),
            )
            .fallback(http::not_found)
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.inner.security.auth.clone(),
                mec_http::oauth::authenticate,
            ))
            // Every answer counts, refusals included.
            .layer(axum::middleware::from_fn_with_state(
                m.http.clone(),
                ferry_metrics::track,
            ))
            .layer(axum::middleware::from_fn(http::problem_details))
    }

    /// Whether it serves TLS (`https` URLs).
    pub fn tls(&self) -> bool {
        self.inner.security.server.is_some()
    }

    /// Forces a handover of `ue` to `cell` now and notifies every matching subscriber.
    pub fn handover(&self, ue: &str, cell: &str) -> Result<Handover, RanError> {
        let change = {
            let mut w = lock(&self.inner.world);
            let u = w
                .ue_index(ue)
                .ok_or_else(|| RanError::UnknownUe(ue.to_string()))?;
            let c = w
                .cell_index(cell)
                .ok_or_else(|| RanError::UnknownCell(cell.to_string()))?;
            w.hand_over(u, c, SystemTime::now())?
        };
        self.publish(&change);
        location_geo::on_move(self);
        Ok(Handover::from(&change))
    }

    /// Forces several handovers at once (a burst), in the given order, and notifies them;
    /// each one's result in that order. At most [`MAX_BATCH`].
    pub fn handover_many(&self, moves: &[(String, String)]) -> Vec<Result<Handover, RanError>> {
        let now = SystemTime::now();
        let results: Vec<Result<CellChange, RanError>> = {
            let mut w = lock(&self.inner.world);
            moves
                .iter()
                .take(MAX_BATCH)
                .map(|(ue, cell)| {
                    let u = w
                        .ue_index(ue)
                        .ok_or_else(|| RanError::UnknownUe(ue.clone()))?;
                    let c = w
                        .cell_index(cell)
                        .ok_or_else(|| RanError::UnknownCell(cell.clone()))?;
                    w.hand_over(u, c, now)
                })
                .collect()
        };
        for change in results.iter().flatten() {
            self.publish(change);
        }
        location_geo::on_move(self);
        results
            .into_iter()
            .map(|r| r.map(|c| Handover::from(&c)))
            .collect()
    }

    /// Counters of the emulation: handovers, how the mobility keeps up with real time, how
    /// each MEC 012 subscription's delivery fares.
    pub fn stats(&self) -> admin::StatsView {
        admin::StatsView {
            handovers: self.inner.handovers.load(Ordering::Relaxed),
            ues: self.world().ues.len(),
            mobility: self.inner.mobility.view(),
            deliveries: rni::delivery_stats(self)
                .into_iter()
                .map(|(subscription, s)| admin::DeliveryView::new(subscription, s))
                .collect(),
        }
    }

    /// Every handover from now on (forced or from a trace).
    pub fn subscribe(&self) -> broadcast::Receiver<Handover> {
        self.inner.events.subscribe()
    }

    /// Drives the UEs' traces and waypoints, with time 0 = now. The task ends after the last
    /// trace step and waypoint; abort it to stop the mobility early.
    pub fn start_trace(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(trace::run(self.clone()))
    }

    /// A snapshot of the current state (for the APIs; never held across an await).
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.inner.world)
    }

    /// Notifies a step of a handover the radio model decided that is not its completion:
    /// IN_PREPARATION when it starts, CANCELLED when the UE changed cell meanwhile (a forced
    /// handover or a trace step). MEC 012 only: the UE is still in its source cell, so MEC 013
    /// and the embedder learn nothing.
    fn publish_step(&self, change: &CellChange, status: mec_api::rni::HoStatus) {
        tracing::info!(
            ue = %change.ue, address = %change.address,
            from = %change.from.name, to = %change.to.name, ?status,
            "handover step"
        );
        rni::on_cell_change(self, change, status);
    }

    /// Notifies one handover to the MEC 012 and 013 subscribers and the embedder. The
    /// geometric MEC 013 subscriptions are the caller's (`location_geo::on_move`), once per
    /// batch of moves.
    fn publish(&self, change: &CellChange) {
        tracing::info!(
            ue = %change.ue, address = %change.address,
            from = %change.from.name, to = %change.to.name,
            "handover"
        );
        self.inner.handovers.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.handovers.inc();
        rni::on_cell_change(self, change, mec_api::rni::HoStatus::Completed);
        location::on_cell_change(self, change);
        // No receiver is fine: nobody embeds the RAN.
        let _ = self.inner.events.send(Handover::from(change));
    }

    /// How many subscriptions one client (an application with a token) may hold here.
    pub fn set_max_subscriptions_per_client(&self, n: usize) {
        self.inner.owners.set_max_per_client(n);
    }

    /// Whether a subscription of either API still exists (not deleted, not expired).
    pub(crate) fn subscription_exists(&self, id: &str) -> bool {
        lock(&self.inner.rni).contains(id)
            || lock(&self.inner.location).contains(id)
            || lock(&self.inner.geo).contains(id)
    }

    /// A new subscription id, unique across both APIs.
    pub(crate) fn new_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Serves the RAN's APIs on `listener` until `shutdown` completes.
pub async fn serve(
    ran: Ran,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let transport = match &ran.inner.security.server {
        Some(config) => mec_http::serve::Transport::MutualTls(listener, config.clone()),
        None => mec_http::serve::Transport::Plain(listener),
    };
    mec_http::serve::serve_on(transport, ran.router(), shutdown).await
}

/// Which of ferry's parts may call what on the RAN, by certificate: the operator
/// everything, control the MEC 012 and 013 APIs it consumes, a metrics scraper `/metrics`.
/// Applications come with tokens.
fn part_policy(id: &ferry_tls::Identity, method: &axum::http::Method, path: &str) -> bool {
    use mec_http::oauth::Scope;
    match id {
        ferry_tls::Identity::Operator => true,
        ferry_tls::Identity::Control => {
            matches!(Scope::for_path(path), Some(Scope::Rni | Scope::Location))
        }
        ferry_tls::Identity::Metrics => {
            method == axum::http::Method::GET && path == ferry_metrics::PATH
        }
        _ => false,
    }
}

/// What TLS turns on.
struct Security {
    server: Option<Arc<rustls::ServerConfig>>,
    client: Option<Arc<rustls::ClientConfig>>,
    auth: mec_http::oauth::Auth,
}

impl Security {
    fn new(files: Option<&ferry_tls::TlsFiles>) -> Result<Security, RanError> {
        let Some(files) = files else {
            return Ok(Security {
                server: None,
                client: None,
                auth: mec_http::oauth::Auth::local(),
            });
        };
        let bad = |e: String| RanError::Tls(e);
        Ok(Security {
            server: Some(
                ferry_tls::server_config_optional_client(files).map_err(|e| bad(e.to_string()))?,
            ),
            client: Some(ferry_tls::client_config(files).map_err(|e| bad(e.to_string()))?),
            auth: mec_http::oauth::Auth::new(&files.ca, part_policy)
                .map_err(|e| bad(e.to_string()))?,
        })
    }
}
