//! The native engine: ferry drives CRIU over its RPC ([`crate::criu_rpc`]) for a migration's
//! dumps and restore, so that nothing but CRIU runs while the app is frozen. The runc engine
//! (runc's CLI, which starts CRIU itself, after asking another CRIU for its version and
//! features) stays selectable; both write the same images.
//!
//! What runc tells CRIU about a container, ferry tells it here from the same facts: the root
//! filesystem, the network namespace given by path (external: CRIU leaves it to the restore,
//! which hands it back as an inherited descriptor), the freezer cgroup, the bind mounts it
//! cannot dump (the masked paths, bound from /dev/null, and on cgroup v1 each controller's
//! directory, bound into the container's /sys/fs/cgroup), and `descriptors.json`, so that
//! runc can restore what ferry dumped.
//!
//! Who owns a container CRIU restored for ferry: ferry. runc knows a container only through
//! the state it writes when it creates or restores one itself, and has no way to adopt one;
//! writing runc's private state files would tie ferry to one runc version. The restored
//! container lives in cgroups ferry names (the same paths runc would use), so ferry tracks it
//! by its init's pid and start time and acts on it through the kernel's interfaces, as runc
//! does underneath: the cgroup freezer to pause and thaw, signals to every process of its
//! cgroup to stop it, removing the cgroups once empty (`Owner::Ferry` in its record).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{io, Runtime, RuntimeError};
use crate::container::{Container, Owner};
use crate::criu::{CriuTls, End};
use crate::criu_rpc::{self, CgMode, ExtMountMap, NetworkLock, Opts, PageServerInfo, Req, ReqType};
use crate::net;
use crate::spec;

/// The key under which runc and ferry name a container's network namespace in its images.
pub(super) const NETNS_KEY: &str = "extRootNetNS";

/// A dump's options beyond the container's own.
pub struct NativeDump<'a> {
    pub image_dir: &'a Path,
    pub work_dir: &'a Path,
    /// `ADDR:PORT` of the page server: the target's (cold, pre-copy) or, with `lazy`, where
    /// this dump serves the pages itself.
    pub page_server: Option<(String, u16)>,
    pub lazy: bool,
    /// A pre-dump's image dir, relative to `image_dir`: only pages dirtied since go.
    pub parent: Option<&'a str>,
    /// Pre-dump: the app keeps running and only memory moves.
    pub pre_dump: bool,
    pub tls: Option<(&'a CriuTls, End)>,
    /// The app is parked (a migration's final dump): no network lock needed.
    pub parked: bool,
    /// The processes stay (frozen as found, for a migration); otherwise CRIU ends them
    /// after the dump.
    pub leave_running: bool,
    pub tcp_established: bool,
    pub timeout: Duration,
    /// Called at CRIU's `pre-dump` notification: connected to the page server, the app
    /// not yet touched (see `handoff::Dump::connected`).
    pub on_connected: Option<&'a dyn Fn() -> Result<(), String>>,
}

/// The warm-up before a dump to a page server: enough for TCP to grow its window past a
/// 1 Gbit/s x 10 ms path's bandwidth-delay product (1.2 MB) from its initial 10 segments.
const WARM_UP_KIB: u32 = 4096;

fn path_str(p: &Path) -> Result<String, RuntimeError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| RuntimeError::Invalid(format!("path {} is not UTF-8", p.display())))
}

fn open_dir(p: &Path) -> Result<std::fs::File, RuntimeError> {
    std::fs::File::open(p).map_err(io(format!("open {}", p.display())))
}

/// One line of a mountinfo file: what of it ferry reads.
struct Mount<'a> {
    /// The mounted directory of its filesystem (`/` for the whole of it).
    root: &'a str,
    mountpoint: &'a str,
    fstype: &'a str,
}

/// The mounts of a mountinfo file's text (lines it cannot read are left out).
fn mounts(mountinfo: &str) -> impl Iterator<Item = Mount<'_>> {
    mountinfo.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        Some(Mount {
            root: fields.get(3)?,
            mountpoint: fields.get(4)?,
            fstype: fields.get(sep + 1)?,
        })
    })
}

/// The mounts of a process' mount namespace that CRIU cannot dump by itself, as
/// (mountpoint, name in the images): binds from outside the container's root.
fn external_mounts(pid: i32, masked: &[String]) -> Result<Vec<ExtMountMap>, RuntimeError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(io(format!("read /proc/{pid}/mountinfo")))?;
    let mut out = Vec::new();
    for Mount {
        root,
        mountpoint,
        fstype,
    } in mounts(&text)
    {
        if fstype == "cgroup" {
            // cgroup v1: each controller's directory of the container, bound in by runc.
            out.push(ExtMountMap {
                key: mountpoint.to_string(),
                val: mountpoint.to_string(),
            });
        } else if masked.iter().any(|m| m == mountpoint) && root != "/" {
            // A masked file: /dev/null bound over it.
            out.push(ExtMountMap {
                key: mountpoint.to_string(),
                val: "/dev/null".to_string(),
            });
        }
    }
    Ok(out)
}

impl Runtime {
    /// The freezer cgroup of container `name` (cgroup v1's freezer hierarchy, or the
    /// unified one).
    pub(super) fn freezer_cgroup(&self, name: &str) -> PathBuf {
        let rel = self.cgroups_path(name);
        let rel = rel.trim_start_matches('/');
        let v1 = Path::new("/sys/fs/cgroup/freezer");
        if v1.is_dir() {
            v1.join(rel)
        } else {
            Path::new("/sys/fs/cgroup").join(rel)
        }
    }

    /// The pid of the container's init as the kernel knows it now (runc is asked for its
    /// containers: look it up before the freeze).
    pub(super) fn init_pid_of(&self, c: &Container) -> Result<i32, RuntimeError> {
        if let Owner::Ferry { pid, .. } = c.owner {
            return Ok(pid);
        }
        match self.runc.state(&c.name)? {
            Some(s) if s.pid > 0 => Ok(s.pid as i32),
            _ => Err(RuntimeError::Invalid(format!(
                "container '{}' has no process",
                c.name
            ))),
        }
    }

    /// CRIU's options for dumping container `c` (its init is `pid`).
    fn dump_opts(&self, c: &Container, pid: i32, d: &NativeDump) -> Result<Opts, RuntimeError> {
        let netns = std::fs::metadata(net::netns_path(&c.netns))
            .map_err(io(format!("stat the network namespace of '{}'", c.name)))?;
        use std::os::unix::fs::MetadataExt;
        let masked = spec::masked_paths();
        let mut o = Opts {
            images_dir_fd: -1,
            pid: Some(pid),
            leave_running: Some(d.leave_running),
            tcp_established: Some(d.tcp_established),
            tcp_skip_in_flight: Some(true),
            shell_job: Some(false),
            log_level: Some(4),
            log_file: Some("dump.log".into()),
            notify_scripts: Some(true),
            root: Some(path_str(
                &self.container_dir(&c.name).join("bundle/rootfs"),
            )?),
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(CgMode::Default as i32),
            orphan_pts_master: Some(true),
            external: vec![format!("net[{}]:{NETNS_KEY}", netns.ino())],
            freeze_cgroup: Some(path_str(&self.freezer_cgroup(&c.name))?),
            cgroup_yard: cgroup_yard(),
            lazy_pages: d.lazy.then_some(true),
            ..Default::default()
        };
        if d.parked {
            o.network_lock = Some(NetworkLock::Skip as i32);
        }
        if !d.pre_dump {
            o.ext_mnt = external_mounts(pid, &masked)?;
        }
        if let Some((addr, port)) = &d.page_server {
            o.ps = Some(PageServerInfo {
                address: Some(addr.clone()),
                port: Some(i32::from(*port)),
                pid: None,
                fd: None,
            });
            // A dump that stops the app once connected (`on_connected`) opens the new
            // connection's congestion window first, while the app still runs: otherwise TCP's
            // ramp to the link's rate happens while it is stopped.
            if d.on_connected.is_some() && !d.lazy {
                o.ps_warm_up_kib = Some(WARM_UP_KIB);
            }
        }
        if let Some(parent) = d.parent {
            o.parent_img = Some(parent.to_string());
            o.track_mem = Some(true);
        } else if d.pre_dump {
            o.track_mem = Some(true);
        }
        if let Some((tls, end)) = d.tls {
            o.tls = Some(true);
            o.tls_cacert = Some(path_str(&tls.ca)?);
            o.tls_cert = Some(path_str(&tls.cert)?);
            o.tls_key = Some(path_str(&tls.key)?);
            o.tls_no_cn_verify = (end == End::Listens).then_some(true);
        }
        Ok(o)
    }

    /// Writes what runc keeps next to its images (the init's stdio), so runc can restore
    /// images ferry dumped.
    fn write_descriptors(pid: i32, image_dir: &Path) -> Result<(), RuntimeError> {
        let fds: Vec<String> = (0..3)
            .map(|fd| {
                std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "/dev/null".into())
            })
            .collect();
        let json = serde_json::to_vec(&fds).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        std::fs::write(image_dir.join("descriptors.json"), json)
            .map_err(io("write descriptors.json"))
    }

    /// Dumps container `c` (its init `pid`) with CRIU directly. A plain dump returns when
    /// CRIU has written everything (pages to the page server when one is given). A lazy dump
    /// returns once its page server is ready, with the CRIU process that serves the pages
    /// until the target has them all.
    pub(super) fn native_dump(
        &self,
        c: &Container,
        pid: i32,
        d: &NativeDump,
    ) -> Result<Option<std::process::Child>, RuntimeError> {
        std::fs::create_dir_all(d.image_dir).map_err(io("create the images dir"))?;
        let images = open_dir(d.image_dir)?;
        let work = open_dir(d.work_dir)?;
        let mut o = self.dump_opts(c, pid, d)?;
        o.images_dir_fd = images.as_raw_fd();
        o.work_dir_fd = Some(work.as_raw_fd());
        if !d.pre_dump {
            Self::write_descriptors(pid, d.image_dir)?;
        }
        let kind = if d.pre_dump {
            ReqType::PreDump
        } else {
            ReqType::Dump
        };
        let req = Req {
            r#type: kind as i32,
            opts: Some(o),
            notify_success: None,
        };
        let criu_err = |action: &'static str, e: criu_rpc::RpcError| RuntimeError::Criu {
            action,
            name: c.name.clone(),
            detail: format!(
                "{e}; CRIU: {}",
                crate::runc::criu_log_tail(d.work_dir, "dump.log")
            ),
        };
        let action = if d.pre_dump { "pre-dump" } else { "dump" };
        let session =
            criu_rpc::Session::start(&self.config.criu, &[]).map_err(|e| criu_err(action, e))?;
        let page_server = d.page_server.clone();
        let timed_out = std::cell::Cell::new(false);
        let unblock = || {
            // A dump stuck sending pages (link cut, target gone): closing its connection
            // makes CRIU fail cleanly and leave the app as it found it.
            timed_out.set(true);
            if let Some((addr, port)) = &page_server {
                net::close_connections_to(&format!("{addr}:{port}"));
            }
        };
        if d.lazy {
            // CRIU notifies `status-ready` once its page server listens; its answer to the
            // dump comes only when the target has every page.
            return session
                .call_until_notified(&req, d.timeout, "status-ready")
                .map(Some)
                .map_err(|e| criu_err("lazy dump", e));
        }
        let mut session = session;
        let notified = |script: &str, _: Option<i32>| match d.on_connected {
            Some(connected) if script == "pre-dump" => connected(),
            _ => Ok(()),
        };
        let result = session.call(&req, d.timeout, notified, unblock);
        if timed_out.get() {
            return Err(RuntimeError::Criu {
                action,
                name: c.name.clone(),
                detail: format!(
                    "timed out after {:?}: its connection to the page server was closed; CRIU: {}",
                    d.timeout,
                    crate::runc::criu_log_tail(d.work_dir, "dump.log")
                ),
            });
        }
        result.map_err(|e| criu_err(action, e))?;
        session.finish();
        Ok(None)
    }
}

/// The host's cgroup hierarchies as CRIU's cgroup yard, when they are mounted as CRIU lays
/// out a yard it makes itself: one directory per hierarchy under /sys/fs/cgroup, named by its
/// controllers (`name=` dropped, `unified` for cgroup v2), the whole hierarchy in each. CRIU
/// then mounts none of them itself, which costs about 12 ms of each dump and each restore
/// here, both inside the frozen window. None where the layout differs (a pure cgroup v2
/// host mounts its one hierarchy at /sys/fs/cgroup itself): CRIU makes its own yard there.
fn cgroup_yard() -> Option<String> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    yard_of(&cgroups, &mountinfo)
}

/// [`cgroup_yard`] from the texts of /proc/self/cgroup and /proc/self/mountinfo.
fn yard_of(cgroups: &str, mountinfo: &str) -> Option<String> {
    const ROOT: &str = "/sys/fs/cgroup";
    // Every whole hierarchy mounted.
    let whole: Vec<Mount> = mounts(mountinfo).filter(|m| m.root == "/").collect();
    let mut any = false;
    for line in cgroups.lines() {
        let controllers = line.split(':').nth(1)?;
        let (dir, fstype) = if controllers.is_empty() {
            ("unified".to_string(), "cgroup2")
        } else {
            let names: Vec<&str> = controllers
                .split(',')
                .map(|n| n.strip_prefix("name=").unwrap_or(n))
                .collect();
            (names.join(","), "cgroup")
        };
        let want = format!("{ROOT}/{dir}");
        if !whole
            .iter()
            .any(|m| m.mountpoint == want && m.fstype == fstype)
        {
            return None;
        }
        any = true;
    }
    any.then(|| ROOT.to_string())
}

/// The cgroup v1 hierarchies this host mounts (their mountpoints); none on a unified
/// hierarchy. runc binds the container's directory of each into its /sys/fs/cgroup.
fn v1_hierarchies() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts(&text)
        .filter(|m| m.fstype == "cgroup")
        .map(|m| m.mountpoint.to_string())
        .collect()
}

/// A CRIU (`criu swrk`) started for the restore of an incoming copy when the offer comes, not
/// while the app is frozen on the source: already in the container's cgroups, so the
/// restored processes are born there and CRIU moves none of them (the first move into a
/// cgroup took 7-13 ms here), and handed the copy's network namespace.
pub(crate) struct Restorer {
    session: criu_rpc::Session,
}

/// A restore's options beyond the container's own.
pub struct NativeRestore<'a> {
    pub images: &'a Path,
    pub work_dir: &'a Path,
    /// Post-copy: memory comes from the `criu lazy-pages` daemon sharing `work_dir`.
    pub lazy: bool,
    pub timeout: Duration,
}

/// A process' start time (clock ticks after boot, field 22 of /proc/PID/stat).
pub(super) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Runtime {
    /// Starts the CRIU that will restore incoming copy `c` (see [`Restorer`]); its cgroups
    /// must exist ([`Runtime::prepare_cgroups`]).
    pub(super) fn prestart_restorer(&self, c: &Container) -> Result<(), RuntimeError> {
        let netns = std::fs::File::open(net::netns_path(&c.netns))
            .map_err(io(format!("open the network namespace of '{}'", c.name)))?;
        let session =
            criu_rpc::Session::start(&self.config.criu, &[netns.as_raw_fd()]).map_err(|e| {
                RuntimeError::Criu {
                    action: "restore",
                    name: c.name.clone(),
                    detail: e.to_string(),
                }
            })?;
        let pid = session.pid().unwrap_or_default();
        let rel = self.cgroups_path(&c.name);
        for root in crate::cgroup::Hierarchies::mounted().roots() {
            let dir = root.join(rel.trim_start_matches('/'));
            // prepare_cgroups made the v1 ones; the unified one of a hybrid host is made here.
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        self.restorers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.name.clone(), Restorer { session });
        Ok(())
    }

    /// Ends the CRIU started for `name`'s restore, if one waits.
    pub(super) fn drop_restorer(&self, name: &str) {
        self.restorers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Restores container `c` from its images with CRIU directly, in its own network
    /// namespace (parked) and root filesystem (mounted); its processes end up in the
    /// container's cgroups, children of nobody in ferry (CRIU detaches them). Returns who
    /// owns it now: ferry, by the pid and start time of its init.
    pub(super) fn native_restore(
        &self,
        c: &Container,
        r: &NativeRestore,
    ) -> Result<crate::container::Owner, RuntimeError> {
        let images = open_dir(r.images)?;
        let work = open_dir(r.work_dir)?;
        let netns = std::fs::File::open(net::netns_path(&c.netns))
            .map_err(io(format!("open the network namespace of '{}'", c.name)))?;
        let cgroup = self.cgroups_path(&c.name);
        let mut ext_mnt = vec![ExtMountMap {
            key: "/dev/null".into(),
            val: "/dev/null".into(),
        }];
        for h in v1_hierarchies() {
            ext_mnt.push(ExtMountMap {
                key: h.clone(),
                val: format!("{h}{cgroup}"),
            });
        }
        // A CRIU started ahead already sits in the container's cgroups: it must not move
        // anything (Ignore); one started now puts the processes there itself (Soft).
        let restorer = self
            .restorers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.name);
        let cg_mode = if restorer.is_some() {
            CgMode::Ignore
        } else {
            CgMode::Soft
        };
        let o = Opts {
            images_dir_fd: images.as_raw_fd(),
            work_dir_fd: Some(work.as_raw_fd()),
            log_level: Some(4),
            log_file: Some("restore.log".into()),
            evasive_devices: Some(true),
            root: Some(path_str(
                &self.container_dir(&c.name).join("bundle/rootfs"),
            )?),
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(cg_mode as i32),
            cg_root: vec![criu_rpc::CgroupRoot {
                ctrl: None,
                path: cgroup,
            }],
            cgroup_yard: cgroup_yard(),
            notify_scripts: Some(true),
            tcp_established: Some(true),
            shell_job: Some(false),
            orphan_pts_master: Some(true),
            lazy_pages: r.lazy.then_some(true),
            // Descriptor 4 of CRIU: the first of the extra descriptors handed to it.
            inherit_fd: vec![criu_rpc::InheritFd {
                key: NETNS_KEY.into(),
                fd: 4,
            }],
            ext_mnt,
            ..Default::default()
        };
        let req = Req {
            r#type: ReqType::Restore as i32,
            opts: Some(o),
            notify_success: None,
        };
        let criu_err = |e: criu_rpc::RpcError| RuntimeError::Criu {
            action: "restore",
            name: c.name.clone(),
            detail: format!(
                "{e}; CRIU: {}",
                crate::runc::criu_log_tail(r.work_dir, "restore.log")
            ),
        };
        let mut session = match restorer {
            Some(r) => r.session,
            None => criu_rpc::Session::start(&self.config.criu, &[netns.as_raw_fd()])
                .map_err(criu_err)?,
        };
        let resp = session
            .call(&req, r.timeout, |_, _| Ok(()), || {})
            .map_err(criu_err)?;
        session.finish();
        let pid = resp
            .restore
            .map(|r| r.pid)
            .ok_or_else(|| RuntimeError::Criu {
                action: "restore",
                name: c.name.clone(),
                detail: "CRIU answered without the restored pid".into(),
            })?;
        let start_time = start_time(pid).ok_or_else(|| RuntimeError::Criu {
            action: "restore",
            name: c.name.clone(),
            detail: format!("the restored init {pid} is gone already"),
        })?;
        Ok(crate::container::Owner::Ferry { pid, start_time })
    }
}

/// What the kernel says of a container's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProcState {
    Running,
    Frozen,
    Gone,
}

/// How long a freeze or thaw may take to settle.
const FREEZER_WAIT: Duration = Duration::from_secs(10);

impl Runtime {
    /// Whether ferry's own container is frozen (its freezer says so).
    fn cgroup_frozen(&self, name: &str) -> bool {
        let dir = self.freezer_cgroup(name);
        match std::fs::read_to_string(dir.join("freezer.state")) {
            Ok(s) => s.trim() == "FROZEN",
            Err(_) => std::fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|e| e.lines().any(|l| l.trim() == "frozen 1")),
        }
    }

    /// Freezes or thaws the container's cgroup and waits until the kernel says it took.
    fn set_frozen(&self, name: &str, frozen: bool) -> Result<(), RuntimeError> {
        let dir = self.freezer_cgroup(name);
        let v1 = dir.join("freezer.state");
        let (file, value) = if v1.exists() {
            (v1, if frozen { "FROZEN" } else { "THAWED" })
        } else {
            (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
        };
        std::fs::write(&file, value).map_err(io(format!("write {}", file.display())))?;
        let deadline = std::time::Instant::now() + FREEZER_WAIT;
        while self.cgroup_frozen(name) != frozen {
            if std::time::Instant::now() > deadline {
                return Err(RuntimeError::Invalid(format!(
                    "the cgroup of '{name}' did not {} within {FREEZER_WAIT:?}",
                    if frozen { "freeze" } else { "thaw" }
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Every process of the container's cgroup.
    fn cgroup_pids(&self, name: &str) -> Vec<i32> {
        std::fs::read_to_string(self.freezer_cgroup(name).join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// What the container's processes are doing, asked of whoever owns them.
    pub(super) fn proc_state(&self, c: &Container) -> Result<ProcState, RuntimeError> {
        Ok(match c.owner {
            Owner::Runc => match self.runc.state(&c.name)? {
                Some(s) if s.status == "running" => ProcState::Running,
                Some(s) if s.status == "paused" => ProcState::Frozen,
                _ => ProcState::Gone,
            },
            Owner::Ferry { pid, start_time: t } => {
                if start_time(pid) != Some(t) {
                    ProcState::Gone
                } else if self.cgroup_frozen(&c.name) {
                    ProcState::Frozen
                } else {
                    ProcState::Running
                }
            }
        })
    }

    /// Freezes every process of the container.
    pub(super) fn pause(&self, c: &Container) -> Result<(), RuntimeError> {
        match c.owner {
            Owner::Runc => Ok(self.runc.pause(&c.name)?),
            Owner::Ferry { .. } => self.set_frozen(&c.name, true),
        }
    }

    /// Thaws a frozen container.
    pub(super) fn resume(&self, c: &Container) -> Result<(), RuntimeError> {
        match c.owner {
            Owner::Runc => Ok(self.runc.resume(&c.name)?),
            Owner::Ferry { .. } => self.set_frozen(&c.name, false),
        }
    }

    /// Sends `signal` to the container's processes (runc: its init; ferry: every process
    /// of its cgroup, as `runc kill --all` would).
    pub(super) fn signal(&self, c: &Container, signal: nix::sys::signal::Signal) {
        match c.owner {
            Owner::Runc => {
                let _ = self
                    .runc
                    .kill(&c.name, signal.as_str().trim_start_matches("SIG"));
            }
            Owner::Ferry { .. } => {
                for pid in self.cgroup_pids(&c.name) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                }
            }
        }
    }

    /// Ends whatever still runs of the container and forgets its runtime state: `runc
    /// delete --force`, or, for ferry's own, SIGKILL to its cgroup (thawed so the signal is
    /// taken), then its cgroups removed once empty.
    pub(super) fn release(&self, c: &Container) -> Result<(), RuntimeError> {
        self.runc.delete(&c.name)?;
        let ours = matches!(c.owner, Owner::Ferry { .. });
        if ours {
            self.signal(c, nix::sys::signal::Signal::SIGKILL);
            let _ = self.set_frozen(&c.name, false);
            let deadline = std::time::Instant::now() + FREEZER_WAIT;
            while !self.cgroup_pids(&c.name).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // runc removed its own group; what ferry made (for a restore that then did not
        // happen, or for its own container) goes once its last process is reaped, and with it
        // the parents left empty.
        let left = crate::cgroup::Hierarchies::mounted()
            .remove(&self.cgroups_path(&c.name), Duration::from_secs(5));
        for (dir, e) in left {
            tracing::warn!(container = %c.name, dir = %dir.display(), "cgroup not removed: {e}");
        }
        Ok(())
    }

    /// Freezes the container's cgroup directly, whoever owns it (runc reads the same
    /// freezer, so its state says `paused` and `runc resume` thaws it): the native engine's
    /// freeze, without a runc process on the frozen path.
    pub(super) fn freeze_cgroup(&self, name: &str) -> Result<(), RuntimeError> {
        self.set_frozen(name, true)
    }
}

/// The devices a container may use (cgroup v1's device controller): the runtime spec's
/// default devices and pseudo-terminals. ferry's containers cannot make device nodes (no
/// CAP_MKNOD), so no `m` rule.
const ALLOWED_DEVICES: [&str; 8] = [
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts
];

fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(io(format!("write {value:?} to {}", path.display())))
}

impl Runtime {
    /// Makes container `c`'s cgroups before a native restore, as runc does before its own:
    /// each level of the path, cpuset levels given their parent's CPUs and memory nodes (an
    /// empty cpuset takes no task), and the container's limits: memory, CPU quota and, on
    /// cgroup v1, the device list. CRIU then puts the restored processes there (it changes
    /// nothing of a cgroup it did not make). On the unified hierarchy the device filter is an
    /// eBPF program runc attaches and ferry does not: there, the missing capabilities and the
    /// restored /dev keep devices out.
    pub(super) fn prepare_cgroups(&self, c: &Container) -> Result<(), RuntimeError> {
        let rel = self.cgroups_path(&c.name);
        let hierarchies = v1_hierarchies();
        let unified = hierarchies.is_empty();
        let roots: Vec<String> = if unified {
            vec!["/sys/fs/cgroup".to_string()]
        } else {
            hierarchies
        };
        for root in &roots {
            let mut dir = PathBuf::from(root);
            for part in rel.trim_start_matches('/').split('/') {
                let parent = dir.clone();
                dir.push(part);
                if unified {
                    // Controllers are handed down level by level.
                    let _ =
                        std::fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory +pids");
                }
                if dir.is_dir() {
                    continue;
                }
                std::fs::create_dir(&dir).map_err(io(format!("create {}", dir.display())))?;
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let own = dir.join(f);
                    let empty = std::fs::read_to_string(&own).is_ok_and(|v| v.trim().is_empty());
                    if empty && !unified {
                        let inherited = std::fs::read_to_string(parent.join(f))
                            .map_err(io(format!("read {}", parent.join(f).display())))?;
                        write(&own, inherited.trim())?;
                    }
                }
            }
            let name = Path::new(root)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let limits = &c.request;
            if unified {
                if let Some(mib) = limits.memory_mib {
                    write(&dir.join("memory.max"), &(mib << 20).to_string())?;
                }
                if let Some(cpus) = limits.cpus {
                    let quota = (cpus * 100_000.0).round() as u64;
                    write(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
                }
            } else if name == "memory" {
                if let Some(mib) = limits.memory_mib {
                    write(&dir.join("memory.limit_in_bytes"), &(mib << 20).to_string())?;
                }
            } else if name.split(',').any(|n| n == "cpu") {
                if let Some(cpus) = limits.cpus {
                    write(&dir.join("cpu.cfs_period_us"), "100000")?;
                    let quota = (cpus * 100_000.0).round() as u64;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            } else if name == "devices" {
                write(&dir.join("devices.deny"), "a")?;
                for rule in ALLOWED_DEVICES {
                    write(&dir.join("devices.allow"), rule)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod yard_tests {
    use super::yard_of;

    const HYBRID_CGROUPS: &str = "2:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn the_hosts_hierarchies_are_the_yard_when_laid_out_as_criu_would() {
        assert_eq!(
            yard_of(HYBRID_CGROUPS, HYBRID_MOUNTS).as_deref(),
            Some("/sys/fs/cgroup")
        );
    }

    #[test]
    fn no_yard_when_a_hierarchy_is_elsewhere_or_missing() {
        // Pure cgroup v2: the one hierarchy is /sys/fs/cgroup itself.
        let v2 = "35 23 0:29 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(yard_of("0::/init.scope\n", v2), None);
        // A controller mounted under another name, or only part of a hierarchy bound there.
        let renamed = HYBRID_MOUNTS.replace("/cpu,cpuacct ", "/cpu ");
        assert_eq!(yard_of(HYBRID_CGROUPS, &renamed), None);
        let partial = HYBRID_MOUNTS.replace("0:31 / ", "0:31 /sub ");
        assert_eq!(yard_of(HYBRID_CGROUPS, &partial), None);
        assert_eq!(yard_of("", HYBRID_MOUNTS), None);
    }
}
