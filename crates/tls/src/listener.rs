//! Serving axum over mutual TLS, with the caller's identity for every request.
//!
//! [`MtlsListener`] is an axum [`Listener`]: it accepts TCP connections, runs each TLS
//! handshake in its own task (a slow or silent client never holds up the others, and gives up
//! after [`HANDSHAKE_TIMEOUT`]), and hands axum only connections whose client certificate chains
//! to the CA and names a ferry identity. Handlers read who called through
//! `ConnectInfo<Peer>`; over plain TCP (a lab run with `--insecure`) the identity is `None`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::{peer_identity, Identity};

/// How long a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The identity its certificate names; `None` over plain TCP.
    pub identity: Option<Identity>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.identity {
            Some(id) => write!(f, "{id} at {}", self.addr),
            None => write!(f, "{} (no certificate)", self.addr),
        }
    }
}

pub struct MtlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for MtlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl MtlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<MtlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let tls = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(conn) = handshake(&tls, stream, addr).await {
                        let _ = tx.send(conn).await;
                    }
                });
            }
        });
        Ok(MtlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<(TlsStream<TcpStream>, Peer)> {
    let _ = stream.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(peer = %addr, "TLS handshake refused: {e}");
            return None;
        }
        Err(_) => {
            tracing::warn!(peer = %addr, "TLS handshake timed out");
            return None;
        }
    };
    // The verifier already checked a presented certificate against the CA; it must also say
    // who it is. No certificate at all gets this far only from a configuration that makes
    // it optional (`server_config_optional_client`): the caller then has no identity.
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(peer_identity);
    match identity {
        Some(Ok(id)) => Some((
            stream,
            Peer {
                addr,
                identity: Some(id),
            },
        )),
        Some(Err(e)) => {
            tracing::warn!(peer = %addr, "client certificate refused: {e}");
            None
        }
        None => Some((
            stream,
            Peer {
                addr,
                identity: None,
            },
        )),
    }
}

impl Listener for MtlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor task ended (only when aborted): nothing will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.local,
            identity: None,
        })
    }
}

impl Connected<IncomingStream<'_, MtlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, MtlsListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            identity: None,
        }
    }
}
