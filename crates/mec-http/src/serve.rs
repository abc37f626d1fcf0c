//! The one place where ferry's HTTP servers accept connections: the MEC producers
//! (`ferry ran`, `ferry control`) and the host API all serve through [`serve`], so a change
//! of transport (TLS, authentication) is made here once.
//!
//! Why not `axum::serve`: it offers no way to set hyper's HTTP/1 options, and some HTTP/1.1
//! clients (conformance tooling among them) look header names up in their canonical
//! Title-Case spelling (`Content-Type`), so ferry writes them that way. HTTP/1.1 only, as
//! `axum::serve` with axum's default features served before.
//!
//! A request body its handler leaves unread is read out (bounded) before the response goes,
//! so the connection stays usable for the client (see `spawn_connection`).

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
    let router = router.clone();
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let (router, peer) = (router.clone(), peer.clone());
        async move {
            let (back, mut unread) = tokio::sync::oneshot::channel();
            let mut req = req.map(|body| {
                Body::new(HandBack {
                    body: Some(body),
                    back: Some(back),
                })
            });
            req.extensions_mut().insert(ConnectInfo(addr));
            req.extensions_mut().insert(ConnectInfo(peer));
            // Self links name the scheme the client used (`http::base_url`).
            req.headers_mut().insert(
                crate::http::SCHEME_HEADER,
                axum::http::HeaderValue::from_static(scheme),
            );
            let mut response = router.oneshot(req).await?;
            // The handler answered without reading the whole body (a 405, a rejection before
            // the body is parsed): read the rest before the answer goes. Otherwise hyper
            // closes the connection after the answer unless the body had already arrived,
            // without saying so (no `Connection: close`): a client still writing the body, or
            // sending its next request on the kept-alive connection, meets a reset.
            if let Ok(rest) = unread.try_recv() {
                if !drain(rest).await {
                    // Too long or too slow to read out: say the connection ends here.
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(peer = %addr, "connection ended: {e}");
        }
    });
}

/// Most of an unread request body the server reads out to keep the connection (beyond it,
/// the response says `Connection: close`).
const DRAIN_MAX: usize = 1 << 20;
/// How long the server waits for the rest of an unread request body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A request's body as its handler sees it. Dropped before its end (the handler answered
/// without reading it all), it hands the rest back to [`spawn_connection`]'s service.
struct HandBack {
    body: Option<Incoming>,
    back: Option<tokio::sync::oneshot::Sender<Incoming>>,
}

impl hyper::body::Body for HandBack {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.body.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

impl Drop for HandBack {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.body.take(), self.back.take()) {
            if !hyper::body::Body::is_end_stream(&body) {
                let _ = back.send(body);
            }
        }
    }
}

/// Reads `body` to its end, within [`DRAIN_MAX`] and [`DRAIN_TIMEOUT`]; false when it gave up.
async fn drain(mut body: Incoming) -> bool {
    use hyper::body::Body as _;
    let read = async {
        let mut left = DRAIN_MAX;
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(frame) = frame else { return false };
            let len = frame.data_ref().map_or(0, |d| d.len());
            match left.checked_sub(len) {
                Some(l) => left = l,
                None => return false,
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIMEOUT, read)
        .await
        .unwrap_or(false)
}

/// The address a peer connected from (set by [`serve`] on every request).
pub type Peer = ConnectInfo<SocketAddr>;
