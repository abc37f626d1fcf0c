//! The one place where ferry's HTTP servers accept connections: the MEC producers
//! (`ferry ran`, `ferry control`) and the host API all serve through [`serve`], so a change
//! of transport (TLS, authentication) is made here once.
//!
//! Why not `axum::serve`: it offers no way to set hyper's HTTP/1 options, and some HTTP/1.1
//! clients (conformance tooling among them) look header names up in their canonical
//! Title-Case spelling (`Content-Type`), so ferry writes them that way. HTTP/1.1 only, as
//! `axum::serve` with axum's default features served before.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::Listener;
use axum::Router;
use ferry_tls::{MtlsListener, Peer as TlsPeer};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

/// How a server takes its connections.
pub enum Transport {
    /// Plain TCP: every request's `ConnectInfo<ferry_tls::Peer>` has no identity.
    Plain(tokio::net::TcpListener),
    /// Mutual TLS with this configuration: only clients with a certificate of its CA that
    /// names a ferry identity get through, and each request carries that identity.
    MutualTls(tokio::net::TcpListener, Arc<rustls::ServerConfig>),
}

/// Serves `router` on `listener` (plain TCP) until `shutdown` completes, then lets in-flight
/// requests finish. Every request carries the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(Transport::Plain(listener), router, shutdown).await
}

/// [`serve`] on either transport. Requests carry `ConnectInfo<SocketAddr>` and
/// `ConnectInfo<ferry_tls::Peer>` (the caller's identity over mutual TLS).
pub async fn serve_on(
    transport: Transport,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.title_case_headers(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    match transport {
        Transport::Plain(listener) => loop {
            let (stream, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let peer = TlsPeer {
                addr,
                identity: None,
            };
            spawn_connection(&builder, &graceful, &router, stream, peer, "http");
        },
        Transport::MutualTls(listener, config) => {
            // Handshakes run in the listener's own tasks; only verified connections come here.
            let mut listener = MtlsListener::new(listener, config)?;
            loop {
                let (stream, peer) = tokio::select! {
                    c = listener.accept() => c,
                    _ = &mut shutdown => break,
                };
                spawn_connection(&builder, &graceful, &router, stream, peer, "https");
            }
        }
    }
    graceful.shutdown().await;
    Ok(())
}

fn spawn_connection<IO>(
    builder: &hyper::server::conn::http1::Builder,
    graceful: &GracefulShutdown,
    router: &Router,
    io: IO,
    peer: TlsPeer,
    scheme: &'static str,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let service = router
        .clone()
        .map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            // Self links name the scheme the client used (`http::base_url`).
            req.headers_mut().insert(
                crate::http::SCHEME_HEADER,
                axum::http::HeaderValue::from_static(scheme),
            );
            req.map(Body::new)
        });
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(peer = %addr, "connection ended: {e}");
        }
    });
}

/// The address a peer connected from (set by [`serve`] on every request).
pub type Peer = ConnectInfo<SocketAddr>;
