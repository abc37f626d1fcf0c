//! ETSI MEC data models shared by ferry's daemons: plain serde types, no I/O.
//!
//! One module per ETSI API, named after it. Field names and enum spellings follow the
//! official OpenAPI files in `shared/etsi-mec/` (string enums, as in v2.1.1).

pub mod ams;
pub mod app_lcm;
pub mod app_pkgm;
pub mod app_support;
pub mod location;
pub mod problem;
pub mod rni;
pub mod service_mgmt;

pub use problem::ProblemDetails;
