//! Helpers of the `control_*` integration tests: the real `ferry control` binary as a child
//! process (killed on drop, restartable on the same state directory), a fake MEC host (a real
//! HTTP server that records the `ferry host` API calls it gets), the real `ferry ran`, and
//! package builders; on top of `shared` (the callback server, the request helpers), which it
//! re-exports.

#![allow(dead_code)] // each test file uses a different part

pub use crate::shared::*;
use ferry_control::axum::{
    self,
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    Router,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub const WAIT: Duration = Duration::from_secs(5);
/// After awaited notifications arrived: how long to watch for unwanted extra ones.
pub const GRACE: Duration = Duration::from_millis(700);

/// A running `ferry control`, killed and reaped on drop.
pub struct ControlProcess {
    daemon: Daemon,
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
        let daemon = Daemon::spawn(
            Command::new(BIN)
                .args(["control", "--listen", listen, "--state-dir"])
                .arg(state_dir)
                .arg("--tls-dir")
                .arg(pki())
                .args(args),
            "ferry control: listening on ",
            "https://127.0.0.1:",
            Some(Duration::from_secs(20)),
        );
        ControlProcess {
            url: daemon.url.clone(),
            daemon,
            args: args.to_vec(),
        }
    }

    /// SIGTERM, and waits (up to 5 s) for the exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon.terminate()
    }

    /// SIGKILL, as a crash or the OOM killer would: no shutdown code runs.
    pub fn kill(&mut self) {
        self.daemon.kill()
    }

    pub fn api(&self, path: &str) -> String {
        self.daemon.api(path)
    }

    /// `127.0.0.1:PORT` of the running daemon.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("https://").to_string()
    }
}

/// Starts `ferry ran --no-trace` on 127.0.0.1:0 with `topology`, killed on drop.
pub fn start_ran(topology: &Path) -> Daemon {
    start_ran_with(topology, &[])
}

/// [`start_ran`] with more arguments (e.g. `--notify-queue 4`).
pub fn start_ran_with(topology: &Path, args: &[&str]) -> Daemon {
    Daemon::spawn(
        Command::new(BIN)
            .args(["ran", "--no-trace", "--listen", "127.0.0.1:0", "--topology"])
            .arg(topology)
            .arg("--tls-dir")
            .arg(pki())
            .args(args),
        "ferry ran: listening on ",
        "https://",
        None,
    )
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
        body: body.clone(),
    });
    let fail = s.fail_suffix.lock().unwrap().clone();
    if fail.is_some_and(|f| path.ends_with(&f)) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"status":500,"detail":"injected failure"}"#.into(),
        );
    }
    success(&method, &path, &body)
}

/// A host's answer to a call that succeeds, shaped as `ferry host` answers: 201 and the
/// container's record for a create, 201 for an image, the record for start and stop, 204 for
/// a DELETE.
pub fn success(method: &Method, path: &str, body: &[u8]) -> (StatusCode, String) {
    let record = |req: ferry_wire::ContainerRequest, status| {
        serde_json::to_string(&ferry_wire::Container {
            name: req.name.clone(),
            request: req,
            status,
            netns: "fake".into(),
            veth: None,
            created_at: "now".into(),
            started_at: None,
            last_checkpoint: None,
            migration: None,
            owner: Default::default(),
        })
        .unwrap()
    };
    let named = |name: &str| ferry_wire::ContainerRequest {
        name: name.to_string(),
        image: "fake".into(),
        args: None,
        env: vec![],
        memory_mib: None,
        cpus: None,
        ip: None,
    };
    let action = |verb: &str| {
        path.strip_suffix(verb)
            .and_then(|p| p.rsplit('/').next())
            .map(str::to_string)
    };
    if *method == Method::POST && path.ends_with("/containers") {
        return match serde_json::from_slice(body) {
            Ok(req) => (
                StatusCode::CREATED,
                record(req, ferry_wire::Status::Created),
            ),
            Err(e) => (
                StatusCode::BAD_REQUEST,
                format!(r#"{{"status":400,"detail":"{e}"}}"#),
            ),
        };
    }
    if *method == Method::POST && path.ends_with("/images") {
        return (StatusCode::CREATED, "{}".into());
    }
    if *method == Method::DELETE {
        return (StatusCode::NO_CONTENT, String::new());
    }
    if let Some(name) = action("/start") {
        return (
            StatusCode::OK,
            record(named(&name), ferry_wire::Status::Running),
        );
    }
    if let Some(name) = action("/stop") {
        return (
            StatusCode::OK,
            record(named(&name), ferry_wire::Status::Stopped),
        );
    }
    (StatusCode::OK, "{}".into())
}

/// Serves `app` as a real host does: mutual TLS on 127.0.0.1:0 with a `host:fake`
/// certificate of [`pki`]; returns `https://ADDR` and the task.
pub async fn serve_as_host(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake host");
    let url = format!("https://{}", listener.local_addr().unwrap());
    let config = ferry_tls::server_config(&tls_files(&ferry_tls::Identity::Host("fake".into())))
        .expect("fake host TLS");
    let task = tokio::spawn(async move {
        let _ = mec_http::serve::serve_on(
            mec_http::serve::Transport::MutualTls(listener, config),
            app,
            std::future::pending::<()>(),
        )
        .await;
    });
    (url, task)
}

impl FakeHost {
    pub async fn start() -> FakeHost {
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
        // As a real host: mutual TLS, its certificate for 127.0.0.1.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake host");
        let url = format!("https://{}", listener.local_addr().unwrap());
        let config =
            ferry_tls::server_config(&tls_files(&ferry_tls::Identity::Host("fake".into())))
                .expect("fake host TLS");
        let task = tokio::spawn(async move {
            let _ = mec_http::serve::serve_on(
                mec_http::serve::Transport::MutualTls(listener, config),
                app,
                std::future::pending::<()>(),
            )
            .await;
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

/// Creates a package `name` of `version` whose content will be `content` (its SHA-256).
pub async fn create_package(
    c: &ControlProcess,
    name: &str,
    version: &str,
    content: &[u8],
) -> Answer {
    post_json(
        &c.api("/app_pkgm/v1/app_packages"),
        &json!({"appPkgName": name, "appPkgVersion": version,
            "checksum": {"algorithm": "SHA-256", "hash": sha256_hex(content)}}),
    )
    .await
}

/// Uploads the content of package `id`.
pub async fn upload(c: &ControlProcess, id: &str, content: Vec<u8>) -> Answer {
    put_bytes(
        &c.api(&format!("/app_pkgm/v1/app_packages/{id}/package_content")),
        content,
    )
    .await
}

/// Creates and onboards a package of the test app (`appd(app_d_id)`); returns its id.
pub async fn onboard(c: &ControlProcess, app_d_id: &str) -> String {
    onboard_appd(c, &appd(app_d_id)).await
}

/// Creates and onboards a package of `appd` and the fake image; returns its id.
pub async fn onboard_appd(c: &ControlProcess, appd: &Value) -> String {
    let content = package(appd, &fake_image());
    let created = post_json(
        &c.api("/app_pkgm/v1/app_packages"),
        &json!({"appPkgName": "counter", "appPkgVersion": "1.0", "appProvider": "ferry",
                "checksum": {"algorithm": "SHA-256", "hash": sha256_hex(&content)}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let id = created.2["id"].as_str().unwrap().to_string();
    let up = upload(c, &id, content).await;
    assert_eq!(up.0, 202, "{}", up.2);
    id
}

/// Creates an instance of `app_d_id`.
pub async fn create_instance(c: &ControlProcess, app_d_id: &str) -> Answer {
    post_json(
        &c.api("/app_lcm/v1/app_instances"),
        &json!({"appDId": app_d_id}),
    )
    .await
}

/// Instantiates instance `id` as `body` asks.
pub async fn instantiate_with(c: &ControlProcess, id: &str, body: &Value) -> Answer {
    post_json(
        &c.api(&format!("/app_lcm/v1/app_instances/{id}/instantiate")),
        body,
    )
    .await
}

/// Instance `id` as the API shows it.
pub async fn instance(c: &ControlProcess, id: &str) -> Value {
    get(&c.api(&format!("/app_lcm/v1/app_instances/{id}")))
        .await
        .2
}

/// Creates an instance of `app_d_id` and instantiates it on `host`; returns its id.
pub async fn instantiate(c: &ControlProcess, app_d_id: &str, host: &str) -> String {
    let created = create_instance(c, app_d_id).await;
    assert_eq!(created.0, 201, "{}", created.2);
    let id = created.2["id"].as_str().unwrap().to_string();
    let r = instantiate_with(
        c,
        &id,
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
