//! The wire of ferry's host API (`/ferry/v1`) and of the migration channel between two hosts:
//! every type that crosses a process boundary between `ferry host`, `ferry control`, the CLI,
//! the bench and the demo. Serde only, no I/O: the client is `ferry-host-client`, the server
//! `ferry-host`.
//!
//! - [`container`]: container requests and records, checkpoint and restore.
//! - [`migration`]: a migration as an operation resource (request, state, report), the two
//!   state machines and the rule of the commit ([`migration`]'s docs).
//! - [`channel`]: the messages of the host-to-host channel, lease and deadlines.
//! - [`problem`]: machine-readable error kinds carried in ProblemDetails' `type`.

pub mod channel;
pub mod container;
pub mod migration;
pub mod problem;

pub use channel::PROTOCOL_VERSION;
pub use container::{Container, ContainerRequest, Owner, Status};
pub use migration::{
    IncomingState, MigrateRequest, MigrationId, MigrationReport, MigrationView, Outcome,
    OutgoingState, Phase, Technique,
};
pub use problem::ProblemType;
