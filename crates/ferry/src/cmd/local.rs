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
use ferry_host_client::{HostClient, HostError};
use serde_json::Value;

/// The daemon's API, in its own namespace.
pub const API: &str = "http://127.0.0.1:7100";

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
        let mut runc_ids = Vec::new();
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
                runc_ids.push(id);
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
        // runc removed the containers' cgroups (or left them to the runtime, whose daemon is
        // gone now); the daemon's /ferry/<id> parents remain.
        if let Ok(dir) = std::fs::canonicalize(&self.state_dir) {
            let daemon = ferry_runtime::daemon_id(&dir);
            let cgroups = ferry_runtime::cgroup::Hierarchies::mounted();
            for name in &runc_ids {
                cgroups.remove(
                    &ferry_runtime::cgroup::path(&daemon, name),
                    Duration::from_secs(10),
                );
            }
            cgroups.remove_empty_parents(&daemon);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub struct LocalHost {
    pub netns: String,
    pub state_dir: PathBuf,
    owned: Arc<Mutex<Owned>>,
    client: HostClient,
    /// Its worker was started inside the namespace: the client's sockets are made there.
    rt: tokio::runtime::Runtime,
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
        let rt = in_netns(&netns, || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        })??;
        let host = LocalHost {
            netns,
            state_dir,
            owned,
            client: HostClient::new(API)?,
            rt,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while host.call(|c| async move { c.health().await }).is_err() {
            if Instant::now() > deadline {
                bail!("ferry host did not start: {}", host.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(host)
    }

    /// Runs a call of the host's client on the runtime inside the namespace.
    pub fn call<T, F>(&self, f: impl FnOnce(HostClient) -> F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, HostError>> + Send + 'static,
    {
        let task = self.rt.spawn(f(self.client.clone()));
        self.rt.block_on(task).map_err(|e| HostError::Protocol {
            url: API.to_string(),
            reason: format!("the call's task failed: {e}"),
        })?
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn import_image(&self, name: &str, archive: &Path) -> anyhow::Result<Value> {
        let body = std::fs::read(archive).with_context(|| {
            format!(
                "cannot read {} (build it with `make counter-image`)",
                archive.display()
            )
        })?;
        let name = name.to_string();
        Ok(self.call(move |c| async move {
            c.upload_image(&name, bytes::Bytes::from(body), true).await
        })?)
    }

    pub fn info(&self) -> anyhow::Result<Value> {
        Ok(self.call(|c| async move { c.info().await })?)
    }

    /// Creates and starts a ferry-counter at `ip:8080` with `ballast_mib` it rewrites at
    /// `dirty_mib_s`.
    pub fn run_counter(
        &self,
        name: &str,
        ip: std::net::Ipv4Addr,
        ballast_mib: u32,
        dirty_mib_s: f64,
    ) -> anyhow::Result<()> {
        let req = ferry_wire::ContainerRequest {
            name: name.to_string(),
            image: "counter".into(),
            ip: Some(ip),
            memory_mib: Some(64 + 2 * u64::from(ballast_mib)),
            args: Some(vec![
                "--ballast-mib".into(),
                ballast_mib.to_string(),
                "--dirty-mib-s".into(),
                dirty_mib_s.to_string(),
                "--port".into(),
                "8080".into(),
            ]),
            env: vec![],
            cpus: None,
        };
        let n = name.to_string();
        self.call(move |c| async move {
            c.create(&req).await?;
            c.start(&n).await
        })?;
        Ok(())
    }

    pub fn container(&self, name: &str) -> anyhow::Result<ferry_wire::Container> {
        let n = name.to_string();
        Ok(self.call(move |c| async move { c.container(&n).await })?)
    }

    /// Checkpoints `name` (with its TCP connections) with `engine`; the app stops.
    pub fn checkpoint(
        &self,
        name: &str,
        engine: ferry_wire::migration::CheckpointEngine,
    ) -> anyhow::Result<ferry_wire::container::CheckpointReport> {
        let n = name.to_string();
        let req = ferry_wire::container::CheckpointRequest {
            tcp_established: true,
            engine: Some(engine),
            ..Default::default()
        };
        Ok(self.call(move |c| async move { c.checkpoint(&n, &req).await })?)
    }

    /// Restores `name` from its last checkpoint with `engine`.
    pub fn restore(
        &self,
        name: &str,
        engine: ferry_wire::migration::CheckpointEngine,
    ) -> anyhow::Result<ferry_wire::container::RestoreReport> {
        let n = name.to_string();
        let req = ferry_wire::container::RestoreRequest {
            tcp_established: true,
            engine: Some(engine),
            ..Default::default()
        };
        Ok(self.call(move |c| async move { c.restore(&n, &req).await })?)
    }

    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        let n = name.to_string();
        Ok(self.call(move |c| async move { c.delete(&n).await })?)
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
