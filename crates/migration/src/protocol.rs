//! Messages of the migration channel between two `ferry host` APIs, and the report.
//!
//! Source API: `POST /ferry/v1/containers/{name}/migrate` ([`MigrateRequest`] ->
//! [`MigrationReport`]). Target API (every call with `Authorization: Bearer <token>`):
//!
//! | call | body | what the target does |
//! |---|---|---|
//! | `POST /ferry/v1/migrations` | [`Offer`] | prepares the container (parked network), starts a page server; [`OfferReply`] |
//! | `POST /ferry/v1/migrations/{id}/rounds` | [`RoundRequest`] | pre-copy/hybrid: checks the last round's pages, starts a page server for the next; [`RoundReply`] |
//! | `PUT /ferry/v1/migrations/{id}/images` | tar stream ([`crate::stream`]) | writes and verifies images and writable layer |
//! | `POST /ferry/v1/migrations/{id}/restore` | - | waits for the pages, checks their size, restores (still parked) |
//! | `POST /ferry/v1/migrations/{id}/commit` | - | makes the copy reachable: it now serves |
//! | `POST /ferry/v1/migrations/{id}/abort` | - | removes the uncommitted copy |
//! | `GET /ferry/v1/migrations/{id}` | - | [`TargetState`] |

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use ferry_runtime::{ContainerRequest, DumpStats};

use crate::technique::Technique;

/// Header carrying the per-migration token.
pub const AUTH_HEADER: &str = "authorization";

/// What a client asks the source host for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Base URL of the target host's API, e.g. `http://10.99.2.2:7100`.
    pub target: String,
    #[serde(default)]
    pub technique: Technique,
    /// Per-migration token (from the orchestrator); generated when absent.
    #[serde(default)]
    pub token: Option<String>,
    /// Fault injection, for tests of the transaction (never set in production).
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Host-to-host link rate, bit/s, for `auto` (the orchestrator knows the topology).
    #[serde(default)]
    pub link_bit_s: Option<u64>,
    /// How fast the app writes its memory, bytes/s, for `auto` (when the operator knows).
    #[serde(default)]
    pub dirty_bytes_s: Option<u64>,
    /// How long one dump may take before the migration gives up and rolls back (default:
    /// [`crate::source::default_dump_timeout`] of the state size).
    #[serde(default)]
    pub dump_timeout_s: Option<u64>,
    /// URL the source POSTs [`Committed`] to the moment the target serves, so the caller
    /// steers traffic then rather than when the report arrives (post-copy moves memory for a
    /// while after the commit, and the source cleans up).
    #[serde(default)]
    pub on_commit: Option<String>,
}

/// Source -> `on_commit` URL: the app now serves on the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    pub migration: String,
    pub container: String,
    pub target: String,
}

/// Faults a test can inject into a migration, each exercising a real failure path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// Wait this long before entering `phase` (time for a test to kill or cut something).
    PauseBefore { phase: Phase, ms: u64 },
    /// Flip a byte of one image file after its checksum was taken.
    CorruptImage,
    /// Truncate the process' core image before checksumming: CRIU's restore fails on it.
    BreakRestore,
}

/// The phases of a migration, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    Cleanup,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// Source -> target: prepare for this container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub id: String,
    pub container: ContainerRequest,
    pub technique: Technique,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferReply {
    /// Port of the target's CRIU page server (cold), on the target's API address.
    pub page_server_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetPhase {
    Prepared,
    ImagesReceived,
    Restored,
    Committed,
    Aborted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetState {
    pub id: String,
    pub container: String,
    pub phase: TargetPhase,
    #[serde(default)]
    pub lazy: Option<LazyState>,
}

/// Source -> target: restore now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Post-copy: the port of the source's page server (on the address the request came from).
    #[serde(default)]
    pub lazy_page_server_port: Option<u16>,
}

/// Source -> target (pre-copy, hybrid): the source is about to send round `round`
/// (0-based) of pre-dumped pages, or its final dump when `last`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRequest {
    pub round: u32,
    /// The final dump follows: pre-copy sends its pages to this round's page server into the
    /// images directory; hybrid sends none (the rest is pulled after the restore).
    pub last: bool,
    /// Bytes of pages the source sent in the round before; the target checks it has them.
    pub previous_pages_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundReply {
    /// Port of the page server for this round (absent for hybrid's last round).
    pub page_server_port: Option<u16>,
    /// The previous round's page index (`pagemap-*.img`, hex) and the names of its page
    /// files. A lazy final dump (hybrid) reads the index of its parent locally to mark the
    /// pages the target already holds; the pages themselves stay on the target.
    pub previous_index: Vec<IndexFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexFile {
    pub name: String,
    /// File content in hex; absent for page files (created empty on the source).
    pub hex: Option<String>,
}

/// One pre-copy round as the source saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreCopyRound {
    pub round: u32,
    /// Pages the pre-dump sent (dirtied since the round before).
    pub pages: u64,
    pub ms: u64,
}

/// Post-copy progress on the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LazyState {
    /// Every page has arrived (the lazy-pages daemon exited).
    pub done: bool,
    /// It exited successfully (meaningful once done).
    pub ok: bool,
    /// Page faults served from the source.
    pub remote_page_faults: u64,
    /// Pages that arrived from the source (faults and background push).
    pub transferred_pages: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReply {
    pub restore_ms: u64,
    /// Bytes of memory pages that arrived through the page server.
    pub pages_bytes: u64,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The app runs on the target; nothing of it is left on the source.
    Completed,
    /// A phase failed before the commit; the app runs on the source as before.
    RolledBack,
    /// The commit was sent but not confirmed: the target may run the app. The source keeps
    /// its frozen copy (it never resumes it on its own); an operator must decide.
    Unknown,
}

/// Per-phase timings in milliseconds (absent: phase not reached).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub prepare_ms: Option<u64>,
    /// Pre-copy and hybrid: all rounds, while the app ran.
    pub pre_copy_ms: Option<u64>,
    pub freeze_ms: Option<u64>,
    /// CRIU dump; for cold this includes sending every page to the target's page server.
    pub dump_ms: Option<u64>,
    pub transfer_ms: Option<u64>,
    pub restore_ms: Option<u64>,
    pub commit_ms: Option<u64>,
    pub cleanup_ms: Option<u64>,
    /// Post-copy: from the commit until the last page arrived.
    pub lazy_completion_ms: Option<u64>,
    /// From freeze to commit: how long the app could not answer, as the hosts saw it.
    pub frozen_ms: Option<u64>,
    pub total_ms: u64,
}

/// The report of one migration (API and CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationReport {
    pub id: String,
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
    /// Everything between the hosts for this migration (stream + pages).
    pub bytes_on_wire: u64,
    pub dump: Option<DumpStats>,
    /// Pre-copy and hybrid: one entry per round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_copy_rounds: Vec<PreCopyRound>,
    /// Post-copy: page faults the target served from the source.
    pub remote_page_faults: Option<u64>,
    /// Where it failed, and why (outcome rolled_back or unknown).
    pub failed_phase: Option<Phase>,
    pub error: Option<String>,
    /// Where the source kept the dump's images (removed after a completed migration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_dir: Option<PathBuf>,
}
