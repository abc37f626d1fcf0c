//! Helpers of the `control_*` integration tests: the real `ferry control` binary as a child
//! process (killed on drop, restartable on the same state directory), a fake MEC host (a real
//! HTTP server that records the `ferry host` API calls it gets), a real callback server, and
//! package builders.

#![allow(dead_code)] // each test file uses a different part

use ferry_control::axum::{
    self,
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    routing::post,
    Router,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry");
pub const WAIT: Duration = Duration::from_secs(5);
/// After awaited notifications arrived: how long to watch for unwanted extra ones.
pub const GRACE: Duration = Duration::from_millis(700);

/// A running `ferry control`, killed and reaped on drop.
pub struct ControlProcess {
    child: Child,
    pub url: String,
    pub args: Vec<String>,
}

impl ControlProcess {
    /// Starts `ferry control --listen 127.0.0.1:0 --state-dir DIR ARGS...`.
    pub fn start(state_dir: &Path, args: &[String]) -> ControlProcess {
        ControlProcess::start_on("127.0.0.1:0", state_dir, args)
    }

    /// Starts `ferry control` on a given address (to restart on the same port, so the
    /// stored self links stay valid).
    pub fn start_on(listen: &str, state_dir: &Path, args: &[String]) -> ControlProcess {
        let mut child = Command::new(BIN)
            .args(["control", "--listen", listen, "--state-dir"])
            .arg(state_dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferry control");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut guard = ControlProcess {
            child,
            url: String::new(),
            args: args.to_vec(),
        };
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let url = line
            .trim()
            .strip_prefix("ferry control: listening on ")
            .unwrap_or_default()
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "ferry control did not start: {line:?}"
        );
        guard.url = url;
        guard
    }

    /// SIGTERM, and waits (up to 5 s) for the exit.
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

    /// SIGKILL, as a crash or the OOM killer would: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `127.0.0.1:PORT` of the running daemon.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call a fake host received.
#[derive(Debug, Clone)]
pub struct HostCall {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Bytes,
}

impl HostCall {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone)]
struct HostState {
    calls: Arc<Mutex<Vec<HostCall>>>,
    /// Paths ending with this fail with 500 (a host that cannot start containers, say).
    fail_suffix: Arc<Mutex<Option<String>>>,
}

/// A fake `ferry host`: answers every `/ferry/v1` call with success and records it.
pub struct FakeHost {
    pub url: String,
    calls: Arc<Mutex<Vec<HostCall>>>,
    fail_suffix: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn host_call(
    State(s): State<HostState>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    s.calls.lock().unwrap().push(HostCall {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        body,
    });
    let fail = s.fail_suffix.lock().unwrap().clone();
    if fail.is_some_and(|f| path.ends_with(&f)) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"status":500,"detail":"injected failure"}"#.into(),
        );
    }
    let status =
        if method == Method::POST && (path.ends_with("/containers") || path.ends_with("/images")) {
            StatusCode::CREATED
        } else if method == Method::DELETE {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
    (status, "{}".into())
}

impl FakeHost {
    pub async fn start() -> FakeHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake host");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fail_suffix = Arc::new(Mutex::new(None));
        // Images are large; the real host streams them without a limit.
        let app = Router::new()
            .fallback(host_call)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(HostState {
                calls: calls.clone(),
                fail_suffix: fail_suffix.clone(),
            });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHost {
            url,
            calls,
            fail_suffix,
            task,
        }
    }

    pub fn calls(&self) -> Vec<HostCall> {
        self.calls.lock().unwrap().clone()
    }

    /// "METHOD PATH" of every call, in order.
    pub fn summary(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }

    pub fn fail_paths_ending_with(&self, suffix: Option<&str>) {
        *self.fail_suffix.lock().unwrap() = suffix.map(str::to_string);
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One notification as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Clone)]
struct Sink {
    got: Arc<Mutex<Vec<Received>>>,
}

async fn record(State(s): State<Sink>, uri: Uri, body: Bytes) -> StatusCode {
    let path = uri.path().to_string();
    let body = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    if path.starts_with("/slow/") {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    s.got.lock().unwrap().push(Received {
        path,
        body,
        at: Instant::now(),
    });
    StatusCode::NO_CONTENT
}

/// A real HTTP callback server on 127.0.0.1:0 recording every POST; paths under `/slow/`
/// hang for 30 s. Stops on drop.
pub struct Callback {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Callback {
    pub async fn start() -> Callback {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind callback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(Sink { got: got.clone() });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Callback { base, got, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn on(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got at least `n` notifications (or the timeout) and returns them.
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

pub type Answer = (u16, reqwest::header::HeaderMap, Value);

pub async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

pub async fn post_json(url: &str, body: &Value) -> Answer {
    answer(
        reqwest::Client::new()
            .post(url)
            .json(body)
            .send()
            .await
            .expect("POST"),
    )
    .await
}

pub async fn put_json(url: &str, body: &Value) -> Answer {
    answer(
        reqwest::Client::new()
            .put(url)
            .json(body)
            .send()
            .await
            .expect("PUT"),
    )
    .await
}

pub async fn put_bytes(url: &str, body: Vec<u8>) -> Answer {
    let r = reqwest::Client::new()
        .put(url)
        .header("content-type", "application/x-tar")
        .body(body)
        .send()
        .await
        .expect("PUT");
    answer(r).await
}

pub async fn get(url: &str) -> Answer {
    answer(reqwest::Client::new().get(url).send().await.expect("GET")).await
}

pub async fn delete(url: &str) -> Answer {
    answer(
        reqwest::Client::new()
            .delete(url)
            .send()
            .await
            .expect("DELETE"),
    )
    .await
}

/// Asserts an error answer is a ProblemDetails with that status and a detail.
pub fn assert_problem(got: &Answer, status: u16) {
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

/// Asserts `v` has each (field, JSON type) of an ETSI schema's required list.
pub fn assert_schema(v: &Value, fields: &[(&str, &str)]) {
    for (f, t) in fields {
        let x = &v[*f];
        let ok = match *t {
            "string" => x.is_string(),
            "object" => x.is_object(),
            "array" => x.is_array(),
            "integer" => x.is_u64() || x.is_i64(),
            "boolean" => x.is_boolean(),
            _ => panic!("unknown type {t}"),
        };
        assert!(ok, "field '{f}' should be a {t} in {v}");
    }
}

/// The AppD of the test app, with ferry's extensions.
pub fn appd(app_d_id: &str) -> Value {
    json!({
        "appDId": app_d_id, "appName": "counter", "appProvider": "ferry",
        "appSoftVersion": "1.0", "appDVersion": "1", "mecVersion": ["2.1.1"],
        "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": "pre-copy"},
        "ferryContainer": {"args": ["--port", "8080"], "env": ["A=1"], "memoryMib": 64, "port": 8080},
        "appDNSRule": [{"dnsRuleId": "dns1", "domainName": "counter.mec", "ipAddressType": "IP_V4", "ttl": 30}]
    })
}

/// Stand-in bytes for an OCI image archive (the fake host does not unpack it).
pub fn fake_image() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A package tar: `appd.json` + `image.tar`, in ferry's layout.
pub fn package(appd: &Value, image: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("appd.json", serde_json::to_vec(appd).unwrap()),
        ("image.tar", image.to_vec()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Creates and onboards a package; returns its id.
pub async fn onboard(c: &ControlProcess, app_d_id: &str) -> String {
    let content = package(&appd(app_d_id), &fake_image());
    let created = post_json(
        &c.api("/app_pkgm/v1/app_packages"),
        &json!({"appPkgName": "counter", "appPkgVersion": "1.0", "appProvider": "ferry",
                "checksum": {"algorithm": "SHA-256", "hash": sha256_hex(&content)}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let id = created.2["id"].as_str().unwrap().to_string();
    let up = put_bytes(
        &c.api(&format!("/app_pkgm/v1/app_packages/{id}/package_content")),
        content,
    )
    .await;
    assert_eq!(up.0, 202, "{}", up.2);
    id
}

/// Creates an instance of `app_d_id` and instantiates it on `host`; returns its id.
pub async fn instantiate(c: &ControlProcess, app_d_id: &str, host: &str) -> String {
    let created = post_json(
        &c.api("/app_lcm/v1/app_instances"),
        &json!({"appDId": app_d_id}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let id = created.2["id"].as_str().unwrap().to_string();
    let r = post_json(
        &c.api(&format!("/app_lcm/v1/app_instances/{id}/instantiate")),
        &json!({"selectedMECHostInfo": [{"hostName": host, "hostId": {"name": host}}]}),
    )
    .await;
    assert_eq!(r.0, 202, "{}", r.2);
    id
}

/// `--host NAME=URL` arguments for fake hosts.
pub fn host_args(hosts: &[(&str, &FakeHost)]) -> Vec<String> {
    hosts
        .iter()
        .flat_map(|(n, h)| ["--host".to_string(), format!("{n}={}", h.url)])
        .collect()
}

pub fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}
