//! The source host's side of a migration, top-down ([`Run::forward`]):
//!
//! ```text
//! prepare   record `preparing`; offer the container (the target records it, prepares a
//!           parked copy and, for cold, a page server)
//! pre-copy  (pre-copy, hybrid) `pre_copying`: rounds of pre-dumps while the app runs, each
//!           sending the pages dirtied since the round before to a page server on the target
//! freeze    open the images call; record `frozen`, then park the app's network and freeze
//!           it                                                       <- downtime starts
//! dump      CRIU dump, memory pages straight to the target's page server (post-copy and
//!           hybrid: none, they are pulled later), each other image into the images call as
//!           CRIU closes it; the original stays frozen
//! commit    record `committing`, then end the images call: what is left, the writable layer
//!           and the manifest (sizes and sha256)
//! restore   the target checks everything, restores, records `committed` and serves, and
//!           answers the call                                         <- downtime ends
//! lazy      (post-copy, hybrid) the target pulls the remaining pages from here
//! cleanup   the frozen original is removed; `completed`
//! ```
//! Before `committing`, any failure rolls back: the original thaws (checked: runc must say
//! it runs), then the target is told to drop its copy. From `committing` on the target's
//! durable answer decides ([`Run::resolve_commit`]); the rule is in `ferry_wire::migration`.
//! Each migration is driven by its own thread, which alone changes its record; an
//! operator's settle is a decision that thread carries out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_host_client::{HostClient, HostError};
use ferry_runtime::{criu, Dump, RuntimeError};
use ferry_wire::channel::{
    Committed, ImagesReply, Offer, RestoreOrder, RoundReply, RoundRequest, PREPARE_TIMEOUT,
    PROTOCOL_VERSION,
};
use ferry_wire::migration::{
    CheckpointEngine, Fault, IncomingState, MigrateRequest, MigrationId, MigrationReport,
    OutgoingState, OutgoingView, Phase, PreCopyRound, SettleRequest, Side, Technique,
};
use ferry_wire::ProblemType;

use crate::hooks::Point;
use crate::journal::{now_ms, OutgoingRecord};
use crate::technique;
use crate::{lock, random_id, random_token, stream, Engine, MigrationError};

/// Techniques this build carries out end to end.
pub const IMPLEMENTED: &[Technique] = &[
    Technique::Cold,
    Technique::PostCopy,
    Technique::PreCopy,
    Technique::Hybrid,
];

/// Pre-copy stops after this many rounds...
const MAX_ROUNDS: u32 = 8;
/// ...or once a round sent at most this much (the final dump's share is then small)...
const ROUND_DONE_BYTES: u64 = 2 << 20;
/// ...or when a round shrank by less than this share: the app dirties memory about as fast
/// as the link moves it, so more rounds would not cut the downtime.
const MIN_SHRINK: f64 = 0.2;

/// How long a lazy dump may take to have its page server ready.
const LAZY_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A commit nobody confirmed is in doubt once the target's lease plus this margin passed:
/// by then an uncommitted copy there has expired, so only an answer can tell which way it
/// went.
const IN_DOUBT_MARGIN: Duration = Duration::from_secs(5);
/// How often an unsettled commit or a failed thaw is tried again.
const RETRY: Duration = Duration::from_millis(500);
const SLOW_RETRY: Duration = Duration::from_secs(5);

/// How long a dump may take by default: 30 s plus 1 s per MiB of state, i.e. a link below
/// about 8 Mbit/s, or one that stopped carrying pages, makes the migration roll back.
pub fn default_dump_timeout(state_bytes: u64) -> Duration {
    Duration::from_secs(30 + state_bytes / (1 << 20))
}

/// The live record of an outgoing migration, and the operator's pending decision.
pub(crate) type Shared = Arc<Mutex<Live>>;

pub(crate) struct Live {
    rec: OutgoingRecord,
    /// An operator's settle, waiting for the migration's thread to carry it out.
    decision: Option<SettleRequest>,
}

/// A step that failed before the commit decision.
struct Failure {
    phase: Phase,
    detail: String,
}

fn fail<E: std::fmt::Display>(phase: Phase) -> impl Fn(E) -> Failure {
    move |e| Failure {
        phase,
        detail: e.to_string(),
    }
}

/// What an operator should do in a state that needs one.
fn advice(r: &OutgoingRecord) -> Option<String> {
    let target = &r.target;
    match r.state {
        OutgoingState::InDoubt => Some(format!(
            "the commit was sent but {target} cannot confirm it; the app is frozen here and \
             settles by itself once {target} answers. If {target} is gone for good (or fenced), \
             settle to the source with force; if it runs the app, settle to the target"
        )),
        OutgoingState::RollbackFailed => Some(
            "the app could not be thawed on the source: it is down, its state frozen and intact. \
             Fix what the error names (cgroup freezer, runc) and settle to the source to retry"
                .to_string(),
        ),
        OutgoingState::Lost => Some(format!(
            "the app on {target} misses memory pages (the source's page server died after the \
             commit): restart it there from a checkpoint or redeploy it"
        )),
        _ => None,
    }
}

/// A copy of the live record of a migration this daemon drives.
pub(crate) fn live_record(s: &Shared) -> OutgoingRecord {
    lock(s).rec.clone()
}

/// The operation resource's view of a record.
pub(crate) fn view(r: &OutgoingRecord) -> OutgoingView {
    let report =
        (r.state.is_final() || r.state.outcome().is_some()).then(|| Box::new(r.report.clone()));
    OutgoingView {
        id: r.id.clone(),
        container: r.container.clone(),
        target: r.target.clone(),
        requested: r.request.technique,
        technique: r.technique,
        state: r.state,
        phase: r.phase,
        error: r.report.error.clone(),
        advice: advice(r),
        updated_at_ms: r.updated_at_ms,
        moved_bytes: r.report.stream_bytes + r.report.pages_bytes,
        report,
    }
}

impl Engine {
    /// `POST /ferry/v1/containers/{name}/migrate`: checks the request, records the migration
    /// (`preparing`), marks the container and starts the migration's thread. Errors before
    /// any side effect (unknown container, refused technique, already migrating) leave
    /// nothing behind.
    pub fn start(
        self: &Arc<Self>,
        name: &str,
        req: MigrateRequest,
    ) -> Result<OutgoingView, MigrationError> {
        if req.fault.is_some() && !self.cfg.hooks.enabled() {
            return Err(MigrationError::Refused(
                "fault injection is off on this host (it is for tests: ferry host --test-hooks DIR)"
                    .into(),
            ));
        }
        self.rt.get(name)?; // unknown container: 404 before anything else
        let features = criu::features(&self.rt.config().criu);
        let inputs = technique::Inputs {
            state_bytes: self.rt.memory_bytes(name).unwrap_or(0),
            link_bit_s: req.link_bit_s,
            dirty_bytes_s: req.dirty_bytes_s,
        };
        let costs = self.fixed_costs();
        let (technique, why) =
            technique::choose(req.technique, &features, inputs, &costs, IMPLEMENTED)
                .map_err(MigrationError::Refused)?;
        let pages = self.page_transport(req.pages)?;
        let engine = req.engine.unwrap_or(self.cfg.engine);
        let client = HostClient::with_http(&req.target, self.http.clone())
            .map_err(|e| MigrationError::Refused(e.to_string()))?;
        if let Some(url) = &req.on_commit {
            let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(MigrationError::Refused(format!(
                    "on_commit '{url}' is not an http(s) URL"
                )));
            }
        }
        let id = match &req.id {
            Some(id) => id.clone(),
            None => random_id()?,
        };
        if lock(&self.outgoing).contains_key(&id) || self.journal.get_outgoing(&id)?.is_some() {
            return Err(MigrationError::AlreadyExists(format!(
                "migration '{id}' exists already"
            )));
        }
        let now = now_ms();
        let rec = OutgoingRecord {
            id: id.clone(),
            container: name.to_string(),
            target: client.base().to_string(),
            token: random_token()?,
            technique,
            state: OutgoingState::Preparing,
            phase: Phase::Prepare,
            lease_ms: self.cfg.lease.as_millis() as u64,
            created_at_ms: now,
            updated_at_ms: now,
            committing_since_ms: None,
            report: MigrationReport {
                pages,
                engine,
                choice: why,
                ..MigrationReport::new(
                    id.clone(),
                    name,
                    &self.cfg.host,
                    client.base(),
                    req.technique,
                    technique,
                )
            },
            request: MigrateRequest {
                technique: req.technique,
                ..req
            },
        };
        // Recorded first: a crash from here on leaves a record the next start settles.
        self.journal.put_outgoing(&rec)?;
        if let Err(e) = self.rt.begin_outgoing(name, &id) {
            self.journal.remove_outgoing(&id);
            return Err(e.into());
        }
        let v = view(&rec);
        let shared = Arc::new(Mutex::new(Live {
            rec,
            decision: None,
        }));
        lock(&self.outgoing).insert(id.clone(), shared.clone());
        tracing::info!(container = %name, migration = %id, target = %v.target, %technique, "migration starts");
        spawn(self.clone(), shared, false);
        Ok(v)
    }

    /// This host's fixed costs per technique, from its completed migrations (newest first).
    fn fixed_costs(&self) -> technique::FixedCosts {
        let mut done: Vec<OutgoingRecord> = self
            .journal
            .all_outgoing()
            .into_iter()
            .filter(|r| r.state == OutgoingState::Completed)
            .collect();
        done.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
        technique::FixedCosts::learn(done.iter().filter_map(|r| {
            Some((
                r.technique,
                r.report.timings.frozen_ms?,
                r.report.pages_bytes,
                r.request
                    .link_bit_s
                    .unwrap_or(technique::DEFAULT_LINK_BIT_S),
            ))
        }))
    }

    pub(crate) fn outgoing_view(
        &self,
        id: &MigrationId,
    ) -> Result<Option<OutgoingView>, MigrationError> {
        if let Some(s) = lock(&self.outgoing).get(id) {
            return Ok(Some(view(&lock(s).rec)));
        }
        Ok(self.journal.get_outgoing(id)?.as_ref().map(view))
    }

    /// `POST /ferry/v1/migrations/{id}/settle` (operator). Checks the decision against the
    /// target's answer, hands it to the migration's thread and waits (bounded) until that
    /// carried it out.
    pub fn settle(
        &self,
        id: &MigrationId,
        req: SettleRequest,
    ) -> Result<OutgoingView, MigrationError> {
        let shared = lock(&self.outgoing)
            .get(id)
            .cloned()
            .ok_or_else(|| MigrationError::UnknownMigration(id.clone()))?;
        let (state, target, token) = {
            let l = lock(&shared);
            (l.rec.state, l.rec.target.clone(), l.rec.token.clone())
        };
        let settleable = matches!(
            state,
            OutgoingState::Committing | OutgoingState::InDoubt | OutgoingState::RollbackFailed
        );
        if !settleable {
            return Err(MigrationError::WrongState {
                id: id.clone(),
                state: state.to_string(),
                action: "be settled by an operator (it settles by itself)",
            });
        }
        if state != OutgoingState::RollbackFailed {
            let client = HostClient::with_http(&target, self.http.clone())?;
            let said = self.handle.block_on(client.channel_state(id, &token));
            match (&req.to, said.as_ref().map(|s| s.state)) {
                (Side::Target, Ok(IncomingState::Aborted)) => {
                    return Err(MigrationError::WrongState {
                        id: id.clone(),
                        state: "aborted on the target".into(),
                        action: "be settled to the target; settle it to the source",
                    })
                }
                (Side::Source, Ok(IncomingState::Committed)) => {
                    return Err(MigrationError::WrongState {
                        id: id.clone(),
                        state: "committed on the target (it serves the app)".into(),
                        action: "be settled to the source; settle it to the target",
                    })
                }
                (Side::Source, Err(e)) if e.no_answer() && !req.force => {
                    return Err(MigrationError::Refused(format!(
                        "the target cannot be asked ({e}); settle to the source only with force, \
                         and only if the target is gone for good"
                    )))
                }
                (Side::Target, Err(e)) => {
                    return Err(MigrationError::Refused(format!(
                        "the target must answer to be settled to: {e}"
                    )))
                }
                _ => {}
            }
        } else if req.to == Side::Target {
            return Err(MigrationError::WrongState {
                id: id.clone(),
                state: state.to_string(),
                action: "be settled to the target (the target dropped its copy)",
            });
        }
        tracing::warn!(migration = %id, to = ?req.to, force = req.force, "operator settles the migration");
        lock(&shared).decision = Some(req);
        let deadline = Instant::now() + ferry_wire::channel::CONTROL_TIMEOUT * 2;
        while lock(&shared).decision.is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let v = view(&lock(&shared).rec);
        Ok(v)
    }
}

/// Starts the thread that drives `shared` to its end (`recovering`: after a restart).
fn spawn(engine: Arc<Engine>, shared: Shared, recovering: bool) {
    let id = lock(&shared).rec.id.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("migration {id}"))
        .spawn(move || {
            let mut run = match Run::new(engine, shared) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot drive the migration: its record names a bad target; an operator must look");
                    return;
                }
            };
            if recovering {
                run.recover();
            } else {
                run.drive();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(migration = %id, error = %e, "cannot start the migration's thread; the next start settles it");
    }
}

/// At start: every outgoing migration a previous daemon left unfinished gets its thread
/// again; a container marked by a migration without a record is released.
pub(crate) fn recover(engine: &Arc<Engine>) {
    let records = engine.journal.all_outgoing();
    for rec in records.iter().filter(|r| !r.state.is_final()) {
        tracing::warn!(migration = %rec.id, container = %rec.container, state = %rec.state,
            "outgoing migration interrupted by a restart: settling it");
        let shared = Arc::new(Mutex::new(Live {
            rec: rec.clone(),
            decision: None,
        }));
        lock(&engine.outgoing).insert(rec.id.clone(), shared.clone());
        spawn(engine.clone(), shared, true);
    }
    for c in engine.rt.list().unwrap_or_default() {
        let Some(id) = c.migration.clone() else {
            continue;
        };
        if c.status == ferry_runtime::Status::Incoming {
            continue;
        }
        let open = records.iter().any(|r| r.id == id && !r.state.is_final());
        if !open {
            tracing::warn!(container = %c.name, migration = %id, "container held by a migration without an open record: released");
            if let Err(e) = engine.rt.rollback_outgoing(&c.name, &id) {
                tracing::error!(container = %c.name, error = %e, "cannot release the container");
            }
        }
    }
}

/// Waits until no outgoing migration is before its commit decision (or `timeout`).
pub(crate) fn drain(engine: &Engine, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let busy = lock(&engine.outgoing)
            .values()
            .filter(|s| lock(s).rec.state.before_commit())
            .count();
        if busy == 0 || Instant::now() > deadline {
            if busy > 0 {
                tracing::warn!(
                    busy,
                    "stopping with migrations in flight; the next start rolls them back"
                );
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the target's durable record settled an unconfirmed commit.
enum Settled {
    Committed,
    Aborted,
    /// An operator forced it to the source without the target's word.
    Forced,
}

/// One migration's thread.
struct Run {
    engine: Arc<Engine>,
    shared: Shared,
    id: MigrationId,
    name: String,
    technique: Technique,
    client: HostClient,
    token: String,
    /// The post-copy dump serving pages (this daemon's child).
    lazy_dump: Option<std::process::Child>,
}

impl Run {
    fn new(engine: Arc<Engine>, shared: Shared) -> Result<Run, MigrationError> {
        let (id, name, technique, target, token) = {
            let l = lock(&shared);
            (
                l.rec.id.clone(),
                l.rec.container.clone(),
                l.rec.technique,
                l.rec.target.clone(),
                l.rec.token.clone(),
            )
        };
        let client = HostClient::with_http(&target, engine.http.clone())?;
        Ok(Run {
            engine,
            shared,
            id,
            name,
            technique,
            client,
            token,
            lazy_dump: None,
        })
    }

    /// Runs an async call of the target's client to its end on this (plain) thread.
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.engine.handle.block_on(f)
    }

    fn state(&self) -> OutgoingState {
        lock(&self.shared).rec.state
    }

    /// Changes the record (not its state): timings, phase, figures. Kept in memory and
    /// written down with the next state change ([`Run::set`]), which every path ends with:
    /// nothing a restart decides on is among them, and a journal write (fsync, rename,
    /// directory fsync) for each would cost the frozen app milliseconds every time.
    fn edit(&self, f: impl FnOnce(&mut OutgoingRecord)) {
        let mut l = lock(&self.shared);
        f(&mut l.rec);
        l.rec.updated_at_ms = now_ms();
    }

    fn phase(&self, phase: Phase) {
        self.edit(|r| r.phase = phase);
    }

    /// Moves to `next`: checked against the diagram and written down before the caller goes
    /// on (a state that cannot be recorded is not entered).
    fn set(&self, next: OutgoingState) -> Result<(), MigrationError> {
        let mut l = lock(&self.shared);
        let before = l.rec.state;
        if !before.can_become(next) {
            return Err(MigrationError::WrongState {
                id: self.id.clone(),
                state: before.to_string(),
                action: "make that transition",
            });
        }
        l.rec.state = next;
        l.rec.updated_at_ms = now_ms();
        if next == OutgoingState::Committing {
            l.rec.committing_since_ms = Some(l.rec.updated_at_ms);
        }
        if let Some(o) = next.outcome() {
            l.rec.report.outcome = o;
            l.rec.report.bytes_on_wire = l.rec.report.stream_bytes + l.rec.report.pages_bytes;
            l.rec.report.timings.total_ms = l.rec.updated_at_ms.saturating_sub(l.rec.created_at_ms);
        }
        if let Err(e) = self.engine.journal.put_outgoing(&l.rec) {
            l.rec.state = before;
            return Err(e);
        }
        tracing::info!(migration = %self.id, container = %self.name, from = %before, to = %next, "outgoing migration");
        if next.is_final() {
            self.engine.cfg.reports.send(&l.rec.report);
        }
        Ok(())
    }

    fn hook(&self, p: Point) {
        p.reach(&self.engine.cfg.hooks, &self.id);
    }

    fn rt(&self) -> &ferry_runtime::Runtime {
        &self.engine.rt
    }

    fn image_dir(&self) -> PathBuf {
        self.rt()
            .migrations_dir()
            .join(self.id.as_str())
            .join("images")
    }

    /// A fresh migration from its start to its end.
    fn drive(&mut self) {
        match self.forward() {
            Ok(()) => {}
            Err(f) => self.rollback(f),
        }
        self.end();
    }

    /// A migration a previous daemon left in its recorded state.
    fn recover(&mut self) {
        match self.state() {
            s if s.before_commit() => {
                let phase = lock(&self.shared).rec.phase;
                self.rollback(Failure {
                    phase,
                    detail: "the source host's daemon stopped during the migration".into(),
                })
            }
            OutgoingState::Committing | OutgoingState::InDoubt => {
                let phase = lock(&self.shared).rec.phase;
                self.settle_then_finish(Failure {
                    phase,
                    detail: "the source host's daemon stopped while committing".into(),
                })
            }
            OutgoingState::Committed => self.after_commit(),
            OutgoingState::RollbackFailed => self.retry_thaw(),
            _ => {}
        }
        self.end();
    }

    /// Final: the images of this migration are not needed here any more.
    fn end(&self) {
        if self.state().is_final() {
            let _ = std::fs::remove_dir_all(self.rt().migrations_dir().join(self.id.as_str()));
            tracing::info!(migration = %self.id, container = %self.name, state = %self.state(), "migration ended");
        }
    }

    /// prepare -> (pre-copy) -> freeze -> dump -> commit (recorded; the images call then
    /// restores and commits on the target) -> lazy -> cleanup. An error is a failure before
    /// the commit decision; from the decision on, this function settles and finishes itself.
    fn forward(&mut self) -> Result<(), Failure> {
        let (request, lease_ms, fault, pages, engine) = {
            let l = lock(&self.shared);
            (
                self.rt().get(&self.name).map(|c| c.request),
                l.rec.lease_ms,
                l.rec.request.fault.clone(),
                l.rec.report.pages,
                l.rec.report.engine,
            )
        };
        let tls = self.engine.criu_tls(pages);
        let request = request.map_err(fail(Phase::Prepare))?;
        let dump_timeout = self.dump_timeout();

        // Prepare ---- offer ----> the target records it and holds a parked copy.
        self.hook(Point::SourcePreparing);
        let t = Instant::now();
        let offer = Offer {
            protocol_version: PROTOCOL_VERSION,
            id: self.id.clone(),
            source: self.engine.cfg.host.clone(),
            container: request,
            technique: self.technique,
            lease_ms,
            pages,
            engine,
        };
        let reply = self
            .block(self.client.offer(&self.token, &offer))
            .map_err(fail(Phase::Prepare))?;
        self.edit(|r| {
            r.lease_ms = reply.lease_ms;
            r.report.timings.prepare_ms = Some(t.elapsed().as_millis() as u64);
        });
        let host = self.client.host();
        let mut page_server = reply.page_server_port.map(|p| format!("{host}:{p}"));
        if self.technique == Technique::Cold && page_server.is_none() {
            return Err(fail(Phase::Prepare)("the target offered no page server"));
        }
        self.hook(Point::SourceOffered);

        // Pre-copy rounds while the app runs; the final dump then holds only the last
        // dirty pages.
        let mut parent = None;
        if self.technique.has_rounds() {
            self.set(OutgoingState::PreCopying)
                .map_err(fail(Phase::PreCopy))?;
            self.phase(Phase::PreCopy);
            let t = Instant::now();
            let (last, rounds) = self
                .pre_copy(dump_timeout, tls, engine)
                .map_err(fail(Phase::PreCopy))?;
            page_server = last.page_server_port.map(|p| format!("{host}:{p}"));
            if self.technique == Technique::PreCopy && page_server.is_none() {
                return Err(fail(Phase::PreCopy)(
                    "the target offered no page server for the final dump",
                ));
            }
            parent = Some(format!("../rounds/{}", rounds - 1));
            self.edit(|r| r.report.timings.pre_copy_ms = Some(t.elapsed().as_millis() as u64));
        }

        // The native engine dumps the app's init by pid: asked of runc now, not while frozen.
        let pid = match engine {
            CheckpointEngine::Native => Some(
                self.rt()
                    .init_pid(&self.name, &self.id)
                    .map_err(fail(Phase::Freeze))?,
            ),
            CheckpointEngine::Runc => None,
        };

        // The images call opens before the dump: each image CRIU closes goes to the target
        // while the dump goes on; the rest and the manifest follow the commit's record.
        let image_dir = self.image_dir();
        let upper = self.rt().upper_dir(&self.name);
        // Post-copy's page server, on the API's address: the target dials the address the
        // channel's calls come from, and with TLS checks it against this host's certificate.
        let lazy_port = match self.technique.is_lazy() {
            true => Some(free_port(self.engine.cfg.listen_ip).map_err(fail(Phase::Dump))?),
            false => None,
        };
        let images_call = self
            .open_images_call(
                &image_dir,
                &upper,
                RestoreOrder {
                    lazy_page_server_port: lazy_port,
                },
                fault == Some(Fault::CorruptImage),
                dump_timeout,
            )
            .map_err(fail(Phase::Transfer))?;

        // Freeze: recorded first; from here the app does not answer. A dump to a page server
        // (cold, pre-copy's last) freezes it only once CRIU has connected to the target's
        // page server: the TCP and TLS handshakes happen while the app still serves.
        self.set(OutgoingState::Frozen)
            .map_err(fail(Phase::Freeze))?;
        self.phase(Phase::Freeze);
        let frozen = std::cell::Cell::new(None);
        let freeze_failed = std::cell::Cell::new(false);
        let freeze = || -> Result<(), String> {
            let t = Instant::now();
            if let Err(e) = self.rt().freeze_outgoing(&self.name, &self.id, engine) {
                freeze_failed.set(true);
                return Err(e.to_string());
            }
            self.edit(|r| r.report.timings.freeze_ms = Some(t.elapsed().as_millis() as u64));
            self.hook(Point::SourceFrozen);
            // Dump. Cold and pre-copy: every (remaining) page goes to the target's page
            // server as CRIU reads it. Post-copy and hybrid: everything but the memory;
            // pages stay here, served on demand.
            self.phase(Phase::Dump);
            frozen.set(Some((t, Instant::now())));
            Ok(())
        };
        let freeze_when_connected = !self.technique.is_lazy() && page_server.is_some();
        if !freeze_when_connected {
            freeze().map_err(fail(Phase::Freeze))?;
        }
        let dump_failed = |e: ferry_runtime::RuntimeError| Failure {
            phase: if freeze_failed.get() {
                Phase::Freeze
            } else {
                Phase::Dump
            },
            detail: e.to_string(),
        };
        let mut final_pages_bytes = 0;
        if let Some(port) = lazy_port {
            let listen = std::net::SocketAddr::new(self.engine.cfg.listen_ip, port).to_string();
            let child = self
                .rt()
                .dump_outgoing_lazy(
                    &self.name,
                    &self.id,
                    &Dump {
                        engine,
                        image_dir: &image_dir,
                        page_server: Some(&listen),
                        tls,
                        parent: parent.as_deref(),
                        timeout: LAZY_READY_TIMEOUT,
                        pid,
                        connected: None,
                    },
                )
                .map_err(dump_failed)?;
            self.lazy_dump = Some(child);
        } else {
            let stats = self
                .rt()
                .dump_outgoing(
                    &self.name,
                    &self.id,
                    &Dump {
                        engine,
                        image_dir: &image_dir,
                        page_server: page_server.as_deref(),
                        tls,
                        parent: parent.as_deref(),
                        timeout: dump_timeout,
                        pid,
                        connected: freeze_when_connected
                            .then_some(&freeze as &dyn Fn() -> Result<(), String>),
                    },
                )
                .map_err(dump_failed)?;
            final_pages_bytes = stats.pages_written * 4096;
            self.edit(|r| {
                r.report.pages_bytes += final_pages_bytes;
                r.report.dump = Some(stats);
            });
        }
        // Frozen by now: no dump ends well without the freeze.
        let (frozen_at, dump_from) = frozen
            .get()
            .ok_or_else(|| fail(Phase::Freeze)("the dump ended without freezing the app"))?;
        self.edit(|r| r.report.timings.dump_ms = Some(dump_from.elapsed().as_millis() as u64));
        if fault == Some(Fault::BreakRestore) {
            break_core_image(&image_dir).map_err(fail(Phase::Dump))?;
        }
        self.hook(Point::SourceDumped);

        // Commit ---- point of no return ----> recorded first, then the images call ends (the
        // rest of the images, the writable layer, the manifest): the target restores and
        // commits in that call, so from here its durable record decides where the app runs,
        // and a failure settles by asking it.
        self.phase(Phase::Transfer);
        let t = Instant::now();
        let manifest = stream::build_manifest(&image_dir, &upper, final_pages_bytes)
            .map_err(fail(Phase::Transfer))?;
        self.set(OutgoingState::Committing)
            .map_err(fail(Phase::Transfer))?;
        self.hook(Point::SourceCommitting);
        let sent = images_call.finish(manifest, &self.engine.handle);
        let (bytes, streamed, restored) = match sent {
            Ok((bytes, streamed, ImagesReply::Committed(restored))) => (bytes, streamed, restored),
            // The target aborted (its record says so) and removed its copy.
            Ok((_, _, ImagesReply::Failed { detail })) => {
                self.rollback(Failure {
                    phase: Phase::Restore,
                    detail,
                });
                return Ok(());
            }
            // Nothing reached the target: it holds no images, so it cannot have committed.
            Err(ImagesError::NotSent(e)) => {
                self.rollback(Failure {
                    phase: Phase::Transfer,
                    detail: e.to_string(),
                });
                return Ok(());
            }
            Err(ImagesError::Unanswered(e)) => {
                tracing::warn!(migration = %self.id, error = %e, "the images call got no clear answer; asking the target");
                self.edit(|r| r.report.error = Some(format!("commit not confirmed: {e}")));
                self.settle_then_finish(Failure {
                    phase: Phase::Transfer,
                    detail: e.to_string(),
                });
                return Ok(());
            }
        };
        let call = t.elapsed();
        self.edit(|r| {
            r.report.stream_bytes = bytes;
            let timings = &mut r.report.timings;
            timings.transfer_ms = Some(streamed.as_millis() as u64);
            timings.restore_ms = Some(restored.restore_ms);
            timings.commit_ms = Some(restored.commit_ms);
            timings.restore_call_ms = Some(
                (call.saturating_sub(streamed).as_millis() as u64)
                    .saturating_sub(restored.commit_ms),
            );
            timings.frozen_ms = Some(frozen_at.elapsed().as_millis() as u64);
        });
        self.committed();
        self.after_commit();
        Ok(())
    }

    /// Pre-copy rounds: pre-dumps of the running app, each to a fresh page server on the
    /// target, until the dirty set is small or stops shrinking; then announces the final
    /// dump and returns the target's answer to that and the number of rounds. Rounds land in
    /// `rounds/N` next to the images dir, here and on the target alike.
    fn pre_copy(
        &self,
        dump_timeout: Duration,
        tls: Option<&ferry_runtime::criu::CriuTls>,
        engine: CheckpointEngine,
    ) -> Result<(RoundReply, u32), MigrationError> {
        let rounds = self
            .rt()
            .migrations_dir()
            .join(self.id.as_str())
            .join("rounds");
        let host = self.client.host();
        let pid = match engine {
            CheckpointEngine::Native => Some(self.rt().init_pid(&self.name, &self.id)?),
            CheckpointEngine::Runc => None,
        };
        let mut previous_bytes = None;
        let mut round = 0u32;
        loop {
            let reply = self.block(self.client.round(
                &self.id,
                &self.token,
                &RoundRequest {
                    round,
                    last: false,
                    previous_pages_bytes: previous_bytes,
                },
            ))?;
            if round > 0 && self.technique == Technique::Hybrid {
                write_index(&rounds.join((round - 1).to_string()), &reply.previous_index)?;
            }
            let port = reply.page_server_port.ok_or_else(|| {
                MigrationError::Refused("the target offered no page server for a round".into())
            })?;
            let dir = rounds.join(round.to_string());
            let parent = (round > 0).then(|| format!("../{}", round - 1));
            let t = Instant::now();
            let server = format!("{host}:{port}");
            let stats = self.rt().predump_outgoing(
                &self.name,
                &self.id,
                &Dump {
                    engine,
                    image_dir: &dir,
                    page_server: Some(&server),
                    tls,
                    parent: parent.as_deref(),
                    timeout: dump_timeout,
                    pid,
                    connected: None,
                },
            )?;
            let bytes = stats.pages_written * 4096;
            self.edit(|r| {
                r.report.pages_bytes += bytes;
                r.report.pre_copy_rounds.push(PreCopyRound {
                    round,
                    pages: stats.pages_written,
                    ms: t.elapsed().as_millis() as u64,
                });
            });
            tracing::info!(container = %self.name, migration = %self.id, round, pages = stats.pages_written, "pre-copy round");
            let shrank_enough =
                previous_bytes.is_none_or(|p: u64| (bytes as f64) <= (1.0 - MIN_SHRINK) * p as f64);
            previous_bytes = Some(bytes);
            round += 1;
            if bytes <= ROUND_DONE_BYTES || !shrank_enough || round >= MAX_ROUNDS {
                break;
            }
        }
        let last = self.block(self.client.round(
            &self.id,
            &self.token,
            &RoundRequest {
                round,
                last: true,
                previous_pages_bytes: previous_bytes,
            },
        ))?;
        if self.technique == Technique::Hybrid {
            write_index(&rounds.join((round - 1).to_string()), &last.previous_index)?;
        }
        Ok((last, round))
    }

    /// Opens the images call: a thread streams each image the dump closes in `images` at
    /// once (watched with inotify), and on [`ImagesCall::finish`] what is left, the writable
    /// layer `upper` and the manifest. Dropped unfinished, the call is abandoned.
    fn open_images_call(
        &self,
        images: &Path,
        upper: &Path,
        order: RestoreOrder,
        corrupt: bool,
        dump_timeout: Duration,
    ) -> Result<ImagesCall, MigrationError> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        std::fs::create_dir_all(images)
            .map_err(|e| MigrationError::Io(format!("create the images dir: {e}")))?;
        let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|w| {
                w.add_watch(images, AddWatchFlags::IN_CLOSE_WRITE)
                    .map(|_| w)
            })
            .map_err(|e| MigrationError::Io(format!("watch the images dir: {e}")))?;
        // The dump's deadline, then a stream slower than 1 MB/s of the most it can carry
        // (images within the app's memory, its writable layer) plus a minute: a link that
        // stopped.
        let most = self.rt().memory_bytes(&self.name).unwrap_or(0) + ferry_runtime::dir_size(upper);
        let deadline = dump_timeout + Duration::from_secs(60 + most / 1_000_000);
        let (writer, body) = ferry_host_client::body_writer();
        let (steps, next) = std::sync::mpsc::channel();
        let (images, upper) = (images.to_path_buf(), upper.to_path_buf());
        let producer = std::thread::spawn(move || {
            produce_images(writer, &watch, &images, &upper, corrupt, &next)
        });
        let (client, id, token) = (self.client.clone(), self.id.clone(), self.token.clone());
        let answer = self.engine.handle.spawn(async move {
            client
                .send_images(&id, &token, body, &order, deadline)
                .await
        });
        Ok(ImagesCall {
            steps: Some(steps),
            producer: Some(producer),
            answer: Some(answer),
        })
    }

    /// The target committed (it said so): recorded, and whoever steers traffic is told.
    fn committed(&self) {
        if let Err(e) = self.set(OutgoingState::Committed) {
            // The target serves whatever this record says: go on, and say so loudly.
            tracing::error!(migration = %self.id, error = %e, "the commit could not be recorded here");
        }
        self.hook(Point::SourceCommitted);
        let (url, target) = {
            let l = lock(&self.shared);
            (l.rec.request.on_commit.clone(), l.rec.target.clone())
        };
        if let Some(url) = url {
            let body = Committed {
                migration: self.id.clone(),
                container: self.name.clone(),
                target,
            };
            let http = self.engine.http.clone();
            let handle = self.engine.handle.clone();
            std::thread::spawn(move || notify_committed(&handle, &http, &url, &body));
        }
    }

    /// Settles a commit that was sent but not confirmed, then finishes or rolls back.
    /// `unheard` is what went wrong, for the report when the target aborted.
    fn settle_then_finish(&mut self, unheard: Failure) {
        match self.resolve_commit() {
            Settled::Committed => self.after_commit(),
            Settled::Aborted => self.rollback(Failure {
                phase: unheard.phase,
                detail: format!("the target aborted its copy: {}", unheard.detail),
            }),
            Settled::Forced => self.rollback(Failure {
                phase: Phase::Commit,
                detail: "settled to the source by an operator without the target's word".into(),
            }),
        }
    }

    /// Asks the target until its durable record says which way the commit went (the rule:
    /// `ferry_wire::migration`). Past the lease and a margin the migration is `in_doubt`
    /// and keeps asking, more slowly. An operator's decision is carried out here.
    fn resolve_commit(&mut self) -> Settled {
        let since = lock(&self.shared)
            .rec
            .committing_since_ms
            .unwrap_or_else(now_ms);
        let lease = Duration::from_millis(lock(&self.shared).rec.lease_ms);
        let doubt_at = since + (lease + IN_DOUBT_MARGIN).as_millis() as u64;
        loop {
            let decision = lock(&self.shared).decision.take();
            let said = self.block(self.client.channel_state(&self.id, &self.token));
            let answer = said.as_ref().map(|s| s.state);
            match (answer, &decision) {
                (Ok(IncomingState::Committed), _) => {
                    self.committed();
                    return Settled::Committed;
                }
                (Ok(IncomingState::Aborted), _) => return Settled::Aborted,
                (Ok(IncomingState::Restored), d)
                    if d.as_ref().is_none_or(|d| d.to == Side::Target) =>
                {
                    // Restored but not committed there: the decision stands, commit again.
                    if let Ok(s) = self.block(self.client.commit(&self.id, &self.token)) {
                        if s.state == IncomingState::Committed {
                            self.committed();
                            return Settled::Committed;
                        }
                    }
                }
                (Ok(_), _) => {
                    // Not restored (impossible after our restore unless its record was
                    // replaced), or an operator settles to the source: drop it there.
                    if let Ok(s) = self.block(self.client.abort(&self.id, &self.token)) {
                        if s.state == IncomingState::Aborted {
                            return Settled::Aborted;
                        }
                    }
                }
                (Err(_), Some(d)) if d.to == Side::Source && d.force => {
                    tracing::error!(migration = %self.id, "OPERATOR FORCED the migration back to the source without the target's word");
                    return Settled::Forced;
                }
                (Err(e), _) if e.kind() == Some(ProblemType::UnknownMigration) => {
                    // The target has no record of a migration it restored: its journal was
                    // lost. Only an operator can say whether a copy runs there.
                    self.doubt(&format!(
                        "{} has no record of this migration (its state was lost?)",
                        self.client.base()
                    ));
                }
                (Err(e), _) => {
                    if now_ms() > doubt_at {
                        self.doubt(&e.to_string());
                    }
                }
            }
            let wait = if self.state() == OutgoingState::InDoubt {
                SLOW_RETRY
            } else {
                RETRY
            };
            // A decision arriving meanwhile is acted on at once.
            let until = Instant::now() + wait;
            while Instant::now() < until && lock(&self.shared).decision.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn doubt(&self, why: &str) {
        if self.state() == OutgoingState::Committing {
            self.edit(|r| r.report.error = Some(format!("commit in doubt: {why}")));
            if self.set(OutgoingState::InDoubt).is_ok() {
                tracing::error!(migration = %self.id, container = %self.name, why,
                    "UNRESOLVED WITHOUT THE TARGET: the commit was sent but cannot be confirmed; \
                     the app stays frozen here and is never resumed on a guess");
            }
        }
    }

    /// After the commit: post-copy's remaining pages, then the cleanup (`completed`), or
    /// `lost` when the pages could not all be served.
    fn after_commit(&mut self) {
        let lazy = self.technique.is_lazy();
        let t = Instant::now();
        if lazy {
            self.phase(Phase::Lazy);
            let served_all = match self.lazy_dump.take() {
                Some(child) => Some(self.wait_lazy_dump(child)),
                None => {
                    // A previous daemon's dump, still serving: wait until it is done.
                    while !self.rt().outgoing_helpers(&self.id).is_empty() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    None
                }
            };
            self.edit(|r| {
                r.report.timings.lazy_completion_ms = Some(t.elapsed().as_millis() as u64)
            });
            // CRIU's dump statistics do not cover lazy pages: the target counts what arrived.
            let target_says = self.lazy_outcome(served_all.is_none());
            if let Some(l) = &target_says {
                self.edit(|r| {
                    r.report.remote_page_faults = Some(l.remote_page_faults);
                    r.report.remote_page_faults_first_100ms = l.faults_first_100ms;
                    r.report.pages_bytes += l.transferred_pages * 4096;
                });
            }
            let ok = match (served_all, &target_says) {
                (_, Some(l)) if l.done => l.ok && served_all != Some(false),
                (Some(ok), _) => ok,
                (None, _) => false,
            };
            if !ok {
                self.edit(|r| {
                    r.report.failed_phase = Some(Phase::Lazy);
                    r.report.error = Some(
                        "post-copy: the source's page server ended before every page reached the \
                         target; the app there misses memory (unrecoverable)"
                            .into(),
                    );
                });
                tracing::error!(migration = %self.id, container = %self.name,
                    "POST-COPY LOST MEMORY after the commit: the app on the target misses pages");
                self.cleanup();
                let _ = self.set(OutgoingState::Lost);
                return;
            }
        }
        self.cleanup();
        if let Err(e) = self.set(OutgoingState::Completed) {
            tracing::error!(migration = %self.id, error = %e, "cannot record the completion");
        }
    }

    /// The request's dump deadline, or one for the container's memory limit.
    fn dump_timeout(&self) -> Duration {
        lock(&self.shared)
            .rec
            .request
            .dump_timeout_s
            .map(Duration::from_secs)
            .unwrap_or_else(|| {
                default_dump_timeout(self.rt().memory_bytes(&self.name).unwrap_or(0))
            })
    }

    /// Waits until the lazy dump served its last page (it ends then), bounded like a dump:
    /// a link that stopped carrying pages for good would keep it waiting forever. Past the
    /// deadline it is stopped, and the pages it still held are lost. Whether it served all.
    fn wait_lazy_dump(&self, mut child: std::process::Child) -> bool {
        let deadline = Instant::now() + self.dump_timeout();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    tracing::error!(migration = %self.id, container = %self.name,
                        "post-copy: the pages did not all move within the dump deadline; stopping the source's page server");
                    stop_lazy_dump(child);
                    return false;
                }
                Err(_) => {
                    stop_lazy_dump(child);
                    return false;
                }
            }
        }
    }

    /// The target's post-copy outcome, asked until it is done (bounded; longer after a
    /// restart, when only the target can tell).
    fn lazy_outcome(&self, patient: bool) -> Option<ferry_wire::channel::LazyState> {
        let deadline = Instant::now()
            + if patient {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(10)
            };
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(s) = self.block(self.client.channel_state(&self.id, &self.token)) {
                if let Some(l) = s.lazy {
                    if l.done {
                        return Some(l);
                    }
                    last = Some(l);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last
    }

    /// Nothing of the app stays here: tried until it works (a busy mount clears).
    fn cleanup(&self) {
        self.phase(Phase::Cleanup);
        let t = Instant::now();
        loop {
            match self.rt().finish_outgoing(&self.name, &self.id) {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(migration = %self.id, container = %self.name, error = %e,
                        "source cleanup incomplete after the commit; retrying");
                    self.edit(|r| r.report.error = Some(format!("source cleanup: {e}")));
                    std::thread::sleep(SLOW_RETRY);
                }
            }
        }
        self.edit(|r| r.report.timings.cleanup_ms = Some(t.elapsed().as_millis() as u64));
    }

    /// Undoes a migration that did not commit: the original thaws first (so the app does
    /// not wait on a target that may be gone), then the target is told to drop its copy.
    fn rollback(&mut self, f: Failure) {
        tracing::error!(container = %self.name, migration = %self.id, phase = %f.phase, error = %f.detail, "migration failed; rolling back");
        self.edit(|r| {
            r.report.failed_phase = Some(f.phase);
            r.report.error = Some(f.detail.clone());
        });
        // A post-copy dump still serving pages: stop it (CRIU lets the original go); one a
        // previous daemon left, too.
        if let Some(child) = self.lazy_dump.take() {
            stop_lazy_dump(child);
        }
        if self.rt().kill_outgoing_helpers(&self.id) > 0 {
            tracing::warn!(migration = %self.id, "killed CRIU/runc processes left from the migration");
        }
        match self.rt().rollback_outgoing(&self.name, &self.id) {
            Ok(()) => {
                let _ = self.set(OutgoingState::RolledBack);
            }
            Err(e) => {
                self.thaw_failed(&e);
                abort_target(
                    self.client.clone(),
                    self.engine.handle.clone(),
                    self.id.clone(),
                    self.token.clone(),
                );
                self.retry_thaw();
                return;
            }
        }
        abort_target(
            self.client.clone(),
            self.engine.handle.clone(),
            self.id.clone(),
            self.token.clone(),
        );
    }

    fn thaw_failed(&self, e: &RuntimeError) {
        tracing::error!(migration = %self.id, container = %self.name, error = %e,
            "ROLLBACK FAILED: the app could not be thawed here; it is down with its state frozen");
        self.edit(|r| r.report.error = Some(format!("rollback failed: {e}")));
        if self.state() != OutgoingState::RollbackFailed {
            let _ = self.set(OutgoingState::RollbackFailed);
        }
    }

    /// `rollback_failed`: thaws again, now and then, and at once on an operator's settle.
    fn retry_thaw(&mut self) {
        loop {
            match self.rt().rollback_outgoing(&self.name, &self.id) {
                Ok(()) => {
                    let _ = self.set(OutgoingState::RolledBack);
                    lock(&self.shared).decision = None;
                    return;
                }
                Err(e) => self.thaw_failed(&e),
            }
            lock(&self.shared).decision = None;
            let until = Instant::now() + SLOW_RETRY;
            while Instant::now() < until && lock(&self.shared).decision.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The images call of a migration, open while its dump runs.
struct ImagesCall {
    /// Dropped before `finish`: the stream is abandoned.
    steps: Option<std::sync::mpsc::Sender<stream::Manifest>>,
    producer: Option<std::thread::JoinHandle<Result<(u64, Duration), String>>>,
    answer: Option<tokio::task::JoinHandle<Result<ImagesReply, HostError>>>,
}

impl ImagesCall {
    /// Sends what is left and the manifest, then waits for the target's answer. Returns the
    /// bytes sent, how long the stream took after the dump, and the answer: its restore's
    /// and commit's outcome.
    fn finish(
        mut self,
        manifest: stream::Manifest,
        rt: &tokio::runtime::Handle,
    ) -> Result<(u64, Duration, ImagesReply), ImagesError> {
        if let Some(steps) = self.steps.take() {
            // A producer that is gone already says why when joined.
            let _ = steps.send(manifest);
        }
        let produced = match self.producer.take().map(|p| p.join()) {
            Some(Ok(produced)) => produced,
            _ => Err("the stream's producer panicked".into()),
        };
        let answer = match self.answer.take() {
            Some(answer) => rt
                .block_on(answer)
                .map_err(|e| format!("the images call's task ended: {e}")),
            None => Err("the images call was not made".into()),
        };
        // A stream cut short (or never connected) cannot be restored, let alone committed.
        let (bytes, streamed) = produced.map_err(ImagesError::NotSent)?;
        match answer.map_err(ImagesError::Unanswered)? {
            Ok(reply) => Ok((bytes, streamed, reply)),
            Err(e) if e.never_reached() => Err(ImagesError::NotSent(e.to_string())),
            Err(e) => Err(ImagesError::Unanswered(e.to_string())),
        }
    }
}

impl Drop for ImagesCall {
    /// Unfinished (the dump or the commit's record failed): the call is cancelled and the
    /// producer abandons the stream, so the target drops what it received.
    fn drop(&mut self) {
        self.steps.take();
        // The call first: a producer blocked on a body nobody reads (a stalled link) is
        // freed by the request's end, and would otherwise hold this join until the deadline.
        if let Some(a) = self.answer.take() {
            a.abort();
        }
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

/// The images call's body: each image in `images` the dump closes (`watch`), at once; then,
/// given the manifest, the rest and the manifest. The manifest's sender dropped: abandoned.
fn produce_images(
    mut writer: ferry_host_client::BodyWriter,
    watch: &nix::sys::inotify::Inotify,
    images: &Path,
    upper: &Path,
    corrupt: bool,
    next: &std::sync::mpsc::Receiver<stream::Manifest>,
) -> Result<(u64, Duration), String> {
    use std::sync::mpsc::RecvTimeoutError;
    let result = (|| {
        let mut w = stream::StreamWriter::new(&mut writer, corrupt);
        loop {
            if let Err(e) = send_closed_images(&mut w, watch, images) {
                w.abandon();
                return Err(e);
            }
            // Short: an image waits at most this long; the manifest not at all.
            match next.recv_timeout(Duration::from_millis(1)) {
                Ok(manifest) => {
                    let t = Instant::now();
                    return w
                        .finish(&manifest, images, upper)
                        .map(|bytes| (bytes, t.elapsed()))
                        .map_err(|e| format!("stream: {e}"));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    w.abandon();
                    return Err("the stream was abandoned".into());
                }
            }
        }
    })();
    match &result {
        Ok(_) => drop(writer),
        Err(e) => writer.fail(std::io::Error::other(e.clone())),
    }
    result
}

fn send_closed_images(
    w: &mut stream::StreamWriter<&mut ferry_host_client::BodyWriter>,
    watch: &nix::sys::inotify::Inotify,
    images: &Path,
) -> Result<(), String> {
    let events = match watch.read_events() {
        Ok(events) => events,
        Err(nix::errno::Errno::EAGAIN) => return Ok(()),
        Err(e) => return Err(format!("watch the images dir: {e}")),
    };
    for name in events.iter().filter_map(|e| e.name.as_ref()?.to_str()) {
        match w.send_image(images, name) {
            // Removed since: the manifest decides.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("stream: {e}")),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// How an images call failed, as far as the source can know.
enum ImagesError {
    /// The target cannot hold the whole stream: nothing connected, or the stream broke off
    /// on this side.
    NotSent(String),
    /// The stream went out but no answer, or an error answer, came back: the target may
    /// have restored and committed; only its durable state says.
    Unanswered(String),
}

/// Puts a round's page index, as the target received it, into the round's dir here: CRIU's
/// lazy final dump reads it to leave the pages the target holds to the target.
fn write_index(dir: &Path, files: &[ferry_wire::channel::IndexFile]) -> Result<(), MigrationError> {
    for f in files {
        let plain = !f.name.contains('/') && f.name.ends_with(".img");
        let kind_ok = f.name.starts_with("pagemap-") || f.name.starts_with("pages-");
        if !plain || !kind_ok {
            return Err(MigrationError::Integrity(format!(
                "the target sent an unexpected index file '{}'",
                f.name
            )));
        }
        let bytes = match &f.hex {
            Some(h) => hex::decode(h)
                .map_err(|e| MigrationError::Integrity(format!("index file {}: {e}", f.name)))?,
            None => Vec::new(),
        };
        std::fs::write(dir.join(&f.name), bytes)
            .map_err(|e| MigrationError::Io(format!("{}: {e}", f.name)))?;
    }
    Ok(())
}

/// A free TCP port on `ip` for the source's page server.
fn free_port(ip: std::net::IpAddr) -> Result<u16, String> {
    let l = std::net::TcpListener::bind((ip, 0)).map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Stops a post-copy dump (runc and CRIU, one process group); CRIU then detaches from the
/// frozen original, which stays as it was.
fn stop_lazy_dump(mut child: std::process::Child) {
    let pgid = child.id() as i32;
    // SAFETY: kill(2) on the process group we created for this child; no memory involved.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Tells whoever steers traffic that the target serves now (a few tries, each bounded).
fn notify_committed(
    handle: &tokio::runtime::Handle,
    http: &reqwest::Client,
    url: &str,
    body: &Committed,
) {
    for attempt in 0..3 {
        // Built inside the runtime: the request's deadline needs its timer.
        let sent = handle.block_on(async {
            http.post(url)
                .json(body)
                .timeout(Duration::from_secs(5))
                .send()
                .await
        });
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(%url, status = %r.status(), "on_commit callback refused");
                return;
            }
            Err(e) => tracing::warn!(%url, attempt, error = %e, "on_commit callback failed"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Tells the target to drop its parked copy, in the background, retrying while it cannot be
/// reached (the copy also expires there on its own).
fn abort_target(
    client: HostClient,
    handle: tokio::runtime::Handle,
    id: MigrationId,
    token: String,
) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + PREPARE_TIMEOUT;
        loop {
            match handle.block_on(client.abort(&id, &token)) {
                Ok(_) => return,
                Err(e) if e.kind() == Some(ProblemType::UnknownMigration) => return, // never prepared
                Err(HostError::Answered {
                    status, problem, ..
                }) => {
                    // Committed there while this side rolled back would break the rule:
                    // say it as loudly as possible.
                    let level_error = problem.type_.as_deref().and_then(ProblemType::from_uri)
                        == Some(ProblemType::WrongState);
                    if level_error {
                        tracing::error!(migration = %id, %status, detail = ?problem.detail, "the target refused the abort");
                    } else {
                        tracing::warn!(migration = %id, %status, detail = ?problem.detail, "the target refused the abort");
                    }
                    return;
                }
                Err(e) if Instant::now() > deadline => {
                    tracing::warn!(migration = %id, error = %e, "target never acknowledged the abort; its copy expires there");
                    return;
                }
                Err(e) => {
                    tracing::warn!(migration = %id, error = %e, "could not tell the target to abort; retrying");
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

/// Fault injection: truncates the core image of the process so CRIU's restore fails.
fn break_core_image(dir: &Path) -> Result<(), String> {
    let core = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("core-"))
        .ok_or("no core image to break")?;
    std::fs::write(core.path(), b"broken").map_err(|e| e.to_string())
}
