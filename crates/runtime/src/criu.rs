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

/// CRIU and runc processes (page servers, lazy-pages daemons, dumps) working on anything
/// under `dir`: their command line names a path there, or they hold a file or their working
/// directory there (runc hands `criu swrk` the images directory as an open descriptor, so
/// its command line names nothing). They are separate processes: a host daemon that stopped
/// or crashed mid-migration leaves them running, waiting on a peer or holding the app.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let under = |p: &Path| p.starts_with(dir);
    let mut found = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !matches!(comm.trim(), "criu" | "runc") {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let in_args = cmdline
            .split(|b| *b == 0)
            .any(|a| under(Path::new(std::ffi::OsStr::from_bytes(a))));
        let in_cwd = std::fs::read_link(e.path().join("cwd")).is_ok_and(|p| under(&p));
        let in_fds = || {
            std::fs::read_dir(e.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| under(&p)))
        };
        if in_args || in_cwd || in_fds() {
            found.push(pid);
        }
    }
    found
}

/// Stops what [`processes_under`] finds: SIGTERM first (a CRIU that is told to stop lets go of
/// the tasks it holds and leaves them as it found them; one that is SIGKILLed may leave
/// them stopped), SIGKILL for what is still there after a grace period. Returns how many
/// there were.
pub fn kill_processes_under(dir: &Path) -> usize {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pids = processes_under(dir);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let wait_gone = |d: std::time::Duration| {
        let deadline = std::time::Instant::now() + d;
        while !processes_under(dir).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_gone(std::time::Duration::from_secs(10));
    for pid in processes_under(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait_gone(std::time::Duration::from_secs(5));
    pids.len()
}

/// Whether this CRIU was built with TLS (GnuTLS): without it, any command given `--tls`
/// fails its option check ("CRIU was built without TLS support") before doing anything.
pub fn has_tls(criu: &Path) -> bool {
    command::output(Command::new(criu).args(["check", "--tls"])).is_ok()
}

/// Which end of a page-server connection a CRIU process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It listens: a target's page server (cold, pre-copy), a source's lazy dump (post-copy).
    Listens,
    /// It connects: a source's dump to the target's page server, a target's lazy-pages
    /// daemon to the source's page server.
    Dials,
}

/// CRIU's TLS for page-server traffic (`--tls`): both ends present a certificate of the
/// operator's CA and check the other's. What CRIU itself checks: the chain to the CA on both
/// ends, and on the dialling end that the listener's certificate names the dialled address
/// (a host's certificate carries its API address, where its page servers listen too).
/// What it cannot check is ferry's identity (`host:NAME`): the listening end verifies the
/// chain only (`--tls-no-cn-verify`, since it has no name to expect). That gap is closed by
/// the migration channel: each page server is started for one migration, on a fresh port
/// told only to the peer the mutually authenticated channel named, and serves one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriuTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CriuTls {
    /// The options as (name, value) pairs, the same for the command line and config files.
    fn options(&self, end: End) -> Vec<(&'static str, Option<&Path>)> {
        let mut o = vec![
            ("tls", None),
            ("tls-cacert", Some(self.ca.as_path())),
            ("tls-cert", Some(self.cert.as_path())),
            ("tls-key", Some(self.key.as_path())),
        ];
        if end == End::Listens {
            o.push(("tls-no-cn-verify", None));
        }
        o
    }

    /// Command-line arguments for a CRIU ferry starts itself.
    pub fn args(&self, end: End) -> Vec<std::ffi::OsString> {
        let mut out = Vec::new();
        for (name, value) in self.options(end) {
            out.push(format!("--{name}").into());
            if let Some(v) = value {
                out.push(v.as_os_str().to_owned());
            }
        }
        out
    }

    /// Lines of a CRIU configuration file (runc passes one to the CRIU it starts). CRIU
    /// splits those lines at white space, so a path holding any is refused.
    pub fn config_lines(&self, end: End) -> Result<String, String> {
        let mut out = String::new();
        for (name, value) in self.options(end) {
            out.push_str(name);
            if let Some(v) = value {
                let v = v
                    .to_str()
                    .filter(|s| !s.chars().any(char::is_whitespace))
                    .ok_or_else(|| {
                        format!(
                            "CRIU cannot read the TLS file path '{}' from its configuration file \
                             (white space or not UTF-8): move the PKI directory",
                            v.display()
                        )
                    })?;
                out.push(' ');
                out.push_str(v);
            }
            out.push('\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    fn tls(dir: &str) -> CriuTls {
        CriuTls {
            ca: PathBuf::from(format!("{dir}/ca.crt")),
            cert: PathBuf::from(format!("{dir}/host-mec1.crt")),
            key: PathBuf::from(format!("{dir}/host-mec1.key")),
        }
    }

    #[test]
    fn only_the_listening_end_skips_the_name_check() {
        let t = tls("/pki");
        let dial = t.config_lines(End::Dials).unwrap();
        let listen = t.config_lines(End::Listens).unwrap();
        assert_eq!(
            dial,
            "tls\ntls-cacert /pki/ca.crt\ntls-cert /pki/host-mec1.crt\ntls-key /pki/host-mec1.key\n"
        );
        assert_eq!(listen, format!("{dial}tls-no-cn-verify\n"));
        let args: Vec<String> = t
            .args(End::Dials)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--tls",
                "--tls-cacert",
                "/pki/ca.crt",
                "--tls-cert",
                "/pki/host-mec1.crt",
                "--tls-key",
                "/pki/host-mec1.key"
            ]
        );
    }

    #[test]
    fn a_path_with_white_space_cannot_go_into_a_config_file() {
        let e = tls("/my pki").config_lines(End::Dials).unwrap_err();
        assert!(e.contains("/my pki/ca.crt"), "{e}");
    }
}

/// Where ferry's own CRIU build keeps its kernel-feature cache (`scripts/install-deps` builds
/// it with `RUNDIR` set to this). CRIU probes the kernel at every start (about 100 ms here,
/// `iptables -L` included) unless it finds a fresh cache, and keeps one only on a tmpfs. A
/// system CRIU uses /run, a tmpfs on most servers.
pub const KDAT_DIR: &str = "/run/ferry/criu";

/// What [`ensure_kdat_cache`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KdatCache {
    /// [`KDAT_DIR`] is on a tmpfs already (/run is one, or an earlier host mounted it).
    Ready,
    /// A tmpfs was mounted there now (it stays, shared by every host on this machine, and is
    /// gone at reboot, when the kernel's features may change).
    Mounted,
}

/// Makes [`KDAT_DIR`] a tmpfs (root only) if it is not on one, so CRIU keeps its cache.
pub fn ensure_kdat_cache() -> Result<KdatCache, String> {
    let dir = Path::new(KDAT_DIR);
    std::fs::create_dir_all(dir).map_err(|e| format!("create {KDAT_DIR}: {e}"))?;
    if on_tmpfs(dir) {
        return Ok(KdatCache::Ready);
    }
    use nix::mount::{mount, MsFlags};
    mount(
        Some("ferry-criu"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=1m,mode=0700"),
    )
    .map_err(|e| format!("mount a tmpfs on {KDAT_DIR}: {e}"))?;
    Ok(KdatCache::Mounted)
}

/// Whether `dir` is on a tmpfs (where CRIU keeps its cache).
pub fn on_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}
