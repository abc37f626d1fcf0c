//! The OCI runtime driver: runc's command line. runc runs the container and calls CRIU for
//! checkpoint and restore (`--criu` names the CRIU binary ferry found or built).
//!
//! Containers get /dev/null as stdio: CRIU cannot dump a process whose stdout is a host file
//! ("Can't lookup mount"), and a pipe to the daemon would break when the daemon restarts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::command::{self, CommandError};

#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    /// runc's state directory (`--root`), private to this host daemon.
    pub root: PathBuf,
    pub criu: PathBuf,
}

/// What `runc state` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct RuncState {
    pub status: String,
    pub pid: i64,
}

/// Options of one `runc checkpoint`.
#[derive(Debug, Clone)]
pub struct CheckpointOpts<'a> {
    pub image_path: &'a Path,
    pub work_path: &'a Path,
    pub leave_running: bool,
    pub tcp_established: bool,
    /// Send memory pages to this CRIU page server (`ADDR:PORT`) instead of the image dir.
    pub page_server: Option<&'a str>,
    /// Pre-dump: copy memory while the container keeps running (needs soft-dirty tracking).
    pub pre_dump: bool,
    /// The previous pre-dump's image dir, relative to `image_path`: only pages dirtied since
    /// then are dumped (runc adds CRIU's `--track-mem`).
    pub parent_path: Option<&'a str>,
    /// Give up after this long. A dump stuck sending pages (link cut, target gone) is
    /// unblocked by closing its connection to the page server: CRIU then fails cleanly and
    /// leaves the process as it found it.
    pub timeout: Option<std::time::Duration>,
}

/// Options of one `runc restore`.
#[derive(Debug, Clone)]
pub struct RestoreOpts<'a> {
    pub image_path: &'a Path,
    pub work_path: &'a Path,
    pub bundle: &'a Path,
    pub tcp_established: bool,
    /// Restore without memory; a `criu lazy-pages` daemon sharing `work_path` serves faults.
    pub lazy_pages: bool,
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--criu")
            .arg(&self.criu);
        c.stdout(Stdio::null());
        c
    }

    /// A runc command whose container process inherits runc's stdio (`run -d`, `restore -d`):
    /// all three must be /dev/null, or the container would hold our pipes open forever. Errors
    /// come back through runc's JSON log instead.
    fn detached(
        &self,
        op: &str,
        id: &str,
        args: impl FnOnce(&mut Command),
    ) -> Result<(), CommandError> {
        let log = self.root.join(format!("{id}.{op}.log"));
        let _ = std::fs::remove_file(&log);
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--criu")
            .arg(&self.criu);
        c.arg("--log").arg(&log).args(["--log-format", "json"]);
        args(&mut c);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Containers run without transparent huge pages. With them (Debian's kernels default to
        // THP=always) soft-dirty tracking marks a whole 2 MiB page dirty at one write, so each
        // pre-copy round of an app writing here and there resends all its memory: on Debian
        // 12's kernel, round 1 of a 48 MiB app writing 1 MiB/s at random sent 12342 pages of
        // 12288. The flag passes through fork and exec to the container's processes, and CRIU
        // dumps and restores it with them. A kernel without it (< 3.15) just keeps THP.
        // SAFETY: runs in the child between fork and exec; prctl is a plain system call.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
                Ok(())
            });
        }
        let status = c.status().map_err(|e| CommandError {
            command: format!("runc {op} {id}"),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
        if status.success() {
            return Ok(());
        }
        Err(CommandError {
            command: format!("runc {op} {id}"),
            status: status.to_string(),
            stderr: log_errors(&log),
        })
    }

    /// `runc run -d`: starts the container's process and returns once it runs.
    pub fn run_detached(&self, id: &str, bundle: &Path) -> Result<(), CommandError> {
        self.detached("run", id, |c| {
            c.args(["run", "-d", "-b"]).arg(bundle).arg(id);
        })
    }

    /// Whether runc keeps state for `id`: its directory under `--root` (runc's own layout),
    /// asked of the file system rather than read from runc's error text.
    fn knows(&self, id: &str) -> bool {
        self.root.join(id).join("state.json").exists()
    }

    /// `runc state`; `None` when runc does not know the container.
    pub fn state(&self, id: &str) -> Result<Option<RuncState>, CommandError> {
        if !self.knows(id) {
            return Ok(None);
        }
        let mut c = self.cmd();
        c.stdout(Stdio::piped());
        c.args(["state", id]);
        match command::output(&mut c) {
            Ok(out) => serde_json::from_str(&out)
                .map(Some)
                .map_err(|e| CommandError {
                    command: format!("runc state {id}"),
                    status: "unparsable output".into(),
                    stderr: e.to_string(),
                }),
            Err(_) if !self.knows(id) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn kill(&self, id: &str, signal: &str) -> Result<(), CommandError> {
        let mut c = self.cmd();
        c.args(["kill", id, signal]);
        command::output(&mut c).map(|_| ())
    }

    /// `runc delete --force`: no error when runc no longer knows the container.
    pub fn delete(&self, id: &str) -> Result<(), CommandError> {
        let mut c = self.cmd();
        c.args(["delete", "--force", id]);
        match command::output(&mut c) {
            Err(_) if !self.knows(id) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `runc checkpoint`. Without `leave_running`, runc destroys the container after the dump.
    pub fn checkpoint(&self, id: &str, o: &CheckpointOpts) -> Result<(), CommandError> {
        let mut c = self.cmd();
        c.arg("checkpoint")
            .arg("--image-path")
            .arg(o.image_path)
            .arg("--work-path")
            .arg(o.work_path);
        if o.leave_running {
            c.arg("--leave-running");
        }
        if o.tcp_established {
            c.arg("--tcp-established");
        }
        if let Some(ps) = o.page_server {
            c.arg("--page-server").arg(ps);
        }
        if o.pre_dump {
            c.arg("--pre-dump");
        }
        if let Some(parent) = o.parent_path {
            c.arg("--parent-path").arg(parent);
        }
        c.arg(id);
        match o.timeout {
            None => command::output(&mut c).map(|_| ()),
            Some(t) => command::output_until(&mut c, t, || {
                if let Some(ps) = o.page_server {
                    crate::net::close_connections_to(ps);
                }
            })
            .map(|_| ()),
        }
    }

    /// `runc pause`: freezes every process of the container (freezer cgroup).
    pub fn pause(&self, id: &str) -> Result<(), CommandError> {
        let mut c = self.cmd();
        c.args(["pause", id]);
        command::output(&mut c).map(|_| ())
    }

    /// `runc resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<(), CommandError> {
        let mut c = self.cmd();
        c.args(["resume", id]);
        command::output(&mut c).map(|_| ())
    }

    /// `runc restore -d`: recreates the container from a checkpoint and returns once it runs.
    pub fn restore(&self, id: &str, o: &RestoreOpts) -> Result<(), CommandError> {
        self.detached("restore", id, |c| {
            c.arg("restore")
                .arg("-d")
                .arg("--image-path")
                .arg(o.image_path)
                .arg("--work-path")
                .arg(o.work_path)
                .arg("-b")
                .arg(o.bundle);
            if o.tcp_established {
                c.arg("--tcp-established");
            }
            if o.lazy_pages {
                c.arg("--lazy-pages");
            }
            c.arg(id);
        })
    }

    /// `runc checkpoint --lazy-pages` in the background: CRIU dumps everything but memory,
    /// then serves the pages from `page_server` (`ADDR:PORT`) until the target has them all,
    /// and only then exits. Returns the running checkpoint once its page server is ready.
    pub fn checkpoint_lazy(
        &self,
        id: &str,
        o: &CheckpointOpts,
        ready_timeout: std::time::Duration,
    ) -> Result<std::process::Child, CommandError> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let err = |stderr: String| CommandError {
            command: format!("runc checkpoint --lazy-pages {id}"),
            status: "failed".into(),
            stderr,
        };
        let (mut ready_rx, ready_tx) = std::io::pipe().map_err(|e| err(e.to_string()))?;
        let fd = ready_tx.as_raw_fd();
        let log = self.root.join(format!("{id}.checkpoint-lazy.log"));
        let _ = std::fs::remove_file(&log);
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--criu")
            .arg(&self.criu);
        c.arg("--log").arg(&log).args(["--log-format", "json"]);
        c.arg("checkpoint")
            .args(["--lazy-pages", "--leave-running", "--tcp-established"])
            .arg("--page-server")
            .arg(o.page_server.unwrap_or("0.0.0.0:0"))
            .args(["--status-fd", &fd.to_string()])
            .arg("--image-path")
            .arg(o.image_path)
            .arg("--work-path")
            .arg(o.work_path);
        if let Some(parent) = o.parent_path {
            c.arg("--parent-path").arg(parent);
        }
        c.arg(id);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that stopping it reaches CRIU (runc's child) as well.
        c.process_group(0);
        // SAFETY: runs in the child between fork and exec; fcntl is async-signal-safe. It lets
        // only this child inherit the status pipe (std creates pipes close-on-exec).
        unsafe {
            c.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = c.spawn().map_err(|e| err(e.to_string()))?;
        drop(ready_tx);
        // CRIU writes one NUL byte when its page server is ready; EOF means runc died.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut b = [1u8; 1];
            let r = ready_rx.read(&mut b);
            let _ = tx.send(matches!(r, Ok(1)) && b[0] == 0);
        });
        match rx.recv_timeout(ready_timeout) {
            Ok(true) => Ok(child),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let why = if other.is_err() {
                    "page server not ready in time".to_string()
                } else {
                    log_errors(&log)
                };
                Err(err(why))
            }
        }
    }

    /// Version line of the runc binary (for `doctor` and `/info`).
    pub fn version(binary: &Path) -> Option<String> {
        command::output(Command::new(binary).arg("--version"))
            .ok()
            .and_then(|o| o.lines().next().map(str::to_string))
    }
}

/// The error messages of a runc JSON log (`{"level":"error","msg":...}` lines).
fn log_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect();
    if msgs.is_empty() {
        format!("no error message (see {})", log.display())
    } else {
        msgs.join(" | ")
    }
}

/// The last error lines of a CRIU log, to put in an error message.
pub fn criu_log_tail(work_path: &Path, log: &str) -> String {
    let Ok(text) = std::fs::read_to_string(work_path.join(log)) else {
        return String::new();
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    let pick = if errors.is_empty() {
        text.lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    } else {
        errors
            .into_iter()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
    };
    pick.join(" | ")
}
