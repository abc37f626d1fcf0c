//! A live migration as an operation resource, and the two state machines of the transaction.
//!
//! `POST /ferry/v1/containers/{name}/migrate` ([`MigrateRequest`]) on the source host answers
//! `202 Accepted` with `Location: /ferry/v1/migrations/{id}` at once; `GET` on it gives the
//! [`MigrationView`]: the state, the phase and, once it ended, the [`MigrationReport`].
//!
//! # The commit rule
//!
//! The **source decides**; the **target's durable record is the truth** about the commit.
//!
//! 1. Each side persists a state *before* the step other parties can observe: the source
//!    writes `Frozen` before it freezes, `Committing` before it ends the images call with
//!    the manifest (that call carries the commit: the target restores and commits in it,
//!    and takes no stream without its manifest and end); the target
//!    writes `Prepared` before it answers the offer, `Committed` before it unparks the copy,
//!    `Aborted` before it removes it. Both sides keep the migration id and the token (the
//!    target its digest), so after any restart either can ask the other.
//! 2. Before `Committing`, the source may roll back on its own: it thaws its copy and tells
//!    the target to abort (the target's copy is parked and never served).
//! 3. From `Committing` on, the source never thaws on a guess. It asks the target:
//!    `Committed` -> finish (`Committed`, then cleanup: `Completed`); `Restored` -> send the
//!    commit again (idempotent); `Aborted` -> roll back; `Prepared` or `ImagesReceived` (the
//!    images never arrived whole or were not restored) -> ask it to abort, then roll back.
//!    A source whose images call never connected, or whose stream broke off on its side,
//!    rolls back at once: the target cannot restore a stream it does not hold whole.
//!    Anything else (unreachable, no record) leaves it waiting; past the lease (plus a margin) it reports `InDoubt`
//!    (outcome `unknown`) and keeps asking in the background.
//! 4. The target commits only on the source's word (the images call, or the commit call
//!    of a source that settles). An uncommitted copy expires when its
//!    lease runs out, and a restarted target aborts every uncommitted copy: both write
//!    `Aborted` first, so the source, asking later, learns it may roll back. A target never
//!    changes `Committed` or `Aborted` afterwards, and keeps final records for a retention
//!    period.
//! 5. An operator settles what the parties cannot: `POST /ferry/v1/migrations/{id}/settle`
//!    ([`SettleRequest`]) on the source. To the target: the source sends the commit (refused
//!    if the target aborted). To the source: the source asks the target to abort (refused if
//!    it committed); with `force`, for a target known to be gone for good, it thaws without
//!    asking.
//! 6. Post-copy after the commit: the app runs on the target while its memory still comes
//!    from the source's page server. Losing the source then loses memory: outcome `lost`,
//!    logged and reported as such, never as completed.
//!
//! # Source (outgoing)
//!
//! ```text
//!  Preparing --offer ok--> PreCopying --rounds done--> Frozen          (cold, post-copy:
//!      |                       |                         |              Preparing -> Frozen)
//!      +------ failure --------+-------- failure --------+--> RolledBack
//!                                                        |
//!                                                       dump ok
//!                                                        v
//!   RolledBack <--target aborted-- Committing --images: restored, committed--> Committed
//!                                   |     ^                             |       \
//!                    target unreachable  target answers             lazy done,   source's
//!                    past lease+margin   (or operator)              cleanup      pages lost
//!                                   v     |                             v          v
//!                                  InDoubt                          Completed     Lost
//!  any pre-commit state --thaw failed--> RollbackFailed --thaw retried--> RolledBack
//! ```
//! After a restart: `Preparing`, `PreCopying`, `Frozen` roll back (helpers killed, copy
//! thawed, target told to abort); `Committing` and `InDoubt` ask the target (rule 3);
//! `Committed` waits for the post-copy pages, then cleans up; `RollbackFailed` thaws again.
//!
//! # Target (incoming)
//!
//! ```text
//!  Prepared --images ok--> ImagesReceived --restored (parked)--> Restored --commit--> Committed
//!                         (one images call: received, restored, committed, then it serves)
//!      |   (pre-copy rounds      |                                 |
//!      |    stay in Prepared)    |                                 | lease ran out,
//!      +------- abort, failure, expiry, restart -------------------+ abort, restart
//!                                                                   v
//!                                                                Aborted
//! ```
//! After a restart: `Committed` makes sure the copy serves; every other non-final state is
//! aborted (`Aborted` written first, then the copy and its CRIU helpers removed).

use serde::{Deserialize, Serialize};

use crate::channel::LazyState;

/// Migration techniques (`cold`, `post-copy`, `pre-copy`, `hybrid`, `auto`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// Stop-and-copy: freeze, dump everything (pages straight to the target), restore.
    Cold,
    /// Lazy: dump without memory, restore at once, pages pulled on fault from the source.
    PostCopy,
    /// Iterative pre-dumps while running, then a final dump of the last dirty pages.
    PreCopy,
    /// Pre-copy rounds, then post-copy for the rest.
    Hybrid,
    /// The source picks from state size, dirty rate, link rate and what its kernel supports.
    #[default]
    Auto,
}

impl Technique {
    pub const ALL: [Technique; 5] = [
        Technique::Cold,
        Technique::PostCopy,
        Technique::PreCopy,
        Technique::Hybrid,
        Technique::Auto,
    ];

    /// Memory pages move after the restore (post-copy, hybrid).
    pub fn is_lazy(self) -> bool {
        matches!(self, Technique::PostCopy | Technique::Hybrid)
    }

    /// Pre-dump rounds run before the freeze (pre-copy, hybrid).
    pub fn has_rounds(self) -> bool {
        matches!(self, Technique::PreCopy | Technique::Hybrid)
    }
}

impl std::fmt::Display for Technique {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Technique::Cold => "cold",
            Technique::PostCopy => "post-copy",
            Technique::PreCopy => "pre-copy",
            Technique::Hybrid => "hybrid",
            Technique::Auto => "auto",
        })
    }
}

impl std::str::FromStr for Technique {
    type Err = String;
    fn from_str(s: &str) -> Result<Technique, String> {
        Technique::ALL
            .into_iter()
            .find(|t| t.to_string() == s)
            .ok_or_else(|| {
                let all: Vec<String> = Technique::ALL.iter().map(|t| t.to_string()).collect();
                format!("unknown technique '{s}' (use one of {})", all.join(", "))
            })
    }
}

/// The id of one migration: `m-` and 16 hex digits when a host makes it; a caller (the
/// control plane) may choose its own so it can ask for the migration even when the answer
/// to its request was lost. 1-64 characters of `a-z`, `0-9`, `-`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct MigrationId(String);

impl MigrationId {
    /// `m-` + the bytes in hex (the caller draws them from the OS's random source).
    pub fn from_random(bytes: [u8; 8]) -> MigrationId {
        let mut s = String::from("m-");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        MigrationId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MigrationId {
    type Error = String;
    fn try_from(s: String) -> Result<MigrationId, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(MigrationId(s))
        } else {
            Err(format!(
                "invalid migration id '{s}': use 1-64 characters of a-z, 0-9, '-'"
            ))
        }
    }
}

impl std::str::FromStr for MigrationId {
    type Err = String;
    fn from_str(s: &str) -> Result<MigrationId, String> {
        MigrationId::try_from(s.to_string())
    }
}

impl From<MigrationId> for String {
    fn from(id: MigrationId) -> String {
        id.0
    }
}

impl std::fmt::Display for MigrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client asks the source host for (`POST /ferry/v1/containers/{name}/migrate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MigrateRequest {
    /// Base URL of the target host's API, e.g. `http://10.99.2.2:7100`.
    pub target: String,
    #[serde(default)]
    pub technique: Technique,
    /// The migration's id; the host makes one when absent. A caller that gives it can ask
    /// for the migration whatever happens to the answer of this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<MigrationId>,
    /// Fault injection, for tests of the transaction: refused unless the host runs with
    /// test hooks (`ferry host --test-hooks DIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Host-to-host link rate, bit/s, for `auto` (the orchestrator knows the topology).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_bit_s: Option<u64>,
    /// How fast the app writes its memory, bytes/s, for `auto` (when the operator knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_bytes_s: Option<u64>,
    /// How long one dump may take before the migration gives up and rolls back (default:
    /// 30 s plus 1 s per MiB of state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_timeout_s: Option<u64>,
    /// URL the source POSTs [`crate::channel::Committed`] to the moment the target serves,
    /// so the caller steers traffic then (post-copy moves memory for a while after the
    /// commit, and the source cleans up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_commit: Option<String>,
    /// How the memory pages travel; absent: over TLS between hosts that have TLS files,
    /// else plain. `plain` between TLS hosts is for benchmarks that measure what TLS costs,
    /// and is refused unless both hosts were started with `--allow-plain-pages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<PageTransport>,
    /// Who drives CRIU on both hosts; absent: the source host's default (`ferry host
    /// --engine`). The benchmark compares both in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<CheckpointEngine>,
}

/// Who drives CRIU for a migration's dumps and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointEngine {
    /// runc's CLI (`runc checkpoint`, `runc restore`), which starts CRIU itself. Also what
    /// records written before the native engine existed say.
    #[default]
    Runc,
    /// ferry over CRIU's RPC: nothing but CRIU runs while the app is frozen; the restored
    /// container is then ferry's own to run (see `ferry_runtime`'s native engine).
    Native,
}

impl CheckpointEngine {
    pub const ALL: [CheckpointEngine; 2] = [CheckpointEngine::Runc, CheckpointEngine::Native];
}

impl std::str::FromStr for CheckpointEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<CheckpointEngine, String> {
        CheckpointEngine::ALL
            .into_iter()
            .find(|e| e.to_string() == s)
            .ok_or_else(|| format!("unknown engine '{s}' (use runc or native)"))
    }
}

impl std::fmt::Display for CheckpointEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckpointEngine::Runc => "runc",
            CheckpointEngine::Native => "native",
        })
    }
}

/// How CRIU's memory pages travel between the hosts (page servers, lazy pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageTransport {
    /// CRIU's TLS, both ends with certificates of the operator's CA.
    Tls,
    /// Plain TCP: between hosts without TLS files (a developer's loopback), or a benchmark's
    /// comparison run. Also what records written before TLS existed say.
    #[default]
    Plain,
}

impl std::str::FromStr for PageTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<PageTransport, String> {
        [PageTransport::Tls, PageTransport::Plain]
            .into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| format!("unknown page transport '{s}' (use tls or plain)"))
    }
}

impl std::fmt::Display for PageTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PageTransport::Tls => "tls",
            PageTransport::Plain => "plain",
        })
    }
}

/// Faults a test can inject into a migration, each exercising a real failure path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// Flip a byte of one image file after its checksum was taken.
    CorruptImage,
    /// Truncate the process' core image before checksumming: CRIU's restore fails on it.
    BreakRestore,
}

/// The phases of a migration on the source, in order (progress, and where a failure was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Prepare,
    /// Pre-copy and hybrid: rounds of pre-dumps while the app runs.
    PreCopy,
    Freeze,
    Dump,
    Transfer,
    Restore,
    Commit,
    /// Post-copy: the target serves and pulls the remaining pages.
    Lazy,
    Cleanup,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Prepare => "prepare",
            Phase::PreCopy => "pre_copy",
            Phase::Freeze => "freeze",
            Phase::Dump => "dump",
            Phase::Transfer => "transfer",
            Phase::Restore => "restore",
            Phase::Commit => "commit",
            Phase::Lazy => "lazy",
            Phase::Cleanup => "cleanup",
        })
    }
}

/// The source's state machine (see the module docs for the diagram and the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutgoingState {
    /// Recorded; the offer is on its way (the target may or may not hold a parked copy).
    Preparing,
    /// Pre-copy rounds while the app runs.
    PreCopying,
    /// The app's network is parked and its processes frozen (dump, transfer, restore).
    Frozen,
    /// The source decided to commit; the commit is sent (or about to be).
    Committing,
    /// The commit was sent but the target could not be reached to confirm it: the frozen
    /// copy is kept, the source keeps asking, an operator may settle.
    InDoubt,
    /// A rollback could not thaw the app here: it is down (state intact, frozen); the
    /// source retries, an operator must look.
    RollbackFailed,
    /// The target serves. Post-copy: its memory still comes from here.
    Committed,
    /// Final: the app runs on the target, nothing of it is left here.
    Completed,
    /// Final: the app runs here again, as before; the target was told to drop its copy.
    RolledBack,
    /// Final: post-copy lost memory pages after the commit (the source's page server died
    /// before the target had every page). The app on the target misses memory.
    Lost,
}

impl OutgoingState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OutgoingState::Completed | OutgoingState::RolledBack | OutgoingState::Lost
        )
    }

    /// Before the commit decision: the source may still roll back on its own.
    pub fn before_commit(self) -> bool {
        matches!(
            self,
            OutgoingState::Preparing | OutgoingState::PreCopying | OutgoingState::Frozen
        )
    }

    /// The transitions of the diagram; anything else is a bug the caller refuses.
    pub fn can_become(self, next: OutgoingState) -> bool {
        use OutgoingState::*;
        matches!(
            (self, next),
            (Preparing, PreCopying | Frozen | RolledBack | RollbackFailed)
                | (PreCopying, Frozen | RolledBack | RollbackFailed)
                | (Frozen, Committing | RolledBack | RollbackFailed)
                | (
                    Committing,
                    Committed | InDoubt | RolledBack | RollbackFailed
                )
                | (InDoubt, Committed | RolledBack | RollbackFailed)
                | (RollbackFailed, RolledBack)
                | (Committed, Completed | Lost)
        )
    }

    /// How the migration ended (or stands, for the states that need someone to act).
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            OutgoingState::Completed => Some(Outcome::Completed),
            OutgoingState::RolledBack => Some(Outcome::RolledBack),
            OutgoingState::Lost => Some(Outcome::Lost),
            OutgoingState::InDoubt => Some(Outcome::Unknown),
            OutgoingState::RollbackFailed => Some(Outcome::RollbackFailed),
            _ => None,
        }
    }
}

impl std::fmt::Display for OutgoingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).unwrap_or_default();
        f.write_str(v.as_str().unwrap_or("?"))
    }
}

/// The target's state machine (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncomingState {
    /// A parked copy is prepared (network unreachable); pre-copy rounds arrive here.
    Prepared,
    ImagesReceived,
    /// Restored, still parked; the lease runs.
    Restored,
    /// Final: the copy serves.
    Committed,
    /// Final: the copy was (or is being) removed; it never served.
    Aborted,
}

impl IncomingState {
    pub fn is_final(self) -> bool {
        matches!(self, IncomingState::Committed | IncomingState::Aborted)
    }

    pub fn can_become(self, next: IncomingState) -> bool {
        use IncomingState::*;
        matches!(
            (self, next),
            (Prepared, ImagesReceived | Aborted)
                | (ImagesReceived, Restored | Aborted)
                | (Restored, Committed | Aborted)
        )
    }
}

impl std::fmt::Display for IncomingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).unwrap_or_default();
        f.write_str(v.as_str().unwrap_or("?"))
    }
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The app runs on the target; nothing of it is left on the source.
    Completed,
    /// A phase failed before the commit; the app runs on the source as before.
    RolledBack,
    /// The commit was sent but not confirmed: the target may run the app. The source keeps
    /// its frozen copy (it never resumes it on a guess) and keeps asking; an operator may
    /// settle it.
    Unknown,
    /// Post-copy lost memory after the commit: the app on the target misses pages.
    Lost,
    /// The migration was undone but the app could not be thawed on the source: it is down
    /// with its state intact (frozen) until the source's retry or an operator fixes it.
    RollbackFailed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).unwrap_or_default();
        f.write_str(v.as_str().unwrap_or("?"))
    }
}

/// What CRIU's `stats-dump` says about one dump.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DumpStats {
    /// Time the tasks were frozen by CRIU, microseconds.
    pub frozen_us: u64,
    pub memdump_us: u64,
    pub memwrite_us: u64,
    pub pages_scanned: u64,
    pub pages_written: u64,
    pub pages_lazy: u64,
}

/// Per-phase timings in milliseconds (absent: phase not reached).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    pub prepare_ms: Option<u64>,
    /// Pre-copy and hybrid: all rounds, while the app ran.
    pub pre_copy_ms: Option<u64>,
    pub freeze_ms: Option<u64>,
    /// CRIU dump; for cold this includes sending every page to the target's page server.
    pub dump_ms: Option<u64>,
    /// The images stream's tail leaving the source after the dump: what CRIU had not closed
    /// during it, the writable layer and the manifest (the images call goes on until the
    /// target has restored: see `restore_call_ms`).
    pub transfer_ms: Option<u64>,
    /// The target's restore (CRIU's and ferry's work there).
    pub restore_ms: Option<u64>,
    /// The rest of the images call as the source saw it: the stream's tail in flight, the
    /// round trip, the target's checks and all it did before and after CRIU's restore.
    #[serde(default)]
    pub restore_call_ms: Option<u64>,
    pub commit_ms: Option<u64>,
    pub cleanup_ms: Option<u64>,
    /// Post-copy: from the commit until the last page arrived.
    pub lazy_completion_ms: Option<u64>,
    /// From freeze to commit: how long the app could not answer, as the hosts saw it.
    pub frozen_ms: Option<u64>,
    pub total_ms: u64,
}

/// One pre-copy round as the source saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreCopyRound {
    pub round: u32,
    /// Pages the pre-dump sent (dirtied since the round before).
    pub pages: u64,
    pub ms: u64,
}

/// The report of one migration: in the view once it ended (or needs an operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MigrationReport {
    pub id: MigrationId,
    pub container: String,
    pub source: String,
    pub target: String,
    pub requested: Technique,
    pub technique: Technique,
    pub outcome: Outcome,
    pub timings: Timings,
    /// Image files + writable layer streamed over the channel (tar bytes).
    pub stream_bytes: u64,
    /// Memory pages through the page server.
    pub pages_bytes: u64,
    /// How they travelled.
    #[serde(default)]
    pub pages: PageTransport,
    /// Who drove CRIU.
    #[serde(default)]
    pub engine: CheckpointEngine,
    /// Everything between the hosts for this migration (stream + pages).
    pub bytes_on_wire: u64,
    pub dump: Option<DumpStats>,
    /// Pre-copy and hybrid: one entry per round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_copy_rounds: Vec<PreCopyRound>,
    /// Post-copy: page faults the target served from the source.
    pub remote_page_faults: Option<u64>,
    /// Post-copy: of them, those in the first 100 ms after the restore (the request path
    /// waiting on the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_page_faults_first_100ms: Option<u64>,
    /// Where it failed, and why.
    pub failed_phase: Option<Phase>,
    pub error: Option<String>,
    /// For `auto`: why this technique (the expected downtimes it weighed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
}

impl MigrationReport {
    /// The report of a migration that has not done anything yet: every figure zero or
    /// absent, the outcome `rolled_back` until it ends otherwise.
    pub fn new(
        id: MigrationId,
        container: &str,
        source: &str,
        target: &str,
        requested: Technique,
        technique: Technique,
    ) -> MigrationReport {
        MigrationReport {
            id,
            container: container.to_string(),
            source: source.to_string(),
            target: target.to_string(),
            requested,
            technique,
            outcome: Outcome::RolledBack,
            timings: Timings::default(),
            stream_bytes: 0,
            pages_bytes: 0,
            pages: PageTransport::default(),
            engine: CheckpointEngine::default(),
            bytes_on_wire: 0,
            dump: None,
            pre_copy_rounds: Vec::new(),
            remote_page_faults: None,
            remote_page_faults_first_100ms: None,
            failed_phase: None,
            error: None,
            choice: None,
        }
    }
}

/// The operation resource of an outgoing migration (`GET /ferry/v1/migrations/{id}` on the
/// source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutgoingView {
    pub id: MigrationId,
    pub container: String,
    /// The target host's API.
    pub target: String,
    pub requested: Technique,
    pub technique: Technique,
    pub state: OutgoingState,
    /// The phase it is in (or was in when it ended).
    pub phase: Phase,
    /// What went wrong, when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What an operator should do, for the states that need one (`in_doubt`,
    /// `rollback_failed`, `lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// Unix time in milliseconds of the last state change.
    pub updated_at_ms: u64,
    /// Bytes sent to the target so far (memory pages and the image stream), as each step
    /// that sends them ends: progress while the migration runs.
    #[serde(default)]
    pub moved_bytes: u64,
    /// Once final (or in doubt): how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Box<MigrationReport>>,
}

/// An incoming migration as its target sees it (`GET /ferry/v1/migrations/{id}` on the
/// target; the channel's own state answer is [`crate::channel::ChannelState`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncomingView {
    pub id: MigrationId,
    pub container: String,
    /// The source host, as it named itself in the offer.
    pub source: String,
    pub technique: Technique,
    pub state: IncomingState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<LazyState>,
    pub updated_at_ms: u64,
}

/// `GET /ferry/v1/migrations/{id}`: the host's record of a migration, either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "direction", rename_all = "snake_case")]
pub enum MigrationView {
    Outgoing(OutgoingView),
    Incoming(IncomingView),
}

impl MigrationView {
    pub fn id(&self) -> &MigrationId {
        match self {
            MigrationView::Outgoing(o) => &o.id,
            MigrationView::Incoming(i) => &i.id,
        }
    }

    pub fn outgoing(self) -> Option<OutgoingView> {
        match self {
            MigrationView::Outgoing(o) => Some(o),
            MigrationView::Incoming(_) => None,
        }
    }
}

/// Which copy an operator keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Target,
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        match s {
            "source" => Ok(Side::Source),
            "target" => Ok(Side::Target),
            _ => Err(format!("unknown side '{s}' (use source or target)")),
        }
    }
}

/// `POST /ferry/v1/migrations/{id}/settle` (operator).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettleRequest {
    pub to: Side,
    /// To the source without the target's word: only for a target known to be gone for good
    /// (or fenced), never while it may serve.
    #[serde(default)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [OutgoingState; 10] = [
        OutgoingState::Preparing,
        OutgoingState::PreCopying,
        OutgoingState::Frozen,
        OutgoingState::Committing,
        OutgoingState::InDoubt,
        OutgoingState::RollbackFailed,
        OutgoingState::Committed,
        OutgoingState::Completed,
        OutgoingState::RolledBack,
        OutgoingState::Lost,
    ];

    #[test]
    fn final_states_have_no_way_out_and_commit_is_one_way() {
        for s in ALL {
            for n in ALL {
                if s.is_final() {
                    assert!(!s.can_become(n), "{s} -> {n}");
                }
                // Past the commit decision the source never rolls back on its own, and a
                // commit is never undone.
                if !s.before_commit() && s.can_become(n) {
                    assert!(!n.before_commit(), "{s} -> {n}");
                }
                if s == OutgoingState::Committed && s.can_become(n) {
                    assert!(n != OutgoingState::RolledBack, "{s} -> {n}");
                }
            }
        }
        assert!(OutgoingState::Frozen.can_become(OutgoingState::Committing));
        assert!(!OutgoingState::Frozen.can_become(OutgoingState::Committed));
        assert!(!OutgoingState::Preparing.can_become(OutgoingState::Committing));
        assert!(OutgoingState::InDoubt.can_become(OutgoingState::RolledBack));
    }

    #[test]
    fn incoming_commit_and_abort_are_final() {
        use IncomingState::*;
        for s in [Committed, Aborted] {
            for n in [Prepared, ImagesReceived, Restored, Committed, Aborted] {
                assert!(!s.can_become(n));
            }
        }
        assert!(
            !Prepared.can_become(Committed),
            "no commit without a restore"
        );
        assert!(Restored.can_become(Aborted));
    }

    #[test]
    fn ids_are_checked() {
        let id = MigrationId::from_random([0xab, 0, 1, 2, 3, 4, 5, 0xff]);
        assert_eq!(id.as_str(), "m-ab000102030405ff");
        assert!("../x".parse::<MigrationId>().is_err());
        assert!("".parse::<MigrationId>().is_err());
        assert!(serde_json::from_str::<MigrationId>("\"A\"").is_err());
        assert!(serde_json::from_str::<MigrationId>("\"reloc-1\"").is_ok());
    }

    #[test]
    fn techniques_round_trip() {
        for t in Technique::ALL {
            assert_eq!(t.to_string().parse::<Technique>().unwrap(), t);
            let v = serde_json::to_value(t).unwrap();
            assert_eq!(v.as_str().unwrap(), t.to_string());
        }
        assert!("teleport".parse::<Technique>().is_err());
    }

    #[test]
    fn view_is_tagged_by_direction() {
        let v = MigrationView::Incoming(IncomingView {
            id: "m-1".parse().unwrap(),
            container: "app".into(),
            source: "a".into(),
            technique: Technique::Cold,
            state: IncomingState::Restored,
            lazy: None,
            updated_at_ms: 1,
        });
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["direction"], "incoming");
        assert_eq!(j["state"], "restored");
        assert_eq!(serde_json::from_value::<MigrationView>(j).unwrap(), v);
    }
}
