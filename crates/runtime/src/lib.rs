//! One MEC host's container runtime: what `ferry host` drives.
//!
//! - [`image`]: OCI image import into a content-addressed store, layers unpacked for overlayfs.
//! - [`container`]: the persisted record of one container and its lifecycle states.
//! - [`spec`]: the OCI runtime `config.json` ferry writes for a container.
//! - [`overlay`]: the container's root filesystem (image layers + its own writable layer).
//! - [`net`]: the host's bridge, each container's network namespace, CRIU network-lock cleanup.
//! - [`cgroup`]: where containers sit in the cgroup tree; removing the groups runc leaves.
//! - [`runc`]: the OCI runtime driver (the runc CLI; runc calls CRIU for checkpoint/restore).
//! - [`criu`]: finding CRIU and probing the kernel features it needs.
//! - [`runtime`]: [`Runtime`], all containers of one host, tying the above together.

pub mod cgroup;
pub mod command;
pub mod container;
pub mod criu;
pub mod criu_rpc;
pub mod image;
pub mod net;
pub mod overlay;
pub mod runc;
pub mod runtime;
pub mod spec;

pub use container::{Container, ContainerRequest, Owner, Status};
pub use runtime::{
    daemon_id, dir_size, parse_dump_stats, CheckpointReport, CheckpointRequest, Dump, DumpStats,
    IncomingDirs, RestoreReport, RestoreRequest, Runtime, RuntimeConfig, RuntimeError,
};
