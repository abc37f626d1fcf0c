//! The HTTP/1.1 the counter speaks, std only: reading a request head as a server (bounded, so
//! a peer cannot make it allocate without limit) and a small client for the MEC APIs and for
//! handing the user context to another instance (one request per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const MAX_LINE: u64 = 8192;
const MAX_HEADERS: usize = 100;
/// Largest answer body the client reads (MEC API answers are small).
const MAX_ANSWER: u64 = 16 << 20;

/// Reads one line of at most `MAX_LINE` bytes; `None` at end of stream.
fn line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(invalid("line too long or cut off"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("not UTF-8"))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Header lines up to the blank line, names lower-cased.
fn headers(r: &mut impl BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        let Some(l) = line(r)? else {
            return Err(invalid("connection closed in the headers"));
        };
        if l.is_empty() {
            return Ok(out);
        }
        if out.len() == MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        if let Some((k, v)) = l.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A request line and the headers the server needs.
pub struct Head {
    pub method: String,
    pub path: String,
    /// `Content-Length` (0 when absent).
    pub length: u64,
    /// The body is chunked (not supported by the server: refused).
    pub chunked: bool,
}

/// Reads a request head; `None` when the peer closed the connection between requests.
pub fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let Some(request) = line(r)? else {
        return Ok(None);
    };
    let mut words = request.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("/");
    // The path without the query: the counter's resources take no parameters.
    let path = target.split('?').next().unwrap_or("/").to_string();
    let h = headers(r)?;
    let length = match header(&h, "content-length") {
        Some(v) => v.parse().map_err(|_| invalid("bad Content-Length"))?,
        None => 0,
    };
    let chunked =
        header(&h, "transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    Ok(Some(Head {
        method,
        path,
        length,
        chunked,
    }))
}

/// `http://HOST[:PORT][/PATH]`, split.
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{url}' is not an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // IPv4 addresses and names only: ferry's app subnets are IPv4.
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse().map_err(|_| format!("'{url}': bad port '{p}'"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("'{url}' names no host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// An answer.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Connects to `host:port`, retrying refused or unreachable connections until `patience`
/// ran out (the peer may still be starting) or `give_up` says so.
pub fn connect(
    host: &str,
    port: u16,
    patience: Duration,
    give_up: &dyn Fn() -> bool,
) -> Result<TcpStream, String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to nothing"))?;
    let deadline = std::time::Instant::now() + patience;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if std::time::Instant::now() >= deadline || give_up() => {
                return Err(format!("cannot connect to {addr}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One request with a JSON body (or none), `Connection: close`.
pub fn request(method: &str, url: &str, json: Option<&str>) -> Result<Response, String> {
    let body = json.unwrap_or("").as_bytes();
    send(
        method,
        url,
        json.map(|_| "application/json"),
        body.len() as u64,
        Duration::from_secs(3),
        &|| false,
        |w| w.write_all(body),
    )
}

/// One request whose body of `length` bytes `write_body` writes (streamed, not buffered);
/// connecting is retried as `connect` does.
pub fn send(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    length: u64,
    patience: Duration,
    give_up: &dyn Fn() -> bool,
    write_body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Response, String> {
    let u = Url::parse(url)?;
    let stream = connect(&u.host, u.port, patience, give_up)?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let fail = |e: std::io::Error| format!("{method} {url}: {e}");
    let mut w = std::io::BufWriter::with_capacity(1 << 16, &stream);
    write!(
        w,
        "{method} {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {length}\r\n",
        u.path, u.host, u.port
    )
    .map_err(fail)?;
    if let Some(t) = content_type {
        write!(w, "Content-Type: {t}\r\n").map_err(fail)?;
    }
    w.write_all(b"\r\n").map_err(fail)?;
    write_body(&mut w).map_err(fail)?;
    w.flush().map_err(fail)?;
    drop(w);
    read_response(&mut BufReader::new(&stream)).map_err(fail)
}

fn read_response(r: &mut impl BufRead) -> std::io::Result<Response> {
    let status_line = line(r)?.ok_or_else(|| invalid("no answer"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers = headers(r)?;
    let mut body = Vec::new();
    if header(&headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = line(r)?.ok_or_else(|| invalid("cut off chunk"))?;
            let size = u64::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len() as u64 + size > MAX_ANSWER {
                return Err(invalid("answer too large"));
            }
            r.by_ref().take(size).read_to_end(&mut body)?;
            line(r)?;
        }
    } else if let Some(n) = header(&headers, "content-length") {
        let n: u64 = n.parse().map_err(|_| invalid("bad Content-Length"))?;
        if n > MAX_ANSWER {
            return Err(invalid("answer too large"));
        }
        r.by_ref().take(n).read_to_end(&mut body)?;
        if body.len() as u64 != n {
            return Err(invalid("answer cut off"));
        }
    } else {
        r.by_ref().take(MAX_ANSWER).read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://10.0.0.1:7021/amsi/v1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.0.0.1", 7021, "/amsi/v1")
        );
        let u = Url::parse("http://example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://x:99999/").is_err());
    }

    #[test]
    fn heads_and_answers() {
        let mut r = std::io::Cursor::new(
            b"POST /context?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        );
        let h = read_head(&mut r).unwrap().unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.length),
            ("POST", "/context", 3)
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10000));
        assert!(read_head(&mut std::io::Cursor::new(long.into_bytes())).is_err());
        let bad = b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec();
        assert!(read_head(&mut std::io::Cursor::new(bad)).is_err());

        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nLocation: /s/1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let a = read_response(&mut std::io::Cursor::new(chunked.to_vec())).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (201, b"abcde".as_slice()));
        assert_eq!(a.header("location"), Some("/s/1"));
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec();
        assert!(read_response(&mut std::io::Cursor::new(cut)).is_err());
        assert_eq!(encode("(eq,a/b,x y)"), "%28eq%2Ca%2Fb%2Cx%20y%29");
    }
}
