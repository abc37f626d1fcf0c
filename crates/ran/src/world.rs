//! The RAN's live state: cells (with the zone, i.e. MEC host, serving each), UEs and the cell
//! and position of each UE. Pure data and its one mutation, a handover; no I/O, no locking.

use crate::RanError;
use ferry_topology::Rat;
use mec_api::rni::{Ecgi, Nrcgi, Plmn};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// A cell as the RAN serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellInfo {
    pub name: String,
    pub ecgi: Ecgi,
    /// Name of the MEC host serving the cell: MEC 013's zoneId.
    pub zone: String,
    pub latitude: f64,
    pub longitude: f64,
    pub radius_m: f64,
}

/// An NR cell: measured by the radio model (NrMeasRepUe), never a UE's serving cell (the
/// UEs are LTE-anchored, EN-DC style).
#[derive(Debug, Clone, PartialEq)]
pub struct NrCellInfo {
    pub name: String,
    pub nrcgi: Nrcgi,
    pub latitude: f64,
    pub longitude: f64,
}

/// A secondary carrier (carrier aggregation) of an LTE cell: co-located with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScellInfo {
    /// Index into `World::cells` of the primary cell.
    pub primary: usize,
    pub ecgi: Ecgi,
}

/// A UE and where it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct UeState {
    pub name: String,
    pub address: Ipv4Addr,
    /// Index into `World::cells`.
    pub cell: usize,
    pub latitude: f64,
    pub longitude: f64,
    /// Moves by waypoints (its position is set by the trace driver); otherwise the UE is
    /// placed at the centre of its serving cell.
    pub walks: bool,
    /// When the UE entered its current cell (or the RAN started).
    pub since: SystemTime,
}

/// One completed handover, with both cells in full (the notifications need ECGIs and zones).
#[derive(Debug, Clone, PartialEq)]
pub struct CellChange {
    pub ue: String,
    pub address: Ipv4Addr,
    pub from: CellInfo,
    pub to: CellInfo,
    pub at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct World {
    /// The LTE cells: the ones that serve UEs.
    pub cells: Vec<CellInfo>,
    /// The NR cells (radio model only).
    pub nr_cells: Vec<NrCellInfo>,
    /// Every LTE cell's secondary carriers, in cell order.
    pub scells: Vec<ScellInfo>,
    pub ues: Vec<UeState>,
    /// Indices by name and address: a city's UEs are looked up per request and handover.
    cell_names: HashMap<String, usize>,
    ue_names: HashMap<String, usize>,
    ue_addresses: HashMap<Ipv4Addr, usize>,
}

impl World {
    /// Checks what the RAN relies on (names unique, references resolve, addresses parse) so a
    /// bad topology fails here with a reason instead of later in a handler.
    pub fn from_topology(topo: &ferry_topology::Topology) -> Result<World, RanError> {
        let invalid = |m: String| Err(RanError::InvalidTopology(m));
        let mut cells: Vec<CellInfo> = Vec::new();
        let mut cell_names: HashMap<String, usize> = HashMap::new();
        let mut ecgis: HashMap<Ecgi, usize> = HashMap::new();
        let mut nr_cells: Vec<NrCellInfo> = Vec::new();
        let mut scells: Vec<ScellInfo> = Vec::new();
        for c in &topo.cells {
            if cell_names.contains_key(&c.name) || nr_cells.iter().any(|n| n.name == c.name) {
                return invalid(format!("cell '{}' is defined twice", c.name));
            }
            if c.radius_m.is_nan() || c.radius_m <= 0.0 {
                return invalid(format!("cell '{}': radius_m must be > 0", c.name));
            }
            if c.rat == Rat::Nr {
                let Some(n) = &c.nrcgi else {
                    return invalid(format!("NR cell '{}' has no nrcgi", c.name));
                };
                let nrcgi = Nrcgi {
                    plmn: Plmn {
                        mcc: n.mcc.clone(),
                        mnc: n.mnc.clone(),
                    },
                    nrcell_id: n.nrcell_id.clone(),
                };
                if let Some(o) = nr_cells.iter().find(|o| o.nrcgi == nrcgi) {
                    return invalid(format!(
                        "cells '{}' and '{}' have the same NRCGI",
                        o.name, c.name
                    ));
                }
                nr_cells.push(NrCellInfo {
                    name: c.name.clone(),
                    nrcgi,
                    latitude: c.position.latitude,
                    longitude: c.position.longitude,
                });
                continue;
            }
            let Some(e) = &c.ecgi else {
                return invalid(format!("LTE cell '{}' has no ecgi", c.name));
            };
            let plmn = Plmn {
                mcc: e.mcc.clone(),
                mnc: e.mnc.clone(),
            };
            let ecgi = Ecgi {
                plmn: plmn.clone(),
                cell_id: e.cell_id.clone(),
            };
            if let Some(o) = ecgi_user(&cells, &ecgis, &scells, &ecgi) {
                return invalid(format!("cells '{o}' and '{}' have the same ECGI", c.name));
            }
            let index = cells.len();
            cell_names.insert(c.name.clone(), index);
            ecgis.insert(ecgi.clone(), index);
            cells.push(CellInfo {
                name: c.name.clone(),
                ecgi,
                zone: c.host.clone(),
                latitude: c.position.latitude,
                longitude: c.position.longitude,
                radius_m: c.radius_m,
            });
            for sc in &c.secondary_carriers {
                let ecgi = Ecgi {
                    plmn: plmn.clone(),
                    cell_id: sc.cell_id.clone(),
                };
                if let Some(o) = ecgi_user(&cells, &ecgis, &scells, &ecgi) {
                    return invalid(format!(
                        "cell '{}': a secondary carrier has the ECGI of {o}",
                        c.name
                    ));
                }
                scells.push(ScellInfo {
                    primary: index,
                    ecgi,
                });
            }
        }
        let now = SystemTime::now();
        let mut ues: Vec<UeState> = Vec::new();
        let mut ue_names: HashMap<String, usize> = HashMap::new();
        let mut ue_addresses: HashMap<Ipv4Addr, usize> = HashMap::new();
        for u in &topo.ues {
            if ue_names.contains_key(&u.name) {
                return invalid(format!("UE '{}' is defined twice", u.name));
            }
            let Ok(address) = u.address.parse::<Ipv4Addr>() else {
                return invalid(format!(
                    "UE '{}': address '{}' is not an IPv4 address",
                    u.name, u.address
                ));
            };
            if let Some(&o) = ue_addresses.get(&address) {
                return invalid(format!(
                    "UEs '{}' and '{}' have the same address {address}",
                    ues[o].name, u.name
                ));
            }
            let Some(&cell) = cell_names.get(&u.cell) else {
                return invalid(format!(
                    "UE '{}' starts in unknown cell '{}'",
                    u.name, u.cell
                ));
            };
            for step in &u.trace {
                if !cell_names.contains_key(&step.cell) {
                    return invalid(format!(
                        "UE '{}': trace names unknown cell '{}'",
                        u.name, step.cell
                    ));
                }
                if step.at_s.is_nan() || step.at_s < 0.0 {
                    return invalid(format!(
                        "UE '{}': trace time {} must be >= 0",
                        u.name, step.at_s
                    ));
                }
            }
            if !u.trace.is_empty() && !u.waypoints.is_empty() {
                return invalid(format!(
                    "UE '{}' has both a trace and waypoints: keep one",
                    u.name
                ));
            }
            // A UE moving by waypoints starts at its first waypoint; otherwise at its cell's centre.
            let (latitude, longitude) = match u.waypoints.first() {
                Some(w) => (w.latitude, w.longitude),
                None => (cells[cell].latitude, cells[cell].longitude),
            };
            ue_names.insert(u.name.clone(), ues.len());
            ue_addresses.insert(address, ues.len());
            ues.push(UeState {
                name: u.name.clone(),
                address,
                cell,
                latitude,
                longitude,
                walks: !u.waypoints.is_empty(),
                since: now,
            });
        }
        Ok(World {
            cells,
            nr_cells,
            scells,
            ues,
            cell_names,
            ue_names,
            ue_addresses,
        })
    }

    pub fn cell_index(&self, name: &str) -> Option<usize> {
        self.cell_names.get(name).copied()
    }

    pub fn ue_index(&self, name: &str) -> Option<usize> {
        self.ue_names.get(name).copied()
    }

    /// The UE with this IPv4 address.
    pub fn ue_by_address(&self, address: Ipv4Addr) -> Option<usize> {
        self.ue_addresses.get(&address).copied()
    }

    /// Zone ids (MEC host names) in the order their first cell appears.
    pub fn zones(&self) -> Vec<String> {
        let mut zones: Vec<String> = Vec::new();
        for c in &self.cells {
            if !zones.contains(&c.zone) {
                zones.push(c.zone.clone());
            }
        }
        zones
    }

    /// Number of UEs in a cell.
    pub fn users_in_cell(&self, cell: usize) -> u32 {
        self.ues.iter().filter(|u| u.cell == cell).count() as u32
    }

    /// Moves a UE to another cell. The caller checked both indices.
    pub fn hand_over(
        &mut self,
        ue: usize,
        to: usize,
        at: SystemTime,
    ) -> Result<CellChange, RanError> {
        let from = self.ues[ue].cell;
        if from == to {
            return Err(RanError::SameCell {
                ue: self.ues[ue].name.clone(),
                cell: self.cells[to].name.clone(),
            });
        }
        let u = &mut self.ues[ue];
        u.cell = to;
        u.since = at;
        if !u.walks {
            u.latitude = self.cells[to].latitude;
            u.longitude = self.cells[to].longitude;
        }
        Ok(CellChange {
            ue: u.name.clone(),
            address: u.address,
            from: self.cells[from].clone(),
            to: self.cells[to].clone(),
            at,
        })
    }
}

/// Which cell (or secondary carrier) already has `ecgi`, if any.
fn ecgi_user(
    cells: &[CellInfo],
    ecgis: &HashMap<Ecgi, usize>,
    scells: &[ScellInfo],
    ecgi: &Ecgi,
) -> Option<String> {
    let primary = ecgis.get(ecgi).map(|&o| cells[o].name.clone());
    primary.or_else(|| {
        let s = scells.iter().find(|s| s.ecgi == *ecgi)?;
        Some(format!("{}'s secondary carrier", cells[s.primary].name))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cell of the unit tests: on the 48 N parallel at `longitude`, PLMN 001-01.
    pub(crate) fn cell_at(name: &str, longitude: f64, radius_m: f64) -> CellInfo {
        CellInfo {
            name: name.into(),
            ecgi: Ecgi {
                plmn: Plmn {
                    mcc: "001".into(),
                    mnc: "01".into(),
                },
                cell_id: name.into(),
            },
            zone: "z".into(),
            latitude: 48.0,
            longitude,
            radius_m,
        }
    }

    pub(crate) const TOPO: &str = r#"
name = "t"
[[hosts]]
name = "edge-a"
address = "10.0.0.1"
[[hosts]]
name = "edge-b"
address = "10.0.0.2"
[[cells]]
name = "a1"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000001" }
position = { latitude = 48.0, longitude = 2.0 }
host = "edge-a"
[[cells]]
name = "a2"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000002" }
position = { latitude = 48.0, longitude = 2.01 }
host = "edge-a"
[[cells]]
name = "b1"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000003" }
position = { latitude = 48.0, longitude = 2.02 }
host = "edge-b"
[[ues]]
name = "ue1"
address = "10.100.0.1"
cell = "a1"
"#;

    pub(crate) fn world() -> World {
        World::from_topology(&ferry_topology::Topology::parse(TOPO).unwrap()).unwrap()
    }

    #[test]
    fn handover_moves_the_ue_and_reports_both_cells() {
        let mut w = world();
        let to = w.cell_index("b1").unwrap();
        let c = w.hand_over(0, to, SystemTime::now()).unwrap();
        assert_eq!((c.from.name.as_str(), c.to.name.as_str()), ("a1", "b1"));
        assert_eq!(
            (c.from.zone.as_str(), c.to.zone.as_str()),
            ("edge-a", "edge-b")
        );
        assert_eq!(w.ues[0].cell, to);
        assert_eq!(
            (w.ues[0].latitude, w.ues[0].longitude),
            (48.0, 2.02),
            "at the new cell's centre"
        );
        assert!(matches!(
            w.hand_over(0, to, SystemTime::now()),
            Err(RanError::SameCell { .. })
        ));
        assert_eq!(w.zones(), vec!["edge-a", "edge-b"]);
    }

    #[test]
    fn bad_topologies_are_refused_with_a_reason() {
        // Edit a parsed topology: the topology crate may refuse some of these itself, the RAN
        // must not rely on it.
        let topo = || ferry_topology::Topology::parse(TOPO).unwrap();
        let mut t = topo();
        t.ues[0].address = "not-an-ip".into();
        let e = World::from_topology(&t).unwrap_err().to_string();
        assert!(e.contains("not an IPv4 address"), "{e}");
        let mut t = topo();
        t.ues[0].cell = "zz".into();
        let e = World::from_topology(&t).unwrap_err().to_string();
        assert!(e.contains("unknown cell 'zz'"), "{e}");
        let mut t = topo();
        t.cells[1].ecgi.as_mut().unwrap().cell_id = "0000001".into();
        assert!(World::from_topology(&t)
            .unwrap_err()
            .to_string()
            .contains("same ECGI"));
    }
}
