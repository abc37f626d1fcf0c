//! Live migration of a container from one ferry host to another, as a transaction with a
//! persisted state machine on each side (the rule and the diagrams: `ferry_wire::migration`).
//!
//! - [`Engine`]: one host's migrations, both ways: starts outgoing ones (each driven by its
//!   own thread), answers the channel for incoming ones, recovers both after a restart,
//!   expires uncommitted copies and prunes old records.
//! - [`source`]: the source's side, the relocation path top-down.
//! - [`target`]: the target's side (incoming copies, page servers, the lease).
//! - [`journal`]: the durable records of both sides.
//! - [`technique`]: cold / post-copy / pre-copy / hybrid / auto, and what this kernel allows.
//! - [`stream`]: the image + writable-layer stream with its manifest (sizes, sha256).
//! - [`hooks`]: named points where tests hold a migration to inject a fault.

pub mod hooks;
pub mod journal;
pub mod source;
pub mod stream;
pub mod target;
pub mod technique;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_host_client::HostError;
use ferry_runtime::criu::CriuTls;
use ferry_runtime::{Runtime, RuntimeError};
use ferry_wire::migration::{CheckpointEngine, MigrationId, MigrationView, PageTransport};

pub use ferry_wire::migration::{MigrateRequest, MigrationReport, Technique};

/// Errors of a migration request or a channel call; each maps to one ProblemDetails type.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The request cannot be served (bad technique for this kernel, bad target URL, ...).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Missing or wrong token on the channel.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's identity may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("no migration '{0}' on this host")]
    UnknownMigration(MigrationId),
    #[error("{0}")]
    AlreadyExists(String),
    /// The migration's state does not allow this call.
    #[error("migration {id} is {state}: cannot {action}")]
    WrongState {
        id: MigrationId,
        state: String,
        action: &'static str,
    },
    #[error("this host speaks migration protocol version {ours}, the peer {theirs}: upgrade one of them")]
    ProtocolVersion { ours: u32, theirs: u32 },
    /// The stream or the pages do not match what the source announced.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The stream announces more than this host accepts for the offered container.
    #[error("{0}")]
    TooLarge(String),
    /// The peer host answered with an error, or did not answer.
    #[error(transparent)]
    Peer(#[from] HostError),
    /// The journal could not be written or read: nothing may go on without it.
    #[error("migration journal: {0}")]
    Journal(String),
    #[error("{0}")]
    Io(String),
}

/// What an [`Engine`] is told at start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This host's name (in offers and reports).
    pub host: String,
    /// The API's address: the target's page servers listen there too.
    pub listen_ip: IpAddr,
    /// The lease this host asks of targets for a restored, uncommitted copy.
    pub lease: Duration,
    /// Final records are kept this long, so a peer asking late still gets the answer.
    pub retention: Duration,
    /// Test hooks (`ferry host --test-hooks DIR`); also what allows fault injection.
    pub hooks: hooks::Hooks,
    /// Mutual TLS to the peer hosts (this host's certificate, the CA); `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The same certificates for CRIU's page traffic: with them, pages travel over CRIU's
    /// TLS (see [`ferry_runtime::criu::CriuTls`]); without them, plain.
    pub pages_tls: Option<CriuTls>,
    /// Plain page traffic between hosts that have TLS, when a request asks for it: for
    /// benchmarks that measure what TLS costs (`ferry host --allow-plain-pages`).
    pub allow_plain_pages: bool,
    /// Who drives CRIU when a request does not say (`ferry host --engine`).
    pub engine: CheckpointEngine,
}

impl EngineConfig {
    pub fn new(host: &str, listen_ip: IpAddr) -> EngineConfig {
        EngineConfig {
            host: host.to_string(),
            listen_ip,
            lease: ferry_wire::channel::DEFAULT_LEASE,
            retention: Duration::from_secs(24 * 3600),
            hooks: hooks::Hooks::default(),
            tls: None,
            pages_tls: None,
            allow_plain_pages: false,
            engine: CheckpointEngine::default(),
        }
    }
}

/// One host's migrations, outgoing and incoming.
pub struct Engine {
    rt: Arc<Runtime>,
    cfg: EngineConfig,
    journal: journal::Journal,
    /// Outgoing migrations this daemon drives (or drove): their live records.
    outgoing: Mutex<HashMap<MigrationId, source::Shared>>,
    incoming: target::Incoming,
    /// One HTTP client (one connection pool) for every peer.
    http: reqwest::Client,
    /// The daemon's async runtime: the blocking host clients of the drivers run on it.
    handle: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A secret from the OS's random source: an error, never a weak value, when it fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], MigrationError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| MigrationError::Io(format!("the OS random source failed: {e}")))?;
    Ok(b)
}

/// A channel token: 32 random bytes in hex.
pub fn random_token() -> Result<String, MigrationError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// A fresh migration id.
pub fn random_id() -> Result<MigrationId, MigrationError> {
    Ok(MigrationId::from_random(random_bytes::<8>()?))
}

impl Engine {
    /// Opens the journal, finishes or rolls back what a previous daemon left (in the
    /// background: settling may need the peers) and returns the engine. `handle` is the
    /// daemon's (multi-threaded) tokio runtime.
    pub fn open(
        rt: Arc<Runtime>,
        cfg: EngineConfig,
        handle: tokio::runtime::Handle,
    ) -> Result<Arc<Engine>, MigrationError> {
        let journal = journal::Journal::open(&rt.config().state_dir)?;
        let http = ferry_host_client::http_client(cfg.tls.clone())?;
        let engine = Arc::new(Engine {
            rt,
            cfg,
            journal,
            outgoing: Mutex::new(HashMap::new()),
            incoming: target::Incoming::default(),
            http,
            handle,
        });
        engine.recover_incoming();
        source::recover(&engine);
        Ok(engine)
    }

    /// How a migration's pages travel, `asked` by its request (or offer): over TLS where
    /// this host has TLS files; plain without them, or when asked and allowed (benchmarks).
    fn page_transport(
        &self,
        asked: Option<PageTransport>,
    ) -> Result<PageTransport, MigrationError> {
        match (asked, self.cfg.pages_tls.is_some()) {
            (None | Some(PageTransport::Tls), true) => Ok(PageTransport::Tls),
            (None | Some(PageTransport::Plain), false) => Ok(PageTransport::Plain),
            (Some(PageTransport::Tls), false) => Err(MigrationError::Refused(
                "this host has no TLS files (ferry host --tls-dir): it cannot move pages over TLS"
                    .into(),
            )),
            (Some(PageTransport::Plain), true) if self.cfg.allow_plain_pages => {
                Ok(PageTransport::Plain)
            }
            (Some(PageTransport::Plain), true) => Err(MigrationError::Forbidden(
                "this host moves memory pages over TLS only; plain pages are for benchmarks on \
                 hosts started with --allow-plain-pages"
                    .into(),
            )),
        }
    }

    /// CRIU's TLS files for a migration whose pages travel `pages`.
    fn criu_tls(&self, pages: PageTransport) -> Option<&CriuTls> {
        match pages {
            PageTransport::Tls => self.cfg.pages_tls.as_ref(),
            PageTransport::Plain => None,
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// `GET /ferry/v1/migrations/{id}`.
    pub fn view(&self, id: &MigrationId) -> Result<MigrationView, MigrationError> {
        if let Some(v) = self.outgoing_view(id)? {
            return Ok(MigrationView::Outgoing(v));
        }
        if let Some(v) = self.incoming_view(id)? {
            return Ok(MigrationView::Incoming(v));
        }
        Err(MigrationError::UnknownMigration(id.clone()))
    }

    /// `GET /ferry/v1/migrations`: every record this host keeps, newest first.
    pub fn list(&self) -> Vec<MigrationView> {
        // The live record where this daemon drives the migration (its phase and timings
        // are written down with its next state change only).
        let live = |r: journal::OutgoingRecord| match lock(&self.outgoing).get(&r.id) {
            Some(s) => source::view(&source::live_record(s)),
            None => source::view(&r),
        };
        let mut out: Vec<(u64, MigrationView)> = self
            .journal
            .all_outgoing()
            .into_iter()
            .map(|r| (r.created_at_ms, MigrationView::Outgoing(live(r))))
            .chain(self.journal.all_incoming().into_iter().map(|r| {
                (
                    r.created_at_ms,
                    MigrationView::Incoming(target::view(&r, None)),
                )
            }))
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Periodic work (call every second or so): expire uncommitted incoming copies, retry
    /// what a failed step left (an unpark, a teardown), prune old final records.
    pub fn tick(&self) {
        self.reap_incoming();
        self.prune();
    }

    fn prune(&self) {
        let cutoff = journal::now_ms().saturating_sub(self.cfg.retention.as_millis() as u64);
        for r in self.journal.all_outgoing() {
            if r.state.is_final() && r.updated_at_ms < cutoff {
                lock(&self.outgoing).remove(&r.id);
                self.journal.remove_outgoing(&r.id);
            }
        }
        for r in self.journal.all_incoming() {
            if r.state.is_final() && r.updated_at_ms < cutoff {
                self.incoming.forget(&r.id);
                self.journal.remove_incoming(&r.id);
            }
        }
    }

    /// The daemon stops: every uncommitted incoming copy goes (with its CRIU helpers; the
    /// source sees the migration fail and rolls back). Outgoing migrations before their
    /// commit decision are given `drain` to end; the rest is settled by the next start.
    pub fn shutdown(&self, drain: Duration) {
        self.shutdown_incoming();
        source::drain(self, drain);
    }
}
