//! MEC 013 Location (`/location/v2`): user, zone and access point queries, and user tracking
//! and zonal traffic subscriptions with their `ZonalPresenceNotification`s.
//!
//! Mapping of the emulation onto MEC 013: a zone is the set of cells one MEC host serves
//! (zoneId = host name), an access point is a cell (accessPointId = cell name), a user's
//! address is `acr:<UE IPv4>`. A handover between zones is `Leaving` the old zone and
//! `Entering` the new one; between cells of one zone it is `Transferring`. In every
//! notification `currentAccessPointId` is the cell the UE is in now and
//! `previousAccessPointId` the one it left.

use crate::http::{self, ApiError};
use crate::notify::Delivery;
use crate::world::{CellChange, World};
use crate::{lock, Ran};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use mec_api::location::*;
use mec_http::oauth::Caller;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

/// Path prefix of this API.
pub const ROOT: &str = "/location/v2";

/// The live subscriptions of both kinds, by id.
#[derive(Default)]
pub struct Subscriptions {
    users: BTreeMap<String, UserEntry>,
    zonal: BTreeMap<String, ZonalEntry>,
}

struct UserEntry {
    sub: UserTrackingSubscription,
    address: Ipv4Addr,
    delivery: Delivery,
}

struct ZonalEntry {
    sub: ZonalTrafficSubscription,
    /// From `duration`; `None`: until deleted.
    expires: Option<SystemTime>,
    delivery: Delivery,
}

impl Subscriptions {
    /// Drops zonal traffic subscriptions whose `duration` ran out (MEC 013 sends nothing then).
    fn purge(&mut self) {
        let now = SystemTime::now();
        self.zonal.retain(|_, e| e.expires.is_none_or(|t| t > now));
    }

    pub(crate) fn contains(&mut self, id: &str) -> bool {
        self.purge();
        self.users.contains_key(id) || self.zonal.contains_key(id)
    }
}

pub(crate) fn routes() -> Router<Ran> {
    Router::new()
        .route("/location/v2/queries/users", get(users))
        .route("/location/v2/queries/zones", get(zones))
        .route("/location/v2/queries/zones/{zone}", get(zone))
        .route(
            "/location/v2/queries/zones/{zone}/accessPoints",
            get(access_points),
        )
        .route(
            "/location/v2/queries/zones/{zone}/accessPoints/{ap}",
            get(access_point),
        )
        .route(
            "/location/v2/subscriptions/userTracking",
            get(list_users).post(create_user),
        )
        .route(
            "/location/v2/subscriptions/userTracking/{id}",
            get(read_user).put(update_user).delete(delete_user),
        )
        .route(
            "/location/v2/subscriptions/zonalTraffic",
            get(list_zonal).post(create_zonal),
        )
        .route(
            "/location/v2/subscriptions/zonalTraffic/{id}",
            get(read_zonal).put(update_zonal).delete(delete_zonal),
        )
}

/// `acr:10.0.0.1` (or a bare `10.0.0.1`) to an IPv4 address.
pub fn parse_address(s: &str) -> Option<Ipv4Addr> {
    s.trim()
        .strip_prefix("acr:")
        .unwrap_or(s.trim())
        .parse()
        .ok()
}

pub fn acr(a: Ipv4Addr) -> String {
    format!("acr:{a}")
}

/// The zone events of one handover, as (zoneId, event).
pub fn zone_events(change: &CellChange) -> Vec<(String, UserEventType)> {
    if change.from.zone != change.to.zone {
        vec![
            (change.from.zone.clone(), UserEventType::Leaving),
            (change.to.zone.clone(), UserEventType::Entering),
        ]
    } else {
        vec![(change.to.zone.clone(), UserEventType::Transferring)]
    }
}

fn wants(criteria: &Option<Vec<UserEventType>>, e: UserEventType) -> bool {
    criteria
        .as_ref()
        .is_none_or(|c| c.is_empty() || c.contains(&e))
}

fn presence(
    change: &CellChange,
    zone: &str,
    event: UserEventType,
    cb: &CallbackReference,
    correlator: &Option<String>,
    link: Link,
) -> serde_json::Value {
    let n = ZonalPresenceNotification {
        client_correlator: correlator.clone(),
        zone_id: zone.to_string(),
        address: acr(change.address),
        user_event_type: event,
        current_access_point_id: change.to.name.clone(),
        previous_access_point_id: Some(change.from.name.clone()),
        timestamp: TimeStamp::from_system_time(change.at),
        callback_data: cb.callback_data.clone(),
        link: vec![link],
    };
    serde_json::to_value(ZonalPresenceNotificationBody {
        zonal_presence_notification: n,
    })
    .unwrap_or_default()
}

/// Called on every handover: queue the zone events each subscription asked for.
pub(crate) fn on_cell_change(ran: &Ran, change: &CellChange) {
    let key = change.address.to_string();
    let mut subs = lock(&ran.inner.location);
    subs.purge();
    for (zone, event) in zone_events(change) {
        for e in subs.users.values() {
            if e.address == change.address && wants(&e.sub.user_event_criteria, event) {
                let link = Link {
                    rel: "UserTrackingSubscription".into(),
                    href: e.sub.resource_url.clone().unwrap_or_default(),
                };
                let s = &e.sub;
                // In order per UE; several UEs' notifications in flight at once.
                e.delivery.send_keyed(
                    &key,
                    presence(
                        change,
                        &zone,
                        event,
                        &s.callback_reference,
                        &s.client_correlator,
                        link,
                    ),
                );
            }
        }
        for e in subs.zonal.values() {
            if e.sub.zone_id == zone && wants(&e.sub.user_event_criteria, event) {
                let link = Link {
                    rel: "ZonalTrafficSubscription".into(),
                    href: e.sub.resource_url.clone().unwrap_or_default(),
                };
                let s = &e.sub;
                // In order per UE; several UEs' notifications in flight at once.
                e.delivery.send_keyed(
                    &key,
                    presence(
                        change,
                        &zone,
                        event,
                        &s.callback_reference,
                        &s.client_correlator,
                        link,
                    ),
                );
            }
        }
    }
}

// ---- queries ----

fn user_info(w: &World, i: usize, base: &str) -> UserInfo {
    let u = &w.ues[i];
    let cell = &w.cells[u.cell];
    let now = TimeStamp::now();
    UserInfo {
        address: acr(u.address),
        access_point_id: cell.name.clone(),
        zone_id: cell.zone.clone(),
        resource_url: format!("{base}{ROOT}/queries/users?address={}", acr(u.address)),
        timestamp: now,
        location_info: Some(LocationInfo::point(u.latitude, u.longitude, Some(now))),
    }
}

async fn users(
    State(ran): State<Ran>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["zoneId", "accessPointId", "address"])?;
    let zones = http::values(&pairs, "zoneId");
    let aps = http::values(&pairs, "accessPointId");
    let mut addresses = Vec::new();
    for a in http::values(&pairs, "address") {
        addresses.push(parse_address(a).ok_or_else(|| {
            ApiError::bad_request(format!("address '{a}' is not an 'acr:<IPv4>' user address"))
        })?);
    }
    let base = http::base_url(&headers);
    let w = ran.world();
    // By address through the index (a consumer re-reading its UEs asks for them by the
    // hundred), otherwise every UE.
    let candidates: Vec<usize> = if addresses.is_empty() {
        (0..w.ues.len()).collect()
    } else {
        let mut found: Vec<usize> = addresses
            .iter()
            .filter_map(|a| w.ue_by_address(*a))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    };
    let user = candidates
        .into_iter()
        .filter(|&i| {
            let c = &w.cells[w.ues[i].cell];
            (zones.is_empty() || zones.contains(&c.zone.as_str()))
                && (aps.is_empty() || aps.contains(&c.name.as_str()))
        })
        .map(|i| user_info(&w, i, &base))
        .collect();
    let mut resource_url = format!("{base}{ROOT}/queries/users");
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        resource_url = format!("{resource_url}?{q}");
    }
    Ok(http::json(
        StatusCode::OK,
        &UserListBody {
            user_list: UserList { resource_url, user },
        },
    ))
}

fn zone_info(w: &World, zone: &str, base: &str) -> Option<ZoneInfo> {
    let cells: Vec<usize> = (0..w.cells.len())
        .filter(|&i| w.cells[i].zone == zone)
        .collect();
    if cells.is_empty() {
        return None;
    }
    Some(ZoneInfo {
        zone_id: zone.to_string(),
        number_of_access_points: cells.len() as u32,
        number_of_unserviceable_access_points: 0,
        number_of_users: cells.iter().map(|&i| w.users_in_cell(i)).sum(),
        resource_url: format!("{base}{ROOT}/queries/zones/{zone}"),
    })
}

fn no_zone(w: &World, zone: &str) -> ApiError {
    ApiError::not_found(format!(
        "no zone '{zone}' (zones: {})",
        w.zones().join(", ")
    ))
}

async fn zones(State(ran): State<Ran>, headers: HeaderMap) -> Result<Response, ApiError> {
    let base = http::base_url(&headers);
    let w = ran.world();
    let zone = w
        .zones()
        .iter()
        .filter_map(|z| zone_info(&w, z, &base))
        .collect();
    let body = ZoneListBody {
        zone_list: ZoneList {
            resource_url: format!("{base}{ROOT}/queries/zones"),
            zone,
        },
    };
    Ok(http::json(StatusCode::OK, &body))
}

async fn zone(
    State(ran): State<Ran>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> Result<Response, ApiError> {
    let w = ran.world();
    let info = zone_info(&w, &zone, &http::base_url(&headers)).ok_or_else(|| no_zone(&w, &zone))?;
    Ok(http::json(
        StatusCode::OK,
        &ZoneInfoBody { zone_info: info },
    ))
}

fn ap_info(w: &World, i: usize, base: &str) -> AccessPointInfo {
    let c = &w.cells[i];
    AccessPointInfo {
        access_point_id: c.name.clone(),
        connection_type: ConnectionType::Macro,
        operation_status: OperationStatus::Serviceable,
        number_of_users: w.users_in_cell(i),
        resource_url: format!(
            "{base}{ROOT}/queries/zones/{}/accessPoints/{}",
            c.zone, c.name
        ),
        location_info: Some(LocationInfo::point(c.latitude, c.longitude, None)),
        interest_realm: None,
    }
}

async fn access_points(
    State(ran): State<Ran>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["interestRealm"])?;
    let base = http::base_url(&headers);
    let w = ran.world();
    if zone_info(&w, &zone, &base).is_none() {
        return Err(no_zone(&w, &zone));
    }
    // Emulated cells have no interest realm: a realm filter selects none.
    let access_point = if http::values(&pairs, "interestRealm").is_empty() {
        (0..w.cells.len())
            .filter(|&i| w.cells[i].zone == zone)
            .map(|i| ap_info(&w, i, &base))
            .collect()
    } else {
        Vec::new()
    };
    let body = AccessPointListBody {
        access_point_list: AccessPointList {
            resource_url: format!("{base}{ROOT}/queries/zones/{zone}/accessPoints"),
            zone_id: zone,
            access_point,
        },
    };
    Ok(http::json(StatusCode::OK, &body))
}

async fn access_point(
    State(ran): State<Ran>,
    headers: HeaderMap,
    Path((zone, ap)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let w = ran.world();
    let i = w
        .cell_index(&ap)
        .filter(|&i| w.cells[i].zone == zone)
        .ok_or_else(|| ApiError::not_found(format!("no access point '{ap}' in zone '{zone}'")))?;
    let body = AccessPointInfoBody {
        access_point_info: ap_info(&w, i, &http::base_url(&headers)),
    };
    Ok(http::json(StatusCode::OK, &body))
}

// ---- subscriptions ----

pub(crate) fn sub_url(headers: &HeaderMap, kind: &str, id: &str) -> String {
    format!(
        "{}{ROOT}/subscriptions/{kind}/{id}",
        http::base_url(headers)
    )
}

pub(crate) fn created<T: serde::Serialize>(url: &str, body: &T) -> Response {
    let mut resp = http::json(StatusCode::CREATED, body);
    if let Ok(v) = url.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// In a PUT, a `resourceURL` (if given) must name the subscription being updated.
pub(crate) fn check_resource_url(given: &Option<String>, id: &str) -> Result<(), ApiError> {
    match given {
        Some(u) if !u.ends_with(&format!("/{id}")) => Err(ApiError::bad_request(format!(
            "resourceURL '{u}' does not name subscription '{id}'"
        ))),
        _ => Ok(()),
    }
}

fn validate_user(
    ran: &Ran,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(UserTrackingSubscription, Ipv4Addr), ApiError> {
    let b: UserTrackingSubscriptionBody = http::parse_body(headers, body)?;
    let mut s = b.user_tracking_subscription;
    http::check_callback(
        &s.callback_reference.notify_url,
        "callbackReference.notifyURL",
    )?;
    let Some(address) = parse_address(&s.address) else {
        return Err(ApiError::bad_request(format!(
            "address '{}' is not an 'acr:<IPv4>' user address",
            s.address
        )));
    };
    let w = ran.world();
    if w.ue_by_address(address).is_none() {
        let known: Vec<String> = w.ues.iter().map(|u| acr(u.address)).collect();
        return Err(ApiError::bad_request(format!(
            "no user with address '{}' (users: {})",
            s.address,
            known.join(", ")
        )));
    }
    s.address = acr(address);
    Ok((s, address))
}

async fn create_user(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut sub, address) = validate_user(&ran, &headers, &body)?;
    let id = ran.new_id("ut-");
    let url = sub_url(&headers, "userTracking", &id);
    sub.resource_url = Some(url.clone());
    let delivery = ran
        .inner
        .notifier
        .start(sub.callback_reference.notify_url.clone(), id.clone());
    lock(&ran.inner.location).users.insert(
        id,
        UserEntry {
            sub: sub.clone(),
            address,
            delivery,
        },
    );
    Ok(created(
        &url,
        &UserTrackingSubscriptionBody {
            user_tracking_subscription: sub,
        },
    ))
}

async fn list_users(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let subs = lock(&ran.inner.location);
    let list = NotificationSubscriptionList {
        resource_url: format!(
            "{}{ROOT}/subscriptions/userTracking",
            http::base_url(&headers)
        ),
        user_tracking_subscription: Some(
            subs.users
                .iter()
                .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
                .map(|(_, e)| e.sub.clone())
                .collect(),
        ),
        zonal_traffic_subscription: None,
        distance_notification_subscription: None,
        circle_notification_subscription: None,
        periodic_notification_subscription: None,
        zone_status_subscription: None,
    };
    http::json(
        StatusCode::OK,
        &NotificationSubscriptionListBody {
            notification_subscription_list: list,
        },
    )
}

pub(crate) fn no_sub(kind: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no {kind} subscription '{id}'"))
}

async fn read_user(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let subs = lock(&ran.inner.location);
    let e = subs
        .users
        .get(&id)
        .ok_or_else(|| no_sub("userTracking", &id))?;
    Ok(http::json(
        StatusCode::OK,
        &UserTrackingSubscriptionBody {
            user_tracking_subscription: e.sub.clone(),
        },
    ))
}

async fn update_user(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.location).users.contains_key(&id) {
        return Err(no_sub("userTracking", &id));
    }
    let (mut sub, address) = validate_user(&ran, &headers, &body)?;
    check_resource_url(&sub.resource_url, &id)?;
    sub.resource_url = Some(sub_url(&headers, "userTracking", &id));
    let mut subs = lock(&ran.inner.location);
    let e = subs
        .users
        .get_mut(&id)
        .ok_or_else(|| no_sub("userTracking", &id))?;
    if e.sub.callback_reference.notify_url != sub.callback_reference.notify_url {
        e.delivery = ran
            .inner
            .notifier
            .start(sub.callback_reference.notify_url.clone(), id.clone());
    }
    e.sub = sub.clone();
    e.address = address;
    Ok(http::json(
        StatusCode::OK,
        &UserTrackingSubscriptionBody {
            user_tracking_subscription: sub,
        },
    ))
}

async fn delete_user(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    lock(&ran.inner.location)
        .users
        .remove(&id)
        .ok_or_else(|| no_sub("userTracking", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn validate_zonal(
    ran: &Ran,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<ZonalTrafficSubscription, ApiError> {
    let b: ZonalTrafficSubscriptionBody = http::parse_body(headers, body)?;
    let s = b.zonal_traffic_subscription;
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

/// When a subscription with this `duration` ends (`None`: never). A duration past the
/// clock's range is refused rather than overflowing.
fn expiry_of(s: &ZonalTrafficSubscription) -> Result<Option<SystemTime>, ApiError> {
    match s.duration.filter(|d| *d > 0) {
        None => Ok(None),
        Some(d) => SystemTime::now()
            .checked_add(Duration::from_secs(d))
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("duration {d} s is too large"))),
    }
}

/// The subscription as answered: `duration` is the time it is still valid for.
fn zonal_view(e: &ZonalEntry) -> ZonalTrafficSubscription {
    let mut s = e.sub.clone();
    if let Some(t) = e.expires {
        let left = t.duration_since(SystemTime::now()).unwrap_or_default();
        // Round up so a live subscription never reports 0 (which would mean "policy default").
        s.duration = Some(left.as_secs() + u64::from(left.subsec_nanos() > 0));
    }
    s
}

async fn create_zonal(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut sub = validate_zonal(&ran, &headers, &body)?;
    let expires = expiry_of(&sub)?;
    let id = ran.new_id("zt-");
    let url = sub_url(&headers, "zonalTraffic", &id);
    sub.resource_url = Some(url.clone());
    let delivery = ran
        .inner
        .notifier
        .start(sub.callback_reference.notify_url.clone(), id.clone());
    let e = ZonalEntry {
        expires,
        sub,
        delivery,
    };
    let view = zonal_view(&e);
    lock(&ran.inner.location).zonal.insert(id, e);
    Ok(created(
        &url,
        &ZonalTrafficSubscriptionBody {
            zonal_traffic_subscription: view,
        },
    ))
}

async fn list_zonal(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let mut subs = lock(&ran.inner.location);
    subs.purge();
    let list = NotificationSubscriptionList {
        resource_url: format!(
            "{}{ROOT}/subscriptions/zonalTraffic",
            http::base_url(&headers)
        ),
        user_tracking_subscription: None,
        zonal_traffic_subscription: Some(
            subs.zonal
                .iter()
                .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
                .map(|(_, e)| zonal_view(e))
                .collect(),
        ),
        distance_notification_subscription: None,
        circle_notification_subscription: None,
        periodic_notification_subscription: None,
        zone_status_subscription: None,
    };
    http::json(
        StatusCode::OK,
        &NotificationSubscriptionListBody {
            notification_subscription_list: list,
        },
    )
}

async fn read_zonal(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut subs = lock(&ran.inner.location);
    subs.purge();
    let e = subs
        .zonal
        .get(&id)
        .ok_or_else(|| no_sub("zonalTraffic", &id))?;
    Ok(http::json(
        StatusCode::OK,
        &ZonalTrafficSubscriptionBody {
            zonal_traffic_subscription: zonal_view(e),
        },
    ))
}

async fn update_zonal(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    {
        let mut subs = lock(&ran.inner.location);
        subs.purge();
        if !subs.zonal.contains_key(&id) {
            return Err(no_sub("zonalTraffic", &id));
        }
    }
    let mut sub = validate_zonal(&ran, &headers, &body)?;
    let expires = expiry_of(&sub)?;
    check_resource_url(&sub.resource_url, &id)?;
    sub.resource_url = Some(sub_url(&headers, "zonalTraffic", &id));
    let mut subs = lock(&ran.inner.location);
    let e = subs
        .zonal
        .get_mut(&id)
        .ok_or_else(|| no_sub("zonalTraffic", &id))?;
    if e.sub.callback_reference.notify_url != sub.callback_reference.notify_url {
        e.delivery = ran
            .inner
            .notifier
            .start(sub.callback_reference.notify_url.clone(), id.clone());
    }
    e.expires = expires;
    e.sub = sub;
    let view = zonal_view(e);
    Ok(http::json(
        StatusCode::OK,
        &ZonalTrafficSubscriptionBody {
            zonal_traffic_subscription: view,
        },
    ))
}

async fn delete_zonal(
    State(ran): State<Ran>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut subs = lock(&ran.inner.location);
    subs.purge();
    subs.zonal
        .remove(&id)
        .ok_or_else(|| no_sub("zonalTraffic", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::world;

    #[test]
    fn events_between_and_within_zones() {
        let mut w = world();
        let a2 = w.cell_index("a2").unwrap();
        let inside = w.hand_over(0, a2, SystemTime::now()).unwrap();
        assert_eq!(
            zone_events(&inside),
            vec![("edge-a".to_string(), UserEventType::Transferring)]
        );
        let b1 = w.cell_index("b1").unwrap();
        let across = w.hand_over(0, b1, SystemTime::now()).unwrap();
        assert_eq!(
            zone_events(&across),
            vec![
                ("edge-a".to_string(), UserEventType::Leaving),
                ("edge-b".to_string(), UserEventType::Entering)
            ]
        );
    }

    #[test]
    fn criteria_and_addresses() {
        assert!(wants(&None, UserEventType::Leaving));
        assert!(wants(&Some(vec![]), UserEventType::Leaving));
        assert!(!wants(
            &Some(vec![UserEventType::Entering]),
            UserEventType::Leaving
        ));
        assert_eq!(
            parse_address("acr:10.0.0.1"),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(parse_address("10.0.0.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse_address("tel:123"), None);
    }
}
