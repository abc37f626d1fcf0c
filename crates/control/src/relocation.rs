//! The relocation record kept in the store, and the `Migrator` call that moves
//! a container between MEC hosts.
//!
//! The record type is persisted in `Table::Relocations` and served read-only at
//! `/ferry/control/v1/relocations`; `Migrator` has its HTTP implementation over the
//! `ferry host` migrate call. The controller that uses them is `controller.rs`.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// Phases of one relocation. `Completed`, `Failed` and `RolledBack` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Triggered,
    TransferringState,
    SwitchingTraffic,
    CleaningUp,
    Completed,
    Failed,
    RolledBack,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed | Phase::RolledBack)
    }
}

/// One relocation of one app instance, as the platform saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelocationRecord {
    pub id: String,
    pub app_instance_id: String,
    /// The UE that moved (`UE_IPv4_ADDRESS`).
    pub associate_id: String,
    pub source_host: String,
    pub target_host: String,
    /// `APPLICATION` or `CONTAINER_MIGRATION`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<String>,
    /// The instance's address on the source host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// The address the instance has on the target host: the same for CONTAINER_MIGRATION, the
    /// target instance's own for APPLICATION (both run while the app moves its context). Both
    /// stay reserved while the relocation is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_address: Option<String>,
    pub phase: Phase,
    /// Unix time in milliseconds of each phase entered, in order.
    #[serde(default)]
    pub phase_times_ms: Vec<(Phase, u64)>,
    /// The migration report of the source host (bytes, downtime as the platform saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_report: Option<serde_json::Value>,
    /// Downtime as the platform saw it: the migration's `frozen_ms` plus the time until the
    /// traffic rule steered the app's address to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_downtime_ms: Option<u64>,
    /// The source host told the commit and traffic switched then (else: when the migration's
    /// report arrived, after the source's cleanup and, for post-copy, every page).
    #[serde(default)]
    pub traffic_switched_at_commit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Moves a container with its state from one MEC host to another.
pub trait Migrator: Send + Sync {
    /// Asks `source_url`'s host to migrate `container` to `target_url` with `technique`;
    /// returns the host's migration report. The host POSTs to `on_commit` the moment the
    /// target serves.
    fn migrate<'a>(
        &'a self,
        source_url: &'a str,
        container: &'a str,
        target_url: &'a str,
        technique: &'a str,
        on_commit: Option<&'a str>,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>>;
}

/// `POST {source}/ferry/v1/containers/{name}/migrate {"target", "technique"}`.
pub struct HttpMigrator {
    pub client: reqwest::Client,
}

impl Migrator for HttpMigrator {
    fn migrate<'a>(
        &'a self,
        source_url: &'a str,
        container: &'a str,
        target_url: &'a str,
        technique: &'a str,
        on_commit: Option<&'a str>,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>> {
        Box::pin(async move {
            let mut request = serde_json::json!({"target": target_url, "technique": technique});
            if let Some(url) = on_commit {
                request["on_commit"] = serde_json::json!(url);
            }
            let resp = self
                .client
                .post(format!(
                    "{source_url}/ferry/v1/containers/{container}/migrate"
                ))
                .json(&request)
                .send()
                .await
                .map_err(|e| format!("source host unreachable: {e}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| format!("migration answer is not JSON: {e}"))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("migration refused ({status}): {body}"))
            }
        })
    }
}
