//! Health checks of the daemons the testbed starts: one GET, over mutual TLS when given a
//! client configuration (through `mec_http::raw`, the project's bare HTTP/1.1 client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// GETs `path` from `addr` within `timeout` (connect, and each read or write); returns the
/// status code.
pub fn get_status(
    addr: &str,
    path: &str,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<u16> {
    let sa: SocketAddr = addr.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad address {addr}"),
        )
    })?;
    mec_http::raw::request_within(sa, tls.cloned(), (timeout, timeout), "GET", path, &[], b"")
        .map(|r| r.status)
}
