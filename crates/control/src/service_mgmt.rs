//! MEC 011 service management (`/mec_service_mgmt/v1`): the service registry (apps register
//! the services they produce; anyone lists them with the spec's query filters) and service
//! availability subscriptions, notified with `ServiceAvailabilityNotification` when a service
//! is added, removed or changed; the transports the platform offers (`transports`); service
//! liveness (MEC 011 v3.1.1 clause 8.2.10): a producer that registers with
//! `livenessInterval` sends heartbeats (`PATCH` of `_links.liveness`); two intervals without
//! one and the platform marks the service SUSPENDED (notified as a state change) until the
//! next heartbeat makes it ACTIVE again.

use crate::http::{self, ApiError};
use crate::store::{StoreError, Table};
use crate::Control;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use mec_api::ams::{LinkType, SelfLink};
use mec_api::rni::TimeStamp;
use mec_api::service_mgmt::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// Path prefix of this API.
pub const ROOT: &str = "/mec_service_mgmt/v1";

/// A subscription as stored: the resource and the app instance that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSubscription {
    app_instance_id: String,
    sub: SerAvailabilityNotificationSubscription,
}

pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/mec_service_mgmt/v1/services", get(list_all))
        .route("/mec_service_mgmt/v1/services/{ser}", get(read_any))
        .route("/mec_service_mgmt/v1/transports", get(transports))
        .route(
            "/mec_service_mgmt/v1/applications/{app}/services",
            get(list_app).post(create),
        )
        .route(
            "/mec_service_mgmt/v1/applications/{app}/services/{ser}",
            get(read_app).put(update).delete(remove),
        )
        // Under the producer's own path, so only the producer (or ferry's parts) reaches it
        // (`oauth::own_application_paths`); MEC 011 leaves the URI to the platform.
        .route(
            "/mec_service_mgmt/v1/applications/{app}/services/{ser}/liveness",
            get(read_liveness).patch(heartbeat),
        )
        .route(
            "/mec_service_mgmt/v1/applications/{app}/subscriptions",
            get(list_subs).post(create_sub),
        )
        .route(
            "/mec_service_mgmt/v1/applications/{app}/subscriptions/{id}",
            get(read_sub).delete(delete_sub),
        )
}

/// The transports the platform offers service producers: REST over HTTP straight to the
/// producing instance (ferry brokers no traffic between apps, so the endpoint list is empty:
/// each producer names its own endpoint when it registers its service).
pub fn platform_transports() -> Vec<TransportInfo> {
    vec![TransportInfo {
        id: "ferry-rest-http".into(),
        name: "REST over HTTP".into(),
        description: Some(
            "the producing app instance serves its API itself, at its own address".into(),
        ),
        type_: TransportType::RestHttp,
        protocol: "HTTP".into(),
        version: "1.1".into(),
        endpoint: EndPointInfo::Uris { uris: vec![] },
        security: SecurityInfo::default(),
        impl_specific_info: None,
    }]
}

async fn transports() -> Response {
    http::json(StatusCode::OK, &platform_transports())
}

pub(crate) fn restore(c: &Control) -> Result<(), StoreError> {
    for (id, s) in c
        .store()
        .list::<StoredSubscription>(Table::ServiceSubscriptions)?
    {
        c.start_delivery(&id, &s.sub.callback_reference);
    }
    Ok(())
}

fn check_instance(c: &Control, app: &str) -> Result<(), ApiError> {
    match c.store().get::<serde_json::Value>(Table::Instances, app)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("no app instance '{app}'"))),
    }
}

fn no_service(id: &str) -> ApiError {
    ApiError::not_found(format!("no service '{id}'"))
}

/// Lists services with the query filters of the spec: at most one of `ser_instance_id`,
/// `ser_name`, `ser_category_id`; plus `consumed_local_only`, `is_local`, `scope_of_locality`.
fn query(c: &Control, q: Option<&str>, app: Option<&str>) -> Result<Vec<ServiceInfo>, ApiError> {
    let pairs = http::query_pairs(
        q,
        &[
            "ser_instance_id",
            "ser_name",
            "ser_category_id",
            "consumed_local_only",
            "is_local",
            "scope_of_locality",
        ],
    )?;
    let ids = http::values(&pairs, "ser_instance_id");
    let names = http::values(&pairs, "ser_name");
    let cats = http::values(&pairs, "ser_category_id");
    if [!ids.is_empty(), !names.is_empty(), !cats.is_empty()]
        .iter()
        .filter(|b| **b)
        .count()
        > 1
    {
        return Err(ApiError::bad_request(
            "ser_instance_id, ser_name and ser_category_id are mutually exclusive",
        ));
    }
    let flag = |name: &str| -> Result<Option<bool>, ApiError> {
        match http::values(&pairs, name).first() {
            None => Ok(None),
            Some(&"true") => Ok(Some(true)),
            Some(&"false") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(format!(
                "{name} '{v}' must be true or false"
            ))),
        }
    };
    let local_only = flag("consumed_local_only")?;
    let is_local = flag("is_local")?;
    let scope = http::values(&pairs, "scope_of_locality");
    let mut out = Vec::new();
    for (_, s) in c.store().list::<ServiceInfo>(Table::Services)? {
        let scope_name = s
            .scope_of_locality
            .and_then(|l| serde_json::to_value(l).ok())
            .and_then(|v| v.as_str().map(str::to_string));
        let keep = app.is_none_or(|a| s.ferry_app_instance_id.as_deref() == Some(a))
            && (ids.is_empty() || ids.contains(&s.ser_instance_id.as_deref().unwrap_or("")))
            && (names.is_empty() || names.contains(&s.ser_name.as_str()))
            && (cats.is_empty()
                || s.ser_category
                    .as_ref()
                    .is_some_and(|cat| cats.contains(&cat.id.as_str())))
            && local_only.is_none_or(|b| s.consumed_local_only.unwrap_or(false) == b)
            && is_local.is_none_or(|b| s.is_local.unwrap_or(true) == b)
            && (scope.is_empty() || scope_name.is_some_and(|n| scope.contains(&n.as_str())));
        if keep {
            out.push(s);
        }
    }
    Ok(out)
}

async fn list_all(State(c): State<Control>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Ok(http::json(StatusCode::OK, &query(&c, q.as_deref(), None)?))
}

async fn read_any(State(c): State<Control>, Path(ser): Path<String>) -> Result<Response, ApiError> {
    let s: ServiceInfo = c
        .store()
        .get(Table::Services, &ser)?
        .ok_or_else(|| no_service(&ser))?;
    Ok(http::json(StatusCode::OK, &s))
}

async fn list_app(
    State(c): State<Control>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    check_instance(&c, &app)?;
    Ok(http::json(
        StatusCode::OK,
        &query(&c, q.as_deref(), Some(&app))?,
    ))
}

fn validate(s: &ServiceInfo) -> Result<(), ApiError> {
    if s.ser_name.trim().is_empty() {
        return Err(ApiError::bad_request("serName must not be empty"));
    }
    if s.version.trim().is_empty() {
        return Err(ApiError::bad_request("version must not be empty"));
    }
    if let Some(o) = &s.transport_info.security.oauth2_info {
        if !(1..=4).contains(&o.grant_types.len()) {
            return Err(ApiError::bad_request(
                "transportInfo.security.oAuth2Info.grantTypes must list 1 to 4 grant types",
            ));
        }
    }
    Ok(())
}

async fn create(
    State(c): State<Control>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut s: ServiceInfo = http::parse_body(&headers, &body)?;
    validate(&s)?;
    check_instance(&c, &app)?;
    let id = c.store().next_id("svc")?;
    s.ser_instance_id = Some(id.clone());
    s.ferry_app_instance_id = Some(app.clone());
    let href = format!(
        "{}{ROOT}/applications/{app}/services/{id}",
        http::base_url(&headers)
    );
    s.liveness_interval = s.liveness_interval.map(liveness_interval);
    s.links = Some(ServiceLinks {
        self_: LinkType { href: href.clone() },
        liveness: s.liveness_interval.map(|_| LinkType {
            href: format!("{href}/liveness"),
        }),
    });
    {
        // Registered counts as the first heartbeat.
        let mut beats = c.heartbeats();
        c.store().put(Table::Services, &id, &s)?;
        if s.liveness_interval.is_some() {
            beats.insert(id.clone(), SystemTime::now());
        }
    }
    notify(&c, &http::base_url(&headers), &s, ChangeType::Added)?;
    tracing::info!(service = %id, name = %s.ser_name, instance = %app, "service registered");
    let mut resp = http::json(StatusCode::CREATED, &s);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn own_service(c: &Control, app: &str, ser: &str) -> Result<ServiceInfo, ApiError> {
    check_instance(c, app)?;
    c.store()
        .get::<ServiceInfo>(Table::Services, ser)?
        .filter(|s| s.ferry_app_instance_id.as_deref() == Some(app))
        .ok_or_else(|| no_service(ser))
}

async fn read_app(
    State(c): State<Control>,
    Path((app, ser)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(http::json(StatusCode::OK, &own_service(&c, &app, &ser)?))
}

async fn update(
    State(c): State<Control>,
    Path((app, ser)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut s: ServiceInfo = http::parse_body(&headers, &body)?;
    validate(&s)?;
    if s.ser_instance_id.as_deref().is_some_and(|i| i != ser) {
        return Err(ApiError::bad_request(format!(
            "serInstanceId in the body does not match '{ser}' in the URI"
        )));
    }
    let old = {
        let mut beats = c.heartbeats();
        let old = own_service(&c, &app, &ser)?;
        s.ser_instance_id = Some(ser.clone());
        s.ferry_app_instance_id = Some(app);
        // The liveness terms are the platform's, set at registration.
        s.liveness_interval = old.liveness_interval;
        s.links = old.links.clone();
        c.store().put(Table::Services, &ser, &s)?;
        if s.liveness_interval.is_some() {
            beats.insert(ser.clone(), SystemTime::now());
        }
        old
    };
    let change = if old.state != s.state {
        ChangeType::StateChanged
    } else {
        ChangeType::AttributesChanged
    };
    notify(&c, &http::base_url(&headers), &s, change)?;
    Ok(http::json(StatusCode::OK, &s))
}

async fn remove(
    State(c): State<Control>,
    Path((app, ser)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let s = {
        let mut beats = c.heartbeats();
        let s = own_service(&c, &app, &ser)?;
        c.store().delete(Table::Services, &ser)?;
        beats.remove(&ser);
        s
    };
    notify(&c, &http::base_url(&headers), &s, ChangeType::Removed)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- liveness (MEC 011 v3.1.1) ----

/// The interval the platform picks when the producer proposes 0.
pub const DEFAULT_LIVENESS_INTERVAL_S: u32 = 10;
/// Bounds of a proposed interval: a heartbeat a second at most, one an hour at least.
const LIVENESS_INTERVAL_S: std::ops::RangeInclusive<u32> = 1..=3600;
/// Heartbeats a producer may miss before its service is SUSPENDED: one late heartbeat is
/// network jitter, two are a dead producer.
const MISSED_HEARTBEATS: u32 = 2;

/// The interval the platform expects for a proposed one.
fn liveness_interval(proposed: u32) -> u32 {
    if proposed == 0 {
        DEFAULT_LIVENESS_INTERVAL_S
    } else {
        proposed.clamp(*LIVENESS_INTERVAL_S.start(), *LIVENESS_INTERVAL_S.end())
    }
}

/// A service with heartbeats, as the producer's path names it.
fn live_service(c: &Control, app: &str, ser: &str) -> Result<(ServiceInfo, u32), ApiError> {
    let s = own_service(c, app, ser)?;
    match s.liveness_interval {
        Some(i) => Ok((s, i)),
        None => Err(ApiError::not_found(format!(
            "service '{ser}' was registered without livenessInterval: it has no liveness \
             resource (register it with \"livenessInterval\" to send heartbeats)"
        ))),
    }
}

async fn read_liveness(
    State(c): State<Control>,
    Path((app, ser)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let beats = c.heartbeats();
    let (s, interval) = live_service(&c, &app, &ser)?;
    let last = beats.get(&ser).copied().unwrap_or_else(SystemTime::now);
    Ok(http::json(
        StatusCode::OK,
        &ServiceLivenessInfo {
            state: s.state,
            time_stamp: TimeStamp::from_system_time(last),
            interval,
        },
    ))
}

/// A heartbeat: the service is alive; a SUSPENDED one is ACTIVE again. 204: the interval
/// stays as it was.
async fn heartbeat(
    State(c): State<Control>,
    Path((app, ser)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let update: ServiceLivenessUpdate = http::parse_body(&headers, &body)?;
    if update.state != ServiceState::Active {
        return Err(ApiError::bad_request(
            "a heartbeat's state shall be ACTIVE (MEC 011 clause 8.1.2.5)",
        ));
    }
    let revived = {
        let mut beats = c.heartbeats();
        let (mut s, _) = live_service(&c, &app, &ser)?;
        beats.insert(ser.clone(), SystemTime::now());
        if s.state == ServiceState::Suspended {
            s.state = ServiceState::Active;
            c.store().put(Table::Services, &ser, &s)?;
            Some(s)
        } else {
            None
        }
    };
    if let Some(s) = revived {
        tracing::info!(service = %ser, instance = %app, "heartbeat again: service ACTIVE");
        notify(&c, &http::base_url(&headers), &s, ChangeType::StateChanged)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Marks SUSPENDED every ACTIVE service whose producer missed [`MISSED_HEARTBEATS`]
/// heartbeats, and notifies it. Runs for the life of the daemon; after a restart the restart
/// counts as every service's last heartbeat.
pub(crate) async fn watch_liveness(c: Control) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = suspend_silent(&c) {
            tracing::warn!("service liveness check failed: {e}");
        }
    }
}

fn suspend_silent(c: &Control) -> Result<(), StoreError> {
    let now = SystemTime::now();
    let mut suspended = Vec::new();
    {
        let mut beats = c.heartbeats();
        let services: HashMap<String, ServiceInfo> =
            c.store().list(Table::Services)?.into_iter().collect();
        beats.retain(|id, _| services.contains_key(id));
        for (id, mut s) in services {
            let Some(interval) = s.liveness_interval else {
                continue;
            };
            let last = *beats.entry(id.clone()).or_insert(now);
            let silent = now.duration_since(last).unwrap_or_default();
            if s.state == ServiceState::Active
                && silent > Duration::from_secs(u64::from(interval * MISSED_HEARTBEATS))
            {
                s.state = ServiceState::Suspended;
                c.store().put(Table::Services, &id, &s)?;
                tracing::warn!(service = %id, silent_ms = silent.as_millis() as u64,
                    "no heartbeat: service SUSPENDED");
                suspended.push(s);
            }
        }
    }
    for s in suspended {
        // The API root the producer registered at, for the notification's link.
        let base = s
            .links
            .as_ref()
            .and_then(|l| l.self_.href.split(ROOT).next().map(str::to_string))
            .unwrap_or_default();
        notify(c, &base, &s, ChangeType::StateChanged)?;
    }
    Ok(())
}

// ---- availability subscriptions ----

fn filter_selects(f: &Option<SerAvailabilityFilter>, s: &ServiceInfo) -> bool {
    let Some(f) = f else { return true };
    let id = s.ser_instance_id.as_deref().unwrap_or("");
    (f.ser_instance_ids.is_empty() || f.ser_instance_ids.iter().any(|i| i == id))
        && (f.ser_names.is_empty() || f.ser_names.contains(&s.ser_name))
        && (f.ser_categories.is_empty()
            || s.ser_category
                .as_ref()
                .is_some_and(|c| f.ser_categories.iter().any(|fc| fc.id == c.id)))
        && (f.states.is_empty() || f.states.contains(&s.state))
        && f.is_local.is_none_or(|b| s.is_local.unwrap_or(true) == b)
}

/// `base`: the URL the API is served at (scheme and authority).
fn notify(c: &Control, base: &str, s: &ServiceInfo, change: ChangeType) -> Result<(), StoreError> {
    let id = s.ser_instance_id.clone().unwrap_or_default();
    let link = format!("{base}{ROOT}/services/{id}");
    for (sid, st) in c
        .store()
        .list::<StoredSubscription>(Table::ServiceSubscriptions)?
    {
        if !filter_selects(&st.sub.filtering_criteria, s) {
            continue;
        }
        let n = ServiceAvailabilityNotification {
            notification_type: SER_AVAILABILITY_NOTIFICATION.to_string(),
            service_references: vec![ServiceReference {
                link: Some(LinkType { href: link.clone() }),
                ser_name: s.ser_name.clone(),
                ser_instance_id: id.clone(),
                state: s.state,
                change_type: change,
            }],
            links: SubscriptionLinks {
                subscription: LinkType {
                    href: st
                        .sub
                        .links
                        .as_ref()
                        .map(|l| l.self_.href.clone())
                        .unwrap_or_default(),
                },
            },
        };
        if let Ok(body) = serde_json::to_value(&n) {
            c.deliver(&sid, body);
        }
    }
    Ok(())
}

async fn create_sub(
    State(c): State<Control>,
    axum::extract::Extension(caller): axum::extract::Extension<mec_http::oauth::Caller>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut sub: SerAvailabilityNotificationSubscription = http::parse_body(&headers, &body)?;
    if sub.subscription_type != SER_AVAILABILITY_SUBSCRIPTION {
        return Err(ApiError::bad_request(format!(
            "subscriptionType '{}' must be \"{SER_AVAILABILITY_SUBSCRIPTION}\"",
            sub.subscription_type
        )));
    }
    http::check_callback(&sub.callback_reference, "callbackReference")?;
    check_instance(&c, &app)?;
    crate::oauth::admit(&c, &caller, Table::ServiceSubscriptions)?;
    let id = c.store().next_id("svc-sub")?;
    let href = format!(
        "{}{ROOT}/applications/{app}/subscriptions/{id}",
        http::base_url(&headers)
    );
    sub.links = Some(SelfLink {
        self_: LinkType { href: href.clone() },
    });
    crate::oauth::record_owner(&c, &caller, Table::ServiceSubscriptions, &id)?;
    c.store().put(
        Table::ServiceSubscriptions,
        &id,
        &StoredSubscription {
            app_instance_id: app,
            sub: sub.clone(),
        },
    )?;
    c.start_delivery(&id, &sub.callback_reference);
    let mut resp = http::json(StatusCode::CREATED, &sub);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn own_sub(c: &Control, app: &str, id: &str) -> Result<StoredSubscription, ApiError> {
    check_instance(c, app)?;
    c.store()
        .get::<StoredSubscription>(Table::ServiceSubscriptions, id)?
        .filter(|s| s.app_instance_id == app)
        .ok_or_else(|| {
            ApiError::not_found(format!("no subscription '{id}' of app instance '{app}'"))
        })
}

async fn list_subs(
    State(c): State<Control>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_instance(&c, &app)?;
    let subs: Vec<serde_json::Value> = c
        .store()
        .list::<StoredSubscription>(Table::ServiceSubscriptions)?
        .into_iter()
        .filter(|(_, s)| s.app_instance_id == app)
        .map(|(_, s)| {
            serde_json::json!({
                "href": s.sub.links.map(|l| l.self_.href).unwrap_or_default(),
                "rel": s.sub.subscription_type,
            })
        })
        .collect();
    let self_href = format!(
        "{}{ROOT}/applications/{app}/subscriptions",
        http::base_url(&headers)
    );
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({"_links": {"self": {"href": self_href}, "subscriptions": subs}}),
    ))
}

async fn read_sub(
    State(c): State<Control>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(http::json(StatusCode::OK, &own_sub(&c, &app, &id)?.sub))
}

async fn delete_sub(
    State(c): State<Control>,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    own_sub(&c, &app, &id)?;
    c.store().delete(Table::ServiceSubscriptions, &id)?;
    crate::oauth::forget_owner(&c, Table::ServiceSubscriptions, &id);
    c.stop_delivery(&id);
    Ok(StatusCode::NO_CONTENT)
}
