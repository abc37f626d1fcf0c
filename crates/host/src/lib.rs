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

pub use api::{router, AppState};
use ferry_runtime::Runtime;

/// Base path of ferry's host API.
pub const API_BASE: &str = "/ferry/v1";

/// Serves the API on `listener` until `shutdown` completes (in-flight requests finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    let state = AppState::new(runtime, listen.ip());
    // Uncommitted incoming migrations whose deadline passed are removed here.
    let reaper = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.incoming.reap(&s.rt)).await;
            }
        })
    };
    let app = router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    reaper.abort();
    let _ = tokio::task::spawn_blocking(move || state.incoming.shutdown(&state.rt)).await;
    result
}
