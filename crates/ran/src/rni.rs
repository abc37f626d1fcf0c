//! MEC 012 RNIS (`/rni/v2`): cell change subscriptions (create, list, read, update, delete,
//! expiry), the `CellChangeNotification` sent on each handover, and the `rab_info` and
//! `plmn_info` queries.
//!
//! Only `CellChangeSubscription` is served: the other MEC 012 subscription types are refused
//! with 422 (the spec's "capabilities required by the request are not supported").

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
use mec_api::rni::*;
use mec_http::oauth::Caller;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// Path prefix of this API.
pub const ROOT: &str = "/rni/v2";

/// The live cell change subscriptions, by id.
#[derive(Default)]
pub struct Subscriptions {
    subs: BTreeMap<String, Entry>,
}

impl Subscriptions {
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.subs.contains_key(id)
    }
}

struct Entry {
    sub: CellChangeSubscription,
    delivery: Delivery,
}

pub(crate) fn routes() -> Router<Ran> {
    Router::new()
        .route("/rni/v2/subscriptions", get(list).post(create))
        .route(
            "/rni/v2/subscriptions/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/rni/v2/queries/rab_info", get(rab_info))
        .route("/rni/v2/queries/plmn_info", get(plmn_info))
}

/// Does a subscription's filter select this handover? Absent criteria do not filter; a
/// missing `hoStatus` means COMPLETED (the spec's default); an `ecgi` list selects handovers
/// whose source or target cell is in it; `associateId` selects by UE IPv4 address. The
/// emulated RAN knows no app instances, so `appInstanceId` is kept but does not filter.
pub fn filter_matches(f: &FilterCriteriaAssocHo, change: &CellChange, status: HoStatus) -> bool {
    let status_ok = if f.ho_status.is_empty() {
        status == HoStatus::Completed
    } else {
        f.ho_status.contains(&status)
    };
    let ue_ok = f.associate_id.is_empty()
        || f.associate_id.iter().any(|a| {
            a.type_ == AssociateIdType::UeIpv4Address
                && a.value.trim().parse::<Ipv4Addr>() == Ok(change.address)
        });
    let cell_ok = f.ecgi.is_empty()
        || f.ecgi
            .iter()
            .any(|e| *e == change.from.ecgi || *e == change.to.ecgi);
    status_ok && ue_ok && cell_ok
}

/// The notification of one handover to one subscription.
pub fn notification(
    change: &CellChange,
    self_href: &str,
    status: HoStatus,
) -> CellChangeNotification {
    CellChangeNotification {
        notification_type: CELL_CHANGE_NOTIFICATION.to_string(),
        time_stamp: Some(TimeStamp::from_system_time(change.at)),
        associate_id: vec![AssociateId::ue_ipv4(change.address)],
        src_ecgi: change.from.ecgi.clone(),
        trg_ecgi: vec![change.to.ecgi.clone()],
        ho_status: status,
        temp_ue_id: None,
        links: Some(NotificationLinks {
            subscription: LinkType {
                href: self_href.to_string(),
            },
        }),
        ferry_merged_handovers: None,
        ferry_lost_notifications: None,
    }
}

/// Two CellChange notifications of one UE as one, when the subscriber's queue is full: the
/// later one, from the cell the earlier one left, counting the handovers both stand for in
/// `ferryMergedHandovers`. The subscriber learns where the UE is now and that it passed
/// through cells it was not told of. Only COMPLETED ones count and merge: a later
/// IN_PREPARATION (or CANCELLED) never hides an earlier COMPLETED (it is dropped), and an
/// earlier one gives way to whatever follows.
pub fn merge_cell_changes(
    older: serde_json::Value,
    mut newer: serde_json::Value,
) -> serde_json::Value {
    const MERGED: &str = "ferryMergedHandovers";
    let completed = |v: &serde_json::Value| {
        v.get("hoStatus").and_then(|s| s.as_u64()) == Some(HoStatus::Completed as u64)
    };
    match (completed(&older), completed(&newer)) {
        (false, _) => return newer,
        (true, false) => return older,
        (true, true) => {}
    }
    let hops = |v: &serde_json::Value| v.get(MERGED).and_then(|n| n.as_u64()).unwrap_or(1);
    let total = hops(&older) + hops(&newer);
    if let (Some(src), serde_json::Value::Object(m)) = (older.get("srcEcgi"), &mut newer) {
        m.insert("srcEcgi".into(), src.clone());
        m.insert(MERGED.into(), total.into());
    }
    newer
}

/// Called on every step of a handover (`IN_PREPARATION`, then `COMPLETED` once the UE is in
/// the target cell): queue a notification to each matching subscription.
pub(crate) fn on_cell_change(ran: &Ran, change: &CellChange, status: HoStatus) {
    let subs = lock(&ran.inner.rni);
    for (id, e) in &subs.subs {
        if filter_matches(&e.sub.filter_criteria_assoc_ho, change, status) {
            let href = e
                .sub
                .links
                .as_ref()
                .map(|l| l.self_.href.clone())
                .unwrap_or_default();
            match serde_json::to_value(notification(change, &href, status)) {
                // Per UE: in order, and merged with the UE's earlier ones if the queue is full.
                Ok(body) => e.delivery.send_keyed(&change.address.to_string(), body),
                Err(err) => {
                    tracing::error!(subscription = %id, "cannot encode notification: {err}")
                }
            }
        }
    }
}

/// Called with every measurement report of the radio model: MEC 012's measurement
/// subscriptions (MeasRepUe, NrMeasRepUe, MeasTa) are served from these.
pub(crate) fn on_measurement(_ran: &Ran, _report: &crate::measurement::UeMeasurement) {
    // The measurement subscriptions come with the rest of MEC 012 (issue 14, deliverable 3).
}

/// Checks a subscription body and fills the defaults the spec asks the answer to carry.
fn validate(body: &HeaderMap, bytes: &Bytes) -> Result<CellChangeSubscription, ApiError> {
    let value: serde_json::Value = http::parse_body(body, bytes)?;
    let Some(kind) = value.get("subscriptionType").and_then(|v| v.as_str()) else {
        return Err(ApiError::bad_request(format!(
            "subscriptionType is missing or not a string (use \"{CELL_CHANGE_SUBSCRIPTION}\")"
        )));
    };
    if kind != CELL_CHANGE_SUBSCRIPTION {
        return Err(if SUBSCRIPTION_TYPES.iter().any(|(_, t)| *t == kind) {
            ApiError::unprocessable(format!(
                "{kind} is not supported by ferry's RAN (only {CELL_CHANGE_SUBSCRIPTION})"
            ))
        } else {
            ApiError::bad_request(format!("unknown subscriptionType '{kind}'"))
        });
    }
    let mut sub: CellChangeSubscription = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("malformed CellChangeSubscription: {e}")))?;
    let Some(cb) = sub.callback_reference.as_deref() else {
        return Err(ApiError::bad_request(
            "callbackReference is required (websocket delivery is not offered)",
        ));
    };
    http::check_callback(cb, "callbackReference")?;
    for a in &sub.filter_criteria_assoc_ho.associate_id {
        if a.type_ == AssociateIdType::UeIpv4Address && a.value.trim().parse::<Ipv4Addr>().is_err()
        {
            return Err(ApiError::bad_request(format!(
                "associateId value '{}' is not an IPv4 address (type 1 = UE_IPv4_ADDRESS)",
                a.value
            )));
        }
    }
    if let Some(d) = sub.expiry_deadline {
        if d.nano_seconds >= 1_000_000_000 {
            return Err(ApiError::bad_request(format!(
                "expiryDeadline.nanoSeconds {} must be below 1000000000",
                d.nano_seconds
            )));
        }
        if d.to_system_time() <= SystemTime::now() {
            return Err(ApiError::unprocessable(format!(
                "expiryDeadline {}.{:09} is in the past",
                d.seconds, d.nano_seconds
            )));
        }
    }
    if sub.filter_criteria_assoc_ho.ho_status.is_empty() {
        sub.filter_criteria_assoc_ho.ho_status = vec![HoStatus::Completed];
    }
    Ok(sub)
}

/// The delivery of a CellChange subscription: per UE in order, merged per UE when full.
fn start_delivery(ran: &Ran, url: String, id: &str) -> Delivery {
    ran.inner.notifier.start_with(
        url,
        id.to_string(),
        crate::notify::Coalesce::Merge(merge_cell_changes),
    )
}

/// How the delivery of each subscription fares (for `/ferry/ran/v1/stats`).
pub(crate) fn delivery_stats(ran: &Ran) -> Vec<(String, crate::notify::DeliveryStats)> {
    lock(&ran.inner.rni)
        .subs
        .iter()
        .map(|(id, e)| (id.clone(), e.delivery.stats()))
        .collect()
}

fn self_href(headers: &HeaderMap, id: &str) -> String {
    format!("{}{ROOT}/subscriptions/{id}", http::base_url(headers))
}

async fn create(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut sub = validate(&headers, &body)?;
    let id = ran.new_id("rni-");
    let href = self_href(&headers, &id);
    sub.links = Some(Links {
        self_: LinkType { href: href.clone() },
    });
    let url = sub.callback_reference.clone().unwrap_or_default();
    let delivery = start_delivery(&ran, url, &id);
    if let Some(d) = sub.expiry_deadline {
        arm_expiry(&ran, &id, d);
    }
    lock(&ran.inner.rni).subs.insert(
        id.clone(),
        Entry {
            sub: sub.clone(),
            delivery,
        },
    );
    tracing::info!(subscription = %id, "cell change subscription created");
    let mut resp = http::json(StatusCode::CREATED, &sub);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["subscription_type"])?;
    let mut wanted: Vec<&str> = Vec::new();
    for v in http::values(&pairs, "subscription_type") {
        match SUBSCRIPTION_TYPES.iter().find(|(q, _)| *q == v) {
            Some((_, t)) => wanted.push(t),
            None => {
                let allowed: Vec<&str> = SUBSCRIPTION_TYPES.iter().map(|(q, _)| *q).collect();
                return Err(ApiError::bad_request(format!(
                    "subscription_type '{v}' is not one of: {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    let subs = lock(&ran.inner.rni);
    let subscription = subs
        .subs
        .iter()
        .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
        .map(|(_, e)| e)
        .filter(|e| wanted.is_empty() || wanted.contains(&e.sub.subscription_type.as_str()))
        .map(|e| SubscriptionRef {
            href: e
                .sub
                .links
                .as_ref()
                .map(|l| l.self_.href.clone())
                .unwrap_or_default(),
            subscription_type: e.sub.subscription_type.clone(),
        })
        .collect();
    let base = http::base_url(&headers);
    let body = SubscriptionLinkList {
        links: SubscriptionLinks {
            self_: LinkType {
                href: format!("{base}{ROOT}/subscriptions"),
            },
            subscription,
        },
    };
    Ok(http::json(StatusCode::OK, &body))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no RNIS subscription '{id}'"))
}

async fn read(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let subs = lock(&ran.inner.rni);
    let e = subs.subs.get(&id).ok_or_else(|| unknown(&id))?;
    Ok(http::json(StatusCode::OK, &e.sub))
}

async fn update(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.rni).subs.contains_key(&id) {
        return Err(unknown(&id));
    }
    let mut sub = validate(&headers, &body)?;
    let href = self_href(&headers, &id);
    // The spec puts `_links` in PUT bodies; if given, it must name this subscription.
    if let Some(l) = &sub.links {
        if !l.self_.href.ends_with(&format!("/subscriptions/{id}")) {
            return Err(ApiError::bad_request(format!(
                "_links.self '{}' does not name subscription '{id}'",
                l.self_.href
            )));
        }
    }
    sub.links = Some(Links {
        self_: LinkType { href },
    });
    let mut subs = lock(&ran.inner.rni);
    // Deleted meanwhile: still a 404.
    let entry = subs.subs.get_mut(&id).ok_or_else(|| unknown(&id))?;
    if entry.sub.callback_reference != sub.callback_reference {
        let url = sub.callback_reference.clone().unwrap_or_default();
        entry.delivery = start_delivery(&ran, url, &id);
    }
    entry.sub = sub.clone();
    drop(subs);
    if let Some(d) = sub.expiry_deadline {
        arm_expiry(&ran, &id, d);
    }
    Ok(http::json(StatusCode::OK, &sub))
}

async fn remove(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    lock(&ran.inner.rni)
        .subs
        .remove(&id)
        .ok_or_else(|| unknown(&id))?;
    tracing::info!(subscription = %id, "cell change subscription deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes the subscription when its deadline passes and tells its callback. A PUT that moves
/// the deadline arms a new timer; a timer that wakes before the current deadline does nothing.
fn arm_expiry(ran: &Ran, id: &str, deadline: TimeStamp) {
    let (ran, id) = (ran.clone(), id.to_string());
    tokio::spawn(async move {
        let wait = deadline
            .to_system_time()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        let mut subs = lock(&ran.inner.rni);
        let due = subs
            .subs
            .get(&id)
            .and_then(|e| e.sub.expiry_deadline)
            .map(|d| d.to_system_time() <= SystemTime::now());
        if due != Some(true) {
            return;
        }
        let Some(e) = subs.subs.remove(&id) else {
            return;
        };
        drop(subs);
        let href = e
            .sub
            .links
            .as_ref()
            .map(|l| l.self_.href.clone())
            .unwrap_or_default();
        let n = ExpiryNotification {
            notification_type: EXPIRY_NOTIFICATION.to_string(),
            links: ExpiryLinks {
                self_: href.clone(),
                subscription: Some(LinkType { href }),
            },
            expiry_deadline: deadline,
            time_stamp: Some(TimeStamp::now()),
        };
        tracing::info!(subscription = %id, "cell change subscription expired");
        if let Ok(body) = serde_json::to_value(n) {
            // The worker delivers this last message, then ends as `e.delivery` is dropped.
            e.delivery.send(body);
        }
    });
}

/// The default bearer every emulated UE has: E-RAB 1, QCI 9 (non-GBR, best effort).
const ERAB_ID: u32 = 1;
const QCI: u32 = 9;

/// Parses the numeric values of a query parameter (400 on a non-number).
fn numbers(pairs: &[(String, String)], name: &str) -> Result<Vec<u64>, ApiError> {
    http::values(pairs, name)
        .into_iter()
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name} '{v}' is not a number")))
        })
        .collect()
}

/// `rab_info` filters that select on data the emulated RAN does not have (IPv6, NAT, GTP,
/// GBR bit rates): any value given matches no UE.
const ABSENT_FILTERS: [&str; 7] = [
    "ue_ipv6_address",
    "nated_ip_address",
    "gtp_teid",
    "erab_mbr_dl",
    "erab_mbr_ul",
    "erab_gbr_dl",
    "erab_gbr_ul",
];

/// The cells and UEs a `rab_info` query selects.
pub fn rab_cells(world: &World, pairs: &[(String, String)]) -> Result<Vec<CellUserInfo>, ApiError> {
    let cell_ids = http::values(pairs, "cell_id");
    let mut addresses = Vec::new();
    for v in http::values(pairs, "ue_ipv4_address") {
        addresses.push(v.parse::<Ipv4Addr>().map_err(|_| {
            ApiError::bad_request(format!("ue_ipv4_address '{v}' is not an IPv4 address"))
        })?);
    }
    let erab_ids = numbers(pairs, "erab_id")?;
    let qcis = numbers(pairs, "qci")?;
    for f in ABSENT_FILTERS {
        if f.starts_with("erab_") {
            numbers(pairs, f)?;
        }
    }
    let none = ABSENT_FILTERS
        .iter()
        .any(|f| !http::values(pairs, f).is_empty())
        || (!erab_ids.is_empty() && !erab_ids.contains(&(ERAB_ID as u64)))
        || (!qcis.is_empty() && !qcis.contains(&(QCI as u64)));
    let mut out = Vec::new();
    if none {
        return Ok(out);
    }
    for (i, cell) in world.cells.iter().enumerate() {
        if !cell_ids.is_empty() && !cell_ids.contains(&cell.ecgi.cell_id.as_str()) {
            continue;
        }
        let ue_info: Vec<UeInfo> = world
            .ues
            .iter()
            .filter(|u| u.cell == i && (addresses.is_empty() || addresses.contains(&u.address)))
            .map(|u| UeInfo {
                associate_id: vec![AssociateId::ue_ipv4(u.address)],
                erab_info: vec![ErabInfo {
                    erab_id: ERAB_ID,
                    erab_qos_parameters: ErabQosParameters {
                        qci: QCI,
                        qos_information: None,
                    },
                }],
            })
            .collect();
        // The spec gives ueInfo at least one element: cells without selected UEs are left out.
        if !ue_info.is_empty() {
            out.push(CellUserInfo {
                ecgi: cell.ecgi.clone(),
                ue_info,
            });
        }
    }
    Ok(out)
}

async fn rab_info(State(ran): State<Ran>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let mut allowed = vec!["app_ins_id", "cell_id", "ue_ipv4_address", "erab_id", "qci"];
    allowed.extend(ABSENT_FILTERS);
    let pairs = http::query_pairs(q.as_deref(), &allowed)?;
    let app = http::values(&pairs, "app_ins_id");
    if app.len() > 1 {
        return Err(ApiError::bad_request(
            "app_ins_id takes one application instance id",
        ));
    }
    let cell_user_info = rab_cells(&ran.world(), &pairs)?;
    let body = RabInfo {
        app_instance_id: app.first().map(|s| s.to_string()).unwrap_or_default(),
        request_id: ran.new_id("rab-"),
        cell_user_info,
        time_stamp: Some(TimeStamp::now()),
    };
    Ok(http::json(StatusCode::OK, &body))
}

async fn plmn_info(State(ran): State<Ran>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["app_ins_id"])?;
    let apps = http::values(&pairs, "app_ins_id");
    if apps.is_empty() {
        return Err(ApiError::bad_request(
            "app_ins_id is required (comma-separated application instance ids)",
        ));
    }
    let mut plmn: Vec<Plmn> = Vec::new();
    for c in &ran.world().cells {
        if !plmn.contains(&c.ecgi.plmn) {
            plmn.push(c.ecgi.plmn.clone());
        }
    }
    let now = TimeStamp::now();
    let body: Vec<PlmnInfo> = apps
        .iter()
        .map(|a| PlmnInfo {
            app_instance_id: a.to_string(),
            plmn: plmn.clone(),
            time_stamp: Some(now),
        })
        .collect();
    Ok(http::json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::world;

    fn change(w: &mut World, to: &str) -> CellChange {
        let c = w.cell_index(to).unwrap();
        w.hand_over(0, c, SystemTime::now()).unwrap()
    }

    fn ecgi(w: &World, cell: &str) -> Ecgi {
        w.cells[w.cell_index(cell).unwrap()].ecgi.clone()
    }

    #[test]
    fn filters_by_ue_cell_and_status() {
        let mut w = world();
        let (a2, b1) = (ecgi(&w, "a2"), ecgi(&w, "b1"));
        let ch = change(&mut w, "b1"); // ue1 (10.100.0.1): a1 -> b1
        let any = FilterCriteriaAssocHo::default();
        assert!(filter_matches(&any, &ch, HoStatus::Completed));
        assert!(
            !filter_matches(&any, &ch, HoStatus::InPreparation),
            "default is COMPLETED only"
        );

        let ue = |ip: &str| FilterCriteriaAssocHo {
            associate_id: vec![AssociateId {
                type_: AssociateIdType::UeIpv4Address,
                value: ip.into(),
            }],
            ..Default::default()
        };
        assert!(filter_matches(&ue("10.100.0.1"), &ch, HoStatus::Completed));
        assert!(!filter_matches(&ue("10.100.0.2"), &ch, HoStatus::Completed));
        let wrong_type = FilterCriteriaAssocHo {
            associate_id: vec![AssociateId {
                type_: AssociateIdType::GtpTeid,
                value: "10.100.0.1".into(),
            }],
            ..Default::default()
        };
        assert!(!filter_matches(&wrong_type, &ch, HoStatus::Completed));

        let cells = |e: Vec<Ecgi>| FilterCriteriaAssocHo {
            ecgi: e,
            ..Default::default()
        };
        assert!(
            filter_matches(&cells(vec![b1.clone()]), &ch, HoStatus::Completed),
            "target cell"
        );
        assert!(
            filter_matches(&cells(vec![ch.from.ecgi.clone()]), &ch, HoStatus::Completed),
            "source cell"
        );
        assert!(
            !filter_matches(&cells(vec![a2]), &ch, HoStatus::Completed),
            "unrelated cell"
        );

        let both = FilterCriteriaAssocHo {
            ecgi: vec![b1],
            ..ue("10.100.0.9")
        };
        assert!(
            !filter_matches(&both, &ch, HoStatus::Completed),
            "all criteria must hold"
        );
    }

    #[test]
    fn notification_carries_both_ecgis_and_the_ue() {
        let mut w = world();
        let ch = change(&mut w, "b1");
        let v = serde_json::to_value(notification(
            &ch,
            "http://x/rni/v2/subscriptions/s1",
            HoStatus::Completed,
        ))
        .unwrap();
        assert_eq!(v["notificationType"], "CellChangeNotification");
        assert_eq!(v["srcEcgi"]["cellId"], "0000001");
        assert_eq!(v["trgEcgi"][0]["cellId"], "0000003");
        assert_eq!(
            v["associateId"][0],
            serde_json::json!({"type": 1, "value": "10.100.0.1"})
        );
        assert_eq!(v["hoStatus"], 3);
        assert_eq!(
            v["_links"]["subscription"]["href"],
            "http://x/rni/v2/subscriptions/s1"
        );
    }

    #[test]
    fn merged_cell_changes_go_from_the_first_source_to_the_last_target() {
        let mut w = world();
        let hops: Vec<serde_json::Value> = ["a2", "b1", "a1"]
            .iter()
            .map(|c| {
                serde_json::to_value(notification(&change(&mut w, c), "h", HoStatus::Completed))
                    .unwrap()
            })
            .collect();
        let two = merge_cell_changes(hops[0].clone(), hops[1].clone());
        let three = merge_cell_changes(two, hops[2].clone());
        assert_eq!(three["srcEcgi"]["cellId"], "0000001", "left a1 first");
        assert_eq!(
            three["trgEcgi"][0]["cellId"], "0000001",
            "and is back in a1"
        );
        assert_eq!(three["ferryMergedHandovers"], 3);
        assert_eq!(three["timeStamp"], hops[2]["timeStamp"]);
        let parsed: CellChangeNotification = serde_json::from_value(three).unwrap();
        assert_eq!(parsed.ferry_merged_handovers, Some(3));
    }

    #[test]
    fn a_preparation_never_hides_a_completed_handover_when_merged() {
        let mut w = world();
        let done = change(&mut w, "b1");
        let json = |c: &CellChange, s| serde_json::to_value(notification(c, "h", s)).unwrap();
        let prep = json(&done, HoStatus::InPreparation);
        let completed = json(&done, HoStatus::Completed);
        // IN_PREPARATION then COMPLETED of one handover: the COMPLETED, one hop.
        let m = merge_cell_changes(prep.clone(), completed.clone());
        assert_eq!(m, completed);
        // COMPLETED then the next IN_PREPARATION: the COMPLETED stays.
        let next = json(&change(&mut w, "a2"), HoStatus::InPreparation);
        assert_eq!(merge_cell_changes(completed.clone(), next), completed);
    }

    #[test]
    fn rab_info_filters() {
        let w = world();
        let q = |s: &str| {
            http::query_pairs(
                Some(s),
                &["cell_id", "ue_ipv4_address", "erab_id", "qci", "gtp_teid"],
            )
            .unwrap()
        };
        let all = rab_cells(&w, &[]).unwrap();
        assert_eq!(all.len(), 1, "only a1 has a UE");
        assert_eq!(all[0].ue_info[0].erab_info[0].erab_qos_parameters.qci, 9);
        assert_eq!(rab_cells(&w, &q("cell_id=0000002")).unwrap().len(), 0);
        assert_eq!(
            rab_cells(&w, &q("ue_ipv4_address=10.100.0.1"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(rab_cells(&w, &q("qci=5")).unwrap().len(), 0);
        assert_eq!(rab_cells(&w, &q("gtp_teid=1")).unwrap().len(), 0);
        assert_eq!(
            rab_cells(&w, &q("erab_id=x")).unwrap_err().0.status,
            Some(400)
        );
    }
}
