//! The baseline a user would pick today: Podman's `container checkpoint --export`, a copy of
//! the archive over the same shaped host-host link, `container restore --import` on the
//! other host. Each testbed host gets a Podman of its own (separate storage, as two machines
//! would have), running in the host's network namespace with `--network host`; the app's
//! address moves from one host's `lo` to the other's, and the route switches, as for ferry.
//!
//! Podman 4.3 needs here (FIELD-NOTES.md): `--runtime runc --cgroup-manager cgroupfs
//! --events-backend file`, explicit nofile/nproc ulimits, CRIU >= 4.2 first in PATH, and
//! `nsenter --net` rather than `ip netns exec` (which remounts /sys and hides the cgroups).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use super::bed::{self, Bed, APP_PODMAN, APP_PORT};
use crate::cmd::local::in_netns;

/// Port the copy listens on, on host 2's address.
const COPY_PORT: u16 = 7190;
const NAME: &str = "benchapp";

/// Per-step times of one baseline migration, in ms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Steps {
    pub checkpoint_ms: f64,
    pub copy_ms: f64,
    pub restore_ms: f64,
    pub route_ms: f64,
    pub total_ms: f64,
    pub archive_bytes: u64,
}

/// Podman on both hosts of a testbed; dropping it removes containers, storage and mounts.
pub struct Podman {
    dir: PathBuf,
    run_dir: PathBuf,
    path_env: String,
    ns: [String; 2],
    pub version: String,
}

/// Installs podman when missing (scripts/bench-deps); Err says why it cannot be used.
pub fn ensure_installed() -> anyhow::Result<String> {
    let version = || {
        Command::new("podman")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-deps");
    eprintln!("podman is missing: running {}", script.display());
    let ok = Command::new(&script).status().is_ok_and(|s| s.success());
    match version() {
        Some(v) if ok => Ok(v),
        _ => bail!(
            "podman could not be installed from Debian ({})",
            script.display()
        ),
    }
}

impl Podman {
    /// `criu_dir`: the directory of the CRIU the ferry hosts use (Podman finds it in PATH).
    pub fn setup(bed: &Bed, criu_dir: &Path, image: &Path) -> anyhow::Result<Podman> {
        let version = ensure_installed()?;
        let dir = PathBuf::from(format!("/var/lib/ferry/bench-podman/{}", bed.name));
        let run_dir = PathBuf::from(format!("/run/ferry/bench-podman/{}", bed.name));
        let path_env = format!(
            "{}:{}",
            criu_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let p = Podman {
            dir,
            run_dir,
            path_env,
            ns: [bed.host_ns(1), bed.host_ns(2)],
            version,
        };
        let (dir, run_dir) = (p.dir.clone(), p.run_dir.clone());
        bed::on_signal("podman", move || cleanup(&dir, &run_dir));
        // The CRIU options ferry's hosts give runc (skip-in-flight: a connection the client
        // is opening at dump time is dropped, not a failed dump), through the same annotation.
        std::fs::create_dir_all(&p.dir)?;
        std::fs::write(p.criu_config(), ferry_runtime::spec::CRIU_CONFIG)?;
        for host in 1..=2 {
            p.podman(host, &["load", "-q", "-i", &image.to_string_lossy()])
                .context("podman load of the counter image")?;
        }
        Ok(p)
    }

    /// `podman ...` for host 1 or 2: its own storage, inside the host's network namespace.
    fn podman(&self, host: usize, args: &[&str]) -> anyhow::Result<String> {
        if bed::interrupted() {
            bail!("interrupted");
        }
        let side = if host == 1 { "a" } else { "b" };
        let root = self.dir.join(side);
        let run = self.run_dir.join(side);
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns[host - 1]))
            .arg("podman")
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--root"])
            .arg(root.join("storage"))
            .arg("--runroot")
            .arg(&run)
            .arg("--tmpdir")
            .arg(run.join("tmp"))
            .args(args)
            .env("PATH", &self.path_env)
            .stdin(Stdio::null())
            .output()
            .context("running podman")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!("podman {}: {last}", args.first().unwrap_or(&""));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn criu_config(&self) -> PathBuf {
        self.dir.join("criu.conf")
    }

    fn addr(&self, host: usize, op: &str) -> anyhow::Result<()> {
        ferry_testbed::command::ip_in(
            &self.ns[host - 1],
            &["addr", op, &format!("{APP_PODMAN}/32"), "dev", "lo"],
        )
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Starts the counter on host 1 (address on its `lo`, routed there).
    pub fn start(&self, bed: &Bed, ballast_mib: u32, dirty_mib_s: u32) -> anyhow::Result<()> {
        self.addr(1, "add")?;
        bed.route(APP_PODMAN, 1)?;
        self.podman(
            1,
            &[
                "run",
                "-d",
                "--name",
                NAME,
                "--network",
                "host",
                "--annotation",
                &format!(
                    "{}={}",
                    ferry_runtime::spec::CRIU_CONFIG_ANNOTATION,
                    self.criu_config().display()
                ),
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
                "localhost/ferry-counter",
                "--ballast-mib",
                &ballast_mib.to_string(),
                "--dirty-mib-s",
                &dirty_mib_s.to_string(),
                "--port",
                &APP_PORT.to_string(),
            ],
        )?;
        Ok(())
    }

    /// Checkpoint on host 1, copy over the host-host link, restore on host 2, route.
    pub fn migrate(&self, bed: &Bed) -> anyhow::Result<Steps> {
        let xfer = self.dir.join("xfer");
        std::fs::create_dir_all(&xfer)?;
        let (src, dst) = (xfer.join("a.tar"), xfer.join("b.tar"));
        let t0 = Instant::now();
        self.podman(
            1,
            &[
                "container",
                "checkpoint",
                "--tcp-established",
                "--export",
                &src.to_string_lossy(),
                NAME,
            ],
        )?;
        let checkpoint_ms = ms(t0);
        let t = Instant::now();
        let archive_bytes = copy_over_link(&self.ns, &src, &dst)?;
        let copy_ms = ms(t);
        let t = Instant::now();
        // The address moves with the app (its sockets are bound to it).
        self.addr(1, "del")?;
        self.addr(2, "add")?;
        self.podman(
            2,
            &[
                "container",
                "restore",
                "--tcp-established",
                "--import",
                &dst.to_string_lossy(),
            ],
        )?;
        let restore_ms = ms(t);
        let t = Instant::now();
        bed.route(APP_PODMAN, 2)?;
        let route_ms = ms(t);
        let total_ms = ms(t0);
        let _ = std::fs::remove_file(&src);
        let _ = std::fs::remove_file(&dst);
        Ok(Steps {
            checkpoint_ms,
            copy_ms,
            restore_ms,
            route_ms,
            total_ms,
            archive_bytes,
        })
    }

    /// Removes the app from both hosts and its address (between runs).
    pub fn reset(&self) {
        for host in 1..=2 {
            let _ = self.podman(host, &["rm", "-f", "-a"]);
            let _ = self.addr(host, "del");
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Sends `src` from host 1's namespace to a listener in host 2's namespace (host 2's
/// address), so the bytes cross the shaped link; returns the bytes copied.
fn copy_over_link(ns: &[String; 2], src: &Path, dst: &Path) -> anyhow::Result<u64> {
    let to: SocketAddr = format!("{}:{COPY_PORT}", bed::HOST2).parse()?;
    let listener = in_netns(&ns[1], move || TcpListener::bind(to))?
        .with_context(|| format!("listen on {to} in {}", ns[1]))?;
    let dst = dst.to_path_buf();
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut conn, _) = listener.accept()?;
        let mut file = std::fs::File::create(&dst)?;
        std::io::copy(&mut conn, &mut file)
    });
    let src = src.to_path_buf();
    let sent = in_netns(&ns[0], move || -> std::io::Result<u64> {
        let mut conn = TcpStream::connect(to)?;
        let mut file = std::fs::File::open(&src)?;
        let n = std::io::copy(&mut file, &mut conn)?;
        conn.shutdown(std::net::Shutdown::Write)?;
        Ok(n)
    })?
    .context("sending the checkpoint archive")?;
    let got = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?
        .context("receiving the checkpoint archive")?;
    if got != sent {
        bail!("copy incomplete: sent {sent} bytes, received {got}");
    }
    Ok(got)
}

/// Removes both Podmans' containers, mounts and storage, and the empty cgroups Podman left.
fn cleanup(dir: &Path, run_dir: &Path) {
    for side in ["a", "b"] {
        let _ = Command::new("podman")
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--root"])
            .arg(dir.join(side).join("storage"))
            .arg("--runroot")
            .arg(run_dir.join(side))
            .args(["rm", "-f", "-a"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| {
            m.starts_with(&*dir.to_string_lossy()) || m.starts_with(&*run_dir.to_string_lossy())
        })
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(run_dir);
    // The shared parents go once empty (another benchmark may still use them).
    for d in [dir, run_dir] {
        if let Some(parent) = d.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    // Podman's cgroupfs parent: remove only empty directories (deepest first).
    for controller in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        remove_empty_dirs(&controller.path().join("libpod_parent"));
    }
}

fn remove_empty_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Podman {
    fn drop(&mut self) {
        cleanup(&self.dir, &self.run_dir);
        bed::forget_cleanup("podman");
    }
}
