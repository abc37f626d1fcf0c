//! `ferry control`: the MEC orchestrator and the MEC platform services of a ferry system, one
//! daemon, with an embedded persistent store.
//!
//! - `/app_pkgm/v1`, `/app_lcm/v1`: MEC 010-2 packages, instances, operations (`app_pkgm.rs`,
//!   `app_lcm.rs`); instances run as containers on `ferry host` daemons (`hosts.rs`);
//! - `/mec_app_support/v1`, `/mec_service_mgmt/v1`: MEC 011 readiness, traffic and DNS rules,
//!   timing, service registry (`app_support.rs`, `service_mgmt.rs`); traffic rules take effect
//!   through `DataPlane` (`dataplane.rs`);
//! - `/amsi/v1`: MEC 021 AMS registrations, subscriptions, adjacent app queries and the
//!   notifications (`ams.rs`); the relocation controller (`controller.rs`, records in
//!   `relocation.rs`) follows MEC 012 handovers from the RAN and moves instances;
//! - `/ferry/control/v1`: ferry's own views and operator actions (hosts, relocation records,
//!   settle, login links of the dashboard);
//! - `/ferry/dashboard/`: the operator's live dashboard (`dashboard.rs`);
//! - `/metrics`: Prometheus metrics (`metrics.rs`).
//!
//! Every resource lives in the store (`store.rs`): a restarted daemon serves the same
//! resources, restarts the subscriptions' delivery workers and re-arms their expiry timers.

pub mod ams;
pub mod app_lcm;
pub mod app_pkgm;
pub mod app_support;
pub mod client;
pub mod controller;
pub mod dashboard;
pub mod dataplane;
pub mod file_config;
pub mod filter;
pub mod follow;
pub mod hosts;
mod http;
pub mod metrics;
mod notify;
pub mod oauth;
pub mod relocation;
pub mod service_mgmt;
pub mod store;
pub mod ue_index;

pub use axum;
pub use dataplane::{CommandDataPlane, DataPlane, MemoryDataPlane};

use axum::routing::get;
use axum::Router;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use store::{Store, Table};
use tokio::task::AbortHandle;

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Subscriptions one client may hold per API unless configured otherwise: plenty for an app
/// (the counter holds one), few enough that no client fills the store.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;

/// What `ferry control` is told at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the store and uploaded packages live.
    pub state_dir: PathBuf,
    /// MEC hosts: name -> base URL of its `ferry host` API.
    pub hosts: BTreeMap<String, String>,
    /// Cell name -> the MEC host serving it (from the topology file).
    pub cells: BTreeMap<String, String>,
    /// Base URL of a MEC 013 Location API producer (ferry's RAN), to find a UE's cell.
    pub ran: Option<String>,
    /// The subnet app instances get their addresses from; `.1` is the gateway.
    pub app_subnet: (Ipv4Addr, u8),
    /// Where app instances reach this platform's MEC APIs (their `apiRoot`, given to them as
    /// `MEC_API_ROOT`); `None`: instances are not told (they cannot reach the platform).
    pub app_api_root: Option<String>,
    /// Where `ferry host`s reach this daemon: a migration tells it here the moment the
    /// target serves, and traffic switches then. `None`: it switches when the migration's
    /// report arrives (after the source's cleanup, and for post-copy after every page).
    pub callback_root: Option<String>,
    /// Test hooks (`ferry control --test-hooks DIR`): relocations held at named points.
    pub hooks: ferry_hooks::Hooks,
    /// Control's certificate, key and the operator's CA (`ferry pki`): with them it serves
    /// TLS (clients' certificates optional: ferry's parts present one, applications a token),
    /// issues access tokens, and calls the hosts and the RAN over mutual TLS. `None`: plain
    /// HTTP on loopback, no authentication (a developer's machine).
    pub tls: Option<ferry_tls::TlsFiles>,
    /// Subscriptions (of each API) one OAuth client may hold.
    pub max_subscriptions_per_client: usize,
    /// ECGI (`follow::ecgi_key`) -> the MEC host serving that cell (from the topology file):
    /// a handover's target host without asking the RAN.
    pub ecgis: BTreeMap<String, String>,
    /// How often to re-read where the followed UEs are (MEC 013) besides at start and after
    /// a detected gap; `None`: only then.
    pub reconcile_every: Option<std::time::Duration>,
    /// What the dashboard draws of the network (from the topology file).
    pub topology: Option<dashboard::TopologyView>,
    /// Where `ferry bench` wrote its last results: the dashboard links to them.
    pub bench_results: Option<PathBuf>,
}

impl Config {
    pub fn new(state_dir: PathBuf) -> Config {
        Config {
            state_dir,
            hosts: BTreeMap::new(),
            cells: BTreeMap::new(),
            ran: None,
            app_subnet: (Ipv4Addr::new(10, 200, 0, 0), 16),
            app_api_root: None,
            callback_root: None,
            hooks: ferry_hooks::Hooks::default(),
            tls: None,
            max_subscriptions_per_client: DEFAULT_MAX_SUBSCRIPTIONS,
            ecgis: BTreeMap::new(),
            reconcile_every: Some(follow::DEFAULT_RECONCILE_EVERY),
            topology: None,
            bench_results: None,
        }
    }
}

/// The control plane. Cheap to clone: all clones share one state.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    hosts: hosts::Hosts,
    data_plane: Arc<dyn DataPlane>,
    notifier: notify::Notifier,
    /// Delivery queue of each live subscription (any API), by subscription id.
    deliveries: Mutex<HashMap<String, notify::Delivery>>,
    /// Expiry timers (AMS subscriptions and registrations), by resource id.
    timers: Mutex<HashMap<String, AbortHandle>>,
    /// Changes of AMS registrations (for the relocation controller's WITH_CONFIRMATION and
    /// APPLICATION waits).
    registration_events: tokio::sync::broadcast::Sender<mec_api::ams::RegistrationInfo>,
    http: reqwest::Client,
    /// The security of the listener and of the calls control makes (`Config::tls`).
    security: Security,
    /// App instances with a lifecycle operation (or relocation) in progress.
    busy: Mutex<std::collections::HashSet<String>>,
    /// Serializes address allocation.
    placement: tokio::sync::Mutex<()>,
    /// The relocation controller's state (`controller.rs`).
    controller: controller::Controller,
    /// Which instances follow each UE (`ue_index.rs`).
    ue_index: ue_index::UeIndex,
    /// Where the UEs are (`follow.rs`).
    follow: follow::Follow,
    metrics: metrics::ControlMetrics,
    /// What the operator's dashboard shows live (`dashboard.rs`).
    dashboard: dashboard::Dashboard,
    /// Last heartbeat of each service with liveness (`service_mgmt.rs`); also serializes the
    /// read-modify-write of those services' state.
    heartbeats: Mutex<HashMap<String, std::time::SystemTime>>,
    /// Graceful stops and terminations waiting for the instance's `confirm_termination`
    /// (`app_support.rs`), by instance.
    pending_confirmations: Mutex<HashMap<String, PendingConfirmation>>,
}

/// What a graceful stop or termination waits for, and whom to wake.
type PendingConfirmation = (
    mec_api::app_support::OperationActionType,
    tokio::sync::oneshot::Sender<()>,
);

/// Marks an app instance busy until dropped (see `Control::claim`).
pub struct Claim {
    control: Control,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.control.inner.busy).remove(&self.id);
    }
}

/// Locks a mutex even if a panicking thread poisoned it (the maps stay consistent: every
/// critical section is one insert or remove).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Control {
    /// Opens the store in `config.state_dir` and restarts what the stored resources need:
    /// notification workers and expiry timers. Must run inside a tokio runtime.
    pub fn open(config: Config, data_plane: Arc<dyn DataPlane>) -> Result<Control, ControlError> {
        if config.hosts.is_empty() {
            tracing::warn!("no MEC hosts configured: instantiation will fail until some are given");
        }
        for (cell, host) in &config.cells {
            if !config.hosts.contains_key(host) {
                return Err(ControlError::Config(format!(
                    "cell '{cell}' is served by host '{host}', which is not among the hosts ({})",
                    config.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        std::fs::create_dir_all(&config.state_dir).map_err(|source| ControlError::StateDir {
            path: config.state_dir.display().to_string(),
            source,
        })?;
        let metrics = metrics::ControlMetrics::new();
        let mut store = Store::open(&config.state_dir)?;
        store.time_into(metrics.store_seconds.clone());
        let security = Security::new(config.tls.as_ref())?;
        let hosts = hosts::Hosts::new(&config.hosts, security.client.clone())
            .map_err(ControlError::Config)?;
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5));
        if let Some(tls) = &security.client {
            // The RAN is called as `control` (it admits control's certificate).
            http = http.use_preconfigured_tls((**tls).clone());
        }
        let http = http
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP client: {e}")))?;
        let (registration_events, _) = tokio::sync::broadcast::channel(256);
        let control = Control {
            inner: Arc::new(Inner {
                hosts,
                config,
                store,
                data_plane,
                notifier: notify::Notifier::new().metrics(metrics.delivery.clone()),
                deliveries: Mutex::new(HashMap::new()),
                timers: Mutex::new(HashMap::new()),
                registration_events,
                http,
                security,
                busy: Mutex::new(Default::default()),
                placement: tokio::sync::Mutex::new(()),
                controller: controller::Controller::new(),
                ue_index: ue_index::UeIndex::default(),
                follow: follow::Follow::default(),
                metrics,
                dashboard: dashboard::Dashboard::default(),
                heartbeats: Mutex::new(HashMap::new()),
                pending_confirmations: Mutex::new(HashMap::new()),
            }),
        };
        for r in ams::registrations(&control)? {
            if let Some(id) = &r.app_mobility_service_id {
                control.ue_index().set_registration(id, &r);
            }
        }
        for (instance, ue) in control.store().list::<String>(Table::InstanceUes)? {
            if let Ok(ue) = ue.parse() {
                control.ue_index().set_instance_ue(&instance, ue);
            }
        }
        // Ids sort in the order they were made: the last one of an instance is its latest.
        for (_, r) in control
            .store()
            .list::<relocation::RelocationRecord>(Table::Relocations)?
        {
            controller::note_relocation(&control, &r);
        }
        ams::restore(&control)?;
        app_pkgm::restore(&control)?;
        app_lcm::restore(&control)?;
        service_mgmt::restore(&control)?;
        app_support::restore(&control)?;
        for r in control.in_flight_relocations()? {
            // `serve` finishes or rolls these back (controller::recover).
            tracing::warn!(relocation = %r.id, instance = %r.app_instance_id, phase = ?r.phase,
                "relocation was in flight when the control plane stopped");
        }
        Ok(control)
    }

    /// Every HTTP API of the control plane, and the operator's dashboard.
    pub fn router(&self) -> Router {
        let etsi = ams::routes()
            .merge(app_pkgm::routes())
            .merge(app_lcm::routes())
            .merge(app_support::routes())
            .merge(service_mgmt::routes())
            .layer(axum::middleware::from_fn(oauth::own_application_paths))
            .layer(axum::middleware::from_fn(http::require_json_accept));
        etsi.merge(oauth::routes())
            .merge(ferry_api().split_for_parts().0)
            .route(
                ferry_metrics::PATH,
                get(ferry_metrics::serve).with_state(self.metrics().registry.clone()),
            )
            .fallback(http::not_found)
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.inner.security.auth.clone(),
                mec_http::oauth::authenticate,
            ))
            // The dashboard admits its own sessions (and the operator), nothing else.
            .merge(dashboard::routes(self.clone()))
            // Every answer counts, refusals included.
            .layer(axum::middleware::from_fn_with_state(
                self.metrics().http.clone(),
                ferry_metrics::track,
            ))
            .layer(axum::middleware::from_fn(http::problem_details))
    }

    /// Signs access tokens (`None` without `Config::tls`).
    pub(crate) fn token_issuer(&self) -> Option<&mec_http::oauth::TokenIssuer> {
        self.inner.security.issuer.as_ref()
    }

    /// The operator's CA certificate (PEM), which app instances are given to trust the
    /// platform's TLS.
    pub(crate) fn ca_pem(&self) -> Option<&str> {
        self.inner.security.ca_pem.as_deref()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// What `/metrics` serves (see `metrics.rs`).
    pub fn metrics(&self) -> &metrics::ControlMetrics {
        &self.inner.metrics
    }

    pub(crate) fn dashboard(&self) -> &dashboard::Dashboard {
        &self.inner.dashboard
    }

    pub(crate) fn pending_confirmations(
        &self,
    ) -> MutexGuard<'_, HashMap<String, PendingConfirmation>> {
        lock(&self.inner.pending_confirmations)
    }

    /// The services' last heartbeats, locked (see `Inner::heartbeats`).
    pub(crate) fn heartbeats(&self) -> MutexGuard<'_, HashMap<String, std::time::SystemTime>> {
        lock(&self.inner.heartbeats)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn hosts(&self) -> &hosts::Hosts {
        &self.inner.hosts
    }

    /// Which instances follow each UE.
    pub fn ue_index(&self) -> &ue_index::UeIndex {
        &self.inner.ue_index
    }

    pub fn data_plane(&self) -> &dyn DataPlane {
        self.inner.data_plane.as_ref()
    }

    /// Every change of an AMS registration (create, PUT), as stored.
    pub fn registration_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<mec_api::ams::RegistrationInfo> {
        self.inner.registration_events.subscribe()
    }

    /// Relocation records whose final MEC 021 outcome may not have been sent (the daemon
    /// stopped between recording it and sending it).
    pub fn unnotified_relocations(
        &self,
    ) -> Result<Vec<relocation::RelocationRecord>, store::StoreError> {
        Ok(self
            .store()
            .list::<relocation::RelocationRecord>(Table::Relocations)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.phase.is_final() && !r.notified)
            .collect())
    }

    /// Relocation records not in a final phase (the restart path of the controller).
    pub fn in_flight_relocations(
        &self,
    ) -> Result<Vec<relocation::RelocationRecord>, store::StoreError> {
        Ok(self
            .store()
            .list::<relocation::RelocationRecord>(Table::Relocations)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| !r.phase.is_final())
            .collect())
    }

    /// Claims an app instance for one operation; `None` if another one holds it (the caller
    /// answers 409). Lifecycle operations and relocations of one instance never overlap.
    pub fn claim(&self, id: &str) -> Option<Claim> {
        if lock(&self.inner.busy).insert(id.to_string()) {
            Some(Claim {
                control: self.clone(),
                id: id.to_string(),
            })
        } else {
            None
        }
    }

    pub(crate) fn placement(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.placement
    }

    /// Starts (or restarts) the delivery worker of a subscription.
    pub(crate) fn start_delivery(&self, id: &str, url: &str) {
        let d = self.inner.notifier.start(url.to_string(), id.to_string());
        lock(&self.inner.deliveries).insert(id.to_string(), d);
    }

    /// Queues a notification for a subscription; false if it has no worker.
    pub(crate) fn deliver(&self, id: &str, body: serde_json::Value) -> bool {
        match lock(&self.inner.deliveries).get(id) {
            Some(d) => {
                d.send(body);
                true
            }
            None => false,
        }
    }

    /// [`Control::deliver`] of a notification about `key` (an app instance): in order with
    /// the others about it, beside those about other keys.
    pub(crate) fn deliver_keyed(&self, id: &str, key: &str, body: serde_json::Value) -> bool {
        match lock(&self.inner.deliveries).get(id) {
            Some(d) => {
                d.send_keyed(key, body);
                true
            }
            None => false,
        }
    }

    /// Ends a subscription's delivery worker once its queue is drained, and its timer.
    pub(crate) fn stop_delivery(&self, id: &str) {
        lock(&self.inner.deliveries).remove(id);
        self.cancel_timer(id);
    }

    /// Runs `f` at `at` (now if past), replacing an earlier timer of the same id.
    pub(crate) fn set_timer(
        &self,
        id: &str,
        at: std::time::SystemTime,
        f: impl Future<Output = ()> + Send + 'static,
    ) {
        let wait = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            f.await;
        });
        if let Some(old) = lock(&self.inner.timers).insert(id.to_string(), task.abort_handle()) {
            old.abort();
        }
    }

    pub(crate) fn cancel_timer(&self, id: &str) {
        if let Some(t) = lock(&self.inner.timers).remove(id) {
            t.abort();
        }
    }

    /// Forgets a timer that fired (without aborting the running task).
    pub(crate) fn timer_fired(&self, id: &str) {
        lock(&self.inner.timers).remove(id);
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn publish_registration(&self, r: &mec_api::ams::RegistrationInfo) {
        // No receiver is fine: only a relocation waiting for the app listens.
        let _ = self.inner.registration_events.send(r.clone());
    }
}

/// What the OpenAPI document of `/ferry/control/v1` says besides its routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ferry control API",
        description = "ferry's own API of the control plane (`/ferry/control/v1`): the MEC hosts, \
            the relocation records, how following the UEs goes, the operator's decisions and \
            OAuth clients, and the callbacks of the RAN and the hosts. TLS: ferry's parts by \
            their certificate (the operator everything; the RAN its callback; a host the commit \
            callback); access tokens never open these paths. Errors are ProblemDetails. The \
            ETSI MEC APIs control serves have their own ETSI OpenAPI files."
    ),
    tags(
        (name = "hosts"), (name = "relocations"), (name = "ran"), (name = "clients"),
        (name = "dashboard"),
    )
)]
struct ControlDoc;

/// `/ferry/control/v1`: each route with its OpenAPI operation (one list for both).
fn ferry_api() -> utoipa_axum::router::OpenApiRouter<Control> {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(ControlDoc::openapi())
        .routes(routes!(hosts_view))
        .routes(routes!(relocations_view))
        .routes(routes!(follow_view))
        .routes(routes!(openapi_json))
        .routes(routes!(controller::committed))
        .routes(routes!(controller::settle))
        .routes(routes!(controller::client_downtime))
        .routes(routes!(dashboard::new_link))
        .routes(routes!(follow::cell_change))
        .merge(oauth::client_routes())
}

/// The OpenAPI document of `/ferry/control/v1`.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| ferry_api().split_for_parts().1)
}

#[utoipa::path(get, path = "/ferry/control/v1/openapi.json", tag = "hosts", description = "This document.", responses((status = 200, body = serde_json::Value)))]
async fn openapi_json() -> axum::response::Response {
    http::json(axum::http::StatusCode::OK, openapi())
}

/// Which of ferry's parts may call what on control, by the identity of their certificate:
/// the operator everything; the RAN only its CellChange notifications; a host only the
/// callback that says a migration committed; a metrics scraper only `/metrics`.
/// Applications come with tokens instead.
fn part_policy(id: &ferry_tls::Identity, method: &axum::http::Method, path: &str) -> bool {
    use ferry_tls::Identity;
    match id {
        Identity::Operator => true,
        Identity::Ran => method == axum::http::Method::POST && path == controller::CELL_CHANGE_PATH,
        Identity::Host(_) => {
            method == axum::http::Method::POST && controller::is_committed_path(path)
        }
        Identity::Metrics => method == axum::http::Method::GET && path == ferry_metrics::PATH,
        Identity::Control => false,
    }
}

/// What `Config::tls` turns on.
struct Security {
    /// The listener's TLS (client certificates optional).
    server: Option<Arc<rustls::ServerConfig>>,
    /// Control's client side to the hosts and the RAN.
    client: Option<Arc<rustls::ClientConfig>>,
    issuer: Option<mec_http::oauth::TokenIssuer>,
    auth: mec_http::oauth::Auth,
    ca_pem: Option<String>,
}

impl Security {
    fn new(files: Option<&ferry_tls::TlsFiles>) -> Result<Security, ControlError> {
        let Some(files) = files else {
            return Ok(Security {
                server: None,
                client: None,
                issuer: None,
                auth: mec_http::oauth::Auth::local(),
                ca_pem: None,
            });
        };
        let tls = |e: ferry_tls::TlsError| ControlError::Config(format!("TLS: {e}"));
        let token = |e: mec_http::oauth::TokenError| ControlError::Config(format!("tokens: {e}"));
        Ok(Security {
            server: Some(ferry_tls::server_config_optional_client(files).map_err(tls)?),
            client: Some(ferry_tls::client_config(files).map_err(tls)?),
            issuer: Some(mec_http::oauth::TokenIssuer::new(files).map_err(token)?),
            auth: mec_http::oauth::Auth::new(&files.ca, part_policy).map_err(token)?,
            ca_pem: Some(ferry_tls::ca_pem(&files.ca).map_err(tls)?),
        })
    }
}

impl Control {
    /// `https` when control serves TLS.
    pub fn scheme(&self) -> &'static str {
        if self.inner.security.server.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

#[utoipa::path(get, path = "/ferry/control/v1/hosts", tag = "hosts", description = "The MEC hosts: name -> the URL of its ferry host API.", responses((status = 200, body = std::collections::BTreeMap<String, String>), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn hosts_view(
    axum::extract::State(c): axum::extract::State<Control>,
) -> axum::response::Response {
    http::json(axum::http::StatusCode::OK, &c.config().hosts)
}

#[utoipa::path(get, path = "/ferry/control/v1/follow", tag = "ran", description = "How following the UEs goes (MEC 012 notifications, MEC 013 reconciliations).", responses((status = 200, body = follow::FollowView), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn follow_view(
    axum::extract::State(c): axum::extract::State<Control>,
) -> axum::response::Response {
    let view = c.inner.follow.view(c.ue_index().ues().len());
    http::json(axum::http::StatusCode::OK, &view)
}

#[utoipa::path(get, path = "/ferry/control/v1/relocations", tag = "relocations", description = "Every relocation record, oldest first.", responses((status = 200, body = Vec<relocation::RelocationRecord>), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn relocations_view(
    axum::extract::State(c): axum::extract::State<Control>,
) -> Result<axum::response::Response, http::ApiError> {
    let all: Vec<relocation::RelocationRecord> = c
        .store()
        .list(Table::Relocations)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    Ok(http::json(axum::http::StatusCode::OK, &all))
}

/// Serves the control plane's APIs on `listener` until `shutdown` completes. With a RAN, it
/// also follows the UEs (`follow.rs`: MEC 012 CellChange with the callback on this listener,
/// MEC 013 reconciliation) and deletes the subscription at shutdown; interrupted relocations
/// are finished or rolled back first.
pub async fn serve(
    control: Control,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut addr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        // The RAN must reach us on a concrete address; loopback is the only one we know.
        tracing::warn!("listening on all addresses: the RAN callback uses 127.0.0.1");
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let c2 = control.clone();
    let transport = match &control.inner.security.server {
        Some(config) => mec_http::serve::Transport::MutualTls(listener, config.clone()),
        None => mec_http::serve::Transport::Plain(listener),
    };
    let callback = format!(
        "{}://{addr}{}",
        control.scheme(),
        controller::CELL_CHANGE_PATH
    );
    // The instances of interrupted relocations are claimed before anything can want to
    // move them; recovery may wait for a source host still migrating: follow the UEs
    // meanwhile (their moves wait for the claims).
    let interrupted = controller::claim_interrupted(&control);
    tokio::spawn(controller::recover(control.clone(), interrupted));
    let follower = tokio::spawn(follow::run(c2, callback));
    let ues = tokio::spawn(dashboard::watch_ues(control.clone()));
    let liveness = tokio::spawn(service_mgmt::watch_liveness(control.clone()));
    let result = mec_http::serve::serve_on(transport, control.router(), shutdown).await;
    follower.abort();
    ues.abort();
    liveness.abort();
    follow::unsubscribe_ran(&control).await;
    result
}
