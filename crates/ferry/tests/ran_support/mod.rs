//! Helpers of the `ran_*` integration tests: the real `ferry ran` binary as a child process
//! (killed on drop), a real HTTP callback server that records what it receives, and a small
//! two-zone topology.

#![allow(dead_code)] // each test file uses a different part

use ferry_ran::axum::{self, body::Bytes, extract::State, http::StatusCode, routing::post, Router};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry");

/// Two zones: edge-a (cells a1, a2) and edge-b (cell b1); ue1 and ue2 start in a1. `extra_ue1`
/// is appended to ue1 (e.g. a trace).
pub fn topology(extra_ue1: &str) -> String {
    format!(
        r#"
name = "rantest"

[[hosts]]
name = "edge-a"
address = "10.100.0.11"

[[hosts]]
name = "edge-b"
address = "10.100.0.12"

[[cells]]
name = "a1"
ecgi = {{ mcc = "001", mnc = "01", cell_id = "00000a1" }}
position = {{ latitude = 43.7300, longitude = 7.4200 }}
radius_m = 400.0
host = "edge-a"

[[cells]]
name = "a2"
ecgi = {{ mcc = "001", mnc = "01", cell_id = "00000a2" }}
position = {{ latitude = 43.7300, longitude = 7.4300 }}
radius_m = 400.0
host = "edge-a"

[[cells]]
name = "b1"
ecgi = {{ mcc = "001", mnc = "01", cell_id = "00000b1" }}
position = {{ latitude = 43.7300, longitude = 7.4400 }}
radius_m = 400.0
host = "edge-b"

[[ues]]
name = "ue1"
address = "10.150.0.1"
cell = "a1"
{extra_ue1}

[[ues]]
name = "ue2"
address = "10.150.0.2"
cell = "a1"
"#
    )
}

/// ECGI JSON of a cell of `topology()`.
pub fn ecgi(cell_id: &str) -> Value {
    serde_json::json!({"plmn": {"mcc": "001", "mnc": "01"}, "cellId": cell_id})
}

/// A running `ferry ran`, killed and reaped on drop.
pub struct RanProcess {
    child: Child,
    pub url: String,
    /// When the daemon printed its address: the trace's time 0 is just before.
    pub ready: Instant,
    _topology: tempfile::NamedTempFile,
}

impl RanProcess {
    pub fn start(topology: &str, extra_args: &[&str]) -> RanProcess {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(topology.as_bytes()).expect("write topology");
        let mut child = Command::new(BIN)
            .args(["ran", "--topology"])
            .arg(file.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferry ran");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut guard = RanProcess {
            child,
            url: String::new(),
            ready: Instant::now(),
            _topology: file,
        };
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        guard.ready = Instant::now();
        let url = line
            .trim()
            .strip_prefix("ferry ran: listening on ")
            .unwrap_or_default()
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "ferry ran did not start: {line:?}"
        );
        guard.url = url;
        guard
    }

    /// Sends SIGTERM and waits (up to 5 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for RanProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One notification as received: the callback path and the JSON body.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub at: Instant,
}

/// A real HTTP server on 127.0.0.1:0 recording every POST; stops on drop.
pub struct Callback {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Sink {
    got: Arc<Mutex<Vec<Received>>>,
    /// Paths under /slow/ answer only after this long (a callback that hangs).
    slow: Duration,
}

async fn record(State(s): State<Sink>, uri: axum::http::Uri, body: Bytes) -> StatusCode {
    let path = uri.path().to_string();
    let body = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    if path.starts_with("/slow/") {
        tokio::time::sleep(s.slow).await;
    }
    s.got.lock().unwrap().push(Received {
        path,
        body,
        at: Instant::now(),
    });
    StatusCode::NO_CONTENT
}

impl Callback {
    pub async fn start() -> Callback {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind callback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink {
            got: got.clone(),
            slow: Duration::from_secs(30),
        };
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(sink);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Callback { base, got, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything received on `path` so far.
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has received at least `n` notifications (or the timeout passes) and
    /// returns what it has.
    pub async fn wait(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.on(path);
            if got.len() >= n || Instant::now() > end {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the `ferry` binary to completion: (success, stdout, stderr).
pub async fn ferry(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run ferry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Forces a handover through the CLI (`ferry ran handover`), asserting it succeeded.
pub async fn handover(ran: &RanProcess, ue: &str, cell: &str) -> String {
    let (ok, out, err) = ferry(&["ran", "handover", ue, cell, "--ran", &ran.url]).await;
    assert!(ok, "ferry ran handover {ue} {cell} failed: {err}");
    out
}

/// POSTs JSON, returning (status, headers, body as JSON or Null).
pub async fn post_json(url: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("POST");
    answer(r).await
}

pub async fn put_json(url: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .put(url)
        .json(body)
        .send()
        .await
        .expect("PUT");
    answer(r).await
}

pub async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new().get(url).send().await.expect("GET");
    answer(r).await
}

pub async fn delete(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .delete(url)
        .send()
        .await
        .expect("DELETE");
    answer(r).await
}

pub async fn answer(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Asserts an error answer is a ProblemDetails with that status.
pub fn assert_problem(got: &(u16, reqwest::header::HeaderMap, Value), status: u16) {
    assert_eq!(got.0, status, "body: {}", got.2);
    let ctype = got
        .1
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(got.2["status"], status);
    assert!(
        got.2["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail: {}",
        got.2
    );
}

/// A cell change subscription body.
pub fn cell_change(callback: &str, filter: Value) -> Value {
    serde_json::json!({
        "subscriptionType": "CellChangeSubscription",
        "callbackReference": callback,
        "filterCriteriaAssocHo": filter,
    })
}

pub fn ue_filter(ip: &str) -> Value {
    serde_json::json!({"associateId": [{"type": 1, "value": ip}]})
}
