//! A minimal HTTP/1.1 GET over a TCP stream, for health checks of the daemons the testbed
//! starts (a blocking library has no use for a full client); over mutual TLS when given a
//! client configuration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// GETs `path` from `addr`; returns the status code.
pub fn get_status(
    addr: &str,
    path: &str,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<u16> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| invalid(format!("bad address {addr}")))?;
    let tcp = TcpStream::connect_timeout(&sa, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 64];
    let n = match tls {
        None => {
            let mut s = tcp;
            s.write_all(request.as_bytes())?;
            s.read(&mut head)?
        }
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(sa.ip().into());
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| invalid(e.to_string()))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(request.as_bytes())?;
            s.read(&mut head)?
        }
    };
    let line = String::from_utf8_lossy(&head[..n]);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}
