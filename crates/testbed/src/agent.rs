//! The testbed agent's library side: the delay elements of every delayed link (threads of
//! the agent process, which `ferry testbed up` starts and `down` stops) and the handover
//! hook that re-wires a UE when the RAN reports a handover.

use crate::delay::{self, DelaySpec};
use crate::error::TestbedError;
use crate::plan::Plan;
use crate::routing;
use crate::state::{DelayMode, State};

/// Starts one delay element per delayed link (none when the kernel's netem does the
/// delays). Returns how many run.
pub fn start_delay_elements(state: &State) -> Result<usize, TestbedError> {
    if state.delay_mode == DelayMode::Netem {
        return Ok(0);
    }
    let mut n = 0;
    for l in &state.plan.links {
        if let (Some((fa, fb)), Some(ms)) = (&l.forwarder, l.delay_ms) {
            delay::start(&DelaySpec {
                netns: state.plan.gw_netns.clone(),
                a: fa.clone(),
                b: fb.clone(),
                delay: std::time::Duration::from_secs_f64(ms / 1000.0),
            })?;
            n += 1;
        }
    }
    Ok(n)
}

/// The handover hook: re-wires `ue`'s data path to `cell` (by cell name).
pub fn on_handover(plan: &Plan, ue: &str, cell: &str) -> Result<(), TestbedError> {
    routing::attach_ue(plan, ue, cell)
}
