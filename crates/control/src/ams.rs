//! MEC 021 Application Mobility Service (`/amsi/v1`): registrations (with the three
//! `appMobilityServiceLevel`s and `contextTransferState`), the deregister task, subscriptions
//! (MobilityProcedure and AdjacentAppInfo, with expiry), the adjacent app instance query, and
//! the notifications: `MobilityProcedureNotification` (sent by `Control::notify_mobility`, the
//! relocation controller's call), `AdjacentAppInfoNotification` (when instances of an app come
//! or go) and `ExpiryNotification`.

use crate::filter::Filter;
use crate::http::{self, ApiError};
use crate::store::{StoreError, Table};
use crate::{oauth, Control};
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use mec_api::ams::*;
use mec_api::app_lcm::{AppInstanceInfo, InstantiationState};
use mec_api::rni::TimeStamp;
use mec_http::oauth::Caller;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

/// Path prefix of this API.
pub const ROOT: &str = "/amsi/v1";

/// A registration as stored: the resource and when it expires (from `expiryTime`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRegistration {
    info: RegistrationInfo,
    #[serde(default)]
    expires_at: Option<TimeStamp>,
}

pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route(
            "/amsi/v1/app_mobility_services",
            get(list_registrations).post(create_registration),
        )
        .route(
            "/amsi/v1/app_mobility_services/{id}",
            get(read_registration)
                .put(update_registration)
                .delete(delete_registration),
        )
        .route(
            "/amsi/v1/app_mobility_services/{id}/deregister_task",
            post(deregister_task),
        )
        .route(
            "/amsi/v1/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        // The v2.1.1 file names the list `/subscriptions/` (with the slash), its items
        // `/subscriptions/{subscriptionId}`: both spellings of the list are served.
        .route(
            "/amsi/v1/subscriptions/",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/amsi/v1/subscriptions/{id}",
            get(read_subscription)
                .put(update_subscription)
                .delete(delete_subscription),
        )
        .route(
            "/amsi/v1/queries/adjacent_app_instances",
            get(adjacent_app_instances),
        )
}

/// Restarts the delivery workers and expiry timers of the stored subscriptions and
/// registrations (at `Control::open`).
pub(crate) fn restore(c: &Control) -> Result<(), StoreError> {
    for (id, v) in c
        .store()
        .list::<serde_json::Value>(Table::AmsSubscriptions)?
    {
        match AmsSubscription::from_value(v) {
            Ok(sub) => {
                c.start_delivery(&id, sub.callback_reference());
                if let Some(d) = sub.expiry_deadline() {
                    arm_subscription_expiry(c, &id, d);
                }
            }
            Err(e) => tracing::warn!(subscription = %id, "stored AMS subscription unreadable: {e}"),
        }
    }
    for (id, r) in c.store().list::<StoredRegistration>(Table::Registrations)? {
        if let Some(at) = r.expires_at {
            arm_registration_expiry(c, &id, at);
        }
    }
    Ok(())
}

// ---- registrations ----

/// Checks a registration body; the error names the field.
fn validate_registration(r: &RegistrationInfo) -> Result<(), ApiError> {
    let app = r
        .service_consumer_id
        .app_instance_id
        .as_deref()
        .unwrap_or("");
    let mep = r.service_consumer_id.mep_id.as_deref().unwrap_or("");
    if app.trim().is_empty() == mep.trim().is_empty() {
        return Err(ApiError::bad_request(
            "serviceConsumerId must carry exactly one of appInstanceId and mepId",
        ));
    }
    for (i, d) in r.device_information.iter().enumerate() {
        check_associate_id(
            &d.associate_id,
            &format!("deviceInformation[{i}].associateId"),
        )?;
    }
    Ok(())
}

fn check_associate_id(a: &AssociateId, field: &str) -> Result<(), ApiError> {
    if a.type_ == AssociateIdType::UeIpv4Address && a.value.trim().parse::<Ipv4Addr>().is_err() {
        return Err(ApiError::bad_request(format!(
            "{field}: value '{}' is not an IPv4 address (type UE_IPv4_ADDRESS)",
            a.value
        )));
    }
    if a.value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field}: value is empty")));
    }
    Ok(())
}

fn registration_href(headers: &HeaderMap, id: &str) -> String {
    format!(
        "{}{ROOT}/app_mobility_services/{id}",
        http::base_url(headers)
    )
}

fn expiry_of(r: &RegistrationInfo) -> Option<TimeStamp> {
    r.expiry_time
        .filter(|&s| s > 0)
        .map(|s| TimeStamp::from_system_time(SystemTime::now() + Duration::from_secs(s.into())))
}

/// A client registers (and reads, changes, removes registrations) only for its own app
/// instance: the registration's `serviceConsumerId.appInstanceId`.
fn may_use(caller: &Caller, info: &RegistrationInfo) -> Result<(), ApiError> {
    match info.service_consumer_id.app_instance_id.as_deref() {
        Some(id) => caller.may_act_for(id),
        None if caller.owner().is_some() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a client registers for its own app instance: set serviceConsumerId.appInstanceId",
        )),
        None => Ok(()),
    }
}

fn stored_registration(c: &Control, id: &str) -> Result<StoredRegistration, ApiError> {
    c.store()
        .get(Table::Registrations, id)?
        .ok_or_else(|| no_registration(id))
}

async fn create_registration(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut info: RegistrationInfo = http::parse_body(&headers, &body)?;
    validate_registration(&info)?;
    may_use(&caller, &info)?;
    let id = c.store().next_id("ams")?;
    info.app_mobility_service_id = Some(id.clone());
    let rec = StoredRegistration {
        expires_at: expiry_of(&info),
        info: info.clone(),
    };
    c.store().put(Table::Registrations, &id, &rec)?;
    c.ue_index().set_registration(&id, &info);
    if let Some(at) = rec.expires_at {
        arm_registration_expiry(&c, &id, at);
    }
    c.publish_registration(&info);
    tracing::info!(registration = %id, "AMS registration created");
    let mut resp = http::json(StatusCode::CREATED, &info);
    if let Ok(v) = registration_href(&headers, &id).parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list_registrations(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.as_deref())?;
    let mut out = Vec::new();
    for (_, r) in c.store().list::<StoredRegistration>(Table::Registrations)? {
        if may_use(&caller, &r.info).is_err() {
            continue;
        }
        let v = serde_json::to_value(&r.info).unwrap_or_default();
        if filter.matches(&v) {
            out.push(v);
        }
    }
    Ok(http::json(StatusCode::OK, &out))
}

fn parse_filter(q: Option<&str>) -> Result<Filter, ApiError> {
    let pairs = http::query_pairs_raw(q, &["filter"])?;
    let text: Vec<&str> = http::values(&pairs, "filter");
    Filter::parse(&text.join(";")).map_err(ApiError::bad_request)
}

fn no_registration(id: &str) -> ApiError {
    ApiError::not_found(format!("no AMS registration '{id}'"))
}

async fn read_registration(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = stored_registration(&c, &id)?;
    may_use(&caller, &r.info)?;
    Ok(http::json(StatusCode::OK, &r.info))
}

async fn update_registration(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut info: RegistrationInfo = http::parse_body(&headers, &body)?;
    validate_registration(&info)?;
    may_use(&caller, &stored_registration(&c, &id)?.info)?;
    may_use(&caller, &info)?;
    if let Some(other) = info.app_mobility_service_id.as_deref() {
        if other != id {
            return Err(ApiError::bad_request(format!(
                "appMobilityServiceId '{other}' in the body does not match '{id}' in the URI"
            )));
        }
    }
    info.app_mobility_service_id = Some(id.clone());
    let expires_at = expiry_of(&info);
    let stored = c
        .store()
        .update(Table::Registrations, &id, |r: &mut StoredRegistration| {
            r.info = info.clone();
            if info.expiry_time.is_some() {
                r.expires_at = expires_at;
            }
            Ok::<_, ApiError>(r.expires_at)
        })?
        .ok_or_else(|| no_registration(&id))??;
    c.ue_index().set_registration(&id, &info);
    match stored {
        Some(at) => arm_registration_expiry(&c, &id, at),
        None => c.cancel_timer(&id),
    }
    c.publish_registration(&info);
    Ok(http::json(StatusCode::OK, &info))
}

async fn delete_registration(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    may_use(&caller, &stored_registration(&c, &id)?.info)?;
    if !c.store().delete(Table::Registrations, &id)? {
        return Err(no_registration(&id));
    }
    c.ue_index().remove_registration(&id);
    c.cancel_timer(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// `deregister_task`: the service consumer ends its use of AMS; the registration is removed.
async fn deregister_task(
    State(c): State<Control>,
    caller: Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_registration(State(c), caller, Path(id)).await
}

fn arm_registration_expiry(c: &Control, id: &str, at: TimeStamp) {
    let (c2, id2) = (c.clone(), id.to_string());
    c.set_timer(id, at.to_system_time(), async move {
        c2.timer_fired(&id2);
        match c2.store().delete(Table::Registrations, &id2) {
            Ok(_) => {
                c2.ue_index().remove_registration(&id2);
                tracing::info!(registration = %id2, "AMS registration expired")
            }
            Err(e) => {
                tracing::error!(registration = %id2, "cannot remove expired registration: {e}")
            }
        }
    });
}

/// The stored registrations (for the relocation controller).
pub fn registrations(c: &Control) -> Result<Vec<RegistrationInfo>, StoreError> {
    Ok(c.store()
        .list::<StoredRegistration>(Table::Registrations)?
        .into_iter()
        .map(|(_, r)| r.info)
        .collect())
}

/// Sets a UE's `contextTransferState` in a registration, as the app would with a PUT (the
/// CONTAINER_MIGRATION path marks the context transferred on the app's behalf). Returns the
/// updated registration, `None` if there is no such registration or UE in it.
pub fn set_context_transfer_state(
    c: &Control,
    registration: &str,
    ue: Ipv4Addr,
    state: ContextTransferState,
) -> Result<Option<RegistrationInfo>, StoreError> {
    let r = c.store().update(
        Table::Registrations,
        registration,
        |r: &mut StoredRegistration| {
            let mut hit = false;
            for d in &mut r.info.device_information {
                if d.associate_id.value.trim().parse() == Ok(ue) {
                    d.context_transfer_state = Some(state);
                    hit = true;
                }
            }
            if hit {
                Ok(r.info.clone())
            } else {
                Err(())
            }
        },
    )?;
    let info = match r {
        Some(Ok(info)) => info,
        _ => return Ok(None),
    };
    c.publish_registration(&info);
    Ok(Some(info))
}

/// What the platform may do with an app instance when its UE moves, by the registration's
/// `appMobilityServiceLevel` (ETSI GS MEC 021 clause 8.2.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MobilityDecision {
    /// APP_MOBILITY_NOT_ALLOWED: keep the instance where it is; only steer traffic.
    SteerOnly,
    /// APP_MOBILITY_WITH_CONFIRMATION: relocate once the app confirmed (it sets
    /// `contextTransferState` or otherwise acknowledges TRIGGERED).
    RelocateAfterConfirmation,
    /// APP_MOBILITY_WITHOUT_CONFIRMATION, or no level (a stateless app, per the spec's note
    /// that stateful apps include the level): relocate.
    Relocate,
}

pub fn decide(level: Option<AppMobilityServiceLevel>) -> MobilityDecision {
    match level {
        Some(AppMobilityServiceLevel::AppMobilityNotAllowed) => MobilityDecision::SteerOnly,
        Some(AppMobilityServiceLevel::AppMobilityWithConfirmation) => {
            MobilityDecision::RelocateAfterConfirmation
        }
        Some(AppMobilityServiceLevel::AppMobilityWithoutConfirmation) | None => {
            MobilityDecision::Relocate
        }
    }
}

// ---- subscriptions ----

fn subscription_href(headers: &HeaderMap, id: &str) -> String {
    format!("{}{ROOT}/subscriptions/{id}", http::base_url(headers))
}

/// Parses and checks a subscription body, filling the defaults the answer must carry.
fn validate_subscription(headers: &HeaderMap, body: &Bytes) -> Result<AmsSubscription, ApiError> {
    let v: serde_json::Value = http::parse_body(headers, body)?;
    let mut sub = AmsSubscription::from_value(v).map_err(ApiError::bad_request)?;
    http::check_callback(sub.callback_reference(), "callbackReference")?;
    if let AmsSubscription::MobilityProcedure(s) = &mut sub {
        for (i, a) in s.filter_criteria.associate_id.iter().enumerate() {
            check_associate_id(a, &format!("filterCriteria.associateId[{i}]"))?;
        }
        // The spec's default, to be included in the answer.
        if s.filter_criteria.mobility_status.is_empty() {
            s.filter_criteria.mobility_status = vec![MobilityStatus::InterhostMoveoutTriggered];
        }
    }
    if let Some(d) = sub.expiry_deadline() {
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
    Ok(sub)
}

async fn create_subscription(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    http::require_json_body(&headers)?;
    let mut sub = validate_subscription(&headers, &body)?;
    oauth::admit(&c, &caller, Table::AmsSubscriptions)?;
    let id = c.store().next_id("ams-sub")?;
    let href = subscription_href(&headers, &id);
    sub.set_self(href.clone());
    oauth::record_owner(&c, &caller, Table::AmsSubscriptions, &id)?;
    c.store().put(Table::AmsSubscriptions, &id, &sub)?;
    c.start_delivery(&id, sub.callback_reference());
    if let Some(d) = sub.expiry_deadline() {
        arm_subscription_expiry(&c, &id, d);
    }
    tracing::info!(subscription = %id, kind = sub.subscription_type(), "AMS subscription created");
    let mut resp = http::json(StatusCode::CREATED, &sub);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn stored_subscriptions(c: &Control) -> Result<Vec<(String, AmsSubscription)>, StoreError> {
    Ok(c.store()
        .list::<serde_json::Value>(Table::AmsSubscriptions)?
        .into_iter()
        .filter_map(|(id, v)| AmsSubscription::from_value(v).ok().map(|s| (id, s)))
        .collect())
}

async fn list_subscriptions(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["subscriptionType"])?;
    let mut kinds = Vec::new();
    for v in http::values(&pairs, "subscriptionType") {
        kinds.push(match v {
            "mobility_proc" => MOBILITY_PROCEDURE_SUBSCRIPTION,
            "adj_app_info" => ADJACENT_APP_INFO_SUBSCRIPTION,
            other => {
                return Err(ApiError::bad_request(format!(
                    "subscriptionType '{other}' is not one of mobility_proc, adj_app_info"
                )))
            }
        });
    }
    let mut mine = Vec::new();
    for (id, s) in stored_subscriptions(&c)? {
        if oauth::visible(&c, &caller, Table::AmsSubscriptions, &id)? {
            mine.push((id, s));
        }
    }
    let subscription = mine
        .into_iter()
        .filter(|(_, s)| kinds.is_empty() || kinds.contains(&s.subscription_type()))
        .map(|(_, s)| SubscriptionLink {
            href: s.self_href(),
            subscription_type: s.subscription_type().to_string(),
        })
        .collect();
    let mut self_href = format!("{}{ROOT}/subscriptions", http::base_url(&headers));
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        self_href = format!("{self_href}?{q}");
    }
    Ok(http::json(
        StatusCode::OK,
        &SubscriptionLinkList {
            links: SelfLink {
                self_: LinkType { href: self_href },
            },
            subscription,
        },
    ))
}

fn no_subscription(id: &str) -> ApiError {
    ApiError::not_found(format!("no AMS subscription '{id}'"))
}

async fn read_subscription(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    oauth::check_visible(&c, &caller, Table::AmsSubscriptions, &id)?;
    let v: serde_json::Value = c
        .store()
        .get(Table::AmsSubscriptions, &id)?
        .ok_or_else(|| no_subscription(&id))?;
    Ok(http::json(StatusCode::OK, &v))
}

async fn update_subscription(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    oauth::check_visible(&c, &caller, Table::AmsSubscriptions, &id)?;
    let mut sub = validate_subscription(&headers, &body)?;
    let href = subscription_href(&headers, &id);
    sub.set_self(href);
    let updated = c
        .store()
        .update(
            Table::AmsSubscriptions,
            &id,
            |old: &mut serde_json::Value| {
                let old_kind = old
                    .get("subscriptionType")
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                if old_kind != sub.subscription_type() {
                    return Err(ApiError::bad_request(format!(
                        "subscription '{id}' is a {old_kind}; its subscriptionType cannot change"
                    )));
                }
                *old = serde_json::to_value(&sub).unwrap_or_default();
                Ok(())
            },
        )?
        .ok_or_else(|| no_subscription(&id))?;
    updated?;
    c.start_delivery(&id, sub.callback_reference());
    match sub.expiry_deadline() {
        Some(d) => arm_subscription_expiry(&c, &id, d),
        None => c.cancel_timer(&id),
    }
    Ok(http::json(StatusCode::OK, &sub))
}

async fn delete_subscription(
    State(c): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    oauth::check_visible(&c, &caller, Table::AmsSubscriptions, &id)?;
    if !c.store().delete(Table::AmsSubscriptions, &id)? {
        return Err(no_subscription(&id));
    }
    oauth::forget_owner(&c, Table::AmsSubscriptions, &id);
    c.stop_delivery(&id);
    tracing::info!(subscription = %id, "AMS subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// At the deadline: one `ExpiryNotification`, then the subscription is gone.
fn arm_subscription_expiry(c: &Control, id: &str, deadline: TimeStamp) {
    let (c2, id2) = (c.clone(), id.to_string());
    c.set_timer(id, deadline.to_system_time(), async move {
        c2.timer_fired(&id2);
        let sub = match c2
            .store()
            .get::<serde_json::Value>(Table::AmsSubscriptions, &id2)
        {
            Ok(Some(v)) => AmsSubscription::from_value(v).ok(),
            _ => None,
        };
        let Some(sub) = sub else { return };
        let n = ExpiryNotification {
            notification_type: EXPIRY_NOTIFICATION.to_string(),
            time_stamp: Some(TimeStamp::now()),
            links: NotificationLinks {
                subscription: LinkType {
                    href: sub.self_href(),
                },
            },
            expiry_deadline: deadline,
        };
        // Gone before the subscriber hears of it: a GET after the notification is a 404.
        oauth::forget_owner(&c2, Table::AmsSubscriptions, &id2);
        if let Err(e) = c2.store().delete(Table::AmsSubscriptions, &id2) {
            tracing::error!(subscription = %id2, "cannot remove expired subscription: {e}");
        }
        if let Ok(body) = serde_json::to_value(&n) {
            c2.deliver(&id2, body);
        }
        // The worker delivers the expiry notification, then ends.
        c2.stop_delivery(&id2);
        tracing::info!(subscription = %id2, "AMS subscription expired");
    });
}

// ---- notifications ----

/// One step of a mobility procedure, as the relocation controller reports it.
#[derive(Debug, Clone)]
pub struct MobilityEvent {
    /// The app instance being relocated (the source instance).
    pub app_instance_id: String,
    /// The UE(s) it serves.
    pub associate_id: Vec<AssociateId>,
    pub status: MobilityStatus,
    /// Where the instance goes (with TRIGGERED; ferry keeps the instance id and address).
    pub target: Option<TargetAppInfo>,
}

/// Does a MobilityProcedure subscription's filter select this event? Absent criteria do not
/// filter (the stored `mobilityStatus` always has at least the default TRIGGERED).
pub fn mobility_filter_matches(f: &MobilityProcedureFilter, ev: &MobilityEvent) -> bool {
    let app_ok = f
        .app_instance_id
        .as_deref()
        .is_none_or(|a| a == ev.app_instance_id);
    let ue_ok = f.associate_id.is_empty()
        || f.associate_id.iter().any(|a| {
            ev.associate_id
                .iter()
                .any(|b| a.type_ == b.type_ && a.value.trim() == b.value.trim())
        });
    let status_ok = f.mobility_status.is_empty() || f.mobility_status.contains(&ev.status);
    app_ok && ue_ok && status_ok
}

impl Control {
    /// Sends a `MobilityProcedureNotification` to every matching MobilityProcedure subscriber
    /// (queued, never blocks). Returns how many subscriptions it was queued for.
    pub fn notify_mobility(&self, ev: &MobilityEvent) -> Result<usize, StoreError> {
        let mut sent = 0;
        for (id, sub) in stored_subscriptions(self)? {
            let AmsSubscription::MobilityProcedure(s) = &sub else {
                continue;
            };
            if !mobility_filter_matches(&s.filter_criteria, ev) {
                continue;
            }
            let n = MobilityProcedureNotification {
                notification_type: MOBILITY_PROCEDURE_NOTIFICATION.to_string(),
                time_stamp: Some(TimeStamp::now()),
                associate_id: ev.associate_id.clone(),
                mobility_status: ev.status,
                target_app_info: ev.target.clone(),
                links: NotificationLinks {
                    subscription: LinkType {
                        href: sub.self_href(),
                    },
                },
            };
            if let Ok(body) = serde_json::to_value(&n) {
                // In order per instance; several instances' notifications in flight at once.
                if self.deliver_keyed(&id, &ev.app_instance_id, body) {
                    sent += 1;
                }
            }
        }
        tracing::info!(instance = %ev.app_instance_id, status = ?ev.status, subscribers = sent, "mobility procedure notified");
        Ok(sent)
    }

    /// The instances of `app_d_id` changed (instantiated, terminated, moved): send each
    /// AdjacentAppInfo subscriber interested in that app the other instances it now has.
    pub fn notify_adjacent(&self, app_d_id: &str) -> Result<usize, StoreError> {
        let subs = stored_subscriptions(self)?;
        if !subs
            .iter()
            .any(|(_, s)| matches!(s, AmsSubscription::AdjacentAppInfo(_)))
        {
            // Nobody asked: no reading of every instance on each relocation.
            return Ok(0);
        }
        let all = adjacent_infos(self)?;
        let mut sent = 0;
        for (id, sub) in subs {
            let AmsSubscription::AdjacentAppInfo(s) = &sub else {
                continue;
            };
            // The subscriber's own instance decides which app it cares about.
            let own = s.filter_criteria.app_instance_id.as_deref();
            let own_app = match own {
                Some(i) => self
                    .store()
                    .get::<AppInstanceInfo>(Table::Instances, i)?
                    .map(|x| x.app_d_id),
                None => Some(app_d_id.to_string()),
            };
            if own_app.as_deref() != Some(app_d_id) {
                continue;
            }
            let adjacent_app_info = all
                .iter()
                .filter(|a| a.app_d_id == app_d_id && Some(a.app_instance_id.as_str()) != own)
                .map(|a| AdjacentAppInfo {
                    app_instance_id: a.app_instance_id.clone(),
                    comm_interface: a.app_instance_comm_link.clone(),
                })
                .collect();
            let n = AdjacentAppInfoNotification {
                notification_type: ADJACENT_APP_INFO_NOTIFICATION.to_string(),
                time_stamp: Some(TimeStamp::now()),
                associate_id: Vec::new(),
                adjacent_app_info,
                links: NotificationLinks {
                    subscription: LinkType {
                        href: sub.self_href(),
                    },
                },
            };
            if let Ok(body) = serde_json::to_value(&n) {
                if self.deliver(&id, body) {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }
}

// ---- adjacent app instances ----

/// Every instantiated app instance as `AdjacentAppInstanceInfo`.
fn adjacent_infos(c: &Control) -> Result<Vec<AdjacentAppInstanceInfo>, StoreError> {
    let mut out = Vec::new();
    for (_, i) in c.store().list::<AppInstanceInfo>(Table::Instances)? {
        if i.instantiation_state != InstantiationState::Instantiated {
            continue;
        }
        let port = crate::app_lcm::appd_of(c, &i)?
            .and_then(|d| d.ferry_container)
            .and_then(|fc| fc.port);
        let comm = CommunicationInterface {
            ip_addresses: match (&i.ferry_address, port) {
                (Some(a), Some(p)) => vec![IpAddress {
                    host: a.clone(),
                    port: p,
                }],
                _ => Vec::new(),
            },
        };
        out.push(AdjacentAppInstanceInfo {
            app_d_id: i.app_d_id.clone(),
            app_instance_comm_link: vec![comm],
            app_instance_id: i.id.clone(),
            mec_host_information: i.ferry_host.as_ref().map(|h| MecHostInformation {
                host_name: Some(h.clone()),
                host_id: serde_json::json!({"name": h}),
            }),
        });
    }
    Ok(out)
}

async fn adjacent_app_instances(
    State(c): State<Control>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.as_deref())?;
    let out: Vec<AdjacentAppInstanceInfo> = adjacent_infos(&c)?
        .into_iter()
        .filter(|a| filter.matches(&serde_json::to_value(a).unwrap_or_default()))
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}
