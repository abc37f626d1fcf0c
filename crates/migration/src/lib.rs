//! Live migration of a container from one ferry host to another.
//!
//! - [`technique`]: cold / post-copy / pre-copy / hybrid / auto, and what this kernel allows.
//! - [`protocol`]: the messages of the host-to-host migration channel and the report.
//! - [`stream`]: the image + writable-layer stream with its manifest (sizes, sha256).
//! - [`source`]: the source host's side, the relocation path top-down.
//! - [`target`]: the target host's side (incoming migrations, page server, lease).
//!
//! The channel is HTTP between the two `ferry host` APIs, each call carrying the migration's
//! token; memory pages go through CRIU's page server straight to the target.

pub mod protocol;
pub mod source;
pub mod stream;
pub mod target;
pub mod technique;

pub use protocol::{Fault, MigrateRequest, MigrationReport};
pub use technique::Technique;

/// Errors of a migration, each naming the phase it happened in.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The request cannot be served (bad technique for this kernel, bad target URL, ...).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::RuntimeError),
    /// A phase failed; the migration was rolled back (the app runs on the source).
    #[error("migration failed in phase {phase}: {detail}")]
    Phase {
        phase: protocol::Phase,
        detail: String,
    },
    /// Authentication or protocol violation on the target side.
    #[error("{0}")]
    Unauthorized(String),
    #[error("no migration '{0}'")]
    UnknownMigration(String),
    /// The stream does not match its manifest (sizes or checksums).
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("{0}")]
    Io(String),
}
