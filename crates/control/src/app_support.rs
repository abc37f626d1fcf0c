//! MEC 011 application support (`/mec_app_support/v1`): readiness and termination
//! confirmation, app termination subscriptions, traffic rules (PUT applies them through
//! `DataPlane`), DNS rules, timing.
//!
//! An `AppTerminationNotification` goes to the instance's subscribers when MEC 010-2
//! terminates it (TERMINATING) or stops it (`operate` to STOPPED: STOPPING), before its
//! container is stopped, with `maxGracefulTimeout` = the request's graceful timeout (0 for a
//! FORCEFUL one). For a graceful one the platform waits until the instance confirms
//! (`confirm_termination` with the same action) or the timeout passes, then goes on
//! (MEC 011 clause 5.2.x, application graceful termination/stop); the MEC 010-2 request
//! answers when the operation is done.
//!
//! Each instantiated app instance has the traffic rule `ferry-steer` (its address steered to
//! its host) and the DNS rules of its AppD's `appDNSRule`. ferry's data plane only steers: a
//! PUT of an ACTIVE forwarding rule routes the rule's `dstAddress` (default: the instance's
//! address) to the rule's host (`ferryHost`, or the host whose address is
//! `dstInterface.dstIpAddress`); other actions and INACTIVE rules are stored, not enforced.

use crate::http::{self, ApiError};
use crate::store::{StoreError, Table};
use crate::Control;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mec_api::app_lcm::{AppInstanceInfo, InstantiationState};
use mec_api::app_pkgm::AppD;
use mec_api::app_support::*;
use mec_api::rni::TimeStamp;
use std::net::Ipv4Addr;

/// Path prefix of this API.
pub const ROOT: &str = "/mec_app_support/v1";

pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route(
            "/mec_app_support/v1/applications/{app}/confirm_ready",
            post(confirm_ready),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/confirm_termination",
            post(confirm_termination),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/subscriptions",
            get(list_subs).post(create_sub),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/subscriptions/{id}",
            get(read_sub).delete(delete_sub),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/traffic_rules",
            get(list_traffic),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/traffic_rules/{rule}",
            get(read_traffic).put(put_traffic),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/dns_rules",
            get(list_dns),
        )
        .route(
            "/mec_app_support/v1/applications/{app}/dns_rules/{rule}",
            get(read_dns).put(put_dns),
        )
        .route("/mec_app_support/v1/timing/current_time", get(current_time))
        .route("/mec_app_support/v1/timing/timing_caps", get(timing_caps))
}

fn instance(c: &Control, id: &str) -> Result<AppInstanceInfo, ApiError> {
    c.store()
        .get(Table::Instances, id)?
        .ok_or_else(|| ApiError::not_found(format!("no app instance '{id}'")))
}

/// Stores the DNS rules of the AppD's `appDNSRule` for a new instance; a rule without an
/// `ipAddress` points at the instance.
pub(crate) fn import_dns_rules(
    c: &Control,
    id: &str,
    appd: &AppD,
    address: &str,
) -> Result<(), StoreError> {
    let Some(rules) = appd.extra.get("appDNSRule").and_then(|r| r.as_array()) else {
        return Ok(());
    };
    for r in rules {
        let mut v = r.get("dnsRule").cloned().unwrap_or_else(|| r.clone());
        if v.get("ipAddress").is_none() {
            v["ipAddress"] = serde_json::json!(address);
        }
        if v.get("state").is_none() {
            v["state"] = serde_json::json!("ACTIVE");
        }
        match serde_json::from_value::<DnsRule>(v) {
            Ok(rule) => c.store().put(
                Table::DnsRules,
                &format!("{id}/{}", rule.dns_rule_id),
                &rule,
            )?,
            Err(e) => tracing::warn!(instance = %id, "AppD appDNSRule skipped: {e}"),
        }
    }
    Ok(())
}

/// Points an instance's DNS rules that resolve to `old` at `new` (an APPLICATION relocation
/// gives the instance the target instance's address).
pub(crate) fn readdress_dns_rules(
    c: &Control,
    id: &str,
    old: &str,
    new: &str,
) -> Result<(), StoreError> {
    for (key, mut rule) in rules_of::<DnsRule>(c, Table::DnsRules, id)? {
        if rule.ip_address == old {
            rule.ip_address = new.to_string();
            c.store().put(Table::DnsRules, &key, &rule)?;
        }
    }
    Ok(())
}

/// Removes an instance's rules and readiness (at termination).
pub(crate) fn forget_instance(c: &Control, id: &str) -> Result<(), StoreError> {
    for t in [Table::TrafficRules, Table::DnsRules] {
        for (k, _) in rules_of::<serde_json::Value>(c, t, id)? {
            c.store().delete(t, &k)?;
        }
    }
    c.store().delete(Table::AppStatus, id)?;
    Ok(())
}

fn rules_of<T: serde::de::DeserializeOwned>(
    c: &Control,
    t: Table,
    app: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let prefix = format!("{app}/");
    Ok(c.store()
        .list::<T>(t)?
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect())
}

// ---- readiness ----

async fn confirm_ready(
    State(c): State<Control>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let r: AppReadyConfirmation = http::parse_body(&headers, &body)?;
    if r.indication != "READY" {
        return Err(ApiError::bad_request(format!(
            "indication '{}' must be \"READY\"",
            r.indication
        )));
    }
    let i = instance(&c, &app)?;
    if i.instantiation_state != InstantiationState::Instantiated {
        return Err(ApiError::conflict(format!(
            "app instance '{app}' is NOT_INSTANTIATED: it cannot be ready"
        )));
    }
    c.store().put(
        Table::AppStatus,
        &app,
        &serde_json::json!({"ready": true, "readyAt": TimeStamp::now()}),
    )?;
    tracing::info!(instance = %app, "app confirmed ready");
    Ok(StatusCode::NO_CONTENT)
}

/// Whether an app instance confirmed it is ready (MEC 011 `confirm_ready`).
pub fn is_ready(c: &Control, app: &str) -> Result<bool, StoreError> {
    Ok(c.store()
        .get::<serde_json::Value>(Table::AppStatus, app)?
        .is_some_and(|v| v["ready"] == true))
}

/// The instance is done with what it had to do before a graceful stop or termination: the
/// waiting operation goes on. 409 when nothing waits, or waits for the other action.
async fn confirm_termination(
    State(c): State<Control>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let confirmation: AppTerminationConfirmation = http::parse_body(&headers, &body)?;
    instance(&c, &app)?;
    let mut pending = c.pending_confirmations();
    match pending.remove(&app) {
        Some((action, tx)) if action == confirmation.operation_action => {
            // The waiter may have timed out just now: then the confirmation is simply late.
            let _ = tx.send(());
            tracing::info!(instance = %app, ?action, "instance confirmed");
            Ok(StatusCode::NO_CONTENT)
        }
        Some((action, tx)) => {
            let detail = format!(
                "app instance '{app}' is waiting to confirm {action:?}, not {:?}",
                confirmation.operation_action
            );
            pending.insert(app, (action, tx));
            Err(ApiError::conflict(detail))
        }
        None => Err(ApiError::conflict(format!(
            "no termination or stop of app instance '{app}' is waiting for a confirmation"
        ))),
    }
}

// ---- traffic rules ----

async fn list_traffic(
    State(c): State<Control>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    instance(&c, &app)?;
    let out: Vec<TrafficRule> = rules_of(&c, Table::TrafficRules, &app)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

fn no_rule(app: &str, rule: &str) -> ApiError {
    ApiError::not_found(format!("app instance '{app}' has no rule '{rule}'"))
}

async fn read_traffic(
    State(c): State<Control>,
    Path((app, rule)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    instance(&c, &app)?;
    let r: TrafficRule = c
        .store()
        .get(Table::TrafficRules, &format!("{app}/{rule}"))?
        .ok_or_else(|| no_rule(&app, &rule))?;
    Ok(http::json(StatusCode::OK, &r))
}

/// The host a forwarding rule steers to: `ferryHost`, else the host whose address is
/// `dstInterface.dstIpAddress`, else the instance's host.
fn rule_host(c: &Control, r: &TrafficRule, i: &AppInstanceInfo) -> Result<String, ApiError> {
    if let Some(h) = &r.ferry_host {
        if !c.hosts().contains(h) {
            return Err(ApiError::bad_request(format!(
                "ferryHost '{h}' is not one of {}",
                c.hosts().names().join(", ")
            )));
        }
        return Ok(h.clone());
    }
    if let Some(ip) = r
        .dst_interface
        .as_ref()
        .and_then(|d| d.get("dstIpAddress"))
        .and_then(|a| a.as_str())
    {
        for h in c.hosts().names() {
            let host_ip = c
                .hosts()
                .url(&h)
                .ok()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_string));
            if host_ip.as_deref() == Some(ip) {
                return Ok(h);
            }
        }
        return Err(ApiError::bad_request(format!(
            "dstInterface.dstIpAddress '{ip}' is the address of no known MEC host"
        )));
    }
    i.ferry_host.clone().ok_or_else(|| {
        ApiError::conflict("the app instance runs on no host; name one in ferryHost")
    })
}

async fn put_traffic(
    State(c): State<Control>,
    Path((app, rule)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut r: TrafficRule = http::parse_body(&headers, &body)?;
    if r.traffic_rule_id != rule {
        return Err(ApiError::bad_request(format!(
            "trafficRuleId '{}' in the body does not match '{rule}' in the URI",
            r.traffic_rule_id
        )));
    }
    let i = instance(&c, &app)?;
    let key = format!("{app}/{rule}");
    if c.store()
        .get::<TrafficRule>(Table::TrafficRules, &key)?
        .is_none()
    {
        return Err(no_rule(&app, &rule));
    }
    let forwards = matches!(
        r.action,
        TrafficAction::ForwardDecapsulated
            | TrafficAction::ForwardEncapsulated
            | TrafficAction::Passthrough
    );
    if r.state == RuleState::Active && forwards {
        let host = rule_host(&c, &r, &i)?;
        let dst = r
            .traffic_filter
            .iter()
            .filter_map(|f| f.get("dstAddress"))
            .filter_map(|a| a.as_array().and_then(|a| a.first()).or(Some(a)))
            .filter_map(|a| a.as_str())
            .next()
            .map(str::to_string)
            .or(i.ferry_address.clone())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "the rule names no dstAddress and the instance has no address",
                )
            })?;
        let addr: Ipv4Addr = dst.trim().parse().map_err(|_| {
            ApiError::bad_request(format!(
                "trafficFilter dstAddress '{dst}' is not an IPv4 address"
            ))
        })?;
        c.data_plane()
            .route(addr, &host)
            .await
            .map_err(|e| ApiError::bad_gateway(format!("rule not applied: {e}")))?;
        r.ferry_host = Some(host);
    }
    c.store().put(Table::TrafficRules, &key, &r)?;
    tracing::info!(instance = %app, rule = %rule, "traffic rule updated");
    Ok(http::json(StatusCode::OK, &r))
}

// ---- DNS rules ----

async fn list_dns(State(c): State<Control>, Path(app): Path<String>) -> Result<Response, ApiError> {
    instance(&c, &app)?;
    let out: Vec<DnsRule> = rules_of(&c, Table::DnsRules, &app)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

async fn read_dns(
    State(c): State<Control>,
    Path((app, rule)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    instance(&c, &app)?;
    let r: DnsRule = c
        .store()
        .get(Table::DnsRules, &format!("{app}/{rule}"))?
        .ok_or_else(|| no_rule(&app, &rule))?;
    Ok(http::json(StatusCode::OK, &r))
}

async fn put_dns(
    State(c): State<Control>,
    Path((app, rule)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: DnsRule = http::parse_body(&headers, &body)?;
    if r.dns_rule_id != rule {
        return Err(ApiError::bad_request(format!(
            "dnsRuleId '{}' in the body does not match '{rule}' in the URI",
            r.dns_rule_id
        )));
    }
    let ok = match r.ip_address_type {
        IpAddressType::IpV4 => r.ip_address.parse::<Ipv4Addr>().is_ok(),
        IpAddressType::IpV6 => r.ip_address.parse::<std::net::Ipv6Addr>().is_ok(),
    };
    if !ok {
        return Err(ApiError::bad_request(format!(
            "ipAddress '{}' is not an {:?} address",
            r.ip_address, r.ip_address_type
        )));
    }
    instance(&c, &app)?;
    let key = format!("{app}/{rule}");
    if c.store().get::<DnsRule>(Table::DnsRules, &key)?.is_none() {
        return Err(no_rule(&app, &rule));
    }
    c.store().put(Table::DnsRules, &key, &r)?;
    Ok(http::json(StatusCode::OK, &r))
}

// ---- timing ----

/// The platform's clock. ferry does not know whether the host clock is traceable to UTC.
async fn current_time() -> Response {
    let now = TimeStamp::now();
    http::json(
        StatusCode::OK,
        &CurrentTime {
            seconds: now.seconds,
            nano_seconds: now.nano_seconds,
            time_source_status: TimeSourceStatus::Nontraceable,
        },
    )
}

async fn timing_caps() -> Response {
    http::json(
        StatusCode::OK,
        &TimingCaps {
            time_stamp: TimeStamp::now(),
            ntp_servers: Vec::new(),
            ptp_masters: Vec::new(),
        },
    )
}

// ---- app termination subscriptions ----

/// Restarts the delivery workers of the stored subscriptions (at `Control::open`).
pub(crate) fn restore(c: &Control) -> Result<(), StoreError> {
    for (id, s) in c
        .store()
        .list::<AppTerminationNotificationSubscription>(Table::AppSupportSubscriptions)?
    {
        c.start_delivery(&id, &s.callback_reference);
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
    let mut sub: AppTerminationNotificationSubscription = http::parse_body(&headers, &body)?;
    if sub.subscription_type != APP_TERMINATION_SUBSCRIPTION {
        return Err(ApiError::bad_request(format!(
            "subscriptionType '{}' must be \"{APP_TERMINATION_SUBSCRIPTION}\"",
            sub.subscription_type
        )));
    }
    if sub.app_instance_id != app {
        return Err(ApiError::bad_request(format!(
            "appInstanceId '{}' is not the instance of the path ('{app}')",
            sub.app_instance_id
        )));
    }
    http::check_callback(&sub.callback_reference, "callbackReference")?;
    instance(&c, &app)?;
    crate::oauth::admit(&c, &caller, Table::AppSupportSubscriptions)?;
    let id = c.store().next_id("app-sub")?;
    let href = format!(
        "{}{ROOT}/applications/{app}/subscriptions/{id}",
        http::base_url(&headers)
    );
    sub.links = Some(mec_api::ams::SelfLink {
        self_: mec_api::ams::LinkType { href: href.clone() },
    });
    crate::oauth::record_owner(&c, &caller, Table::AppSupportSubscriptions, &id)?;
    c.store().put(Table::AppSupportSubscriptions, &id, &sub)?;
    c.start_delivery(&id, &sub.callback_reference);
    let mut resp = http::json(StatusCode::CREATED, &sub);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn subs_of(
    c: &Control,
    app: &str,
) -> Result<Vec<(String, AppTerminationNotificationSubscription)>, StoreError> {
    Ok(c.store()
        .list::<AppTerminationNotificationSubscription>(Table::AppSupportSubscriptions)?
        .into_iter()
        .filter(|(_, s)| s.app_instance_id == app)
        .collect())
}

async fn list_subs(
    State(c): State<Control>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    instance(&c, &app)?;
    let subscriptions = subs_of(&c, &app)?
        .into_iter()
        .map(|(_, s)| SubscriptionLink {
            href: s.links.map(|l| l.self_.href).unwrap_or_default(),
            rel: s.subscription_type,
        })
        .collect();
    let list = SubscriptionLinkList {
        links: SubscriptionLinkListLinks {
            self_: mec_api::ams::LinkType {
                href: format!(
                    "{}{ROOT}/applications/{app}/subscriptions",
                    http::base_url(&headers)
                ),
            },
            subscriptions,
        },
    };
    Ok(http::json(StatusCode::OK, &list))
}

fn own_sub(
    c: &Control,
    app: &str,
    id: &str,
) -> Result<AppTerminationNotificationSubscription, ApiError> {
    instance(c, app)?;
    c.store()
        .get::<AppTerminationNotificationSubscription>(Table::AppSupportSubscriptions, id)?
        .filter(|s| s.app_instance_id == app)
        .ok_or_else(|| {
            ApiError::not_found(format!("no subscription '{id}' of app instance '{app}'"))
        })
}

async fn read_sub(
    State(c): State<Control>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(http::json(StatusCode::OK, &own_sub(&c, &app, &id)?))
}

async fn delete_sub(
    State(c): State<Control>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    own_sub(&c, &app, &id)?;
    c.store().delete(Table::AppSupportSubscriptions, &id)?;
    crate::oauth::forget_owner(&c, Table::AppSupportSubscriptions, &id);
    c.stop_delivery(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The longest a graceful stop or termination waits for the instance's confirmation,
/// whatever the request asked: the MEC 010-2 request waits as long.
pub const MAX_GRACEFUL_WAIT_S: u32 = 300;

/// How a graceful stop or termination ended its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// Forceful, or nobody subscribed to hear of it: nothing to wait for.
    NotAsked,
    Confirmed,
    TimedOut,
}

/// Tells the instance's subscribers that the platform is about to stop or terminate it
/// (`action`) with `timeout` seconds to finish, and for a graceful one (`timeout` > 0, someone
/// subscribed) waits for the instance's `confirm_termination` or the timeout (at most
/// [`MAX_GRACEFUL_WAIT_S`]). `api_base` is `http://HOST` of the request.
pub(crate) async fn announce_end(
    c: &Control,
    app: &str,
    action: OperationActionType,
    timeout: u32,
    api_base: &str,
) -> Result<Confirmation, StoreError> {
    let subs = subs_of(c, app)?;
    let waits = timeout > 0 && !subs.is_empty();
    let confirmed = if waits {
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.pending_confirmations()
            .insert(app.to_string(), (action, tx));
        Some(rx)
    } else {
        None
    };
    for (id, s) in subs {
        let n = AppTerminationNotification {
            notification_type: APP_TERMINATION_NOTIFICATION.to_string(),
            operation_action: action,
            max_graceful_timeout: timeout,
            links: AppTerminationNotificationLinks {
                subscription: mec_api::ams::LinkType {
                    href: s.links.map(|l| l.self_.href).unwrap_or_default(),
                },
                confirm_termination: Some(mec_api::ams::LinkType {
                    href: format!("{api_base}{ROOT}/applications/{app}/confirm_termination"),
                }),
            },
        };
        c.deliver(&id, serde_json::to_value(&n).unwrap_or_default());
    }
    let Some(rx) = confirmed else {
        return Ok(Confirmation::NotAsked);
    };
    let wait = std::time::Duration::from_secs(u64::from(timeout.min(MAX_GRACEFUL_WAIT_S)));
    let outcome = match tokio::time::timeout(wait, rx).await {
        Ok(Ok(())) => Confirmation::Confirmed,
        _ => Confirmation::TimedOut,
    };
    c.pending_confirmations().remove(app);
    tracing::info!(instance = %app, ?action, ?outcome, "graceful end");
    Ok(outcome)
}
