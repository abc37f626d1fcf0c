//! A minimal HTTP/1.1 client that keeps the response bytes as they came: for tests that check
//! the form of an answer (the case of header names, `Allow`, `Location`), which higher-level
//! clients normalise away. One request per connection (`Connection: close`), bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Most bytes read of one answer.
const MAX_ANSWER: u64 = 1 << 20;

/// An answer as received.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names and values exactly as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of a header, its name compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Are all header names in canonical Title-Case (`Content-Type`, not `content-type`)?
    pub fn title_case(&self) -> bool {
        !self.headers.is_empty()
            && self.headers.iter().all(|(name, _)| {
                name.split('-')
                    .all(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            })
    }

    /// For tests: panics unless this is an error answer with `status`, Title-Case headers,
    /// `Content-Type: application/problem+json` and a ProblemDetails body with that status
    /// and a detail.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.title_case(), "{:?}", self.headers);
        assert_eq!(
            self.header("Content-Type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["status"], status, "{v}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    }
}

/// [`request`] from async code (on tokio's blocking pool), panicking if it fails: for tests.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        request(addr, &method, &path, &extra, body.as_bytes())
    })
    .await
    .expect("request task")
    .unwrap_or_else(|e| panic!("request to {addr}: {e}"))
}

/// Sends one request (`extra` header lines as `("Name", "value")`) and reads the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    request_within(addr, None, TIMEOUTS, method, path, extra, body)
}

/// [`request`] over TLS with `config` (a client certificate for mutual TLS), the server
/// named by its IP address.
pub fn request_tls(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    request_within(addr, Some(config), TIMEOUTS, method, path, extra, body)
}

/// Connect and read deadlines of [`request`] and [`request_tls`].
const TIMEOUTS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(10));

/// One request with its own deadlines (`(connect, read and write)`), over TLS with `tls`.
pub fn request_within(
    addr: SocketAddr,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    (connect, io): (Duration, Duration),
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let tcp = TcpStream::connect_timeout(&addr, connect)?;
    tcp.set_read_timeout(Some(io))?;
    tcp.set_write_timeout(Some(io))?;
    match tls {
        None => exchange(tcp, addr, method, path, extra, body),
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let conn =
                rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
            let stream = rustls::StreamOwned::new(conn, tcp);
            exchange(stream, addr, method, path, extra, body)
        }
    }
}

fn exchange(
    mut s: impl Read + Write,
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> std::io::Result<RawResponse> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the header block"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("header block is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("malformed chunked body"))?;
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?.split(';').next()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r =
            parse(b"HTTP/1.1 201 Created\r\nLocation: /x\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.headers[0], ("Location".into(), "/x".into()));
        assert_eq!(r.header("Content-Length"), Some("2"));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"{}");
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
