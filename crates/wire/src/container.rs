//! Containers of one host: what a client asks for, and the record the host keeps and serves.
//!
//! ```text
//!  Created --start--> Running --stop--> Stopped --start--> Running
//!                     |  ^  \
//!          checkpoint |  |   \ migrate (source): Running, marked with the migration;
//!                     v  |    \ frozen (Frozen) from the freeze until commit or rollback
//!                 Checkpointed
//!  (target) Incoming --commit--> Running        Incoming --abort--> (removed)
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::migration::{CheckpointEngine, DumpStats, MigrationId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Bundle, root filesystem and network prepared; no process.
    Created,
    /// The app's process runs.
    Running,
    /// The processes exist but are frozen (a migration's freeze, or a thaw that failed).
    Frozen,
    /// The process ended (stopped, crashed, or the machine restarted).
    Stopped,
    /// The process was dumped to a checkpoint and no longer runs here.
    Checkpointed,
    /// Migration target side: arriving (or restored) but not committed, so not reachable.
    Incoming,
}

impl Status {
    pub fn can_start(self) -> bool {
        matches!(self, Status::Created | Status::Stopped)
    }
    pub fn can_stop(self) -> bool {
        matches!(self, Status::Running | Status::Frozen)
    }
    pub fn can_checkpoint(self) -> bool {
        matches!(self, Status::Running)
    }
    pub fn can_restore(self) -> bool {
        matches!(
            self,
            Status::Created | Status::Stopped | Status::Checkpointed
        )
    }
    pub fn can_migrate(self) -> bool {
        matches!(self, Status::Running)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Frozen => "frozen",
            Status::Stopped => "stopped",
            Status::Checkpointed => "checkpointed",
            Status::Incoming => "incoming",
        })
    }
}

/// What a client asks for when it creates a container (`POST /ferry/v1/containers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRequest {
    pub name: String,
    /// Name of an imported image.
    pub image: String,
    /// Arguments after the image's entrypoint (replace the image's `Cmd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Extra `KEY=VALUE` environment entries (added to the image's).
    #[serde(default)]
    pub env: Vec<String>,
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// CPU limit in cores (CFS quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// The container's IPv4 address; it keeps it wherever it runs. Without one the container
    /// gets a network namespace with loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
}

/// A checkpoint taken of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub image_dir: PathBuf,
    pub taken_at: String,
    pub leave_running: bool,
}

/// The record of one container: persisted by its host (`state.json`) and served as is by
/// `GET /ferry/v1/containers/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub request: ContainerRequest,
    pub status: Status,
    /// Named network namespace (`/run/netns/<netns>`), owned by ferry, outlives the process
    /// so that checkpoint/restore keeps the container's addresses.
    pub netns: String,
    /// Host side of the container's veth pair (on the host's bridge), if it has an address.
    pub veth: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub last_checkpoint: Option<CheckpointRecord>,
    /// The migration that holds the container (outgoing on the source, incoming on the
    /// target). Lifecycle operations are refused while it is set.
    #[serde(default)]
    pub migration: Option<MigrationId>,
    /// Who runs its processes.
    #[serde(default)]
    pub owner: Owner,
}

/// Who runs a container's processes: the one that started or restored them, and the only
/// one that can pause, stop or dump them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// runc (it ran the container, or restored it): runc's state says where it is.
    #[default]
    Runc,
    /// ferry itself: CRIU restored it for ferry's native engine. Its init is `pid`, started
    /// at `start_time` (clock ticks after boot, as /proc/PID/stat says, so a reused pid is
    /// told apart); its cgroups are where runc would have put them.
    Ferry { pid: i32, start_time: u64 },
}

/// Container names become directory, netns and runc IDs: keep them plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container name '{name}': use 1-63 characters of a-z, 0-9, '-', '_', starting with a letter or digit"
        ))
    }
}

/// `POST /ferry/v1/containers/{name}/checkpoint`. `image_dir` defaults to
/// `checkpoints/<name>` in the host's state dir; a non-empty directory is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointRequest {
    #[serde(default)]
    pub image_dir: Option<PathBuf>,
    /// Keep the app running after the dump (a snapshot); otherwise it stops here.
    #[serde(default)]
    pub leave_running: bool,
    /// Dump established TCP connections (CRIU `--tcp-established`).
    #[serde(default)]
    pub tcp_established: bool,
    /// Who drives CRIU; absent: whoever runs the container (runc, or ferry for one it
    /// restored natively). `native` also dumps a container runc runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<CheckpointEngine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointReport {
    pub container: String,
    pub image_dir: PathBuf,
    pub leave_running: bool,
    /// Wall time of the checkpoint (freeze + dump + write images).
    pub checkpoint_ms: u64,
    /// Total size of the checkpoint images.
    pub image_bytes: u64,
    /// Who drove CRIU.
    #[serde(default)]
    pub engine: CheckpointEngine,
    /// CRIU's own figures of the dump.
    #[serde(default)]
    pub dump: Option<DumpStats>,
}

/// `POST /ferry/v1/containers/{name}/restore`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// Defaults to the container's last checkpoint.
    #[serde(default)]
    pub image_dir: Option<PathBuf>,
    #[serde(default)]
    pub tcp_established: bool,
    /// Who drives CRIU (default runc; `native`: ferry then runs the restored container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<CheckpointEngine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    pub container: String,
    pub image_dir: PathBuf,
    /// Wall time of `runc restore` until the process runs again.
    pub restore_ms: u64,
}

/// `GET /ferry/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub host: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_transitions() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(Status::Running.can_checkpoint());
        assert!(!Status::Frozen.can_checkpoint());
        assert!(!Status::Frozen.can_migrate());
        assert!(Status::Checkpointed.can_restore());
        assert!(!Status::Running.can_restore());
        assert!(!Status::Stopped.can_stop());
    }

    #[test]
    fn names() {
        assert!(validate_name("counter-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("../x").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn unknown_request_attributes_are_ignored() {
        let r: ContainerRequest =
            serde_json::from_str(r#"{"name":"a","image":"i","future":1}"#).unwrap();
        assert_eq!(r.name, "a");
        assert!(r.env.is_empty());
    }
}
