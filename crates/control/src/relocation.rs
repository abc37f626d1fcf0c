//! The relocation record kept in the store and served at `/ferry/control/v1/relocations`.
//! The controller that writes it is `controller.rs`.
//!
//! ```text
//!  TRIGGERED -> TRANSFERRING_STATE -> SWITCHING_TRAFFIC -> CLEANING_UP -> COMPLETED
//!                      |         \
//!                      |          +--> NEEDS_OPERATOR --(the hosts settle it, by themselves
//!                      |                     |           or by an operator's settle)--+
//!                      v                     v                                         v
//!                   FAILED (the app serves on the source)            COMPLETED / FAILED / LOST
//! ```
//! NEEDS_OPERATOR: the source host cannot say where the app runs (a commit nobody confirmed, a
//! thaw that failed, a source that stopped answering); no MEC 021 outcome is sent until it
//! settles. LOST: post-copy lost memory after the commit (the app on the target misses
//! pages); notified as FAILED.

use ferry_wire::migration::{MigrationId, MigrationReport, Technique};
use mec_api::app_pkgm::StateRelocationMode;
use serde::{Deserialize, Serialize};

/// Phases of one relocation. `Completed`, `Failed`, `RolledBack` and `Lost` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Triggered,
    TransferringState,
    SwitchingTraffic,
    CleaningUp,
    /// Where the app runs is not known to the platform: someone must look (see `advice`).
    NeedsOperator,
    Completed,
    Failed,
    RolledBack,
    /// Post-copy lost memory after the commit: the app runs on the target, damaged.
    Lost,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Completed | Phase::Failed | Phase::RolledBack | Phase::Lost
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).unwrap_or_default();
        f.write_str(v.as_str().unwrap_or("?"))
    }
}

/// One relocation of one app instance, as the platform saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelocationRecord {
    pub id: String,
    pub app_instance_id: String,
    /// The UE that moved (`UE_IPv4_ADDRESS`).
    pub associate_id: String,
    pub source_host: String,
    pub target_host: String,
    pub mode: StateRelocationMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<Technique>,
    /// CONTAINER_MIGRATION: the migration's id on the source host, chosen here and written
    /// down before the source is asked, so a restarted control plane can always ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<MigrationId>,
    /// The instance's address on the source host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// The address the instance has on the target host: the same for CONTAINER_MIGRATION, the
    /// target instance's own for APPLICATION (both run while the app moves its context). Both
    /// stay reserved while the relocation is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_address: Option<String>,
    pub phase: Phase,
    /// Unix time in milliseconds of each phase entered, in order: `[phase, ms]` pairs.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub phase_times_ms: Vec<(Phase, u64)>,
    /// The migration report of the source host (bytes, downtime as the platform saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_report: Option<MigrationReport>,
    /// Downtime as the platform saw it: the migration's `frozen_ms` plus the time until the
    /// traffic rule steered the app's address to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_downtime_ms: Option<u64>,
    /// Downtime as a client of the app saw it (the longest gap between its answers), when
    /// the operator's probe reported it (`PUT .../relocations/{id}/client_downtime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_downtime_ms: Option<u64>,
    /// Traffic switched at the commit (the source host's callback, or the commit seen while
    /// following the migration), not after the source's cleanup.
    #[serde(default)]
    pub traffic_switched_at_commit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// NEEDS_OPERATOR and LOST: what an operator should do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// The final phase's MEC 021 outcome was handed to delivery. Written false with the final
    /// phase and true once sent, so a restart in between sends it then.
    #[serde(default = "yes")]
    pub notified: bool,
}

fn yes() -> bool {
    true
}
