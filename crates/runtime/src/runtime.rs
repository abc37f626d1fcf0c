//! [`Runtime`]: all containers of one MEC host. Each operation is one method that reads the
//! container's record, checks the status allows it, acts, and saves the new status; on a
//! failure half-way it undoes what it did, so a container is never left half-created.
//!
//! Layout under the state directory:
//! ```text
//! images/                      image store (layers unpacked once, shared)
//! runc/                        runc's own state (--root)
//! containers/<name>/state.json the container's record
//!                   bundle/    config.json + rootfs (overlay mount point)
//!                   upper/ work/  the container's writable layer
//!                   criu.conf  options runc passes to CRIU
//!                   criu-dump/ criu-restore/  CRIU work dirs (logs of the last attempt)
//! checkpoints/<name>/          default checkpoint directory
//! ```

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::cgroup;
use crate::command::CommandError;
use crate::container::{self, CheckpointRecord, Container, ContainerRequest, Owner, Status};
use crate::image::{ImageError, ImageLimits, ImageStore};
use crate::net;
use crate::overlay::{self, OverlayError};
use crate::runc::{self, CheckpointOpts, RestoreOpts, Runc};
use crate::spec;
pub use ferry_wire::container::{
    CheckpointReport, CheckpointRequest, RestoreReport, RestoreRequest,
};

mod handoff;
mod native;
use ferry_wire::migration::CheckpointEngine;
pub use ferry_wire::migration::DumpStats;
pub use handoff::{parse_dump_stats, Dump, IncomingDirs, LazyStats};

/// How long a local checkpoint of ferry's own container may take (CRIU's answer).
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a native restore may take (CRIU's answer).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `stop` waits for SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a removed container's cgroup may still hold exiting tasks (freeing a large
/// memory takes a while on a loaded or emulated machine).
const CGROUP_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The host's name (reported, and part of cgroup paths).
    pub name: String,
    pub state_dir: PathBuf,
    /// The bridge containers attach to, in the daemon's network namespace.
    pub bridge: String,
    /// Gateway address and the app subnet, e.g. 10.200.0.1/16 (same on every host).
    pub gateway: Ipv4Net,
    pub runc: PathBuf,
    pub criu: PathBuf,
    /// Caps on one image import (archives come from the network).
    pub image_limits: ImageLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("container '{name}' is {status}: cannot {action} it")]
    IncorrectStatus {
        name: String,
        status: Status,
        action: &'static str,
    },
    /// A rollback could not thaw the app: it is down (frozen or gone) until someone acts.
    #[error("cannot thaw container '{name}': {detail}")]
    Thaw { name: String, detail: String },
    #[error("container '{name}' is already migrating (migration {migration})")]
    MigrationInProgress { name: String, migration: String },
    #[error("address {addr} is already used by container '{by}'")]
    AddressInUse { addr: Ipv4Addr, by: String },
    #[error("{action} of '{name}' failed: {detail}")]
    Criu {
        action: &'static str,
        name: String,
        detail: String,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error("OCI runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

pub struct Runtime {
    config: RuntimeConfig,
    images: ImageStore,
    runc: Runc,
    /// Short stable id of this daemon (from its state dir), so that namespaces, veths and
    /// cgroups of two daemons on one machine never collide.
    id: String,
    /// One lock per container: operations on one container are serialized, others run freely.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// CRIUs started ahead for the native restore of incoming copies, by container (see
    /// [`native::Restorer`]).
    restorers: Mutex<HashMap<String, native::Restorer>>,
}

/// Lifecycle operations wait until a migration of the container has ended.
fn not_migrating(c: &Container) -> Result<(), RuntimeError> {
    match &c.migration {
        Some(id) => Err(RuntimeError::MigrationInProgress {
            name: c.name.clone(),
            migration: id.to_string(),
        }),
        None => Ok(()),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

/// The id of the daemon whose state directory is `state_dir` (canonical): what its
/// namespaces, veths and cgroups are named after.
pub fn daemon_id(state_dir: &Path) -> String {
    short_hash(&[&state_dir.to_string_lossy()])
}

/// Bytes under `path` (0 if it is not there); symlinks counted, not followed.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Runtime {
    /// Opens (or creates) the host's state, makes sure the bridge exists, and finds the
    /// containers a previous daemon left, bringing their records up to date.
    pub fn open(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        for sub in ["containers", "checkpoints", "runc"] {
            let d = config.state_dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
        }
        let images =
            ImageStore::open(&config.state_dir.join("images"))?.with_limits(config.image_limits);
        let state_dir = std::fs::canonicalize(&config.state_dir)
            .map_err(io(format!("resolve {}", config.state_dir.display())))?;
        let id = daemon_id(&state_dir);
        let runc = Runc {
            binary: config.runc.clone(),
            root: state_dir.join("runc"),
            criu: config.criu.clone(),
        };
        net::ensure_bridge(&config.bridge, config.gateway)?;
        let rt = Runtime {
            config: RuntimeConfig {
                state_dir,
                ..config
            },
            images,
            runc,
            id,
            locks: Mutex::new(HashMap::new()),
            restorers: Mutex::new(HashMap::new()),
        };
        rt.recover()?;
        Ok(rt)
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Short id of this daemon; prefix of its namespaces, veths and cgroups.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    fn container_dir(&self, name: &str) -> PathBuf {
        self.config.state_dir.join("containers").join(name)
    }

    fn netns_name(&self, name: &str) -> String {
        format!("ferry-{}-{name}", self.id)
    }

    fn veth_name(&self, name: &str) -> String {
        format!("fv{}", short_hash(&[&self.id, name]))
    }

    fn cgroups_path(&self, name: &str) -> String {
        cgroup::path(&self.id, name)
    }

    /// The CRIU options file of container `name` (see [`spec::criu_config`]).
    pub(crate) fn criu_config(&self, name: &str, base: &str) -> String {
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        spec::criu_config(base, unified.then(|| self.cgroups_path(name)).as_deref())
    }

    /// Memory the container's processes use (its cgroup's usage), if known: the state a
    /// migration has to move.
    pub fn memory_bytes(&self, name: &str) -> Option<u64> {
        let cg = self.cgroups_path(name);
        let rel = cg.trim_start_matches('/');
        [
            PathBuf::from("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.usage_in_bytes"),
            PathBuf::from("/sys/fs/cgroup")
                .join(rel)
                .join("memory.current"),
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
    }

    /// Where this host keeps the images of migrations it sends.
    pub fn migrations_dir(&self) -> PathBuf {
        self.config.state_dir.join("migrations")
    }

    fn lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    fn load(&self, name: &str) -> Result<Container, RuntimeError> {
        container::validate_name(name).map_err(|_| RuntimeError::NotFound {
            kind: "container",
            name: name.to_string(),
        })?;
        let dir = self.container_dir(name);
        if !container::state_file(&dir).exists() {
            return Err(RuntimeError::NotFound {
                kind: "container",
                name: name.to_string(),
            });
        }
        container::load(&dir).map_err(io(format!("read container '{name}'")))
    }

    fn save(&self, c: &Container) -> Result<(), RuntimeError> {
        container::save(c, &self.container_dir(&c.name), true)
            .map_err(io(format!("save container '{}'", c.name)))
    }

    /// [`Runtime::save`] without waiting for the disk, for an incoming copy's restore and
    /// commit: inside the app's frozen window, and redone from the migration journal by
    /// recovery should a crash lose them (an uncommitted copy is removed, a committed one
    /// committed again).
    fn save_incoming_step(&self, c: &Container) -> Result<(), RuntimeError> {
        container::save(c, &self.container_dir(&c.name), false)
            .map_err(io(format!("save container '{}'", c.name)))
    }

    /// Makes the record say what the owner (runc, or ferry) says of the process (ended behind the daemon's back:
    /// crash, reboot; frozen: a thaw that did not happen). A container held by a migration is
    /// left alone: the migration owns its status.
    fn refresh(&self, c: &mut Container) -> Result<(), RuntimeError> {
        if c.migration.is_some() || !matches!(c.status, Status::Running | Status::Frozen) {
            return Ok(());
        }
        let now = match self.proc_state(c)? {
            native::ProcState::Running => Status::Running,
            native::ProcState::Frozen => Status::Frozen,
            native::ProcState::Gone => {
                tracing::warn!(container = %c.name, "process is gone; marking stopped");
                self.release(c)?;
                c.owner = Owner::Runc;
                Status::Stopped
            }
        };
        if now != c.status {
            c.status = now;
            self.save(c)?;
        }
        Ok(())
    }

    /// Re-establishes what a previous daemon (or boot) may have lost: records' statuses, the
    /// root filesystem mounts and network namespaces of every container.
    fn recover(&self) -> Result<(), RuntimeError> {
        let dir = self.config.state_dir.join("containers");
        let entries = std::fs::read_dir(&dir).map_err(io(format!("list {}", dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !container::state_file(&entry.path()).exists() {
                // A creation that died half-way: nothing refers to it.
                tracing::warn!(container = %name, "removing incomplete container directory");
                let _ = overlay::unmount_root(&entry.path().join("bundle/rootfs"));
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            let mut c = match self.load(&name) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(container = %name, error = %e, "cannot read container record; leaving it alone");
                    continue;
                }
            };
            if c.migration.is_some() || c.status == Status::Incoming {
                // Frozen and parked on purpose, or a parked copy: the migration's recovery
                // (crate ferry-migration) decides what becomes of it, not a blind re-wiring.
                tracing::info!(container = %c.name, migration = ?c.migration, status = %c.status, "held by a migration; left to its recovery");
                continue;
            }
            self.refresh(&mut c)?;
            self.prepare(&c)?;
            tracing::info!(container = %c.name, status = %c.status, "recovered container");
        }
        // A daemon that died half-way, or containers removed behind its back, may have left
        // this daemon's cgroup parents empty.
        cgroup::Hierarchies::mounted().remove_empty_parents(&self.id);
        Ok(())
    }

    /// Root filesystem mounted and network namespace wired (idempotent).
    fn prepare(&self, c: &Container) -> Result<(), RuntimeError> {
        self.mount_root(c)?;
        self.wire_network(c)
    }

    fn mount_root(&self, c: &Container) -> Result<(), RuntimeError> {
        let dir = self.container_dir(&c.name);
        let image = self.images.get(&c.request.image)?;
        let lower = self.images.lower_dirs(&image)?;
        overlay::mount_root(
            &lower,
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("bundle/rootfs"),
        )?;
        Ok(())
    }

    fn wire_network(&self, c: &Container) -> Result<(), RuntimeError> {
        net::create_netns(&c.netns)?;
        if let (Some(ip), Some(veth)) = (c.request.ip, &c.veth) {
            net::attach(&c.netns, veth, &self.config.bridge, ip, self.config.gateway)?;
        }
        Ok(())
    }

    fn check_address(&self, ip: Ipv4Addr, name: &str) -> Result<(), RuntimeError> {
        let gw = self.config.gateway;
        if !gw.contains(&ip) || ip == gw.addr() || ip == gw.network() || ip == gw.broadcast() {
            return Err(RuntimeError::Invalid(format!(
                "address {ip} is not a usable host address of the app subnet {}",
                gw.trunc()
            )));
        }
        for other in self.list()? {
            if other.name != name && other.request.ip == Some(ip) {
                return Err(RuntimeError::AddressInUse {
                    addr: ip,
                    by: other.name,
                });
            }
        }
        Ok(())
    }

    /// Creates a container (bundle, root filesystem, network) without starting it.
    pub fn create(&self, req: ContainerRequest) -> Result<Container, RuntimeError> {
        let c = self.create_with(req, Status::Created, None, |c, _dir| self.prepare(c))?;
        tracing::info!(container = %c.name, image = %c.request.image, ip = ?c.request.ip, "created");
        Ok(c)
    }

    /// What creating a container and preparing an incoming one share: the request is
    /// checked, the record gets its bundle (runtime spec, CRIU options), then `setup` does
    /// the rest. On any failure everything the container had here is removed.
    pub(super) fn create_with(
        &self,
        req: ContainerRequest,
        status: Status,
        migration: Option<&ferry_wire::migration::MigrationId>,
        setup: impl FnOnce(&Container, &Path) -> Result<(), RuntimeError>,
    ) -> Result<Container, RuntimeError> {
        container::validate_name(&req.name).map_err(RuntimeError::Invalid)?;
        if let Some(m) = req.memory_mib {
            if m < 4 {
                return Err(RuntimeError::Invalid(format!(
                    "memory_mib {m} is too small (at least 4)"
                )));
            }
        }
        if let Some(c) = req.cpus {
            if !(c > 0.0 && c <= 1024.0) {
                return Err(RuntimeError::Invalid(format!(
                    "cpus {c} must be in (0, 1024]"
                )));
            }
        }
        for e in &req.env {
            if !e.contains('=') {
                return Err(RuntimeError::Invalid(format!(
                    "env entry '{e}' is not KEY=VALUE"
                )));
            }
        }
        let lock = self.lock(&req.name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.container_dir(&req.name);
        if dir.exists() {
            return Err(RuntimeError::AlreadyExists {
                kind: "container",
                name: req.name.clone(),
            });
        }
        let image = self.images.get(&req.image)?;
        if let Some(ip) = req.ip {
            self.check_address(ip, &req.name)?;
        }
        let c = Container {
            name: req.name.clone(),
            netns: self.netns_name(&req.name),
            veth: req.ip.map(|_| self.veth_name(&req.name)),
            request: req,
            status,
            created_at: now_rfc3339(),
            started_at: None,
            last_checkpoint: None,
            migration: migration.cloned(),
            owner: Default::default(),
        };
        let result = (|| {
            std::fs::create_dir_all(dir.join("bundle")).map_err(io("create bundle"))?;
            let criu_conf = dir.join("criu.conf");
            std::fs::write(&criu_conf, self.criu_config(&c.name, spec::CRIU_CONFIG))
                .map_err(io("write criu.conf"))?;
            let spec = spec::build(
                &c.request,
                &image.config,
                &net::netns_path(&c.netns),
                &self.cgroups_path(&c.name),
                &criu_conf,
            )?;
            spec.save(dir.join("bundle/config.json"))?;
            setup(&c, &dir)?;
            self.save(&c)
        })();
        if let Err(e) = result {
            self.teardown(&c);
            return Err(e);
        }
        Ok(c)
    }

    /// Removes everything a container owns on this host (best effort; logs what it cannot).
    fn teardown(&self, c: &Container) {
        let dir = self.container_dir(&c.name);
        // A CRIU started for a restore that did not happen: it exits when told to go.
        self.drop_restorer(&c.name);
        if let Err(e) = self.release(c) {
            tracing::warn!(container = %c.name, error = %e, "release the processes");
        }
        if let Err(e) = overlay::unmount_root(&dir.join("bundle/rootfs")) {
            tracing::warn!(container = %c.name, error = %e, "unmount");
        }
        if let Some(ip) = c.request.ip {
            net::unroute(ip, &self.config.bridge);
        }
        if let Err(e) = net::delete_netns(&c.netns, c.veth.as_deref()) {
            tracing::warn!(container = %c.name, error = %e, "delete netns");
        }
        // What runc left of the container's cgroups (see `cgroup`), and the parents it made.
        let cgroups = cgroup::Hierarchies::mounted();
        for (group, e) in cgroups.remove(&self.cgroups_path(&c.name), CGROUP_PATIENCE) {
            tracing::warn!(container = %c.name, cgroup = %group.display(), error = %e, "cgroup left");
        }
        if overlay::is_mounted(&dir.join("bundle/rootfs")) {
            tracing::error!(container = %c.name, "root filesystem still mounted; keeping its directory");
            return;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The container's record, brought up to date with runc (under the container's lock:
    /// the refresh may write the record and `runc delete`).
    pub fn get(&self, name: &str) -> Result<Container, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.get_locked(name)
    }

    /// [`Runtime::get`] for a caller that holds the container's lock.
    fn get_locked(&self, name: &str) -> Result<Container, RuntimeError> {
        let mut c = self.load(name)?;
        self.refresh(&mut c)?;
        Ok(c)
    }

    /// The record of `name` as stored (no refresh), if there is one.
    pub fn find(&self, name: &str) -> Option<Container> {
        self.load(name).ok()
    }

    pub fn list(&self) -> Result<Vec<Container>, RuntimeError> {
        let dir = self.config.state_dir.join("containers");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(io("list containers"))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(c) = self.load(&name) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn start(&self, name: &str) -> Result<Container, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.get_locked(name)?;
        if !c.status.can_start() {
            return Err(RuntimeError::IncorrectStatus {
                name: c.name,
                status: c.status,
                action: "start",
            });
        }
        self.prepare(&c)?;
        self.runc.delete(&c.name)?; // a stopped runc container of the same id
        self.runc
            .run_detached(&c.name, &self.container_dir(name).join("bundle"))?;
        c.owner = Owner::Runc;
        c.status = Status::Running;
        c.started_at = Some(now_rfc3339());
        self.save(&c)?;
        tracing::info!(container = %name, "started");
        Ok(c)
    }

    pub fn stop(&self, name: &str) -> Result<Container, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.get_locked(name)?;
        not_migrating(&c)?;
        if !c.status.can_stop() {
            return Err(RuntimeError::IncorrectStatus {
                name: c.name,
                status: c.status,
                action: "stop",
            });
        }
        self.stop_process(&c)?;
        c.status = Status::Stopped;
        c.owner = Owner::Runc;
        self.save(&c)?;
        tracing::info!(container = %name, "stopped");
        Ok(c)
    }

    /// SIGTERM, a grace period, SIGKILL, then forget the processes' runtime state.
    fn stop_process(&self, c: &Container) -> Result<(), RuntimeError> {
        use nix::sys::signal::Signal;
        self.signal(c, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && self.proc_state(c)? == native::ProcState::Running {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.proc_state(c)? == native::ProcState::Running {
            self.signal(c, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(100));
        }
        self.release(c)
    }

    /// Deletes a container, stopping it first if it runs.
    pub fn delete(&self, name: &str) -> Result<(), RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.get_locked(name)?;
        not_migrating(&c)?;
        if c.status == Status::Running {
            self.stop_process(&c)?;
        }
        self.teardown(&c);
        if self.container_dir(name).exists() {
            return Err(RuntimeError::Invalid(format!(
                "container '{name}' could not be removed completely (its root filesystem is busy); try again"
            )));
        }
        tracing::info!(container = %name, "deleted");
        Ok(())
    }

    /// Checkpoints a running container with CRIU (through runc) into a directory.
    pub fn checkpoint(
        &self,
        name: &str,
        req: CheckpointRequest,
    ) -> Result<CheckpointReport, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.get_locked(name)?;
        not_migrating(&c)?;
        if !c.status.can_checkpoint() {
            return Err(RuntimeError::IncorrectStatus {
                name: c.name,
                status: c.status,
                action: "checkpoint",
            });
        }
        let image_dir = req
            .image_dir
            .clone()
            .unwrap_or_else(|| self.config.state_dir.join("checkpoints").join(name));
        if !image_dir.is_absolute() {
            return Err(RuntimeError::Invalid(format!(
                "image_dir '{}' must be an absolute path",
                image_dir.display()
            )));
        }
        if req.image_dir.is_none() && image_dir.exists() {
            // The default directory holds the previous checkpoint: replace it.
            std::fs::remove_dir_all(&image_dir).map_err(io("clear default checkpoint dir"))?;
        }
        if std::fs::read_dir(&image_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            return Err(RuntimeError::AlreadyExists {
                kind: "checkpoint directory (not empty)",
                name: image_dir.display().to_string(),
            });
        }
        let work = self.dump_work_dir(name, "criu-dump", &image_dir)?;

        let started = Instant::now();
        // Whoever runs the container dumps it (runc, or CRIU directly for ferry's own),
        // unless the request asks for the native engine, which dumps runc's too.
        let engine = match (req.engine, c.owner) {
            (Some(CheckpointEngine::Runc), Owner::Ferry { .. }) => {
                return Err(RuntimeError::Invalid(format!(
                    "container '{name}' was restored by ferry's native engine: runc does not know it; checkpoint it with the native engine"
                )))
            }
            (Some(e), _) => e,
            (None, Owner::Runc) => CheckpointEngine::Runc,
            (None, Owner::Ferry { .. }) => CheckpointEngine::Native,
        };
        let pid = match engine {
            CheckpointEngine::Native => Some(self.init_pid_of(&c)?),
            CheckpointEngine::Runc => None,
        };
        let result = match (engine, pid) {
            (CheckpointEngine::Runc, _) | (_, None) => self
                .runc
                .checkpoint(
                    name,
                    &CheckpointOpts {
                        image_path: &image_dir,
                        work_path: &work,
                        leave_running: req.leave_running,
                        tcp_established: req.tcp_established,
                        page_server: None,
                        pre_dump: false,
                        parent_path: None,
                        timeout: None,
                    },
                )
                .map_err(|e| e.stderr),
            (CheckpointEngine::Native, Some(pid)) => self
                .native_dump(
                    &c,
                    pid,
                    &native::NativeDump {
                        image_dir: &image_dir,
                        work_dir: &work,
                        page_server: None,
                        lazy: false,
                        parent: None,
                        pre_dump: false,
                        tls: None,
                        parked: false,
                        leave_running: req.leave_running,
                        tcp_established: req.tcp_established,
                        timeout: CHECKPOINT_TIMEOUT,
                        on_connected: None,
                    },
                )
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        let checkpoint_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = result {
            // CRIU resumes the tree when a dump fails; make sure the record says what is true.
            net::remove_criu_network_lock(&c.netns);
            let detail = format!("{e}; CRIU: {}", runc::criu_log_tail(&work, "dump.log"));
            self.refresh(&mut c)?;
            return Err(RuntimeError::Criu {
                action: "checkpoint",
                name: name.to_string(),
                detail,
            });
        }
        if !req.leave_running {
            // The processes ended with the dump; their runtime state goes. CRIU's network
            // lock stays in the namespace until the restore (an established connection must
            // not see a RST).
            self.release(&c)?;
            c.owner = Owner::Runc;
            c.status = Status::Checkpointed;
            if !req.tcp_established {
                net::remove_criu_network_lock(&c.netns);
            }
        }
        c.last_checkpoint = Some(CheckpointRecord {
            image_dir: image_dir.clone(),
            taken_at: now_rfc3339(),
            leave_running: req.leave_running,
        });
        self.save(&c)?;
        let report = CheckpointReport {
            container: name.to_string(),
            image_bytes: dir_size(&image_dir),
            image_dir,
            leave_running: req.leave_running,
            checkpoint_ms,
            engine,
            dump: Some(handoff::read_dump_stats(&work)).filter(|d| d.frozen_us > 0),
        };
        tracing::info!(container = %name, ms = checkpoint_ms, bytes = report.image_bytes, "checkpointed");
        Ok(report)
    }

    /// The restore step every path shares (local restore, incoming migration): a fresh CRIU
    /// work dir, then the engine's restore. For post-copy (`lazy_from`: the source's page
    /// server) a `criu lazy-pages` daemon serves the memory. On failure the network lock and
    /// runc state are cleaned and CRIU's errors reported. The caller cleans what an earlier
    /// life of the container left: an incoming copy has none (made fresh at the offer, restored
    /// at most once), so nothing runs here that its frozen window does not need (runc's CLI
    /// and two iptables listings cost about 20 ms).
    fn run_restore(
        &self,
        c: &Container,
        images: &Path,
        tcp_established: bool,
        lazy_from: Option<(std::net::SocketAddr, Option<&crate::criu::CriuTls>)>,
        engine: CheckpointEngine,
    ) -> Result<(u64, Option<std::process::Child>, Owner), RuntimeError> {
        let name = c.name.as_str();
        let work = self.container_dir(name).join("criu-restore");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(io("create criu work dir"))?;
        let started = Instant::now();
        let mut lazy = match lazy_from {
            Some((addr, tls)) => Some(self.start_lazy_pages(images, &work, addr, tls)?),
            None => None,
        };
        let result = match engine {
            CheckpointEngine::Runc => self
                .runc
                .restore(
                    name,
                    &RestoreOpts {
                        image_path: images,
                        work_path: &work,
                        bundle: &self.container_dir(name).join("bundle"),
                        tcp_established,
                        lazy_pages: lazy.is_some(),
                    },
                )
                .map(|()| Owner::Runc)
                .map_err(|e| RuntimeError::Criu {
                    action: "restore",
                    name: name.to_string(),
                    detail: format!(
                        "{}; CRIU: {}",
                        e.stderr,
                        runc::criu_log_tail(&work, "restore.log")
                    ),
                }),
            CheckpointEngine::Native => self.native_restore(
                c,
                &native::NativeRestore {
                    images,
                    work_dir: &work,
                    lazy: lazy.is_some(),
                    timeout: RESTORE_TIMEOUT,
                },
            ),
        };
        // A post-copy restore is done only once its daemon can pull the memory: without it
        // the app would run on here, missing pages, while the source rolls nothing back.
        let result = result.and_then(|owner| match lazy.as_mut() {
            Some(l) => l.connected(&work).map(|()| owner),
            None => Ok(owner),
        });
        match result {
            Ok(owner) => Ok((
                started.elapsed().as_millis() as u64,
                lazy.map(|l| l.child),
                owner,
            )),
            Err(e) => {
                if let Some(l) = lazy.as_mut() {
                    l.stop();
                }
                net::remove_criu_network_lock(&c.netns);
                let _ = self.runc.delete(name);
                if engine == CheckpointEngine::Native {
                    // CRIU kills what it restored when it fails; the cgroups made for it
                    // stay, and go now.
                    let _ = self.release(&Container {
                        owner: Owner::Ferry {
                            pid: 0,
                            start_time: 0,
                        },
                        ..c.clone()
                    });
                }
                Err(e)
            }
        }
    }

    /// Restores a container from a checkpoint directory.
    pub fn restore(&self, name: &str, req: RestoreRequest) -> Result<RestoreReport, RuntimeError> {
        let lock = self.lock(name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.get_locked(name)?;
        if !c.status.can_restore() {
            return Err(RuntimeError::IncorrectStatus {
                name: c.name,
                status: c.status,
                action: "restore",
            });
        }
        let image_dir = match req
            .image_dir
            .clone()
            .or(c.last_checkpoint.as_ref().map(|l| l.image_dir.clone()))
        {
            Some(d) => d,
            None => {
                return Err(RuntimeError::Invalid(format!(
                    "container '{name}' has no checkpoint; give image_dir"
                )))
            }
        };
        if !image_dir.join("inventory.img").is_file() {
            return Err(RuntimeError::Invalid(format!(
                "'{}' holds no CRIU checkpoint (no inventory.img)",
                image_dir.display()
            )));
        }
        self.prepare(&c)?;
        // No stale runc state, no network lock left by the dump (it would block the restored
        // sockets; CRIU locks again itself).
        self.runc.delete(name)?;
        net::remove_criu_network_lock(&c.netns);
        let engine = req.engine.unwrap_or_default();
        if engine == CheckpointEngine::Native {
            self.prepare_cgroups(&c)?;
        }
        let (restore_ms, _, owner) =
            self.run_restore(&c, &image_dir, req.tcp_established, None, engine)?;
        c.owner = owner;
        c.status = Status::Running;
        self.save(&c)?;
        tracing::info!(container = %name, ms = restore_ms, "restored");
        Ok(RestoreReport {
            container: name.to_string(),
            image_dir,
            restore_ms,
        })
    }
}
