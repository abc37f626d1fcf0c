//! MEC 010-2 application lifecycle management (`/app_lcm/v1`): app instances (create,
//! instantiate, operate, terminate, delete), their operation occurrences and
//! `AppInstanceStateChange` subscriptions.
//!
//! Instantiation places the instance on a MEC host (named in `selectedMECHostInfo`, or the host
//! serving the UE named by the `ferryAssociateId` extension), gives it an address from the app
//! subnet, creates and starts its container through the host's API, and installs the MEC 011
//! traffic rule that steers the instance's address to that host. Operations run to completion
//! before the answer (202, the operation occurrence in `Location`); a failed one answers 502 and
//! its occurrence is FAILED with `ferryError`.

use crate::http::{self, ApiError};
use crate::store::{StoreError, Table};
use crate::Control;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use mec_api::ams::{AssociateIdType, LinkType, SelfLink};
use mec_api::app_lcm::*;
use mec_api::app_pkgm::{AppD, AppPkgInfo, UsageState};
use mec_api::app_support::{
    FilterType, OperationActionType, RuleState, TrafficAction, TrafficRule,
};
use mec_api::rni::TimeStamp;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Path prefix of this API.
pub const ROOT: &str = "/app_lcm/v1";

/// The id of the traffic rule ferry installs for every instance.
pub const STEER_RULE: &str = "ferry-steer";

pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/app_lcm/v1/app_instances", get(list).post(create))
        .route("/app_lcm/v1/app_instances/{id}", get(read).delete(remove))
        .route(
            "/app_lcm/v1/app_instances/{id}/instantiate",
            post(instantiate),
        )
        .route("/app_lcm/v1/app_instances/{id}/terminate", post(terminate))
        .route("/app_lcm/v1/app_instances/{id}/operate", post(operate))
        .route("/app_lcm/v1/app_lcm_op_occs", get(list_ops))
        .route("/app_lcm/v1/app_lcm_op_occs/{id}", get(read_op))
        .route("/app_lcm/v1/subscriptions", get(list_subs).post(create_sub))
        .route(
            "/app_lcm/v1/subscriptions/{id}",
            get(read_sub).delete(delete_sub),
        )
}

/// Restarts the delivery workers of the stored subscriptions.
pub(crate) fn restore(c: &Control) -> Result<(), StoreError> {
    for (id, s) in c
        .store()
        .list::<AppInstSubscription>(Table::LcmSubscriptions)?
    {
        c.start_delivery(&id, &s.callback_uri);
    }
    Ok(())
}

/// The AppD an instance was created from.
pub fn appd_of(c: &Control, i: &AppInstanceInfo) -> Result<Option<AppD>, StoreError> {
    c.store().get(Table::AppDs, &i.app_pkg_id)
}

fn no_instance(id: &str) -> ApiError {
    ApiError::not_found(format!("no app instance '{id}'"))
}

fn get_instance(c: &Control, id: &str) -> Result<AppInstanceInfo, ApiError> {
    c.store()
        .get(Table::Instances, id)?
        .ok_or_else(|| no_instance(id))
}

fn busy(id: &str) -> ApiError {
    ApiError::conflict(format!(
        "app instance '{id}' has another operation in progress: retry when it is done"
    ))
}

fn links(base: &str, state: InstantiationState) -> AppInstanceLinks {
    let l = |s: &str| {
        Some(LinkType {
            href: format!("{base}/{s}"),
        })
    };
    let inst = state == InstantiationState::Instantiated;
    AppInstanceLinks {
        self_: LinkType {
            href: base.to_string(),
        },
        instantiate: if inst { None } else { l("instantiate") },
        terminate: if inst { l("terminate") } else { None },
        operate: if inst { l("operate") } else { None },
    }
}

fn set_usage(c: &Control, pkg: &str) -> Result<(), StoreError> {
    let used = c
        .store()
        .list::<AppInstanceInfo>(Table::Instances)?
        .iter()
        .any(|(_, i)| i.app_pkg_id == pkg);
    c.store()
        .update(Table::Packages, pkg, |p: &mut AppPkgInfo| {
            p.usage_state = if used {
                UsageState::InUse
            } else {
                UsageState::NotInUse
            };
            Ok::<_, ()>(())
        })?;
    Ok(())
}

async fn create(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateAppInstanceRequest = http::parse_body(&headers, &body)?;
    let (pkg, d) = crate::app_pkgm::find_onboarded(&c, &req.app_d_id)?.ok_or_else(|| {
        ApiError::bad_request(format!(
            "no onboarded app package with appDId '{}': onboard it first",
            req.app_d_id
        ))
    })?;
    if pkg.operational_state != mec_api::app_pkgm::PkgOperationalState::Enabled {
        return Err(ApiError::conflict(format!(
            "app package '{}' of appDId '{}' is DISABLED: enable it first (PATCH operationState)",
            pkg.id, req.app_d_id
        )));
    }
    let id = c.store().next_id("inst")?;
    let base = format!("{}{ROOT}/app_instances/{id}", http::base_url(&headers));
    let info = AppInstanceInfo {
        id: id.clone(),
        app_instance_name: req.app_instance_name,
        app_instance_description: req.app_instance_description,
        app_d_id: d.app_d_id.clone(),
        app_provider: d.app_provider.clone(),
        app_name: d.app_name.clone(),
        app_soft_version: d.app_soft_version.clone(),
        app_d_version: d.app_d_version.clone(),
        app_pkg_id: pkg.id.clone(),
        instantiation_state: InstantiationState::NotInstantiated,
        instantiated_app_state: None,
        ferry_host: None,
        ferry_address: None,
        links: links(&base, InstantiationState::NotInstantiated),
    };
    c.store().put(Table::Instances, &id, &info)?;
    set_usage(&c, &pkg.id)?;
    tracing::info!(instance = %id, app = %d.app_d_id, "app instance created");
    let mut resp = http::json(StatusCode::CREATED, &info);
    if let Ok(v) = base.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list(State(c): State<Control>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = http::query_pairs_raw(q.as_deref(), &["filter"])?;
    let filter = crate::filter::Filter::parse(&http::values(&pairs, "filter").join(";"))
        .map_err(ApiError::bad_request)?;
    let out: Vec<serde_json::Value> = c
        .store()
        .list::<serde_json::Value>(Table::Instances)?
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| filter.matches(v))
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

async fn read(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(http::json(StatusCode::OK, &get_instance(&c, &id)?))
}

async fn remove(State(c): State<Control>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let _claim = c.claim(&id).ok_or_else(|| busy(&id))?;
    let i = get_instance(&c, &id)?;
    if i.instantiation_state == InstantiationState::Instantiated {
        return Err(ApiError::conflict(format!(
            "app instance '{id}' is INSTANTIATED: terminate it first"
        )));
    }
    c.store().delete(Table::Instances, &id)?;
    crate::oauth::remove_instance_client(&c, &id);
    set_usage(&c, &i.app_pkg_id)?;
    tracing::info!(instance = %id, "app instance deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- operation occurrences ----

/// Starts recording an operation occurrence (PROCESSING).
fn begin_op(
    c: &Control,
    headers: &HeaderMap,
    instance: &str,
    op: LcmOperation,
    params: serde_json::Value,
) -> Result<AppInstanceLcmOpOcc, ApiError> {
    let id = c.store().next_id("op")?;
    let base = http::base_url(headers);
    let now = TimeStamp::now();
    let occ = AppInstanceLcmOpOcc {
        id: id.clone(),
        operation_state: OperationState::Processing,
        state_entered_time: now,
        start_time: now,
        lcm_operation: op,
        operation_params: Some(params),
        ferry_error: None,
        links: OpOccLinks {
            self_: LinkType {
                href: format!("{base}{ROOT}/app_lcm_op_occs/{id}"),
            },
            app_instance: LinkType {
                href: format!("{base}{ROOT}/app_instances/{instance}"),
            },
        },
    };
    c.store().put(Table::LcmOps, &id, &occ)?;
    Ok(occ)
}

/// Ends an operation: COMPLETED answers 202 with the occurrence's URI in `Location`; FAILED
/// answers the error (502 for a host's failure), naming the occurrence in `instance`.
fn end_op(
    c: &Control,
    mut occ: AppInstanceLcmOpOcc,
    result: Result<(), ApiError>,
) -> Result<Response, ApiError> {
    occ.state_entered_time = TimeStamp::now();
    match &result {
        Ok(()) => occ.operation_state = OperationState::Completed,
        Err(e) => {
            occ.operation_state = OperationState::Failed;
            occ.ferry_error = e.0.detail.clone();
        }
    }
    c.store().put(Table::LcmOps, &occ.id, &occ)?;
    match result {
        Ok(()) => {
            let mut resp = http::json(StatusCode::ACCEPTED, &occ);
            if let Ok(v) = occ.links.self_.href.parse() {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Err(mut e) => {
            e.0.instance = Some(occ.links.self_.href.clone());
            Err(e)
        }
    }
}

async fn list_ops(State(c): State<Control>) -> Result<Response, ApiError> {
    let out: Vec<serde_json::Value> = c
        .store()
        .list::<serde_json::Value>(Table::LcmOps)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

async fn read_op(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v: serde_json::Value = c
        .store()
        .get(Table::LcmOps, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no lcm operation occurrence '{id}'")))?;
    Ok(http::json(StatusCode::OK, &v))
}

// ---- instantiate ----

/// The host named by one `MECHostInformation`: `hostName`, or `hostId` as a string or as
/// `{"name": ...}`.
fn host_name_of(h: &mec_api::ams::MecHostInformation) -> Option<String> {
    h.host_name
        .clone()
        .or_else(|| h.host_id.as_str().map(str::to_string))
        .or_else(|| {
            h.host_id
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
        })
}

/// The MEC host serving a UE: its cell from the MEC 013 Location API, then the configured
/// cell -> host map (or the zone, which ferry's RAN names after the host).
pub async fn serving_host(c: &Control, ue: Ipv4Addr) -> Result<String, ApiError> {
    let Some(ran) = c.config().ran.as_deref() else {
        return Err(ApiError::bad_request(
            "ferryAssociateId needs a RAN to locate the UE: start ferry control with --ran URL, or name the host in selectedMECHostInfo",
        ));
    };
    let url = format!("{ran}/location/v2/queries/users");
    let resp = c
        .http()
        .get(&url)
        .query(&[("address", format!("acr:{ue}"))])
        .send()
        .await
        .map_err(|e| ApiError::bad_gateway(format!("RAN location query failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(ApiError::bad_gateway(format!(
            "RAN location query answered {}",
            resp.status()
        )));
    }
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| ApiError::bad_gateway(format!("RAN location answer is not JSON: {e}")))?;
    let user = v["userList"]["user"]
        .as_array()
        .and_then(|u| u.first())
        .ok_or_else(|| ApiError::bad_request(format!("the RAN knows no UE with address {ue}")))?;
    let cell = user["accessPointId"].as_str().unwrap_or("");
    let zone = user["zoneId"].as_str().unwrap_or("");
    host_of_location(c, cell, zone).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "UE {ue} is in cell '{cell}' (zone '{zone}'), which no known MEC host serves"
        ))
    })
}

/// The MEC host serving a MEC 013 location: the topology's host of the access point (cell),
/// or the zone when it names a host (ferry's RAN makes each host a zone).
pub fn host_of_location(c: &Control, access_point: &str, zone: &str) -> Option<String> {
    if let Some(h) = c.config().cells.get(access_point) {
        return Some(h.clone());
    }
    c.hosts().contains(zone).then(|| zone.to_string())
}

/// The first free address of the app subnet (from .2; .1 is the gateway): used by no
/// instance and by no relocation in flight. Call it under `Control::placement`, and record
/// the address before releasing it.
pub(crate) fn allocate_address(c: &Control) -> Result<Ipv4Addr, ApiError> {
    let mut used: BTreeSet<Ipv4Addr> = c
        .store()
        .list::<AppInstanceInfo>(Table::Instances)?
        .into_iter()
        .filter_map(|(_, i)| i.ferry_address.and_then(|a| a.parse().ok()))
        .collect();
    for r in c.in_flight_relocations()? {
        used.extend(
            [r.source_address, r.target_address]
                .into_iter()
                .flatten()
                .filter_map(|a| a.parse::<Ipv4Addr>().ok()),
        );
    }
    let (net, prefix) = c.config().app_subnet;
    let size: u64 = 1u64 << (32 - u32::from(prefix.min(30)));
    let base = u32::from(net);
    (2..size - 1)
        .map(|n| Ipv4Addr::from(base.wrapping_add(n as u32)))
        .find(|a| !used.contains(a))
        .ok_or_else(|| ApiError::conflict("the app subnet has no free address left"))
}

/// What an app instance learns from its environment (ETSI leaves the how to the platform):
/// its id, where the platform's MEC APIs are, and the UE it serves.
pub const ENV_APP_INSTANCE_ID: &str = "MEC_APP_INSTANCE_ID";
pub const ENV_API_ROOT: &str = "MEC_API_ROOT";
pub const ENV_ASSOCIATE_ID: &str = "MEC_ASSOCIATE_ID";
/// The instance's own OAuth 2.0 client (`oauth.rs`) and where it gets tokens, and the
/// operator's CA certificate (PEM) to trust the platform's TLS with: set when the platform
/// serves TLS.
pub const ENV_CLIENT_ID: &str = "MEC_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "MEC_CLIENT_SECRET";
pub const ENV_TOKEN_URL: &str = "MEC_TOKEN_URL";
pub const ENV_CA_CERT: &str = "MEC_CA_CERT";

/// The container of app instance `id` at `address`, as the AppD's `ferryContainer` says, with
/// the platform's environment: `MEC_APP_INSTANCE_ID`, `MEC_API_ROOT` (when the platform knows
/// how instances reach it) and `MEC_ASSOCIATE_ID` (the UE's IPv4 address, for an instance
/// serving a UE), and with TLS its client credentials (a new secret of its client each time).
/// The platform's values replace AppD entries of the same names.
pub(crate) fn container_spec(
    c: &Control,
    id: &str,
    appd: &AppD,
    address: Ipv4Addr,
    ue: Option<Ipv4Addr>,
) -> Result<ferry_wire::ContainerRequest, ApiError> {
    let fc = appd.ferry_container.clone().unwrap_or_default();
    let mut platform = vec![format!("{ENV_APP_INSTANCE_ID}={id}")];
    if let Some(root) = &c.config().app_api_root {
        platform.push(format!("{ENV_API_ROOT}={root}"));
        if let Some(ca) = c.ca_pem() {
            let (client, secret) = crate::oauth::instance_credentials(c, id)?;
            platform.push(format!("{ENV_CLIENT_ID}={client}"));
            platform.push(format!("{ENV_CLIENT_SECRET}={secret}"));
            platform.push(format!(
                "{ENV_TOKEN_URL}={root}{}",
                mec_http::oauth::TOKEN_PATH
            ));
            platform.push(format!("{ENV_CA_CERT}={ca}"));
        }
    }
    if let Some(ue) = ue {
        platform.push(format!("{ENV_ASSOCIATE_ID}={ue}"));
    }
    let ours = [
        ENV_APP_INSTANCE_ID,
        ENV_API_ROOT,
        ENV_ASSOCIATE_ID,
        ENV_CLIENT_ID,
        ENV_CLIENT_SECRET,
        ENV_TOKEN_URL,
        ENV_CA_CERT,
    ];
    let mut env: Vec<String> = fc
        .env
        .iter()
        .filter(|kv| !ours.contains(&kv.split('=').next().unwrap_or("")))
        .cloned()
        .collect();
    env.extend(platform);
    Ok(ferry_wire::ContainerRequest {
        name: id.to_string(),
        image: appd.app_d_id.clone(),
        args: (!fc.args.is_empty()).then(|| fc.args.clone()),
        env,
        memory_mib: fc.memory_mib,
        cpus: fc.cpus,
        ip: Some(address),
    })
}

/// The traffic rule that steers an instance's address to its host.
pub fn steer_rule(c: &Control, address: &str, host: &str) -> TrafficRule {
    let host_ip = c
        .hosts()
        .url(host)
        .ok()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    TrafficRule {
        traffic_rule_id: STEER_RULE.to_string(),
        filter_type: FilterType::Flow,
        priority: 1,
        traffic_filter: vec![serde_json::json!({"dstAddress": [address]})],
        action: TrafficAction::ForwardDecapsulated,
        dst_interface: Some(serde_json::json!({"interfaceType": "IP", "dstIpAddress": host_ip})),
        state: RuleState::Active,
        ferry_host: Some(host.to_string()),
    }
}

async fn instantiate(
    State(c): State<Control>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: InstantiateAppRequest = http::parse_body(&headers, &body)?;
    let _claim = c.claim(&id).ok_or_else(|| busy(&id))?;
    let inst = get_instance(&c, &id)?;
    if inst.instantiation_state == InstantiationState::Instantiated {
        return Err(ApiError::conflict(format!(
            "app instance '{id}' is already INSTANTIATED on '{}'",
            inst.ferry_host.as_deref().unwrap_or("?")
        )));
    }
    let host = if let Some(h) = req.selected_mec_host_info.first() {
        let name = host_name_of(h).ok_or_else(|| {
            ApiError::bad_request(
                "selectedMECHostInfo[0] names no host (set hostName or hostId.name)",
            )
        })?;
        if !c.hosts().contains(&name) {
            return Err(ApiError::bad_request(format!(
                "selectedMECHostInfo names host '{name}', which is not one of {}",
                c.hosts().names().join(", ")
            )));
        }
        name
    } else if let Some(a) = &req.ferry_associate_id {
        let ip = match (a.type_, a.value.trim().parse::<Ipv4Addr>()) {
            (AssociateIdType::UeIpv4Address, Ok(ip)) => ip,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "ferryAssociateId must be a UE_IPv4_ADDRESS with an IPv4 value (got '{}')",
                    a.value
                )))
            }
        };
        serving_host(&c, ip).await?
    } else {
        return Err(ApiError::bad_request(
            "InstantiateAppRequest needs selectedMECHostInfo (the host) or ferryAssociateId (the UE whose serving host is chosen)",
        ));
    };
    let appd = appd_of(&c, &inst)?.ok_or_else(|| {
        ApiError::conflict(format!("the app package of '{id}' is no longer onboarded"))
    })?;
    let occ = begin_op(
        &c,
        &headers,
        &id,
        LcmOperation::Instantiate,
        serde_json::to_value(&req).unwrap_or_default(),
    )?;
    // Reserve the address in the store before the host call, so concurrent instantiations
    // cannot pick the same one.
    let address = {
        let _g = c.placement().lock().await;
        let a = allocate_address(&c)?;
        c.store()
            .update(Table::Instances, &id, |i: &mut AppInstanceInfo| {
                i.ferry_address = Some(a.to_string());
                i.ferry_host = Some(host.clone());
                Ok::<_, ApiError>(())
            })?
            .ok_or_else(|| no_instance(&id))??;
        a
    };
    let ue = req
        .ferry_associate_id
        .as_ref()
        .and_then(|a| a.value.trim().parse::<Ipv4Addr>().ok());
    let spec = container_spec(&c, &id, &appd, address, ue)?;
    let started = async {
        c.hosts().create(&host, &spec).await?;
        if let Err(e) = c.hosts().start(&host, &id).await {
            let _ = c.hosts().delete(&host, &id).await;
            return Err(e);
        }
        Ok(())
    }
    .await;
    if let Err(e) = started {
        c.store()
            .update(Table::Instances, &id, |i: &mut AppInstanceInfo| {
                i.ferry_address = None;
                i.ferry_host = None;
                Ok::<_, ()>(())
            })?;
        return end_op(&c, occ, Err(ApiError::bad_gateway(e.to_string())));
    }
    let base = inst.links.self_.href.clone();
    c.store()
        .update(Table::Instances, &id, |i: &mut AppInstanceInfo| {
            i.instantiation_state = InstantiationState::Instantiated;
            i.instantiated_app_state = Some(InstantiatedAppState {
                operational_state: OperationalState::Started,
            });
            i.links = links(&base, InstantiationState::Instantiated);
            Ok::<_, ()>(())
        })?;
    let rule = steer_rule(&c, &address.to_string(), &host);
    c.store()
        .put(Table::TrafficRules, &format!("{id}/{STEER_RULE}"), &rule)?;
    crate::app_support::import_dns_rules(&c, &id, &appd, &address.to_string())?;
    if let Some(ue) = ue {
        // The relocation controller moves this instance when that UE hands over.
        c.store().put(Table::InstanceUes, &id, &ue.to_string())?;
        c.ue_index().set_instance_ue(&id, ue);
    }
    if let Err(e) = c.data_plane().route(address, &host).await {
        tracing::warn!(instance = %id, "traffic rule not applied: {e}");
    }
    tracing::info!(instance = %id, %host, %address, "app instance instantiated");
    notify_state(&c, &id, "STARTED")?;
    c.notify_adjacent(&appd.app_d_id)?;
    end_op(&c, occ, Ok(()))
}

// ---- terminate, operate ----

async fn terminate(
    State(c): State<Control>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: TerminateAppRequest = http::parse_body(&headers, &body)?;
    let _claim = c.claim(&id).ok_or_else(|| busy(&id))?;
    let inst = get_instance(&c, &id)?;
    let (Some(host), InstantiationState::Instantiated) =
        (inst.ferry_host.clone(), inst.instantiation_state)
    else {
        return Err(ApiError::conflict(format!(
            "app instance '{id}' is NOT_INSTANTIATED: nothing to terminate"
        )));
    };
    let occ = begin_op(
        &c,
        &headers,
        &id,
        LcmOperation::Terminate,
        serde_json::to_value(&req).unwrap_or_default(),
    )?;
    let timeout = match req.termination_type {
        StopType::Graceful => req.graceful_termination_timeout.unwrap_or(0),
        StopType::Forceful => 0,
    };
    crate::app_support::announce_end(
        &c,
        &id,
        OperationActionType::Terminating,
        timeout,
        &http::base_url(&headers),
    )
    .await?;
    // A stopped container refuses `stop`; `delete` is what must succeed.
    let _ = c.hosts().stop(&host, &id).await;
    if let Err(e) = c.hosts().delete(&host, &id).await {
        return end_op(&c, occ, Err(ApiError::bad_gateway(e.to_string())));
    }
    let base = inst.links.self_.href.clone();
    c.store()
        .update(Table::Instances, &id, |i: &mut AppInstanceInfo| {
            i.instantiation_state = InstantiationState::NotInstantiated;
            i.instantiated_app_state = None;
            i.ferry_host = None;
            i.ferry_address = None;
            i.links = links(&base, InstantiationState::NotInstantiated);
            Ok::<_, ()>(())
        })?;
    crate::app_support::forget_instance(&c, &id)?;
    tracing::info!(instance = %id, %host, "app instance terminated");
    notify_state(&c, &id, "NOT_INSTANTIATED")?;
    c.notify_adjacent(&inst.app_d_id)?;
    end_op(&c, occ, Ok(()))
}

async fn operate(
    State(c): State<Control>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: OperateAppRequest = http::parse_body(&headers, &body)?;
    let _claim = c.claim(&id).ok_or_else(|| busy(&id))?;
    let inst = get_instance(&c, &id)?;
    let (Some(host), Some(state)) = (inst.ferry_host.clone(), inst.instantiated_app_state.clone())
    else {
        return Err(ApiError::conflict(format!(
            "app instance '{id}' is NOT_INSTANTIATED: instantiate it first"
        )));
    };
    if state.operational_state == req.change_state_to {
        return Err(ApiError::conflict(format!(
            "app instance '{id}' is already {:?}",
            req.change_state_to
        )));
    }
    let occ = begin_op(
        &c,
        &headers,
        &id,
        LcmOperation::Operate,
        serde_json::to_value(&req).unwrap_or_default(),
    )?;
    let r = match req.change_state_to {
        OperationalState::Started => c.hosts().start(&host, &id).await,
        OperationalState::Stopped => {
            let timeout = match req.stop_type {
                Some(StopType::Graceful) => req.graceful_stop_timeout.unwrap_or(0),
                Some(StopType::Forceful) | None => 0,
            };
            crate::app_support::announce_end(
                &c,
                &id,
                OperationActionType::Stopping,
                timeout,
                &http::base_url(&headers),
            )
            .await?;
            c.hosts().stop(&host, &id).await
        }
    };
    if let Err(e) = r {
        return end_op(&c, occ, Err(ApiError::bad_gateway(e.to_string())));
    }
    c.store()
        .update(Table::Instances, &id, |i: &mut AppInstanceInfo| {
            i.instantiated_app_state = Some(InstantiatedAppState {
                operational_state: req.change_state_to,
            });
            Ok::<_, ()>(())
        })?;
    let n = match req.change_state_to {
        OperationalState::Started => "STARTED",
        OperationalState::Stopped => "STOPPED",
    };
    notify_state(&c, &id, n)?;
    end_op(&c, occ, Ok(()))
}

// ---- subscriptions ----

const STATES: [&str; 3] = ["NOT_INSTANTIATED", "STARTED", "STOPPED"];

fn sub_selects(s: &AppInstSubscription, instance: &str, state: &str) -> bool {
    let state_ok = s.app_instance_state.as_deref().is_none_or(|w| w == state);
    let ids = s
        .app_instance_subscription_filter
        .as_ref()
        .and_then(|f| f.get("appInstances"))
        .and_then(|a| a.as_array());
    let inst_ok = ids.is_none_or(|ids| ids.iter().any(|i| i.as_str() == Some(instance)));
    state_ok && inst_ok
}

/// Queues an `AppInstNotification` (NOT_INSTANTIATED, STARTED, STOPPED) to every matching
/// subscriber.
fn notify_state(c: &Control, instance: &str, state: &str) -> Result<(), StoreError> {
    let Some(i) = c
        .store()
        .get::<AppInstanceInfo>(Table::Instances, instance)?
    else {
        return Ok(());
    };
    for (sid, s) in c
        .store()
        .list::<AppInstSubscription>(Table::LcmSubscriptions)?
    {
        if !sub_selects(&s, instance, state) {
            continue;
        }
        let n = AppInstNotification {
            id: c.store().next_id("lcm-note")?,
            notification_type: state.to_string(),
            subscription_id: sid.clone(),
            time_stamp: TimeStamp::now(),
            app_instance_id: i.id.clone(),
            app_pkg_id: i.app_pkg_id.clone(),
            app_d_id: i.app_d_id.clone(),
            links: serde_json::json!({
                "subscription": {"href": s.links.as_ref().map(|l| l.self_.href.clone())},
                "appInstance": {"href": i.links.self_.href},
            }),
        };
        if let Ok(body) = serde_json::to_value(&n) {
            c.deliver(&sid, body);
        }
    }
    Ok(())
}

async fn create_sub(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut s: AppInstSubscription = http::parse_body(&headers, &body)?;
    if s.subscription_type != APP_INSTANCE_STATE_CHANGE {
        return Err(ApiError::bad_request(format!(
            "subscriptionType '{}' is not supported (use \"{APP_INSTANCE_STATE_CHANGE}\")",
            s.subscription_type
        )));
    }
    http::check_callback(&s.callback_uri, "callbackUri")?;
    if let Some(st) = &s.app_instance_state {
        if !STATES.contains(&st.as_str()) {
            return Err(ApiError::bad_request(format!(
                "appInstanceState '{st}' is not one of {}",
                STATES.join(", ")
            )));
        }
    }
    let id = c.store().next_id("lcm-sub")?;
    let href = format!("{}{ROOT}/subscriptions/{id}", http::base_url(&headers));
    s.id = Some(id.clone());
    s.notification_type = s.app_instance_state.clone();
    s.links = Some(SelfLink {
        self_: LinkType { href: href.clone() },
    });
    c.store().put(Table::LcmSubscriptions, &id, &s)?;
    c.start_delivery(&id, &s.callback_uri);
    let mut resp = http::json(StatusCode::CREATED, &s);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list_subs(State(c): State<Control>, headers: HeaderMap) -> Result<Response, ApiError> {
    let subs: Vec<serde_json::Value> = c
        .store()
        .list::<AppInstSubscription>(Table::LcmSubscriptions)?
        .into_iter()
        .map(|(_, s)| {
            serde_json::json!({
                "href": s.links.map(|l| l.self_.href).unwrap_or_default(),
                "subscriptionType": s.subscription_type,
            })
        })
        .collect();
    let self_href = format!("{}{ROOT}/subscriptions", http::base_url(&headers));
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({"_links": {"self": {"href": self_href}, "subscriptions": subs}}),
    ))
}

fn no_sub(id: &str) -> ApiError {
    ApiError::not_found(format!("no lcm subscription '{id}'"))
}

async fn read_sub(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s: AppInstSubscription = c
        .store()
        .get(Table::LcmSubscriptions, &id)?
        .ok_or_else(|| no_sub(&id))?;
    Ok(http::json(StatusCode::OK, &s))
}

async fn delete_sub(
    State(c): State<Control>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !c.store().delete(Table::LcmSubscriptions, &id)? {
        return Err(no_sub(&id));
    }
    c.stop_delivery(&id);
    Ok(StatusCode::NO_CONTENT)
}
