//! The runtime's side of a live migration: the steps the migration engine
//! (crate `ferry-migration`) composes on the source and on the target host.
//!
//! Source: `begin_outgoing` -> `freeze_outgoing` -> `dump_outgoing` -> (target restores,
//! commits) -> `finish_outgoing`; on any failure before the commit, `rollback_outgoing`
//! thaws the untouched original. Target: `create_incoming` -> (images arrive in
//! `incoming_dirs`) -> `restore_incoming` -> `commit_incoming`; or `abort_incoming`.
//!
//! Every step is idempotent and checks the container belongs to the migration it is told
//! of: the migration's state machine (crate `ferry-migration`) may repeat a step after a
//! restart. The state machine, not this module, decides which step comes next.
//!
//! Why the source freezes instead of letting CRIU kill it: the dump runs with
//! `--leave-running` on a paused container, so CRIU leaves it frozen (it restores the
//! freezer state it found). Until the commit, the original is intact and can simply be
//! thawed. Its network is "parked" first (host side of its veth down, host route removed) so
//! no packet reaches its sockets after the dump: a TCP segment acknowledged there would be
//! lost to the copy on the target.
//!
//! Why the target restores "parked": a restored copy must not serve until the source has
//! committed, so that two copies never serve at once, whatever fails.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_wire::migration::{CheckpointEngine, DumpStats, MigrationId};

use super::{io, now_rfc3339, Runtime, RuntimeError};
use crate::container::{Container, ContainerRequest, Status};
use crate::criu::{CriuTls, End};
use crate::net;
use crate::runc::{self, CheckpointOpts};
use crate::spec;

/// The descriptor on which the lazy-pages daemon says it is ready.
const LAZY_STATUS_FD: i32 = 3;

/// How long a post-copy restore waits for its lazy-pages daemon to reach the source's page
/// server (a link that is down for longer fails the restore; the source rolls back).
const LAZY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A running `criu lazy-pages` daemon and the pipe on which it says it is ready: ferry's CRIU
/// (scripts/criu-patches/0006) says so once it reached the source's page server, so that a
/// restore is never reported done while its memory cannot come.
pub(super) struct LazyPages {
    pub(super) child: std::process::Child,
    status: std::fs::File,
}

impl LazyPages {
    /// Waits (at most [`LAZY_CONNECT_TIMEOUT`]) for the daemon's "ready".
    pub(super) fn connected(&mut self, work: &Path) -> Result<(), RuntimeError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::io::Read;
        use std::os::fd::AsFd;
        let failed = |why: &str| RuntimeError::Criu {
            action: "lazy-pages",
            name: String::new(),
            detail: format!(
                "{why}: the source's page server is out of reach; CRIU: {}",
                runc::criu_log_tail(work, "lazy-pages.log")
            ),
        };
        let deadline = Instant::now() + LAZY_CONNECT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failed("not ready within 10 s"));
            }
            let ms = PollTimeout::try_from(left.as_millis() as i32).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.status.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => break,
                Err(e) => return Err(failed(&format!("status pipe: {e}"))),
            }
        }
        let mut byte = [0u8; 1];
        match self.status.read(&mut byte) {
            Ok(1) => Ok(()),
            Ok(_) => Err(failed("the daemon ended before it was ready")),
            Err(e) => Err(failed(&format!("status pipe: {e}"))),
        }
    }

    /// Kills and reaps the daemon.
    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses CRIU's `stats-dump` image: two magic words, a length, then a protobuf
/// `StatsEntry { DumpStatsEntry dump = 1 }` (field numbers from CRIU's stats.proto).
pub fn parse_dump_stats(bytes: &[u8]) -> Option<DumpStats> {
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let entry = bytes.get(12..12usize.checked_add(len)?)?;
    let mut top = ProtoReader(entry);
    let mut dump = None;
    while let Some((field, value)) = top.next() {
        if let (1, ProtoValue::Bytes(b)) = (field, value) {
            dump = Some(b);
        }
    }
    let mut s = DumpStats::default();
    let mut r = ProtoReader(dump?);
    while let Some((field, value)) = r.next() {
        let ProtoValue::Varint(v) = value else {
            continue;
        };
        match field {
            2 => s.frozen_us = v,
            3 => s.memdump_us = v,
            4 => s.memwrite_us = v,
            5 => s.pages_scanned = v,
            7 => s.pages_written = v,
            9 => s.pages_lazy = v,
            _ => {}
        }
    }
    Some(s)
}

enum ProtoValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Just enough protobuf to read CRIU's stats (varints and length-delimited fields).
struct ProtoReader<'a>(&'a [u8]);

impl<'a> ProtoReader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn next(&mut self) -> Option<(u64, ProtoValue<'a>)> {
        if self.0.is_empty() {
            return None;
        }
        let key = self.varint()?;
        match key & 7 {
            0 => Some((key >> 3, ProtoValue::Varint(self.varint()?))),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let b = self.0.get(..len)?;
                self.0 = &self.0[len..];
                Some((key >> 3, ProtoValue::Bytes(b)))
            }
            _ => None, // CRIU's stats use no other wire types
        }
    }
}

/// CRIU's statistics of the dump whose work dir is `work` (zero when it wrote none).
pub(super) fn read_dump_stats(work: &Path) -> DumpStats {
    std::fs::read(work.join("stats-dump"))
        .ok()
        .and_then(|b| parse_dump_stats(&b))
        .unwrap_or_default()
}

/// One dump of a migration (a pre-copy round, the final dump, or a lazy dump).
pub struct Dump<'a> {
    /// Who drives CRIU.
    pub engine: CheckpointEngine,
    pub image_dir: &'a Path,
    /// `ADDR:PORT` of the page server: the target's (cold, pre-copy rounds and final dump)
    /// or, for a lazy dump, where it serves the pages itself.
    pub page_server: Option<&'a str>,
    /// CRIU's TLS for the pages, when they travel over it.
    pub tls: Option<&'a CriuTls>,
    /// The previous pre-dump's image dir, relative to `image_dir`.
    pub parent: Option<&'a str>,
    /// How long the dump may take (a lazy dump: until its page server is ready).
    pub timeout: std::time::Duration,
    /// The app's init (the native engine dumps it by pid; [`Runtime::init_pid`] before the
    /// freeze).
    pub pid: Option<i32>,
    /// A dump to a page server: called once CRIU has connected to it (and shaken hands over
    /// TLS), before it touches the app: the native engine's CRIU says so with its
    /// `pre-dump` notification (ferry's CRIU sends it after the connect,
    /// scripts/criu-patches/0012); runc's CLI, before it starts. A migration freezes the
    /// app here, so that the connection is made while the app still serves.
    pub connected: Option<&'a dyn Fn() -> Result<(), String>>,
}

fn native_pid(d: &Dump) -> Result<i32, RuntimeError> {
    d.pid.ok_or_else(|| {
        RuntimeError::Invalid("the native engine dumps by pid, and none was given".into())
    })
}

/// The native engine's view of `d` (CRIU's work dir `work`).
fn native_dump<'a>(
    d: &'a Dump,
    work: &'a Path,
    pre_dump: bool,
    lazy: bool,
    parked: bool,
    tls: Option<(&'a CriuTls, End)>,
) -> Result<super::native::NativeDump<'a>, RuntimeError> {
    let page_server = match d.page_server {
        Some(ps) => {
            let (addr, port) = ps
                .rsplit_once(':')
                .and_then(|(a, p)| Some((a.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    RuntimeError::Invalid(format!("page server '{ps}' is not ADDR:PORT"))
                })?;
            Some((addr, port))
        }
        None => None,
    };
    Ok(super::native::NativeDump {
        on_connected: d.connected,
        image_dir: d.image_dir,
        work_dir: work,
        page_server,
        lazy,
        parent: d.parent,
        pre_dump,
        tls,
        parked,
        leave_running: true,
        tcp_established: true,
        timeout: d.timeout,
    })
}

/// What a lazy-pages daemon's log says of a post-copy migration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LazyStats {
    /// Page faults served from the source.
    pub faults: u64,
    /// Pages that arrived (faults and background transfer).
    pub pages: u64,
    /// Faults in the first 100 ms after the restore: the app's request path waiting on the
    /// link (absent where CRIU does not log the restore's end).
    pub faults_first_100ms: Option<u64>,
}

/// A CRIU log line's time stamp, `(SS.UUUUUU)`, in seconds.
fn log_time(line: &str) -> Option<f64> {
    line.strip_prefix('(')?
        .split(')')
        .next()?
        .trim()
        .parse()
        .ok()
}

pub fn parse_lazy_log(text: &str) -> LazyStats {
    let faults = text.lines().filter(|l| l.contains("#PF")).count() as u64;
    let pages = text
        .lines()
        .filter_map(|l| l.split("UFFD transferred pages: (").nth(1))
        .filter_map(|rest| rest.split('/').next()?.trim().parse::<u64>().ok())
        .sum();
    let restored = text
        .lines()
        .find(|l| l.contains("Restore finished"))
        .and_then(log_time);
    let faults_first_100ms = restored.map(|t0| {
        text.lines()
            .filter(|l| l.contains("#PF"))
            .filter_map(log_time)
            .filter(|t| *t >= t0 && *t <= t0 + 0.1)
            .count() as u64
    });
    LazyStats {
        faults,
        pages,
        faults_first_100ms,
    }
}

/// Directories a migration writes on the target: CRIU images and the writable layer.
pub struct IncomingDirs {
    pub images: PathBuf,
    pub upper: PathBuf,
    /// Pre-copy rounds, one dir each (`rounds/0`, `rounds/1`, ...), next to `images` so that
    /// CRIU's relative parent links read the same on both hosts.
    pub rounds: PathBuf,
}

impl Runtime {
    /// The container held by outgoing migration `id` (refused for any other).
    fn outgoing_container(&self, name: &str, id: &MigrationId) -> Result<Container, RuntimeError> {
        let c = self.load(name)?;
        if c.migration.as_ref() != Some(id) || c.status == Status::Incoming {
            return Err(RuntimeError::Invalid(format!(
                "container '{name}' is not held by outgoing migration {id}"
            )));
        }
        Ok(c)
    }

    /// Marks a running container as held by migration `id`. Refuses (conflict) a container
    /// that does not run or already migrates.
    pub fn begin_outgoing(&self, name: &str, id: &MigrationId) -> Result<Container, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.get_locked(name)?;
        if let Some(m) = &c.migration {
            return Err(RuntimeError::MigrationInProgress {
                name: name.to_string(),
                migration: m.to_string(),
            });
        }
        if !c.status.can_migrate() {
            return Err(RuntimeError::IncorrectStatus {
                name: c.name,
                status: c.status,
                action: "migrate",
            });
        }
        c.migration = Some(id.clone());
        self.save(&c)?;
        Ok(c)
    }

    /// Releases a container the migration never froze (it failed before the freeze).
    pub fn release_outgoing(&self, name: &str, id: &MigrationId) -> Result<(), RuntimeError> {
        self.rollback_outgoing(name, id)
    }

    /// Parks the container's network and freezes its processes: the downtime starts here.
    /// The native engine freezes its cgroup directly; runc's engine asks runc.
    pub fn freeze_outgoing(
        &self,
        name: &str,
        id: &MigrationId,
        engine: CheckpointEngine,
    ) -> Result<(), RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.outgoing_container(name, id)?;
        self.park(&c)?;
        match engine {
            CheckpointEngine::Runc => self.pause(&c)?,
            CheckpointEngine::Native => self.freeze_cgroup(name)?,
        }
        c.status = Status::Frozen;
        self.save(&c)
    }

    /// The pid of the init of the container outgoing migration `id` holds (looked up before
    /// the freeze, for the native engine's dumps).
    pub fn init_pid(&self, name: &str, id: &MigrationId) -> Result<i32, RuntimeError> {
        let c = self.outgoing_container(name, id)?;
        self.init_pid_of(&c)
    }

    /// Runs one dump with the container's CRIU options file (the one runc hands CRIU) set
    /// for it: `base` ([`spec::CRIU_CONFIG`], or [`spec::CRIU_CONFIG_PARKED`] for a final
    /// dump of a parked container, without CRIU's network lock) and, when the pages travel
    /// over TLS, CRIU's TLS options for this end of the page-server connection. The
    /// container's usual options are back afterwards.
    fn with_criu_config<T>(
        &self,
        name: &str,
        base: &str,
        tls: Option<(&CriuTls, End)>,
        dump: impl FnOnce() -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        let conf = self.container_dir(name).join("criu.conf");
        let mut text = self.criu_config(name, base);
        if let Some((tls, end)) = tls {
            text.push_str(&tls.config_lines(end).map_err(RuntimeError::Invalid)?);
        }
        std::fs::write(&conf, text).map_err(io("write criu.conf"))?;
        let result = dump();
        std::fs::write(&conf, self.criu_config(name, spec::CRIU_CONFIG))
            .map_err(io("write criu.conf"))?;
        result
    }

    /// A fresh CRIU work dir for one dump (its logs and statistics).
    pub(super) fn dump_work_dir(
        &self,
        name: &str,
        tag: &str,
        image_dir: &Path,
    ) -> Result<PathBuf, RuntimeError> {
        let work = self.container_dir(name).join(tag);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(io("create criu work dir"))?;
        std::fs::create_dir_all(image_dir)
            .map_err(io(format!("create {}", image_dir.display())))?;
        Ok(work)
    }

    fn dump_error(
        name: &str,
        action: &'static str,
        e: crate::command::CommandError,
        work: &Path,
        log: &str,
    ) -> RuntimeError {
        RuntimeError::Criu {
            action,
            name: name.to_string(),
            detail: format!(
                "{} ({}); CRIU: {}",
                e.stderr,
                e.status,
                runc::criu_log_tail(work, log)
            ),
        }
    }

    /// Pre-copy round: dumps the pages of the running container dirtied since `d.parent`
    /// (all of them without one) to the target's page server; the app keeps running.
    /// `d.image_dir` is the round's dir, `d.parent` the previous round's, relative to it.
    pub fn predump_outgoing(
        &self,
        name: &str,
        id: &MigrationId,
        d: &Dump,
    ) -> Result<DumpStats, RuntimeError> {
        let c = self.outgoing_container(name, id)?;
        let work = self.dump_work_dir(name, "criu-predump", d.image_dir)?;
        let tls = d.tls.map(|t| (t, End::Dials));
        match d.engine {
            CheckpointEngine::Runc => {
                self.with_criu_config(name, spec::CRIU_CONFIG, tls, || {
                    self.runc
                        .checkpoint(
                            name,
                            &CheckpointOpts {
                                image_path: d.image_dir,
                                work_path: &work,
                                leave_running: true,
                                tcp_established: true,
                                page_server: d.page_server,
                                pre_dump: true,
                                parent_path: d.parent,
                                timeout: Some(d.timeout),
                            },
                        )
                        .map_err(|e| Self::dump_error(name, "pre-dump", e, &work, "dump.log"))
                })?
            }
            CheckpointEngine::Native => {
                let pid = native_pid(d)?;
                self.native_dump(&c, pid, &native_dump(d, &work, true, false, false, tls)?)?;
            }
        }
        Ok(read_dump_stats(&work))
    }

    /// Dumps the frozen container into `d.image_dir` (pages to `d.page_server` when given;
    /// only those dirtied since the `d.parent` pre-dump when given), leaving the original
    /// frozen and intact. After `d.timeout` the dump is given up (see
    /// [`CheckpointOpts::timeout`]). With `d.tls` the pages travel over CRIU's TLS.
    pub fn dump_outgoing(
        &self,
        name: &str,
        id: &MigrationId,
        d: &Dump,
    ) -> Result<DumpStats, RuntimeError> {
        let c = self.outgoing_container(name, id)?;
        let work = self.dump_work_dir(name, "criu-dump", d.image_dir)?;
        let tls = d
            .tls
            .filter(|_| d.page_server.is_some())
            .map(|t| (t, End::Dials));
        match d.engine {
            CheckpointEngine::Runc => {
                if let Some(connected) = d.connected {
                    connected().map_err(RuntimeError::Invalid)?;
                }
                self.with_criu_config(name, spec::CRIU_CONFIG_PARKED, tls, || {
                    self.runc
                        .checkpoint(
                            name,
                            &CheckpointOpts {
                                image_path: d.image_dir,
                                work_path: &work,
                                leave_running: true,
                                tcp_established: true,
                                page_server: d.page_server,
                                pre_dump: false,
                                parent_path: d.parent,
                                timeout: Some(d.timeout),
                            },
                        )
                        .map_err(|e| Self::dump_error(name, "dump", e, &work, "dump.log"))
                })?
            }
            CheckpointEngine::Native => {
                let pid = native_pid(d)?;
                self.native_dump(&c, pid, &native_dump(d, &work, false, false, true, tls)?)?;
            }
        }
        Ok(read_dump_stats(&work))
    }

    /// Post-copy: dumps the frozen container without its memory and keeps serving the pages
    /// from a page server on `d.page_server` (`ADDR:PORT`). The returned process ends once
    /// the target has every page (or is killed: then the original resumes where it was).
    /// With a `d.parent` pre-dump (hybrid), pages unchanged since then are left to the
    /// target's copy. With `d.tls` the page server speaks CRIU's TLS only.
    pub fn dump_outgoing_lazy(
        &self,
        name: &str,
        id: &MigrationId,
        d: &Dump,
    ) -> Result<std::process::Child, RuntimeError> {
        let c = self.outgoing_container(name, id)?;
        let work = self.dump_work_dir(name, "criu-dump", d.image_dir)?;
        let tls = d.tls.map(|t| (t, End::Listens));
        match d.engine {
            // CRIU reads its options when it starts; the lazy dump runs on after this
            // returns.
            CheckpointEngine::Runc => {
                self.with_criu_config(name, spec::CRIU_CONFIG_PARKED, tls, || {
                    self.runc
                        .checkpoint_lazy(
                            name,
                            &CheckpointOpts {
                                image_path: d.image_dir,
                                work_path: &work,
                                leave_running: true,
                                tcp_established: true,
                                page_server: d.page_server,
                                pre_dump: false,
                                parent_path: d.parent,
                                timeout: None,
                            },
                            std::time::Duration::from_secs(60),
                        )
                        .map_err(|e| Self::dump_error(name, "lazy dump", e, &work, "dump.log"))
                })
            }
            CheckpointEngine::Native => {
                let pid = native_pid(d)?;
                let plan = native_dump(d, &work, false, true, true, tls)?;
                let child = self.native_dump(&c, pid, &plan)?;
                child.ok_or_else(|| RuntimeError::Invalid("the lazy dump ended at once".into()))
            }
        }
    }

    /// The container's writable layer (what moves besides the CRIU images).
    pub fn upper_dir(&self, name: &str) -> PathBuf {
        self.container_dir(name).join("upper")
    }

    /// The target runs the app: remove the frozen original and everything it held here.
    /// Idempotent: a container already gone is fine.
    pub fn finish_outgoing(&self, name: &str, id: &MigrationId) -> Result<(), RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = match self.outgoing_container(name, id) {
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        // Thaw after SIGKILL is queued so the frozen tasks actually die.
        self.signal(&c, nix::sys::signal::Signal::SIGKILL);
        let _ = self.resume(&c);
        self.release(&c)?;
        self.teardown(&c);
        if self.container_dir(name).exists() {
            return Err(RuntimeError::Invalid(format!(
                "container '{name}' could not be removed completely after migration {id}"
            )));
        }
        tracing::info!(container = %name, migration = %id, "migrated away; source copy removed");
        Ok(())
    }

    /// Undoes a migration that did not commit: the original resumes where it stopped, its
    /// network is wired again, and the record is released. Idempotent. Fails (and says why)
    /// unless runc afterwards reports the processes running: a rollback is never reported
    /// done while the app is still frozen or gone.
    pub fn rollback_outgoing(&self, name: &str, id: &MigrationId) -> Result<(), RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.load(name)?;
        match &c.migration {
            None if c.status == Status::Running => return Ok(()), // rolled back already
            Some(m) if m == id && c.status != Status::Incoming => {}
            _ => {
                return Err(RuntimeError::Invalid(format!(
                    "container '{name}' is not held by outgoing migration {id}"
                )))
            }
        }
        net::remove_criu_network_lock(&c.netns);
        let thaw_failed = |detail: String| RuntimeError::Thaw {
            name: name.to_string(),
            detail,
        };
        use super::native::ProcState;
        match self.proc_state(&c)? {
            ProcState::Gone => {
                return Err(thaw_failed(
                    "its processes are gone (machine restarted?)".into(),
                ))
            }
            ProcState::Frozen => self
                .resume(&c)
                .map_err(|e| thaw_failed(format!("resume: {e}")))?,
            ProcState::Running => {}
        }
        match self.proc_state(&c)? {
            ProcState::Running => {}
            other => {
                return Err(thaw_failed(format!(
                    "after the thaw its processes are {other:?}"
                )))
            }
        }
        // The whole wiring, not just the park undone: a rollback may follow a restart.
        self.wire_network(&c)?;
        c.migration = None;
        c.status = Status::Running;
        self.save(&c)?;
        tracing::warn!(container = %name, migration = %id, "migration rolled back; the app runs here again");
        Ok(())
    }

    /// Processes (runc, CRIU) still working on outgoing migration `id` (a post-copy dump
    /// serving pages, a dump a killed daemon left running).
    pub fn outgoing_helpers(&self, id: &MigrationId) -> Vec<i32> {
        crate::criu::processes_under(&self.migrations_dir().join(id.as_str()))
    }

    /// Kills what [`Runtime::outgoing_helpers`] finds; how many.
    pub fn kill_outgoing_helpers(&self, id: &MigrationId) -> usize {
        crate::criu::kill_processes_under(&self.migrations_dir().join(id.as_str()))
    }

    /// Host side of the veth down and the host route gone: nothing reaches the container.
    fn park(&self, c: &Container) -> Result<(), RuntimeError> {
        if let (Some(ip), Some(veth)) = (c.request.ip, &c.veth) {
            net::park(ip, veth, &self.config.bridge)?;
        }
        Ok(())
    }

    /// The network of a parked container back as it was: the veth up, the host route back
    /// (a rollback also checks the rest of the wiring, see [`Runtime::wire_network`]).
    fn unpark(&self, c: &Container) -> Result<(), RuntimeError> {
        if let (Some(ip), Some(veth)) = (c.request.ip, &c.veth) {
            net::unpark(ip, veth, &self.config.bridge)?;
        }
        Ok(())
    }

    /// Target: creates the container's record, bundle and (parked) network for an incoming
    /// migration. The root filesystem is mounted only at restore, once its writable layer
    /// has arrived (overlayfs must not see its upper dir change underneath).
    pub fn create_incoming(
        &self,
        req: ContainerRequest,
        id: &MigrationId,
        engine: CheckpointEngine,
    ) -> Result<Container, RuntimeError> {
        let c = self.create_with(req, Status::Incoming, Some(id), |c, dir| {
            for sub in ["upper", "work", "incoming"] {
                std::fs::create_dir_all(dir.join(sub)).map_err(io("create container dirs"))?;
            }
            self.wire_network(c)?;
            if engine == CheckpointEngine::Native {
                // Made now, not while the app is frozen on the source.
                self.prepare_cgroups(c)?;
                self.prestart_restorer(c)?;
            }
            self.park(c)
        })?;
        tracing::info!(container = %c.name, migration = %id, "incoming migration prepared");
        Ok(c)
    }

    pub fn incoming_dirs(&self, name: &str) -> IncomingDirs {
        let dir = self.container_dir(name);
        IncomingDirs {
            images: dir.join("incoming/images"),
            upper: dir.join("upper"),
            rounds: dir.join("incoming/rounds"),
        }
    }

    /// The parked copy of incoming migration `id` (refused for anything else).
    fn incoming_container(&self, name: &str, id: &MigrationId) -> Result<Container, RuntimeError> {
        let c = self.load(name)?;
        if c.status != Status::Incoming || c.migration.as_ref() != Some(id) {
            return Err(RuntimeError::IncorrectStatus {
                name: c.name,
                status: c.status,
                action: "handle an incoming migration with",
            });
        }
        Ok(c)
    }

    /// Restores the arrived images with the network still parked. Returns the restore time
    /// and, for post-copy (`lazy_from` = the source's page server), the `criu lazy-pages`
    /// daemon that pulls the memory: it exits once every page has arrived. With `tls` it
    /// pulls them over CRIU's TLS.
    pub fn restore_incoming(
        &self,
        name: &str,
        id: &MigrationId,
        lazy_from: Option<std::net::SocketAddr>,
        tls: Option<&CriuTls>,
        engine: CheckpointEngine,
    ) -> Result<(u64, Option<std::process::Child>), RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.incoming_container(name, id)?;
        self.mount_root(&c)?;
        // The lazy-pages daemon runs in the host's namespace (not the container's: the
        // restore's network lock would cut it off) and shares the restore's work dir.
        let lazy_from = lazy_from.map(|addr| (addr, tls));
        let images = self.incoming_dirs(name).images;
        let (ms, lazy, owner) = self.run_restore(&c, &images, true, lazy_from, engine)?;
        c.owner = owner;
        self.save_incoming_step(&c)?;
        Ok((ms, lazy))
    }

    /// Starts the `criu lazy-pages` daemon that pulls a post-copy restore's memory from the
    /// source's page server at `source`; returns once the restore may connect to it.
    pub(super) fn start_lazy_pages(
        &self,
        images: &Path,
        work: &Path,
        source: std::net::SocketAddr,
        tls: Option<&CriuTls>,
    ) -> Result<LazyPages, RuntimeError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let tls_args = tls.map(|t| t.args(End::Dials)).unwrap_or_default();
        let (status, ready) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io("make the lazy-pages status pipe")(std::io::Error::from(e)))?;
        let ready_fd = ready.as_raw_fd();
        let mut cmd = std::process::Command::new(&self.config.criu);
        cmd.args(["lazy-pages", "--page-server", "--address"])
            .arg(source.ip().to_string())
            .arg("--port")
            .arg(source.port().to_string())
            .arg("-D")
            .arg(images)
            .arg("-W")
            .arg(work)
            .args(["-o", "lazy-pages.log", "-v4"])
            .args(["--status-fd", &LAZY_STATUS_FD.to_string()])
            .args(tls_args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: runs in the child between fork and exec and calls only dup2 and fcntl,
        // which are async-signal-safe. The copy on LAZY_STATUS_FD loses close-on-exec (or,
        // should the pipe's end be that descriptor already, close-on-exec is cleared), so only
        // CRIU gets the pipe's end.
        unsafe {
            cmd.pre_exec(move || {
                let placed = if ready_fd == LAZY_STATUS_FD {
                    let flags = libc::fcntl(ready_fd, libc::F_GETFD);
                    if flags < 0 {
                        flags
                    } else {
                        libc::fcntl(ready_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
                    }
                } else {
                    libc::dup2(ready_fd, LAZY_STATUS_FD)
                };
                if placed < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io("start criu lazy-pages"))?;
        drop(ready);
        let mut lazy = LazyPages {
            child,
            status: std::fs::File::from(status),
        };
        // The restore connects to the daemon's socket: wait until it exists (ferry's CRIU
        // names it only once it listens, scripts/criu-patches/0009).
        let socket = work.join("lazy-pages.socket");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline || matches!(lazy.child.try_wait(), Ok(Some(_))) {
                lazy.stop();
                return Err(RuntimeError::Criu {
                    action: "lazy-pages",
                    name: String::new(),
                    detail: format!(
                        "no {} after 10 s or the daemon ended; CRIU: {}",
                        socket.display(),
                        runc::criu_log_tail(work, "lazy-pages.log")
                    ),
                });
            }
            // Short: the restore, inside the frozen window, waits for this.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(lazy)
    }

    /// Post-copy statistics from the lazy-pages daemon's log for `name`. CRIU logs each
    /// fault as `#PF`, per task a final `UFFD transferred pages: (N/TOTAL)`, and (ferry's
    /// CRIU build, scripts/criu-patches/0004) `Restore finished` when the app runs again.
    pub fn lazy_stats(&self, name: &str) -> LazyStats {
        let log = self.container_dir(name).join("criu-restore/lazy-pages.log");
        parse_lazy_log(&std::fs::read_to_string(log).unwrap_or_default())
    }

    /// Whether the post-copy pages of `name` all arrived, read from the lazy-pages log once
    /// its daemon is gone (for a daemon that restarted and cannot wait for its child):
    /// `None` while it runs (or never ran), else `Some(ok)`.
    pub fn lazy_outcome_from_log(&self, name: &str) -> Option<bool> {
        let dir = self.container_dir(name);
        if !crate::criu::processes_under(&dir).is_empty() {
            return None;
        }
        let text = std::fs::read_to_string(dir.join("criu-restore/lazy-pages.log")).ok()?;
        let per_task: Vec<(u64, u64)> = text
            .lines()
            .filter_map(|l| l.split("UFFD transferred pages: (").nth(1))
            .filter_map(|rest| {
                let (a, b) = rest.split_once('/')?;
                Some((
                    a.trim().parse().ok()?,
                    b.trim_end_matches(')').trim().parse().ok()?,
                ))
            })
            .collect();
        let errors = text
            .lines()
            .any(|l| l.starts_with("Error") || l.contains("Error ("));
        Some(!errors && !per_task.is_empty() && per_task.iter().all(|(got, all)| got == all))
    }

    /// The source committed: the restored copy becomes reachable and is a normal container.
    /// Idempotent: a copy that already serves is fine.
    pub fn commit_incoming(&self, name: &str, id: &MigrationId) -> Result<Container, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.load(name)?;
        if c.status == Status::Running && c.migration.is_none() {
            return Ok(c);
        }
        let mut c = self.incoming_container(name, id)?;
        self.unpark(&c)?;
        c.status = Status::Running;
        c.migration = None;
        c.started_at = Some(now_rfc3339());
        self.save_incoming_step(&c)?;
        tracing::info!(container = %name, migration = %id, "incoming migration committed; serving here");
        Ok(c)
    }

    /// Removes the uncommitted copy of incoming migration `id` (restored or not), with any
    /// CRIU helper still working for it. Idempotent; refuses to touch a container that is
    /// not that migration's parked copy (one that serves is never removed here).
    pub fn abort_incoming(&self, name: &str, id: &MigrationId) -> Result<(), RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = match self.incoming_container(name, id) {
            Ok(c) => c,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        // A page server or lazy-pages daemon of this copy may outlive the daemon that
        // started it (restart, crash): none may keep waiting for the source.
        let dir = self.container_dir(name);
        if crate::criu::kill_processes_under(&dir) > 0 {
            tracing::warn!(container = %name, "killed CRIU helpers left from the aborted migration");
        }
        self.teardown(&c);
        if dir.exists() {
            return Err(RuntimeError::Invalid(format!(
                "the copy of '{name}' could not be removed completely (its root filesystem is busy)"
            )));
        }
        tracing::warn!(container = %name, migration = %id, "incoming migration aborted; target copy removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criu_dump_stats() {
        // Bytes of a real stats-dump written by CRIU 4.2.1 (32 MiB ballast, page server).
        let raw: [u8; 51] = [
            0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x27, 0x00, 0x00, 0x00, 0x0a, 0x25,
            0x08, 0xe4, 0x04, 0x10, 0xbf, 0x9b, 0x15, 0x18, 0xcd, 0x8a, 0x04, 0x20, 0x8a, 0xee,
            0x03, 0x28, 0xa8, 0x40, 0x30, 0x00, 0x38, 0x9c, 0x40, 0x40, 0x00, 0x48, 0x00, 0x50,
            0x08, 0x58, 0x08, 0x60, 0x00, 0x68, 0x00, 0x70, 0x00,
        ];
        let s = parse_dump_stats(&raw).unwrap();
        assert_eq!(s.pages_written, 8220);
        assert_eq!(s.pages_scanned, 8232);
        assert_eq!(s.pages_lazy, 0);
        assert!(s.frozen_us > 0);
    }

    #[test]
    fn counts_the_faults_of_the_first_100ms_after_the_restore() {
        let log = "(00.010000) uffd: 7: #PF at 0x1000\n\
                   (00.050000) Restore finished\n\
                   (00.060000) uffd: 7: #PF at 0x2000\n\
                   (00.149000) uffd: 7: #PF at 0x3000\n\
                   (00.151000) uffd: 7: #PF at 0x4000\n\
                   (01.000000) uffd: 7: UFFD transferred pages: (40/40)\n";
        let s = parse_lazy_log(log);
        assert_eq!((s.faults, s.pages, s.faults_first_100ms), (4, 40, Some(2)));
        assert_eq!(parse_lazy_log("(00.1) uffd: #PF").faults_first_100ms, None);
    }

    #[test]
    fn rejects_truncated_stats() {
        assert!(parse_dump_stats(&[0x40, 0x59, 0x10]).is_none());
        // A header announcing an empty entry: no dump stats inside.
        assert!(parse_dump_stats(&[0; 12]).is_none());
    }
}
