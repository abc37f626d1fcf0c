//! Finding CRIU and probing what it can do on this kernel. Never assumed: pre-copy needs
//! soft-dirty tracking (`mem_dirty_track`), post-copy needs userfaultfd (`uffd-noncoop`) and a
//! large enough `fs.pipe-max-size`; each is checked where it is used and reported by `doctor`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command;

/// The CRIU ferry needs: 4.2 fixes TCP dumps on kernels >= 6.16 and the vDSO layout of >= 6.13.
pub const MIN_VERSION: (u32, u32, u32) = (4, 2, 0);

/// `fs.pipe-max-size` lazy pages need when root lacks CAP_SYS_RESOURCE.
pub const MIN_PIPE_MAX_SIZE: u64 = 4 * 1024 * 1024;

/// Where CRIU is looked for, in order: `$FERRY_CRIU`, the private build `scripts/install-deps`
/// makes next to the source tree (found from the running binary's path), then `$PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_CRIU") {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let candidate = dir.join(".deps/criu/sbin/criu");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join("criu");
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// CRIU's version as (major, minor, patch), from `criu --version`.
pub fn version(criu: &Path) -> Option<(u32, u32, u32)> {
    let out = command::output(Command::new(criu).arg("--version")).ok()?;
    let v = out
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))?
        .trim()
        .to_string();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Some((
        parts.next()?,
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ))
}

/// `criu check`: Ok, or the reason it printed.
pub fn check(criu: &Path) -> Result<(), String> {
    command::output(Command::new(criu).arg("check"))
        .map(|_| ())
        .map_err(|e| e.stderr)
}

/// `criu check --feature NAME`.
pub fn has_feature(criu: &Path, feature: &str) -> bool {
    command::output(Command::new(criu).args(["check", "--feature", feature])).is_ok()
}

/// The kernel features the migration techniques depend on.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Features {
    /// Soft-dirty page tracking: CRIU pre-dump, so pre-copy and hybrid.
    pub mem_dirty_track: bool,
    /// userfaultfd for lazy pages: post-copy.
    pub lazy_pages: bool,
    /// `fs.pipe-max-size` large enough for lazy dumps.
    pub pipe_max_size_ok: bool,
}

pub fn features(criu: &Path) -> Features {
    Features {
        mem_dirty_track: has_feature(criu, "mem_dirty_track"),
        lazy_pages: has_feature(criu, "uffd-noncoop"),
        pipe_max_size_ok: pipe_max_size().is_some_and(|v| v >= MIN_PIPE_MAX_SIZE),
    }
}

pub fn pipe_max_size() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Processes (CRIU and runc: page servers, lazy-pages daemons, dumps) whose command line
/// names a path under `dir`. They are separate processes: a host daemon that stopped or
/// crashed mid-migration leaves them running, waiting on a peer or holding the app.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let program = args
            .first()
            .map(|a| Path::new(std::ffi::OsStr::from_bytes(a)))
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let ours = args
            .iter()
            .any(|a| Path::new(std::ffi::OsStr::from_bytes(a)).starts_with(dir));
        if matches!(program, "criu" | "runc") && ours {
            found.push(pid);
        }
    }
    found
}

/// Kills (SIGKILL) what [`processes_under`] finds and waits briefly until they are gone;
/// returns how many there were.
pub fn kill_processes_under(dir: &Path) -> usize {
    let pids = processes_under(dir);
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !processes_under(dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pids.len()
}
