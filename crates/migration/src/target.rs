//! The target host's side: incoming migrations, each with its token, its page server and a
//! deadline. A copy that was restored but not committed within [`LEASE`] is removed, so a
//! source that lost contact can safely thaw its original: the copy here never served.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_runtime::Runtime;
use sha2::{Digest, Sha256};

use crate::protocol::{
    IndexFile, LazyState, Offer, OfferReply, RestoreReply, RestoreRequest, RoundReply,
    RoundRequest, TargetPhase, TargetState,
};
use crate::stream;
use crate::technique::Technique;
use crate::MigrationError;

/// How long a restored, uncommitted copy waits for the source's commit.
pub const LEASE: Duration = Duration::from_secs(30);
/// How long a prepared migration waits for its images and restore.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the restore waits for the page server to finish receiving pages.
const PAGE_SERVER_WAIT: Duration = Duration::from_secs(120);

struct IncomingMigration {
    /// sha256 of the token (compared as digests, never as the secret itself).
    token_digest: [u8; 32],
    container: String,
    technique: Technique,
    phase: TargetPhase,
    /// The page server of the dump in progress (cold, or the current pre-copy round).
    page_server: Option<Child>,
    /// Pre-copy and hybrid: the round the source may start next, and whether the final
    /// dump was announced.
    next_round: u32,
    last_round_started: bool,
    /// Post-copy: the daemon pulling pages from the source, and how it ended.
    lazy: Option<Child>,
    lazy_exit: Option<bool>,
    expected_pages: Option<u64>,
    deadline: Instant,
}

impl IncomingMigration {
    /// A copy exists here (or is being prepared) that never served: it may be removed.
    fn uncommitted(&self) -> bool {
        matches!(
            self.phase,
            TargetPhase::Prepared | TargetPhase::ImagesReceived | TargetPhase::Restored
        )
    }
}

/// All incoming migrations of this host.
#[derive(Default)]
pub struct Incoming {
    migrations: Mutex<HashMap<String, Arc<Mutex<IncomingMigration>>>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn io(e: impl std::fmt::Display) -> MigrationError {
    MigrationError::Io(e.to_string())
}

/// Whether something listens on TCP `port` in this network namespace (/proc/net/tcp*).
fn listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| format!("{a} ").ends_with(&needle))
                    && l.split_whitespace().nth(3) == Some("0A")
            })
    })
}

fn free_port(ip: IpAddr) -> Result<u16, MigrationError> {
    let l = std::net::TcpListener::bind((ip, 0)).map_err(io)?;
    Ok(l.local_addr().map_err(io)?.port())
}

fn start_page_server(
    criu: &Path,
    images: &Path,
    ip: IpAddr,
) -> Result<(Child, u16), MigrationError> {
    std::fs::create_dir_all(images).map_err(io)?;
    for _ in 0..5 {
        let port = free_port(ip)?;
        let mut child = Command::new(criu)
            .arg("page-server")
            .arg("--images-dir")
            .arg(images)
            .args(["--address", &ip.to_string(), "--port", &port.to_string()])
            .args(["-o", "page-server.log", "-v4"])
            .arg("--work-dir")
            .arg(images.parent().unwrap_or(images))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| MigrationError::Io(format!("start criu page-server: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if listening(port) {
                return Ok((child, port));
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    Err(MigrationError::Io(
        "criu page-server did not start listening".into(),
    ))
}

/// Waits until a page server has received its dump and exited; an error unless it
/// finished cleanly.
fn wait_page_server(ps: Option<Child>) -> Result<(), MigrationError> {
    let Some(mut ps) = ps else { return Ok(()) };
    let deadline = Instant::now() + PAGE_SERVER_WAIT;
    let status = loop {
        if let Some(s) = ps.try_wait().map_err(io)? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = ps.kill();
            let _ = ps.wait();
            return Err(MigrationError::Integrity(
                "the page server never finished receiving pages".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return Err(MigrationError::Integrity(format!(
            "the page server failed ({status})"
        )));
    }
    Ok(())
}

/// A round's page index for the source's lazy final dump: `pagemap-*.img` with content, and
/// the names of the `pages-*.img` files (the source needs them to exist, not their pages).
fn page_index(dir: &Path) -> Result<Vec<IndexFile>, MigrationError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("pagemap-") && name.ends_with(".img") {
            let bytes = std::fs::read(e.path()).map_err(io)?;
            out.push(IndexFile {
                name,
                hex: Some(hex::encode(bytes)),
            });
        } else if name.starts_with("pages-") && name.ends_with(".img") {
            out.push(IndexFile { name, hex: None });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

impl Incoming {
    fn get(&self, id: &str, token: &str) -> Result<Arc<Mutex<IncomingMigration>>, MigrationError> {
        let m = self
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| MigrationError::UnknownMigration(id.to_string()))?;
        let ok = m.lock().unwrap_or_else(|p| p.into_inner()).token_digest == digest(token);
        if !ok {
            return Err(MigrationError::Unauthorized(format!(
                "wrong token for migration '{id}'"
            )));
        }
        Ok(m)
    }

    /// Prepares a parked copy of the offered container and, for cold migration, a page
    /// server on `listen_ip`.
    pub fn offer(
        &self,
        rt: &Runtime,
        token: &str,
        offer: Offer,
        listen_ip: IpAddr,
    ) -> Result<OfferReply, MigrationError> {
        if token.len() < 16 {
            return Err(MigrationError::Unauthorized(
                "a migration token of at least 16 characters is required".into(),
            ));
        }
        if self
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&offer.id)
        {
            return Err(MigrationError::Refused(format!(
                "migration '{}' exists already",
                offer.id
            )));
        }
        let name = offer.container.name.clone();
        rt.create_incoming(offer.container, &offer.id)?;
        let images = rt.incoming_dirs(&name).images;
        // Cold: memory arrives through a page server here. Post-copy: it is pulled later.
        // Pre-copy and hybrid: each round asks for its own page server.
        let page_server = if offer.technique != Technique::Cold {
            None
        } else {
            match start_page_server(&rt.config().criu, &images, listen_ip) {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = rt.abort_incoming(&name);
                    return Err(e);
                }
            }
        };
        let port = page_server.as_ref().map(|(_, p)| *p);
        let m = IncomingMigration {
            token_digest: digest(token),
            container: name,
            technique: offer.technique,
            phase: TargetPhase::Prepared,
            page_server: page_server.map(|(c, _)| c),
            next_round: 0,
            last_round_started: false,
            lazy: None,
            lazy_exit: None,
            expected_pages: None,
            deadline: Instant::now() + PREPARE_TIMEOUT,
        };
        self.migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(offer.id, Arc::new(Mutex::new(m)));
        Ok(OfferReply {
            page_server_port: port,
        })
    }

    /// Pre-copy and hybrid: checks the previous round arrived whole and starts a page server
    /// for the next, in `rounds/N` with a `parent` link to the round before (CRIU then
    /// stores only the pages dirtied since); the last round goes to the images dir.
    pub fn round(
        &self,
        rt: &Runtime,
        id: &str,
        token: &str,
        req: RoundRequest,
        listen_ip: IpAddr,
    ) -> Result<RoundReply, MigrationError> {
        let m = self.get(id, token)?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(m.technique, Technique::PreCopy | Technique::Hybrid) {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' is {}, it has no pre-copy rounds",
                m.technique
            )));
        }
        if m.phase != TargetPhase::Prepared || m.last_round_started {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' is {:?}, not expecting a round",
                m.phase
            )));
        }
        if req.round != m.next_round || (req.last && req.round == 0) {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' expects round {} (the last one after at least one pre-dump), not {}",
                m.next_round, req.round
            )));
        }
        let dirs = rt.incoming_dirs(&m.container);
        let result = (|| {
            let mut previous_index = Vec::new();
            if req.round > 0 {
                // The next round builds on this one: every page of it must be here.
                let prev = dirs.rounds.join((req.round - 1).to_string());
                wait_page_server(m.page_server.take())?;
                let got = stream::pages_bytes(&prev);
                if Some(got) != req.previous_pages_bytes {
                    return Err(MigrationError::Integrity(format!(
                        "pre-copy round {}: received {got} bytes of pages, the source sent {:?}",
                        req.round - 1,
                        req.previous_pages_bytes
                    )));
                }
                if m.technique == Technique::Hybrid {
                    previous_index = page_index(&prev)?;
                }
            }
            let (dir, parent) = if req.last {
                (dirs.images.clone(), format!("../rounds/{}", req.round - 1))
            } else {
                (
                    dirs.rounds.join(req.round.to_string()),
                    format!("../{}", req.round.wrapping_sub(1)),
                )
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            if req.round > 0 {
                std::os::unix::fs::symlink(&parent, dir.join("parent")).map_err(io)?;
            }
            // Hybrid's final dump sends no pages: they are pulled after the restore.
            let port = if req.last && m.technique == Technique::Hybrid {
                None
            } else {
                let (child, port) = start_page_server(&rt.config().criu, &dir, listen_ip)?;
                m.page_server = Some(child);
                Some(port)
            };
            Ok(RoundReply {
                page_server_port: port,
                previous_index,
            })
        })();
        match result {
            Ok(r) => {
                m.next_round = req.round + 1;
                m.last_round_started = req.last;
                m.deadline = Instant::now() + PREPARE_TIMEOUT;
                Ok(r)
            }
            Err(e) => {
                self.abort_locked(rt, &mut m);
                Err(e)
            }
        }
    }

    /// Receives and verifies the stream. A bad stream aborts the migration here.
    pub fn receive_images(
        &self,
        rt: &Runtime,
        id: &str,
        token: &str,
        input: impl Read,
    ) -> Result<(), MigrationError> {
        let m = self.get(id, token)?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        if m.phase != TargetPhase::Prepared {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' is {:?}, not expecting images",
                m.phase
            )));
        }
        let dirs = rt.incoming_dirs(&m.container);
        match stream::receive_stream(input, &dirs.images, &dirs.upper) {
            Ok(manifest) => {
                m.expected_pages = Some(manifest.pages_bytes);
                m.phase = TargetPhase::ImagesReceived;
                Ok(())
            }
            Err(e) => {
                self.abort_locked(rt, &mut m);
                Err(e)
            }
        }
    }

    /// Checks the pages arrived whole and restores the copy (still parked).
    pub fn restore(
        &self,
        rt: &Runtime,
        id: &str,
        token: &str,
        req: RestoreRequest,
        peer: IpAddr,
    ) -> Result<RestoreReply, MigrationError> {
        let m = self.get(id, token)?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        if m.phase != TargetPhase::ImagesReceived {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' is {:?}, cannot restore",
                m.phase
            )));
        }
        let result = (|| {
            if matches!(m.technique, Technique::PreCopy | Technique::Hybrid)
                && !m.last_round_started
            {
                return Err(MigrationError::Refused(format!(
                    "migration '{id}': {} restores only after its last round",
                    m.technique
                )));
            }
            let pushed = m.page_server.is_some();
            wait_page_server(m.page_server.take())?;
            let images = rt.incoming_dirs(&m.container).images;
            let pages = stream::pages_bytes(&images);
            let expected = m.expected_pages.unwrap_or(0);
            if pushed && pages != expected {
                return Err(MigrationError::Integrity(format!(
                    "memory pages: received {pages} bytes, the source dumped {expected}"
                )));
            }
            // Post-copy: pages are pulled from the host that asked for the restore.
            let lazy_from = req
                .lazy_page_server_port
                .map(|p| std::net::SocketAddr::new(peer, p));
            let (restore_ms, lazy) = rt.restore_incoming(&m.container, lazy_from)?;
            m.lazy = lazy;
            Ok(RestoreReply {
                restore_ms,
                pages_bytes: pages,
            })
        })();
        match result {
            Ok(r) => {
                m.phase = TargetPhase::Restored;
                m.deadline = Instant::now() + LEASE;
                Ok(r)
            }
            Err(e) => {
                self.abort_locked(rt, &mut m);
                Err(e)
            }
        }
    }

    /// The source committed: the copy becomes reachable. Idempotent.
    pub fn commit(&self, rt: &Runtime, id: &str, token: &str) -> Result<(), MigrationError> {
        let m = self.get(id, token)?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        match m.phase {
            TargetPhase::Committed => Ok(()),
            TargetPhase::Restored => {
                rt.commit_incoming(&m.container)?;
                m.phase = TargetPhase::Committed;
                Ok(())
            }
            other => Err(MigrationError::Refused(format!(
                "migration '{id}' is {other:?}, cannot commit"
            ))),
        }
    }

    pub fn abort(&self, rt: &Runtime, id: &str, token: &str) -> Result<(), MigrationError> {
        let m = self.get(id, token)?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        if m.phase == TargetPhase::Committed {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' is committed; it cannot be aborted"
            )));
        }
        self.abort_locked(rt, &mut m);
        Ok(())
    }

    fn abort_locked(&self, rt: &Runtime, m: &mut IncomingMigration) {
        for mut child in [m.page_server.take(), m.lazy.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if m.phase != TargetPhase::Aborted {
            if let Err(e) = rt.abort_incoming(&m.container) {
                tracing::error!(container = %m.container, error = %e, "abort of incoming migration incomplete");
            }
        }
        m.phase = TargetPhase::Aborted;
    }

    /// Post-copy progress; reaps the lazy-pages daemon once it exited.
    fn lazy_state(rt: &Runtime, m: &mut IncomingMigration) -> Option<LazyState> {
        if let Some(child) = m.lazy.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                m.lazy_exit = Some(status.success());
                m.lazy = None;
                if !status.success() {
                    tracing::error!(container = %m.container,
                        "post-copy: the lazy-pages daemon failed; the app here may miss memory pages (unrecoverable if the source is gone)");
                }
            }
        }
        if m.lazy.is_none() && m.lazy_exit.is_none() {
            return None;
        }
        let (remote_page_faults, transferred_pages) = rt.lazy_stats(&m.container);
        Some(LazyState {
            done: m.lazy_exit.is_some(),
            ok: m.lazy_exit.unwrap_or(false),
            remote_page_faults,
            transferred_pages,
        })
    }

    pub fn state(
        &self,
        rt: &Runtime,
        id: &str,
        token: &str,
    ) -> Result<TargetState, MigrationError> {
        let m = self.get(id, token)?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        let lazy = Self::lazy_state(rt, &mut m);
        Ok(TargetState {
            id: id.to_string(),
            container: m.container.clone(),
            phase: m.phase,
            lazy,
        })
    }

    fn all(&self) -> Vec<Arc<Mutex<IncomingMigration>>> {
        self.migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The daemon stops: every uncommitted copy goes, with its page server or lazy-pages
    /// daemon (separate processes that would otherwise wait for the source forever). The
    /// source sees the migration fail and rolls back. Committed copies stay: a post-copy
    /// app still needs its lazy-pages daemon.
    pub fn shutdown(&self, rt: &Runtime) {
        for m in self.all() {
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            if m.uncommitted() {
                tracing::warn!(container = %m.container, "daemon stops: removing the uncommitted incoming copy");
                self.abort_locked(rt, &mut m);
            }
        }
    }

    /// Removes uncommitted copies whose deadline passed (call periodically).
    pub fn reap(&self, rt: &Runtime) {
        for m in self.all() {
            let Ok(mut m) = m.try_lock() else { continue }; // busy: it is making progress
            if m.uncommitted() && Instant::now() > m.deadline {
                tracing::warn!(container = %m.container, phase = ?m.phase, "incoming migration expired; removing the uncommitted copy");
                self.abort_locked(rt, &mut m);
            }
        }
    }
}
