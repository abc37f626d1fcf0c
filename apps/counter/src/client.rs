//! The counter's HTTP client, for the MEC APIs and for handing the user context to another
//! instance: ureq, blocking, so the MEC code keeps its plain threads and the context streams
//! from the locked ballast. The MEC APIs are `https://` when the platform gives the instance
//! its CA (`MEC_CA_CERT`), with a bearer token (`oauth.rs`); other instances are plain HTTP
//! inside the platform. One request per connection, every call with deadlines.

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use ureq::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

/// Largest answer body read (MEC API answers are small).
const MAX_ANSWER: u64 = 16 << 20;
/// Connecting to a peer that is up takes well under this.
const CONNECT: Duration = Duration::from_secs(2);
/// A MEC API call, all of it.
const CALL: Duration = Duration::from_secs(10);
/// No progress on a read or write for this long ends a transfer (a large context on a slow
/// link takes longer in total, but never stalls).
const STALL: Duration = Duration::from_secs(30);
/// How long a MEC API call retries a refused connection (as a hand-off's target does).
const API_PATIENCE: Duration = Duration::from_secs(3);

/// An answer, whatever its status.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// The platform's CA (`MEC_CA_CERT`, PEM): the only root an `https://` MEC API may chain
/// to. Without it, https is refused (no root trusted), never accepted unverified.
fn tls_config() -> ureq::tls::TlsConfig {
    let pem = std::env::var("MEC_CA_CERT").unwrap_or_default();
    let roots: Vec<_> = ureq::tls::parse_pem(pem.as_bytes())
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
        .build()
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .tls_config(tls_config())
            // Statuses are the caller's to judge; no proxy from the environment; a fresh
            // connection per request (a pooled one may be stale after a migration).
            .http_status_as_error(false)
            .proxy(None)
            .max_idle_connections(0)
            .timeout_connect(Some(CONNECT))
            .timeout_per_read(Some(STALL))
            .timeout_per_write(Some(STALL))
            .build()
            .into()
    })
}

/// The peer is not (yet) there: worth another try. Told by the error's kind, not its text.
fn not_connected(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, HostUnreachable, NetworkUnreachable};
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(ureq::Timeout::Connect) => true,
        ureq::Error::Io(e) => matches!(
            e.kind(),
            ConnectionRefused | HostUnreachable | NetworkUnreachable
        ),
        _ => false,
    }
}

/// Runs `attempt` again while the peer cannot be reached, until `patience` ran out or
/// `give_up` says so; then reads the answer.
fn call(
    what: &str,
    patience: Duration,
    give_up: &dyn Fn() -> bool,
    mut attempt: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, String> {
    let deadline = Instant::now() + patience;
    let mut answer = loop {
        match attempt() {
            Err(e) if not_connected(&e) && Instant::now() < deadline && !give_up() => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => return Err(format!("{what}: {e}")),
            Ok(a) => break a,
        }
    };
    let location = answer
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| format!("{what}: reading the answer: {e}"))?;
    Ok(Answer {
        status: answer.status().as_u16(),
        location,
        body,
    })
}

/// `Authorization: Bearer TOKEN` for a MEC API call, when there is a token.
fn bearer(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("Bearer {t}"))
}

/// `GET url?k=v...` (values percent-encoded).
pub fn get(url: &str, query: &[(&str, &str)], token: Option<&str>) -> Result<Answer, String> {
    call(&format!("GET {url}"), API_PATIENCE, &|| false, || {
        let mut r = agent().get(url);
        for (k, v) in query {
            r = r.query(*k, *v);
        }
        if let Some(b) = bearer(token) {
            r = r.header(AUTHORIZATION, b);
        }
        r.config().timeout_global(Some(CALL)).build().call()
    })
}

/// `POST url` with an `application/x-www-form-urlencoded` body and HTTP Basic credentials
/// (the OAuth 2.0 token request).
pub fn post_form(url: &str, basic: &str, form: &[(&str, &str)]) -> Result<Answer, String> {
    call(&format!("POST {url}"), API_PATIENCE, &|| false, || {
        agent()
            .post(url)
            .header(AUTHORIZATION, format!("Basic {basic}"))
            .config()
            .timeout_global(Some(CALL))
            .build()
            .send_form(form.iter().copied())
    })
}

fn json(body: &impl Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(body).map_err(|e| format!("cannot encode a request: {e}"))
}

/// `POST url` with a JSON body.
pub fn post(url: &str, body: &impl Serialize, token: Option<&str>) -> Result<Answer, String> {
    let body = json(body)?;
    call(&format!("POST {url}"), API_PATIENCE, &|| false, || {
        let mut r = agent().post(url).header(CONTENT_TYPE, "application/json");
        if let Some(b) = bearer(token) {
            r = r.header(AUTHORIZATION, b);
        }
        r.config()
            .timeout_global(Some(CALL))
            .build()
            .send(&body[..])
    })
}

/// `PUT url` with a JSON body.
pub fn put(url: &str, body: &impl Serialize, token: Option<&str>) -> Result<Answer, String> {
    let body = json(body)?;
    call(&format!("PUT {url}"), API_PATIENCE, &|| false, || {
        let mut r = agent().put(url).header(CONTENT_TYPE, "application/json");
        if let Some(b) = bearer(token) {
            r = r.header(AUTHORIZATION, b);
        }
        r.config()
            .timeout_global(Some(CALL))
            .build()
            .send(&body[..])
    })
}

/// `DELETE url`.
pub fn delete(url: &str, token: Option<&str>) -> Result<Answer, String> {
    call(&format!("DELETE {url}"), API_PATIENCE, &|| false, || {
        let mut r = agent().delete(url);
        if let Some(b) = bearer(token) {
            r = r.header(AUTHORIZATION, b);
        }
        r.config().timeout_global(Some(CALL)).build().call()
    })
}

/// `POST url` with a body of `length` bytes that `body()` reads out (streamed, not
/// buffered; a new reader for each try), retrying a refused connection for `patience`.
pub fn post_stream<R: Read>(
    url: &str,
    content_type: &str,
    length: u64,
    patience: Duration,
    give_up: &dyn Fn() -> bool,
    mut body: impl FnMut() -> R,
) -> Result<Answer, String> {
    call(&format!("POST {url}"), patience, give_up, || {
        let mut reader = body();
        agent()
            .post(url)
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, length)
            .send(ureq::SendBody::from_reader(&mut reader))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-shot server: answers `answer` and hands back the request line it got.
    fn once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(&s);
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
            }
            (&s).write_all(answer).unwrap();
            first
        });
        (url, t)
    }

    #[test]
    fn queries_are_encoded_and_answers_read_whatever_their_status() {
        let (url, t) =
            once(b"HTTP/1.1 404 Not Found\r\nLocation: /x\r\nContent-Length: 2\r\n\r\n{}");
        let a = get(
            &format!("{url}/amsi/v1/app_mobility_services"),
            &[("filter", "(eq,a/b,x y)")],
            None,
        )
        .unwrap();
        assert_eq!(
            (a.status, a.location.as_deref(), &a.body[..]),
            (404, Some("/x"), &b"{}"[..])
        );
        let line = t.join().unwrap();
        // Parentheses may stay as they are in a query (RFC 3986 sub-delims).
        assert_eq!(
            line,
            "GET /amsi/v1/app_mobility_services?filter=(eq%2Ca%2Fb%2Cx%20y) HTTP/1.1\r\n"
        );
    }

    /// A refused connection is tried again until the peer is up (a hand-off's target may
    /// still be starting), and not once `give_up` says so.
    #[test]
    fn refused_connections_are_retried_within_patience() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("http://{addr}/context");
        let started = Instant::now();
        let a = post_stream(
            &url,
            "x/y",
            1,
            Duration::from_secs(5),
            &|| true,
            || &b"z"[..],
        );
        assert!(a.is_err(), "nobody listens");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "give_up was ignored"
        );
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = TcpListener::bind(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(&s);
            let mut line = String::new();
            while line != "\r\n" {
                line.clear();
                r.read_line(&mut line).unwrap();
            }
            (&s).write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        let a = post_stream(&url, "x/y", 1, Duration::from_secs(5), &|| false, || {
            &b"z"[..]
        });
        assert_eq!(a.map(|a| a.status), Ok(204));
        late.join().unwrap();
    }
}
