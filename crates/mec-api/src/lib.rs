//! ETSI MEC data models shared by ferry's daemons: plain serde types, no I/O.
//!
//! One module per ETSI API, named after it. Field names and enum spellings follow the
//! official OpenAPI files in `shared/etsi-mec/` (string enums, as in v2.1.1).

pub mod location;
pub mod problem;
pub mod rni;

pub use problem::ProblemDetails;
