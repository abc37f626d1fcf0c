//! The counter's HTTP/1.1 server: hyper on a two-thread tokio runtime. hyper bounds what a
//! peer can make it buffer (request head, header count), keeps connections alive and decodes
//! chunked bodies; this module routes requests and answers them from the state in `main.rs`.
//! Bodies are bounded here too: `MAX_BODY` in memory, `/context` streamed into the ballast.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::{context, lock, mec, State};

/// Largest request body the counter reads into memory (`/context` streams instead).
const MAX_BODY: usize = 1 << 20;

/// An answer: status and, unless empty, a JSON body of `content_type`.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            content_type: "",
            body: Vec::new(),
        }
    }

    pub fn json(status: StatusCode, value: &impl Serialize) -> Answer {
        Answer::typed(status, "application/json", value)
    }

    /// An ETSI ProblemDetails answer (the MEC callback's errors).
    pub fn problem(status: StatusCode, detail: impl Into<String>) -> Answer {
        let p = mec_api::problem::ProblemDetails::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            detail,
        );
        Answer::typed(status, mec_api::problem::PROBLEM_JSON, &p)
    }

    /// `{"error": why}`: the counter's own errors.
    pub fn error(status: StatusCode, why: impl Into<String>) -> Answer {
        #[derive(Serialize)]
        struct Error {
            error: String,
        }
        Answer::json(status, &Error { error: why.into() })
    }

    fn typed(status: StatusCode, content_type: &'static str, value: &impl Serialize) -> Answer {
        match serde_json::to_vec(value) {
            Ok(body) => Answer {
                status,
                content_type,
                body,
            },
            // Only plain structs are serialised here: this cannot happen.
            Err(_) => Answer::empty(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() = self.status;
        if !self.content_type.is_empty() {
            r.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(self.content_type),
            );
        }
        r
    }
}

/// `GET /`.
#[derive(Serialize)]
struct Count {
    counter: u64,
    checksum: String,
    started_at_ms: u64,
    ballast_mib: usize,
    dirty_mib_s: f64,
    pid: u32,
}

/// `GET /verify`.
#[derive(Serialize)]
struct Verify {
    ok: bool,
    checksum: String,
    computed: String,
    counter: u64,
    started_at_ms: u64,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// Serves `listener` until the process ends. Each connection is a task; the blocking work
/// (recomputing or installing a ballast) runs on tokio's blocking threads.
pub fn run(listener: TcpListener, state: Arc<State>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of descriptors or the like: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| serve(state.clone(), r));
                // An error here is the peer's (malformed request, reset): hyper answered
                // what it could, and the connection is over.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn serve(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // The path without the query: the counter's resources take no parameters.
    let path = parts.uri.path().to_string();
    let answer = if parts.method == Method::POST && path == "/context" {
        take_context(&state, body).await
    } else {
        match read_body(body).await {
            Ok(body) if path == "/verify" => {
                let method = parts.method.clone();
                let state = state.clone();
                tokio::task::spawn_blocking(move || handle(&state, &method, &path, &body))
                    .await
                    .unwrap_or_else(|_| Answer::empty(StatusCode::INTERNAL_SERVER_ERROR))
            }
            Ok(body) => handle(&state, &parts.method, &path, &body),
            Err(refused) => refused,
        }
    };
    Ok(answer.into_response())
}

/// A body of at most `MAX_BODY` bytes, or the answer that refuses it.
async fn read_body(body: Incoming) -> Result<Bytes, Answer> {
    let too_large = || Answer::error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(Answer::error(
            StatusCode::BAD_REQUEST,
            format!("the body broke off: {e}"),
        )),
    }
}

/// `POST /context`: another instance's user context, streamed into a new ballast.
async fn take_context(state: &Arc<State>, body: Incoming) -> Answer {
    // The format's checks need the length up front.
    let Some(length) = body.size_hint().exact() else {
        return Answer::error(StatusCode::LENGTH_REQUIRED, "send a Content-Length");
    };
    match context::receive(state, body, length).await {
        Ok(bytes) => {
            eprintln!("ferry-counter: took over a user context of {bytes} bytes");
            Answer::empty(StatusCode::NO_CONTENT)
        }
        Err(context::Refused(status, why)) => Answer::error(status, why),
    }
}

/// The answer to a request whose body (at most `MAX_BODY`) has been read.
fn handle(state: &Arc<State>, method: &Method, path: &str, body: &[u8]) -> Answer {
    match path {
        "/" | "/count" => {
            let frozen = state.frozen.read().unwrap_or_else(|e| e.into_inner());
            if *frozen {
                return Answer::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the user context was handed to another instance",
                );
            }
            let counter = state.counter.fetch_add(1, Ordering::SeqCst) + 1;
            Answer::json(
                StatusCode::OK,
                &Count {
                    counter,
                    checksum: format!("{:016x}", state.checksum.load(Ordering::SeqCst)),
                    started_at_ms: state.started_at_ms,
                    ballast_mib: state.ballast_mib.load(Ordering::SeqCst),
                    dirty_mib_s: state.dirty_mib_s,
                    pid: std::process::id(),
                },
            )
        }
        mec::CALLBACK_PATH if method == Method::POST => mec::notification(state, body),
        mec::CALLBACK_PATH | "/context" => {
            Answer::error(StatusCode::METHOD_NOT_ALLOWED, "use POST")
        }
        "/verify" => {
            // Hold the lock so the writer cannot move the sum while we recompute it.
            let ballast = lock(&state.ballast);
            let maintained = state.checksum.load(Ordering::SeqCst);
            let computed = ballast.checksum();
            Answer::json(
                StatusCode::OK,
                &Verify {
                    ok: maintained == computed,
                    checksum: format!("{maintained:016x}"),
                    computed: format!("{computed:016x}"),
                    counter: state.counter.load(Ordering::SeqCst),
                    started_at_ms: state.started_at_ms,
                },
            )
        }
        "/health" => Answer::json(StatusCode::OK, &Health { status: "ok" }),
        _ => Answer::error(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    /// A counter server on 127.0.0.1 (real TCP) with `mib` of ballast; its `host:port`.
    fn server(mib: usize) -> (Arc<State>, String) {
        let state = Arc::new(State::new(mib, 0.0, None));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let s = state.clone();
        std::thread::spawn(move || run(l, s));
        (state, addr)
    }

    fn get(state: &Arc<State>, path: &str) -> (StatusCode, serde_json::Value) {
        let a = handle(state, &Method::GET, path, b"");
        (a.status, serde_json::from_slice(&a.body).unwrap())
    }

    /// Reads one response from `r`: status and body (by its Content-Length).
    fn response(r: &mut impl BufRead) -> (u16, Vec<u8>) {
        let mut status = 0;
        let mut len = 0;
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
            if status == 0 {
                status = line.split(' ').nth(1).unwrap().parse().unwrap();
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        (status, body)
    }

    #[test]
    fn context_moves_to_another_instance_and_a_damaged_one_is_refused() {
        let (source, _) = server(2);
        for _ in 0..5 {
            get(&source, "/");
        }
        let (target, addr) = server(1);
        let url = format!("http://{addr}/context");
        let before = target.checksum.load(Ordering::SeqCst);
        let sent = context::send(&source, &url, &|| false).unwrap();
        assert_eq!(sent, 40 + 2 * 1024 * 1024);
        assert_eq!(target.counter.load(Ordering::SeqCst), 5);
        let sum = source.checksum.load(Ordering::SeqCst);
        assert_eq!(target.checksum.load(Ordering::SeqCst), sum);
        assert_ne!(sum, before);
        assert_eq!(lock(&target.ballast).checksum(), sum);
        assert_eq!(target.ballast_mib.load(Ordering::SeqCst), 2);
        let (_, v) = get(&target, "/");
        assert_eq!(v["counter"], 6, "{v}");

        // A flipped bit in the ballast: refused, nothing changes.
        let mut body = Vec::new();
        body.extend_from_slice(b"FRYCTX01");
        for v in [99u64, 1, 2, 2] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&[0u8; 16]);
        let post = |body: &[u8]| {
            crate::client::post_stream(
                &url,
                "application/octet-stream",
                body.len() as u64,
                Duration::ZERO,
                &|| false,
                || body,
            )
            .unwrap()
        };
        let a = post(&body);
        assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(target.counter.load(Ordering::SeqCst), 6);
        assert_eq!(post(b"abc").status, 400);
        // The right length but not a context.
        let mut wrong = body.clone();
        wrong[0] = b'X';
        assert_eq!(post(&wrong).status, 400);
        assert_eq!(lock(&target.ballast).checksum(), sum);
        assert_eq!(target.counter.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn frozen_state_is_not_changed() {
        let (s, _) = server(0);
        get(&s, "/");
        s.freeze();
        assert_eq!(get(&s, "/").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(s.counter.load(Ordering::SeqCst), 1);
        s.resume();
        assert_eq!(get(&s, "/").0, StatusCode::OK);
        assert_eq!(get(&s, "/context").0, StatusCode::METHOD_NOT_ALLOWED);
    }

    /// One TCP connection answers request after request (what a client holding its
    /// connection across a migration relies on), errors included, in order.
    #[test]
    fn one_connection_serves_many_requests() {
        let (state, addr) = server(1);
        let stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut w = &stream;
        let mut r = BufReader::new(&stream);
        for i in 1..=3u64 {
            write!(w, "GET /?poll={i} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let (status, body) = response(&mut r);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((status, v["counter"].as_u64()), (200, Some(i)), "{v}");
            assert_eq!(v["ballast_mib"], 1);
            assert_eq!(v["pid"], std::process::id());
        }
        // Two at once (pipelined), an unknown path among them.
        w.write_all(
            b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\nGET /verify HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
        assert_eq!(response(&mut r).0, 404);
        let (status, body) = response(&mut r);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, &v["ok"], &v["counter"]),
            (200, &true.into(), &3.into())
        );
        assert_eq!(v["checksum"], v["computed"]);
        assert_eq!(state.counter.load(Ordering::SeqCst), 3);
    }

    /// What a peer sends is bounded: a huge head or body is refused, a chunked body is
    /// read (within the bound), and `/context` needs its length up front.
    #[test]
    fn bodies_and_heads_are_bounded() {
        let (_, addr) = server(0);
        let send = |req: &[u8]| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // The server may answer and close before it read everything.
            let _ = s.write_all(req);
            response(&mut BufReader::new(&s))
        };
        let big_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        assert_eq!(send(big_header.as_bytes()).0, 431);
        let big = format!(
            "POST /health HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        );
        assert_eq!(send(big.as_bytes()).0, 413);
        let chunked =
            b"POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(send(chunked).0, 200);
        let chunked =
            b"POST /context HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (status, body) = send(chunked);
        assert_eq!(status, 411, "{}", String::from_utf8_lossy(&body));
        // A plain counter has no MEC callback; GET on it is the wrong method.
        assert_eq!(
            send(b"POST /mec/mobility_procedure HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").0,
            404
        );
        assert_eq!(send(b"GET /mec/mobility_procedure HTTP/1.1\r\n\r\n").0, 405);
    }
}
