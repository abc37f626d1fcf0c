//! The mobility driver: replays the UEs' traces (handover to a cell at a time) and moves the
//! UEs that follow waypoints, handing them over when another cell becomes the nearest covering
//! one. Time 0 is when `Ran::start_trace` is called.

use crate::mobility::{position_at, Coverage};
use crate::world::{CellChange, World};
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
    let coverage = Coverage::new(&ran.world().cells);
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
    // Walkers past their last waypoint, placed there once: they stand still from then on.
    let mut arrived = vec![false; schedule.walkers.len()];
    loop {
        tick.tick().await;
        let began = Instant::now();
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
        let (moved, changes) = walk(&ran, &schedule.walkers, &mut arrived, &coverage, t);
        for c in &changes {
            ran.publish(c);
        }
        if moved {
            // Moves within a cell matter only to the geometric subscriptions: once per tick.
            crate::location_geo::on_move(&ran);
        }
        ran.inner.mobility.record(began.elapsed(), TICK);
        if next >= schedule.steps.len() && t > end {
            tracing::info!("mobility trace finished");
            return;
        }
    }
}

/// Moves every walker to where it is at `t` (one lock of the world for all of them) and
/// hands over those another cell now serves; returns whether any moved, and the handovers.
fn walk(
    ran: &Ran,
    walkers: &[Walker],
    arrived: &mut [bool],
    coverage: &Coverage,
    t: f64,
) -> (bool, Vec<CellChange>) {
    let mut changes = Vec::new();
    let mut moved = false;
    let now = SystemTime::now();
    let mut w = lock(&ran.inner.world);
    for (walker, done) in walkers.iter().zip(arrived.iter_mut()) {
        if *done {
            continue;
        }
        let Some((latitude, longitude)) = position_at(&walker.waypoints, t) else {
            continue;
        };
        if walker.waypoints.last().is_some_and(|l| t > l.at_s) {
            *done = true;
        }
        let Some(u) = w.ues.get_mut(walker.ue) else {
            continue;
        };
        if (u.latitude, u.longitude) == (latitude, longitude) {
            continue;
        }
        moved = true;
        u.latitude = latitude;
        u.longitude = longitude;
        let current = u.cell;
        match coverage.serving(latitude, longitude) {
            Some(c) if c != current => {
                if let Ok(change) = w.hand_over(walker.ue, c, now) {
                    changes.push(change);
                }
            }
            _ => {}
        }
    }
    (moved, changes)
}

/// How well the mobility driver keeps up with real time (for `/ferry/ran/v1/stats`).
#[derive(Debug, Default)]
pub(crate) struct MobilityStats {
    inner: std::sync::Mutex<MobilityView>,
}

/// One tick's work against the tick's length.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobilityView {
    pub ticks: u64,
    /// Ticks whose work took longer than the tick (the mobility fell behind real time).
    pub late_ticks: u64,
    pub busy_ms_total: f64,
    pub max_tick_ms: f64,
    pub tick_ms: f64,
}

impl MobilityStats {
    fn record(&self, took: Duration, tick: Duration) {
        let mut m = lock(&self.inner);
        let ms = took.as_secs_f64() * 1000.0;
        m.ticks += 1;
        m.late_ticks += u64::from(took > tick);
        m.busy_ms_total += ms;
        m.max_tick_ms = m.max_tick_ms.max(ms);
        m.tick_ms = tick.as_secs_f64() * 1000.0;
    }

    pub(crate) fn view(&self) -> MobilityView {
        *lock(&self.inner)
    }
}
