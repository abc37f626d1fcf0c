//! The mobility driver: replays the UEs' traces (handover to a cell at a time) and moves the
//! UEs that follow waypoints. Without a radio model a walking UE is handed over when another
//! cell becomes the nearest covering one; with one (`radio.rs`) the A3 event decides, the
//! handover is notified IN_PREPARATION, and COMPLETED after the preparation time; every UE
//! then also reports its measurements at the measurement period (with its NR leg and its
//! carrier aggregation, which change only at these reports). Time 0 is when
//! `Ran::start_trace` is called.

use crate::measurement::{CaChange, NrMeasurement, ReportCause, UeMeasurement};
use crate::mobility::{position_at, Coverage};
use crate::radio::{Ca, Model, NrLeg, A3};
use crate::world::{CellChange, World};
use crate::{lock, Ran, RanError};
use ferry_topology::Waypoint;
use mec_api::rni::HoStatus;
use std::net::Ipv4Addr;
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
    let ues = ran.world().ues.len();
    let mut radio = ran.inner.radio.clone().map(|model| RadioState {
        a3: vec![A3::default(); schedule.walkers.len()],
        preparing: vec![None; schedule.walkers.len()],
        nr: vec![NrLeg::default(); ues],
        ca: vec![Ca::default(); ues],
        next_report_s: 0.0,
        model,
    });
    let mut finished = false;
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
        let out = walk(
            &ran,
            &schedule.walkers,
            &mut arrived,
            &coverage,
            radio.as_mut(),
            t,
        );
        for c in &out.cancelled {
            ran.publish_step(c, HoStatus::Cancelled);
        }
        for c in &out.completed {
            ran.publish(c);
        }
        for r in &out.a3_reports {
            crate::rni::on_measurement(&ran, r);
        }
        for c in &out.prepared {
            ran.publish_step(c, HoStatus::InPreparation);
        }
        if out.moved {
            // Moves within a cell matter only to the geometric subscriptions: once per tick.
            crate::location_geo::on_move(&ran);
        }
        if let Some(r) = radio.as_mut().filter(|r| t >= r.next_report_s) {
            let period = r.model.meas_period().as_secs_f64();
            // Behind by more than a period (a slow tick): the next one a period from now.
            let next = r.next_report_s + period;
            r.next_report_s = if next <= t { t + period } else { next };
            for report in periodic_reports(&ran, r, Duration::from_secs_f64(t)) {
                crate::rni::on_measurement(&ran, &report);
            }
        }
        ran.inner.mobility.record(began.elapsed(), TICK);
        if next >= schedule.steps.len() && t > end && !finished {
            tracing::info!("mobility trace finished");
            finished = true;
        }
        // With the radio model the UEs keep reporting (and measuring, so a handover may still
        // come); without it there is nothing left to do.
        if finished && radio.is_none() {
            return;
        }
    }
}

/// The radio model's per-walker state.
struct RadioState {
    model: Model,
    a3: Vec<A3>,
    preparing: Vec<Option<Preparing>>,
    /// Every UE's NR leg and carrier aggregation (by `World::ues` index).
    nr: Vec<NrLeg>,
    ca: Vec<Ca>,
    /// Trace time of the next periodic measurement reports.
    next_report_s: f64,
}

/// A handover the A3 event started: completes at `done_s` if the UE is still in the source
/// cell then.
#[derive(Debug, Clone)]
struct Preparing {
    change: CellChange,
    from: usize,
    to: usize,
    done_s: f64,
}

/// What one tick of the walkers produced, to notify once the world is unlocked.
#[derive(Default)]
struct WalkOut {
    moved: bool,
    completed: Vec<CellChange>,
    prepared: Vec<CellChange>,
    cancelled: Vec<CellChange>,
    a3_reports: Vec<UeMeasurement>,
}

/// Every UE's measurement report (the world locked once to read the positions, the
/// measurements made after), with its NR leg and carrier aggregation updated; and the NR A3
/// reports of the UEs whose PSCell changed.
fn periodic_reports(ran: &Ran, r: &mut RadioState, now: Duration) -> Vec<UeMeasurement> {
    let ues: Vec<(String, Ipv4Addr, usize, f64, f64)> = ran
        .world()
        .ues
        .iter()
        .map(|u| (u.name.clone(), u.address, u.cell, u.latitude, u.longitude))
        .collect();
    let at = SystemTime::now();
    let mut out = Vec::with_capacity(ues.len());
    for (i, (ue, address, cell, lat, lon)) in ues.into_iter().enumerate() {
        let mut m = report(
            &r.model,
            ue,
            address,
            (lat, lon, cell),
            ReportCause::Periodic,
            at,
        );
        let nr = r.model.measure_nr(lat, lon);
        let (Some(leg), Some(ca)) = (r.nr.get_mut(i), r.ca.get_mut(i)) else {
            out.push(m);
            continue;
        };
        let fired = leg.update(&r.model.params, &nr, now);
        m.nr = nr_measurement(leg, nr);
        let scells = r.model.measure_scells(lat, lon, cell);
        let step = ca.update(&r.model.params, cell, &scells);
        if let Some((primary, removed)) = step.released {
            m.ca.push(CaChange {
                primary,
                added: Vec::new(),
                removed,
                configured: Vec::new(),
            });
        }
        if !(step.added.is_empty() && step.removed.is_empty()) {
            m.ca.push(CaChange {
                primary: cell,
                added: step.added,
                removed: step.removed,
                configured: (scells.into_iter())
                    .filter(|s| ca.scells.contains(&s.cell))
                    .collect(),
            });
        }
        if fired {
            out.push(UeMeasurement {
                cause: ReportCause::NrEventA3,
                ca: Vec::new(),
                ..m.clone()
            });
        }
        out.push(m);
    }
    out
}

/// The NR part of a report: the PSCell and the other NR cells heard (none heard: none).
fn nr_measurement(
    leg: &NrLeg,
    mut heard: Vec<crate::measurement::CellMeasurement>,
) -> Option<NrMeasurement> {
    let at = heard.iter().position(|m| Some(m.cell) == leg.serving)?;
    let serving = heard.remove(at);
    Some(NrMeasurement {
        serving,
        neighbours: heard,
    })
}

/// The full measurement report of a UE at `(latitude, longitude)` served by `cell`.
fn report(
    model: &Model,
    ue: String,
    address: Ipv4Addr,
    (latitude, longitude, cell): (f64, f64, usize),
    cause: ReportCause,
    at: SystemTime,
) -> UeMeasurement {
    let (serving, neighbours, timing_advance) = model.measure(latitude, longitude, cell);
    UeMeasurement {
        ue,
        address,
        at,
        cause,
        serving,
        neighbours,
        timing_advance,
        nr: None,
        ca: Vec::new(),
    }
}

/// Moves every walker to where it is at `t` (one lock of the world for all of them) and
/// hands over those another cell now serves (nearest covering cell), or runs the radio
/// model's A3 event and handover preparations; returns what to notify.
fn walk(
    ran: &Ran,
    walkers: &[Walker],
    arrived: &mut [bool],
    coverage: &Coverage,
    mut radio: Option<&mut RadioState>,
    t: f64,
) -> WalkOut {
    let mut out = WalkOut::default();
    let now = SystemTime::now();
    let mut w = lock(&ran.inner.world);
    for (i, (walker, done)) in walkers.iter().zip(arrived.iter_mut()).enumerate() {
        // With the radio model a walker that stands still still measures (its A3 timer
        // runs on).
        if *done && radio.is_none() {
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
        let moved = (u.latitude, u.longitude) != (latitude, longitude);
        out.moved |= moved;
        u.latitude = latitude;
        u.longitude = longitude;
        let current = u.cell;
        match radio.as_deref_mut() {
            None if moved => match coverage.serving(latitude, longitude) {
                Some(c) if c != current => {
                    if let Ok(change) = w.hand_over(walker.ue, c, now) {
                        out.completed.push(change);
                    }
                }
                _ => {}
            },
            None => {}
            Some(r) => a3_step(r, &mut w, &mut out, i, walker.ue, t, now),
        }
    }
    out
}

/// One walker under the radio model: completes (or cancels) its handover in preparation when
/// due, otherwise measures and runs its A3 event, starting a preparation when it fires.
fn a3_step(
    r: &mut RadioState,
    w: &mut World,
    out: &mut WalkOut,
    i: usize,
    ue: usize,
    t: f64,
    now: SystemTime,
) {
    if let Some(p) = &r.preparing[i] {
        if t < p.done_s {
            return; // no new measurement event while a handover is being prepared
        }
        let p = r.preparing[i].take().expect("checked above");
        r.a3[i].reset();
        if w.ues[ue].cell == p.from {
            if let Ok(change) = w.hand_over(ue, p.to, now) {
                out.completed.push(change);
            }
        } else {
            out.cancelled.push(p.change);
        }
        return;
    }
    let u = &w.ues[ue];
    let (serving, neighbours) = r.model.measure_rsrp(u.latitude, u.longitude, u.cell);
    let elapsed = Duration::from_secs_f64(t);
    let Some(to) = r.a3[i].update(&r.model.params, &serving, &neighbours, elapsed) else {
        return;
    };
    let change = CellChange {
        ue: u.name.clone(),
        address: u.address,
        from: w.cells[u.cell].clone(),
        to: w.cells[to].clone(),
        at: now,
    };
    // The report of the event carries the full measurement.
    out.a3_reports.push(report(
        &r.model,
        u.name.clone(),
        u.address,
        (u.latitude, u.longitude, u.cell),
        ReportCause::EventA3,
        now,
    ));
    out.prepared.push(change.clone());
    r.preparing[i] = Some(Preparing {
        change,
        from: u.cell,
        to,
        done_s: t + r.model.preparation().as_secs_f64(),
    });
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
