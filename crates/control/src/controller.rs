//! The relocation controller: the procedure that moves a UE's app instances to the MEC host
//! serving its new cell (MEC 021 mobility procedure). Where the UEs are comes from `follow.rs`
//! (MEC 012 notifications, MEC 013 reconciliation), which calls `want`.
//!
//! - `want`: a wanted move of one instance. Moves of one instance are coalesced: a worker per
//!   instance always goes to the latest wanted host (no ping-pong). The worker waits for the
//!   instance (a lifecycle operation or the recovery of an interrupted relocation holds it)
//!   and reads the instance again once it has it, so a move decided before a relocation
//!   finished never starts from where the instance no longer is;
//! - `relocate`: the address on the target (APPLICATION: a new one) -> TRIGGERED with
//!   `targetAppInfo` -> state transfer (APPLICATION: a target instance starts, the app moves its
//!   context into it and says USER_CONTEXT_TRANSFER_COMPLETED; CONTAINER_MIGRATION: the source
//!   host migrates) -> traffic switch -> instance host (and address) updated -> source removed
//!   (APPLICATION) -> COMPLETED, or FAILED with the app left on the source; the record is
//!   written at every phase;
//! - CONTAINER_MIGRATION: the migration is an operation resource on the source host. Its id is
//!   chosen here and written into the record before the source is asked; the controller then
//!   follows it (every call with a deadline, the commit callback switching traffic at once)
//!   until the source's record is final. Where the source cannot say where the app runs (a
//!   commit in doubt, a failed thaw, a silent source) the record is NEEDS_OPERATOR with the
//!   advice, no MEC 021 outcome is sent, and the controller keeps following until the hosts
//!   settle it (by themselves, or by an operator's `settle`);
//! - `claim_interrupted` + `recover`: at start, before anything else can want a move, the
//!   instances of every relocation in flight are claimed; then each is followed again (all at
//!   once): a migration the source never started is FAILED, one it finished is completed or
//!   failed as it ended; APPLICATION relocations complete if the app had reported its context
//!   moved.

use crate::ams::{self, MobilityDecision, MobilityEvent};
use crate::app_lcm::{self, STEER_RULE};
use crate::relocation::{Phase, RelocationRecord};
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
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_wire::migration::{
    MigrateRequest, MigrationId, MigrationView, OutgoingState, OutgoingView, SettleRequest,
    Technique,
};

/// Path of the MEC 012 notification callback.
pub use crate::follow::CELL_CHANGE_PATH;

/// Where a source host says a migration committed: the target serves, traffic switches now.
pub const COMMITTED_PATH: &str = "/ferry/control/v1/relocations/{id}/committed";

/// Whether `path` is a `COMMITTED_PATH` of some relocation.
pub fn is_committed_path(path: &str) -> bool {
    path.strip_prefix("/ferry/control/v1/relocations/")
        .and_then(|rest| rest.strip_suffix("/committed"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// How many relocations may touch one MEC host at once.
pub const PER_HOST_LIMIT: usize = 4;

/// How long the app may take to confirm or transfer its context.
pub const APP_WAIT: Duration = Duration::from_secs(30);

/// How long a migration may take before the controller stops waiting for it in the
/// relocation's normal course (NEEDS_OPERATOR; it keeps following it afterwards).
pub const FOLLOW_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// A source host silent this long leaves the relocation NEEDS_OPERATOR.
pub const SOURCE_SILENCE: Duration = Duration::from_secs(60);

/// How often a migration in flight is looked at (the commit callback is faster still).
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// ...and one that needs an operator.
const UNSETTLED_POLL: Duration = Duration::from_secs(2);

/// One wanted move of an instance (the latest wins).
#[derive(Clone, Debug)]
pub(crate) struct Wanted {
    pub target: String,
    pub ue: Ipv4Addr,
    pub registration: Option<String>,
    pub decision: MobilityDecision,
    pub why: Why,
}

/// What a move is wanted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// The UE handed over: always acted on.
    Handover,
    /// A reading found the UE away from its instance. Not acted on when the instance's last
    /// relocation went to that very host and FAILED: the UE has not moved since, and a failed
    /// relocation stands (FAILED, the app on the source) until it does.
    Reading,
}

/// The wanted moves and the instances whose worker runs, under one lock.
#[derive(Default)]
struct Moves {
    /// Instance -> the latest wanted move not yet started.
    wanted: HashMap<String, Wanted>,
    /// Instances with a running worker.
    workers: std::collections::HashSet<String>,
    /// Instance -> the host its worker is moving it to now.
    current: HashMap<String, String>,
}

/// The controller's shared state, kept in `Control`.
pub struct Controller {
    moves: std::sync::Mutex<Moves>,
    /// Per-host concurrency limit.
    limits: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Relocation id -> the migration whose commit we wait to hear of.
    commits: std::sync::Mutex<HashMap<String, CommitWatch>>,
    /// Instance -> the target host and phase of its latest relocation.
    latest: std::sync::Mutex<HashMap<String, (String, Phase)>>,
}

impl Default for Controller {
    fn default() -> Self {
        Controller::new()
    }
}

/// A container migration in flight whose source host calls back at the commit.
struct CommitWatch {
    /// In the callback URL: only the host we told may switch the traffic (none: no callback
    /// is expected, the commit is seen by following the migration).
    token: Option<String>,
    instance: String,
    address: Ipv4Addr,
    target: String,
    /// Set once the traffic switched at the commit: how long that took.
    switched_ms: Option<u64>,
}

impl Controller {
    pub fn new() -> Controller {
        Controller {
            moves: Default::default(),
            limits: Default::default(),
            commits: Default::default(),
            latest: Default::default(),
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

// ---- wanted moves ----

/// Records a relocation's phase as the latest of its instance (`Why::Reading`); the records
/// of the store at start, then each phase as it is saved.
pub(crate) fn note_relocation(c: &Control, r: &RelocationRecord) {
    lock(&c.inner.controller.latest)
        .insert(r.app_instance_id.clone(), (r.target_host.clone(), r.phase));
}

/// Whether the latest relocation of `instance` went to `host` and FAILED.
pub(crate) fn failed_toward(c: &Control, instance: &str, host: &str) -> bool {
    lock(&c.inner.controller.latest)
        .get(instance)
        .is_some_and(|(t, p)| t == host && *p == Phase::Failed)
}

/// Wants `instance` on `w.target` (the latest wanted host wins); starts its worker if none
/// runs. False, and nothing done, when that is already where it is going: the move under way
/// or the one waiting goes there, or no worker runs and the instance is there (or is not
/// instantiated); no claim is then taken that would hold up a lifecycle operation.
pub(crate) fn want(c: &Control, instance: &str, w: Wanted) -> bool {
    let mut m = lock(&c.inner.controller.moves);
    if m.workers.contains(instance) {
        let going = match m.wanted.get(instance) {
            Some(next) => Some(&next.target),
            None => m.current.get(instance),
        };
        if going == Some(&w.target) {
            return false;
        }
    } else {
        // Read under the lock: a worker records the new host before it leaves the set.
        let host = c
            .store()
            .get::<AppInstanceInfo>(Table::Instances, instance)
            .ok()
            .flatten()
            .and_then(|i| i.ferry_host);
        if host.is_none_or(|h| h == w.target) {
            return false;
        }
    }
    m.wanted.insert(instance.to_string(), w);
    if m.workers.insert(instance.to_string()) {
        tokio::spawn(work(c.clone(), instance.to_string()));
    }
    true
}

/// The worker of one instance: takes the instance, then its latest wanted move, until none
/// is left.
async fn work(c: Control, instance: String) {
    loop {
        let claim = claim_patiently(&c, &instance).await;
        let next = {
            let mut m = lock(&c.inner.controller.moves);
            let n = m.wanted.remove(&instance);
            match &n {
                Some(w) => {
                    m.current.insert(instance.clone(), w.target.clone());
                }
                None => {
                    m.workers.remove(&instance);
                    m.current.remove(&instance);
                }
            }
            n
        };
        let Some(w) = next else { return };
        move_instance(&c, &instance, &w, claim).await;
    }
}

/// Claims `instance`, however long what holds it takes (a lifecycle operation, an
/// interrupted relocation being recovered, one that needs an operator).
async fn claim_patiently(c: &Control, instance: &str) -> crate::Claim {
    let started = Instant::now();
    let mut warned = false;
    loop {
        if let Some(claim) = c.claim(instance) {
            return claim;
        }
        if !warned && started.elapsed() > Duration::from_secs(10) {
            tracing::warn!(%instance, "instance busy: its move waits");
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Carries out one wanted move, per the service level, holding the instance's claim. The
/// instance is read under the claim: what it is now decides, not what it was when the move
/// was wanted.
async fn move_instance(c: &Control, instance: &str, w: &Wanted, claim: crate::Claim) {
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
    // Checked under the claim: a relocation recovered meanwhile may just have failed there.
    if w.why == Why::Reading && failed_toward(c, instance, &w.target) {
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
    let ctl = &c.inner.controller;
    // Per-host limit, acquired in name order so two moves cannot deadlock.
    let (first, second) = if source < w.target {
        (&source, &w.target)
    } else {
        (&w.target, &source)
    };
    let (l1, l2) = (ctl.limit(first), ctl.limit(second));
    let unsettled = {
        let _p1 = l1.acquire_owned().await;
        let _p2 = l2.acquire_owned().await;
        match relocate(c, &inst, &source, address, w).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(%instance, "relocation bookkeeping failed: {e}");
                None
            }
        }
    };
    // An unsettled relocation keeps the instance (no other move may start from a place
    // nobody knows) but not the hosts' permits: other instances move meanwhile.
    if let Some(r) = unsettled {
        await_settlement(c, r).await;
    }
    drop(claim);
}

fn save(
    c: &Control,
    r: &mut RelocationRecord,
    phase: Phase,
) -> Result<(), crate::store::StoreError> {
    r.phase = phase;
    r.phase_times_ms.push((phase, now_ms()));
    c.store().put(Table::Relocations, &r.id, r)?;
    note_relocation(c, r);
    Ok(())
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

/// How a relocation's state transfer ended.
enum Transferred {
    /// The app serves on the target (a migration's report is in the record).
    Done,
    /// The app serves on the source, as before.
    Failed(String),
    /// Where the app runs is not known to the platform; the advice says what to do.
    NeedsOperator(String),
    /// Post-copy lost memory after the commit: the app runs on the target, damaged.
    Lost(String),
}

/// The relocation procedure of one instance from `source` to `w.target`. Returns the record
/// when it ended NEEDS_OPERATOR (the caller keeps following it).
async fn relocate(
    c: &Control,
    inst: &AppInstanceInfo,
    source: &str,
    address: Ipv4Addr,
    w: &Wanted,
) -> Result<Option<RelocationRecord>, crate::store::StoreError> {
    let appd = app_lcm::appd_of(c, inst)?;
    let sr = appd.as_ref().and_then(|a| a.ferry_state_relocation.clone());
    let mode = sr.as_ref().map(|s| s.mode).unwrap_or_default();
    let technique = sr
        .as_ref()
        .and_then(|s| s.technique)
        .unwrap_or(Technique::Auto);
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
        mode,
        technique: (mode == StateRelocationMode::ContainerMigration).then_some(technique),
        migration_id: None,
        source_address: Some(address.to_string()),
        target_address: None,
        phase: Phase::Triggered,
        phase_times_ms: Vec::new(),
        migration_report: None,
        platform_downtime_ms: None,
        traffic_switched_at_commit: false,
        error: None,
        advice: None,
        notified: true,
    };
    // A stale COMPLETED from an earlier move must not count as this one's.
    if let Some(reg) = &w.registration {
        ams::set_context_transfer_state(c, reg, w.ue, ContextTransferState::NotTransferred)?;
    }
    let mut events = c.registration_events();
    if let Err(e) = reserve_target_address(c, &mut r, mode, address).await? {
        r.error = Some(e);
        conclude(
            c,
            &mut r,
            Phase::Failed,
            MobilityStatus::InterhostMoveoutFailed,
        )
        .await?;
        return Ok(None);
    }
    c.notify_mobility(&event(
        &r,
        MobilityStatus::InterhostMoveoutTriggered,
        Some(target_app_info(&r, port)),
    ))?;

    let started = Instant::now();
    let outcome = match mode {
        StateRelocationMode::ContainerMigration => {
            migrate_container(c, inst, &mut r, w, technique, &mut events).await?
        }
        StateRelocationMode::Application => {
            match application_transfer(c, inst, &mut r, w, &mut events).await {
                Ok(()) => Transferred::Done,
                Err(e) => Transferred::Failed(e),
            }
        }
    };
    finish(c, &mut r, outcome, started).await
}

/// Ends a relocation as its transfer ended, whatever the store says meanwhile: the traffic
/// switch and the MEC 021 outcome never wait on a record that could not be written (a store
/// error is logged and the next step done all the same). Returns the record if it is
/// NEEDS_OPERATOR.
async fn finish(
    c: &Control,
    r: &mut RelocationRecord,
    outcome: Transferred,
    started: Instant,
) -> Result<Option<RelocationRecord>, crate::store::StoreError> {
    let rid = r.id.clone();
    let logged = |what: &str, e: crate::store::StoreError| {
        tracing::error!(relocation = %rid, "{what}: {e}; going on");
    };
    // Switched already if the source host told us of the commit (or we saw it).
    let switched_at_commit = lock(&c.inner.controller.commits)
        .get(&r.id)
        .and_then(|w| w.switched_ms);
    let source_address = parse_addr(&r.source_address);
    match outcome {
        Transferred::Done | Transferred::Lost(_) => {
            let to = parse_addr(&r.target_address).or(source_address);
            if let Err(e) = save(c, r, Phase::SwitchingTraffic) {
                logged("record", e);
            }
            r.traffic_switched_at_commit = switched_at_commit.is_some();
            let timings = r.migration_report.as_ref().map(|m| m.timings.clone());
            let after_commit = match switched_at_commit {
                Some(ms) => ms,
                None => {
                    let t = Instant::now();
                    if let Some(to) = to {
                        if let Err(e) = switch(c, &r.app_instance_id, to, &r.target_host).await {
                            logged("traffic switch", e);
                        }
                    }
                    // Downtime as the platform saw it: without the commit callback it
                    // includes what the source did after the commit.
                    timings
                        .as_ref()
                        .map(|t| t.lazy_completion_ms.unwrap_or(0) + t.cleanup_ms.unwrap_or(0))
                        .unwrap_or(0)
                        + t.elapsed().as_millis() as u64
                }
            };
            r.platform_downtime_ms = timings
                .as_ref()
                .and_then(|t| t.frozen_ms)
                .map(|f| f + after_commit);
            if r.mode == StateRelocationMode::Application {
                if let Err(e) = save(c, r, Phase::CleaningUp) {
                    logged("record", e);
                }
                if let Err(e) = c.hosts().delete(&r.source_host, &r.app_instance_id).await {
                    tracing::warn!(instance = %r.app_instance_id, "source container not removed: {e}");
                }
            }
            lock(&c.inner.controller.commits).remove(&r.id);
            if let Transferred::Lost(advice) = outcome {
                r.advice = Some(advice);
                conclude(c, r, Phase::Lost, MobilityStatus::InterhostMoveoutFailed).await?;
                tracing::error!(relocation = %r.id, instance = %r.app_instance_id, "relocation LOST memory: the app on the target is damaged");
                return Ok(None);
            }
            r.advice = None;
            conclude(
                c,
                r,
                Phase::Completed,
                MobilityStatus::InterhostMoveoutCompleted,
            )
            .await?;
            if let Some(inst) = c
                .store()
                .get::<AppInstanceInfo>(Table::Instances, &r.app_instance_id)?
            {
                c.notify_adjacent(&inst.app_d_id)?;
            }
            tracing::info!(instance = %r.app_instance_id, from = %r.source_host, to = %r.target_host,
                ms = started.elapsed().as_millis() as u64, "relocated");
            Ok(None)
        }
        Transferred::Failed(e) => {
            lock(&c.inner.controller.commits).remove(&r.id);
            tracing::warn!(instance = %r.app_instance_id, "relocation failed: {e}");
            // The app serves from the source: make sure its traffic goes there.
            if let Some(a) = source_address {
                if let Err(e) = switch(c, &r.app_instance_id, a, &r.source_host).await {
                    logged("traffic back to the source", e);
                }
            }
            r.error = Some(e);
            r.advice = None;
            conclude(c, r, Phase::Failed, MobilityStatus::InterhostMoveoutFailed).await?;
            Ok(None)
        }
        Transferred::NeedsOperator(advice) => {
            tracing::error!(relocation = %r.id, instance = %r.app_instance_id, %advice,
                "relocation NEEDS AN OPERATOR: the platform cannot say where the app runs");
            r.advice = Some(advice);
            save(c, r, Phase::NeedsOperator)?;
            Ok(Some(r.clone()))
        }
    }
}

/// Records a final phase and sends its MEC 021 outcome. `notified` is written false with the
/// phase and true once the outcome is handed to delivery: a daemon stopping in between sends
/// it at its next start (`recover`).
async fn conclude(
    c: &Control,
    r: &mut RelocationRecord,
    phase: Phase,
    status: MobilityStatus,
) -> Result<(), crate::store::StoreError> {
    r.notified = false;
    save(c, r, phase)?;
    c.config().hooks.at_async("control-final", &r.id).await;
    c.notify_mobility(&event(r, status, None))?;
    r.notified = true;
    c.store().put(Table::Relocations, &r.id, r)
}

/// The MEC 021 outcome of a final phase.
fn outcome_status(phase: Phase) -> Option<MobilityStatus> {
    match phase {
        Phase::Completed => Some(MobilityStatus::InterhostMoveoutCompleted),
        Phase::Failed | Phase::RolledBack | Phase::Lost => {
            Some(MobilityStatus::InterhostMoveoutFailed)
        }
        _ => None,
    }
}

fn parse_addr(a: &Option<String>) -> Option<Ipv4Addr> {
    a.as_deref().and_then(|a| a.parse().ok())
}

/// A fresh migration id from the OS's random source.
fn new_migration_id() -> Result<MigrationId, String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(MigrationId::from_random(b))
}

/// CONTAINER_MIGRATION: the source host migrates the container; the app does nothing.
async fn migrate_container(
    c: &Control,
    inst: &AppInstanceInfo,
    r: &mut RelocationRecord,
    w: &Wanted,
    technique: Technique,
    events: &mut tokio::sync::broadcast::Receiver<mec_api::ams::RegistrationInfo>,
) -> Result<Transferred, crate::store::StoreError> {
    if w.decision == MobilityDecision::RelocateAfterConfirmation {
        let Some(reg) = &w.registration else {
            return Ok(Transferred::Failed(
                "no registration to confirm the relocation".into(),
            ));
        };
        // Any update of the registration after TRIGGERED is the app's confirmation.
        if !wait_registration(events, reg, |_| true).await {
            return Ok(Transferred::Failed(format!(
                "the app did not confirm within {} s",
                APP_WAIT.as_secs()
            )));
        }
    }
    let target_url = match c.hosts().url(&r.target_host) {
        Ok(u) => u.to_string(),
        Err(e) => return Ok(Transferred::Failed(e.to_string())),
    };
    let id = match new_migration_id() {
        Ok(id) => id,
        Err(e) => return Ok(Transferred::Failed(e)),
    };
    // Written down before the source is asked: whatever happens to its answer (or to this
    // daemon), the migration can be asked for by its id.
    r.migration_id = Some(id.clone());
    save(c, r, Phase::TransferringState)?;
    c.config()
        .hooks
        .at_async("control-transferring", &r.id)
        .await;
    let on_commit = watch_commit(c, r, inst);
    let req = MigrateRequest {
        target: target_url,
        technique,
        id: Some(id),
        on_commit,
        ..MigrateRequest::default()
    };
    if let Err(e) = start_migration(c, r, &req).await {
        return Ok(Transferred::Failed(e));
    }
    c.config().hooks.at_async("control-started", &r.id).await;
    let outcome = follow(c, r, Some(Instant::now() + FOLLOW_DEADLINE)).await;
    if let (Transferred::Done, Some(reg)) = (&outcome, &w.registration) {
        // The platform moved the context: say so on the app's behalf.
        if let Err(e) = ams::set_context_transfer_state(
            c,
            reg,
            w.ue,
            ContextTransferState::UserContextTransferCompleted,
        ) {
            tracing::error!(relocation = %r.id, "cannot record the context transfer: {e}");
        }
    }
    Ok(outcome)
}

/// Asks the source host to start the migration. Without an answer, the migration is looked
/// up by its id: the request may have arrived.
async fn start_migration(
    c: &Control,
    r: &RelocationRecord,
    req: &MigrateRequest,
) -> Result<(), String> {
    let Some(id) = &r.migration_id else {
        return Err("no migration id".into());
    };
    let name = &r.app_instance_id;
    match c.hosts().migrate(&r.source_host, name, req).await {
        Ok(_) => Ok(()),
        Err(e) if e.host_error().is_some_and(|h| h.no_answer()) => {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match c.hosts().find_migration(&r.source_host, id).await {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) => return Err(format!("the migration did not start: {e}")),
                    Err(_) => {}
                }
            }
            Err(format!("the source host did not answer: {e}"))
        }
        Err(e) => Err(format!("the source host refused the migration: {e}")),
    }
}

/// Follows the relocation's migration on the source host until its record is final, or it
/// needs an operator, or `deadline` passes. The traffic switches the moment the migration is
/// seen committed (if the commit callback did not do it first).
async fn follow(c: &Control, r: &mut RelocationRecord, deadline: Option<Instant>) -> Transferred {
    let Some(id) = r.migration_id.clone() else {
        return Transferred::Failed("no migration to follow".into());
    };
    let mut heard = Instant::now();
    loop {
        match c.hosts().find_migration(&r.source_host, &id).await {
            Ok(Some(MigrationView::Outgoing(v))) => {
                heard = Instant::now();
                if let Some(report) = &v.report {
                    r.migration_report = Some((**report).clone());
                }
                match v.state {
                    OutgoingState::Completed => return Transferred::Done,
                    OutgoingState::RolledBack => {
                        return Transferred::Failed(
                            v.error
                                .unwrap_or_else(|| "the migration was rolled back".into()),
                        )
                    }
                    OutgoingState::Lost => return Transferred::Lost(advice_of(&v)),
                    OutgoingState::InDoubt | OutgoingState::RollbackFailed => {
                        return Transferred::NeedsOperator(advice_of(&v))
                    }
                    OutgoingState::Committed => switch_at_commit(c, &r.id).await,
                    _ => {}
                }
            }
            Ok(Some(MigrationView::Incoming(_))) | Ok(None) => {
                return Transferred::NeedsOperator(format!(
                    "the source host {} has no record of migration {id} (its state was lost?): \
                     find where the app runs ({} or {}) and settle the relocation",
                    r.source_host, r.source_host, r.target_host
                ))
            }
            Err(e) => {
                if heard.elapsed() > SOURCE_SILENCE {
                    return Transferred::NeedsOperator(format!(
                        "the source host {} does not answer ({e}); once it does, the relocation \
                         settles by itself",
                        r.source_host
                    ));
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Transferred::NeedsOperator(format!(
                "migration {id} did not end within {} s; it is followed on",
                FOLLOW_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn advice_of(v: &OutgoingView) -> String {
    v.advice
        .clone()
        .or_else(|| v.error.clone())
        .unwrap_or_else(|| format!("migration {} is {}", v.id, v.state))
}

/// A NEEDS_OPERATOR relocation: followed (slowly) until the hosts settle it, then ended as
/// it settled.
async fn await_settlement(c: &Control, mut r: RelocationRecord) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(UNSETTLED_POLL).await;
        let outcome = follow(c, &mut r, Some(Instant::now())).await;
        if let Transferred::NeedsOperator(advice) = &outcome {
            if r.advice.as_ref() != Some(advice) {
                r.advice = Some(advice.clone());
                if let Err(e) = c.store().put(Table::Relocations, &r.id, &r) {
                    tracing::error!(relocation = %r.id, "{e}");
                }
            }
            continue;
        }
        tracing::info!(relocation = %r.id, "the relocation that needed an operator settled");
        if let Err(e) = finish(c, &mut r, outcome, started).await {
            tracing::error!(relocation = %r.id, "cannot record how the relocation settled: {e}");
        }
        return;
    }
}

/// APPLICATION: a target instance starts, the app moves its context into it and reports
/// USER_CONTEXT_TRANSFER_COMPLETED; on error the app still serves from the source.
async fn application_transfer(
    c: &Control,
    inst: &AppInstanceInfo,
    r: &mut RelocationRecord,
    w: &Wanted,
    events: &mut tokio::sync::broadcast::Receiver<mec_api::ams::RegistrationInfo>,
) -> Result<(), String> {
    let completed = |reg: &mec_api::ams::RegistrationInfo| {
        reg.device_information.iter().any(|d| {
            d.associate_id.value.trim().parse() == Ok(w.ue)
                && d.context_transfer_state
                    == Some(ContextTransferState::UserContextTransferCompleted)
        })
    };
    let Some(reg) = w.registration.clone() else {
        return Err(
            "APPLICATION mode needs an AMS registration to report the context transfer".into(),
        );
    };
    save(c, r, Phase::TransferringState).map_err(|e| e.to_string())?;
    // A fresh instance on the target, at its own address; the app moves its context into it.
    let target_address: Ipv4Addr =
        parse_addr(&r.target_address).ok_or("no target address reserved")?;
    let spec = container_spec(c, inst, target_address, w.ue)?;
    c.hosts()
        .create(&r.target_host, &spec)
        .await
        .map_err(|e| e.to_string())?;
    // Steered now, not at the switch: the source instance sends its context there and the
    // target reaches the platform; the UE's traffic still goes to the source's address.
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

/// Registers the migration of relocation `r` for a commit callback; the URL to give the
/// source host, when hosts can reach this daemon. Without a secret from the OS there is no
/// callback (the commit is then seen by following the migration).
fn watch_commit(c: &Control, r: &RelocationRecord, inst: &AppInstanceInfo) -> Option<String> {
    let address = parse_addr(&r.source_address)?;
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).ok()?;
    let token = hex::encode(secret);
    // Registered even without a callback root: following the migration switches at the
    // commit through the same watch.
    lock(&c.inner.controller.commits).insert(
        r.id.clone(),
        CommitWatch {
            token: Some(token.clone()),
            instance: inst.id.clone(),
            address,
            target: r.target_host.clone(),
            switched_ms: None,
        },
    );
    let root = c.config().callback_root.as_ref()?;
    Some(format!(
        "{root}{}?token={token}",
        COMMITTED_PATH.replace("{id}", &r.id)
    ))
}

/// The migration of relocation `id` committed: the target serves, so the traffic switches
/// now (once), not when the migration's report arrives.
async fn switch_at_commit(c: &Control, id: &str) {
    let heard = Instant::now();
    let pending = lock(&c.inner.controller.commits)
        .get(id)
        .filter(|w| w.switched_ms.is_none())
        .map(|w| (w.instance.clone(), w.address, w.target.clone()));
    let Some((instance, address, target)) = pending else {
        return;
    };
    if let Err(e) = switch(c, &instance, address, &target).await {
        tracing::warn!(relocation = %id, "traffic switch at commit failed: {e}");
        return;
    }
    if let Some(w) = lock(&c.inner.controller.commits).get_mut(id) {
        w.switched_ms = Some(heard.elapsed().as_millis() as u64);
    }
    tracing::info!(relocation = %id, %instance, %target, "migration committed: traffic switched");
    c.config().hooks.at_async("control-committed", id).await;
}

/// `POST /ferry/control/v1/relocations/{id}/committed?token=...`: the source host says the
/// target serves. Traffic switches now, not when the migration's report arrives.
pub(crate) async fn committed(
    State(c): State<Control>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let known = lock(&c.inner.controller.commits)
        .get(&id)
        .is_some_and(|w| w.token.is_some() && w.token.as_ref() == q.get("token"));
    if !known {
        return mec_http::http::ApiError::not_found(format!(
            "no migration of relocation '{id}' waits for this commit"
        ))
        .into_response();
    }
    switch_at_commit(&c, &id).await;
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /ferry/control/v1/relocations/{id}/settle` (operator, body `SettleRequest`): hands
/// the decision to the source host of a NEEDS_OPERATOR relocation; the relocation then ends
/// as the migration settles.
pub(crate) async fn settle(
    State(c): State<Control>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use mec_http::http::ApiError;
    let req: SettleRequest = match crate::http::parse_body(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let r: RelocationRecord = match c.store().get(Table::Relocations, &id) {
        Ok(Some(r)) => r,
        Ok(None) => return ApiError::not_found(format!("no relocation '{id}'")).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(mid) = r.migration_id.clone().filter(|_| !r.phase.is_final()) else {
        return ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "relocation '{id}' is {} and has no migration to settle",
                r.phase
            ),
        )
        .into_response();
    };
    match c.hosts().settle(&r.source_host, &mid, &req).await {
        Ok(v) => crate::http::json(StatusCode::OK, &v),
        Err(e) => {
            let status = e
                .host_error()
                .and_then(|h| h.status())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            ApiError::new(status, e.to_string()).into_response()
        }
    }
}

/// The container of `inst` at `address` on another host, as instantiation builds it.
fn container_spec(
    c: &Control,
    inst: &AppInstanceInfo,
    address: Ipv4Addr,
    ue: Ipv4Addr,
) -> Result<ferry_wire::ContainerRequest, String> {
    let appd = app_lcm::appd_of(c, inst)
        .map_err(|e| e.to_string())?
        .ok_or("the app package is no longer onboarded")?;
    app_lcm::container_spec(c, &inst.id, &appd, address, Some(ue)).map_err(|e| {
        e.0.detail
            .unwrap_or_else(|| "cannot make the container request".into())
    })
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

/// The relocations in flight when the daemon stopped, each with its instance claimed: called
/// before the daemon serves or follows the UEs, so no move of those instances can start before
/// their relocation is finished or rolled back (`recover`).
pub fn claim_interrupted(c: &Control) -> Vec<(RelocationRecord, Option<crate::Claim>)> {
    match c.in_flight_relocations() {
        Ok(records) => records
            .into_iter()
            .map(|r| {
                let claim = c.claim(&r.app_instance_id);
                (r, claim)
            })
            .collect(),
        Err(e) => {
            tracing::error!("cannot read relocations: {e}");
            Vec::new()
        }
    }
}

/// Follows every relocation that was in flight when the daemon stopped (claimed by
/// `claim_interrupted`), all at once (one slow host does not hold up the others).
pub async fn recover(c: Control, interrupted: Vec<(RelocationRecord, Option<crate::Claim>)>) {
    // Final outcomes recorded but perhaps never sent.
    match c.unnotified_relocations() {
        Ok(done) => {
            for mut r in done {
                let Some(status) = outcome_status(r.phase) else {
                    continue;
                };
                let sent = c.notify_mobility(&event(&r, status, None)).and_then(|_| {
                    r.notified = true;
                    c.store().put(Table::Relocations, &r.id, &r)
                });
                match sent {
                    Ok(()) => {
                        tracing::info!(relocation = %r.id, phase = %r.phase, "MEC 021 outcome sent after the restart")
                    }
                    Err(e) => {
                        tracing::error!(relocation = %r.id, "cannot send the MEC 021 outcome: {e}")
                    }
                }
            }
        }
        Err(e) => tracing::error!("cannot read relocations: {e}"),
    }
    for (r, claim) in interrupted {
        let c = c.clone();
        tokio::spawn(async move {
            let id = r.id.clone();
            if let Err(e) = recover_one(&c, r, claim).await {
                tracing::error!(relocation = %id, "cannot finish the interrupted relocation: {e}");
            }
        });
    }
}

async fn recover_one(
    c: &Control,
    mut r: RelocationRecord,
    claim: Option<crate::Claim>,
) -> Result<(), crate::store::StoreError> {
    // Two interrupted relocations of one instance (one of them stale): the second waits.
    let claim = match claim {
        Some(claim) => claim,
        None => claim_patiently(c, &r.app_instance_id).await,
    };
    let started = Instant::now();
    let outcome = match r.mode {
        StateRelocationMode::ContainerMigration => recover_migration(c, &mut r).await,
        StateRelocationMode::Application => recover_application(c, &r).await,
    };
    if let Some(unsettled) = finish(c, &mut r, outcome, started).await? {
        await_settlement(c, unsettled).await;
    }
    drop(claim);
    Ok(())
}

/// CONTAINER_MIGRATION after a restart: the source host's record of the migration says how
/// it went; none means it never started (the app stayed on the source).
async fn recover_migration(c: &Control, r: &mut RelocationRecord) -> Transferred {
    let Some(id) = r.migration_id.clone() else {
        return Transferred::Failed(
            "the control plane stopped before the migration started; the app stays on the source host"
                .into(),
        );
    };
    let deadline = Instant::now() + SOURCE_SILENCE;
    loop {
        match c.hosts().find_migration(&r.source_host, &id).await {
            Ok(Some(_)) => {
                // The commit callback went to the stopped daemon: re-arm the watch so the
                // commit, when seen, still switches the traffic.
                if let Some(address) = parse_addr(&r.source_address) {
                    lock(&c.inner.controller.commits).insert(
                        r.id.clone(),
                        CommitWatch {
                            token: None,
                            instance: r.app_instance_id.clone(),
                            address,
                            target: r.target_host.clone(),
                            switched_ms: None,
                        },
                    );
                }
                return follow(c, r, Some(Instant::now() + FOLLOW_DEADLINE)).await;
            }
            Ok(None) => {
                return Transferred::Failed(
                    "the control plane stopped before the source host started the migration; \
                     the app stays on the source host"
                        .into(),
                )
            }
            Err(e) if Instant::now() > deadline => {
                return Transferred::NeedsOperator(format!(
                    "the source host {} does not answer after the control plane restarted ({e}); \
                     once it does, the relocation settles by itself",
                    r.source_host
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// APPLICATION after a restart: the app reported its context moved once the record reached
/// SWITCHING_TRAFFIC; if the target instance runs by then, complete; otherwise the target
/// instance goes and the app stays on the source.
async fn recover_application(c: &Control, r: &RelocationRecord) -> Transferred {
    let transferred = r
        .phase_times_ms
        .iter()
        .any(|(p, _)| *p == Phase::SwitchingTraffic);
    let on_target = matches!(
        c.hosts()
            .find_container(&r.target_host, &r.app_instance_id)
            .await,
        Ok(Some(_))
    );
    if transferred && on_target {
        return Transferred::Done;
    }
    if on_target {
        let _ = c.hosts().delete(&r.target_host, &r.app_instance_id).await;
    }
    Transferred::Failed(
        "the control plane stopped during the relocation; the app stays on the source host".into(),
    )
}
