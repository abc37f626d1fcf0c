//! The emulated edge testbed: one network namespace per MEC host and UE plus a gateway
//! namespace, veth links shaped with tbf and delayed by netem or, where the kernel has no
//! netem, by a userspace delay element; routes that steer each app instance's address to the
//! host that runs it and each UE's traffic through its serving cell.
//!
//! Read top-down: `plan` (names, addresses, paths from a topology), `net` (building it),
//! `routing` (UE re-wiring, app route switch), `up` / `down`, `agent` (delay elements and
//! the handover hook), `check` (measuring links).

pub mod agent;
pub mod check;
pub mod command;
pub mod delay;
pub mod down;
pub mod error;
pub mod http;
pub mod net;
pub mod plan;
pub mod routing;
pub mod state;
pub mod up;

pub use error::TestbedError;
pub use ferry_topology as topology;
pub use plan::Plan;
pub use routing::{attach_ue, route_app};
pub use state::State;
