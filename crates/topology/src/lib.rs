//! The topology of an edge network: MEC hosts, cells (and the host serving each), links,
//! UEs and their mobility. Read from a TOML file (see `examples/three-hosts.toml`).
//!
//! Shared by the testbed (which builds namespaces and links from it) and the emulated RAN
//! (which serves cells, UEs and handovers from it). Pure data: no I/O beyond reading the file.

use serde::Deserialize;

mod addr;
mod locate;
mod validate;

pub use addr::Ipv4Cidr;
pub use validate::topology_name_problem;

/// A whole topology file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Short name, used as a prefix of every namespace, link and process of this testbed so
    /// that two testbeds never collide.
    pub name: String,
    /// Subnet the app instances' addresses come from; every MEC host's bridge carries the same
    /// gateway address in it (an anycast gateway), so an instance keeps its address on any host.
    #[serde(default = "default_app_subnet")]
    pub app_subnet: String,
    /// Subnet the testbed carves point-to-point /30s from for its links (inside its own
    /// namespaces only).
    #[serde(default = "default_link_subnet")]
    pub link_subnet: String,
    /// A /30 for the management link between the root namespace (first address) and the
    /// testbed's gateway namespace (second address). Two testbeds running at once need
    /// different ones; the RAN API listens on the root side.
    #[serde(default = "default_mgmt_subnet")]
    pub mgmt_subnet: String,
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub cells: Vec<Cell>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub ues: Vec<Ue>,
    /// The radio model (path loss, measurement reports, A3 handovers for walking UEs); absent:
    /// walking UEs go to the nearest covering cell. See docs/radio.md.
    #[serde(default)]
    pub radio: Option<Radio>,
}

/// `[radio]`: how the emulated RAN computes what UEs measure and when they hand over. Every
/// field has a default, so `[radio]` alone turns the model on. See docs/radio.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Radio {
    /// Log-distance path-loss exponent (2: free space, 3-4: urban).
    pub path_loss_exponent: f64,
    /// Standard deviation of the log-normal shadowing (dB); 0: none.
    pub shadowing_db: f64,
    /// Distance over which the shadowing decorrelates (m).
    pub shadowing_decorrelation_m: f64,
    /// Seed of the shadowing: same seed, same values.
    pub seed: u64,
    /// Channel bandwidth (MHz), for the number of resource blocks and the thermal noise.
    pub bandwidth_mhz: f64,
    /// Receiver noise figure of the UE (dB).
    pub noise_figure_db: f64,
    /// Period of each UE's measurement reports (ms).
    pub meas_period_ms: u64,
    /// A3 offset (dB): a neighbour must be this much better than the serving cell...
    pub a3_offset_db: f64,
    /// ... plus this hysteresis (dB) ...
    pub hysteresis_db: f64,
    /// ... continuously for this long (ms).
    pub time_to_trigger_ms: u64,
    /// From IN_PREPARATION to COMPLETED (ms).
    pub preparation_ms: u64,
    /// Channel bandwidth of the NR cells (MHz, 30 kHz subcarriers).
    pub nr_bandwidth_mhz: f64,
    /// Carrier aggregation: a secondary carrier whose RSRP rises above this (dBm) is
    /// configured as an SCell of the UE...
    pub ca_add_rsrp_dbm: f64,
    /// ... and released when it falls below the threshold minus this (dB).
    pub ca_hysteresis_db: f64,
}

/// The measurement periods the radio model takes (ms): from every 10 ms to once a minute. The
/// one bound of `[radio] meas_period_ms`, `ferry ran --meas-period-ms` and `ferry_ran::Options`.
pub const MEAS_PERIOD_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

impl Default for Radio {
    fn default() -> Radio {
        Radio {
            path_loss_exponent: 3.5,
            shadowing_db: 0.0,
            shadowing_decorrelation_m: 50.0,
            seed: 1,
            bandwidth_mhz: 20.0,
            noise_figure_db: 7.0,
            meas_period_ms: 240,
            a3_offset_db: 3.0,
            hysteresis_db: 1.0,
            time_to_trigger_ms: 320,
            preparation_ms: 200,
            nr_bandwidth_mhz: 100.0,
            ca_add_rsrp_dbm: -110.0,
            ca_hysteresis_db: 3.0,
        }
    }
}

fn default_app_subnet() -> String {
    "10.200.0.0/16".to_string()
}

fn default_link_subnet() -> String {
    "10.201.0.0/16".to_string()
}

fn default_mgmt_subnet() -> String {
    "10.199.0.0/30".to_string()
}

/// A MEC host (an edge server): runs one `ferry host` daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// The host's address on the core network (where its `ferry host` API listens).
    pub address: String,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
}

/// E-UTRAN Cell Global Identifier, as MEC 012 spells it (`Ecgi { plmn { mcc, mnc }, cellId }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ecgi {
    pub mcc: String,
    pub mnc: String,
    /// 28-bit E-UTRAN cell identity, as the hex string MEC 012 carries.
    pub cell_id: String,
}

/// NR Cell Global Identifier, as MEC 012 spells it (`NRcgi { plmn { mcc, mnc }, nrcellId }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nrcgi {
    pub mcc: String,
    pub mnc: String,
    /// 36-bit NR cell identity, as the hex string MEC 012 carries.
    pub nrcell_id: String,
}

/// The radio access technology of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Rat {
    /// An E-UTRAN cell: it serves UEs (it has an `ecgi`).
    #[default]
    #[serde(rename = "LTE")]
    Lte,
    /// An NR cell, measured by the radio model as an EN-DC secondary node's cell: it never
    /// serves a UE on its own (it has an `nrcgi`; it needs `[radio]`). See docs/radio.md.
    #[serde(rename = "NR")]
    Nr,
}

/// A secondary carrier of an LTE cell (carrier aggregation): co-located with the cell, its own
/// E-UTRAN cell identity in the cell's PLMN, its own power and frequency.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryCarrier {
    /// 28-bit E-UTRAN cell identity of the SCell (hex, as `ecgi.cell_id`).
    pub cell_id: String,
    #[serde(default = "default_tx_power")]
    pub tx_power_dbm: f64,
    pub frequency_mhz: f64,
}

/// A geographic position (WGS 84, as MEC 013 reports it).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
}

/// A radio cell, served by one MEC host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub name: String,
    /// `LTE` (default) or `NR`.
    #[serde(default)]
    pub rat: Rat,
    /// The identity of an LTE cell (required for LTE, refused for NR).
    #[serde(default)]
    pub ecgi: Option<Ecgi>,
    /// The identity of an NR cell (required for NR, refused for LTE).
    #[serde(default)]
    pub nrcgi: Option<Nrcgi>,
    pub position: Position,
    /// Coverage radius in metres (used when a UE moves by waypoints).
    #[serde(default = "default_radius")]
    pub radius_m: f64,
    /// Name of the MEC host that serves this cell.
    pub host: String,
    /// Transmit power over the whole bandwidth (dBm), for the radio model.
    #[serde(default = "default_tx_power")]
    pub tx_power_dbm: f64,
    /// Carrier frequency (MHz), for the radio model.
    #[serde(default = "default_frequency")]
    pub frequency_mhz: f64,
    /// Carrier aggregation (LTE cells, with `[radio]`): the cell's secondary carriers.
    #[serde(default)]
    pub secondary_carriers: Vec<SecondaryCarrier>,
}

fn default_radius() -> f64 {
    500.0
}

/// A small macro cell: 20 W.
fn default_tx_power() -> f64 {
    43.0
}

/// LTE band 1 (2.1 GHz).
fn default_frequency() -> f64 {
    2100.0
}

/// A link between two nodes (host-host, or cell-host), shaped both ways.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// A host or cell name.
    pub a: String,
    /// A host or cell name.
    pub b: String,
    /// Rate in Mbit/s (0 or absent: unshaped).
    #[serde(default)]
    pub rate_mbit: Option<f64>,
    /// One-way delay in milliseconds.
    #[serde(default)]
    pub delay_ms: Option<f64>,
}

/// A user device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ue {
    pub name: String,
    /// The UE's IPv4 address (MEC 012 `associateId`, MEC 013 `address` as `acr:` URI).
    pub address: String,
    /// Cell the UE starts in.
    pub cell: String,
    /// Handovers at fixed times (seconds from testbed start).
    #[serde(default)]
    pub trace: Vec<TraceStep>,
    /// Or: positions over time; the serving cell is the nearest covering one.
    #[serde(default)]
    pub waypoints: Vec<Waypoint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStep {
    pub at_s: f64,
    pub cell: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waypoint {
    pub at_s: f64,
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A syntax or schema error, with the line and field toml reports.
    #[error("{0}")]
    Parse(String),
    /// A semantic error (unknown reference, duplicate name, bad address), with the line of the
    /// field when it can be found in the text.
    #[error("{}field `{field}`: {reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Invalid {
        line: Option<usize>,
        field: String,
        reason: String,
    },
}

impl TopologyError {
    /// The 1-based line the error points at, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            TopologyError::Read { .. } => None,
            TopologyError::Parse(_) => None,
            TopologyError::Invalid { line, .. } => *line,
        }
    }
}

impl Topology {
    pub fn from_file(path: &std::path::Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Topology::parse(&text).map_err(|e| match e {
            TopologyError::Parse(m) => TopologyError::Parse(format!("{}: {m}", path.display())),
            TopologyError::Invalid {
                line,
                field,
                reason,
            } => TopologyError::Invalid {
                line,
                field,
                reason: format!("{reason} (in {})", path.display()),
            },
            other => other,
        })
    }

    /// Parses and validates a topology. Errors name the line and the field.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let topo: Topology = toml::from_str(text)
            .map_err(|e| TopologyError::Parse(validate::describe_toml_error(text, &e)))?;
        validate::check(&topo, text)?;
        Ok(topo)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn cell(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.name == name)
    }

    pub fn ue(&self, name: &str) -> Option<&Ue> {
        self.ues.iter().find(|u| u.name == name)
    }

    /// The app subnet, parsed (validated by `parse`).
    pub fn app_cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr::parse(&self.app_subnet).unwrap_or(Ipv4Cidr {
            addr: std::net::Ipv4Addr::new(10, 200, 0, 0),
            prefix: 16,
        })
    }

    /// The link subnet, parsed (validated by `parse`).
    pub fn link_cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr::parse(&self.link_subnet).unwrap_or(Ipv4Cidr {
            addr: std::net::Ipv4Addr::new(10, 201, 0, 0),
            prefix: 16,
        })
    }

    /// The management /30, parsed (validated by `parse`).
    pub fn mgmt_cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr::parse(&self.mgmt_subnet).unwrap_or(Ipv4Cidr {
            addr: std::net::Ipv4Addr::new(10, 199, 0, 0),
            prefix: 30,
        })
    }

    /// The link between `a` and `b` (either order), if the file lists one.
    pub fn link(&self, a: &str, b: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
    }
}
