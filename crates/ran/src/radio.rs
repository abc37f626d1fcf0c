//! The radio model: what a UE at a position measures of each cell (RSRP, RSRQ, SINR, timing
//! advance), and the A3 event that decides a walking UE's handovers. Pure functions and
//! plain state, unit-tested here; the mobility driver (`trace.rs`) runs them on its clock.
//! The formulas, defaults and options are in docs/radio.md.
//!
//! - Path loss: log-distance with the free-space reference at d0 = 1 m,
//!   `PL(d) = 20 log10(f_MHz) - 27.55 + 10 n log10(max(d, 1 m) / 1 m)` (dB).
//! - RSRP (per resource element): `P_tx - 10 log10(12 N_RB) - PL(d) + S(x, y)`, with
//!   `N_RB = floor(5 B_MHz)` and `S` the cell's log-normal shadowing at the UE's position.
//! - Thermal noise per resource element: `-174 + 10 log10(15 kHz) + NF` (dBm).
//! - SINR of cell i: `RSRP_i / (sum of the other heard cells' RSRP + noise)` (full load).
//! - RSRQ of cell i: `N_RB RSRP_i / RSSI`, `RSSI = 12 N_RB (sum of all heard RSRP + noise)`.
//!
//! Three layers, each one carrier for interference: the LTE cells (they serve UEs and hand
//! over), the NR cells (SS-RSRP/RSRQ/SINR with the same formulas, 30 kHz subcarriers and
//! `nr_bandwidth_mhz`; an LTE-anchored UE's NR leg, `NrLeg`) and the LTE cells' secondary
//! carriers (carrier aggregation, `Ca`).

use crate::measurement::CellMeasurement;
use crate::mobility::EARTH_RADIUS_M;
use crate::world::CellInfo;
use ferry_topology::Radio;
use std::time::Duration;

/// Thermal noise density at 290 K (dBm/Hz).
const THERMAL_NOISE_DBM_HZ: f64 = -174.0;
/// LTE subcarrier spacing (Hz): one resource element.
const SUBCARRIER_HZ: f64 = 15_000.0;
/// NR subcarrier spacing of the model's NR cells (Hz): FR1 mid band, 30 kHz.
const NR_SUBCARRIER_HZ: f64 = 30_000.0;
/// Shadowing field numbers of the NR cells start here (the LTE cells' are their indices).
const NR_SHADOW_BASE: usize = 1 << 20;
/// Weakest RSRP a UE reports (TS 36.133's reporting range starts at -140 dBm): cells whose
/// mean RSRP would be below it (minus three shadowing deviations) are not even computed.
const RSRP_FLOOR_DBM: f64 = -140.0;
/// Distance of one timing advance step: 16 Ts of round trip (Ts = 1 / 30.72 MHz), halved.
const TA_STEP_M: f64 = 16.0 / 30.72e6 * 299_792_458.0 / 2.0;
/// Largest timing advance of a random access response (TS 36.213).
const TA_MAX: u32 = 1282;

/// The radio parameters of one topology, the cells prepared for cheap measurements.
#[derive(Debug, Clone)]
pub struct Model {
    pub params: Radio,
    /// The LTE cells (indices of `World::cells`).
    lte: Layer,
    /// The NR cells (indices of `World::nr_cells`).
    nr: Layer,
    /// The secondary carriers (indices of `World::scells`).
    scells: Layer,
    /// The LTE cell each secondary carrier belongs to.
    scell_primary: Vec<usize>,
    /// Origin of the local plane (radians) the positions are projected on.
    lat0: f64,
    lon0: f64,
    cos_lat0: f64,
}

/// Cells that interfere with each other: one carrier, as far as the model is concerned.
#[derive(Debug, Clone, Default)]
struct Layer {
    cells: Vec<CellRadio>,
    /// Thermal noise per resource element (mW).
    noise_mw: f64,
}

/// One transmitter of a layer as the topology gives it.
#[derive(Debug, Clone, Copy)]
pub struct Transmitter {
    pub latitude: f64,
    pub longitude: f64,
    pub tx_power_dbm: f64,
    pub frequency_mhz: f64,
}

#[derive(Debug, Clone, Copy)]
struct CellRadio {
    /// Which shadowing field the cell has (co-located carriers share their cell's).
    shadow: usize,
    /// Position on the local plane (m east, m north of the origin).
    x: f64,
    y: f64,
    /// RSRP at the reference distance of 1 m (dBm): transmit power per resource element
    /// minus the free-space loss at 1 m.
    rsrp_1m_dbm: f64,
    /// Beyond this distance the cell is below the reporting floor: not measured.
    range_sq_m: f64,
}

impl Model {
    /// The model of the LTE `cells` (with the topology's per-cell power and frequency) and
    /// `params`, without NR cells or secondary carriers.
    pub fn new(cells: &[CellInfo], radio_of: &[(f64, f64)], params: Radio) -> Model {
        let lte: Vec<Transmitter> = cells
            .iter()
            .zip(radio_of)
            .map(|(c, &(tx_power_dbm, frequency_mhz))| Transmitter {
                latitude: c.latitude,
                longitude: c.longitude,
                tx_power_dbm,
                frequency_mhz,
            })
            .collect();
        Model::with_layers(&lte, &[], &[], params)
    }

    /// The model of the LTE cells, the NR cells and the secondary carriers (each with the
    /// index of its LTE cell, where it stands).
    pub fn with_layers(
        lte: &[Transmitter],
        nr: &[Transmitter],
        scells: &[(usize, Transmitter)],
        params: Radio,
    ) -> Model {
        // The origin stays where the LTE cells are (the NR cells do not move it).
        let n = lte.len().max(1) as f64;
        let lat0 = (lte.iter().map(|c| c.latitude).sum::<f64>() / n).to_radians();
        let lon0 = (lte.iter().map(|c| c.longitude).sum::<f64>() / n).to_radians();
        let mut model = Model {
            lte: Layer::default(),
            nr: Layer::default(),
            scells: Layer::default(),
            scell_primary: scells.iter().map(|&(p, _)| p).collect(),
            lat0,
            lon0,
            cos_lat0: lat0.cos(),
            params,
        };
        let lte_rb = (5.0 * model.params.bandwidth_mhz).floor().max(1.0);
        // NR: 12 subcarriers of 30 kHz a resource block, about 98 % of the channel used
        // (273 RBs in 100 MHz per TS 38.101-1; this gives 272).
        let nr_rb = (0.98 * model.params.nr_bandwidth_mhz * 1e6 / (12.0 * NR_SUBCARRIER_HZ))
            .floor()
            .max(1.0);
        let lte_cells: Vec<(usize, Transmitter)> = lte.iter().copied().enumerate().collect();
        let nr_cells: Vec<(usize, Transmitter)> = (nr.iter().copied().enumerate())
            .map(|(i, t)| (NR_SHADOW_BASE + i, t))
            .collect();
        model.lte = model.layer(&lte_cells, lte_rb, SUBCARRIER_HZ);
        model.nr = model.layer(&nr_cells, nr_rb, NR_SUBCARRIER_HZ);
        model.scells = model.layer(scells, lte_rb, SUBCARRIER_HZ);
        model
    }

    /// One layer of transmitters (each with its shadowing field) of `n_rb` resource blocks.
    fn layer(&self, cells: &[(usize, Transmitter)], n_rb: f64, subcarrier_hz: f64) -> Layer {
        let noise_dbm =
            THERMAL_NOISE_DBM_HZ + 10.0 * subcarrier_hz.log10() + self.params.noise_figure_db;
        let cells = cells
            .iter()
            .map(|&(shadow, t)| {
                let (x, y) = self.project(t.latitude, t.longitude);
                let rsrp_1m_dbm = t.tx_power_dbm
                    - 10.0 * (12.0 * n_rb).log10()
                    - free_space_1m_db(t.frequency_mhz);
                let margin = rsrp_1m_dbm - (RSRP_FLOOR_DBM - 3.0 * self.params.shadowing_db);
                let range_m = 10f64.powf(margin.max(0.0) / (10.0 * self.params.path_loss_exponent));
                CellRadio {
                    shadow,
                    x,
                    y,
                    rsrp_1m_dbm,
                    range_sq_m: range_m * range_m,
                }
            })
            .collect();
        Layer {
            cells,
            noise_mw: dbm_to_mw(noise_dbm),
        }
    }

    /// Metres east and north of the model's origin (equirectangular: metre-accurate over the
    /// few kilometres of a RAN).
    fn project(&self, latitude: f64, longitude: f64) -> (f64, f64) {
        let x = (longitude.to_radians() - self.lon0) * self.cos_lat0 * EARTH_RADIUS_M;
        let y = (latitude.to_radians() - self.lat0) * EARTH_RADIUS_M;
        (x, y)
    }

    /// Path loss (dB) of a carrier of `frequency_mhz` at `distance_m`, without shadowing:
    /// the two parts the model adds (the first folded into each cell's `rsrp_1m_dbm`).
    pub fn path_loss_db(frequency_mhz: f64, exponent: f64, distance_m: f64) -> f64 {
        free_space_1m_db(frequency_mhz) + loss_beyond_1m_db(exponent, distance_m)
    }

    /// RSRP (dBm) of one cell at a point of the local plane.
    fn rsrp_at(&self, c: &CellRadio, x: f64, y: f64, d_sq: f64) -> f64 {
        let mut rsrp =
            c.rsrp_1m_dbm - loss_beyond_1m_db(self.params.path_loss_exponent, d_sq.sqrt());
        if self.params.shadowing_db > 0.0 {
            let dc = self.params.shadowing_decorrelation_m;
            rsrp +=
                self.params.shadowing_db * shadowing(self.params.seed, c.shadow, x / dc, y / dc);
        }
        rsrp
    }

    /// What a UE at a position served by `serving` measures: the serving cell (always, even
    /// below the floor) and the neighbours it hears, strongest first; and the timing advance
    /// towards the serving cell. Costs one distance check per cell, the logarithms only for
    /// the cells in range.
    pub fn measure(
        &self,
        latitude: f64,
        longitude: f64,
        serving: usize,
    ) -> (CellMeasurement, Vec<CellMeasurement>, u32) {
        self.measure_with(latitude, longitude, serving, true)
    }

    /// [`Model::measure`] with RSRP only (RSRQ and SINR are NaN): what the A3 event needs on
    /// every tick, without the interference sums.
    pub fn measure_rsrp(
        &self,
        latitude: f64,
        longitude: f64,
        serving: usize,
    ) -> (CellMeasurement, Vec<CellMeasurement>) {
        let (s, n, _) = self.measure_with(latitude, longitude, serving, false);
        (s, n)
    }

    fn measure_with(
        &self,
        latitude: f64,
        longitude: f64,
        serving: usize,
        quality: bool,
    ) -> (CellMeasurement, Vec<CellMeasurement>, u32) {
        let (x, y) = self.project(latitude, longitude);
        let heard = self.measure_layer(&self.lte, x, y, Some(serving), quality);
        let mut serving_m = None;
        let mut neighbours = Vec::with_capacity(heard.len().saturating_sub(1));
        for h in heard {
            if h.cell == serving {
                serving_m = Some(h);
            } else {
                neighbours.push(h);
            }
        }
        let serving_d_sq = self
            .lte
            .cells
            .get(serving)
            .map_or(0.0, |c| (c.x - x).powi(2) + (c.y - y).powi(2));
        let ta = ((serving_d_sq.sqrt() / TA_STEP_M).round() as u32).min(TA_MAX);
        // `serving` is always measured when it is a valid index; an invalid one measures as
        // nothing heard.
        let serving_m = serving_m.unwrap_or(CellMeasurement {
            cell: serving,
            rsrp_dbm: f64::NEG_INFINITY,
            rsrq_db: f64::NEG_INFINITY,
            sinr_db: f64::NEG_INFINITY,
        });
        (serving_m, neighbours, ta)
    }

    /// The NR cells a UE at a position hears (SS-RSRP, SS-RSRQ, SS-SINR), strongest first.
    pub fn measure_nr(&self, latitude: f64, longitude: f64) -> Vec<CellMeasurement> {
        let (x, y) = self.project(latitude, longitude);
        self.measure_layer(&self.nr, x, y, None, true)
    }

    /// The secondary carriers of cell `serving` a UE at a position hears, strongest first.
    /// The other cells' secondary carriers interfere but are not returned.
    pub fn measure_scells(
        &self,
        latitude: f64,
        longitude: f64,
        serving: usize,
    ) -> Vec<CellMeasurement> {
        if !self.scell_primary.contains(&serving) {
            return Vec::new();
        }
        let (x, y) = self.project(latitude, longitude);
        let mut heard = self.measure_layer(&self.scells, x, y, None, true);
        heard.retain(|m| self.scell_primary.get(m.cell) == Some(&serving));
        heard
    }

    /// Every cell of `layer` in range of (x, y) (and `always`, even out of range), strongest
    /// first; with `quality`, RSRQ and SINR against the others heard on the layer.
    fn measure_layer(
        &self,
        layer: &Layer,
        x: f64,
        y: f64,
        always: Option<usize>,
        quality: bool,
    ) -> Vec<CellMeasurement> {
        let mut heard: Vec<(usize, f64)> = Vec::new();
        for (i, c) in layer.cells.iter().enumerate() {
            let d_sq = (c.x - x).powi(2) + (c.y - y).powi(2);
            if d_sq <= c.range_sq_m || Some(i) == always {
                heard.push((i, self.rsrp_at(c, x, y, d_sq)));
            }
        }
        let rssi_per_re_mw = if quality {
            heard.iter().map(|&(_, p)| dbm_to_mw(p)).sum::<f64>() + layer.noise_mw
        } else {
            f64::NAN
        };
        let mut out: Vec<CellMeasurement> = heard
            .into_iter()
            .map(|(cell, rsrp_dbm)| {
                if !quality {
                    return CellMeasurement {
                        cell,
                        rsrp_dbm,
                        rsrq_db: f64::NAN,
                        sinr_db: f64::NAN,
                    };
                }
                let own = dbm_to_mw(rsrp_dbm);
                CellMeasurement {
                    cell,
                    rsrp_dbm,
                    // N_RB RSRP / (12 N_RB per-RE RSSI): the N_RB cancel.
                    rsrq_db: rsrp_dbm - 10.0 * (12.0 * rssi_per_re_mw).log10(),
                    sinr_db: rsrp_dbm - 10.0 * (rssi_per_re_mw - own).max(layer.noise_mw).log10(),
                }
            })
            .collect();
        out.sort_by(|a, b| b.rsrp_dbm.total_cmp(&a.rsrp_dbm));
        out
    }

    /// The measurement period of the reports.
    pub fn meas_period(&self) -> Duration {
        Duration::from_millis(self.params.meas_period_ms)
    }

    pub fn preparation(&self) -> Duration {
        Duration::from_millis(self.params.preparation_ms)
    }
}

/// The NR leg of an LTE-anchored UE (EN-DC): its NR serving cell (the PSCell, an index of
/// `World::nr_cells`) and the A3 event among the NR cells that changes it. The strongest NR
/// cell heard becomes the PSCell when the UE has none (or stops hearing its own); after that
/// only the A3 event (same offset, hysteresis and time to trigger as the LTE one) changes it.
#[derive(Debug, Clone, Default)]
pub struct NrLeg {
    pub serving: Option<usize>,
    a3: A3,
}

impl NrLeg {
    /// One NR measurement (strongest first) at `now`: whether the A3 event fired (the
    /// PSCell is now the better neighbour).
    pub fn update(&mut self, params: &Radio, nr: &[CellMeasurement], now: Duration) -> bool {
        let Some(s) = self.serving.and_then(|s| nr.iter().find(|m| m.cell == s)) else {
            self.a3.reset();
            self.serving = nr.first().map(|m| m.cell);
            return false;
        };
        match self.a3.update(params, s, nr, now) {
            Some(target) => {
                self.serving = Some(target);
                true
            }
            None => false,
        }
    }
}

/// Carrier aggregation of one UE: its serving cell's secondary carriers configured as SCells
/// (indices of `World::scells`). A carrier is added when its RSRP rises above
/// `ca_add_rsrp_dbm` and released when it falls below `ca_add_rsrp_dbm - ca_hysteresis_db`
/// (or is no longer heard); a handover releases them all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ca {
    /// The LTE cell the SCells belong to (set at the first update).
    pub cell: Option<usize>,
    pub scells: Vec<usize>,
}

/// What one update of [`Ca`] changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaStep {
    /// The cell whose SCells were released on a handover, and those SCells.
    pub released: Option<(usize, Vec<usize>)>,
    pub added: Vec<usize>,
    pub removed: Vec<usize>,
}

impl Ca {
    /// One measurement of the serving cell `serving`'s secondary carriers.
    pub fn update(&mut self, params: &Radio, serving: usize, scells: &[CellMeasurement]) -> CaStep {
        let mut step = CaStep::default();
        if self.cell != Some(serving) {
            if let (Some(old), false) = (self.cell, self.scells.is_empty()) {
                step.released = Some((old, std::mem::take(&mut self.scells)));
            }
            self.scells.clear();
            self.cell = Some(serving);
        }
        let rsrp = |s: usize| scells.iter().find(|m| m.cell == s).map(|m| m.rsrp_dbm);
        let release_below = params.ca_add_rsrp_dbm - params.ca_hysteresis_db;
        self.scells.retain(|&s| {
            let keep = rsrp(s).is_some_and(|p| p >= release_below);
            if !keep {
                step.removed.push(s);
            }
            keep
        });
        for m in scells {
            if m.rsrp_dbm > params.ca_add_rsrp_dbm && !self.scells.contains(&m.cell) {
                self.scells.push(m.cell);
                step.added.push(m.cell);
            }
        }
        step
    }
}

/// Free-space path loss at 1 m (dB) of a carrier of `frequency_mhz`:
/// `20 log10(d_m) + 20 log10(f_MHz) - 27.55` with d = 1 m.
fn free_space_1m_db(frequency_mhz: f64) -> f64 {
    20.0 * frequency_mhz.log10() - 27.55
}

/// Log-distance loss beyond the 1 m reference (dB): `10 n log10(max(d, 1 m) / 1 m)`.
fn loss_beyond_1m_db(exponent: f64, distance_m: f64) -> f64 {
    10.0 * exponent * distance_m.max(1.0).log10()
}

fn dbm_to_mw(dbm: f64) -> f64 {
    10f64.powf(dbm / 10.0)
}

/// A standard normal value of cell `cell`'s shadowing field at grid coordinates (u, v) (the
/// position in decorrelation distances): independent normal values at the integer grid points
/// (from a hash of seed, cell and point), bilinearly interpolated and rescaled to unit
/// variance. Same seed, same field; continuous in the position, so a UE standing still
/// measures the same value and one walking a few metres nearly the same.
pub fn shadowing(seed: u64, cell: usize, u: f64, v: f64) -> f64 {
    let (gu, gv) = (u.floor(), v.floor());
    let (fu, fv) = (u - gu, v - gv);
    let (iu, iv) = (gu as i64, gv as i64);
    let w = [
        (1.0 - fu) * (1.0 - fv),
        fu * (1.0 - fv),
        (1.0 - fu) * fv,
        fu * fv,
    ];
    let g = [
        grid_normal(seed, cell, iu, iv),
        grid_normal(seed, cell, iu + 1, iv),
        grid_normal(seed, cell, iu, iv + 1),
        grid_normal(seed, cell, iu + 1, iv + 1),
    ];
    let sum: f64 = w.iter().zip(g).map(|(w, g)| w * g).sum();
    let norm = w.iter().map(|w| w * w).sum::<f64>().sqrt();
    sum / norm
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard normal value for one grid point (Box-Muller over two hashed uniforms).
fn grid_normal(seed: u64, cell: usize, iu: i64, iv: i64) -> f64 {
    let h = mix(mix(mix(mix(seed) ^ cell as u64) ^ iu as u64) ^ iv as u64);
    let h2 = mix(h);
    // 53-bit uniforms; u1 in (0, 1] so the logarithm is finite.
    let u1 = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (h2 >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The A3 event of one UE (TS 36.331 5.5.4.4, without cell-specific offsets or layer-3
/// filtering): a neighbour enters when `Mn - Hys > Ms + Off`; once one has stayed entered
/// for the time to trigger, the event fires with the best such neighbour. A neighbour that
/// fails the condition before its time to trigger starts over.
#[derive(Debug, Clone, Default)]
pub struct A3 {
    /// Neighbours meeting the entering condition, since when.
    entered: Vec<(usize, Duration)>,
}

impl A3 {
    /// One measurement at time `now` (any monotonic clock); the target cell if the event
    /// fires. After it fires the state is clear (a new handover starts from scratch).
    pub fn update(
        &mut self,
        params: &Radio,
        serving: &CellMeasurement,
        neighbours: &[CellMeasurement],
        now: Duration,
    ) -> Option<usize> {
        let ttt = Duration::from_millis(params.time_to_trigger_ms);
        let threshold = serving.rsrp_dbm + params.a3_offset_db + params.hysteresis_db;
        let meets = |n: &CellMeasurement| n.cell != serving.cell && n.rsrp_dbm > threshold;
        self.entered
            .retain(|(cell, _)| neighbours.iter().any(|n| n.cell == *cell && meets(n)));
        for n in neighbours.iter().filter(|n| meets(n)) {
            if !self.entered.iter().any(|(c, _)| *c == n.cell) {
                self.entered.push((n.cell, now));
            }
        }
        // Neighbours are strongest first: the first whose timer ran out is the best.
        let fired = neighbours.iter().find(|n| {
            self.entered
                .iter()
                .any(|(c, since)| *c == n.cell && now.saturating_sub(*since) >= ttt)
        })?;
        self.entered.clear();
        Some(fired.cell)
    }

    /// Forget every running timer (the serving cell changed by other means).
    pub fn reset(&mut self) {
        self.entered.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::cell_at;

    fn model(params: Radio) -> Model {
        // Two cells 744 m apart on one parallel (0.01 degree of longitude at 48 N).
        let cells = [cell_at("a", 2.0, 500.0), cell_at("b", 2.01, 500.0)];
        Model::new(&cells, &[(43.0, 2100.0), (43.0, 2100.0)], params)
    }

    #[test]
    fn path_loss_at_known_distances() {
        // Free space at 2100 MHz: 38.89 dB at 1 m; 20 dB per decade with n = 2.
        let fs1 = Model::path_loss_db(2100.0, 2.0, 1.0);
        assert!((fs1 - 38.89).abs() < 0.01, "{fs1}");
        let fs1k = Model::path_loss_db(2100.0, 2.0, 1000.0);
        assert!((fs1k - 98.89).abs() < 0.01, "{fs1k}");
        // n = 3.5: 35 dB per decade; 100 m -> 38.89 + 70.
        let urban = Model::path_loss_db(2100.0, 3.5, 100.0);
        assert!((urban - 108.89).abs() < 0.01, "{urban}");
        // Below the reference distance the loss stays at the reference's.
        assert_eq!(Model::path_loss_db(2100.0, 3.5, 0.1), fs1);
        // 3.5 GHz loses 4.44 dB more than 2.1 GHz at any distance.
        let d = Model::path_loss_db(3500.0, 3.5, 100.0) - urban;
        assert!((d - 4.437).abs() < 0.01, "{d}");
    }

    #[test]
    fn rsrp_falls_with_distance_and_matches_the_formula() {
        let m = model(Radio::default());
        // On top of a (d clamps to 1 m): 43 dBm - 10 log10(1200) - 38.89 = -26.68 dBm.
        let (s, _, ta) = m.measure(48.0, 2.0, 0);
        assert!((s.rsrp_dbm - (-26.68)).abs() < 0.05, "{}", s.rsrp_dbm);
        assert_eq!(ta, 0);
        let mut last = f64::INFINITY;
        for k in 1..=9 {
            let lon = 2.0 + 0.001 * f64::from(k);
            let (s, n, _) = m.measure(48.0, lon, 0);
            assert!(s.rsrp_dbm < last, "not decreasing at {lon}");
            last = s.rsrp_dbm;
            // b grows as a falls: it is heard and stronger past the middle.
            let b = n.iter().find(|c| c.cell == 1).expect("b heard");
            if k != 5 {
                assert_eq!(b.rsrp_dbm > s.rsrp_dbm, k > 5, "at {lon}");
            }
            // Alone on the carrier the SINR would be the SNR; b's power lowers it.
            assert!(s.sinr_db < s.rsrp_dbm - 10.0 * m.lte.noise_mw.log10());
            // Full load: never above -10log10(12) (the cell alone, no noise).
            assert!(s.rsrq_db <= -10.79, "{}", s.rsrq_db);
        }
        // Exactly between the two (about -116.7 dBm each, noise -125.2 dBm): SINR
        // -10 log10(1 + 10^-0.855) = -0.57 dB.
        let (s, n, ta) = m.measure(48.0, 2.005, 0);
        assert!((s.sinr_db - (-0.57)).abs() < 0.05, "{}", s.sinr_db);
        assert!((s.rsrp_dbm - n[0].rsrp_dbm).abs() < 0.01);
        // 372 m at 78.1 m a step.
        assert_eq!(ta, 5);
    }

    #[test]
    fn rsrp_only_measures_the_same_rsrp() {
        let m = model(Radio {
            shadowing_db: 6.0,
            ..Radio::default()
        });
        let (s, n, _) = m.measure(48.0002, 2.0063, 0);
        let (s2, n2) = m.measure_rsrp(48.0002, 2.0063, 0);
        assert_eq!(s.rsrp_dbm, s2.rsrp_dbm);
        let rsrp =
            |v: &[CellMeasurement]| v.iter().map(|c| (c.cell, c.rsrp_dbm)).collect::<Vec<_>>();
        assert_eq!(rsrp(&n), rsrp(&n2));
        assert!(s2.sinr_db.is_nan() && !s.sinr_db.is_nan());
    }

    #[test]
    fn far_cells_are_not_measured() {
        let m = model(Radio::default());
        // 0.2 degree east: about 15 km from both cells.
        let (s, n, _) = m.measure(48.0, 2.2, 0);
        assert!(n.is_empty(), "{n:?}");
        assert!(
            s.rsrp_dbm < RSRP_FLOOR_DBM,
            "the serving cell is still reported"
        );
    }

    #[test]
    fn shadowing_is_reproducible_with_a_seed_and_smooth() {
        let params = |seed| Radio {
            shadowing_db: 8.0,
            seed,
            ..Radio::default()
        };
        let (a, b, c) = (model(params(7)), model(params(7)), model(params(8)));
        let at = |m: &Model, lon: f64| m.measure(48.0003, lon, 0).0.rsrp_dbm;
        let mut differ = 0;
        for k in 0..50 {
            let lon = 2.0 + 0.0002 * f64::from(k);
            assert_eq!(at(&a, lon), at(&b, lon), "same seed, same value");
            differ += usize::from(at(&a, lon) != at(&c, lon));
            // Half a metre further changes little (no flapping of a UE standing about).
            let step = (at(&a, lon) - at(&a, lon + 0.000_007)).abs();
            assert!(step < 1.0, "jump of {step} dB in 0.5 m");
        }
        assert!(differ > 40, "another seed, other values ({differ} of 50)");
        // The field has about the stated deviation (unit normal before scaling).
        let mut sum = 0.0;
        let mut sum_sq = 0.0;
        let n = 4000;
        for k in 0..n {
            let v = shadowing(3, 0, f64::from(k) * 1.37, f64::from(k % 17) * 2.11);
            sum += v;
            sum_sq += v * v;
        }
        let mean = sum / f64::from(n);
        let sd = (sum_sq / f64::from(n) - mean * mean).sqrt();
        assert!(
            mean.abs() < 0.1 && (sd - 1.0).abs() < 0.1,
            "mean {mean} sd {sd}"
        );
    }

    fn meas(cell: usize, rsrp_dbm: f64) -> CellMeasurement {
        CellMeasurement {
            cell,
            rsrp_dbm,
            rsrq_db: -11.0,
            sinr_db: 0.0,
        }
    }

    /// A3 with a 3 dB offset, 1 dB hysteresis and 320 ms to trigger (today's defaults, pinned
    /// here so that the tests do not move with them).
    fn a3_radio() -> Radio {
        Radio {
            a3_offset_db: 3.0,
            hysteresis_db: 1.0,
            time_to_trigger_ms: 320,
            ..Radio::default()
        }
    }

    #[test]
    fn a3_fires_only_after_the_time_to_trigger() {
        let p = a3_radio();
        let ms = Duration::from_millis;
        let mut a3 = A3::default();
        let serving = meas(0, -100.0);
        // 3.5 dB better: below offset + hysteresis, never fires.
        for t in 0..20 {
            assert_eq!(a3.update(&p, &serving, &[meas(1, -96.5)], ms(t * 50)), None);
        }
        // 5 dB better from 1000 ms: not before 1320 ms, then at the first sample after.
        for t in (1000..1320).step_by(40) {
            assert_eq!(
                a3.update(&p, &serving, &[meas(1, -95.0)], ms(t)),
                None,
                "{t}"
            );
        }
        assert_eq!(
            a3.update(&p, &serving, &[meas(1, -95.0)], ms(1320)),
            Some(1)
        );
        // Fired: the state is clear, the timer starts over.
        assert_eq!(a3.update(&p, &serving, &[meas(1, -95.0)], ms(1400)), None);
        // A dip below the condition inside the time to trigger restarts it.
        let mut a3 = A3::default();
        assert_eq!(a3.update(&p, &serving, &[meas(1, -95.0)], ms(0)), None);
        assert_eq!(a3.update(&p, &serving, &[meas(1, -97.0)], ms(200)), None);
        assert_eq!(a3.update(&p, &serving, &[meas(1, -95.0)], ms(250)), None);
        assert_eq!(
            a3.update(&p, &serving, &[meas(1, -95.0)], ms(400)),
            None,
            "320 ms since 0, but it dipped"
        );
        assert_eq!(a3.update(&p, &serving, &[meas(1, -95.0)], ms(570)), Some(1));
        // Two candidates past their time: the stronger wins.
        let mut a3 = A3::default();
        let both = [meas(2, -90.0), meas(1, -94.0)];
        assert_eq!(a3.update(&p, &serving, &both, ms(0)), None);
        assert_eq!(a3.update(&p, &serving, &both, ms(320)), Some(2));
        // A zero time to trigger fires on the first measurement.
        let p0 = Radio {
            time_to_trigger_ms: 0,
            ..p
        };
        assert_eq!(
            A3::default().update(&p0, &serving, &[meas(1, -95.0)], ms(5)),
            Some(1)
        );
    }

    fn tx(longitude: f64, tx_power_dbm: f64, frequency_mhz: f64) -> Transmitter {
        Transmitter {
            latitude: 48.0,
            longitude,
            tx_power_dbm,
            frequency_mhz,
        }
    }

    /// Two LTE cells (a with two secondary carriers, b with one), two NR cells at a and b.
    fn layered() -> Model {
        Model::with_layers(
            &[tx(2.0, 43.0, 2100.0), tx(2.01, 43.0, 2100.0)],
            &[tx(2.0, 43.0, 3500.0), tx(2.01, 43.0, 3500.0)],
            &[
                (0, tx(2.0, 43.0, 2600.0)),
                (0, tx(2.0, 30.0, 800.0)),
                (1, tx(2.01, 43.0, 2600.0)),
            ],
            Radio::default(),
        )
    }

    #[test]
    fn nr_cells_are_measured_with_their_own_carrier_and_layer() {
        let m = layered();
        // On top of NR cell 0: 43 dBm - 10 log10(12 * 272) - (20 log10(3500) - 27.55).
        let nr = m.measure_nr(48.0, 2.0);
        let expected = 43.0 - 10.0 * (12.0f64 * 272.0).log10() - (20.0 * 3500f64.log10() - 27.55);
        assert_eq!(nr[0].cell, 0);
        assert!(
            (nr[0].rsrp_dbm - expected).abs() < 0.01,
            "{}",
            nr[0].rsrp_dbm
        );
        assert_eq!(nr.len(), 2, "both heard, strongest first");
        assert!(nr[0].rsrp_dbm > nr[1].rsrp_dbm);
        // Between the two: equal SS-RSRP, the SS-SINR of two equal cells plus the NR noise
        // (30 kHz: 3 dB more noise per resource element than LTE).
        let mid = m.measure_nr(48.0, 2.005);
        assert!((mid[0].rsrp_dbm - mid[1].rsrp_dbm).abs() < 0.01);
        let snr = mid[0].rsrp_dbm - 10.0 * m.nr.noise_mw.log10();
        let sinr = -10.0 * (1.0 + 10f64.powf(-snr / 10.0)).log10();
        assert!(
            (mid[0].sinr_db - sinr).abs() < 0.01,
            "{} vs {sinr}",
            mid[0].sinr_db
        );
        assert!((10.0 * (m.nr.noise_mw / m.lte.noise_mw).log10() - 3.01).abs() < 0.01);
        // The NR layer does not interfere with LTE: the LTE measurement is the LTE-only one.
        let lte_only = model(Radio::default());
        assert_eq!(m.measure(48.0, 2.003, 0), lte_only.measure(48.0, 2.003, 0));
    }

    #[test]
    fn only_the_serving_cells_secondary_carriers_are_reported() {
        let m = layered();
        let a = m.measure_scells(48.0, 2.001, 0);
        let mut cells: Vec<usize> = a.iter().map(|c| c.cell).collect();
        cells.sort();
        assert_eq!(cells, vec![0, 1]);
        // The 2.6 GHz carrier at 43 dBm beats the 800 MHz one at 30 dBm near the site.
        assert_eq!(a[0].cell, 0);
        let b = m.measure_scells(48.0, 2.001, 1);
        assert_eq!(b.iter().map(|c| c.cell).collect::<Vec<_>>(), vec![2]);
        // A cell without secondary carriers: nothing.
        let none = Model::new(
            &[cell_at("a", 2.0, 500.0)],
            &[(43.0, 2100.0)],
            Radio::default(),
        );
        assert!(none.measure_scells(48.0, 2.0, 0).is_empty());
    }

    #[test]
    fn carrier_aggregation_adds_above_the_threshold_and_releases_below_the_hysteresis() {
        let p = Radio {
            ca_add_rsrp_dbm: -110.0,
            ca_hysteresis_db: 3.0,
            ..Radio::default()
        };
        let mut ca = Ca::default();
        // At the threshold: not yet (strictly above adds).
        let s = ca.update(&p, 0, &[meas(0, -110.0)]);
        assert_eq!(s, CaStep::default());
        let s = ca.update(&p, 0, &[meas(0, -109.0), meas(1, -120.0)]);
        assert_eq!((s.added, s.removed), (vec![0], vec![]));
        assert_eq!(ca.scells, vec![0]);
        // Inside the hysteresis: kept, nothing notified (no flapping).
        for rsrp in [-111.0, -112.9, -113.0, -109.5, -112.0] {
            assert_eq!(
                ca.update(&p, 0, &[meas(0, rsrp)]),
                CaStep::default(),
                "{rsrp}"
            );
        }
        // Below threshold - hysteresis: released.
        let s = ca.update(&p, 0, &[meas(0, -113.1)]);
        assert_eq!((s.added, s.removed), (vec![], vec![0]));
        // Not heard any more: released too.
        ca.update(&p, 0, &[meas(0, -100.0), meas(1, -100.0)]);
        let s = ca.update(&p, 0, &[meas(1, -100.0)]);
        assert_eq!(s.removed, vec![0]);
        assert_eq!(ca.scells, vec![1]);
        // A handover releases the old cell's SCells before the new cell's are considered.
        let s = ca.update(&p, 1, &[meas(2, -90.0)]);
        assert_eq!(s.released, Some((0, vec![1])));
        assert_eq!(s.added, vec![2]);
        assert_eq!((ca.cell, ca.scells.clone()), (Some(1), vec![2]));
        // A handover with none configured releases nothing.
        let mut empty = Ca::default();
        empty.update(&p, 0, &[]);
        assert_eq!(empty.update(&p, 1, &[]).released, None);
    }

    #[test]
    fn the_nr_leg_takes_the_strongest_then_changes_only_by_a3() {
        let p = a3_radio();
        let ms = Duration::from_millis;
        let mut leg = NrLeg::default();
        assert!(!leg.update(&p, &[], ms(0)));
        assert_eq!(leg.serving, None);
        assert!(!leg.update(&p, &[meas(1, -90.0), meas(0, -95.0)], ms(240)));
        assert_eq!(leg.serving, Some(1), "the strongest heard");
        // 0 better by 2 dB: below offset + hysteresis, stays on 1.
        for t in 2..10 {
            assert!(!leg.update(&p, &[meas(0, -88.0), meas(1, -90.0)], ms(240 * t)));
        }
        assert_eq!(leg.serving, Some(1));
        // 0 better by 5 dB: fires once the time to trigger has passed.
        assert!(!leg.update(&p, &[meas(0, -85.0), meas(1, -90.0)], ms(3000)));
        assert!(!leg.update(&p, &[meas(0, -85.0), meas(1, -90.0)], ms(3240)));
        assert!(leg.update(&p, &[meas(0, -85.0), meas(1, -90.0)], ms(3480)));
        assert_eq!(leg.serving, Some(0));
        // The PSCell is lost: the strongest left is taken, without an event.
        assert!(!leg.update(&p, &[meas(1, -100.0)], ms(4000)));
        assert_eq!(leg.serving, Some(1));
    }
}
