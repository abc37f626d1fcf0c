//! The `ferry host` daemon: one MEC host's HTTP/JSON API over its container runtime
//! (the MEPM + VIM role of the ETSI architecture).
//!
//! All resources live under [`API_BASE`]. Errors are RFC 7807 ProblemDetails
//! (`application/problem+json`) with the status that fits the failure (see [`error`]).
//! Runtime work (runc, CRIU, unpacking) blocks, so each request runs it on tokio's blocking pool.

pub mod api;
pub mod error;

use std::future::Future;
use std::sync::Arc;

pub use api::router;
use ferry_runtime::Runtime;

/// Base path of ferry's host API.
pub const API_BASE: &str = "/ferry/v1";

/// Serves the API on `listener` until `shutdown` completes (in-flight requests finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(runtime))
        .with_graceful_shutdown(shutdown)
        .await
}
