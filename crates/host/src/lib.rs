//! The `ferry host` daemon: one MEC host's HTTP/JSON API over its container runtime
//! (the MEPM + VIM role of the ETSI architecture).
//!
//! All resources live under [`API_BASE`]. Errors are RFC 7807 ProblemDetails
//! (`application/problem+json`) with the status that fits the failure (see [`error`]).
//! Runtime work (runc, CRIU, unpacking) blocks, so each request runs it on tokio's blocking pool.

pub mod access;
pub mod api;
pub mod error;
pub mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use api::{router, AppState};
use ferry_migration::{Engine, EngineConfig};
use ferry_runtime::Runtime;

/// Base path of ferry's host API.
pub const API_BASE: &str = "/ferry/v1";

/// How long a stopping daemon waits for outgoing migrations before their commit decision.
const DRAIN: Duration = Duration::from_secs(30);

/// How a host's API is reached.
pub enum Security {
    /// Mutual TLS with this configuration (the host's certificate, clients' CA); callers
    /// are authorized by identity ([`access`]).
    MutualTls(Arc<rustls::ServerConfig>),
    /// Plain HTTP, nothing checked: `ferry host --insecure`, for a lab.
    Insecure,
}

/// Serves the API on `listener` until `shutdown` completes (in-flight requests finish).
/// Opens the migration engine first: what a previous daemon left is settled in the
/// background from here on.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runtime: Arc<Runtime>,
    mut engine: EngineConfig,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    engine.listen_ip = listener.local_addr()?.ip();
    let metrics = metrics::HostMetrics::new();
    engine.reports = ferry_migration::ReportSink::new({
        let m = metrics.clone();
        move |r| m.observe(r)
    });
    let handle = tokio::runtime::Handle::current();
    let rt = runtime.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::open(rt, engine, handle))
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    let state = AppState {
        rt: runtime,
        engine: engine.clone(),
        mutual_tls: matches!(security, Security::MutualTls(_)),
        metrics,
    };
    // Uncommitted incoming copies past their deadline go, old records are pruned.
    let ticker = {
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let e = engine.clone();
                let _ = tokio::task::spawn_blocking(move || e.tick()).await;
            }
        })
    };
    let transport = match security {
        Security::MutualTls(config) => mec_http::serve::Transport::MutualTls(listener, config),
        Security::Insecure => mec_http::serve::Transport::Plain(listener),
    };
    let result = mec_http::serve::serve_on(transport, router(state), shutdown).await;
    ticker.abort();
    let _ = tokio::task::spawn_blocking(move || engine.shutdown(DRAIN)).await;
    result
}
