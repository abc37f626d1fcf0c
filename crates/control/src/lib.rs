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
//! - `/ferry/control/v1`: ferry's own read-only views (hosts, relocation records).
//!
//! Every resource lives in the store (`store.rs`): a restarted daemon serves the same
//! resources, restarts the subscriptions' delivery workers and re-arms their expiry timers.

pub mod ams;
pub mod app_lcm;
pub mod app_pkgm;
pub mod app_support;
pub mod client;
pub mod controller;
pub mod dataplane;
pub mod file_config;
pub mod filter;
pub mod hosts;
mod http;
mod notify;
pub mod relocation;
pub mod service_mgmt;
pub mod store;

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
    /// Mutual TLS to the hosts (control's certificate, the operator's CA).
    pub host_tls: Option<Arc<rustls::ClientConfig>>,
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
            host_tls: None,
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
    /// App instances with a lifecycle operation (or relocation) in progress.
    busy: Mutex<std::collections::HashSet<String>>,
    /// Serializes address allocation.
    placement: tokio::sync::Mutex<()>,
    /// The relocation controller's state (`controller.rs`).
    controller: controller::Controller,
}

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
        let store = Store::open(&config.state_dir)?;
        let hosts = hosts::Hosts::new(&config.hosts, config.host_tls.clone())
            .map_err(ControlError::Config)?;
        let (registration_events, _) = tokio::sync::broadcast::channel(256);
        let control = Control {
            inner: Arc::new(Inner {
                hosts,
                config,
                store,
                data_plane,
                notifier: notify::Notifier::new(),
                deliveries: Mutex::new(HashMap::new()),
                timers: Mutex::new(HashMap::new()),
                registration_events,
                http: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(5))
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new()),
                busy: Mutex::new(Default::default()),
                placement: tokio::sync::Mutex::new(()),
                controller: controller::Controller::new(),
            }),
        };
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

    /// Every HTTP API of the control plane.
    pub fn router(&self) -> Router {
        let etsi = ams::routes()
            .merge(app_pkgm::routes())
            .merge(app_lcm::routes())
            .merge(app_support::routes())
            .merge(service_mgmt::routes())
            .layer(axum::middleware::from_fn(http::require_json_accept));
        etsi.route("/ferry/control/v1/hosts", get(hosts_view))
            .route("/ferry/control/v1/relocations", get(relocations_view))
            .route(
                controller::COMMITTED_PATH,
                axum::routing::post(controller::committed),
            )
            .route(
                "/ferry/control/v1/relocations/{id}/settle",
                axum::routing::post(controller::settle),
            )
            .route(
                controller::CELL_CHANGE_PATH,
                axum::routing::post(controller::cell_change),
            )
            .fallback(http::not_found)
            .with_state(self.clone())
            .layer(axum::middleware::from_fn(http::problem_details))
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn hosts(&self) -> &hosts::Hosts {
        &self.inner.hosts
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

async fn hosts_view(
    axum::extract::State(c): axum::extract::State<Control>,
) -> axum::response::Response {
    http::json(axum::http::StatusCode::OK, &c.config().hosts)
}

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
/// also subscribes to MEC 012 CellChange (callback on this listener) and deletes the
/// subscription at shutdown; interrupted relocations are finished or rolled back first.
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
    let callback = format!("http://{addr}{}", controller::CELL_CHANGE_PATH);
    // Recovery may wait for a source host still migrating: follow handovers meanwhile.
    tokio::spawn(controller::recover(control.clone()));
    let subscriber = tokio::spawn(controller::subscribe_ran(c2, callback));
    let result = mec_http::serve::serve(listener, control.router(), shutdown).await;
    subscriber.abort();
    controller::unsubscribe_ran(&control).await;
    result
}
