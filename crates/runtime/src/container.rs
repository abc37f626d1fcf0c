//! The persisted record of one container (`state.json`) and its lifecycle.
//!
//! ```text
//!  Created --start--> Running --stop--> Stopped --start--> Running
//!                       |  ^
//!            checkpoint |  | restore (also from Created / Stopped)
//!                       v  |
//!                   Checkpointed
//! ```
//! Every operation checks `can_*` first and fails with an "incorrect status" error instead of
//! half-doing something; the record is saved after each transition, so a restarted daemon
//! finds its containers again.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Bundle, root filesystem and network prepared; no process.
    Created,
    /// The app's process runs.
    Running,
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
        matches!(self, Status::Running)
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
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Checkpointed => "checkpointed",
            Status::Incoming => "incoming",
        };
        f.write_str(s)
    }
}

/// What a client asks for when it creates a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRequest {
    pub name: String,
    /// Name of an imported image.
    pub image: String,
    /// Arguments after the image's entrypoint (replace the image's `Cmd`).
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Extra `KEY=VALUE` environment entries (added to the image's).
    #[serde(default)]
    pub env: Vec<String>,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// CPU limit in cores (CFS quota).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// The container's IPv4 address; it keeps it wherever it runs. Without one the container
    /// gets a network namespace with loopback only.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

/// A checkpoint taken of this container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub image_dir: PathBuf,
    pub taken_at: String,
    pub leave_running: bool,
}

/// The persisted state of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Set while the container migrates away; persisted so that a restarted daemon finishes
    /// (committed) or rolls back (not committed) the migration.
    #[serde(default)]
    pub outgoing: Option<Outgoing>,
}

/// An outgoing migration in flight on the source host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outgoing {
    pub migration: String,
    pub target: String,
    /// Past the point of no return: the target was told to take over.
    pub committed: bool,
    /// The phase the migration is in (for progress displays).
    #[serde(default)]
    pub phase: String,
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

impl Container {
    pub fn state_file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Writes `state.json` atomically (temporary file + rename), so a crash never leaves a
    /// half-written record.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("state.json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, Self::state_file(dir))
    }

    pub fn load(dir: &Path) -> std::io::Result<Container> {
        let body = std::fs::read(Self::state_file(dir))?;
        serde_json::from_slice(&body).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", Self::state_file(dir).display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_transitions() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(Status::Running.can_checkpoint());
        assert!(!Status::Checkpointed.can_checkpoint());
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
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = Container {
            name: "c1".into(),
            request: ContainerRequest {
                name: "c1".into(),
                image: "counter".into(),
                args: Some(vec!["--port".into(), "80".into()]),
                env: vec![],
                memory_mib: Some(64),
                cpus: None,
                ip: Some(Ipv4Addr::new(10, 200, 0, 5)),
            },
            status: Status::Running,
            netns: "ns".into(),
            veth: Some("fv1".into()),
            created_at: "now".into(),
            started_at: None,
            last_checkpoint: None,
            outgoing: None,
        };
        c.save(dir.path()).unwrap();
        let back = Container::load(dir.path()).unwrap();
        assert_eq!(back.status, Status::Running);
        assert_eq!(back.request.ip, c.request.ip);
    }
}
