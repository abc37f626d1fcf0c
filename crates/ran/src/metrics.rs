//! What the RAN's `/metrics` says: its API's requests (`ferry_metrics::HttpMetrics`), its
//! MEC 012/013 notification deliveries (`ferry_metrics::DeliveryMetrics`) and
//! `ferry_ran_handovers_total` (forced and from the mobility).

use ferry_metrics::prometheus::IntCounter;
use ferry_metrics::Registry;

#[derive(Clone)]
pub struct RanMetrics {
    pub registry: Registry,
    pub http: ferry_metrics::HttpMetrics,
    pub delivery: ferry_metrics::DeliveryMetrics,
    pub handovers: IntCounter,
}

impl RanMetrics {
    pub fn new() -> RanMetrics {
        let r = Registry::new();
        RanMetrics {
            http: ferry_metrics::HttpMetrics::new(&r),
            delivery: ferry_metrics::DeliveryMetrics::new(&r),
            handovers: r.counter(
                "ferry_ran_handovers_total",
                "Handovers of UEs between cells (forced and from the mobility)",
            ),
            registry: r,
        }
    }
}

impl Default for RanMetrics {
    fn default() -> Self {
        RanMetrics::new()
    }
}
