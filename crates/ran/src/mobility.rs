//! Where a UE moving by waypoints is at a given time, and which cell serves a position.
//! Pure functions, unit-tested here; the trace driver (`trace.rs`) calls them on a timer.

use crate::world::CellInfo;
use ferry_topology::Waypoint;

/// Mean Earth radius (m), as the haversine formula (and the radio model's local plane) uses it.
pub(crate) const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two WGS 84 positions (haversine; metre-accurate at
/// cell scale, which is all the RAN needs).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// Position at `t` seconds: linear between the waypoints around `t`, the first waypoint before
/// it, the last after it. `waypoints` must be sorted by `at_s`; `None` if there are none.
pub fn position_at(waypoints: &[Waypoint], t: f64) -> Option<(f64, f64)> {
    let first = waypoints.first()?;
    if t <= first.at_s {
        return Some((first.latitude, first.longitude));
    }
    for pair in waypoints.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if t <= b.at_s {
            let span = b.at_s - a.at_s;
            // Two waypoints at the same time: jump to the later one.
            let f = if span > 0.0 { (t - a.at_s) / span } else { 1.0 };
            return Some((
                a.latitude + f * (b.latitude - a.latitude),
                a.longitude + f * (b.longitude - a.longitude),
            ));
        }
    }
    waypoints.last().map(|w| (w.latitude, w.longitude))
}

/// The serving cell of a position: the nearest cell whose coverage radius contains it.
/// `None` when no cell covers it (the caller keeps the UE where it was: out of coverage
/// is not a handover).
pub fn serving_cell(cells: &[CellInfo], latitude: f64, longitude: f64) -> Option<usize> {
    Coverage::new(cells).serving(latitude, longitude)
}

/// The cells' geometry prepared for [`Coverage::serving`], which the mobility driver asks for
/// every walking UE on every tick: the haversine's inner term `a` grows with the distance,
/// so cells compare by `a` (no square root or arcsine) and each radius is kept as its `a`.
#[derive(Debug, Clone)]
pub struct Coverage {
    cells: Vec<CellGeo>,
}

#[derive(Debug, Clone, Copy)]
struct CellGeo {
    lat: f64,
    lon: f64,
    cos_lat: f64,
    /// `a` at the coverage radius.
    max_a: f64,
}

impl Coverage {
    pub fn new(cells: &[CellInfo]) -> Coverage {
        Coverage {
            cells: cells
                .iter()
                .map(|c| {
                    let lat = c.latitude.to_radians();
                    // d = 2 R asin(sqrt(a)); a radius beyond half the Earth covers everything.
                    let half_angle =
                        (c.radius_m / (2.0 * EARTH_RADIUS_M)).min(std::f64::consts::FRAC_PI_2);
                    CellGeo {
                        lat,
                        lon: c.longitude.to_radians(),
                        cos_lat: lat.cos(),
                        max_a: half_angle.sin().powi(2),
                    }
                })
                .collect(),
        }
    }

    /// [`serving_cell`] of the cells this was made of.
    pub fn serving(&self, latitude: f64, longitude: f64) -> Option<usize> {
        let (lat, lon) = (latitude.to_radians(), longitude.to_radians());
        let cos_lat = lat.cos();
        let mut best: Option<(usize, f64)> = None;
        for (i, c) in self.cells.iter().enumerate() {
            let a = ((c.lat - lat) / 2.0).sin().powi(2)
                + cos_lat * c.cos_lat * ((c.lon - lon) / 2.0).sin().powi(2);
            if a <= c.max_a && best.is_none_or(|(_, b)| a < b) {
                best = Some((i, a));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::cell_at;

    fn wp(at_s: f64, lon: f64) -> Waypoint {
        Waypoint {
            at_s,
            latitude: 48.0,
            longitude: lon,
        }
    }

    #[test]
    fn distance_of_a_known_arc() {
        // 0.01 degree of longitude at 48 N is about 744 m.
        let d = distance_m(48.0, 2.0, 48.0, 2.01);
        assert!((d - 744.0).abs() < 2.0, "{d}");
        assert_eq!(distance_m(1.0, 1.0, 1.0, 1.0), 0.0);
    }

    #[test]
    fn position_interpolates_and_clamps() {
        let w = [wp(0.0, 2.0), wp(10.0, 2.02)];
        assert_eq!(position_at(&w, -1.0), Some((48.0, 2.0)));
        let (_, lon) = position_at(&w, 5.0).unwrap();
        assert!((lon - 2.01).abs() < 1e-9);
        assert_eq!(position_at(&w, 99.0), Some((48.0, 2.02)));
        assert_eq!(position_at(&[], 1.0), None);
        // Same-time waypoints jump without dividing by zero.
        let jump = [wp(0.0, 2.0), wp(0.0, 2.02)];
        assert_eq!(position_at(&jump, 0.5), Some((48.0, 2.02)));
    }

    #[test]
    fn nearest_covering_cell_serves() {
        let cells = [
            cell_at("a", 2.0, 500.0),
            cell_at("b", 2.01, 500.0),
            cell_at("big", 2.03, 5000.0),
        ];
        // On top of a: a (big covers too, but is farther).
        assert_eq!(serving_cell(&cells, 48.0, 2.0), Some(0));
        // Slightly nearer b than a, both in range (each about 372 m away): b.
        assert_eq!(serving_cell(&cells, 48.0, 2.0051), Some(1));
        // Far east of everything but inside big's 5 km.
        assert_eq!(serving_cell(&cells, 48.0, 2.06), Some(2));
        // Nothing covers.
        assert_eq!(serving_cell(&cells, 10.0, 10.0), None);
    }
}
