//! Delivery of notifications to subscribers' callback URLs.
//!
//! Each subscription has its own queue and worker task, so a slow or dead callback delays only
//! its own notifications: no API call, handover or relocation step waits for a callback.
//!
//! - **Order per key, several in flight.** A notification may carry a key (the UE it is about,
//!   the app instance): notifications of one key reach the subscriber in the order they were
//!   sent, one POST of that key at a time, while up to [`IN_FLIGHT`] POSTs of different keys
//!   run at once. Notifications without a key go one at a time, in order.
//! - **Coalescing instead of dropping.** The queue holds [`DEFAULT_QUEUE`] notifications. When
//!   it is full, a subscription started with [`Coalesce::Merge`] merges a new notification into
//!   the latest one of its key that is not yet on the wire (latest wins; the merge function
//!   says how the older one is folded in, e.g. the hops a CellChange stands for), or, if its key
//!   has none queued, keeps it beside the queue, one per key. Memory is bounded by the queue
//!   plus one notification per key (per UE). A notification that cannot be merged (no key, or
//!   [`Coalesce::Never`]) is dropped and counted; the next notification delivered carries the
//!   count as `ferryLostNotifications`, so the subscriber knows it missed something.
//! - **A down subscriber is paused and caught up.** A POST with no answer (refused, timed out)
//!   or a 5xx/429 puts the notification back at the head of its key and pauses the
//!   subscription: one probe at a time, backing off from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`],
//!   until the callback answers again; meanwhile new notifications queue and coalesce, so the
//!   subscriber returns to the latest state of every key, in order. A notification the
//!   subscriber keeps failing while it accepts others is given up after [`ATTEMPTS`] tries
//!   (counted as lost), so one poisoned notification cannot hold its key forever.
//! - **Deadlines.** Every POST has a connect timeout and an overall timeout ([`POST_TIMEOUT`]).
//!   Once the subscription is gone (its [`Delivery`] dropped), what is queued is delivered
//!   while the callback answers; the first failure drops the rest, and the worker ends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Tries of a notification the subscriber refuses while it accepts others.
pub const ATTEMPTS: u32 = 3;
/// Deadline of one POST (connecting included).
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of connecting to a callback.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait before the first retry (probe of a down subscriber), doubled up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two probes of a down subscriber.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Notifications queued per subscription before they coalesce (or are dropped).
pub const DEFAULT_QUEUE: usize = 1024;
/// POSTs of different keys in flight at once to one subscriber.
pub const IN_FLIGHT: usize = 8;
/// The field that tells a subscriber how many notifications it missed (ferry's extension).
pub const LOST_FIELD: &str = "ferryLostNotifications";

/// How the notifications of one subscription may be combined when its queue is full.
#[derive(Clone, Copy, Debug)]
pub enum Coalesce {
    /// Never: beyond the queue a notification is dropped and counted.
    Never,
    /// Per key, latest wins: `merge(older, newer)` is the one notification standing for both.
    Merge(fn(serde_json::Value, serde_json::Value) -> serde_json::Value),
}

/// The HTTP client shared by all delivery workers.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    queue: usize,
}

impl Notifier {
    pub fn new() -> Notifier {
        Notifier::with_tls(None)
    }

    /// With a client certificate for `https://` callbacks of ferry's own parts (the RAN
    /// notifies control as `ran`).
    pub fn with_tls(tls: Option<Arc<rustls::ClientConfig>>) -> Notifier {
        let mut b = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(POST_TIMEOUT)
            .pool_max_idle_per_host(IN_FLIGHT);
        if let Some(tls) = tls {
            b = b.use_preconfigured_tls((*tls).clone());
        }
        // Building a client with a given TLS configuration and no proxies has no failing
        // input; fall back anyway.
        let client = b.build().unwrap_or_else(|_| reqwest::Client::new());
        Notifier {
            client,
            queue: DEFAULT_QUEUE,
        }
    }

    /// With another queue length per subscription (at least 1).
    pub fn queue(mut self, len: usize) -> Notifier {
        self.queue = len.max(1);
        self
    }

    /// Starts the delivery worker of one subscription whose notifications are never merged.
    /// Must be called inside a tokio runtime (request handlers are). The worker ends once the
    /// returned `Delivery` is dropped and its queue is drained.
    pub fn start(&self, url: String, subscription: String) -> Delivery {
        self.start_with(url, subscription, Coalesce::Never)
    }

    /// [`Notifier::start`] with a coalescing rule.
    pub fn start_with(&self, url: String, subscription: String, coalesce: Coalesce) -> Delivery {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(self.queue, coalesce)),
            wake: Notify::new(),
        });
        tokio::spawn(deliver(
            self.client.clone(),
            url,
            subscription.clone(),
            shared.clone(),
        ));
        Delivery {
            shared,
            subscription,
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

/// What a subscription's delivery did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Notifications the callback accepted (2xx).
    pub delivered: u64,
    /// Notifications merged into another one (each merge counts one).
    pub merged: u64,
    /// Notifications dropped (queue full and no merge, or given up after [`ATTEMPTS`]).
    pub lost: u64,
    /// Notifications the callback refused with a 4xx (not retried).
    pub refused: u64,
    /// Notifications waiting now (queue and coalesced ones), not counting those on the wire.
    pub waiting: usize,
    /// Whether the callback is considered down (paused, probing).
    pub down: bool,
}

/// The sending end of one subscription's queue. Dropping it ends the subscription's
/// delivery once what is queued was tried.
#[derive(Debug)]
pub struct Delivery {
    shared: Arc<Shared>,
    subscription: String,
}

impl Delivery {
    /// Queues a notification without a key (delivered one at a time, in order); never blocks.
    pub fn send(&self, body: serde_json::Value) {
        self.push(None, body);
    }

    /// Queues a notification about `key` (a UE, an app instance): in order with the others
    /// of that key, merged with them when the queue is full; never blocks.
    pub fn send_keyed(&self, key: &str, body: serde_json::Value) {
        self.push(Some(key.to_string()), body);
    }

    fn push(&self, key: Option<String>, body: serde_json::Value) {
        let dropped = self.shared.lock().push(key, body);
        if dropped {
            tracing::warn!(subscription = %self.subscription, "notification dropped: queue full and nothing to merge with");
        }
        self.shared.wake.notify_one();
    }

    pub fn stats(&self) -> DeliveryStats {
        self.shared.lock().stats()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Shared {
    /// The queue, even if a panicking thread poisoned the lock (every critical section leaves
    /// it consistent).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The order key of a notification; `None` (no key) is one serial sequence of its own.
type Key = Option<String>;

#[derive(Debug)]
struct Entry {
    key: Key,
    body: serde_json::Value,
    /// Failed tries so far.
    attempts: u32,
    /// Successful POSTs (of any notification) counted when this one first failed: if more
    /// came since, the subscriber is up and refuses this one.
    delivered_at_failure: Option<u64>,
}

/// One notification on the wire, with the loss count it reports.
#[derive(Debug)]
struct Sent {
    entry: Entry,
    lost: u64,
}

/// How a POST ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// A 4xx other than 429: the subscriber does not want this notification.
    Refused,
    /// No answer, a 5xx or a 429: try again.
    Failed,
}

/// The pending notifications of one subscription: the pure data structure (no I/O), so the
/// ordering and coalescing rules are unit-tested on their own.
#[derive(Debug)]
struct Queue {
    capacity: usize,
    coalesce: Coalesce,
    /// Notifications not yet on the wire, oldest first.
    entries: VecDeque<Entry>,
    /// Entries of each key in `entries`.
    queued: HashMap<Key, usize>,
    /// Beyond the queue: one (merged) notification per key, moved into the queue as it frees.
    overflow: HashMap<Key, Entry>,
    overflow_order: VecDeque<Key>,
    /// Keys with a POST on the wire.
    in_flight: HashSet<Key>,
    /// Dropped since the last notification that reported it.
    unreported_lost: u64,
    down: bool,
    backoff: Duration,
    next_probe: Option<Instant>,
    closed: bool,
    delivered: u64,
    merged: u64,
    lost: u64,
    refused: u64,
}

impl Queue {
    fn new(capacity: usize, coalesce: Coalesce) -> Queue {
        Queue {
            capacity,
            coalesce,
            entries: VecDeque::new(),
            queued: HashMap::new(),
            overflow: HashMap::new(),
            overflow_order: VecDeque::new(),
            in_flight: HashSet::new(),
            unreported_lost: 0,
            down: false,
            backoff: FIRST_BACKOFF,
            next_probe: None,
            closed: false,
            delivered: 0,
            merged: 0,
            lost: 0,
            refused: 0,
        }
    }

    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            delivered: self.delivered,
            merged: self.merged,
            lost: self.lost,
            refused: self.refused,
            waiting: self.entries.len() + self.overflow.len(),
            down: self.down,
        }
    }

    fn enqueue_back(&mut self, e: Entry) {
        *self.queued.entry(e.key.clone()).or_default() += 1;
        self.entries.push_back(e);
    }

    /// Queues a notification; true if it had to be dropped.
    fn push(&mut self, key: Key, body: serde_json::Value) -> bool {
        let entry = Entry {
            key,
            body,
            attempts: 0,
            delivered_at_failure: None,
        };
        let key_has_overflow = self.overflow.contains_key(&entry.key);
        if self.entries.len() < self.capacity && !key_has_overflow {
            self.enqueue_back(entry);
            return false;
        }
        let merge = match (self.coalesce, &entry.key) {
            (Coalesce::Merge(f), Some(_)) => f,
            _ => {
                self.drop_one();
                return true;
            }
        };
        let older = if let Some(o) = self.overflow.get_mut(&entry.key) {
            Some(o)
        } else if self.queued.get(&entry.key).copied().unwrap_or(0) > 0 {
            self.entries.iter_mut().rev().find(|e| e.key == entry.key)
        } else {
            None
        };
        match older {
            Some(o) => {
                let body = std::mem::take(&mut o.body);
                o.body = merge(body, entry.body);
                self.merged += 1;
            }
            None => {
                self.overflow_order.push_back(entry.key.clone());
                self.overflow.insert(entry.key.clone(), entry);
            }
        }
        false
    }

    fn drop_one(&mut self) {
        self.lost += 1;
        self.unreported_lost += 1;
    }

    /// Moves coalesced notifications into the queue as far as it has room.
    fn refill(&mut self) {
        while self.entries.len() < self.capacity {
            let Some(key) = self.overflow_order.pop_front() else {
                return;
            };
            if let Some(e) = self.overflow.remove(&key) {
                self.enqueue_back(e);
            }
        }
    }

    /// How many POSTs may be on the wire now.
    fn window(&self) -> usize {
        if self.down {
            1
        } else {
            IN_FLIGHT
        }
    }

    /// The next notification to POST, if one may go now: the oldest whose key has nothing on
    /// the wire, within the window, and (while the subscriber is down) only when a probe is due.
    fn take_next(&mut self, now: Instant) -> Option<Sent> {
        if self.in_flight.len() >= self.window() {
            return None;
        }
        if self.down && self.next_probe.is_some_and(|t| now < t) {
            return None;
        }
        let i = self
            .entries
            .iter()
            .position(|e| !self.in_flight.contains(&e.key))?;
        let entry = self.entries.remove(i)?;
        if let Some(n) = self.queued.get_mut(&entry.key) {
            *n -= 1;
            if *n == 0 {
                self.queued.remove(&entry.key);
            }
        }
        self.in_flight.insert(entry.key.clone());
        self.refill();
        let lost = std::mem::take(&mut self.unreported_lost);
        Some(Sent { entry, lost })
    }

    /// Records how a POST ended.
    fn finish(&mut self, sent: Sent, outcome: Outcome, now: Instant) {
        let Sent { mut entry, lost } = sent;
        self.in_flight.remove(&entry.key);
        match outcome {
            Outcome::Delivered => {
                self.delivered += 1;
                self.down = false;
                self.backoff = FIRST_BACKOFF;
                self.next_probe = None;
            }
            Outcome::Refused => {
                self.refused += 1;
                self.unreported_lost += lost;
            }
            Outcome::Failed if self.closed => {
                // The subscription is gone and its callback fails: what is left goes too,
                // rather than being probed for at length.
                self.drop_one();
                let waiting = self.entries.len() + self.overflow.len();
                self.lost += waiting as u64;
                self.entries.clear();
                self.queued.clear();
                self.overflow.clear();
                self.overflow_order.clear();
            }
            Outcome::Failed => {
                self.unreported_lost += lost;
                entry.attempts += 1;
                let first = *entry.delivered_at_failure.get_or_insert(self.delivered);
                // Up (others were delivered since this one first failed) and still failing
                // this one: give it up.
                if entry.attempts >= ATTEMPTS && self.delivered > first {
                    self.drop_one();
                } else {
                    // Back at the head of its key: nothing of that key was sent meanwhile.
                    *self.queued.entry(entry.key.clone()).or_default() += 1;
                    self.entries.push_front(entry);
                }
                if !self.down {
                    self.down = true;
                    self.backoff = FIRST_BACKOFF;
                } else {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                self.next_probe = Some(now + self.backoff);
            }
        }
    }

    fn idle(&self) -> bool {
        self.entries.is_empty() && self.overflow.is_empty() && self.in_flight.is_empty()
    }
}

async fn post(
    client: reqwest::Client,
    url: String,
    subscription: String,
    sent: Sent,
) -> (Sent, Outcome) {
    let mut body = sent.entry.body.clone();
    if sent.lost > 0 {
        if let serde_json::Value::Object(m) = &mut body {
            m.insert(LOST_FIELD.into(), sent.lost.into());
        }
    }
    let outcome = match client.post(&url).json(&body).send().await {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r)
            if r.status().is_server_error()
                || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
        {
            tracing::debug!(%subscription, %url, status = %r.status(), "callback failed; will retry");
            Outcome::Failed
        }
        Ok(r) => {
            tracing::warn!(%subscription, %url, status = %r.status(), "callback refused notification");
            Outcome::Refused
        }
        Err(e) => {
            tracing::debug!(%subscription, %url, "callback unreachable: {e}");
            Outcome::Failed
        }
    };
    (sent, outcome)
}

async fn deliver(client: reqwest::Client, url: String, subscription: String, shared: Arc<Shared>) {
    let mut wire: JoinSet<(Sent, Outcome)> = JoinSet::new();
    let mut was_down = false;
    loop {
        let (probe_at, done) = {
            let mut q = shared.lock();
            while let Some(sent) = q.take_next(Instant::now()) {
                wire.spawn(post(
                    client.clone(),
                    url.clone(),
                    subscription.clone(),
                    sent,
                ));
            }
            if q.down != was_down {
                was_down = q.down;
                if q.down {
                    tracing::warn!(%subscription, %url, "callback down: notifications wait and coalesce until it answers");
                } else {
                    tracing::info!(%subscription, %url, "callback answers again: catching up");
                }
            }
            // A probe due while none is on the wire wakes the loop; one on the wire ends
            // through `join_next`.
            let probe_at = q.next_probe.filter(|_| q.down && q.in_flight.is_empty());
            (probe_at, q.closed && q.idle())
        };
        if done {
            return;
        }
        tokio::select! {
            Some(r) = wire.join_next(), if !wire.is_empty() => {
                if let Ok((sent, outcome)) = r {
                    shared.lock().finish(sent, outcome, Instant::now());
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(probe_at.unwrap_or_else(Instant::now)), if probe_at.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn merge(older: Value, mut newer: Value) -> Value {
        let n = older["n"].as_u64().unwrap_or(1) + newer["n"].as_u64().unwrap_or(1);
        newer["from"] = older["from"].clone();
        newer["n"] = n.into();
        newer
    }

    fn hop(ue: &str, from: u32, to: u32) -> (Key, Value) {
        (Some(ue.into()), json!({"ue": ue, "from": from, "to": to}))
    }

    fn push(q: &mut Queue, (k, v): (Key, Value)) -> bool {
        q.push(k, v)
    }

    /// Takes everything that may go now.
    fn take_all(q: &mut Queue) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(s) = q.take_next(Instant::now()) {
            out.push(s);
        }
        out
    }

    #[test]
    fn one_post_per_key_several_keys_at_once() {
        let mut q = Queue::new(16, Coalesce::Never);
        for (ue, n) in [("a", 1), ("a", 2), ("b", 1), ("c", 1), ("b", 2)] {
            push(&mut q, hop(ue, n, n + 1));
        }
        q.push(None, json!({"x": 1}));
        q.push(None, json!({"x": 2}));
        let first = take_all(&mut q);
        let got: Vec<(Key, u64)> = first
            .iter()
            .map(|s| {
                (
                    s.entry.key.clone(),
                    s.entry.body["from"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("a".into()), 1),
                (Some("b".into()), 1),
                (Some("c".into()), 1),
                (None, 0)
            ],
            "the oldest of each key, unkeyed ones one at a time"
        );
        // a's second waits until its first is done, then goes.
        let a1 = first.into_iter().next().unwrap();
        q.finish(a1, Outcome::Delivered, Instant::now());
        let next = take_all(&mut q);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].entry.body, json!({"ue": "a", "from": 2, "to": 3}));
    }

    #[test]
    fn full_queue_merges_per_key_latest_wins_and_keeps_order() {
        let mut q = Queue::new(2, Coalesce::Merge(merge));
        push(&mut q, hop("a", 1, 2));
        push(&mut q, hop("b", 1, 2));
        // Full: a's next hops merge into a's queued one; c's first is kept beside the queue.
        push(&mut q, hop("a", 2, 3));
        push(&mut q, hop("a", 3, 4));
        push(&mut q, hop("c", 1, 2));
        push(&mut q, hop("c", 2, 3));
        assert_eq!(q.stats().merged, 3);
        assert_eq!(q.stats().lost, 0);
        assert_eq!(q.stats().waiting, 3);
        let sent = take_all(&mut q);
        let bodies: Vec<Value> = sent.iter().map(|s| s.entry.body.clone()).collect();
        assert!(
            bodies.contains(&json!({"ue": "a", "from": 1, "to": 4, "n": 3})),
            "{bodies:?}"
        );
        assert!(
            bodies.contains(&json!({"ue": "b", "from": 1, "to": 2})),
            "{bodies:?}"
        );
        assert!(
            bodies.contains(&json!({"ue": "c", "from": 1, "to": 3, "n": 2})),
            "{bodies:?}"
        );
    }

    #[test]
    fn a_key_beside_the_queue_stays_behind_its_queued_notifications() {
        let mut q = Queue::new(1, Coalesce::Merge(merge));
        push(&mut q, hop("a", 1, 2));
        let a1 = take_all(&mut q).pop().unwrap(); // on the wire
        push(&mut q, hop("a", 2, 3)); // queued
        push(&mut q, hop("a", 3, 4)); // full: merged into the queued one
        push(&mut q, hop("b", 1, 2)); // full: beside
        q.finish(a1, Outcome::Delivered, Instant::now());
        let next = take_all(&mut q);
        assert_eq!(
            next[0].entry.body,
            json!({"ue": "a", "from": 2, "to": 4, "n": 2})
        );
        assert_eq!(next[1].entry.body, json!({"ue": "b", "from": 1, "to": 2}));
    }

    #[test]
    fn unmergeable_notifications_are_dropped_and_reported_with_the_next() {
        let mut q = Queue::new(1, Coalesce::Never);
        q.push(Some("a".into()), json!({"x": 1}));
        assert!(q.push(Some("b".into()), json!({"x": 2})));
        assert!(q.push(None, json!({"x": 3})));
        let s = take_all(&mut q);
        assert_eq!(s[0].lost, 2, "the next one sent reports the two lost");
        // Failed: the count is reported again with the retry.
        let s0 = s.into_iter().next().unwrap();
        q.finish(s0, Outcome::Failed, Instant::now());
        assert!(q.down);
        let retry = q.take_next(Instant::now() + MAX_BACKOFF).unwrap();
        assert_eq!(retry.lost, 2);
        q.finish(retry, Outcome::Delivered, Instant::now());
        assert_eq!(q.stats().lost, 2);
        assert!(!q.down);
    }

    #[test]
    fn down_subscriber_is_probed_one_at_a_time_and_keeps_its_order() {
        let mut q = Queue::new(8, Coalesce::Merge(merge));
        push(&mut q, hop("a", 1, 2));
        push(&mut q, hop("b", 1, 2));
        let now = Instant::now();
        let sent = take_all(&mut q);
        assert_eq!(sent.len(), 2);
        for s in sent {
            q.finish(s, Outcome::Failed, now);
        }
        push(&mut q, hop("a", 2, 3));
        assert!(q.down);
        assert!(q.take_next(now).is_none(), "no probe before the backoff");
        let later = now + MAX_BACKOFF;
        let probe = q.take_next(later).unwrap();
        assert!(q.take_next(later).is_none(), "one probe at a time");
        let key = probe.entry.key.clone();
        q.finish(probe, Outcome::Delivered, later);
        assert!(!q.down);
        // Everything else goes now, a's hops in order.
        let rest = take_all(&mut q);
        if key == Some("a".into()) {
            assert_eq!(rest.len(), 1);
            assert_eq!(rest[0].entry.key, Some("b".into()));
        } else {
            assert_eq!(rest.len(), 1);
            assert_eq!(
                rest[0].entry.body["from"], 1,
                "a's first hop before its second"
            );
        }
    }

    #[test]
    fn a_notification_the_up_subscriber_keeps_failing_is_given_up() {
        let mut q = Queue::new(8, Coalesce::Never);
        q.push(Some("bad".into()), json!({"x": 0}));
        q.push(Some("ok".into()), json!({"x": 1}));
        let mut t = Instant::now();
        for _ in 0..ATTEMPTS {
            t += MAX_BACKOFF;
            for s in take_all_at(&mut q, t) {
                let o = if s.entry.key == Some("bad".into()) {
                    Outcome::Failed
                } else {
                    Outcome::Delivered
                };
                q.finish(s, o, t);
            }
        }
        assert_eq!(q.stats().lost, 1);
        assert_eq!(q.stats().delivered, 1);
        assert!(q.idle());
    }

    fn take_all_at(q: &mut Queue, t: Instant) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(s) = q.take_next(t) {
            out.push(s);
        }
        out
    }

    #[test]
    fn a_down_subscriber_keeps_its_notifications_however_long() {
        let mut q = Queue::new(4, Coalesce::Merge(merge));
        push(&mut q, hop("a", 1, 2));
        let mut t = Instant::now();
        for i in 0..20 {
            t += MAX_BACKOFF;
            let s = take_all_at(&mut q, t);
            for s in s {
                q.finish(s, Outcome::Failed, t);
            }
            push(&mut q, hop("a", 2 + i, 3 + i));
        }
        assert_eq!(
            q.stats().lost,
            0,
            "nothing given up while nothing is delivered"
        );
        assert!(q.stats().waiting <= 4, "{:?}", q.stats());
    }

    #[test]
    fn a_deleted_subscription_whose_callback_fails_ends() {
        let mut q = Queue::new(8, Coalesce::Never);
        for i in 0..5 {
            q.push(None, json!({ "x": i }));
        }
        let first = q.take_next(Instant::now()).unwrap();
        q.finish(first, Outcome::Delivered, Instant::now());
        q.closed = true;
        let second = q.take_next(Instant::now()).unwrap();
        q.finish(second, Outcome::Failed, Instant::now());
        assert!(q.idle(), "nothing left to try");
        assert_eq!(q.stats().lost, 4);
        assert_eq!(q.stats().delivered, 1);
    }

    #[test]
    fn memory_is_bounded_by_the_queue_and_the_keys() {
        let mut q = Queue::new(16, Coalesce::Merge(merge));
        for i in 0..100_000u32 {
            push(&mut q, hop(&format!("ue{}", i % 50), i, i + 1));
        }
        let s = q.stats();
        assert!(s.waiting <= 16 + 50, "{s:?}");
        assert_eq!(s.lost, 0);
    }
}
