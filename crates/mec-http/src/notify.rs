//! Delivery of notifications to subscribers' callback URLs.
//!
//! Each subscription gets its own queue and worker task, so notifications to one subscriber
//! arrive in order, and a slow or dead callback delays only its own queue: no API call, handover
//! or relocation step waits for a callback. Each POST has a timeout and a few retries; a full queue drops (and logs)
//! rather than growing without bound.

use std::time::Duration;
use tokio::sync::mpsc;

/// Attempts per notification (1 + retries).
const ATTEMPTS: u32 = 3;
/// Timeout of one POST.
const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before the first retry, doubled on each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Notifications queued per subscription before new ones are dropped.
const QUEUE: usize = 256;

/// The HTTP client shared by all delivery workers.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
}

impl Notifier {
    pub fn new() -> Notifier {
        Notifier::with_tls(None)
    }

    /// With a client certificate for `https://` callbacks of ferry's own parts (the RAN
    /// notifies control as `ran`).
    pub fn with_tls(tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Notifier {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(POST_TIMEOUT);
        if let Some(tls) = tls {
            b = b.use_preconfigured_tls((*tls).clone());
        }
        // Building a client with a given TLS configuration and no proxies has no failing
        // input; fall back anyway.
        let client = b.build().unwrap_or_else(|_| reqwest::Client::new());
        Notifier { client }
    }

    /// Starts the delivery worker of one subscription. Must be called inside a tokio runtime
    /// (request handlers are). The worker ends once the returned
    /// `Delivery` is dropped and its queue is drained.
    pub fn start(&self, url: String, subscription: String) -> Delivery {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(self.client.clone(), url, subscription.clone(), rx));
        Delivery { tx, subscription }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

/// The sending end of one subscription's queue.
#[derive(Debug)]
pub struct Delivery {
    tx: mpsc::Sender<serde_json::Value>,
    subscription: String,
}

impl Delivery {
    /// Queues a notification body; never blocks.
    pub fn send(&self, body: serde_json::Value) {
        if let Err(e) = self.tx.try_send(body) {
            tracing::warn!(subscription = %self.subscription, "notification dropped: {e}");
        }
    }
}

async fn deliver(
    client: reqwest::Client,
    url: String,
    subscription: String,
    mut rx: mpsc::Receiver<serde_json::Value>,
) {
    while let Some(body) = rx.recv().await {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(%subscription, %url, "notification delivered");
                    break;
                }
                Ok(r) => {
                    tracing::warn!(%subscription, %url, attempt, status = %r.status(), "callback refused notification")
                }
                Err(e) => tracing::warn!(%subscription, %url, attempt, "callback unreachable: {e}"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}
