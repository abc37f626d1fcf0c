//! What control's `/metrics` says (besides its API's requests, `ferry_metrics::HttpMetrics`,
//! and its notification deliveries, `ferry_metrics::DeliveryMetrics`):
//!
//! | metric | labels / what |
//! |---|---|
//! | `ferry_relocations_total` | mode (container_migration, application), outcome (completed, failed, lost, needs_operator) |
//! | `ferry_relocation_duration_seconds` (histogram) | from TRIGGERED to the outcome |
//! | `ferry_relocation_downtime_seconds` (histogram) | seen_by: platform (frozen until the traffic switched), client (as an operator's probe reported it) |
//! | `ferry_handover_to_notification_seconds` (histogram) | from the handover (the RAN's timestamp) to the MEC 021 TRIGGERED notification queued |
//! | `ferry_store_seconds` (histogram) | op (get, put, list, delete, update, next_id): one store transaction, fsync included |
//!
//! Migration phases and bytes are counted by the source host (`ferry host`'s `/metrics`).

use std::time::{Duration, SystemTime};

use ferry_metrics::prometheus::{Histogram, HistogramVec, IntCounterVec};
use ferry_metrics::Registry;
use mec_api::app_pkgm::StateRelocationMode;

use crate::relocation::{Phase, RelocationRecord};

#[derive(Clone)]
pub struct ControlMetrics {
    pub registry: Registry,
    pub http: ferry_metrics::HttpMetrics,
    pub delivery: ferry_metrics::DeliveryMetrics,
    relocations: IntCounterVec,
    relocation_seconds: Histogram,
    downtime_seconds: HistogramVec,
    handover_to_notification: Histogram,
    pub(crate) store_seconds: HistogramVec,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics::new()
    }
}

fn mode_label(m: StateRelocationMode) -> &'static str {
    match m {
        StateRelocationMode::ContainerMigration => "container_migration",
        StateRelocationMode::Application => "application",
    }
}

impl ControlMetrics {
    pub fn new() -> ControlMetrics {
        let r = Registry::new();
        ControlMetrics {
            http: ferry_metrics::HttpMetrics::new(&r),
            delivery: ferry_metrics::DeliveryMetrics::new(&r),
            relocations: r.counter_vec(
                "ferry_relocations_total",
                "Relocations by mode and how they ended (needs_operator: where the app runs is not known until settled)",
                &["mode", "outcome"],
            ),
            relocation_seconds: r.histogram(
                "ferry_relocation_duration_seconds",
                "From the MEC 021 TRIGGERED notification to the relocation's outcome",
                ferry_metrics::phase_buckets(),
            ),
            downtime_seconds: r.histogram_vec(
                "ferry_relocation_downtime_seconds",
                "Downtime of completed relocations, as the platform saw it (frozen until the traffic switched) or a client (reported by the operator's probe)",
                &["seen_by"],
                ferry_metrics::phase_buckets(),
            ),
            handover_to_notification: r.histogram(
                "ferry_handover_to_notification_seconds",
                "From a UE's handover (the RAN's timestamp) to the MEC 021 TRIGGERED notification of its app's relocation",
                ferry_metrics::phase_buckets(),
            ),
            store_seconds: r.histogram_vec(
                "ferry_store_seconds",
                "One store transaction (fsync included), by operation",
                &["op"],
                ferry_metrics::fast_buckets(),
            ),
            registry: r,
        }
    }

    /// A relocation reached an outcome (or NEEDS_OPERATOR): counted once per phase reached.
    pub(crate) fn relocation_ended(&self, r: &RelocationRecord) {
        let outcome = match r.phase {
            Phase::Completed => "completed",
            Phase::Failed | Phase::RolledBack => "failed",
            Phase::Lost => "lost",
            Phase::NeedsOperator => "needs_operator",
            _ => return,
        };
        self.relocations
            .with_label_values(&[mode_label(r.mode), outcome])
            .inc();
        if r.phase == Phase::NeedsOperator {
            return; // its outcome is counted when it settles
        }
        let started = r
            .phase_times_ms
            .iter()
            .find(|(p, _)| *p == Phase::Triggered)
            .map(|(_, t)| *t);
        let ended = r.phase_times_ms.last().map(|(_, t)| *t);
        if let (Some(s), Some(e)) = (started, ended) {
            self.relocation_seconds
                .observe(e.saturating_sub(s) as f64 / 1000.0);
        }
        if let (Phase::Completed, Some(ms)) = (r.phase, r.platform_downtime_ms) {
            self.downtime_seconds
                .with_label_values(&["platform"])
                .observe(ms as f64 / 1000.0);
        }
    }

    pub(crate) fn client_downtime(&self, ms: u64) {
        self.downtime_seconds
            .with_label_values(&["client"])
            .observe(ms as f64 / 1000.0);
    }

    /// TRIGGERED was queued for a move that a handover at `at` (the RAN's clock) asked for.
    pub(crate) fn triggered_after_handover(&self, at: SystemTime) {
        // A RAN clock ahead of ours gives no sample rather than a negative one.
        if let Ok(d) = SystemTime::now().duration_since(at) {
            if d < Duration::from_secs(3600) {
                self.handover_to_notification.observe(d.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: Phase) -> RelocationRecord {
        RelocationRecord {
            id: "reloc-1".into(),
            app_instance_id: "i".into(),
            associate_id: "10.0.0.1".into(),
            source_host: "a".into(),
            target_host: "b".into(),
            mode: StateRelocationMode::ContainerMigration,
            technique: None,
            migration_id: None,
            source_address: None,
            target_address: None,
            phase,
            phase_times_ms: vec![(Phase::Triggered, 1_000), (phase, 3_500)],
            migration_report: None,
            platform_downtime_ms: Some(400),
            client_downtime_ms: None,
            traffic_switched_at_commit: true,
            error: None,
            advice: None,
            notified: true,
        }
    }

    #[test]
    fn outcomes_durations_and_downtime_are_counted() {
        let m = ControlMetrics::new();
        m.relocation_ended(&record(Phase::Completed));
        m.relocation_ended(&record(Phase::NeedsOperator));
        m.relocation_ended(&record(Phase::Failed));
        m.relocation_ended(&record(Phase::TransferringState));
        m.client_downtime(950);
        m.triggered_after_handover(SystemTime::now() - Duration::from_millis(30));
        m.triggered_after_handover(SystemTime::now() + Duration::from_secs(5));
        let s = ferry_metrics::exposition::parse(&m.registry.encode()).unwrap();
        let count = |o| {
            s.value(
                "ferry_relocations_total",
                &[("mode", "container_migration"), ("outcome", o)],
            )
        };
        assert_eq!(count("completed"), Some(1.0));
        assert_eq!(count("needs_operator"), Some(1.0));
        assert_eq!(count("failed"), Some(1.0));
        let d = s
            .histogram("ferry_relocation_duration_seconds", &[])
            .unwrap();
        assert_eq!(
            (d.count, d.sum),
            (2, 5.0),
            "NEEDS_OPERATOR is not an outcome yet"
        );
        let platform = s
            .histogram(
                "ferry_relocation_downtime_seconds",
                &[("seen_by", "platform")],
            )
            .unwrap();
        assert_eq!((platform.count, platform.sum), (1, 0.4));
        let client = s
            .histogram(
                "ferry_relocation_downtime_seconds",
                &[("seen_by", "client")],
            )
            .unwrap();
        assert_eq!(client.count, 1);
        let h = s
            .histogram("ferry_handover_to_notification_seconds", &[])
            .unwrap();
        assert_eq!(h.count, 1, "a RAN clock ahead gives no sample");
    }
}
