//! Helpers several groups of integration tests share (`control_support`, `ran_support`,
//! `realhost_support` and the tests themselves): a `ferry` daemon as a child process (killed
//! on drop), what a callback server records and a real one that records every POST, the
//! HTTP request helpers with the ProblemDetails assertion, a two-zone topology, and SHA-256.

#![allow(dead_code)] // each test file uses a different part

use ferry_control::axum::{
    self, body::Bytes, extract::State, http::StatusCode, http::Uri, routing::post, Router,
};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry");

// ---- the tests' PKI ----

/// The operator PKI the MEC tests run with (TLS and tokens on, as in production): a CA and
/// certificates for control, the RAN, the fake hosts (`host:fake`) and the operator, all for
/// 127.0.0.1. Made once in cargo's scratch directory for integration tests (a build
/// artefact, like the binaries), atomically, so parallel test binaries share it.
pub fn pki() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mec-test-pki");
        let fresh = std::fs::metadata(dir.join("operator.crt"))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(7 * 86400));
        if fresh {
            return dir;
        }
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let pki = ferry_tls::Pki::init(&tmp, "ferry MEC tests", ferry_tls::Validity::days(30))
            .expect("test PKI");
        let local = ferry_tls::San::Ip(std::net::Ipv4Addr::LOCALHOST.into());
        for id in [
            ferry_tls::Identity::Control,
            ferry_tls::Identity::Ran,
            ferry_tls::Identity::Operator,
            ferry_tls::Identity::Host("fake".into()),
        ] {
            pki.issue(
                &id,
                std::slice::from_ref(&local),
                ferry_tls::Validity::days(30),
            )
            .expect("test certificate");
        }
        let old = dir.with_extension(format!("old{}", std::process::id()));
        let _ = std::fs::rename(&dir, &old);
        // Another test binary may have won the race: then its PKI is as good as ours.
        let _ = std::fs::rename(&tmp, &dir);
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&old);
        dir
    })
}

/// The files of `identity` in [`pki`].
pub fn tls_files(identity: &ferry_tls::Identity) -> ferry_tls::TlsFiles {
    ferry_tls::TlsFiles::in_dir(pki(), identity)
}

/// An HTTP client that calls as `operator` (and plain http:// as before).
pub fn client() -> reqwest::Client {
    client_as(&ferry_tls::Identity::Operator)
}

/// An HTTP client presenting `identity`'s certificate of [`pki`].
pub fn client_as(identity: &ferry_tls::Identity) -> reqwest::Client {
    let tls = ferry_tls::client_config(&tls_files(identity)).expect("client TLS");
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .expect("client")
}

/// An HTTP client with no certificate (an application, or a stranger), trusting [`pki`]'s CA.
pub fn client_without_cert() -> reqwest::Client {
    let tls = ferry_tls::client_config_server_auth(&pki().join("ca.crt")).expect("client TLS");
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .expect("client")
}

// ---- daemons ----

/// A daemon that printed `BANNER URL` as its first line on stdout, killed and reaped on drop.
pub struct Daemon {
    child: Child,
    pub url: String,
}

impl Daemon {
    /// Spawns `cmd` (with `RUST_LOG=warn` and stdout piped) and waits for its first line, for
    /// at most `timeout` when one is given; asserts the line is `BANNER URL` with a URL that
    /// starts with `prefix`.
    pub fn spawn(
        cmd: &mut Command,
        banner: &str,
        prefix: &str,
        timeout: Option<Duration>,
    ) -> Daemon {
        Self::spawn_logging(cmd, banner, prefix, timeout, None)
    }

    /// [`Daemon::spawn`] with the daemon's log (stderr) appended to `log` instead of the
    /// test's own output.
    pub fn spawn_logging(
        cmd: &mut Command,
        banner: &str,
        prefix: &str,
        timeout: Option<Duration>,
        log: Option<&std::path::Path>,
    ) -> Daemon {
        let what = banner.split(':').next().unwrap_or(banner).to_string();
        let stderr = match log {
            Some(p) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("daemon log"),
            ),
            None => Stdio::inherit(),
        };
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut guard = Daemon {
            child,
            url: String::new(),
        };
        let line = match timeout {
            Some(t) => rx.recv_timeout(t).unwrap_or_default(),
            None => rx.recv().unwrap_or_default(),
        };
        let url = line
            .trim()
            .strip_prefix(banner)
            .unwrap_or_default()
            .to_string();
        assert!(url.starts_with(prefix), "{what} did not start: {line:?}");
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The start of a topology `name`: hosts edge-a at `edge_a` and edge-b at `edge_b`.
pub fn two_hosts(name: &str, edge_a: &str, edge_b: &str) -> String {
    format!(
        r#"
name = "{name}"

[[hosts]]
name = "edge-a"
address = "{edge_a}"

[[hosts]]
name = "edge-b"
address = "{edge_b}"
"#
    )
}

/// A 400 m cell `name` (cell id `00000NAME`, PLMN 001-01) at latitude 43.73 and `longitude`,
/// served by `host`.
pub fn cell(name: &str, longitude: &str, host: &str) -> String {
    format!(
        r#"
[[cells]]
name = "{name}"
ecgi = {{ mcc = "001", mnc = "01", cell_id = "00000{name}" }}
position = {{ latitude = 43.7300, longitude = {longitude} }}
radius_m = 400.0
host = "{host}"
"#
    )
}

/// A UE `name` at `address`, in `cell`.
pub fn ue(name: &str, address: &str, cell: &str) -> String {
    format!(
        r#"
[[ues]]
name = "{name}"
address = "{address}"
cell = "{cell}"
"#
    )
}

/// Two zones: edge-a (cell a1) at `edge_a` and edge-b (cell b1) at `edge_b`; ue1
/// (10.150.0.1) starts in a1.
pub fn two_zone_topology(name: &str, edge_a: &str, edge_b: &str) -> String {
    [
        two_hosts(name, edge_a, edge_b),
        cell("a1", "7.4200", "edge-a"),
        cell("b1", "7.4400", "edge-b"),
        ue("ue1", "10.150.0.1", "a1"),
    ]
    .concat()
}

// ---- callbacks ----

/// One notification as received: the callback path and the JSON body.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub at: Instant,
}

/// What a callback server at `base` has received, shared with the code that receives.
#[derive(Clone)]
pub struct Inbox {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Inbox {
    pub fn new(base: String) -> Inbox {
        Inbox {
            base,
            got: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Records a notification, received now.
    pub fn record(&self, path: String, body: Value) {
        self.got.lock().unwrap().push(Received {
            path,
            body,
            at: Instant::now(),
        });
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

    /// What `path` got, once that is at least `n` notifications or `end` has passed.
    fn settled(&self, path: &str, n: usize, end: Instant) -> Option<Vec<Received>> {
        let got = self.on(path);
        (got.len() >= n || Instant::now() > end).then_some(got)
    }

    /// Waits until `path` got at least `n` notifications (or the timeout) and returns them.
    pub async fn wait(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(got) = self.settled(path, n, end) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `wait`, blocking the thread.
    pub fn wait_blocking(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(got) = self.settled(path, n, end) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Binds 127.0.0.1:0 and serves `app` on a task; returns the base URL and the task.
pub async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind test server");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

async fn record(State(inbox): State<Inbox>, uri: Uri, body: Bytes) -> StatusCode {
    let path = uri.path().to_string();
    let body = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    if path.starts_with("/slow/") {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    inbox.record(path, body);
    StatusCode::NO_CONTENT
}

/// `record`, then what a MEC app does on an `AppTerminationNotification`: confirm it at once
/// (MEC 011 `confirm_termination`, as the operator, who may act for any instance).
async fn record_and_confirm(State(inbox): State<Inbox>, uri: Uri, body: Bytes) -> StatusCode {
    let n: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = record(State(inbox), uri, body).await;
    if n["notificationType"] == "AppTerminationNotification" {
        if let Some(href) = n["_links"]["confirmTermination"]["href"].as_str() {
            let (href, action) = (href.to_string(), n["operationAction"].clone());
            tokio::spawn(async move {
                let _ = client()
                    .post(href)
                    .json(&serde_json::json!({ "operationAction": action }))
                    .send()
                    .await;
            });
        }
    }
    status
}

/// A real HTTP callback server recording every POST in its `Inbox`; stops on drop.
pub struct Callback {
    inbox: Inbox,
    /// Stops the server when dropped.
    _server: Box<dyn Send + Sync>,
}

/// Aborts a server task on drop.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Callback {
    /// A callback server on 127.0.0.1:0; paths under `/slow/` hang for 30 s.
    pub async fn start() -> Callback {
        Callback::serving(post(record)).await
    }

    /// `start`, confirming every `AppTerminationNotification` like a MEC app.
    pub async fn start_confirming() -> Callback {
        Callback::serving(post(record_and_confirm)).await
    }

    /// A callback server on 127.0.0.1:0 whose every path is `handler`.
    async fn serving(handler: axum::routing::MethodRouter<Inbox>) -> Callback {
        // The handler's inbox learns its base URL once bound: share the list, not the URL.
        let pending = Inbox::new(String::new());
        let app = Router::new()
            .route("/{*path}", handler)
            .with_state(pending.clone());
        let (base, task) = serve(app).await;
        Callback::new(Inbox { base, ..pending }, Abort(task))
    }

    /// A server that records in `inbox` and stops when `server` is dropped.
    pub fn new(inbox: Inbox, server: impl Send + Sync + 'static) -> Callback {
        Callback {
            inbox,
            _server: Box::new(server),
        }
    }
}

impl Deref for Callback {
    type Target = Inbox;
    fn deref(&self) -> &Inbox {
        &self.inbox
    }
}

// ---- requests ----

/// (status, headers, body as JSON or Null).
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
    answer(client().post(url).json(body).send().await.expect("POST")).await
}

pub async fn put_json(url: &str, body: &Value) -> Answer {
    answer(client().put(url).json(body).send().await.expect("PUT")).await
}

pub async fn put_bytes(url: &str, body: Vec<u8>) -> Answer {
    let r = client()
        .put(url)
        .header("content-type", "application/x-tar")
        .body(body)
        .send()
        .await
        .expect("PUT");
    answer(r).await
}

pub async fn get(url: &str) -> Answer {
    answer(client().get(url).send().await.expect("GET")).await
}

pub async fn delete(url: &str) -> Answer {
    answer(client().delete(url).send().await.expect("DELETE")).await
}

/// Asserts an error answer is a ProblemDetails with that status and a detail.
#[track_caller]
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

/// Assertions on an `Answer`, chained after the request
/// (`get(url).await.assert_problem(404)`) and reported at the caller's line.
pub trait AssertAnswer {
    /// The free `assert_problem(self, status)`.
    fn assert_problem(&self, status: u16);
    /// Asserts the answer's status.
    fn assert_status(&self, status: u16);
}

impl AssertAnswer for Answer {
    #[track_caller]
    fn assert_problem(&self, status: u16) {
        assert_problem(self, status)
    }

    #[track_caller]
    fn assert_status(&self, status: u16) {
        assert_eq!(self.0, status, "body: {}", self.2);
    }
}

/// SHA-256 of `data`, in hex (by `sha256sum`).
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
