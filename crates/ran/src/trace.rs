//! The mobility driver: replays the UEs' traces (handover to a cell at a time) and moves the
//! UEs that follow waypoints, handing them over when another cell becomes the nearest covering
//! one. Time 0 is when `Ran::start_trace` is called.

use crate::mobility::{position_at, serving_cell};
use crate::world::World;
use crate::{lock, Ran, RanError};
use ferry_topology::Waypoint;
use std::time::{Duration, Instant, SystemTime};

/// Resolution of the mobility clock: a handover at `at_s` fires within this of it.
const TICK: Duration = Duration::from_millis(50);

/// The mobility of all UEs, read from the topology once.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Trace steps of every UE, sorted by time.
    steps: Vec<Step>,
    walkers: Vec<Walker>,
}

#[derive(Debug, Clone)]
struct Step {
    at_s: f64,
    ue: String,
    cell: String,
}

#[derive(Debug, Clone)]
struct Walker {
    /// Index into `World::ues`.
    ue: usize,
    /// Sorted by time.
    waypoints: Vec<Waypoint>,
}

impl Schedule {
    /// `world` was built from the same topology, so names resolve.
    pub fn from_topology(topo: &ferry_topology::Topology, world: &World) -> Schedule {
        let mut steps = Vec::new();
        let mut walkers = Vec::new();
        for u in &topo.ues {
            for s in &u.trace {
                steps.push(Step {
                    at_s: s.at_s,
                    ue: u.name.clone(),
                    cell: s.cell.clone(),
                });
            }
            if let (false, Some(ue)) = (u.waypoints.is_empty(), world.ue_index(&u.name)) {
                let mut waypoints = u.waypoints.clone();
                waypoints.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
                walkers.push(Walker { ue, waypoints });
            }
        }
        // Stable: two steps at one time keep the file's order.
        steps.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Schedule { steps, walkers }
    }

    /// Time (s) after which nothing moves any more.
    fn end_s(&self) -> f64 {
        let last_step = self.steps.last().map_or(0.0, |s| s.at_s);
        let last_wp = self
            .walkers
            .iter()
            .filter_map(|w| w.waypoints.last())
            .map(|w| w.at_s)
            .fold(0.0, f64::max);
        last_step.max(last_wp)
    }
}

pub(crate) async fn run(ran: Ran) {
    let schedule = ran.inner.schedule.clone();
    let end = schedule.end_s();
    let start = Instant::now();
    let mut next = 0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tracing::info!(
        steps = schedule.steps.len(),
        walkers = schedule.walkers.len(),
        end_s = end,
        "mobility trace started"
    );
    loop {
        tick.tick().await;
        let t = start.elapsed().as_secs_f64();
        while let Some(step) = schedule.steps.get(next).filter(|s| s.at_s <= t) {
            match ran.handover(&step.ue, &step.cell) {
                Ok(_) => {}
                // A trace step to the cell the UE is already in (e.g. after a forced handover).
                Err(RanError::SameCell { .. }) => {
                    tracing::debug!(ue = %step.ue, cell = %step.cell, "trace step: already there")
                }
                Err(e) => tracing::warn!("trace step at {} s: {e}", step.at_s),
            }
            next += 1;
        }
        for w in &schedule.walkers {
            if let Some((lat, lon)) = position_at(&w.waypoints, t) {
                walk(&ran, w.ue, lat, lon);
            }
        }
        if next >= schedule.steps.len() && t > end {
            tracing::info!("mobility trace finished");
            return;
        }
    }
}

/// Moves a UE to a position; hands it over if another cell now serves it.
fn walk(ran: &Ran, ue: usize, latitude: f64, longitude: f64) {
    let change = {
        let mut w = lock(&ran.inner.world);
        let Some(u) = w.ues.get_mut(ue) else { return };
        u.latitude = latitude;
        u.longitude = longitude;
        let current = u.cell;
        match serving_cell(&w.cells, latitude, longitude) {
            Some(c) if c != current => w.hand_over(ue, c, SystemTime::now()).ok(),
            _ => None,
        }
    };
    match change {
        Some(c) => ran.publish(&c),
        // Moved within its cell: only the geometric subscriptions care.
        None => crate::location_geo::on_move(ran),
    }
}
