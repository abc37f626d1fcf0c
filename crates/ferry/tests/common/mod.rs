//! Test harness: real `ferry host` daemons in their own network namespaces, real runc and CRIU.
//!
//! [`TestHost`] owns everything a test creates (namespace, state directory, daemon process,
//! containers) and removes all of it on drop, also when the test fails half-way.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The counter image the build makes (`make counter-image`).
pub fn counter_image() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/ferry-counter.oci.tar");
    assert!(
        p.is_file(),
        "{} is missing: run `make test` (it builds the ferry-counter image first)",
        p.display()
    );
    p
}

/// Runs `f` on a thread that has entered the network namespace `ns`. Sockets created there
/// stay in that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread panicked")
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process, for namespaces.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct TestHost {
    pub netns: String,
    /// Base URL of the daemon's API.
    pub api: String,
    pub state: tempfile::TempDir,
    listen: String,
    daemon: Option<Child>,
    pub id: Option<String>,
    /// The lease this host asks of targets (`--lease-s`).
    pub lease_s: u64,
    /// An HTTP client whose sockets live in the host's namespace (over mutual TLS as
    /// `operator` when the host has TLS).
    pub http: reqwest::blocking::Client,
    /// The PKI directory of a host run with `--tls-dir`.
    pub tls: Option<PathBuf>,
    /// More options for the daemon, from its next (re)start on.
    pub extra_args: Vec<String>,
    /// A PKI the host made for itself.
    _pki: Option<tempfile::TempDir>,
}

/// Issues `identity`'s certificate (valid a day, reachable at `sans`) in the test PKI `dir`.
pub fn issue_cert(dir: &Path, identity: &ferry_tls::Identity, sans: &[ferry_tls::San]) {
    ferry_tls::Pki::open(dir)
        .unwrap()
        .issue(identity, sans, ferry_tls::Validity::days(1))
        .unwrap();
}

/// A blocking client in namespace `ns`; with `tls`, presenting `identity`'s certificate of the
/// PKI in that directory (issued on the way).
pub fn client_in(ns: &str, tls: Option<(&Path, &str)>) -> reqwest::blocking::Client {
    let config = tls.map(|(dir, identity)| {
        let id: ferry_tls::Identity = identity.parse().unwrap();
        issue_cert(dir, &id, &[]);
        ferry_tls::client_config(&ferry_tls::TlsFiles::in_dir(dir, &id)).unwrap()
    });
    in_netns(ns, move || {
        let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120));
        if let Some(config) = config {
            b = b.use_preconfigured_tls((*config).clone());
        }
        b.build().expect("client")
    })
}

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl TestHost {
    pub fn start() -> TestHost {
        let netns = unique_name("ft");
        assert!(
            quiet("ip", &["netns", "add", &netns]),
            "ip netns add {netns}"
        );
        let pki = test_pki();
        let mut host = TestHost::start_with(netns, "127.0.0.1:7100", Some(pki.path()));
        host._pki = Some(pki);
        host
    }

    /// Starts a daemon in an existing namespace (which the host then owns and deletes).
    pub fn start_in(netns: String, listen: &str) -> TestHost {
        TestHost::start_with(netns, listen, None)
    }

    /// [`TestHost::start_in`], over mutual TLS with the PKI in `tls` when given: the host
    /// gets its certificate (`host:<netns>`, for its listen address) and `self.http` speaks
    /// as `operator`.
    pub fn start_with(netns: String, listen: &str, tls: Option<&Path>) -> TestHost {
        let state = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("tempdir");
        if let Some(dir) = tls {
            let ip: std::net::IpAddr = listen.rsplit_once(':').unwrap().0.parse().unwrap();
            issue_cert(
                dir,
                &ferry_tls::Identity::Host(netns.clone()),
                &[ferry_tls::San::Ip(ip)],
            );
        }
        let http = client_in(&netns, tls.map(|d| (d, "operator")));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut host = TestHost {
            netns,
            api: format!("{scheme}://{listen}/ferry/v1"),
            listen: listen.to_string(),
            state,
            daemon: None,
            id: None,
            lease_s: 30,
            http,
            tls: tls.map(Path::to_path_buf),
            extra_args: Vec::new(),
            _pki: None,
        };
        host.spawn_daemon();
        host
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Starts (or restarts) the daemon on the same state directory and waits until it answers.
    pub fn spawn_daemon(&mut self) {
        self.spawn(true)
    }

    /// [`TestHost::spawn_daemon`] as production runs it: no test hooks, no fault injection.
    pub fn spawn_daemon_without_hooks(&mut self) {
        self.spawn(false)
    }

    fn spawn(&mut self, hooks: bool) {
        // Appended: a restart keeps the log of the daemon before.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("daemon.log"))
            .expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args([
            "host",
            "--name",
            &self.netns,
            "--netns",
            &self.netns,
            "--listen",
            &self.listen,
        ])
        .arg("--state-dir")
        .arg(self.state.path())
        .args(["--lease-s", &self.lease_s.to_string()])
        .stdout(Stdio::null())
        .stderr(log);
        if hooks {
            cmd.arg("--test-hooks").arg(self.hooks_dir());
        }
        if let Some(dir) = &self.tls {
            cmd.arg("--tls-dir").arg(dir);
        }
        cmd.args(&self.extra_args);
        let child = cmd.spawn().expect("spawn ferry host");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.api)).send() {
                if r.status().is_success() {
                    let (_, info) = self.get("/info");
                    self.id = info["id"].as_str().map(str::to_string);
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                panic!("ferry host exited ({status}): {}", self.daemon_log());
            }
            assert!(
                Instant::now() < deadline,
                "ferry host did not come up: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("daemon.log")).unwrap_or_default()
    }

    /// Where the daemon's test hooks live (see `ferry_migration::hooks`).
    pub fn hooks_dir(&self) -> PathBuf {
        self.state.path().join("hooks")
    }

    /// Arms hook `point`: the next migration reaching it on this host holds there.
    pub fn arm(&self, point: &str) {
        ferry_hooks::drive::arm(&self.hooks_dir(), point).unwrap();
    }

    /// Waits until a migration holds at `point` (armed before); its id.
    pub fn wait_reached(&self, point: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(id) = ferry_hooks::drive::reached(&self.hooks_dir(), point) {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "no migration reached {point}: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets the migration held at `point` go on.
    pub fn release(&self, point: &str) {
        ferry_hooks::drive::release(&self.hooks_dir(), point).unwrap();
    }

    /// Kills the daemon (SIGKILL): a crash. Its children (CRIU helpers) live on.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a migration of `name` (202) and returns its id.
    pub fn start_migration(&self, name: &str, body: Value) -> Result<String, (u16, Value)> {
        let (s, v) = self.post(&format!("/containers/{name}/migrate"), body);
        if s != 202 {
            return Err((s, v));
        }
        Ok(v["id"].as_str().expect("migration id").to_string())
    }

    /// The migration's view (`GET /migrations/{id}`), if the daemon answers.
    pub fn migration(&self, id: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/migrations/{id}", self.api))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?;
        r.status().is_success().then(|| r.json().ok()).flatten()
    }

    /// Waits until migration `id` is in a final state (or one that needs an operator, if
    /// `or_doubt`); its view.
    pub fn wait_migration(&self, id: &str, within: Duration, or_doubt: bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.migration(id) {
                let s = v["state"].as_str().unwrap_or("");
                let done = matches!(s, "completed" | "rolled_back" | "lost")
                    || (or_doubt && matches!(s, "in_doubt" | "rollback_failed"));
                if done {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "migration {id} did not end within {within:?}: {:?}\n{}",
                self.migration(id),
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon the way an operator would (SIGTERM); containers keep running.
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    pub fn import_counter_image(&self) -> Value {
        let body = std::fs::read(counter_image()).expect("read image");
        let r = self
            .http
            .post(format!("{}/images?name=counter", self.api))
            .body(body)
            .send()
            .expect("import");
        assert_eq!(
            r.status().as_u16(),
            201,
            "import: {}",
            r.text().unwrap_or_default()
        );
        r.json().expect("image json")
    }

    /// POST with a JSON body; returns (status, body as JSON).
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .json(&body)
            .send()
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(format!("{}{path}", self.api))
            .send()
            .expect("DELETE")
            .status()
            .as_u16()
    }

    /// Creates and starts a counter container with the given address and ballast.
    pub fn run_counter(&self, name: &str, ip: &str, ballast_mib: u32) -> Value {
        let (s, c) = self.post(
            "/containers",
            serde_json::json!({
                "name": name, "image": "counter", "ip": ip, "memory_mib": 64 + 2 * ballast_mib,
                "args": ["--ballast-mib", ballast_mib.to_string(), "--port", "8080"],
            }),
        );
        assert_eq!(s, 201, "create: {c}");
        let (s, c) = self.post(&format!("/containers/{name}/start"), Value::Null);
        assert_eq!(s, 200, "start: {c}");
        c
    }

    /// Connects to an app in this host's namespace (retrying while it starts).
    pub fn connect(&self, addr: &str) -> AppConn {
        let addr = addr.to_string();
        let stream = in_netns(&self.netns, move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match TcpStream::connect_timeout(
                    &addr.parse().expect("addr"),
                    Duration::from_secs(1),
                ) {
                    Ok(s) => return s,
                    Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        AppConn { stream }
    }

    /// Names of network namespaces that belong to this host's daemon or to the test.
    pub fn leftover_netns(&self) -> Vec<String> {
        let id = self.daemon_id();
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n == self.netns || id.as_deref().is_some_and(|id| n.contains(id)))
            .map(str::to_string)
            .collect()
    }

    /// The daemon's id (part of its namespaces' names), as it reported it at start.
    fn daemon_id(&self) -> Option<String> {
        self.id.clone()
    }

    /// Mounts under this host's state directory.
    pub fn leftover_mounts(&self) -> Vec<String> {
        let root = self.state.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Remove containers through the API (stops them, unmounts, deletes their namespaces).
        if self.daemon.is_some() {
            if let Ok(r) = self.http.get(format!("{}/containers", self.api)).send() {
                if let Ok(Value::Array(list)) = r.json::<Value>() {
                    for c in list {
                        if let Some(name) = c["name"].as_str() {
                            let _ = self
                                .http
                                .delete(format!("{}/containers/{name}", self.api))
                                .send();
                        }
                    }
                }
            }
        }
        self.stop_daemon();
        // runc and CRIU processes the daemon started and did not see end (a post-copy dump
        // still serving a target that went away, in a test that failed): their own process
        // groups, so the daemon's end does not take them.
        ferry_runtime::criu::kill_processes_under(self.state.path());
        // Whatever the API could not remove (a test that failed in a bad state, or one that
        // stopped its daemon during a migration), removed behind the daemon's back: runc's
        // containers, then what runc leaves of their cgroups and the daemon's parents.
        let runc_root = self.state.path().join("runc");
        let cgroups = ferry_runtime::cgroup::Hierarchies::mounted();
        if let Ok(entries) = std::fs::read_dir(&runc_root) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let id = e.file_name().to_string_lossy().into_owned();
                quiet(
                    "runc",
                    &[
                        "--root",
                        &runc_root.to_string_lossy(),
                        "delete",
                        "--force",
                        &id,
                    ],
                );
                if let Some(daemon) = &self.id {
                    let group = ferry_runtime::cgroup::path(daemon, &id);
                    cgroups.remove(&group, Duration::from_secs(10));
                }
            }
        }
        if let Some(daemon) = &self.id {
            cgroups.remove_empty_parents(daemon);
        }
        for m in self.leftover_mounts() {
            quiet("umount", &["-l", &m]);
        }
        for ns in self.leftover_netns() {
            quiet("ip", &["netns", "del", &ns]);
        }
        quiet("ip", &["netns", "del", &self.netns]);
        if let Some(id) = &self.id {
            remove_cgroups_of(id);
        }
    }
}

/// Ends and removes whatever is left in a host's cgroups (`/ferry/<id>` on every hierarchy):
/// the processes of a container ferry restored itself, which runc does not know, and the
/// cgroups a test that failed in a bad state left.
fn remove_cgroups_of(id: &str) {
    let cgroups = ferry_runtime::cgroup::Hierarchies::mounted();
    let mut groups = std::collections::BTreeSet::new();
    let parent = ferry_runtime::cgroup::path(id, "");
    for root in cgroups.roots() {
        let dir = root.join(parent.trim_matches('/'));
        for child in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let group = child.path();
            if !group.is_dir() {
                continue;
            }
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = std::fs::write(group.join("freezer.state"), "THAWED");
            let _ = std::fs::write(group.join("cgroup.freeze"), "0");
            groups.insert(child.file_name().to_string_lossy().into_owned());
        }
    }
    for name in groups {
        cgroups.remove(
            &ferry_runtime::cgroup::path(id, &name),
            Duration::from_secs(5),
        );
    }
    cgroups.remove_empty_parents(id);
}

/// One HTTP/1.1 keep-alive connection to a ferry-counter.
pub struct AppConn {
    pub stream: TcpStream,
}

impl AppConn {
    /// Sends `GET path` on this connection and returns the JSON body.
    pub fn get(&mut self, path: &str) -> std::io::Result<Value> {
        use std::io::{BufRead, BufReader, Read, Write};
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: app\r\n\r\n")?;
        let mut reader = BufReader::new(&self.stream);
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }
}

/// Two MEC hosts and a gateway, each in its own namespace:
///
/// ```text
///   host a (10.99.1.2) --veth-- gateway --veth-- host b (10.99.2.2)
/// ```
/// The gateway routes each app address to the host that runs it (what the data plane does),
/// and the hosts reach each other through it. The test's app client sits in the gateway.
pub struct Pair {
    // Fields drop in order: the hosts (their daemons listen on the gateway links) before
    // the gateway namespace.
    pub a: TestHost,
    pub b: TestHost,
    pub gw: String,
    _gw: NetnsGuard,
    /// The PKI the pair made for itself (dropped last).
    _pki: Option<tempfile::TempDir>,
}

/// A fresh operator PKI for a test (a CA; certificates are issued as parts start).
pub fn test_pki() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ferry-pki-")
        .tempdir()
        .expect("tempdir");
    ferry_tls::Pki::init(dir.path(), "ferry test", ferry_tls::Validity::days(1)).unwrap();
    dir
}

/// Deletes a namespace on drop.
pub struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        quiet("ip", &["netns", "del", &self.0]);
    }
}

impl Pair {
    /// Two hosts over mutual TLS, with a PKI of their own.
    pub fn start() -> Pair {
        let pki = test_pki();
        let mut pair = Pair::start_with(Some(pki.path()));
        pair._pki = Some(pki);
        pair
    }

    /// Two hosts over mutual TLS with certificates of the PKI in `dir`.
    pub fn start_secure(dir: &Path) -> Pair {
        Pair::start_with(Some(dir))
    }

    fn start_with(tls: Option<&Path>) -> Pair {
        let gw = unique_name("fg");
        assert!(quiet("ip", &["netns", "add", &gw]), "ip netns add {gw}");
        // Guards from the start: a host that fails to come up must not leak the namespaces.
        let gw_guard = NetnsGuard(gw.clone());
        quiet("ip", &["-n", &gw, "link", "set", "lo", "up"]);
        quiet(
            "ip",
            &[
                "netns",
                "exec",
                &gw,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        let mut hosts = Vec::new();
        for i in 1..=2 {
            let ns = unique_name("ft");
            assert!(quiet("ip", &["netns", "add", &ns]), "ip netns add {ns}");
            let ns_guard = NetnsGuard(ns.clone());
            let (g, h) = (format!("g{i}"), format!("h{i}"));
            assert!(quiet(
                "ip",
                &[
                    "link", "add", &g, "netns", &gw, "type", "veth", "peer", "name", &h, "netns",
                    &ns
                ]
            ));
            quiet(
                "ip",
                &[
                    "-n",
                    &gw,
                    "addr",
                    "add",
                    &format!("10.99.{i}.1/30"),
                    "dev",
                    &g,
                ],
            );
            quiet("ip", &["-n", &gw, "link", "set", &g, "up"]);
            quiet(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("10.99.{i}.2/30"),
                    "dev",
                    &h,
                ],
            );
            quiet("ip", &["-n", &ns, "link", "set", &h, "up"]);
            quiet("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            quiet(
                "ip",
                &[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.99.{i}.1"),
                ],
            );
            hosts.push(TestHost::start_with(ns, &format!("10.99.{i}.2:7100"), tls));
            // The host owns its namespace now and deletes it on drop.
            std::mem::forget(ns_guard);
        }
        let b = hosts.pop().expect("b");
        let a = hosts.pop().expect("a");
        Pair {
            a,
            b,
            _gw: gw_guard,
            gw,
            _pki: None,
        }
    }

    /// Points the gateway's route for `app_ip` at host a (1) or b (2).
    pub fn route(&self, app_ip: &str, host: u8) {
        let via = format!("10.99.{host}.2");
        assert!(quiet(
            "ip",
            &[
                "-n",
                &self.gw,
                "route",
                "replace",
                &format!("{app_ip}/32"),
                "via",
                &via
            ]
        ));
    }

    /// Takes the gateway's link to host a (1) or b (2) down or up: a cut link.
    pub fn link(&self, host: u8, up: bool) {
        quiet(
            "ip",
            &[
                "-n",
                &self.gw,
                "link",
                "set",
                &format!("g{host}"),
                if up { "up" } else { "down" },
            ],
        );
    }

    /// A keep-alive connection to an app from the gateway namespace.
    pub fn connect(&self, addr: &str) -> AppConn {
        let addr = addr.to_string();
        let stream = in_netns(&self.gw, move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match TcpStream::connect_timeout(
                    &addr.parse().expect("addr"),
                    Duration::from_secs(1),
                ) {
                    Ok(s) => return s,
                    Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        AppConn { stream }
    }

    /// Where the container runs now, by asking both hosts: (a's status, b's status).
    pub fn whereabouts(&self, name: &str) -> (Option<String>, Option<String>) {
        let status = |h: &TestHost| {
            let (s, c) = h.get(&format!("/containers/{name}"));
            (s == 200).then(|| c["status"].as_str().unwrap_or("?").to_string())
        };
        (status(&self.a), status(&self.b))
    }
}
