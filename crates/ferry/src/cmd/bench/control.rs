//! `ferry bench control`: does the control plane keep up with a city's handovers, and is no
//! move ever missed?
//!
//! Real `ferry ran` and `ferry control` processes on loopback with TLS on (a PKI of the
//! bench's own; control and the RAN serve TLS with `--tls-dir`, parts by certificate), fake
//! MEC hosts (a party this benchmark is not about) that accept every migration at once over
//! mutual TLS, and a MEC 021 subscriber of the bench's own:
//!
//! 1. setup: `--ues` UEs on a grid of `--hosts` x `--cells-per-host` small cells (200 m
//!    apart); an app instance with an AMS registration for a share of the UEs, on the host
//!    serving the UE's first cell;
//! 2. walk: every UE follows waypoints at `--speed-m-s` for `--walk-s` seconds (the RAN's own
//!    mobility, in real time), after a standstill while control subscribes;
//! 3. forced: `--rate` handovers/s through the RAN's batch API for `--seconds`, plus
//!    `--bursts` bursts of `--burst` handovers at once, each to a random other cell.
//!
//! After each phase it waits for the apps to settle and counts the missed relocations: apps
//! not on the host serving their UE's cell. Latency is from a forced handover (the RAN's
//! time of it) to the MEC 021 notification at the subscriber (TRIGGERED, and COMPLETED).
//! CPU is the process's user + system time over the phase's wall time (100% = one core).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use ferry_control::axum::{
    self,
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    Router,
};
use ferry_wire::migration::{
    MigrateRequest, MigrationReport, MigrationView, Outcome, OutgoingState, OutgoingView, Phase,
    Technique, Timings,
};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct ControlArgs {
    /// UEs in the RAN.
    #[arg(long, default_value_t = 10_000)]
    ues: usize,
    /// Share of the UEs an app instance follows (0..1).
    #[arg(long, default_value_t = 0.1)]
    apps_share: f64,
    /// MEC hosts.
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// Cells each host serves.
    #[arg(long, default_value_t = 4)]
    cells_per_host: usize,
    /// Seconds of walking (the RAN's own mobility); 0: no walk phase.
    #[arg(long, default_value_t = 30)]
    walk_s: u64,
    /// Walking speed.
    #[arg(long, default_value_t = 20.0)]
    speed_m_s: f64,
    /// Run the RAN's radio model (a `[radio]` table with its defaults, docs/radio.md): the
    /// walkers hand over by A3 (IN_PREPARATION, then COMPLETED) and every UE reports its
    /// measurements; without it they go to the nearest covering cell.
    #[arg(long)]
    radio: bool,
    /// Forced handovers per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of forced handovers.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Handovers per burst.
    #[arg(long, default_value_t = 5000)]
    burst: usize,
    /// Bursts during the forced phase (evenly spaced).
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    /// How long apps may take to settle after a phase before the rest count as missed.
    #[arg(long, default_value_t = 120)]
    settle_s: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results/control.json")]
    out: PathBuf,
    /// Keep the work directory (logs of the daemons, topology, PKI) here instead of a
    /// temporary one.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Standstill at the start of the walk, for control to subscribe first.
const STANDSTILL_S: f64 = 15.0;
/// Distance between neighbouring cells.
const SPACING_M: f64 = 200.0;
const ORIGIN: (f64, f64) = (43.70, 7.40);
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

pub fn run(args: ControlArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.ues >= 1 && args.ues <= 60_000,
        "--ues must be 1..60000"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.apps_share),
        "--apps-share must be within 0..1"
    );
    anyhow::ensure!(
        args.hosts >= 2 && args.cells_per_host >= 1,
        "--hosts must be >= 2 and --cells-per-host >= 1"
    );
    anyhow::ensure!(args.rate >= 1, "--rate must be >= 1");
    anyhow::ensure!(
        args.burst <= ferry_ran::MAX_BATCH,
        "--burst must be <= {}",
        ferry_ran::MAX_BATCH
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(bench(args))
}

// ---- the world ----

struct Cell {
    name: String,
    host: String,
    cell_id: String,
    lat: f64,
    lon: f64,
}

/// The grid of cells; cell k is served by host k / cells_per_host.
fn cells(args: &ControlArgs) -> (Vec<Cell>, usize, usize) {
    let n = args.hosts * args.cells_per_host;
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let dlat = SPACING_M / M_PER_DEG;
    let dlon = SPACING_M / (M_PER_DEG * ORIGIN.0.to_radians().cos());
    let cells = (0..n)
        .map(|k| Cell {
            name: format!("c{k}"),
            host: format!("edge{}", k / args.cells_per_host + 1),
            cell_id: format!("{:07x}", k + 1),
            lat: ORIGIN.0 + (k / cols) as f64 * dlat,
            lon: ORIGIN.1 + (k % cols) as f64 * dlon,
        })
        .collect();
    (cells, cols, rows)
}

/// A small, seeded generator (the bench is reproducible without a dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Ue {
    name: String,
    address: Ipv4Addr,
    /// Its cell at the start (index into the cells).
    cell: usize,
    /// (at_s, lat, lon).
    waypoints: Vec<(f64, f64, f64)>,
}

fn ue_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 150, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The UEs: each starts at a random point of the grid, stands still, then walks from random
/// point to random point until the walk ends.
fn ues(args: &ControlArgs, grid: &[Cell], cols: usize, rows: usize) -> Vec<Ue> {
    let info: Vec<ferry_ran::world::CellInfo> = grid
        .iter()
        .map(|c| ferry_ran::world::CellInfo {
            name: c.name.clone(),
            ecgi: mec_api::rni::Ecgi {
                plmn: mec_api::rni::Plmn {
                    mcc: "001".into(),
                    mnc: "01".into(),
                },
                cell_id: c.cell_id.clone(),
            },
            zone: c.host.clone(),
            latitude: c.lat,
            longitude: c.lon,
            radius_m: radius(),
        })
        .collect();
    let coverage = ferry_ran::mobility::Coverage::new(&info);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dlat = SPACING_M / M_PER_DEG;
    let dlon = SPACING_M / (M_PER_DEG * ORIGIN.0.to_radians().cos());
    let point = |rng: &mut Rng| {
        (
            ORIGIN.0 + rng.unit() * (rows - 1).max(1) as f64 * dlat,
            ORIGIN.1 + rng.unit() * (cols - 1).max(1) as f64 * dlon,
        )
    };
    let end = STANDSTILL_S + args.walk_s as f64;
    (0..args.ues)
        .map(|i| {
            let (lat, lon) = point(&mut rng);
            let cell = coverage.serving(lat, lon).unwrap_or(0);
            let mut waypoints = Vec::new();
            if args.walk_s > 0 {
                waypoints.push((0.0, lat, lon));
                waypoints.push((STANDSTILL_S, lat, lon));
                let (mut t, mut at) = (STANDSTILL_S, (lat, lon));
                while t < end {
                    let to = point(&mut rng);
                    let d = ferry_ran::mobility::distance_m(at.0, at.1, to.0, to.1);
                    let dt = (d / args.speed_m_s).max(0.1);
                    if t + dt > end {
                        let f = (end - t) / dt;
                        let stop = (at.0 + f * (to.0 - at.0), at.1 + f * (to.1 - at.1));
                        waypoints.push((end, stop.0, stop.1));
                        break;
                    }
                    t += dt;
                    waypoints.push((t, to.0, to.1));
                    at = to;
                }
            }
            Ue {
                name: format!("u{i}"),
                address: ue_address(i),
                cell,
                waypoints,
            }
        })
        .collect()
}

/// Covers the grid without gaps (the diagonal midpoint is 0.71 x the spacing away).
fn radius() -> f64 {
    SPACING_M * 0.75
}

fn topology(args: &ControlArgs, grid: &[Cell], ues: &[Ue]) -> String {
    use std::fmt::Write;
    let mut t = String::from(
        "name = \"benchctl\"\napp_subnet = \"10.200.0.0/16\"\nlink_subnet = \"172.16.0.0/12\"\n",
    );
    for h in 0..args.hosts {
        let _ = write!(
            t,
            "[[hosts]]\nname = \"edge{}\"\naddress = \"10.100.{}.{}\"\n",
            h + 1,
            h / 250,
            h % 250 + 1
        );
    }
    for c in grid {
        let _ = write!(
            t,
            "[[cells]]\nname = \"{}\"\necgi = {{ mcc = \"001\", mnc = \"01\", cell_id = \"{}\" }}\nposition = {{ latitude = {:.7}, longitude = {:.7} }}\nradius_m = {}\nhost = \"{}\"\n",
            c.name, c.cell_id, c.lat, c.lon, radius(), c.host
        );
    }
    for u in ues {
        let _ = write!(
            t,
            "[[ues]]\nname = \"{}\"\naddress = \"{}\"\ncell = \"{}\"\n",
            u.name, u.address, grid[u.cell].name
        );
        if !u.waypoints.is_empty() {
            t += "waypoints = [";
            for (j, (at, lat, lon)) in u.waypoints.iter().enumerate() {
                let sep = if j == 0 { "" } else { ", " };
                let _ = write!(
                    t,
                    "{sep}{{ at_s = {at:.3}, latitude = {lat:.7}, longitude = {lon:.7} }}"
                );
            }
            t += "]\n";
        }
    }
    if args.radio {
        t += "[radio]\n";
    }
    t
}

// ---- the daemons ----

/// A child `ferry` daemon, killed on drop; its log goes to a file.
struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn spawn(args: &[String], log: &Path, banner: &str) -> anyhow::Result<Daemon> {
        let exe = std::env::current_exe().context("cannot find the ferry binary")?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        // The daemon dies with the bench's main thread (which spawns it), however the bench
        // ends: Ctrl-C, a panic, a kill.
        // SAFETY: runs in the child between fork and exec; prctl is a plain system call.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().context("cannot start a ferry daemon")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut d = Daemon {
            child,
            url: String::new(),
        };
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        match line.trim().strip_prefix(banner) {
            Some(url) => d.url = url.to_string(),
            None => bail!(
                "ferry {} did not start (see {})",
                args.first().map(String::as_str).unwrap_or("?"),
                log.display()
            ),
        }
        Ok(d)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (s) and resident memory (MiB, now and peak) of a process.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_s: f64,
    rss_mib: f64,
    peak_mib: f64,
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn usage(pid: u32, ticks: f64) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the ')'.
    let cpu_s = (t(11) + t(12)) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Usage {
        cpu_s,
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_mib: kib("VmHWM:") / 1024.0,
    }
}

// ---- the fake hosts ----

/// What the fake hosts know: containers' requests by name (to answer `start`), migrations
/// by id (to answer their view).
#[derive(Clone, Default)]
struct FakeHosts {
    containers: Arc<Mutex<HashMap<String, ferry_wire::ContainerRequest>>>,
    migrations: Arc<Mutex<HashMap<String, (String, String)>>>,
}

fn container_record(req: ferry_wire::ContainerRequest, status: ferry_wire::Status) -> Value {
    serde_json::to_value(ferry_wire::Container {
        name: req.name.clone(),
        request: req,
        status,
        netns: "bench".into(),
        veth: None,
        created_at: "now".into(),
        started_at: None,
        last_checkpoint: None,
        migration: None,
        owner: Default::default(),
    })
    .unwrap_or_default()
}

/// A completed migration, as a source host reports it.
fn completed(id: &str, container: &str, target: &str) -> Option<Value> {
    let id: ferry_wire::migration::MigrationId = id.parse().ok()?;
    let report = MigrationReport {
        outcome: Outcome::Completed,
        timings: Timings {
            frozen_ms: Some(0),
            total_ms: 0,
            ..Timings::default()
        },
        ..MigrationReport::new(
            id.clone(),
            container,
            "bench",
            target,
            Technique::Cold,
            Technique::Cold,
        )
    };
    serde_json::to_value(MigrationView::Outgoing(OutgoingView {
        id,
        container: container.into(),
        target: target.into(),
        requested: Technique::Cold,
        technique: Technique::Cold,
        state: OutgoingState::Completed,
        phase: Phase::Cleanup,
        error: None,
        advice: None,
        updated_at_ms: 0,
        moved_bytes: 0,
        report: Some(Box::new(report)),
    }))
    .ok()
}

async fn fake_host(
    State(h): State<FakeHosts>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path();
    let reply = |s: StatusCode, v: Value| (s, v.to_string());
    if method == Method::POST && path == "/ferry/v1/images" {
        return reply(StatusCode::CREATED, json!({}));
    }
    if method == Method::POST && path == "/ferry/v1/containers" {
        let Ok(req) = serde_json::from_slice::<ferry_wire::ContainerRequest>(&body) else {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        };
        h.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.name.clone(), req.clone());
        return reply(
            StatusCode::CREATED,
            container_record(req, ferry_wire::Status::Created),
        );
    }
    let name = |verb: &str| {
        path.strip_prefix("/ferry/v1/containers/")
            .and_then(|p| p.strip_suffix(verb))
            .map(str::to_string)
    };
    if let Some(n) = name("/start") {
        let req = h
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n)
            .cloned();
        return match req {
            Some(req) => reply(
                StatusCode::OK,
                container_record(req, ferry_wire::Status::Running),
            ),
            None => reply(StatusCode::NOT_FOUND, json!({"status": 404})),
        };
    }
    if let Some(n) = name("/migrate") {
        let Ok(req) = serde_json::from_slice::<MigrateRequest>(&body) else {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        };
        let Some(id) = req.id.map(|i| i.to_string()) else {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        };
        h.migrations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), (n.clone(), req.target.clone()));
        return match completed(&id, &n, &req.target) {
            Some(v) => reply(StatusCode::ACCEPTED, v),
            None => reply(StatusCode::BAD_REQUEST, json!({"status": 400})),
        };
    }
    if let Some(id) = path.strip_prefix("/ferry/v1/migrations/") {
        let known = h
            .migrations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        return match known.and_then(|(n, t)| completed(id, &n, &t)) {
            Some(v) => reply(StatusCode::OK, v),
            None => reply(
                StatusCode::NOT_FOUND,
                json!({"type": ferry_wire::ProblemType::UnknownMigration.uri(), "status": 404}),
            ),
        };
    }
    if method == Method::DELETE {
        return (StatusCode::NO_CONTENT, String::new());
    }
    reply(StatusCode::OK, json!({}))
}

/// Serves the fake host `name` over mutual TLS with its certificate; its base URL.
async fn serve_fake_host(
    pki: &Path,
    name: &str,
    state: FakeHosts,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let files = ferry_tls::TlsFiles::in_dir(pki, &ferry_tls::Identity::Host(name.into()));
    let config = ferry_tls::server_config(&files)?;
    let app = Router::new()
        .fallback(fake_host)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = mec_http::serve::serve_on(
            mec_http::serve::Transport::MutualTls(listener, config),
            app,
            std::future::pending::<()>(),
        )
        .await;
    });
    Ok((url, task))
}

// ---- the MEC 021 subscriber ----

/// One MobilityProcedureNotification as received.
#[derive(Debug, Clone)]
struct Heard {
    ue: Ipv4Addr,
    status: String,
    at: SystemTime,
}

type Inbox = Arc<Mutex<Vec<Heard>>>;

async fn mec021(State(inbox): State<Inbox>, body: Bytes) -> StatusCode {
    let at = SystemTime::now();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ue = v["associateId"][0]["value"]
        .as_str()
        .and_then(|a| a.parse().ok());
    if let (Some(ue), Some(status)) = (ue, v["mobilityStatus"].as_str()) {
        inbox.lock().unwrap_or_else(|e| e.into_inner()).push(Heard {
            ue,
            status: status.to_string(),
            at,
        });
    }
    StatusCode::NO_CONTENT
}

// ---- the bench ----

struct Ctx {
    ran: String,
    control: String,
    http: reqwest::Client,
    /// (UE index, instance id) of each app.
    apps: Vec<(usize, String)>,
    grid: Vec<Cell>,
    inbox: Inbox,
}

impl Ctx {
    async fn get(&self, url: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = r.status();
        let v: Value = r.json().await.with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}: {v}");
        Ok(v)
    }

    async fn post(&self, url: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {url}: {status}: {v}");
        Ok(v)
    }

    /// Apps not on the host serving their UE's cell now.
    async fn misplaced(&self) -> anyhow::Result<usize> {
        let ues = self.get(&format!("{}/ferry/ran/v1/ues", self.ran)).await?;
        let zone: HashMap<String, String> = ues
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| Some((u["name"].as_str()?.into(), u["zone"].as_str()?.into())))
            .collect();
        let insts = self
            .get(&format!("{}/app_lcm/v1/app_instances", self.control))
            .await?;
        let host: HashMap<String, String> = insts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| Some((i["id"].as_str()?.into(), i["ferryHost"].as_str()?.into())))
            .collect();
        Ok(self
            .apps
            .iter()
            .filter(|(ue, inst)| zone.get(&format!("u{ue}")) != host.get(inst))
            .count())
    }

    /// Waits until no app is misplaced, or `limit`; (missed, seconds waited).
    async fn settle(&self, limit: Duration) -> anyhow::Result<(usize, f64)> {
        let t0 = Instant::now();
        loop {
            let m = self.misplaced().await?;
            if m == 0 || t0.elapsed() > limit {
                return Ok((m, t0.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Each UE's cell (index) now, by the RAN.
    async fn cells_now(&self) -> anyhow::Result<Vec<usize>> {
        let ues = self.get(&format!("{}/ferry/ran/v1/ues", self.ran)).await?;
        let index: HashMap<&str, usize> = self
            .grid
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut out = Vec::new();
        for u in ues.as_array().into_iter().flatten() {
            let i: usize = u["name"]
                .as_str()
                .and_then(|n| n.strip_prefix('u'))
                .and_then(|n| n.parse().ok())
                .context("unexpected UE name")?;
            if out.len() <= i {
                out.resize(i + 1, 0);
            }
            out[i] = u["cell"]
                .as_str()
                .and_then(|c| index.get(c).copied())
                .context("unexpected cell")?;
        }
        Ok(out)
    }

    fn heard(&self) -> Vec<Heard> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One forced handover as the RAN did it.
#[derive(Debug, Clone, Copy)]
struct Forced {
    ue: usize,
    at: SystemTime,
    /// The UE's host changed with it.
    moved_host: bool,
    burst: bool,
}

/// What one phase measured.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct PhaseResult {
    name: String,
    seconds: f64,
    handovers: u64,
    relocations_triggered: usize,
    relocations_completed: usize,
    relocations_failed: usize,
    missed: usize,
    settle_s: f64,
    trigger_ms: Option<(f64, f64, usize)>,
    complete_ms: Option<(f64, f64, usize)>,
    burst_trigger_ms: Option<(f64, f64, usize)>,
    burst_complete_ms: Option<(f64, f64, usize)>,
    control_cpu_pct: f64,
    control_rss_mib: f64,
    control_peak_mib: f64,
    ran_cpu_pct: f64,
    ran_rss_mib: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50, p99 and the count of handover -> `status` latencies (ms): each notification of a UE
/// is matched with the UE's latest forced handover before it that moved its host and was not
/// matched yet.
fn latencies(
    forced: &[Forced],
    heard: &[Heard],
    status: &str,
    app_of: &HashMap<Ipv4Addr, usize>,
    burst: bool,
) -> Option<(f64, f64, usize)> {
    let mut by_ue: HashMap<usize, Vec<&Forced>> = HashMap::new();
    for f in forced.iter().filter(|f| f.moved_host) {
        by_ue.entry(f.ue).or_default().push(f);
    }
    let mut used: HashMap<usize, SystemTime> = HashMap::new();
    let mut ms = Vec::new();
    for h in heard.iter().filter(|h| h.status == status) {
        let Some(&ue) = app_of.get(&h.ue) else {
            continue;
        };
        let Some(list) = by_ue.get(&ue) else { continue };
        let Some(f) = list.iter().rev().find(|f| f.at <= h.at) else {
            continue;
        };
        if used.get(&ue).is_some_and(|u| *u >= f.at) {
            continue; // not caused by a new handover (a coalesced or later step)
        }
        used.insert(ue, f.at);
        if f.burst == burst {
            if let Ok(d) = h.at.duration_since(f.at) {
                ms.push(d.as_secs_f64() * 1000.0);
            }
        }
    }
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Some((percentile(&ms, 0.5), percentile(&ms, 0.99), ms.len()))
}

fn count(heard: &[Heard], status: &str, from: SystemTime, to: SystemTime) -> usize {
    heard
        .iter()
        .filter(|h| h.status == status && h.at >= from && h.at < to)
        .count()
}

async fn bench(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let tmp;
    let work = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile_dir()?;
            tmp.path().to_path_buf()
        }
    };
    let ticks = clock_ticks();
    let n_apps = ((args.ues as f64) * args.apps_share).round() as usize;
    eprintln!(
        "ferry bench control: {} UEs, {} apps, {} hosts x {} cells; work dir {}",
        args.ues,
        n_apps,
        args.hosts,
        args.cells_per_host,
        work.display()
    );

    // PKI: the parts by certificate, as `ferry pki` makes them.
    let pki_dir = work.join("pki");
    let _ = std::fs::remove_dir_all(&pki_dir);
    let pki = ferry_tls::Pki::init(
        &pki_dir,
        "ferry bench control",
        ferry_tls::Validity::days(2),
    )?;
    let local = [ferry_tls::San::Ip(Ipv4Addr::LOCALHOST.into())];
    let mut ids = vec![
        ferry_tls::Identity::Control,
        ferry_tls::Identity::Ran,
        ferry_tls::Identity::Operator,
    ];
    ids.extend((1..=args.hosts).map(|h| ferry_tls::Identity::Host(format!("edge{h}"))));
    for id in &ids {
        pki.issue(id, &local, ferry_tls::Validity::days(2))?;
    }
    let operator = ferry_tls::client_config(&ferry_tls::TlsFiles::in_dir(
        &pki_dir,
        &ferry_tls::Identity::Operator,
    ))?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*operator).clone())
        .timeout(Duration::from_secs(60))
        .build()?;

    // The world.
    let (grid, cols, rows) = cells(&args);
    let ues = ues(&args, &grid, cols, rows);
    let topo_path = work.join("topology.toml");
    std::fs::write(&topo_path, topology(&args, &grid, &ues))?;

    // Fake hosts and the MEC 021 subscriber.
    let fakes = FakeHosts::default();
    let mut host_args = Vec::new();
    let mut _servers = Vec::new();
    for h in 1..=args.hosts {
        let (url, task) = serve_fake_host(&pki_dir, &format!("edge{h}"), fakes.clone()).await?;
        host_args.push("--host".to_string());
        host_args.push(format!("edge{h}={url}"));
        _servers.push(task);
    }
    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mec021_url = format!("http://{}/mp", listener.local_addr()?);
    let app = Router::new()
        .route("/mp", axum::routing::post(mec021))
        .with_state(inbox.clone());
    _servers.push(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }));

    // Control first (it subscribes to the RAN once the RAN is up), at the RAN's port.
    let ran_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let ran_url = format!("https://{ran_addr}");
    let mut control_args: Vec<String> = [
        "control",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &work.join("control").display().to_string(),
        "--tls-dir",
        &pki_dir.display().to_string(),
        "--topology",
        &topo_path.display().to_string(),
        "--ran",
        &ran_url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    control_args.extend(host_args);
    let _ = std::fs::remove_dir_all(work.join("control"));
    let control = Daemon::spawn(
        &control_args,
        &work.join("control.log"),
        "ferry control: listening on ",
    )?;
    let ctx = Ctx {
        ran: ran_url.clone(),
        control: control.url.clone(),
        http,
        apps: Vec::new(),
        grid,
        inbox,
    };

    // Apps: onboard, instantiate on the host of each app UE's first cell, register.
    let setup = Instant::now();
    let appd = json!({
        "appDId": "bench", "appName": "bench", "appProvider": "ferry",
        "appSoftVersion": "1.0", "appDVersion": "1", "mecVersion": ["2.1.1"],
        "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": "cold"},
        "ferryContainer": {"args": [], "memoryMib": 16, "port": 8080}
    });
    let client =
        ferry_control::client::ControlClient::with_tls(&ctx.control, Some(operator.clone()));
    client
        .onboard(&appd, b"bench image")
        .await
        .context("onboarding")?;
    let app_ues: Vec<usize> = (0..n_apps).map(|i| i * args.ues / n_apps.max(1)).collect();
    let ctx = Arc::new(ctx);
    let mut apps = Vec::new();
    for chunk in app_ues.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for &ue in chunk {
            let ctx = ctx.clone();
            let host = ctx.grid[ues[ue].cell].host.clone();
            let address = ues[ue].address;
            let operator = operator.clone();
            set.spawn(async move {
                let c = ferry_control::client::ControlClient::with_tls(&ctx.control, Some(operator));
                let inst = c
                    .instantiate(
                        "bench",
                        None,
                        &ferry_control::client::Placement::Host(host),
                    )
                    .await
                    .context("instantiation")?;
                let id = inst["id"].as_str().unwrap_or_default().to_string();
                ctx.post(
                    &format!("{}/amsi/v1/app_mobility_services", ctx.control),
                    &json!({"serviceConsumerId": {"appInstanceId": id},
                        "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": address.to_string()},
                            "appMobilityServiceLevel": "APP_MOBILITY_WITHOUT_CONFIRMATION"}]}),
                )
                .await?;
                anyhow::Ok((ue, id))
            });
        }
        while let Some(r) = set.join_next().await {
            apps.push(r??);
        }
    }
    ctx.post(
        &format!("{}/amsi/v1/subscriptions", ctx.control),
        &json!({"subscriptionType": "MobilityProcedureSubscription",
            "callbackReference": mec021_url,
            "filterCriteria": {"mobilityStatus": ["INTERHOST_MOVEOUT_TRIGGERED",
                "INTERHOST_MOVEOUT_COMPLETED", "INTERHOST_MOVEOUT_FAILED"]}}),
    )
    .await?;
    let mut ctx = Arc::try_unwrap(ctx).map_err(|_| anyhow::anyhow!("setup tasks still run"))?;
    ctx.apps = apps;
    // Instantiation completes in the background: wait until every app runs somewhere.
    loop {
        let insts = ctx
            .get(&format!("{}/app_lcm/v1/app_instances", ctx.control))
            .await?;
        let placed = insts
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["ferryHost"].is_string())
            .count();
        if placed >= n_apps {
            break;
        }
        anyhow::ensure!(
            setup.elapsed() < Duration::from_secs(600),
            "only {placed} of {n_apps} apps instantiated after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "  {} apps instantiated and registered in {:.1} s",
        n_apps,
        setup.elapsed().as_secs_f64()
    );

    // The RAN: its mobility clock starts now.
    let ran_args: Vec<String> = [
        "ran",
        "--topology",
        &topo_path.display().to_string(),
        "--listen",
        &ran_addr.to_string(),
        "--tls-dir",
        &pki_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ran_started = Instant::now();
    let ran = Daemon::spawn(&ran_args, &work.join("ran.log"), "ferry ran: listening on ")?;
    loop {
        let subs = ctx
            .get(&format!("{}/rni/v2/subscriptions", ctx.ran))
            .await?;
        if subs["_links"]["subscription"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        anyhow::ensure!(
            ran_started.elapsed() < Duration::from_secs(60),
            "control did not subscribe to the RAN within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subscribed_after = ran_started.elapsed().as_secs_f64();
    eprintln!("  RAN up, control subscribed after {subscribed_after:.1} s");
    if args.walk_s > 0 && subscribed_after > STANDSTILL_S {
        eprintln!("  (after the walk began: its first moves reach control by reconciliation)");
    }
    let app_of: HashMap<Ipv4Addr, usize> = ctx
        .apps
        .iter()
        .map(|(ue, _)| (ues[*ue].address, *ue))
        .collect();
    let mut phases = Vec::new();

    // Phase 1: the RAN's own mobility.
    if args.walk_s > 0 {
        let walk_start = Duration::from_secs_f64(STANDSTILL_S);
        if let Some(wait) = walk_start.checked_sub(ran_started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let (c0, r0, t0, w0) = (
            usage(control.pid(), ticks),
            usage(ran.pid(), ticks),
            Instant::now(),
            SystemTime::now(),
        );
        let h0 = ctx.get(&format!("{}/ferry/ran/v1/stats", ctx.ran)).await?["handovers"]
            .as_u64()
            .unwrap_or(0);
        eprintln!("  walking {} s ...", args.walk_s);
        tokio::time::sleep(Duration::from_secs(args.walk_s) + Duration::from_millis(500)).await;
        let secs = t0.elapsed().as_secs_f64();
        let (c1, r1) = (usage(control.pid(), ticks), usage(ran.pid(), ticks));
        let stats = ctx.get(&format!("{}/ferry/ran/v1/stats", ctx.ran)).await?;
        let (missed, settle_s) = ctx.settle(Duration::from_secs(args.settle_s)).await?;
        let heard = ctx.heard();
        let w1 = SystemTime::now();
        let m = &stats["mobility"];
        eprintln!(
            "  RAN mobility: {} ticks, {:.2} ms of work per {} ms tick on average, {:.1} ms at most, {} late",
            m["ticks"], m["busyMsTotal"].as_f64().unwrap_or(0.0) / m["ticks"].as_f64().unwrap_or(1.0).max(1.0),
            m["tickMs"], m["maxTickMs"].as_f64().unwrap_or(0.0), m["lateTicks"]
        );
        phases.push(PhaseResult {
            name: format!("walk {} s ({} UEs moving)", args.walk_s, args.ues),
            seconds: secs,
            handovers: stats["handovers"].as_u64().unwrap_or(0) - h0,
            relocations_triggered: count(&heard, "INTERHOST_MOVEOUT_TRIGGERED", w0, w1),
            relocations_completed: count(&heard, "INTERHOST_MOVEOUT_COMPLETED", w0, w1),
            relocations_failed: count(&heard, "INTERHOST_MOVEOUT_FAILED", w0, w1),
            missed,
            settle_s,
            control_cpu_pct: (c1.cpu_s - c0.cpu_s) / secs * 100.0,
            control_rss_mib: c1.rss_mib,
            control_peak_mib: c1.peak_mib,
            ran_cpu_pct: (r1.cpu_s - r0.cpu_s) / secs * 100.0,
            ran_rss_mib: r1.rss_mib,
            ..PhaseResult::default()
        });
    }

    // Phase 2: forced handovers at the rate, with bursts.
    let mut cell_of = ctx.cells_now().await?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let n_cells = ctx.grid.len();
    let mut forced: Vec<Forced> = Vec::new();
    let per_tick = f64::from(args.rate) / 100.0;
    let burst_at: Vec<f64> = (1..=args.bursts)
        .map(|k| args.seconds as f64 * k as f64 / (args.bursts + 1) as f64)
        .collect();
    let mut next_burst = 0;
    let mut owed = 0.0;
    let mut refused = 0usize;
    let (c0, r0, w0) = (
        usage(control.pid(), ticks),
        usage(ran.pid(), ticks),
        SystemTime::now(),
    );
    let h0 = ctx.get(&format!("{}/ferry/ran/v1/stats", ctx.ran)).await?["handovers"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "  forcing {} handovers/s for {} s with {} bursts of {} ...",
        args.rate, args.seconds, args.bursts, args.burst
    );
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let pick = |n: usize, distinct: bool, cell_of: &mut Vec<usize>, rng: &mut Rng| {
        let mut moves = Vec::new();
        let mut chosen = std::collections::HashSet::new();
        while moves.len() < n {
            let ue = rng.below(cell_of.len());
            if distinct && !chosen.insert(ue) {
                continue;
            }
            let from = cell_of[ue];
            let to = (from + 1 + rng.below(n_cells - 1)) % n_cells;
            cell_of[ue] = to;
            moves.push((ue, from, to));
        }
        moves
    };
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        owed += per_tick;
        let mut batches = Vec::new();
        let n = owed as usize;
        owed -= n as f64;
        if n > 0 {
            batches.push((pick(n, false, &mut cell_of, &mut rng), false));
        }
        if next_burst < burst_at.len() && t0.elapsed().as_secs_f64() >= burst_at[next_burst] {
            next_burst += 1;
            batches.push((
                pick(args.burst.min(args.ues), true, &mut cell_of, &mut rng),
                true,
            ));
        }
        for (moves, burst) in batches {
            let body = json!({"handovers": moves.iter().map(|(ue, _, to)| json!({"ue": format!("u{ue}"), "cell": ctx.grid[*to].name})).collect::<Vec<_>>()});
            let v = ctx
                .post(&format!("{}/ferry/ran/v1/handovers", ctx.ran), &body)
                .await?;
            let at = v["at"]["seconds"]
                .as_u64()
                .map(|s| {
                    SystemTime::UNIX_EPOCH
                        + Duration::new(s, v["at"]["nanoSeconds"].as_u64().unwrap_or(0) as u32)
                })
                .unwrap_or_else(SystemTime::now);
            refused += v["refused"].as_array().map_or(0, Vec::len);
            for (ue, from, to) in moves {
                forced.push(Forced {
                    ue,
                    at,
                    moved_host: ctx.grid[from].host != ctx.grid[to].host,
                    burst,
                });
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (c1, r1) = (usage(control.pid(), ticks), usage(ran.pid(), ticks));
    let h1 = ctx.get(&format!("{}/ferry/ran/v1/stats", ctx.ran)).await?["handovers"]
        .as_u64()
        .unwrap_or(0);
    let (missed, settle_s) = ctx.settle(Duration::from_secs(args.settle_s)).await?;
    let heard = ctx.heard();
    let w1 = SystemTime::now();
    let in_phase: Vec<Heard> = heard.iter().filter(|h| h.at >= w0).cloned().collect();
    if refused > 0 {
        eprintln!("  ({refused} forced handovers refused by the RAN: a UE already in that cell)");
    }
    phases.push(PhaseResult {
        name: format!(
            "{}/s x {} s + {} x {} burst",
            args.rate, args.seconds, args.bursts, args.burst
        ),
        seconds: secs,
        handovers: h1 - h0,
        relocations_triggered: count(&heard, "INTERHOST_MOVEOUT_TRIGGERED", w0, w1),
        relocations_completed: count(&heard, "INTERHOST_MOVEOUT_COMPLETED", w0, w1),
        relocations_failed: count(&heard, "INTERHOST_MOVEOUT_FAILED", w0, w1),
        missed,
        settle_s,
        trigger_ms: latencies(
            &forced,
            &in_phase,
            "INTERHOST_MOVEOUT_TRIGGERED",
            &app_of,
            false,
        ),
        complete_ms: latencies(
            &forced,
            &in_phase,
            "INTERHOST_MOVEOUT_COMPLETED",
            &app_of,
            false,
        ),
        burst_trigger_ms: latencies(
            &forced,
            &in_phase,
            "INTERHOST_MOVEOUT_TRIGGERED",
            &app_of,
            true,
        ),
        burst_complete_ms: latencies(
            &forced,
            &in_phase,
            "INTERHOST_MOVEOUT_COMPLETED",
            &app_of,
            true,
        ),
        control_cpu_pct: (c1.cpu_s - c0.cpu_s) / secs * 100.0,
        control_rss_mib: c1.rss_mib,
        control_peak_mib: c1.peak_mib,
        ran_cpu_pct: (r1.cpu_s - r0.cpu_s) / secs * 100.0,
        ran_rss_mib: r1.rss_mib,
    });
    let ran_stats = ctx.get(&format!("{}/ferry/ran/v1/stats", ctx.ran)).await?;
    let follow = ctx
        .get(&format!("{}/ferry/control/v1/follow", ctx.control))
        .await?;
    drop(ran);
    drop(control);

    print_table(&args, n_apps, &phases, &ran_stats, &follow);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(&json!({
            "benchmark": "control",
            "ues": args.ues, "apps": n_apps, "hosts": args.hosts,
            "cells_per_host": args.cells_per_host, "rate": args.rate,
            "seconds": args.seconds, "burst": args.burst, "bursts": args.bursts,
            "walk_s": args.walk_s, "speed_m_s": args.speed_m_s,
            "phases": phases, "ran": ran_stats, "control_follow": follow,
        }))?,
    )?;
    println!("written to {}", args.out.display());
    let missed: usize = phases.iter().map(|p| p.missed).sum();
    Ok(if missed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The temporary work directory, for the Ctrl-C handler to remove.
static WORK: Mutex<Option<PathBuf>> = Mutex::new(None);

fn tempfile_dir() -> anyhow::Result<TempDir> {
    let base = std::env::temp_dir().join(format!("ferry-bench-control-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    *WORK.lock().unwrap_or_else(|e| e.into_inner()) = Some(base.clone());
    let _ = ctrlc::set_handler(|| {
        // The daemons die with this process (their parent-death signal).
        if let Some(d) = WORK.lock().ok().and_then(|mut w| w.take()) {
            let _ = std::fs::remove_dir_all(d);
        }
        eprintln!("\ninterrupted");
        std::process::exit(130);
    });
    Ok(TempDir(base))
}

/// A work directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fmt_lat(l: Option<(f64, f64, usize)>) -> String {
    match l {
        Some((p50, p99, _)) => format!("{p50:.0} / {p99:.0}"),
        None => "-".into(),
    }
}

fn print_table(
    args: &ControlArgs,
    apps: usize,
    phases: &[PhaseResult],
    ran: &Value,
    follow: &Value,
) {
    println!(
        "ferry bench control: {} UEs, {} apps ({:.0}%), {} hosts x {} cells, TLS on, fake hosts (instant migrations)",
        args.ues,
        apps,
        args.apps_share * 100.0,
        args.hosts,
        args.cells_per_host
    );
    println!(
        "| phase | handovers | relocations (completed/failed) | missed | settled in | handover -> TRIGGERED p50 / p99 ms | -> COMPLETED p50 / p99 ms | control CPU | control RSS (peak) | RAN CPU | RAN RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for p in phases {
        println!(
            "| {} | {} ({:.0}/s) | {} ({}/{}) | {} | {:.1} s | {} | {} | {:.0}% | {:.0} MiB ({:.0}) | {:.0}% | {:.0} MiB |",
            p.name,
            p.handovers,
            p.handovers as f64 / p.seconds,
            p.relocations_triggered,
            p.relocations_completed,
            p.relocations_failed,
            p.missed,
            p.settle_s,
            fmt_lat(p.trigger_ms),
            fmt_lat(p.complete_ms),
            p.control_cpu_pct,
            p.control_rss_mib,
            p.control_peak_mib,
            p.ran_cpu_pct,
            p.ran_rss_mib
        );
        if p.burst_trigger_ms.is_some() {
            println!(
                "|   of which the bursts' handovers | | | | | {} | {} | | | | |",
                fmt_lat(p.burst_trigger_ms),
                fmt_lat(p.burst_complete_ms)
            );
        }
    }
    let d = &ran["deliveries"][0];
    println!(
        "RAN -> control: {} notifications delivered, {} merged into later ones of the same UE, {} lost; control: {} moves from notifications, {} from reconciliation ({} reconciliations)",
        d["delivered"], d["merged"], d["lost"],
        follow["movesFromNotifications"], follow["movesFromReconciliation"], follow["reconciliations"]
    );
}
