//! The relocation controller: MEC 012 CellChange consumer and the procedure that moves a UE's
//! app instances to the MEC host serving its new cell (MEC 021 mobility procedure).
//!
//! - `subscribe_ran` / `unsubscribe_ran`: a `CellChangeSubscription` at the RAN whose callback
//!   is `POST /ferry/control/v1/notifications/rni/cell_change` of this daemon (its URI is
//!   stored, so a restart after a kill replaces it instead of adding a second one);
//! - `on_cell_change`: a COMPLETED handover -> the target host -> for each instance serving the
//!   UE (AMS registrations), queue a move. Moves of one instance are coalesced: a worker per
//!   instance always goes to the latest wanted host (no ping-pong);
//! - `relocate`: the address on the target (APPLICATION: a new one) -> TRIGGERED with
//!   `targetAppInfo` -> state transfer (APPLICATION: a target instance starts, the app moves its
//!   context into it and says USER_CONTEXT_TRANSFER_COMPLETED; CONTAINER_MIGRATION: the source
//!   host migrates) -> traffic switch -> instance host (and address) updated -> source removed
//!   (APPLICATION) -> COMPLETED, or FAILED with the app left on the source; the record is
//!   written at every phase;
//! - `recover`: at start, relocations in flight are completed (the container is on the target,
//!   and for APPLICATION the app had reported its context moved) or marked FAILED.

use crate::ams::{self, MobilityDecision, MobilityEvent};
use crate::app_lcm::{self, STEER_RULE};
use crate::relocation::{Migrator, Phase, RelocationRecord};
use crate::store::Table;
use crate::{lock, Control};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mec_api::ams::{
    AssociateId, AssociateIdType, CommunicationInterface, ContextTransferState, IpAddress,
    MobilityStatus, TargetAppInfo,
};
use mec_api::app_lcm::AppInstanceInfo;
use mec_api::app_pkgm::StateRelocationMode;
use mec_api::rni::{CellChangeNotification, HoStatus};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Path of the MEC 012 notification callback.
pub const CELL_CHANGE_PATH: &str = "/ferry/control/v1/notifications/rni/cell_change";

/// Where a source host says a migration committed: the target serves, traffic switches now.
pub const COMMITTED_PATH: &str = "/ferry/control/v1/relocations/{id}/committed";

/// How many relocations may touch one MEC host at once.
pub const PER_HOST_LIMIT: usize = 4;

/// How long the app may take to confirm or transfer its context.
pub const APP_WAIT: Duration = Duration::from_secs(30);

/// One wanted move of an instance (the latest handover wins).
#[derive(Clone, Debug)]
struct Wanted {
    target: String,
    ue: Ipv4Addr,
    registration: Option<String>,
    decision: MobilityDecision,
}

/// The controller's shared state, kept in `Control`.
pub struct Controller {
    migrator: Box<dyn Migrator>,
    /// Instance -> the latest wanted move not yet started.
    wanted: std::sync::Mutex<HashMap<String, Wanted>>,
    /// Instances with a running worker.
    workers: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Per-host concurrency limit.
    limits: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// The RAN subscription's href, to delete at shutdown.
    ran_subscription: std::sync::Mutex<Option<String>>,
    /// Relocation id -> the migration whose commit we wait to hear of.
    commits: std::sync::Mutex<HashMap<String, CommitWatch>>,
}

/// A container migration in flight whose source host calls back at the commit.
struct CommitWatch {
    /// In the callback URL: only the host we told may switch the traffic.
    token: String,
    instance: String,
    address: Ipv4Addr,
    target: String,
    /// Set once the traffic switched at the commit: how long that took.
    switched_ms: Option<u64>,
}

impl Controller {
    pub fn new(migrator: Box<dyn Migrator>) -> Controller {
        Controller {
            migrator,
            wanted: Default::default(),
            workers: Default::default(),
            limits: Default::default(),
            ran_subscription: Default::default(),
            commits: Default::default(),
        }
    }

    fn limit(&self, host: &str) -> Arc<tokio::sync::Semaphore> {
        lock(&self.limits)
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PER_HOST_LIMIT)))
            .clone()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---- MEC 012 consumer ----

/// Store key (in `Table::RanSubscriptions`) of the CellChange subscription's href.
const CELL_CHANGE_KEY: &str = "cell_change";

/// Subscribes to CellChange (hoStatus COMPLETED) at the RAN, retrying until it answers. A
/// subscription an earlier run left behind (killed before its shutdown) is deleted first, so
/// the RAN never notifies this daemon twice per handover.
pub async fn subscribe_ran(c: Control, callback: String) {
    let Some(ran) = c.config().ran.clone() else {
        return;
    };
    delete_stale_ran_subscription(&c, &ran).await;
    let body = serde_json::json!({
        "subscriptionType": "CellChangeSubscription",
        "callbackReference": callback,
        "filterCriteriaAssocHo": {"hoStatus": [3]},
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
                *lock(&c.inner.controller.ran_subscription) = href;
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

/// Deletes the CellChange subscription a previous run recorded (404: the RAN forgot it
/// already). Deleted rather than reused: the old one may name another callback (the daemon
/// may listen elsewhere now) or another filter, while a fresh one always matches this run;
/// the handovers missed in between are those of the downtime, which were missed anyway.
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
    let href = lock(&c.inner.controller.ran_subscription).take();
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

/// `POST /ferry/control/v1/notifications/rni/cell_change`.
pub(crate) async fn cell_change(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n: CellChangeNotification = match crate::http::parse_body(&headers, &body) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if n.ho_status == HoStatus::Completed {
        tokio::spawn(async move { on_cell_change(&c, &n).await });
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A completed handover: queue a move of each instance serving the UE whose host differs.
async fn on_cell_change(c: &Control, n: &CellChangeNotification) {
    for a in &n.associate_id {
        let Ok(ue) = a.value.trim().parse::<Ipv4Addr>() else {
            continue;
        };
        if a.type_ != mec_api::rni::AssociateIdType::UeIpv4Address {
            continue;
        }
        let cell = n.trg_ecgi.first().map(|e| e.cell_id.clone());
        let target = match cell.as_deref().and_then(|cl| c.config().cells.get(cl)) {
            Some(h) => h.clone(),
            // The topology names cells, the RAN sends ECGIs: ask the RAN where the UE is now.
            None => match app_lcm::serving_host(c, ue).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(%ue, ?cell, "handover to a cell no host serves: {}", e.0.detail.unwrap_or_default());
                    continue;
                }
            },
        };
        let regs = match ams::registrations_for_ue(c, ue) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read registrations: {e}");
                continue;
            }
        };
        let mut covered = std::collections::HashSet::new();
        for (reg, dev) in regs {
            let Some(instance) = reg.service_consumer_id.app_instance_id.clone() else {
                continue;
            };
            let w = Wanted {
                target: target.clone(),
                ue,
                registration: reg.app_mobility_service_id.clone(),
                decision: ams::decide(dev.app_mobility_service_level),
            };
            covered.insert(instance.clone());
            want(c, &instance, w);
        }
        // Instances instantiated for this UE without an AMS registration: no service level
        // was given, so (as for a stateless app) relocate.
        let for_ue = c
            .store()
            .list::<String>(Table::InstanceUes)
            .unwrap_or_default();
        for (instance, v) in for_ue {
            if v.parse() == Ok(ue) && !covered.contains(&instance) {
                let w = Wanted {
                    target: target.clone(),
                    ue,
                    registration: None,
                    decision: ams::decide(None),
                };
                want(c, &instance, w);
            }
        }
    }
}

/// Records the latest wanted move of an instance; starts its worker if none runs.
fn want(c: &Control, instance: &str, w: Wanted) {
    let ctl = &c.inner.controller;
    lock(&ctl.wanted).insert(instance.to_string(), w);
    if !lock(&ctl.workers).insert(instance.to_string()) {
        return; // the running worker picks it up after its current move
    }
    let c = c.clone();
    let instance = instance.to_string();
    tokio::spawn(async move {
        loop {
            let next = {
                let ctl = &c.inner.controller;
                let mut wanted = lock(&ctl.wanted);
                let n = wanted.remove(&instance);
                if n.is_none() {
                    lock(&ctl.workers).remove(&instance);
                }
                n
            };
            let Some(w) = next else { break };
            move_instance(&c, &instance, &w).await;
        }
    });
}

/// Carries out one wanted move, per the service level.
async fn move_instance(c: &Control, instance: &str, w: &Wanted) {
    let inst: AppInstanceInfo = match c.store().get(Table::Instances, instance) {
        Ok(Some(i)) => i,
        _ => return,
    };
    let (Some(source), Some(addr)) = (inst.ferry_host.clone(), inst.ferry_address.clone()) else {
        return; // not instantiated
    };
    if source == w.target {
        return;
    }
    let Ok(address) = addr.parse::<Ipv4Addr>() else {
        return;
    };
    if w.decision == MobilityDecision::SteerOnly {
        // APP_MOBILITY_NOT_ALLOWED: the instance stays; the UE's traffic keeps reaching it.
        if let Err(e) = c.data_plane().route(address, &source).await {
            tracing::warn!(%instance, "traffic rule not applied: {e}");
        }
        tracing::info!(%instance, %source, "mobility not allowed: traffic steered to the instance where it is");
        return;
    }
    // A lifecycle operation holds the instance: wait for it (bounded).
    let mut claim = None;
    for _ in 0..100 {
        claim = c.claim(instance);
        if claim.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(_claim) = claim else {
        tracing::warn!(%instance, "instance busy: relocation skipped");
        return;
    };
    let ctl = &c.inner.controller;
    // Per-host limit, acquired in name order so two moves cannot deadlock.
    let (first, second) = if source < w.target {
        (&source, &w.target)
    } else {
        (&w.target, &source)
    };
    let (l1, l2) = (ctl.limit(first), ctl.limit(second));
    let _p1 = l1.acquire_owned().await;
    let _p2 = l2.acquire_owned().await;
    if let Err(e) = relocate(c, &inst, &source, address, w).await {
        tracing::error!(%instance, "relocation bookkeeping failed: {e}");
    }
}

fn save(
    c: &Control,
    r: &mut RelocationRecord,
    phase: Phase,
) -> Result<(), crate::store::StoreError> {
    r.phase = phase;
    r.phase_times_ms.push((phase, now_ms()));
    c.store().put(Table::Relocations, &r.id, r)
}

fn event(
    r: &RelocationRecord,
    status: MobilityStatus,
    target: Option<TargetAppInfo>,
) -> MobilityEvent {
    MobilityEvent {
        app_instance_id: r.app_instance_id.clone(),
        associate_id: vec![AssociateId {
            type_: AssociateIdType::UeIpv4Address,
            value: r.associate_id.clone(),
        }],
        status,
        target,
    }
}

/// `targetAppInfo` of TRIGGERED: the instance id (ferry keeps it) and, when the AppD names the
/// app's port, where the instance will listen on the target host: what an app that moves its
/// own context sends it to.
fn target_app_info(r: &RelocationRecord, port: Option<u16>) -> TargetAppInfo {
    let comm = match (&r.target_address, port) {
        (Some(host), Some(port)) => Some(CommunicationInterface {
            ip_addresses: vec![IpAddress {
                host: host.clone(),
                port,
            }],
        }),
        _ => None,
    };
    TargetAppInfo {
        app_instance_id: r.app_instance_id.clone(),
        comm_interface: comm,
    }
}

/// The relocation procedure of one instance from `source` to `w.target`.
async fn relocate(
    c: &Control,
    inst: &AppInstanceInfo,
    source: &str,
    address: Ipv4Addr,
    w: &Wanted,
) -> Result<(), crate::store::StoreError> {
    let appd = app_lcm::appd_of(c, inst)?;
    let sr = appd.as_ref().and_then(|a| a.ferry_state_relocation.clone());
    let mode = sr.as_ref().map(|s| s.mode).unwrap_or_default();
    let technique = sr
        .as_ref()
        .and_then(|s| s.technique.clone())
        .unwrap_or_else(|| "auto".to_string());
    let port = appd
        .as_ref()
        .and_then(|a| a.ferry_container.as_ref())
        .and_then(|fc| fc.port);
    let mut r = RelocationRecord {
        id: c.store().next_id("reloc")?,
        app_instance_id: inst.id.clone(),
        associate_id: w.ue.to_string(),
        source_host: source.to_string(),
        target_host: w.target.clone(),
        mode: match mode {
            StateRelocationMode::Application => "APPLICATION",
            StateRelocationMode::ContainerMigration => "CONTAINER_MIGRATION",
        }
        .to_string(),
        technique: (mode == StateRelocationMode::ContainerMigration).then(|| technique.clone()),
        source_address: Some(address.to_string()),
        target_address: None,
        phase: Phase::Triggered,
        phase_times_ms: Vec::new(),
        migration_report: None,
        platform_downtime_ms: None,
        traffic_switched_at_commit: false,
        error: None,
    };
    // A stale COMPLETED from an earlier move must not count as this one's.
    if let Some(reg) = &w.registration {
        ams::set_context_transfer_state(c, reg, w.ue, ContextTransferState::NotTransferred)?;
    }
    let mut events = c.registration_events();
    if let Err(e) = reserve_target_address(c, &mut r, mode, address).await? {
        r.error = Some(e);
        save(c, &mut r, Phase::Failed)?;
        c.notify_mobility(&event(&r, MobilityStatus::InterhostMoveoutFailed, None))?;
        return Ok(());
    }
    c.notify_mobility(&event(
        &r,
        MobilityStatus::InterhostMoveoutTriggered,
        Some(target_app_info(&r, port)),
    ))?;

    let outcome = transfer(c, inst, &mut r, w, mode, &technique, &mut events).await;
    // Switched already if the source host told us of the commit.
    let switched_at_commit = lock(&c.inner.controller.commits)
        .remove(&r.id)
        .and_then(|w| w.switched_ms);
    match outcome {
        Ok(()) => {
            let transferred = std::time::Instant::now();
            save(c, &mut r, Phase::SwitchingTraffic)?;
            let to = r
                .target_address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .unwrap_or(address);
            r.traffic_switched_at_commit = switched_at_commit.is_some();
            let timing = |k: &str| {
                r.migration_report
                    .as_ref()
                    .and_then(|m| m["timings"][k].as_u64())
                    .unwrap_or(0)
            };
            // Downtime as the platform saw it: the app frozen on the hosts, then until its
            // traffic reaches the target. Without the commit callback that includes what the
            // source did after the commit (post-copy's last pages, its cleanup).
            let after_commit = match switched_at_commit {
                Some(ms) => ms,
                None => {
                    switch(c, &inst.id, to, &w.target).await?;
                    timing("lazy_completion_ms")
                        + timing("cleanup_ms")
                        + transferred.elapsed().as_millis() as u64
                }
            };
            r.platform_downtime_ms = Some(timing("frozen_ms") + after_commit);
            save(c, &mut r, Phase::CleaningUp)?;
            if mode == StateRelocationMode::Application {
                if let Err(e) = c.hosts().delete(source, &inst.id).await {
                    tracing::warn!(instance = %inst.id, "source container not removed: {e}");
                }
            }
            save(c, &mut r, Phase::Completed)?;
            c.notify_mobility(&event(&r, MobilityStatus::InterhostMoveoutCompleted, None))?;
            c.notify_adjacent(&inst.app_d_id)?;
            tracing::info!(instance = %inst.id, from = %source, to = %w.target, "relocated");
        }
        Err(e) => {
            tracing::warn!(instance = %inst.id, "relocation failed: {e}");
            r.error = Some(e);
            save(c, &mut r, Phase::Failed)?;
            c.notify_mobility(&event(&r, MobilityStatus::InterhostMoveoutFailed, None))?;
        }
    }
    Ok(())
}

/// Decides the instance's address on the target host and records the relocation (TRIGGERED),
/// under the placement lock so no instantiation takes the address meanwhile. APPLICATION: both
/// instances run while the app moves its context, and the source must reach the target, so
/// the target gets an address of its own. CONTAINER_MIGRATION moves the instance with its
/// address. The inner error: no address is free.
async fn reserve_target_address(
    c: &Control,
    r: &mut RelocationRecord,
    mode: StateRelocationMode,
    address: Ipv4Addr,
) -> Result<Result<(), String>, crate::store::StoreError> {
    let _g = c.placement().lock().await;
    let target = match mode {
        StateRelocationMode::ContainerMigration => address,
        StateRelocationMode::Application => match app_lcm::allocate_address(c) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e.0.detail.unwrap_or_default())),
        },
    };
    r.target_address = Some(target.to_string());
    save(c, r, Phase::Triggered)?;
    Ok(Ok(()))
}

/// Waits for a change of `registration` satisfying `ok`, up to `APP_WAIT`.
async fn wait_registration(
    events: &mut tokio::sync::broadcast::Receiver<mec_api::ams::RegistrationInfo>,
    registration: &str,
    ok: impl Fn(&mec_api::ams::RegistrationInfo) -> bool,
) -> bool {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(r) if r.app_mobility_service_id.as_deref() == Some(registration) && ok(&r) => {
                    return true
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(APP_WAIT, wait).await.unwrap_or(false)
}

/// Moves the user context; on error the app still serves from the source.
async fn transfer(
    c: &Control,
    inst: &AppInstanceInfo,
    r: &mut RelocationRecord,
    w: &Wanted,
    mode: StateRelocationMode,
    technique: &str,
    events: &mut tokio::sync::broadcast::Receiver<mec_api::ams::RegistrationInfo>,
) -> Result<(), String> {
    let completed = |reg: &mec_api::ams::RegistrationInfo| {
        reg.device_information.iter().any(|d| {
            d.associate_id.value.trim().parse() == Ok(w.ue)
                && d.context_transfer_state
                    == Some(ContextTransferState::UserContextTransferCompleted)
        })
    };
    let source_url = c
        .hosts()
        .url(&r.source_host)
        .map_err(|e| e.to_string())?
        .to_string();
    let target_url = c
        .hosts()
        .url(&r.target_host)
        .map_err(|e| e.to_string())?
        .to_string();
    match mode {
        StateRelocationMode::ContainerMigration => {
            if w.decision == MobilityDecision::RelocateAfterConfirmation {
                let Some(reg) = &w.registration else {
                    return Err("no registration to confirm the relocation".into());
                };
                // Any update of the registration after TRIGGERED is the app's confirmation.
                if !wait_registration(events, reg, |_| true).await {
                    return Err(format!(
                        "the app did not confirm within {} s",
                        APP_WAIT.as_secs()
                    ));
                }
            }
            save(c, r, Phase::TransferringState).map_err(|e| e.to_string())?;
            let on_commit = watch_commit(c, r, inst);
            let report = c
                .inner
                .controller
                .migrator
                .migrate(
                    &source_url,
                    &inst.id,
                    &target_url,
                    technique,
                    on_commit.as_deref(),
                )
                .await?;
            r.migration_report = Some(report);
            if let Some(reg) = &w.registration {
                // The platform moved the context: say so on the app's behalf.
                ams::set_context_transfer_state(
                    c,
                    reg,
                    w.ue,
                    ContextTransferState::UserContextTransferCompleted,
                )
                .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        StateRelocationMode::Application => {
            let Some(reg) = w.registration.clone() else {
                return Err(
                    "APPLICATION mode needs an AMS registration to report the context transfer"
                        .into(),
                );
            };
            save(c, r, Phase::TransferringState).map_err(|e| e.to_string())?;
            // A fresh instance on the target, at its own address; the app moves its context
            // into it.
            let target_address: Ipv4Addr = r
                .target_address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .ok_or("no target address reserved")?;
            let spec = container_spec(c, inst, target_address, w.ue)?;
            c.hosts()
                .create(&r.target_host, &spec)
                .await
                .map_err(|e| e.to_string())?;
            // Steered now, not at the switch: the source instance sends its context there and
            // the target reaches the platform; the UE's traffic still goes to the source's
            // address.
            if let Err(e) = c.data_plane().route(target_address, &r.target_host).await {
                let _ = c.hosts().delete(&r.target_host, &inst.id).await;
                return Err(e.to_string());
            }
            if let Err(e) = c.hosts().start(&r.target_host, &inst.id).await {
                let _ = c.hosts().delete(&r.target_host, &inst.id).await;
                return Err(e.to_string());
            }
            if !wait_registration(events, &reg, completed).await {
                let _ = c.hosts().delete(&r.target_host, &inst.id).await;
                return Err(format!(
                    "the app did not report USER_CONTEXT_TRANSFER_COMPLETED within {} s",
                    APP_WAIT.as_secs()
                ));
            }
            Ok(())
        }
    }
}

/// Registers the migration of relocation `r` for a commit callback; the URL to give the
/// source host, when hosts can reach this daemon.
fn watch_commit(c: &Control, r: &RelocationRecord, inst: &AppInstanceInfo) -> Option<String> {
    let root = c.config().callback_root.as_ref()?;
    let address = r.source_address.as_deref()?.parse().ok()?;
    let mut secret = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))
        .ok()?;
    let token = hex::encode(secret);
    let url = format!(
        "{root}{}?token={token}",
        COMMITTED_PATH.replace("{id}", &r.id)
    );
    lock(&c.inner.controller.commits).insert(
        r.id.clone(),
        CommitWatch {
            token,
            instance: inst.id.clone(),
            address,
            target: r.target_host.clone(),
            switched_ms: None,
        },
    );
    Some(url)
}

/// `POST /ferry/control/v1/relocations/{id}/committed?token=...`: the source host says the
/// target serves. Traffic switches now, not when the migration's report arrives.
pub(crate) async fn committed(
    State(c): State<Control>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let heard = std::time::Instant::now();
    let watch = {
        let commits = lock(&c.inner.controller.commits);
        match commits.get(&id) {
            Some(w) if Some(&w.token) == q.get("token") => {
                (w.switched_ms.is_none()).then(|| (w.instance.clone(), w.address, w.target.clone()))
            }
            _ => {
                return mec_http::http::ApiError::not_found(format!(
                    "no migration of relocation '{id}' waits for this commit"
                ))
                .into_response()
            }
        }
    };
    if let Some((instance, address, target)) = watch {
        if let Err(e) = switch(&c, &instance, address, &target).await {
            tracing::warn!(relocation = %id, "traffic switch at commit failed: {e}");
            return mec_http::http::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                .into_response();
        }
        if let Some(w) = lock(&c.inner.controller.commits).get_mut(&id) {
            w.switched_ms = Some(heard.elapsed().as_millis() as u64);
        }
        tracing::info!(relocation = %id, %instance, %target, "migration committed: traffic switched");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The container of `inst` at `address` on another host, as instantiation builds it.
fn container_spec(
    c: &Control,
    inst: &AppInstanceInfo,
    address: Ipv4Addr,
    ue: Ipv4Addr,
) -> Result<crate::hosts::ContainerSpec, String> {
    let appd = app_lcm::appd_of(c, inst)
        .map_err(|e| e.to_string())?
        .ok_or("the app package is no longer onboarded")?;
    Ok(app_lcm::container_spec(
        c,
        &inst.id,
        &appd,
        address,
        Some(ue),
    ))
}

/// Steers `address` to `target` and records the instance there at that address (its own for
/// CONTAINER_MIGRATION, the target instance's for APPLICATION); DNS rules follow the address.
async fn switch(
    c: &Control,
    instance: &str,
    address: Ipv4Addr,
    target: &str,
) -> Result<(), crate::store::StoreError> {
    let rule = app_lcm::steer_rule(c, &address.to_string(), target);
    c.store().put(
        Table::TrafficRules,
        &format!("{instance}/{STEER_RULE}"),
        &rule,
    )?;
    if let Err(e) = c.data_plane().route(address, target).await {
        tracing::warn!(%instance, "traffic rule not applied: {e}");
    }
    let new = address.to_string();
    let old = c
        .store()
        .update(Table::Instances, instance, |i: &mut AppInstanceInfo| {
            i.ferry_host = Some(target.to_string());
            Ok::<_, ()>(i.ferry_address.replace(new.clone()))
        })?
        .and_then(Result::ok)
        .flatten();
    if let Some(old) = old.filter(|o| *o != new) {
        crate::app_support::readdress_dns_rules(c, instance, &old, &new)?;
    }
    Ok(())
}

// ---- restart ----

/// Finishes or rolls back the relocations that were in flight when the daemon stopped: if the
/// target host runs the container (the migration landed, or in APPLICATION mode the app had
/// reported its context moved), complete; else FAILED, with the traffic on the source.
pub async fn recover(c: Control) {
    let records = match c.in_flight_relocations() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot read relocations: {e}");
            return;
        }
    };
    for mut r in records {
        let _claim = c.claim(&r.app_instance_id);
        // The source host goes on migrating without us: wait until it is done.
        wait_source_settled(&c, &r.source_host, &r.app_instance_id).await;
        let on_target = container_on(&c, &r.target_host, &r.app_instance_id).await;
        let application = r.mode == "APPLICATION";
        // APPLICATION: the app reported its context moved once the record reached
        // SWITCHING_TRAFFIC; before that the target instance may lack it.
        let transferred = r
            .phase_times_ms
            .iter()
            .any(|(p, _)| *p == Phase::SwitchingTraffic);
        let landed = on_target && (!application || transferred);
        let inst: Option<AppInstanceInfo> = c
            .store()
            .get(Table::Instances, &r.app_instance_id)
            .ok()
            .flatten();
        let current = inst
            .as_ref()
            .and_then(|i| i.ferry_address.as_deref())
            .and_then(|a| a.parse::<Ipv4Addr>().ok());
        // Records written before they carried addresses: the instance's.
        let parse = |a: &Option<String>| a.as_deref().and_then(|a| a.parse::<Ipv4Addr>().ok());
        let (source_address, target_address) = (
            parse(&r.source_address).or(current),
            parse(&r.target_address).or(current),
        );
        let result = async {
            match (landed, target_address) {
                (true, Some(a)) => {
                    save(&c, &mut r, Phase::SwitchingTraffic)?;
                    switch(&c, &r.app_instance_id, a, &r.target_host).await?;
                    if application {
                        // Gone already if the stop came during the cleanup.
                        let _ = c.hosts().delete(&r.source_host, &r.app_instance_id).await;
                    }
                    save(&c, &mut r, Phase::Completed)?;
                    c.notify_mobility(&event(&r, MobilityStatus::InterhostMoveoutCompleted, None))?;
                    tracing::info!(relocation = %r.id, "interrupted relocation completed");
                }
                _ => {
                    if application && on_target {
                        let _ = c.hosts().delete(&r.target_host, &r.app_instance_id).await;
                    }
                    if let Some(a) = source_address {
                        // The app serves from the source: make sure traffic goes there.
                        switch(&c, &r.app_instance_id, a, &r.source_host).await?;
                    }
                    r.error = Some("the control plane stopped during the relocation; the app stays on the source host".into());
                    save(&c, &mut r, Phase::Failed)?;
                    c.notify_mobility(&event(&r, MobilityStatus::InterhostMoveoutFailed, None))?;
                    tracing::warn!(relocation = %r.id, "interrupted relocation marked FAILED");
                }
            }
            Ok::<_, crate::store::StoreError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(relocation = %r.id, "cannot finish the interrupted relocation: {e}");
        }
    }
}

/// Does `host` run a container named `name`? (`GET /ferry/v1/containers/{name}` is 200.)
async fn container_on(c: &Control, host: &str, name: &str) -> bool {
    let Ok(url) = c.hosts().url(host) else {
        return false;
    };
    // The source may still be migrating: give it a while to land.
    for _ in 0..3 {
        match c
            .http()
            .get(format!("{url}/ferry/v1/containers/{name}"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status() == StatusCode::NOT_FOUND => return false,
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    false
}

/// Waits (up to 10 minutes) while the source host's container record says a migration is
/// outgoing (`outgoing` set). Returns at once if the host does not answer.
async fn wait_source_settled(c: &Control, host: &str, name: &str) {
    let Ok(url) = c.hosts().url(host) else {
        return;
    };
    for _ in 0..1200 {
        let r = c
            .http()
            .get(format!("{url}/ferry/v1/containers/{name}"))
            .send()
            .await;
        let outgoing = match r {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .map(|v| !v["outgoing"].is_null())
                .unwrap_or(false),
            _ => false,
        };
        if !outgoing {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!(%host, container = %name, "the source host is still migrating after 10 minutes");
}
