//! A `ferry host` daemon in a network namespace of its own on this machine, for the
//! single-host demo and the checkpoint benchmark. Everything it creates (namespace, state
//! directory, daemon, containers) is removed by [`LocalHost::cleanup`], which also runs on
//! drop and on Ctrl-C / SIGTERM.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

pub const API: &str = "http://127.0.0.1:7100/ferry/v1";

/// Runs `f` on a thread inside network namespace `ns`; sockets made there stay in it.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = ferry_runtime::net::netns_path(ns);
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in namespace panicked"))?
}

/// What must be undone; shared with the signal handler.
struct Owned {
    netns: String,
    state_dir: PathBuf,
    daemon: Option<Child>,
}

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Owned {
    fn cleanup(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
        let runc_root = self.state_dir.join("runc");
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
            }
        }
        let root = self.state_dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
        {
            quiet("umount", &["-l", m]);
        }
        // Container namespaces carry the daemon's id; read them from the records.
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("containers")) {
            for e in entries.flatten() {
                let rec: Option<Value> = std::fs::read(e.path().join("state.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if let Some(ns) = rec.as_ref().and_then(|r| r["netns"].as_str()) {
                    quiet("ip", &["netns", "del", ns]);
                }
            }
        }
        quiet("ip", &["netns", "del", &self.netns]);
        // runc removed the containers' cgroups; their empty /ferry/<id> parents remain.
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let ferry = controller.path().join("ferry");
            for id in std::fs::read_dir(&ferry).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(id.path());
            }
            let _ = std::fs::remove_dir(ferry);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub struct LocalHost {
    pub netns: String,
    pub state_dir: PathBuf,
    owned: Arc<Mutex<Owned>>,
    pub http: reqwest::blocking::Client,
}

impl LocalHost {
    /// Creates the namespace, starts `ferry host` in it and waits until it answers.
    pub fn start(label: &str) -> anyhow::Result<LocalHost> {
        if !nix::unistd::geteuid().is_root() {
            bail!("needs root (network namespaces, mounts, CRIU): run it with sudo");
        }
        let netns = format!("ferry-{label}-{}", std::process::id());
        let state_dir = std::env::temp_dir().join(&netns);
        let owned = Arc::new(Mutex::new(Owned {
            netns: netns.clone(),
            state_dir: state_dir.clone(),
            daemon: None,
        }));
        // Ctrl-C or SIGTERM: undo everything, then exit.
        let for_signal = owned.clone();
        let _ = ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: cleaning up");
            if let Ok(mut o) = for_signal.lock() {
                o.cleanup();
            }
            std::process::exit(130);
        });
        if !quiet("ip", &["netns", "add", &netns]) {
            bail!(
                "cannot create network namespace {netns} (is iproute2 installed? run `make deps`)"
            );
        }
        std::fs::create_dir_all(&state_dir)?;
        let log = File::create(state_dir.join("daemon.log"))?;
        let daemon = Command::new(std::env::current_exe()?)
            .args([
                "host",
                "--name",
                label,
                "--netns",
                &netns,
                "--listen",
                "127.0.0.1:7100",
            ])
            .arg("--state-dir")
            .arg(&state_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start ferry host")?;
        owned.lock().map_err(|_| anyhow::anyhow!("lock"))?.daemon = Some(daemon);
        let http = in_netns(&netns, || {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
        })??;
        let host = LocalHost {
            netns,
            state_dir,
            owned,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !host
            .http
            .get(format!("{API}/health"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("ferry host did not start: {}", host.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(host)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("daemon.log")).unwrap_or_default()
    }

    fn check(r: reqwest::blocking::Response) -> anyhow::Result<Value> {
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{status}: {}",
                body["detail"].as_str().unwrap_or(&body.to_string())
            );
        }
        Ok(body)
    }

    pub fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Self::check(self.http.post(format!("{API}{path}")).json(&body).send()?)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        Self::check(self.http.get(format!("{API}{path}")).send()?)
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        let r = self.http.delete(format!("{API}{path}")).send()?;
        if !r.status().is_success() {
            bail!("DELETE {path}: {}", r.status());
        }
        Ok(())
    }

    pub fn import_image(&self, name: &str, archive: &Path) -> anyhow::Result<Value> {
        let body = std::fs::read(archive).with_context(|| {
            format!(
                "cannot read {} (build it with `make counter-image`)",
                archive.display()
            )
        })?;
        Self::check(
            self.http
                .post(format!("{API}/images?name={name}&replace=true"))
                .body(body)
                .send()?,
        )
    }

    /// Opens a TCP connection from the host's namespace (retrying while the app starts).
    pub fn connect(&self, addr: &str) -> anyhow::Result<AppConn> {
        let addr: std::net::SocketAddr = addr.parse()?;
        let stream = in_netns(&self.netns, move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(s) => return Ok(s),
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })??;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(AppConn { stream })
    }

    pub fn cleanup(&self) {
        if let Ok(mut o) = self.owned.lock() {
            o.cleanup();
        }
    }
}

impl Drop for LocalHost {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// One keep-alive HTTP/1.1 connection to a ferry-counter.
pub struct AppConn {
    pub stream: TcpStream,
}

impl AppConn {
    pub fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        use std::io::{BufRead, BufReader, Read, Write};
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: app\r\n\r\n")?;
        let mut reader = BufReader::new(&self.stream);
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("connection closed");
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
        Ok(serde_json::from_slice(&body)?)
    }
}
