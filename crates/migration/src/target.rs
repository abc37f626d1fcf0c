//! The target host's side of a migration: the channel's handlers over a persisted state
//! machine (`prepared -> images_received -> restored -> committed`, or `aborted`; the rule
//! is in `ferry_wire::migration`). Every state is written to the journal before the step
//! the source can observe; a restored copy that is not committed within its lease is
//! removed, so a source that lost contact learns `aborted` and may thaw its original.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use ferry_runtime::criu::{CriuTls, End};
use ferry_runtime::Status;
use ferry_wire::channel::{
    ChannelState, ImagesReply, IndexFile, LazyState, Offer, OfferReply, RestoreOrder, RestoreReply,
    RoundReply, RoundRequest, MAX_LEASE, MIN_LEASE, PAGE_SERVER_WAIT, PREPARE_TIMEOUT,
    PROTOCOL_VERSION,
};
use ferry_wire::migration::{IncomingState, IncomingView, MigrationId, Technique};

use crate::hooks::Point;
use crate::journal::{now_ms, IncomingRecord};
use crate::{lock, stream, Engine, MigrationError};

/// An incoming migration this daemon knows: its record and the helper processes it started.
struct Live {
    rec: IncomingRecord,
    /// The page server of the dump in progress (cold, or the current pre-copy round).
    page_server: Option<Child>,
    /// Post-copy: the daemon pulling pages from the source.
    lazy: Option<Child>,
    /// When the current non-final state expires (the prepare timeout, then the lease).
    deadline: Instant,
}

/// The incoming migrations of this host, by id (loaded from the journal on demand).
#[derive(Default)]
pub struct Incoming {
    live: Mutex<HashMap<MigrationId, Arc<Mutex<Live>>>>,
}

impl Incoming {
    pub(crate) fn forget(&self, id: &MigrationId) {
        lock(&self.live).remove(id);
    }
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn io(e: impl std::fmt::Display) -> MigrationError {
    MigrationError::Io(e.to_string())
}

/// A token worth the name: long, hex, not a constant (a zero-filled buffer is the sign of a
/// random source that failed).
fn check_token(token: &str) -> Result<(), MigrationError> {
    let distinct = {
        let mut b: Vec<u8> = token.bytes().collect();
        b.sort_unstable();
        b.dedup();
        b.len()
    };
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) || distinct < 4 {
        return Err(MigrationError::Unauthorized(
            "a migration token of at least 32 random hex digits is required".into(),
        ));
    }
    Ok(())
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

/// A CRIU page server for one dump, on the API's address (with `tls`, speaking CRIU's TLS
/// only). It exits once its dump is done.
fn start_page_server(
    criu: &Path,
    images: &Path,
    ip: IpAddr,
    tls: Option<&CriuTls>,
) -> Result<(Child, u16), MigrationError> {
    let tls_args = tls.map(|t| t.args(End::Listens)).unwrap_or_default();
    std::fs::create_dir_all(images).map_err(io)?;
    for _ in 0..5 {
        let port = free_port(ip)?;
        let mut child = Command::new(criu)
            .arg("page-server")
            .arg("--images-dir")
            .arg(images)
            .args(["--address", &ip.to_string(), "--port", &port.to_string()])
            .args(["-o", "page-server.log", "-v4"])
            .args(&tls_args)
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
        // Short: the app is frozen while this waits, and the page server usually exits a
        // moment after the images arrive (10 ms here cost cold half of it, on average).
        std::thread::sleep(Duration::from_millis(1));
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

/// The operator's view of an incoming record.
pub(crate) fn view(r: &IncomingRecord, lazy: Option<LazyState>) -> IncomingView {
    IncomingView {
        id: r.id.clone(),
        container: r.container.clone(),
        source: r.source.clone(),
        technique: r.technique,
        state: r.state,
        lazy: lazy.or_else(|| r.lazy.clone()),
        updated_at_ms: r.updated_at_ms,
    }
}

fn kill_child(c: Option<Child>) {
    if let Some(mut c) = c {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Engine {
    /// The live entry of `id`, loaded from the journal if this daemon has not seen it yet.
    fn incoming_entry(&self, id: &MigrationId) -> Result<Arc<Mutex<Live>>, MigrationError> {
        if let Some(m) = lock(&self.incoming.live).get(id) {
            return Ok(m.clone());
        }
        let rec = self
            .journal
            .get_incoming(id)?
            .ok_or_else(|| MigrationError::UnknownMigration(id.clone()))?;
        let live = Arc::new(Mutex::new(Live {
            rec,
            page_server: None,
            lazy: None,
            deadline: Instant::now(),
        }));
        Ok(lock(&self.incoming.live)
            .entry(id.clone())
            .or_insert(live)
            .clone())
    }

    /// The entry of `id` if `token` is its token.
    fn authorized(
        &self,
        id: &MigrationId,
        token: &str,
    ) -> Result<Arc<Mutex<Live>>, MigrationError> {
        let m = self.incoming_entry(id)?;
        if lock(&m).rec.token_sha256 != digest(token) {
            return Err(MigrationError::Unauthorized(format!(
                "wrong token for migration '{id}'"
            )));
        }
        Ok(m)
    }

    /// Moves a record to `next` and writes it down before anything else happens.
    fn set_incoming(&self, m: &mut Live, next: IncomingState) -> Result<(), MigrationError> {
        if !m.rec.state.can_become(next) {
            return Err(MigrationError::WrongState {
                id: m.rec.id.clone(),
                state: m.rec.state.to_string(),
                action: "change to that state",
            });
        }
        let before = m.rec.state;
        m.rec.state = next;
        m.rec.updated_at_ms = now_ms();
        if let Err(e) = self.journal.put_incoming(&m.rec) {
            m.rec.state = before;
            return Err(e);
        }
        tracing::info!(migration = %m.rec.id, container = %m.rec.container, from = %before, to = %next, "incoming migration");
        Ok(())
    }

    fn wrong_state(m: &Live, action: &'static str) -> MigrationError {
        MigrationError::WrongState {
            id: m.rec.id.clone(),
            state: m.rec.state.to_string(),
            action,
        }
    }

    /// `POST /ferry/v1/channel`: records the migration, prepares a parked copy of the
    /// offered container and, for cold migration, a page server on the API's address.
    /// An offer from `caller` (the source's authenticated host name; `None` without TLS),
    /// which must be the source the offer names.
    pub fn offer(
        &self,
        token: &str,
        body: &[u8],
        caller: Option<&str>,
    ) -> Result<OfferReply, MigrationError> {
        // The version first, so a peer of another version gets that, not a parse error.
        let raw: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| MigrationError::Refused(format!("invalid offer: {e}")))?;
        let theirs = raw["protocol_version"].as_u64().unwrap_or(0);
        if theirs != u64::from(PROTOCOL_VERSION) {
            return Err(MigrationError::ProtocolVersion {
                ours: PROTOCOL_VERSION,
                theirs: theirs as u32,
            });
        }
        let offer: Offer = serde_json::from_value(raw)
            .map_err(|e| MigrationError::Refused(format!("invalid offer: {e}")))?;
        check_token(token)?;
        if let Some(caller) = caller.filter(|c| *c != offer.source) {
            return Err(MigrationError::Forbidden(format!(
                "host:{caller} may not offer a migration in the name of host '{}'",
                offer.source
            )));
        }
        let pages = self.page_transport(Some(offer.pages))?;
        if offer.technique == Technique::Auto {
            return Err(MigrationError::Refused(
                "the offer must name the technique the source resolved, not auto".into(),
            ));
        }
        if lock(&self.incoming.live).contains_key(&offer.id)
            || self.journal.get_incoming(&offer.id)?.is_some()
        {
            return Err(MigrationError::AlreadyExists(format!(
                "migration '{}' exists already",
                offer.id
            )));
        }
        let lease = Duration::from_millis(offer.lease_ms).clamp(MIN_LEASE, MAX_LEASE);
        let now = now_ms();
        let rec = IncomingRecord {
            id: offer.id.clone(),
            container: offer.container.name.clone(),
            source: offer.source.clone(),
            token_sha256: digest(token),
            technique: offer.technique,
            pages,
            engine: offer.engine,
            state: IncomingState::Prepared,
            lease_ms: lease.as_millis() as u64,
            created_at_ms: now,
            updated_at_ms: now,
            next_round: 0,
            last_round_started: false,
            expected_pages: None,
            lazy: None,
        };
        self.journal.put_incoming(&rec)?;
        let mut live = Live {
            rec,
            page_server: None,
            lazy: None,
            deadline: Instant::now() + PREPARE_TIMEOUT,
        };
        let prepared = (|| {
            self.rt
                .create_incoming(offer.container, &offer.id, offer.engine)?;
            // Cold: memory arrives through a page server here. Post-copy: it is pulled later.
            // Pre-copy and hybrid: each round asks for its own page server.
            if offer.technique == Technique::Cold {
                let images = self.rt.incoming_dirs(&live.rec.container).images;
                let (child, port) = start_page_server(
                    &self.rt.config().criu,
                    &images,
                    self.cfg.listen_ip,
                    self.criu_tls(pages),
                )?;
                live.page_server = Some(child);
                return Ok(Some(port));
            }
            Ok::<_, MigrationError>(None)
        })();
        let port = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.abort_live(&mut live);
                return Err(e);
            }
        };
        let id = offer.id.clone();
        lock(&self.incoming.live).insert(offer.id, Arc::new(Mutex::new(live)));
        Point::TargetPrepared.reach(&self.cfg.hooks, &id);
        Ok(OfferReply {
            protocol_version: PROTOCOL_VERSION,
            lease_ms: lease.as_millis() as u64,
            page_server_port: port,
        })
    }

    /// Pre-copy and hybrid: checks the previous round arrived whole and starts a page server
    /// for the next, in `rounds/N` with a `parent` link to the round before (CRIU then
    /// stores only the pages dirtied since); the last round goes to the images dir.
    pub fn round(
        &self,
        id: &MigrationId,
        token: &str,
        req: RoundRequest,
    ) -> Result<RoundReply, MigrationError> {
        let m = self.authorized(id, token)?;
        let mut m = lock(&m);
        if !m.rec.technique.has_rounds() {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' is {}, it has no pre-copy rounds",
                m.rec.technique
            )));
        }
        if m.rec.state != IncomingState::Prepared || m.rec.last_round_started {
            return Err(Self::wrong_state(&m, "take a pre-copy round"));
        }
        if req.round != m.rec.next_round || (req.last && req.round == 0) {
            return Err(MigrationError::Refused(format!(
                "migration '{id}' expects round {} (the last one after at least one pre-dump), not {}",
                m.rec.next_round, req.round
            )));
        }
        let dirs = self.rt.incoming_dirs(&m.rec.container);
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
                if m.rec.technique == Technique::Hybrid {
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
            let port = if req.last && m.rec.technique == Technique::Hybrid {
                None
            } else {
                let (child, port) = start_page_server(
                    &self.rt.config().criu,
                    &dir,
                    self.cfg.listen_ip,
                    self.criu_tls(m.rec.pages),
                )?;
                m.page_server = Some(child);
                Some(port)
            };
            m.rec.next_round = req.round + 1;
            m.rec.last_round_started = req.last;
            m.rec.updated_at_ms = now_ms();
            self.journal.put_incoming(&m.rec)?;
            Ok(RoundReply {
                page_server_port: port,
                previous_index,
            })
        })();
        match result {
            Ok(r) => {
                m.deadline = Instant::now() + PREPARE_TIMEOUT;
                Ok(r)
            }
            Err(e) => {
                self.abort_live(&mut m);
                Err(e)
            }
        }
    }

    /// What an incoming container's stream may carry: its CRIU images (bounded by its memory)
    /// and its writable layer (bounded like an image).
    fn stream_limits(&self, container: &str) -> stream::StreamLimits {
        let images = self.rt.images().limits();
        let memory = self
            .rt
            .get(container)
            .ok()
            .and_then(|c| c.request.memory_mib)
            .map_or(images.unpacked_bytes, |mib| mib.saturating_mul(1 << 20));
        stream::StreamLimits {
            bytes: images.unpacked_bytes.saturating_add(memory),
            entries: images.entries,
        }
    }

    /// `PUT .../images`: receives and verifies the stream (a bad stream aborts the migration
    /// and fails the call), restores as `order` says and commits: the source sends the
    /// images only once it recorded `committing`, so one round trip does all three inside
    /// the app's frozen window. A failed restore is the answer `Failed`; a commit that
    /// could not be recorded or made to serve fails the call (the source then asks for the
    /// durable state, and commits again or hears `committed`).
    pub fn receive_images(
        &self,
        id: &MigrationId,
        token: &str,
        input: impl Read,
        order: RestoreOrder,
        peer: IpAddr,
    ) -> Result<ImagesReply, MigrationError> {
        self.receive(id, token, input)?;
        let mut restored = match self.restore(id, token, order, peer) {
            Ok(r) => r,
            Err(e) => {
                return Ok(ImagesReply::Failed {
                    detail: e.to_string(),
                })
            }
        };
        let t = Instant::now();
        self.commit(id, token)?;
        restored.commit_ms = t.elapsed().as_millis() as u64;
        Ok(ImagesReply::Committed(restored))
    }

    fn receive(
        &self,
        id: &MigrationId,
        token: &str,
        input: impl Read,
    ) -> Result<(), MigrationError> {
        let m = self.authorized(id, token)?;
        let mut m = lock(&m);
        if m.rec.state != IncomingState::Prepared {
            return Err(Self::wrong_state(&m, "receive images"));
        }
        let dirs = self.rt.incoming_dirs(&m.rec.container);
        let limits = self.stream_limits(&m.rec.container);
        let received =
            stream::receive_stream(input, &dirs.images, &dirs.upper, limits).and_then(|manifest| {
                m.rec.expected_pages = Some(manifest.pages_bytes);
                self.set_incoming(&mut m, IncomingState::ImagesReceived)
            });
        if let Err(e) = received {
            self.abort_live(&mut m);
            return Err(e);
        }
        Point::TargetImagesReceived.reach(&self.cfg.hooks, id);
        Ok(())
    }

    /// Checks the pages arrived whole and restores the copy, still parked (a failure aborts
    /// the migration). Post-copy pages are pulled from `peer` (the source) at the order's port.
    fn restore(
        &self,
        id: &MigrationId,
        token: &str,
        order: RestoreOrder,
        peer: IpAddr,
    ) -> Result<RestoreReply, MigrationError> {
        let m = self.authorized(id, token)?;
        let mut m = lock(&m);
        if m.rec.state != IncomingState::ImagesReceived {
            return Err(Self::wrong_state(&m, "restore"));
        }
        let result = (|| {
            if m.rec.technique.has_rounds() && !m.rec.last_round_started {
                return Err(MigrationError::Refused(format!(
                    "migration '{id}': {} restores only after its last round",
                    m.rec.technique
                )));
            }
            let pushed = m.page_server.is_some();
            wait_page_server(m.page_server.take())?;
            let images = self.rt.incoming_dirs(&m.rec.container).images;
            let pages = stream::pages_bytes(&images);
            let expected = m.rec.expected_pages.unwrap_or(0);
            if pushed && pages != expected {
                return Err(MigrationError::Integrity(format!(
                    "memory pages: received {pages} bytes, the source dumped {expected}"
                )));
            }
            let lazy_from = order
                .lazy_page_server_port
                .map(|p| std::net::SocketAddr::new(peer, p));
            let tls = self.criu_tls(m.rec.pages);
            let (restore_ms, lazy) =
                self.rt
                    .restore_incoming(&m.rec.container, id, lazy_from, tls, m.rec.engine)?;
            m.lazy = lazy;
            self.set_incoming(&mut m, IncomingState::Restored)?;
            m.deadline = Instant::now() + Duration::from_millis(m.rec.lease_ms);
            Ok(RestoreReply {
                restore_ms,
                commit_ms: 0,
                pages_bytes: pages,
            })
        })();
        match result {
            Ok(r) => {
                Point::TargetRestored.reach(&self.cfg.hooks, id);
                Ok(r)
            }
            Err(e) => {
                self.abort_live(&mut m);
                Err(e)
            }
        }
    }

    /// The commit, from the images call or (`POST .../commit`) from a source settling a
    /// commit whose answer it did not hear: `committed` is written first, then the copy
    /// becomes reachable. Idempotent.
    pub fn commit(&self, id: &MigrationId, token: &str) -> Result<ChannelState, MigrationError> {
        let m = self.authorized(id, token)?;
        let mut m = lock(&m);
        match m.rec.state {
            IncomingState::Committed => {}
            IncomingState::Restored => {
                self.set_incoming(&mut m, IncomingState::Committed)?;
                Point::TargetCommitted.reach(&self.cfg.hooks, id);
                // Should this fail, the record says committed all the same (the source may
                // already have heard it): `tick` retries until the copy serves.
                if let Err(e) = self.rt.commit_incoming(&m.rec.container, id) {
                    tracing::error!(migration = %id, container = %m.rec.container, error = %e,
                        "COMMITTED BUT NOT SERVING: the copy could not be made reachable; retrying");
                    return Err(e.into());
                }
                Point::TargetServing.reach(&self.cfg.hooks, id);
            }
            _ => return Err(Self::wrong_state(&m, "commit")),
        }
        Ok(self.state_of(&mut m))
    }

    /// `POST .../abort`: removes the uncommitted copy (`aborted` written first). Idempotent;
    /// refused once committed.
    pub fn abort(&self, id: &MigrationId, token: &str) -> Result<ChannelState, MigrationError> {
        let m = self.authorized(id, token)?;
        let mut m = lock(&m);
        match m.rec.state {
            IncomingState::Committed => Err(Self::wrong_state(&m, "abort")),
            IncomingState::Aborted => Ok(self.state_of(&mut m)),
            _ => {
                self.abort_live(&mut m);
                if m.rec.state != IncomingState::Aborted {
                    return Err(MigrationError::Journal(format!(
                        "migration {id}: 'aborted' could not be recorded; the copy stays parked"
                    )));
                }
                Ok(self.state_of(&mut m))
            }
        }
    }

    /// `GET .../channel/{id}`: the durable answer (and post-copy progress).
    pub fn channel_state(
        &self,
        id: &MigrationId,
        token: &str,
    ) -> Result<ChannelState, MigrationError> {
        let m = self.authorized(id, token)?;
        let mut m = lock(&m);
        Ok(self.state_of(&mut m))
    }

    pub(crate) fn incoming_view(
        &self,
        id: &MigrationId,
    ) -> Result<Option<IncomingView>, MigrationError> {
        match self.incoming_entry(id) {
            Ok(m) => {
                let mut m = lock(&m);
                let lazy = self.lazy_state(&mut m);
                Ok(Some(view(&m.rec, lazy)))
            }
            Err(MigrationError::UnknownMigration(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn state_of(&self, m: &mut Live) -> ChannelState {
        let lazy = self.lazy_state(m);
        ChannelState {
            id: m.rec.id.clone(),
            container: m.rec.container.clone(),
            state: m.rec.state,
            lazy,
        }
    }

    /// Post-copy progress; once the lazy-pages daemon is done, its outcome is recorded. A
    /// daemon that restarted reads it from the lazy-pages log (it cannot wait for a child of
    /// its predecessor).
    fn lazy_state(&self, m: &mut Live) -> Option<LazyState> {
        if !m.rec.technique.is_lazy() || m.rec.state == IncomingState::Aborted {
            return None;
        }
        if let Some(l) = &m.rec.lazy {
            return Some(l.clone());
        }
        let name = m.rec.container.clone();
        let exited = match m.lazy.as_mut() {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.success()),
                _ => None,
            },
            None if m.rec.state == IncomingState::Committed => self.rt.lazy_outcome_from_log(&name),
            None => None,
        };
        let stats = self.rt.lazy_stats(&name);
        let state = LazyState {
            done: exited.is_some(),
            ok: exited.unwrap_or(false),
            remote_page_faults: stats.faults,
            transferred_pages: stats.pages,
            faults_first_100ms: stats.faults_first_100ms,
        };
        if let Some(ok) = exited {
            m.lazy = None;
            if !ok {
                tracing::error!(migration = %m.rec.id, container = %name,
                    "POST-COPY FAILED: the lazy-pages daemon ended before every page arrived; the app here misses memory (unrecoverable if the source is gone)");
            }
            m.rec.lazy = Some(state.clone());
            m.rec.updated_at_ms = now_ms();
            if let Err(e) = self.journal.put_incoming(&m.rec) {
                tracing::error!("{e}");
            }
        }
        Some(state)
    }

    /// Aborts an uncommitted migration here: `aborted` is written first, then the helpers
    /// are killed and the copy removed. If `aborted` cannot be written, nothing is removed
    /// (the copy stays parked and unreachable; the next tick tries again).
    fn abort_live(&self, m: &mut Live) {
        if m.rec.state != IncomingState::Aborted {
            if let Err(e) = self.set_incoming(m, IncomingState::Aborted) {
                tracing::error!(migration = %m.rec.id, error = %e, "cannot record the abort; the copy stays parked");
                return;
            }
        }
        kill_child(m.page_server.take());
        kill_child(m.lazy.take());
        if let Err(e) = self.rt.abort_incoming(&m.rec.container, &m.rec.id) {
            tracing::error!(container = %m.rec.container, error = %e, "abort of incoming migration incomplete; retrying");
        }
    }

    fn all_live(&self) -> Vec<Arc<Mutex<Live>>> {
        lock(&self.incoming.live).values().cloned().collect()
    }

    /// Expires uncommitted copies, retries an unpark or a removal that failed, and forgets
    /// (from memory; the journal keeps them) final entries that need nothing more.
    pub(crate) fn reap_incoming(&self) {
        let mut idle = Vec::new();
        for m in self.all_live() {
            let Ok(mut m) = m.try_lock() else { continue }; // busy: it is making progress
            let container = self.rt.find(&m.rec.container);
            let held = container.as_ref().is_some_and(|c| {
                c.status == Status::Incoming && c.migration.as_ref() == Some(&m.rec.id)
            });
            match m.rec.state {
                s if !s.is_final() && Instant::now() > m.deadline => {
                    tracing::warn!(migration = %m.rec.id, container = %m.rec.container, state = %s,
                        "incoming migration expired; removing the uncommitted copy");
                    self.abort_live(&mut m);
                }
                IncomingState::Committed if held => {
                    if let Err(e) = self.rt.commit_incoming(&m.rec.container, &m.rec.id) {
                        tracing::error!(migration = %m.rec.id, error = %e, "committed copy still not serving");
                    }
                }
                IncomingState::Aborted if held => self.abort_live(&mut m),
                s if s.is_final() && m.lazy.is_none() && m.page_server.is_none() => {
                    let lazy_pending = m.rec.technique.is_lazy()
                        && s == IncomingState::Committed
                        && m.rec.lazy.is_none();
                    if !lazy_pending {
                        idle.push(m.rec.id.clone());
                    }
                }
                _ => {}
            }
        }
        let mut live = lock(&self.incoming.live);
        for id in idle {
            live.remove(&id);
        }
    }

    /// At start: what a previous daemon left. Uncommitted copies are aborted (`aborted`
    /// written first); committed ones are made to serve; copies without a record (a crash
    /// before it was written) go.
    pub(crate) fn recover_incoming(&self) {
        let records = self.journal.all_incoming();
        for rec in &records {
            let mut live = Live {
                rec: rec.clone(),
                page_server: None,
                lazy: None,
                deadline: Instant::now(),
            };
            match rec.state {
                IncomingState::Committed => {
                    if let Err(e) = self.rt.commit_incoming(&rec.container, &rec.id) {
                        tracing::error!(migration = %rec.id, error = %e, "committed copy not serving after restart; retrying");
                    }
                }
                IncomingState::Aborted => {
                    if let Err(e) = self.rt.abort_incoming(&rec.container, &rec.id) {
                        tracing::error!(migration = %rec.id, error = %e, "aborted copy not removed; retrying");
                    }
                }
                s => {
                    tracing::warn!(migration = %rec.id, container = %rec.container, state = %s,
                        "incoming migration interrupted by a restart: removing the uncommitted copy");
                    self.abort_live(&mut live);
                }
            }
            lock(&self.incoming.live).insert(rec.id.clone(), Arc::new(Mutex::new(live)));
        }
        for c in self.rt.list().unwrap_or_default() {
            let Some(id) = c.migration.clone().filter(|_| c.status == Status::Incoming) else {
                continue;
            };
            if !records.iter().any(|r| r.id == id) {
                tracing::warn!(container = %c.name, migration = %id, "parked copy without a record: removed");
                if let Err(e) = self.rt.abort_incoming(&c.name, &id) {
                    tracing::error!(container = %c.name, error = %e, "cannot remove the parked copy");
                }
            }
        }
    }

    /// The daemon stops: uncommitted copies go with their helpers (separate processes that
    /// would otherwise wait for the source forever). Committed copies stay: a post-copy app
    /// still needs its lazy-pages daemon.
    pub(crate) fn shutdown_incoming(&self) {
        for m in self.all_live() {
            let mut m = lock(&m);
            if !m.rec.state.is_final() {
                tracing::warn!(container = %m.rec.container, "daemon stops: removing the uncommitted incoming copy");
                self.abort_live(&mut m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_long_random_hex() {
        assert!(check_token(&crate::random_token().unwrap()).is_ok());
        assert!(
            check_token(&"0".repeat(64)).is_err(),
            "a zero-filled buffer"
        );
        assert!(check_token("abcdef0123").is_err(), "too short");
        assert!(check_token(&"zz".repeat(20)).is_err(), "not hex");
    }
}
