//! What a host's `/metrics` says (besides its API's requests, `ferry_metrics::HttpMetrics`):
//! the outgoing migrations that ended here, from their reports.
//!
//! | metric | labels |
//! |---|---|
//! | `ferry_migrations_total` | technique, outcome, engine, pages |
//! | `ferry_migration_phase_seconds` (histogram) | technique, phase (prepare, pre_copy, freeze, dump, transfer, restore, commit, lazy_completion, cleanup) |
//! | `ferry_migration_downtime_seconds` (histogram) | technique: freeze to commit, as the hosts saw it |
//! | `ferry_migration_bytes_total` | technique, kind (stream: images and writable layer; pages: memory through the page server) |
//! | `ferry_migration_remote_page_faults_total` | technique: post-copy faults the target served from here |
//!
//! Each is counted on the source host (the one that decides), once per migration, when it
//! ends (completed, rolled back or lost).

use ferry_metrics::prometheus::{HistogramVec, IntCounterVec};
use ferry_metrics::Registry;
use ferry_wire::migration::MigrationReport;

#[derive(Clone)]
pub struct HostMetrics {
    pub registry: Registry,
    pub http: ferry_metrics::HttpMetrics,
    migrations: IntCounterVec,
    phase_seconds: HistogramVec,
    downtime_seconds: HistogramVec,
    bytes: IntCounterVec,
    remote_page_faults: IntCounterVec,
}

impl HostMetrics {
    pub fn new() -> HostMetrics {
        let r = Registry::new();
        HostMetrics {
            http: ferry_metrics::HttpMetrics::new(&r),
            migrations: r.counter_vec(
                "ferry_migrations_total",
                "Outgoing migrations that ended here, by technique, outcome, CRIU engine and page transport",
                &["technique", "outcome", "engine", "pages"],
            ),
            phase_seconds: r.histogram_vec(
                "ferry_migration_phase_seconds",
                "How long each phase of an outgoing migration took",
                &["technique", "phase"],
                ferry_metrics::phase_buckets(),
            ),
            downtime_seconds: r.histogram_vec(
                "ferry_migration_downtime_seconds",
                "From the freeze to the commit of a migration: how long the app could not answer, as the hosts saw it",
                &["technique"],
                ferry_metrics::phase_buckets(),
            ),
            bytes: r.counter_vec(
                "ferry_migration_bytes_total",
                "Bytes moved to the target by outgoing migrations: stream (images, writable layer) and pages (memory)",
                &["technique", "kind"],
            ),
            remote_page_faults: r.counter_vec(
                "ferry_migration_remote_page_faults_total",
                "Post-copy page faults the target served from this host",
                &["technique"],
            ),
            registry: r,
        }
    }

    /// Counts one ended migration.
    pub fn observe(&self, r: &MigrationReport) {
        let technique = r.technique.to_string();
        let t = technique.as_str();
        self.migrations
            .with_label_values(&[
                t,
                &r.outcome.to_string(),
                &r.engine.to_string(),
                &r.pages.to_string(),
            ])
            .inc();
        let tm = &r.timings;
        for (phase, ms) in [
            ("prepare", tm.prepare_ms),
            ("pre_copy", tm.pre_copy_ms),
            ("freeze", tm.freeze_ms),
            ("dump", tm.dump_ms),
            ("transfer", tm.transfer_ms),
            ("restore", tm.restore_ms),
            ("commit", tm.commit_ms),
            ("lazy_completion", tm.lazy_completion_ms),
            ("cleanup", tm.cleanup_ms),
        ] {
            if let Some(ms) = ms {
                self.phase_seconds
                    .with_label_values(&[t, phase])
                    .observe(ms as f64 / 1000.0);
            }
        }
        if let Some(ms) = tm.frozen_ms {
            self.downtime_seconds
                .with_label_values(&[t])
                .observe(ms as f64 / 1000.0);
        }
        self.bytes
            .with_label_values(&[t, "stream"])
            .inc_by(r.stream_bytes);
        self.bytes
            .with_label_values(&[t, "pages"])
            .inc_by(r.pages_bytes);
        if let Some(n) = r.remote_page_faults {
            self.remote_page_faults.with_label_values(&[t]).inc_by(n);
        }
    }
}

impl Default for HostMetrics {
    fn default() -> Self {
        HostMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_wire::migration::{CheckpointEngine, Outcome, PageTransport, Technique, Timings};

    #[test]
    fn a_report_becomes_counts_and_histograms() {
        let m = HostMetrics::new();
        let report = MigrationReport {
            outcome: Outcome::Completed,
            timings: Timings {
                prepare_ms: Some(40),
                dump_ms: Some(120),
                lazy_completion_ms: Some(3000),
                frozen_ms: Some(250),
                total_ms: 3500,
                ..Timings::default()
            },
            stream_bytes: 1000,
            pages_bytes: 64 << 20,
            pages: PageTransport::Tls,
            engine: CheckpointEngine::Native,
            bytes_on_wire: 1000 + (64 << 20),
            remote_page_faults: Some(17),
            ..MigrationReport::new(
                "m-1".parse().unwrap(),
                "app",
                "a",
                "https://b",
                Technique::Auto,
                Technique::PostCopy,
            )
        };
        m.observe(&report);
        m.observe(&report);
        let s = ferry_metrics::exposition::parse(&m.registry.encode()).unwrap();
        assert_eq!(
            s.value(
                "ferry_migrations_total",
                &[
                    ("technique", "post-copy"),
                    ("outcome", "completed"),
                    ("engine", "native"),
                    ("pages", "tls")
                ]
            ),
            Some(2.0)
        );
        let dump = s
            .histogram(
                "ferry_migration_phase_seconds",
                &[("technique", "post-copy"), ("phase", "dump")],
            )
            .unwrap();
        assert_eq!((dump.count, dump.sum), (2, 0.24));
        assert!(s
            .histogram(
                "ferry_migration_phase_seconds",
                &[("technique", "post-copy"), ("phase", "restore")]
            )
            .is_none());
        assert_eq!(
            s.value("ferry_migration_bytes_total", &[("kind", "pages")]),
            Some((2u64 * (64 << 20)) as f64)
        );
        assert_eq!(
            s.value("ferry_migration_remote_page_faults_total", &[]),
            Some(34.0)
        );
        let down = s
            .histogram(
                "ferry_migration_downtime_seconds",
                &[("technique", "post-copy")],
            )
            .unwrap();
        assert_eq!(down.count, 2);
    }
}
