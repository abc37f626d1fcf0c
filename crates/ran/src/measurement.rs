//! What a UE measures of the cells around it: made by the radio model (`radio`) at every
//! measurement period, carried by MEC 012's measurement reports (`rni`: MeasRepUe,
//! NrMeasRepUe, MeasTa). The one type between the two, so neither knows the other's insides.

use std::net::Ipv4Addr;
use std::time::SystemTime;

/// One cell as a UE hears it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMeasurement {
    /// Index into `World::cells`.
    pub cell: usize,
    /// Reference signal received power (dBm).
    pub rsrp_dbm: f64,
    /// Reference signal received quality (dB).
    pub rsrq_db: f64,
    /// Signal to interference and noise ratio (dB).
    pub sinr_db: f64,
}

/// Why a report was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportCause {
    /// The UE's measurement period came round.
    Periodic,
    /// The A3 event entered: a neighbour stayed better than the serving cell by the offset for
    /// the time to trigger (the report that starts a handover).
    EventA3,
    /// The A3 event among the NR cells: an NR neighbour stayed better than the UE's NR
    /// serving cell (PSCell) by the offset for the time to trigger, and became its PSCell.
    NrEventA3,
}

/// What an LTE-anchored UE measures of the NR cells (EN-DC).
#[derive(Debug, Clone, PartialEq)]
pub struct NrMeasurement {
    /// The UE's NR serving cell (PSCell); `cell` is an index into `World::nr_cells`.
    pub serving: CellMeasurement,
    /// The other NR cells heard, strongest first.
    pub neighbours: Vec<CellMeasurement>,
}

/// A change of a UE's carrier aggregation (SCells are indices into `World::scells`).
#[derive(Debug, Clone, PartialEq)]
pub struct CaChange {
    /// Index into `World::cells` of the primary cell the SCells belong to (the old cell when
    /// a handover released them).
    pub primary: usize,
    pub added: Vec<usize>,
    pub removed: Vec<usize>,
    /// The SCells configured after the change, as measured.
    pub configured: Vec<CellMeasurement>,
}

/// One measurement report of one UE.
#[derive(Debug, Clone, PartialEq)]
pub struct UeMeasurement {
    pub ue: String,
    pub address: Ipv4Addr,
    pub at: SystemTime,
    pub cause: ReportCause,
    pub serving: CellMeasurement,
    /// The neighbour cells the UE hears, strongest first.
    pub neighbours: Vec<CellMeasurement>,
    /// Timing advance towards the serving cell, in TS 36.213 units (16 Ts, about 78 m of
    /// distance each).
    pub timing_advance: u32,
    /// The NR leg, when the UE hears an NR cell (periodic and NR A3 reports only).
    pub nr: Option<NrMeasurement>,
    /// The carrier aggregation changes this measurement made (periodic reports only).
    pub ca: Vec<CaChange>,
}
