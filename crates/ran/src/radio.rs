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

use crate::measurement::CellMeasurement;
use crate::mobility::EARTH_RADIUS_M;
use crate::world::CellInfo;
use ferry_topology::Radio;
use std::time::Duration;

/// Thermal noise density at 290 K (dBm/Hz).
const THERMAL_NOISE_DBM_HZ: f64 = -174.0;
/// LTE subcarrier spacing (Hz): one resource element.
const SUBCARRIER_HZ: f64 = 15_000.0;
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
    cells: Vec<CellRadio>,
    /// Origin of the local plane (radians) the positions are projected on.
    lat0: f64,
    lon0: f64,
    cos_lat0: f64,
    /// Thermal noise per resource element (mW).
    noise_mw: f64,
}

#[derive(Debug, Clone, Copy)]
struct CellRadio {
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
    /// The model of `cells` (with the topology's per-cell power and frequency) and `params`.
    pub fn new(cells: &[CellInfo], radio_of: &[(f64, f64)], params: Radio) -> Model {
        let n = cells.len().max(1) as f64;
        let lat0 = (cells.iter().map(|c| c.latitude).sum::<f64>() / n).to_radians();
        let lon0 = (cells.iter().map(|c| c.longitude).sum::<f64>() / n).to_radians();
        let cos_lat0 = lat0.cos();
        let n_rb = (5.0 * params.bandwidth_mhz).floor().max(1.0);
        let noise_dbm =
            THERMAL_NOISE_DBM_HZ + 10.0 * SUBCARRIER_HZ.log10() + params.noise_figure_db;
        let mut model = Model {
            cells: Vec::with_capacity(cells.len()),
            lat0,
            lon0,
            cos_lat0,
            noise_mw: dbm_to_mw(noise_dbm),
            params,
        };
        for (c, &(tx_power_dbm, frequency_mhz)) in cells.iter().zip(radio_of) {
            let (x, y) = model.project(c.latitude, c.longitude);
            let rsrp_1m_dbm =
                tx_power_dbm - 10.0 * (12.0 * n_rb).log10() - free_space_1m_db(frequency_mhz);
            let margin = rsrp_1m_dbm - (RSRP_FLOOR_DBM - 3.0 * model.params.shadowing_db);
            let range_m = 10f64.powf(margin.max(0.0) / (10.0 * model.params.path_loss_exponent));
            model.cells.push(CellRadio {
                x,
                y,
                rsrp_1m_dbm,
                range_sq_m: range_m * range_m,
            });
        }
        model
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
    fn rsrp_at(&self, cell: usize, c: &CellRadio, x: f64, y: f64, d_sq: f64) -> f64 {
        let mut rsrp =
            c.rsrp_1m_dbm - loss_beyond_1m_db(self.params.path_loss_exponent, d_sq.sqrt());
        if self.params.shadowing_db > 0.0 {
            let dc = self.params.shadowing_decorrelation_m;
            rsrp += self.params.shadowing_db * shadowing(self.params.seed, cell, x / dc, y / dc);
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
        let mut heard: Vec<(usize, f64)> = Vec::new();
        let mut serving_d_sq = 0.0;
        for (i, c) in self.cells.iter().enumerate() {
            let d_sq = (c.x - x).powi(2) + (c.y - y).powi(2);
            if i == serving {
                serving_d_sq = d_sq;
            }
            if d_sq <= c.range_sq_m || i == serving {
                heard.push((i, self.rsrp_at(i, c, x, y, d_sq)));
            }
        }
        let rssi_per_re_mw = if quality {
            heard.iter().map(|&(_, p)| dbm_to_mw(p)).sum::<f64>() + self.noise_mw
        } else {
            f64::NAN
        };
        let quality = |(cell, rsrp_dbm): (usize, f64)| {
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
                sinr_db: rsrp_dbm - 10.0 * (rssi_per_re_mw - own).max(self.noise_mw).log10(),
            }
        };
        let mut serving_m = None;
        let mut neighbours = Vec::with_capacity(heard.len().saturating_sub(1));
        for h in heard {
            if h.0 == serving {
                serving_m = Some(quality(h));
            } else {
                neighbours.push(quality(h));
            }
        }
        neighbours.sort_by(|a, b| b.rsrp_dbm.total_cmp(&a.rsrp_dbm));
        let ta = ((serving_d_sq.sqrt() / TA_STEP_M).round() as u32).min(TA_MAX);
        // `serving` is always pushed when it is a valid index; an invalid one measures as
        // nothing heard.
        let serving_m = serving_m.unwrap_or(CellMeasurement {
            cell: serving,
            rsrp_dbm: f64::NEG_INFINITY,
            rsrq_db: f64::NEG_INFINITY,
            sinr_db: f64::NEG_INFINITY,
        });
        (serving_m, neighbours, ta)
    }

    /// The measurement period of the reports.
    pub fn meas_period(&self) -> Duration {
        Duration::from_millis(self.params.meas_period_ms)
    }

    pub fn preparation(&self) -> Duration {
        Duration::from_millis(self.params.preparation_ms)
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
            assert!(s.sinr_db < s.rsrp_dbm - 10.0 * m.noise_mw.log10());
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

    #[test]
    fn a3_fires_only_after_the_time_to_trigger() {
        let p = Radio {
            a3_offset_db: 3.0,
            hysteresis_db: 1.0,
            time_to_trigger_ms: 320,
            ..Radio::default()
        };
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
}
