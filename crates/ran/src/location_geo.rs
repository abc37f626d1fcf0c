//! MEC 013 Location (`/location/v2`) beyond zone presence: the distance query
//! (`queries/distance`), distance subscriptions (`subscriptions/distance`), area subscriptions
//! of the circle shape (`subscriptions/area/circle`) and periodic subscriptions
//! (`subscriptions/periodic`), each with its `SubscriptionNotification`, and zone status
//! subscriptions (`subscriptions/zoneStatus`) with their `ZoneStatusNotification`.
//!
//! Positions are the UEs' emulated ones (their cell's, or their waypoints'); distances are
//! great-circle distances (`mobility::distance_m`). Every move of a UE (a handover or a waypoint
//! step) re-evaluates the subscriptions, and a subscription notifies when its condition
//! becomes true, not on every move while it stays true:
//!
//! - distance: the distances of the monitored users to the first `referenceAddress` (without
//!   one: of the other monitored users to the first) meet `criteria` (`AllWithinDistance`:
//!   every distance <= `distance` m, `AnyBeyondDistance`: one > `distance` m, ...);
//! - circle: a user of `address` moves from outside the circle to inside (`Entering`) or from
//!   inside to outside (`Leaving`); one notification per user and crossing.
//!
//! With `checkImmediate` the condition is checked at creation too (for a circle: a user
//! already inside notifies `Entering`, already outside `Leaving`). `count` ends the
//! subscription after that many notifications (the last says `isFinalNotification`),
//! `duration` after that many seconds. `frequency` and `trackingAccuracy` are kept but do not
//! change anything: the emulation knows positions exactly and notifies on the move itself.
//!
//! A periodic subscription sends where its users are every `frequency` seconds (the first
//! after one period) until deleted or its `duration` ends (the last says
//! `isFinalNotification`). A zone status subscription notifies when the number of users in its
//! zone reaches `numberOfUsersZoneThreshold`, or in one of the zone's access points
//! `numberOfUsersAPThreshold` (from below, on a handover); emulated access points are always
//! `Serviceable`, so `operationStatus` never triggers.

use crate::http::{self, ApiError};
use crate::location::{acr, check_resource_url, created, no_sub, parse_address, sub_url, ROOT};
use crate::mobility::distance_m;
use crate::notify::Delivery;
use crate::world::World;
use crate::{lock, Ran};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use mec_api::location::*;
use mec_http::oauth::Caller;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

/// The live distance and circle subscriptions, by id.
#[derive(Default)]
pub struct Subscriptions {
    distance: BTreeMap<String, DistanceEntry>,
    circle: BTreeMap<String, CircleEntry>,
    periodic: BTreeMap<String, PeriodicEntry>,
    zone_status: BTreeMap<String, ZoneStatusEntry>,
}

struct PeriodicEntry {
    sub: PeriodicNotificationSubscription,
    addresses: Vec<Ipv4Addr>,
    expires: Option<SystemTime>,
    delivery: Delivery,
    /// The timer task sending the notifications; it ends with the entry.
    timer: tokio::task::AbortHandle,
}

impl Drop for PeriodicEntry {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

struct ZoneStatusEntry {
    sub: ZoneStatusSubscription,
    /// Users in the zone, and in each of its access points (cells), at the last evaluation.
    in_zone: u32,
    in_ap: BTreeMap<String, u32>,
    delivery: Delivery,
}

struct DistanceEntry {
    sub: DistanceNotificationSubscription,
    monitored: Vec<Ipv4Addr>,
    reference: Option<Ipv4Addr>,
    /// Was the condition true at the last evaluation?
    met: bool,
    sent: u32,
    expires: Option<SystemTime>,
    delivery: Delivery,
}

struct CircleEntry {
    sub: CircleNotificationSubscription,
    addresses: Vec<Ipv4Addr>,
    /// Inside the circle at the last evaluation, per user.
    inside: BTreeMap<Ipv4Addr, bool>,
    sent: u32,
    expires: Option<SystemTime>,
    delivery: Delivery,
}

pub(crate) fn routes() -> Router<Ran> {
    Router::new()
        .route(
            "/location/v2/subscriptions/periodic",
            get(list_periodic).post(create_periodic),
        )
        .route(
            "/location/v2/subscriptions/periodic/{id}",
            get(read_periodic)
                .put(update_periodic)
                .delete(delete_periodic),
        )
        .route(
            "/location/v2/subscriptions/zoneStatus",
            get(list_zone_status).post(create_zone_status),
        )
        .route(
            "/location/v2/subscriptions/zoneStatus/{id}",
            get(read_zone_status)
                .put(update_zone_status)
                .delete(delete_zone_status),
        )
        .route("/location/v2/queries/distance", get(distance))
        .route(
            "/location/v2/subscriptions/distance",
            get(list_distance).post(create_distance),
        )
        .route(
            "/location/v2/subscriptions/distance/{id}",
            get(read_distance)
                .put(update_distance)
                .delete(delete_distance),
        )
        .route(
            "/location/v2/subscriptions/area/circle",
            get(list_circle).post(create_circle),
        )
        .route(
            "/location/v2/subscriptions/area/circle/{id}",
            get(read_circle).put(update_circle).delete(delete_circle),
        )
}

fn position(w: &World, a: Ipv4Addr) -> Option<(f64, f64)> {
    w.ue_by_address(a)
        .map(|i| (w.ues[i].latitude, w.ues[i].longitude))
}

fn terminal(w: &World, a: Ipv4Addr) -> TerminalLocation {
    match position(w, a) {
        Some((lat, lon)) => TerminalLocation {
            address: acr(a),
            current_location: Some(LocationInfo::point(lat, lon, Some(TimeStamp::now()))),
            location_retrieval_status: RetrievalStatus::Retrieved,
        },
        None => TerminalLocation {
            address: acr(a),
            current_location: None,
            location_retrieval_status: RetrievalStatus::NotRetrieved,
        },
    }
}

/// A list of `acr:<IPv4>` addresses of known users; the reason names the bad one.
fn users(w: &World, list: &[String], field: &str) -> Result<Vec<Ipv4Addr>, ApiError> {
    let mut out = Vec::new();
    for s in list {
        let a = parse_address(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{field}: '{s}' is not an 'acr:<IPv4>' user address"
            ))
        })?;
        if position(w, a).is_none() {
            let known: Vec<String> = w.ues.iter().map(|u| acr(u.address)).collect();
            return Err(ApiError::bad_request(format!(
                "{field}: no user '{s}' (users: {})",
                known.join(", ")
            )));
        }
        out.push(a);
    }
    Ok(out)
}

fn expiry(duration: Option<u32>) -> Option<SystemTime> {
    duration
        .filter(|d| *d > 0)
        .map(|d| SystemTime::now() + Duration::from_secs(u64::from(d)))
}

fn check_number(v: f64, field: &str, min: f64) -> Result<(), ApiError> {
    if v.is_finite() && v >= min {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be a number >= {min} (got {v})"
        )))
    }
}

// ---- the distance query ----

async fn distance(State(ran): State<Ran>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(
        q.as_deref(),
        &["requester", "address", "latitude", "longitude"],
    )?;
    let number = |name: &str| -> Result<Option<f64>, ApiError> {
        match http::values(&pairs, name).first() {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("{name} '{v}' is not a number"))),
        }
    };
    let (lat, lon) = (number("latitude")?, number("longitude")?);
    let addresses: Vec<String> = http::values(&pairs, "address")
        .iter()
        .map(|s| s.to_string())
        .collect();
    let w = ran.world();
    let found = users(&w, &addresses, "address")?;
    let metres = match (found.as_slice(), lat, lon) {
        ([a, b], None, None) => {
            // Both are known users (`users` checked).
            let (la, oa) = position(&w, *a).unwrap_or_default();
            let (lb, ob) = position(&w, *b).unwrap_or_default();
            distance_m(la, oa, lb, ob)
        }
        ([a], Some(lat), Some(lon)) => {
            let (la, oa) = position(&w, *a).unwrap_or_default();
            distance_m(la, oa, lat, lon)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give two addresses, or one address with latitude and longitude",
            ))
        }
    };
    Ok(http::json(
        StatusCode::OK,
        &TerminalDistanceBody {
            terminal_distance: TerminalDistance {
                distance: metres.round() as u64,
                // The emulation knows positions exactly.
                accuracy: Some(0),
                timestamp: Some(TimeStamp::now()),
            },
        },
    ))
}

// ---- evaluation ----

fn distance_met(w: &World, e: &DistanceEntry) -> bool {
    let (reference, others) = match e.reference {
        Some(r) => (r, &e.monitored[..]),
        None => (e.monitored[0], &e.monitored[1..]),
    };
    let Some((rl, ro)) = position(w, reference) else {
        return false;
    };
    let d: Vec<f64> = others
        .iter()
        .filter_map(|a| position(w, *a))
        .map(|(l, o)| distance_m(rl, ro, l, o))
        .collect();
    let limit = e.sub.distance;
    match e.sub.criteria {
        DistanceCriteria::AllWithinDistance => d.iter().all(|x| *x <= limit),
        DistanceCriteria::AnyWithinDistance => d.iter().any(|x| *x <= limit),
        DistanceCriteria::AllBeyondDistance => d.iter().all(|x| *x > limit),
        DistanceCriteria::AnyBeyondDistance => d.iter().any(|x| *x > limit),
    }
}

fn inside(w: &World, s: &CircleNotificationSubscription, a: Ipv4Addr) -> bool {
    position(w, a).is_some_and(|(l, o)| distance_m(s.latitude, s.longitude, l, o) <= s.radius)
}

/// Sends one notification; `true` when it was the last one `count` allows.
fn send(
    delivery: &Delivery,
    sent: &mut u32,
    count: Option<u32>,
    mut n: SubscriptionNotification,
) -> bool {
    *sent += 1;
    let last = count.is_some_and(|c| c > 0 && *sent >= c);
    n.is_final_notification = Some(last);
    match serde_json::to_value(SubscriptionNotificationBody {
        subscription_notification: n,
    }) {
        Ok(v) => delivery.send(v),
        Err(e) => tracing::error!("cannot encode a location notification: {e}"),
    }
    last
}

fn distance_notification(w: &World, e: &DistanceEntry) -> SubscriptionNotification {
    SubscriptionNotification {
        callback_data: e.sub.callback_reference.callback_data.clone(),
        distance_criteria: Some(e.sub.criteria),
        entering_leaving_criteria: None,
        is_final_notification: None,
        link: vec![Link {
            rel: "DistanceNotificationSubscription".into(),
            href: e.sub.resource_url.clone().unwrap_or_default(),
        }],
        terminal_location: e.monitored.iter().map(|a| terminal(w, *a)).collect(),
    }
}

fn circle_notification(w: &World, e: &CircleEntry, a: Ipv4Addr) -> SubscriptionNotification {
    SubscriptionNotification {
        callback_data: e.sub.callback_reference.callback_data.clone(),
        distance_criteria: None,
        entering_leaving_criteria: Some(e.sub.entering_leaving_criteria),
        is_final_notification: None,
        link: vec![Link {
            rel: "CircleNotificationSubscription".into(),
            href: e.sub.resource_url.clone().unwrap_or_default(),
        }],
        terminal_location: vec![terminal(w, a)],
    }
}

/// Re-evaluates a distance subscription; `true` when it has ended (`count` reached).
fn step_distance(w: &World, e: &mut DistanceEntry, immediate: bool) -> bool {
    let met = distance_met(w, e);
    let notify = met && (!e.met || immediate);
    e.met = met;
    if !notify {
        return false;
    }
    let n = distance_notification(w, e);
    send(&e.delivery, &mut e.sent, e.sub.count, n)
}

/// Re-evaluates a circle subscription; `true` when it has ended.
fn step_circle(w: &World, e: &mut CircleEntry, immediate: bool) -> bool {
    let entering = e.sub.entering_leaving_criteria == EnteringLeavingCriteria::Entering;
    for a in e.addresses.clone() {
        let now = inside(w, &e.sub, a);
        let before = e.inside.insert(a, now);
        let crossed = match before {
            Some(b) => b != now,
            None => immediate,
        };
        if crossed && now == entering {
            let n = circle_notification(w, e, a);
            if send(&e.delivery, &mut e.sent, e.sub.count, n) {
                return true;
            }
        }
    }
    false
}

/// Called on every move of a UE (handover or waypoint step).
pub(crate) fn on_move(ran: &Ran) {
    let w = ran.world();
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    subs.distance.retain(|_, e| !step_distance(&w, e, false));
    subs.circle.retain(|_, e| !step_circle(&w, e, false));
    for e in subs.zone_status.values_mut() {
        step_zone_status(&w, e);
    }
}

impl Subscriptions {
    /// Drops the subscriptions whose `duration` ran out.
    fn purge(&mut self) {
        let now = SystemTime::now();
        self.distance
            .retain(|_, e| e.expires.is_none_or(|t| t > now));
        self.circle.retain(|_, e| e.expires.is_none_or(|t| t > now));
        self.periodic
            .retain(|_, e| e.expires.is_none_or(|t| t > now));
    }

    pub(crate) fn contains(&mut self, id: &str) -> bool {
        self.purge();
        self.distance.contains_key(id)
            || self.circle.contains_key(id)
            || self.periodic.contains_key(id)
            || self.zone_status.contains_key(id)
    }
}

// ---- distance subscriptions ----

fn validate_distance(
    ran: &Ran,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<
    (
        DistanceNotificationSubscription,
        Vec<Ipv4Addr>,
        Option<Ipv4Addr>,
    ),
    ApiError,
> {
    let b: DistanceNotificationSubscriptionBody = http::parse_body(headers, body)?;
    let s = b.distance_notification_subscription;
    http::check_callback(
        &s.callback_reference.notify_url,
        "callbackReference.notifyURL",
    )?;
    check_number(s.distance, "distance", 0.0)?;
    check_number(s.tracking_accuracy, "trackingAccuracy", 0.0)?;
    let w = ran.world();
    let monitored = users(&w, &s.monitored_address, "monitoredAddress")?;
    let reference = users(&w, &s.reference_address, "referenceAddress")?;
    let needed = if reference.is_empty() { 2 } else { 1 };
    if monitored.len() < needed {
        return Err(ApiError::bad_request(
            "monitoredAddress needs a user (two without a referenceAddress)",
        ));
    }
    Ok((s, monitored, reference.first().copied()))
}

async fn create_distance(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut sub, monitored, reference) = validate_distance(&ran, &headers, &body)?;
    let id = ran.new_id("dist-");
    let url = sub_url(&headers, "distance", &id);
    sub.resource_url = Some(url.clone());
    let delivery = ran
        .inner
        .notifier
        .start(sub.callback_reference.notify_url.clone(), id.clone());
    let mut e = DistanceEntry {
        expires: expiry(sub.duration),
        sub: sub.clone(),
        monitored,
        reference,
        met: false,
        sent: 0,
        delivery,
    };
    let ended = step_distance(&ran.world(), &mut e, sub.check_immediate);
    if !ended {
        lock(&ran.inner.geo).distance.insert(id, e);
    }
    Ok(created(
        &url,
        &DistanceNotificationSubscriptionBody {
            distance_notification_subscription: sub,
        },
    ))
}

fn list_body(
    headers: &HeaderMap,
    kind: &str,
    fill: impl FnOnce(&mut NotificationSubscriptionList),
) -> Response {
    let mut list = NotificationSubscriptionList {
        resource_url: format!("{}{ROOT}/subscriptions/{kind}", http::base_url(headers)),
        user_tracking_subscription: None,
        zonal_traffic_subscription: None,
        distance_notification_subscription: None,
        circle_notification_subscription: None,
        periodic_notification_subscription: None,
        zone_status_subscription: None,
    };
    fill(&mut list);
    http::json(
        StatusCode::OK,
        &NotificationSubscriptionListBody {
            notification_subscription_list: list,
        },
    )
}

async fn list_distance(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    let list = subs
        .distance
        .iter()
        .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
        .map(|(_, e)| e.sub.clone())
        .collect();
    list_body(&headers, "distance", |l| {
        l.distance_notification_subscription = Some(list)
    })
}

async fn read_distance(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    let e = subs
        .distance
        .get(&id)
        .ok_or_else(|| no_sub("distance", &id))?;
    Ok(http::json(
        StatusCode::OK,
        &DistanceNotificationSubscriptionBody {
            distance_notification_subscription: e.sub.clone(),
        },
    ))
}

async fn update_distance(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.geo).distance.contains_key(&id) {
        return Err(no_sub("distance", &id));
    }
    let (mut sub, monitored, reference) = validate_distance(&ran, &headers, &body)?;
    check_resource_url(&sub.resource_url, &id)?;
    sub.resource_url = Some(sub_url(&headers, "distance", &id));
    let mut subs = lock(&ran.inner.geo);
    let e = subs
        .distance
        .get_mut(&id)
        .ok_or_else(|| no_sub("distance", &id))?;
    if e.sub.callback_reference.notify_url != sub.callback_reference.notify_url {
        e.delivery = ran
            .inner
            .notifier
            .start(sub.callback_reference.notify_url.clone(), id.clone());
    }
    e.expires = expiry(sub.duration);
    e.sub = sub.clone();
    e.monitored = monitored;
    e.reference = reference;
    Ok(http::json(
        StatusCode::OK,
        &DistanceNotificationSubscriptionBody {
            distance_notification_subscription: sub,
        },
    ))
}

async fn delete_distance(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lock(&ran.inner.geo)
        .distance
        .remove(&id)
        .ok_or_else(|| no_sub("distance", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- circle subscriptions ----

fn validate_circle(
    ran: &Ran,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(CircleNotificationSubscription, Vec<Ipv4Addr>), ApiError> {
    let b: CircleNotificationSubscriptionBody = http::parse_body(headers, body)?;
    let s = b.circle_notification_subscription;
    http::check_callback(
        &s.callback_reference.notify_url,
        "callbackReference.notifyURL",
    )?;
    if !(s.latitude.is_finite() && (-90.0..=90.0).contains(&s.latitude)) {
        return Err(ApiError::bad_request("latitude must be within -90..90"));
    }
    if !(s.longitude.is_finite() && (-180.0..=180.0).contains(&s.longitude)) {
        return Err(ApiError::bad_request("longitude must be within -180..180"));
    }
    check_number(s.radius, "radius", 0.0)?;
    check_number(s.tracking_accuracy, "trackingAccuracy", 0.0)?;
    let addresses = users(&ran.world(), &s.address, "address")?;
    if addresses.is_empty() {
        return Err(ApiError::bad_request("address must name at least one user"));
    }
    Ok((s, addresses))
}

async fn create_circle(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut sub, addresses) = validate_circle(&ran, &headers, &body)?;
    let id = ran.new_id("circle-");
    let url = sub_url(&headers, "area/circle", &id);
    sub.resource_url = Some(url.clone());
    let delivery = ran
        .inner
        .notifier
        .start(sub.callback_reference.notify_url.clone(), id.clone());
    let mut e = CircleEntry {
        expires: expiry(sub.duration),
        sub: sub.clone(),
        addresses,
        inside: BTreeMap::new(),
        sent: 0,
        delivery,
    };
    let w = ran.world();
    let ended = if sub.check_immediate {
        step_circle(&w, &mut e, true)
    } else {
        // Learn where everyone is; only later crossings notify.
        for a in e.addresses.clone() {
            e.inside.insert(a, inside(&w, &e.sub, a));
        }
        false
    };
    drop(w);
    if !ended {
        lock(&ran.inner.geo).circle.insert(id, e);
    }
    Ok(created(
        &url,
        &CircleNotificationSubscriptionBody {
            circle_notification_subscription: sub,
        },
    ))
}

async fn list_circle(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    let list = subs
        .circle
        .iter()
        .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
        .map(|(_, e)| e.sub.clone())
        .collect();
    list_body(&headers, "area/circle", |l| {
        l.circle_notification_subscription = Some(list)
    })
}

async fn read_circle(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    let e = subs
        .circle
        .get(&id)
        .ok_or_else(|| no_sub("area/circle", &id))?;
    Ok(http::json(
        StatusCode::OK,
        &CircleNotificationSubscriptionBody {
            circle_notification_subscription: e.sub.clone(),
        },
    ))
}

async fn update_circle(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.geo).circle.contains_key(&id) {
        return Err(no_sub("area/circle", &id));
    }
    let (mut sub, addresses) = validate_circle(&ran, &headers, &body)?;
    check_resource_url(&sub.resource_url, &id)?;
    sub.resource_url = Some(sub_url(&headers, "area/circle", &id));
    let w = ran.world();
    let mut subs = lock(&ran.inner.geo);
    let e = subs
        .circle
        .get_mut(&id)
        .ok_or_else(|| no_sub("area/circle", &id))?;
    if e.sub.callback_reference.notify_url != sub.callback_reference.notify_url {
        e.delivery = ran
            .inner
            .notifier
            .start(sub.callback_reference.notify_url.clone(), id.clone());
    }
    e.expires = expiry(sub.duration);
    e.sub = sub.clone();
    e.inside = addresses
        .iter()
        .map(|a| (*a, inside(&w, &sub, *a)))
        .collect();
    e.addresses = addresses;
    Ok(http::json(
        StatusCode::OK,
        &CircleNotificationSubscriptionBody {
            circle_notification_subscription: sub,
        },
    ))
}

async fn delete_circle(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lock(&ran.inner.geo)
        .circle
        .remove(&id)
        .ok_or_else(|| no_sub("area/circle", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- periodic subscriptions ----

fn validate_periodic(
    ran: &Ran,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(PeriodicNotificationSubscription, Vec<Ipv4Addr>), ApiError> {
    let b: PeriodicNotificationSubscriptionBody = http::parse_body(headers, body)?;
    let s = b.periodic_notification_subscription;
    http::check_callback(
        &s.callback_reference.notify_url,
        "callbackReference.notifyURL",
    )?;
    if s.frequency == 0 {
        return Err(ApiError::bad_request("frequency must be at least 1 second"));
    }
    let addresses = users(&ran.world(), &s.address, "address")?;
    if addresses.is_empty() {
        return Err(ApiError::bad_request("address must name at least one user"));
    }
    Ok((s, addresses))
}

/// Sends the periodic notifications of subscription `id` until it is gone.
async fn periodic(ran: Ran, id: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate; the first notification comes after one period
    loop {
        tick.tick().await;
        let w = ran.world();
        let mut subs = lock(&ran.inner.geo);
        subs.purge();
        let Some(e) = subs.periodic.get(&id) else {
            return;
        };
        let last = e.expires.is_some_and(|t| SystemTime::now() + every >= t);
        let n = SubscriptionNotification {
            callback_data: e.sub.callback_reference.callback_data.clone(),
            distance_criteria: None,
            entering_leaving_criteria: None,
            is_final_notification: Some(last),
            link: vec![Link {
                rel: "PeriodicNotificationSubscription".into(),
                href: e.sub.resource_url.clone().unwrap_or_default(),
            }],
            terminal_location: e.addresses.iter().map(|a| terminal(&w, *a)).collect(),
        };
        match serde_json::to_value(SubscriptionNotificationBody {
            subscription_notification: n,
        }) {
            Ok(v) => e.delivery.send(v),
            Err(err) => tracing::error!("cannot encode a periodic notification: {err}"),
        }
        if last {
            subs.periodic.remove(&id);
            return;
        }
    }
}

fn start_periodic(ran: &Ran, id: &str, frequency: u32) -> tokio::task::AbortHandle {
    tokio::spawn(periodic(
        ran.clone(),
        id.to_string(),
        Duration::from_secs(u64::from(frequency)),
    ))
    .abort_handle()
}

async fn create_periodic(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut sub, addresses) = validate_periodic(&ran, &headers, &body)?;
    let id = ran.new_id("periodic-");
    let url = sub_url(&headers, "periodic", &id);
    sub.resource_url = Some(url.clone());
    let delivery = ran
        .inner
        .notifier
        .start(sub.callback_reference.notify_url.clone(), id.clone());
    let e = PeriodicEntry {
        expires: expiry(sub.duration),
        timer: start_periodic(&ran, &id, sub.frequency),
        sub: sub.clone(),
        addresses,
        delivery,
    };
    lock(&ran.inner.geo).periodic.insert(id, e);
    Ok(created(
        &url,
        &PeriodicNotificationSubscriptionBody {
            periodic_notification_subscription: sub,
        },
    ))
}

async fn list_periodic(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    let list = subs
        .periodic
        .iter()
        .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
        .map(|(_, e)| e.sub.clone())
        .collect();
    list_body(&headers, "periodic", |l| {
        l.periodic_notification_subscription = Some(list)
    })
}

async fn read_periodic(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut subs = lock(&ran.inner.geo);
    subs.purge();
    let e = subs
        .periodic
        .get(&id)
        .ok_or_else(|| no_sub("periodic", &id))?;
    Ok(http::json(
        StatusCode::OK,
        &PeriodicNotificationSubscriptionBody {
            periodic_notification_subscription: e.sub.clone(),
        },
    ))
}

async fn update_periodic(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.geo).periodic.contains_key(&id) {
        return Err(no_sub("periodic", &id));
    }
    let (mut sub, addresses) = validate_periodic(&ran, &headers, &body)?;
    check_resource_url(&sub.resource_url, &id)?;
    sub.resource_url = Some(sub_url(&headers, "periodic", &id));
    let mut subs = lock(&ran.inner.geo);
    let e = subs
        .periodic
        .get_mut(&id)
        .ok_or_else(|| no_sub("periodic", &id))?;
    if e.sub.callback_reference.notify_url != sub.callback_reference.notify_url {
        e.delivery = ran
            .inner
            .notifier
            .start(sub.callback_reference.notify_url.clone(), id.clone());
    }
    if e.sub.frequency != sub.frequency {
        e.timer.abort();
        e.timer = start_periodic(&ran, &id, sub.frequency);
    }
    e.expires = expiry(sub.duration);
    e.sub = sub.clone();
    e.addresses = addresses;
    Ok(http::json(
        StatusCode::OK,
        &PeriodicNotificationSubscriptionBody {
            periodic_notification_subscription: sub,
        },
    ))
}

async fn delete_periodic(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lock(&ran.inner.geo)
        .periodic
        .remove(&id)
        .ok_or_else(|| no_sub("periodic", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- zone status subscriptions ----

/// Users in `zone` and in each of its cells.
fn counts(w: &World, zone: &str) -> (u32, BTreeMap<String, u32>) {
    let mut aps = BTreeMap::new();
    let mut total = 0;
    for (i, c) in w.cells.iter().enumerate() {
        if c.zone == zone {
            let n = w.users_in_cell(i);
            total += n;
            aps.insert(c.name.clone(), n);
        }
    }
    (total, aps)
}

fn zone_status_notification(
    e: &ZoneStatusEntry,
    ap: Option<(&str, u32)>,
    in_zone: Option<u32>,
) -> serde_json::Value {
    let n = ZoneStatusNotification {
        zone_id: e.sub.zone_id.clone(),
        access_point_id: ap.map(|(a, _)| a.to_string()),
        callback_data: e.sub.callback_reference.callback_data.clone(),
        number_of_users_in_zone: in_zone,
        number_of_users_in_ap: ap.map(|(_, n)| n),
        operation_status: Some(OperationStatus::Serviceable),
        timestamp: TimeStamp::now(),
        link: vec![Link {
            rel: "ZoneStatusSubscription".into(),
            href: e.sub.resource_url.clone().unwrap_or_default(),
        }],
    };
    serde_json::to_value(ZoneStatusNotificationBody {
        zone_status_notification: n,
    })
    .unwrap_or_default()
}

/// Notifies the thresholds reached since the last evaluation.
fn step_zone_status(w: &World, e: &mut ZoneStatusEntry) {
    let (in_zone, in_ap) = counts(w, &e.sub.zone_id);
    if let Some(t) = e.sub.number_of_users_zone_threshold {
        if in_zone >= t && e.in_zone < t {
            e.delivery
                .send(zone_status_notification(e, None, Some(in_zone)));
        }
    }
    if let Some(t) = e.sub.number_of_users_ap_threshold {
        for (ap, n) in &in_ap {
            let before = e.in_ap.get(ap).copied().unwrap_or(0);
            if *n >= t && before < t {
                e.delivery
                    .send(zone_status_notification(e, Some((ap, *n)), Some(in_zone)));
            }
        }
    }
    e.in_zone = in_zone;
    e.in_ap = in_ap;
}

fn validate_zone_status(
    ran: &Ran,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<ZoneStatusSubscription, ApiError> {
    let b: ZoneStatusSubscriptionBody = http::parse_body(headers, body)?;
    let s = b.zone_status_subscription;
    http::check_callback(
        &s.callback_reference.notify_url,
        "callbackReference.notifyURL",
    )?;
    let w = ran.world();
    if !w.zones().contains(&s.zone_id) {
        return Err(ApiError::bad_request(format!(
            "no zone '{}' (zones: {})",
            s.zone_id,
            w.zones().join(", ")
        )));
    }
    Ok(s)
}

async fn create_zone_status(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut sub = validate_zone_status(&ran, &headers, &body)?;
    let id = ran.new_id("zs-");
    let url = sub_url(&headers, "zoneStatus", &id);
    sub.resource_url = Some(url.clone());
    let delivery = ran
        .inner
        .notifier
        .start(sub.callback_reference.notify_url.clone(), id.clone());
    // Thresholds count from now: a zone already above one notifies when it is reached again.
    let (in_zone, in_ap) = counts(&ran.world(), &sub.zone_id);
    let e = ZoneStatusEntry {
        sub: sub.clone(),
        in_zone,
        in_ap,
        delivery,
    };
    lock(&ran.inner.geo).zone_status.insert(id, e);
    Ok(created(
        &url,
        &ZoneStatusSubscriptionBody {
            zone_status_subscription: sub,
        },
    ))
}

async fn list_zone_status(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let subs = lock(&ran.inner.geo);
    let list = subs
        .zone_status
        .iter()
        .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
        .map(|(_, e)| e.sub.clone())
        .collect();
    list_body(&headers, "zoneStatus", |l| {
        l.zone_status_subscription = Some(list)
    })
}

async fn read_zone_status(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subs = lock(&ran.inner.geo);
    let e = subs
        .zone_status
        .get(&id)
        .ok_or_else(|| no_sub("zoneStatus", &id))?;
    Ok(http::json(
        StatusCode::OK,
        &ZoneStatusSubscriptionBody {
            zone_status_subscription: e.sub.clone(),
        },
    ))
}

async fn update_zone_status(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.geo).zone_status.contains_key(&id) {
        return Err(no_sub("zoneStatus", &id));
    }
    let mut sub = validate_zone_status(&ran, &headers, &body)?;
    check_resource_url(&sub.resource_url, &id)?;
    sub.resource_url = Some(sub_url(&headers, "zoneStatus", &id));
    let (in_zone, in_ap) = counts(&ran.world(), &sub.zone_id);
    let mut subs = lock(&ran.inner.geo);
    let e = subs
        .zone_status
        .get_mut(&id)
        .ok_or_else(|| no_sub("zoneStatus", &id))?;
    if e.sub.callback_reference.notify_url != sub.callback_reference.notify_url {
        e.delivery = ran
            .inner
            .notifier
            .start(sub.callback_reference.notify_url.clone(), id.clone());
    }
    e.sub = sub.clone();
    e.in_zone = in_zone;
    e.in_ap = in_ap;
    Ok(http::json(
        StatusCode::OK,
        &ZoneStatusSubscriptionBody {
            zone_status_subscription: sub,
        },
    ))
}

async fn delete_zone_status(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lock(&ran.inner.geo)
        .zone_status
        .remove(&id)
        .ok_or_else(|| no_sub("zoneStatus", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
