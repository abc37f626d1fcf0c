//! The migration channel between two `ferry host` APIs. The source calls the target; every
//! call carries `Authorization: Bearer <token>` (the migration's token, given in the offer).
//!
//! | call | body | what the target does |
//! |---|---|---|
//! | `POST /ferry/v1/channel` | [`Offer`] | records the migration, prepares the parked copy, a page server for cold; [`OfferReply`] |
//! | `POST /ferry/v1/channel/{id}/rounds` | [`RoundRequest`] | pre-copy/hybrid: checks the last round's pages, a page server for the next; [`RoundReply`] |
//! | `PUT /ferry/v1/channel/{id}/images[?lazy_page_server_port=P]` | tar stream | writes each image as it arrives (the call opens before the dump, images come as CRIU closes them), then the rest, the writable layer and last the manifest, which it checks everything against; then waits for the pages, checks their size, restores, records `committed` and makes the copy reachable: one call for all, whose manifest is sent once the source recorded `committing`; [`ImagesReply`] |
//! | `POST /ferry/v1/channel/{id}/commit` | - | a restored copy whose commit was not recorded (settling): records `committed`, makes the copy reachable; [`ChannelState`] |
//! | `POST /ferry/v1/channel/{id}/abort` | - | records `aborted`, removes the uncommitted copy; [`ChannelState`] |
//! | `GET /ferry/v1/channel/{id}` | - | [`ChannelState`]: the target's durable answer |
//!
//! The offer names [`PROTOCOL_VERSION`]; a target speaking another one answers 409 with both
//! versions in the detail (problem type `protocol-version`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::container::ContainerRequest;
use crate::migration::{CheckpointEngine, IncomingState, MigrationId, PageTransport, Technique};

/// Version of the host API and migration channel. Bump it for any change a peer of the old
/// version would misread.
pub const PROTOCOL_VERSION: u32 = 6;

/// Header carrying the per-migration token.
pub const AUTH_HEADER: &str = "authorization";

/// Deadline of a control message (offer, round, commit, abort, state): small, answered at
/// once by a healthy peer, so a vanished one is noticed in seconds rather than TCP's minutes.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a restored, uncommitted copy waits for the commit, unless the offer asks for
/// another lease (within [`MIN_LEASE`]..=[`MAX_LEASE`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const MIN_LEASE: Duration = Duration::from_secs(2);
pub const MAX_LEASE: Duration = Duration::from_secs(600);

/// How long a prepared migration waits for its images and the restore order.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the target's restore waits for the page server to finish receiving pages.
pub const PAGE_SERVER_WAIT: Duration = Duration::from_secs(60);

/// Source -> target: prepare for this container.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Offer {
    pub protocol_version: u32,
    pub id: MigrationId,
    /// The source host's name (recorded by the target, shown to operators).
    pub source: String,
    pub container: ContainerRequest,
    /// The resolved technique (never `auto`).
    pub technique: Technique,
    /// The lease the source counts on for a restored, uncommitted copy, in milliseconds.
    pub lease_ms: u64,
    /// How the pages travel: the target's page servers and lazy-pages daemon speak the same.
    pub pages: PageTransport,
    /// Who drives CRIU: the target restores with the same engine.
    pub engine: CheckpointEngine,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OfferReply {
    pub protocol_version: u32,
    /// The lease the target applies (the offer's, bounded).
    pub lease_ms: u64,
    /// Port of the target's CRIU page server (cold), on the target's API address.
    pub page_server_port: Option<u16>,
}

/// Source -> target (pre-copy, hybrid): the source is about to send round `round`
/// (0-based) of pre-dumped pages, or its final dump when `last`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoundRequest {
    pub round: u32,
    /// The final dump follows: pre-copy sends its pages to this round's page server into the
    /// images directory; hybrid sends none (the rest is pulled after the restore).
    pub last: bool,
    /// Bytes of pages the source sent in the round before; the target checks it has them.
    pub previous_pages_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoundReply {
    /// Port of the page server for this round (absent for hybrid's last round).
    pub page_server_port: Option<u16>,
    /// The previous round's page index (`pagemap-*.img`, hex) and the names of its page
    /// files. A lazy final dump (hybrid) reads the index of its parent locally to mark the
    /// pages the target already holds; the pages themselves stay on the target.
    pub previous_index: Vec<IndexFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndexFile {
    pub name: String,
    /// File content in hex; absent for page files (created empty on the source).
    pub hex: Option<String>,
}

/// Source -> target, the query of the images call: how to restore once they are in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreOrder {
    /// Post-copy: the port of the source's page server (on the address the request came from).
    #[serde(default)]
    pub lazy_page_server_port: Option<u16>,
}

/// Target -> source, the answer to the images call: they arrived whole (else the call
/// fails), then the restore either worked, and the copy is committed, or did not, so that
/// the source tells a failed restore from a failed transfer. The source sends the stream's
/// manifest (and its end) only once it recorded `committing`: a restore that works is the
/// commit, with no round trip more inside the app's frozen window.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "restore", rename_all = "snake_case")]
pub enum ImagesReply {
    /// The copy is restored, `committed` is recorded and it serves.
    Committed(RestoreReply),
    /// The restore failed and the copy is removed: the migration is aborted here.
    Failed { detail: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreReply {
    pub restore_ms: u64,
    /// The commit after the restore: the durable record and the unpark.
    pub commit_ms: u64,
    /// Bytes of memory pages that arrived through the page server.
    pub pages_bytes: u64,
}

/// Post-copy progress on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LazyState {
    /// Every page has arrived, or the lazy-pages daemon gave up (see `ok`).
    pub done: bool,
    /// It ended with every page (meaningful once done).
    pub ok: bool,
    /// Page faults served from the source.
    pub remote_page_faults: u64,
    /// Pages that arrived from the source (faults and background push).
    pub transferred_pages: u64,
    /// Faults in the first 100 ms after the restore (where the target's CRIU logs it).
    #[serde(default)]
    pub faults_first_100ms: Option<u64>,
}

/// The target's durable answer about one migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelState {
    pub id: MigrationId,
    pub container: String,
    pub state: IncomingState,
    #[serde(default)]
    pub lazy: Option<LazyState>,
}

/// Source -> `on_commit` URL: the app now serves on the target.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Committed {
    pub migration: MigrationId,
    pub container: String,
    pub target: String,
}
