//! The source host's side of a migration, top-down:
//!
//! ```text
//! prepare   offer the container to the target (it prepares a parked copy and a page server)
//! pre-copy  (pre-copy, hybrid) rounds of pre-dumps while the app runs, each sending the
//!           pages dirtied since the round before to a page server on the target
//! freeze    park the app's network, freeze its processes          <- downtime starts
//! dump      CRIU dump, memory pages straight to the target's page server (post-copy and
//!           hybrid: none, they are pulled later); the original stays frozen
//! transfer  stream the other images and the writable layer, with sizes and sha256
//! restore   the target checks everything and restores, still parked
//! commit    point of no return: the target unparks and serves     <- downtime ends
//! cleanup   the frozen original and its namespace are removed here
//! ```
//! Any failure before the commit rolls back: the target drops its copy, the original thaws
//! and serves again with its state as it was. A commit whose answer is lost is settled by
//! asking the target; if it cannot be reached, the outcome is `unknown` and the frozen
//! original is kept, never resumed on a guess (two copies must never serve at once).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_runtime::{criu, Runtime, RuntimeError};

use crate::protocol::{
    Fault, MigrateRequest, MigrationReport, Offer, OfferReply, Outcome, Phase, PreCopyRound,
    RestoreReply, RestoreRequest, RoundReply, RoundRequest, TargetPhase, TargetState, Timings,
    AUTH_HEADER,
};
use crate::stream;
use crate::target::LEASE;
use crate::technique::{self, Technique};
use crate::MigrationError;

/// Techniques this build carries out end to end.
pub const IMPLEMENTED: &[Technique] = &[
    Technique::Cold,
    Technique::PostCopy,
    Technique::PreCopy,
    Technique::Hybrid,
];

/// Deadline of a control message on the migration channel (offer, commit, abort, state).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Pre-copy stops after this many rounds...
const MAX_ROUNDS: u32 = 8;
/// ...or once a round sent at most this much (the final dump's share is then small)...
const ROUND_DONE_BYTES: u64 = 2 << 20;
/// ...or when a round shrank by less than this share: the app dirties memory about as fast
/// as the link moves it, so more rounds would not cut the downtime.
const MIN_SHRINK: f64 = 0.2;

/// How long a dump may take by default: 30 s plus 1 s per MiB of state, i.e. a link below
/// about 8 Mbit/s, or one that stopped carrying pages, makes the migration roll back.
pub fn default_dump_timeout(state_bytes: u64) -> Duration {
    Duration::from_secs(30 + state_bytes / (1 << 20))
}

/// The migration channel to the target host (blocking HTTP; runs on a blocking thread).
#[derive(Clone)]
pub struct TargetClient {
    base: String,
    host: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl TargetClient {
    pub fn new(target: &str, token: &str) -> Result<TargetClient, MigrationError> {
        let url = reqwest::Url::parse(target)
            .map_err(|e| MigrationError::Refused(format!("target '{target}' is not a URL: {e}")))?;
        if url.scheme() != "http" {
            return Err(MigrationError::Refused(format!(
                "target '{target}': only http:// is supported so far"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| MigrationError::Refused(format!("target '{target}' has no host")))?
            .to_string();
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| MigrationError::Io(e.to_string()))?;
        Ok(TargetClient {
            base: format!("{}/ferry/v1/migrations", target.trim_end_matches('/')),
            host,
            token: token.to_string(),
            http,
        })
    }

    fn auth(&self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        r.header(AUTH_HEADER, format!("Bearer {}", self.token))
    }

    /// A control message: small, answered at once by a healthy target. A short deadline
    /// means a vanished target is noticed in seconds (TCP alone would wait for minutes).
    fn control(&self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        self.auth(r).timeout(CONTROL_TIMEOUT)
    }

    fn check(
        r: reqwest::Result<reqwest::blocking::Response>,
    ) -> Result<reqwest::blocking::Response, String> {
        let r = r.map_err(|e| format!("target unreachable: {e}"))?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let body: serde_json::Value = r.json().unwrap_or_default();
        Err(format!(
            "target answered {status}: {}",
            body["detail"].as_str().unwrap_or("")
        ))
    }

    pub fn offer(&self, offer: &Offer) -> Result<OfferReply, String> {
        Self::check(self.control(self.http.post(&self.base)).json(offer).send())?
            .json()
            .map_err(|e| e.to_string())
    }

    /// Streams images and writable layer; returns the bytes sent.
    pub fn send_images(
        &self,
        id: &str,
        manifest: stream::Manifest,
        images: PathBuf,
        upper: PathBuf,
        corrupt: bool,
    ) -> Result<u64, String> {
        let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
        // The tar is produced while it is sent: nothing is written twice on the source.
        let producer = std::thread::spawn(move || {
            stream::write_stream(&manifest, &images, &upper, writer, corrupt)
        });
        let sent = Self::check(
            self.auth(self.http.put(format!("{}/{id}/images", self.base)))
                .body(reqwest::blocking::Body::new(reader))
                .send(),
        );
        let bytes = producer
            .join()
            .map_err(|_| "stream producer panicked".to_string())?;
        sent?;
        bytes.map_err(|e| format!("stream: {e}"))
    }

    pub fn round(&self, id: &str, req: &RoundRequest) -> Result<RoundReply, String> {
        Self::check(
            self.auth(self.http.post(format!("{}/{id}/rounds", self.base)))
                .json(req)
                .send(),
        )?
        .json()
        .map_err(|e| e.to_string())
    }

    pub fn restore(&self, id: &str, req: &RestoreRequest) -> Result<RestoreReply, String> {
        Self::check(
            self.auth(self.http.post(format!("{}/{id}/restore", self.base)))
                .json(req)
                .send(),
        )?
        .json()
        .map_err(|e| e.to_string())
    }

    pub fn commit(&self, id: &str) -> Result<(), String> {
        Self::check(
            self.control(self.http.post(format!("{}/{id}/commit", self.base)))
                .send(),
        )
        .map(|_| ())
    }

    pub fn abort(&self, id: &str) -> Result<(), String> {
        Self::check(
            self.control(self.http.post(format!("{}/{id}/abort", self.base)))
                .send(),
        )
        .map(|_| ())
    }

    pub fn state(&self, id: &str) -> Result<TargetState, String> {
        Self::check(
            self.control(self.http.get(format!("{}/{id}", self.base)))
                .send(),
        )?
        .json()
        .map_err(|e| e.to_string())
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    hex::encode(buf)
}

/// A phase that failed, and whether the commit had been sent (then rollback is not safe).
struct Failure {
    phase: Phase,
    detail: String,
    commit_sent: bool,
}

fn fail(phase: Phase) -> impl Fn(String) -> Failure {
    move |detail| Failure {
        phase,
        detail,
        commit_sent: false,
    }
}

/// Migrates container `name` to `req.target`. On error before any side effect (unknown
/// container, refused technique, already migrating) nothing changes; after that the report
/// says how it ended.
pub fn migrate(
    rt: &Runtime,
    source_name: &str,
    name: &str,
    req: MigrateRequest,
) -> Result<MigrationReport, MigrationError> {
    let started = Instant::now();
    let features = criu::features(&rt.config().criu);
    let inputs = technique::Inputs {
        state_bytes: rt.memory_bytes(name).unwrap_or(0),
        link_bit_s: req.link_bit_s,
        dirty_bytes_s: req.dirty_bytes_s,
    };
    let technique = technique::choose(req.technique, &features, inputs, IMPLEMENTED)
        .map_err(MigrationError::Refused)?;
    let dump_timeout = req
        .dump_timeout_s
        .map(Duration::from_secs)
        .unwrap_or_else(|| default_dump_timeout(inputs.state_bytes));
    let token = req
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| random_hex(32));
    let client = TargetClient::new(&req.target, &token)?;
    if let Some(url) = &req.on_commit {
        let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(MigrationError::Refused(format!(
                "on_commit '{url}' is not an http(s) URL"
            )));
        }
    }
    let id = format!("m-{}", random_hex(8));
    let container = rt.begin_outgoing(name, &id, &req.target)?;
    tracing::info!(container = %name, migration = %id, target = %req.target, %technique, "migration starts");

    let image_dir = rt.migrations_dir().join(&id).join("images");
    let mut report = MigrationReport {
        id: id.clone(),
        container: name.to_string(),
        source: source_name.to_string(),
        target: req.target.clone(),
        requested: req.technique,
        technique,
        outcome: Outcome::Completed,
        timings: Timings::default(),
        stream_bytes: 0,
        pages_bytes: 0,
        bytes_on_wire: 0,
        dump: None,
        pre_copy_rounds: Vec::new(),
        remote_page_faults: None,
        failed_phase: None,
        error: None,
        image_dir: None,
    };
    let mut lazy_dump = None;
    let plan = Plan {
        request: &container.request,
        id: &id,
        technique,
        image_dir: &image_dir,
        fault: req.fault.as_ref(),
        dump_timeout,
        on_commit: req.on_commit.as_deref(),
    };
    let result = run(rt, &client, &plan, &mut report, &mut lazy_dump);
    if let Err(f) = result {
        if !f.commit_sent {
            // A post-copy dump still serving pages: stop it, and CRIU lets the original go.
            if let Some(child) = lazy_dump.take() {
                stop_lazy_dump(child);
            }
        }
        report.failed_phase = Some(f.phase);
        report.error = Some(f.detail.clone());
        tracing::error!(container = %name, migration = %id, phase = %f.phase, error = %f.detail, "migration failed");
        if f.commit_sent {
            report.outcome = settle_lost_commit(rt, &client, name, &id)?;
            if report.outcome == Outcome::Completed && report.timings.commit_ms.is_none() {
                notify_committed(req.on_commit.as_deref(), &id, name, &req.target);
            }
        } else {
            // The target's copy (if any) is parked and serves only once committed, which
            // never happens now: thaw ours first, so the app does not wait on a target that
            // may be gone, then tell the target to drop its copy.
            rt.rollback_outgoing(name)?;
            report.outcome = Outcome::RolledBack;
            abort_target(client.clone(), id.clone());
        }
    }
    if report.outcome != Outcome::Unknown {
        let _ = std::fs::remove_dir_all(rt.migrations_dir().join(&id));
    } else {
        report.image_dir = Some(image_dir);
    }
    report.bytes_on_wire = report.stream_bytes + report.pages_bytes;
    report.timings.total_ms = started.elapsed().as_millis() as u64;
    tracing::info!(container = %name, migration = %id, outcome = ?report.outcome, total_ms = report.timings.total_ms, "migration ended");
    Ok(report)
}

fn ms_since(t: Instant) -> Option<u64> {
    Some(t.elapsed().as_millis() as u64)
}

/// Entering a phase: record it (for progress) and apply an injected pause.
fn enter(rt: &Runtime, name: &str, fault: Option<&Fault>, phase: Phase) {
    let _ = rt.outgoing_phase(name, &phase.to_string());
    pause_if(fault, phase);
}

fn pause_if(fault: Option<&Fault>, phase: Phase) {
    if let Some(Fault::PauseBefore { phase: p, ms }) = fault {
        if *p == phase {
            tracing::warn!(%phase, ms, "fault injection: pausing");
            std::thread::sleep(Duration::from_millis(*ms));
        }
    }
}

/// What one migration does, decided before it starts.
struct Plan<'a> {
    request: &'a ferry_runtime::ContainerRequest,
    id: &'a str,
    technique: Technique,
    /// Where this host's dump writes its images (pre-copy rounds go next to it).
    image_dir: &'a Path,
    fault: Option<&'a Fault>,
    dump_timeout: Duration,
    /// Told the moment the target serves.
    on_commit: Option<&'a str>,
}

fn run(
    rt: &Runtime,
    client: &TargetClient,
    plan: &Plan,
    report: &mut MigrationReport,
    lazy_dump: &mut Option<std::process::Child>,
) -> Result<(), Failure> {
    let Plan {
        request,
        id,
        technique,
        image_dir,
        fault,
        dump_timeout,
        on_commit,
    } = *plan;
    let name = request.name.as_str();

    // Prepare ---- offer ----> target holds a parked copy and a page server.
    enter(rt, name, fault, Phase::Prepare);
    let t = Instant::now();
    let offer = Offer {
        id: id.to_string(),
        container: request.clone(),
        technique,
    };
    let reply = client.offer(&offer).map_err(fail(Phase::Prepare))?;
    report.timings.prepare_ms = ms_since(t);
    let lazy = matches!(technique, Technique::PostCopy | Technique::Hybrid);
    let mut target_page_server = reply
        .page_server_port
        .map(|port| format!("{}:{port}", client.host));
    if technique == Technique::Cold && target_page_server.is_none() {
        return Err(fail(Phase::Prepare)(
            "the target offered no page server".to_string(),
        ));
    }

    // Pre-copy rounds while the app runs; the final dump then holds only the last dirty pages.
    let mut parent = None;
    if matches!(technique, Technique::PreCopy | Technique::Hybrid) {
        enter(rt, name, fault, Phase::PreCopy);
        let t = Instant::now();
        let last = pre_copy(rt, client, plan, report).map_err(fail(Phase::PreCopy))?;
        target_page_server = last
            .page_server_port
            .map(|p| format!("{}:{p}", client.host));
        if technique == Technique::PreCopy && target_page_server.is_none() {
            return Err(fail(Phase::PreCopy)(
                "the target offered no page server for the final dump".to_string(),
            ));
        }
        parent = Some(format!("../rounds/{}", report.pre_copy_rounds.len() - 1));
        report.timings.pre_copy_ms = ms_since(t);
    }

    // Freeze: from here the app does not answer.
    enter(rt, name, fault, Phase::Freeze);
    let frozen_at = Instant::now();
    rt.freeze_outgoing(name)
        .map_err(|e| fail(Phase::Freeze)(e.to_string()))?;
    report.timings.freeze_ms = ms_since(frozen_at);

    // Dump. Cold and pre-copy: every (remaining) page goes to the target's page server as
    // CRIU reads it. Post-copy and hybrid: everything but the memory; pages stay here,
    // served on demand.
    enter(rt, name, fault, Phase::Dump);
    let t = Instant::now();
    let mut lazy_port = None;
    let mut final_pages_bytes = 0;
    if lazy {
        let port = free_port().map_err(fail(Phase::Dump))?;
        let child = rt
            .dump_outgoing_lazy(
                name,
                image_dir,
                &format!("0.0.0.0:{port}"),
                parent.as_deref(),
            )
            .map_err(|e| fail(Phase::Dump)(e.to_string()))?;
        *lazy_dump = Some(child);
        lazy_port = Some(port);
    } else {
        let stats = rt
            .dump_outgoing(
                name,
                image_dir,
                target_page_server.as_deref(),
                parent.as_deref(),
                dump_timeout,
            )
            .map_err(|e| fail(Phase::Dump)(e.to_string()))?;
        final_pages_bytes = stats.pages_written * 4096;
        report.pages_bytes += final_pages_bytes;
        report.dump = Some(stats);
    }
    report.timings.dump_ms = ms_since(t);
    if fault == Some(&Fault::BreakRestore) {
        break_core_image(image_dir).map_err(fail(Phase::Dump))?;
    }

    // Transfer: the other images and the writable layer, checked on arrival.
    enter(rt, name, fault, Phase::Transfer);
    let t = Instant::now();
    let manifest = stream::build_manifest(image_dir, &rt.upper_dir(name), final_pages_bytes)
        .map_err(|e| fail(Phase::Transfer)(e.to_string()))?;
    report.stream_bytes = client
        .send_images(
            id,
            manifest,
            image_dir.to_path_buf(),
            rt.upper_dir(name),
            fault == Some(&Fault::CorruptImage),
        )
        .map_err(fail(Phase::Transfer))?;
    report.timings.transfer_ms = ms_since(t);

    // Restore on the target, still unreachable there.
    enter(rt, name, fault, Phase::Restore);
    let t = Instant::now();
    let restored = client
        .restore(
            id,
            &RestoreRequest {
                lazy_page_server_port: lazy_port,
            },
        )
        .map_err(fail(Phase::Restore))?;
    report.timings.restore_ms = Some(restored.restore_ms);
    let _ = t;

    // Commit ---- point of no return ----> the target serves.
    enter(rt, name, fault, Phase::Commit);
    let t = Instant::now();
    rt.commit_outgoing(name)
        .map_err(|e| fail(Phase::Commit)(e.to_string()))?;
    client.commit(id).map_err(|detail| Failure {
        phase: Phase::Commit,
        detail,
        commit_sent: true,
    })?;
    report.timings.commit_ms = ms_since(t);
    report.timings.frozen_ms = ms_since(frozen_at);
    notify_committed(on_commit, id, name, &report.target);

    // Post-copy: the app serves on the target while its memory still arrives from here.
    if let Some(child) = lazy_dump.take() {
        let _ = rt.outgoing_phase(name, "lazy");
        let t = Instant::now();
        let ok = wait_lazy_dump(child);
        report.timings.lazy_completion_ms = ms_since(t);
        // CRIU's dump statistics do not cover lazy pages: the target counts what arrived.
        if let Some(l) = lazy_stats(client, id) {
            report.remote_page_faults = Some(l.remote_page_faults);
            report.pages_bytes += l.transferred_pages * 4096;
        }
        if !ok {
            return Err(Failure {
                phase: Phase::Cleanup,
                detail: "post-copy: the source's page server failed before every page reached the target; \
                         the app on the target may miss memory (unrecoverable)"
                    .to_string(),
                commit_sent: true,
            });
        }
    }

    // Cleanup: nothing of the app stays on the source.
    let t = Instant::now();
    if let Err(e) = rt.finish_outgoing(name) {
        tracing::error!(container = %name, error = %e, "source cleanup incomplete after a completed migration");
    }
    report.timings.cleanup_ms = ms_since(t);
    Ok(())
}

/// Pre-copy rounds: pre-dumps of the running app, each to a fresh page server on the
/// target, until the dirty set is small or stops shrinking; then announces the final dump
/// and returns the target's answer to that (its page server, for pre-copy). Rounds land in
/// `rounds/N` next to `image_dir`, here and on the target alike.
fn pre_copy(
    rt: &Runtime,
    client: &TargetClient,
    plan: &Plan,
    report: &mut MigrationReport,
) -> Result<RoundReply, String> {
    let (id, technique) = (plan.id, plan.technique);
    let name = plan.request.name.as_str();
    let rounds = plan
        .image_dir
        .parent()
        .ok_or("image dir has no parent")?
        .join("rounds");
    let mut previous_bytes = None;
    let mut round = 0u32;
    loop {
        let reply = client.round(
            id,
            &RoundRequest {
                round,
                last: false,
                previous_pages_bytes: previous_bytes,
            },
        )?;
        if round > 0 && technique == Technique::Hybrid {
            write_index(&rounds.join((round - 1).to_string()), &reply.previous_index)?;
        }
        let port = reply
            .page_server_port
            .ok_or("the target offered no page server for a round")?;
        let dir = rounds.join(round.to_string());
        let parent = (round > 0).then(|| format!("../{}", round - 1));
        let t = Instant::now();
        let stats = rt
            .predump_outgoing(
                name,
                &dir,
                parent.as_deref(),
                &format!("{}:{port}", client.host),
                plan.dump_timeout,
            )
            .map_err(|e| e.to_string())?;
        let bytes = stats.pages_written * 4096;
        report.pages_bytes += bytes;
        report.pre_copy_rounds.push(PreCopyRound {
            round,
            pages: stats.pages_written,
            ms: t.elapsed().as_millis() as u64,
        });
        tracing::info!(container = %name, migration = %id, round, pages = stats.pages_written, "pre-copy round");
        let shrank_enough =
            previous_bytes.is_none_or(|p: u64| (bytes as f64) <= (1.0 - MIN_SHRINK) * p as f64);
        previous_bytes = Some(bytes);
        round += 1;
        if bytes <= ROUND_DONE_BYTES || !shrank_enough || round >= MAX_ROUNDS {
            break;
        }
    }
    let last = client.round(
        id,
        &RoundRequest {
            round,
            last: true,
            previous_pages_bytes: previous_bytes,
        },
    )?;
    if technique == Technique::Hybrid {
        write_index(&rounds.join((round - 1).to_string()), &last.previous_index)?;
    }
    Ok(last)
}

/// Puts a round's page index, as the target received it, into the round's dir here: CRIU's
/// lazy final dump reads it to leave the pages the target holds to the target.
fn write_index(dir: &Path, files: &[crate::protocol::IndexFile]) -> Result<(), String> {
    for f in files {
        let plain = !f.name.contains('/') && f.name.ends_with(".img");
        let kind_ok = f.name.starts_with("pagemap-") || f.name.starts_with("pages-");
        if !plain || !kind_ok {
            return Err(format!(
                "the target sent an unexpected index file '{}'",
                f.name
            ));
        }
        let bytes = match &f.hex {
            Some(h) => hex::decode(h).map_err(|e| format!("index file {}: {e}", f.name))?,
            None => Vec::new(),
        };
        std::fs::write(dir.join(&f.name), bytes).map_err(|e| format!("{}: {e}", f.name))?;
    }
    Ok(())
}

/// The commit was sent but its answer lost: ask the target until its lease would have run
/// out. Committed there: finish here. Aborted or unknown there: roll back. Unreachable: the
/// outcome is unknown and the frozen original stays as it is.
fn settle_lost_commit(
    rt: &Runtime,
    client: &TargetClient,
    name: &str,
    id: &str,
) -> Result<Outcome, RuntimeError> {
    let deadline = Instant::now() + LEASE + Duration::from_secs(5);
    while Instant::now() < deadline {
        match client.state(id) {
            Ok(s) if s.phase == TargetPhase::Committed => {
                rt.finish_outgoing(name)?;
                return Ok(Outcome::Completed);
            }
            Ok(s) if s.phase == TargetPhase::Aborted => {
                rt.rollback_outgoing(name)?;
                return Ok(Outcome::RolledBack);
            }
            Ok(_) => {
                // Restored but not committed: commit again (idempotent on the target).
                if client.commit(id).is_ok() {
                    rt.finish_outgoing(name)?;
                    return Ok(Outcome::Completed);
                }
            }
            Err(e) if e.contains("404") => {
                rt.rollback_outgoing(name)?;
                return Ok(Outcome::RolledBack);
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    tracing::error!(container = %name, migration = %id,
        "UNRECOVERABLE WITHOUT AN OPERATOR: the commit was sent but the target cannot be reached; \
         it may be serving the app. The source keeps its frozen copy and will not resume it.");
    Ok(Outcome::Unknown)
}

/// A free TCP port in this namespace for the source's page server.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
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

/// Waits until the post-copy dump has served every page; whether it succeeded.
fn wait_lazy_dump(mut child: std::process::Child) -> bool {
    child.wait().map(|s| s.success()).unwrap_or(false)
}

/// Post-copy statistics of the target, once its lazy-pages daemon has finished.
fn lazy_stats(client: &TargetClient, id: &str) -> Option<crate::protocol::LazyState> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(TargetState { lazy: Some(l), .. }) = client.state(id) {
            if l.done || Instant::now() > deadline {
                return Some(l);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tells whoever steers traffic that the target serves now (in the background: the
/// migration does not wait on it).
fn notify_committed(url: Option<&str>, id: &str, name: &str, target: &str) {
    let Some(url) = url else { return };
    let body = crate::protocol::Committed {
        migration: id.to_string(),
        container: name.to_string(),
        target: target.to_string(),
    };
    let url = url.to_string();
    std::thread::spawn(move || {
        let sent = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .and_then(|c| c.post(&url).json(&body).send());
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(%url, status = %r.status(), "on_commit callback refused"),
            Err(e) => tracing::warn!(%url, error = %e, "on_commit callback failed"),
        }
    });
}

/// Tells the target to drop its parked copy, in the background, retrying while it cannot be
/// reached (the copy also expires there on its own).
fn abort_target(client: TargetClient, id: String) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + crate::target::PREPARE_TIMEOUT;
        loop {
            match client.abort(&id) {
                Ok(()) => return,
                Err(e) if e.contains("404") || e.contains("409") || e.contains("400") => return,
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
