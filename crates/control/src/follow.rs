//! Following the UEs: where each UE that app instances follow is, from the RAN's MEC 012
//! CellChange notifications and, because a notification can be lost (a RAN may drop them, a
//! restart loses them, control may be down), from re-reading MEC 013 `queries/users`.
//!
//! - `run` (a task of `serve`): deletes a CellChange subscription an earlier run left behind,
//!   subscribes (its URI is stored, so a restart after a kill replaces it instead of adding a
//!   second one), then reconciles at once (what moved while control was down), after every
//!   gap it can detect (a notification saying `ferryLostNotifications`, its subscription gone
//!   from the RAN) and every `Config::reconcile_every`;
//! - `cell_change`: a COMPLETED handover -> the host serving the target cell -> `located`;
//!   O(instances of that UE): the instances come from the in-memory `UeIndex`, the host from
//!   the topology's ECGIs;
//! - `reconcile`: the UEs some instance follows, asked for by address, [`PAGE`] per request
//!   (MEC 013 `queries/users` has no paging of its own, so the consumer pages by address) ->
//!   `located` for each;
//! - `located`: the newest word on a UE wins. Both sources carry the RAN's time (the
//!   notification's `timeStamp` is the handover's, a `UserInfo`'s `timestamp` when it was
//!   read), and news older than what was applied for that UE is ignored: a reconciliation
//!   answered before a handover never undoes it, nor does a late notification undo a newer
//!   reading. Then each follower gets its move (`controller::want`; nothing if it is there).

use crate::ams;
use crate::controller::{self, Wanted, Why};
use crate::store::Table;
use crate::{lock, Control};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mec_api::location::UserListBody;
use mec_api::rni::{CellChangeNotification, HoStatus};
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Path of the MEC 012 notification callback.
pub const CELL_CHANGE_PATH: &str = "/ferry/control/v1/notifications/rni/cell_change";

/// UEs asked for per `queries/users` request.
pub const PAGE: usize = 100;

/// Largest `queries/users` answer read (a page of [`PAGE`] users is some 50 KiB).
const MAX_ANSWER: usize = 4 << 20;

/// Default of `Config::reconcile_every`.
pub const DEFAULT_RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// After a gap is reported, wait this long for more news before re-reading (a burst of lost
/// notifications gives one reconciliation, not one each).
const GAP_SETTLE: Duration = Duration::from_millis(200);

/// Store key (in `Table::RanSubscriptions`) of the CellChange subscription's href.
const CELL_CHANGE_KEY: &str = "cell_change";

/// The key of an ECGI in `Config::ecgis`.
pub fn ecgi_key(mcc: &str, mnc: &str, cell_id: &str) -> String {
    format!("{mcc}-{mnc}-{cell_id}")
}

/// Why a reconciliation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Control (re)started: what moved meanwhile was not notified to it.
    Start,
    /// The RAN said it lost notifications, or the subscription was gone.
    Gap,
    Periodic,
}

/// The state of following, kept in `Control`.
#[derive(Default)]
pub struct Follow {
    /// The RAN subscription's href, to delete at shutdown.
    ran_subscription: std::sync::Mutex<Option<String>>,
    /// Per UE, the RAN's time of the newest location applied.
    seen: std::sync::Mutex<HashMap<Ipv4Addr, SystemTime>>,
    /// Woken when a gap is detected.
    gap: tokio::sync::Notify,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    notifications: AtomicU64,
    handovers: AtomicU64,
    merged_notifications: AtomicU64,
    lost_reported: AtomicU64,
    stale: AtomicU64,
    moves_from_notifications: AtomicU64,
    reconciliations: AtomicU64,
    reconcile_failures: AtomicU64,
    moves_from_reconciliation: AtomicU64,
    resubscriptions: AtomicU64,
    last_reconcile_ms: AtomicU64,
}

/// `GET /ferry/control/v1/follow`: how following the UEs goes.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowView {
    /// CellChange notifications received.
    pub notifications: u64,
    /// Handovers they stand for (a merged notification stands for several).
    pub handovers: u64,
    /// Notifications that stood for more than one handover.
    pub merged_notifications: u64,
    /// Notifications the RAN reported lost (`ferryLostNotifications`).
    pub lost_reported: u64,
    /// Notifications or readings older than what was applied for their UE (ignored).
    pub stale: u64,
    /// Moves wanted because of a notification.
    pub moves_from_notifications: u64,
    pub reconciliations: u64,
    pub reconcile_failures: u64,
    /// Moves wanted because a reconciliation found an instance away from its UE's host.
    pub moves_from_reconciliation: u64,
    /// Times the subscription was found gone at the RAN and made again.
    pub resubscriptions: u64,
    /// How long the last reconciliation took.
    pub last_reconcile_ms: u64,
    /// UEs some instance follows.
    pub ues: usize,
}

impl Follow {
    pub fn view(&self, ues: usize) -> FollowView {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        FollowView {
            notifications: g(&s.notifications),
            handovers: g(&s.handovers),
            merged_notifications: g(&s.merged_notifications),
            lost_reported: g(&s.lost_reported),
            stale: g(&s.stale),
            moves_from_notifications: g(&s.moves_from_notifications),
            reconciliations: g(&s.reconciliations),
            reconcile_failures: g(&s.reconcile_failures),
            moves_from_reconciliation: g(&s.moves_from_reconciliation),
            resubscriptions: g(&s.resubscriptions),
            last_reconcile_ms: g(&s.last_reconcile_ms),
            ues,
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

// ---- the MEC 012 subscription and the periodic reconciliation ----

/// Follows the UEs for as long as control serves (see the module doc). Without a RAN,
/// nothing to follow.
pub async fn run(c: Control, callback: String) {
    let Some(ran) = c.config().ran.clone() else {
        return;
    };
    delete_stale_ran_subscription(&c, &ran).await;
    subscribe_ran(&c, &ran, &callback).await;
    reconcile(&c, Reason::Start).await;
    let follow = &c.inner.follow;
    loop {
        let every = c.config().reconcile_every;
        let periodic = async {
            match every {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = periodic => {
                if !subscription_alive(&c).await {
                    add(&follow.stats.resubscriptions, 1);
                    subscribe_ran(&c, &ran, &callback).await;
                }
                reconcile(&c, Reason::Periodic).await;
            }
            _ = follow.gap.notified() => {
                tokio::time::sleep(GAP_SETTLE).await;
                reconcile(&c, Reason::Gap).await;
            }
        }
    }
}

/// Subscribes to CellChange (hoStatus IN_PREPARATION and COMPLETED) at the RAN, retrying
/// until it answers. Only COMPLETED moves anything; IN_PREPARATION (from the RAN's radio
/// model) is logged for now.
async fn subscribe_ran(c: &Control, ran: &str, callback: &str) {
    let body = serde_json::json!({
        "subscriptionType": "CellChangeSubscription",
        "callbackReference": callback,
        "filterCriteriaAssocHo": {"hoStatus": [1, 3]},
    });
    for attempt in 0u32.. {
        let r = c
            .http()
            .post(format!("{ran}/rni/v2/subscriptions"))
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::CREATED => {
                let href = r
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_string);
                tracing::info!(?href, "subscribed to MEC 012 CellChange at the RAN");
                if let Some(h) = &href {
                    // Recorded at once: a kill from here on leaves a subscription the next
                    // start can find.
                    if let Err(e) = c.store().put(Table::RanSubscriptions, CELL_CHANGE_KEY, h) {
                        tracing::error!("cannot record the CellChange subscription: {e}");
                    }
                }
                *lock(&c.inner.follow.ran_subscription) = href;
                return;
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "RAN refused the CellChange subscription")
            }
            Err(e) => tracing::warn!("RAN unreachable for the CellChange subscription: {e}"),
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * u64::from(attempt.min(10) + 1))
}

/// Whether the RAN still has our subscription: false only when it says it has none (a
/// restarted RAN forgot it, and every handover since went unnotified). Unreachable or
/// other answers: true (nothing to make again; the RAN pauses delivery while we are away).
async fn subscription_alive(c: &Control) -> bool {
    let href = lock(&c.inner.follow.ran_subscription).clone();
    let Some(href) = href else {
        return true;
    };
    match c.http().get(&href).send().await {
        Ok(r) if r.status() == StatusCode::NOT_FOUND => {
            tracing::warn!(%href, "the RAN no longer has our CellChange subscription: subscribing again and re-reading where the UEs are");
            false
        }
        _ => true,
    }
}

/// Deletes the CellChange subscription a previous run recorded (404: the RAN forgot it
/// already). Deleted rather than reused: the old one may name another callback (the daemon
/// may listen elsewhere now) or another filter, while a fresh one always matches this run;
/// what moved in between is found by the reconciliation that follows.
async fn delete_stale_ran_subscription(c: &Control, ran: &str) {
    let href = match c
        .store()
        .get::<String>(Table::RanSubscriptions, CELL_CHANGE_KEY)
    {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("cannot read the recorded CellChange subscription: {e}");
            return;
        }
    };
    if !href.starts_with(&format!("{ran}/")) {
        // Not this RAN's: waiting for another (maybe retired) RAN would block the subscription.
        tracing::warn!(%href, "recorded CellChange subscription is not at the configured RAN: forgotten");
    } else {
        for attempt in 0u32.. {
            match c.http().delete(&href).send().await {
                Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                    tracing::info!(%href, status = %r.status(), "CellChange subscription of an earlier run deleted");
                    break;
                }
                Ok(r) => {
                    tracing::warn!(%href, status = %r.status(), "RAN refused to delete the CellChange subscription of an earlier run");
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        "RAN unreachable to delete the old CellChange subscription: {e}"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
    if let Err(e) = c.store().delete(Table::RanSubscriptions, CELL_CHANGE_KEY) {
        tracing::error!("cannot forget the old CellChange subscription: {e}");
    }
}

/// Deletes the RAN subscription (at shutdown). Its record stays unless the RAN confirmed, so
/// the next start deletes it.
pub async fn unsubscribe_ran(c: &Control) {
    let href = lock(&c.inner.follow.ran_subscription).take();
    if let Some(href) = href {
        match c.http().delete(&href).send().await {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                tracing::info!(status = %r.status(), "CellChange subscription deleted");
                if let Err(e) = c.store().delete(Table::RanSubscriptions, CELL_CHANGE_KEY) {
                    tracing::error!("cannot forget the CellChange subscription: {e}");
                }
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "RAN refused to delete the CellChange subscription")
            }
            Err(e) => tracing::warn!("cannot delete the CellChange subscription: {e}"),
        }
    }
}

// ---- MEC 012 notifications ----

/// `POST /ferry/control/v1/notifications/rni/cell_change`.
#[utoipa::path(post, path = "/ferry/control/v1/notifications/rni/cell_change", tag = "ran", description = "The callback of control's MEC 012 CellChange subscription at the RAN (only the RAN's certificate may call it).", request_body(content = serde_json::Value, description = "a MEC 012 CellChangeNotification"), responses((status = 204, description = "taken"), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
pub(crate) async fn cell_change(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n: CellChangeNotification = match crate::http::parse_body(&headers, &body) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let follow = &c.inner.follow;
    add(&follow.stats.notifications, 1);
    if let Some(lost) = n.ferry_lost_notifications.filter(|l| *l > 0) {
        tracing::warn!(
            lost,
            "the RAN lost CellChange notifications: re-reading where the UEs are"
        );
        add(&follow.stats.lost_reported, lost);
        follow.gap.notify_one();
    }
    match n.ho_status {
        HoStatus::Completed => {
            on_cell_change(&c, &n);
            c.dashboard().ue_moved();
        }
        // A handover the RAN is preparing: logged only (acting on it early, a proactive
        // relocation, is later work).
        HoStatus::InPreparation => log_preparation(&n),
        _ => {}
    }
    StatusCode::NO_CONTENT.into_response()
}

fn log_preparation(n: &CellChangeNotification) {
    let ue = n
        .associate_id
        .iter()
        .map(|a| a.value.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let to = n
        .trg_ecgi
        .first()
        .map(|e| e.cell_id.as_str())
        .unwrap_or("?");
    tracing::info!(
        %ue, from = %n.src_ecgi.cell_id, %to,
        "handover in preparation (CellChange IN_PREPARATION): no action until COMPLETED"
    );
}

/// A completed handover: the UE is now served by the host of its target cell.
fn on_cell_change(c: &Control, n: &CellChangeNotification) {
    let stats = &c.inner.follow.stats;
    let hops = n.ferry_merged_handovers.unwrap_or(1).max(1);
    add(&stats.handovers, u64::from(hops));
    if hops > 1 {
        add(&stats.merged_notifications, 1);
    }
    let at = n.time_stamp.map(|t| t.to_system_time());
    for a in &n.associate_id {
        if a.type_ != mec_api::rni::AssociateIdType::UeIpv4Address {
            continue;
        }
        let Ok(ue) = a.value.trim().parse::<Ipv4Addr>() else {
            continue;
        };
        if c.ue_index().followers(ue).is_empty() {
            continue; // no instance follows this UE: nothing to look up
        }
        let ecgi = n.trg_ecgi.first();
        let host = ecgi.and_then(|e| {
            let cfg = c.config();
            cfg.ecgis
                .get(&ecgi_key(&e.plmn.mcc, &e.plmn.mnc, &e.cell_id))
                .or_else(|| cfg.cells.get(&e.cell_id))
                .cloned()
        });
        match host {
            Some(h) => {
                let moves = located(c, ue, &h, at, Why::Handover);
                add(&stats.moves_from_notifications, moves as u64);
            }
            None => {
                // A cell the topology does not name: ask the RAN where the UE is now.
                let (c, cell) = (c.clone(), ecgi.map(|e| e.cell_id.clone()));
                tokio::spawn(async move {
                    match crate::app_lcm::serving_host(&c, ue).await {
                        Ok(h) => {
                            let moves = located(&c, ue, &h, at, Why::Handover);
                            add(&c.inner.follow.stats.moves_from_notifications, moves as u64);
                        }
                        Err(e) => {
                            tracing::warn!(%ue, ?cell, "handover to a cell no host serves: {}", e.0.detail.unwrap_or_default())
                        }
                    }
                });
            }
        }
    }
}

/// `ue` is served by `host` as of `at` (the RAN's time; `None`: unknown, taken as news), as a
/// handover or a reading says (`why`). Unless newer news of the UE was applied, each instance
/// following it is moved there (if not there; a reading does not retry a relocation there
/// that failed, see `Why`). Returns how many moves were wanted.
pub(crate) fn located(
    c: &Control,
    ue: Ipv4Addr,
    host: &str,
    at: Option<SystemTime>,
    why: Why,
) -> usize {
    let followers = c.ue_index().followers(ue);
    if followers.is_empty() {
        return 0;
    }
    // Held while the moves are wanted, so two sources cannot apply in the other order.
    let mut seen = lock(&c.inner.follow.seen);
    if let Some(at) = at {
        if seen.get(&ue).is_some_and(|s| *s >= at) {
            add(&c.inner.follow.stats.stale, 1);
            return 0;
        }
        seen.insert(ue, at);
    }
    let mut moves = 0;
    for f in followers {
        if why == Why::Reading && controller::failed_toward(c, &f.instance, host) {
            continue;
        }
        let w = Wanted {
            target: host.to_string(),
            ue,
            registration: f.registration,
            decision: ams::decide(f.level),
            why,
            handover_at: at.filter(|_| why == Why::Handover),
        };
        if controller::want(c, &f.instance, w) {
            moves += 1;
        }
    }
    drop(seen);
    moves
}

// ---- reconciliation from MEC 013 ----

/// Re-reads where every followed UE is and moves what a lost notification left behind.
pub async fn reconcile(c: &Control, why: Reason) {
    let Some(ran) = c.config().ran.clone() else {
        return;
    };
    let started = Instant::now();
    let stats = &c.inner.follow.stats;
    let ues = c.ue_index().ues();
    // Forget the UEs nobody follows any more (`ues` is sorted).
    lock(&c.inner.follow.seen).retain(|ue, _| ues.binary_search(ue).is_ok());
    let mut moves = 0;
    for page in ues.chunks(PAGE) {
        match users(c, &ran, page).await {
            Ok(list) => {
                for u in list.user_list.user {
                    let Some(ue) = parse_acr(&u.address) else {
                        continue;
                    };
                    let Some(host) =
                        crate::app_lcm::host_of_location(c, &u.access_point_id, &u.zone_id)
                    else {
                        tracing::warn!(%ue, cell = %u.access_point_id, zone = %u.zone_id, "UE in a cell no known host serves");
                        continue;
                    };
                    let at = Some(u.timestamp.to_system_time());
                    moves += located(c, ue, &host, at, Why::Reading);
                }
            }
            Err(e) => {
                add(&stats.reconcile_failures, 1);
                tracing::warn!(
                    ?why,
                    "reconciliation stopped: {e}; the next one re-reads all"
                );
                return;
            }
        }
    }
    add(&stats.reconciliations, 1);
    add(&stats.moves_from_reconciliation, moves as u64);
    let ms = started.elapsed().as_millis() as u64;
    stats.last_reconcile_ms.store(ms, Ordering::Relaxed);
    if moves > 0 || why != Reason::Periodic {
        tracing::info!(
            ?why,
            ues = ues.len(),
            moves,
            ms,
            "reconciled where the UEs are"
        );
    }
}

/// `acr:10.0.0.1` (or a bare address) to the address.
fn parse_acr(s: &str) -> Option<Ipv4Addr> {
    let s = s.trim();
    s.strip_prefix("acr:").unwrap_or(s).parse().ok()
}

/// One page of `GET /location/v2/queries/users?address=acr:..&address=acr:..`.
/// An empty `page`: every UE the RAN has.
pub(crate) async fn users(
    c: &Control,
    ran: &str,
    page: &[Ipv4Addr],
) -> Result<UserListBody, String> {
    let query: Vec<(&str, String)> = page
        .iter()
        .map(|a| ("address", format!("acr:{a}")))
        .collect();
    let mut resp = c
        .http()
        .get(format!("{ran}/location/v2/queries/users"))
        .query(&query)
        .send()
        .await
        .map_err(|e| format!("RAN location query failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("RAN location query answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("RAN location answer: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("RAN location answer over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("RAN location answer is not a UserList: {e}"))
}
