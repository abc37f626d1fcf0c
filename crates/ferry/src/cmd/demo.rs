//! `ferry demo` (what `make demo` runs): the app follows its user across the emulated testbed.
//!
//! Brings up `examples/three-hosts.toml` (three MEC hosts, three cells, one UE walking
//! cell1 -> cell2 -> cell3, handed over by the RAN's radio model) and `ferry control` (the MEC orchestrator and platform services)
//! on it, onboards ferry-counter as a MEC 010-2 app package whose AppD asks for
//! `CONTAINER_MIGRATION`, and instantiates it for the UE at its serving host. A client in the
//! UE's namespace polls the app every 5 ms. The demo only watches: `ferry control` follows the
//! RAN's MEC 012 handovers and relocates the app by live migration, and the demo prints the
//! MEC 021 MobilityProcedure notifications it subscribed to, one line per relocation (downtime
//! as the client saw it), then proof of continuity. `--single-host` runs the foundation's demo.
//!
//! The operator's dashboard (control's `/ferry/dashboard/`) shows the same story live: the
//! demo prints a login link to it first, and tells control each relocation's downtime as
//! the UE's client saw it.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};

use super::demo_single;
use super::local::in_netns;

#[derive(clap::Args)]
pub struct Args {
    /// The ferry-counter OCI image archive (`make counter-image` builds it).
    #[arg(long, default_value = "build/ferry-counter.oci.tar")]
    image: PathBuf,
    /// The topology to run on.
    #[arg(long, default_value = "examples/three-hosts.toml")]
    topology: PathBuf,
    /// Ballast of the counter, in MiB.
    #[arg(long, default_value_t = 32)]
    ballast_mib: u32,
    /// How fast the counter rewrites its ballast, in MiB/s.
    #[arg(long, default_value_t = 2.0)]
    dirty_mib_s: f64,
    /// Migration technique (auto picks from state size and kernel features).
    #[arg(long, default_value = "auto")]
    technique: String,
    /// The foundation's demo instead: checkpoint and restore on one host.
    #[arg(long)]
    single_host: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.single_host {
        return demo_single::run(demo_single::Args {
            image: args.image,
            ballast_mib: args.ballast_mib.max(64),
            dirty_mib_s: args.dirty_mib_s,
        });
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root (namespaces, containers, CRIU): run it with sudo");
    }
    let image = std::fs::read(&args.image).with_context(|| {
        format!(
            "cannot read {} (build it with `make counter-image`)",
            args.image.display()
        )
    })?;
    let topo = ferry_ran::topology::Topology::from_file(&args.topology)?;
    let testbed = Testbed::up(&args.topology, &topo.name)?;
    let result = story(&args, &image, &testbed);
    testbed.down();
    result
}

/// The testbed, brought down on drop and on Ctrl-C.
struct Testbed {
    name: String,
}

fn ferry() -> Command {
    Command::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ferry")))
}

impl Testbed {
    fn up(file: &std::path::Path, name: &str) -> anyhow::Result<Testbed> {
        let n = name.to_string();
        let _ = ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: bringing the testbed down");
            let _ = ferry()
                .args(["testbed", "down", "--name", &n])
                .stdout(Stdio::null())
                .status();
            std::process::exit(130);
        });
        println!("== ferry demo: the app follows its user across MEC hosts ==\n");
        let out = ferry()
            .args(["testbed", "up", "-f"])
            .arg(file)
            .stderr(Stdio::null())
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!(
                "testbed up failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Testbed {
            name: name.to_string(),
        })
    }

    fn down(&self) {
        let out = ferry()
            .args(["testbed", "down", "--name", &self.name])
            .stderr(Stdio::null())
            .output();
        if let Ok(o) = out {
            print!("\n{}", String::from_utf8_lossy(&o.stdout));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = ferry()
            .args(["testbed", "down", "--name", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One poll of the app by the UE's client.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    rtt: Option<Duration>,
    counter: u64,
    started_at_ms: u64,
}

/// Polls the app every 5 ms (20 ms timeout) from the UE's namespace until `stop`.
fn start_client(
    ue_netns: &str,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let ns = ferry_runtime::net::netns_path(ue_netns);
    let file = std::fs::File::open(&ns).with_context(|| format!("open {}", ns.display()))?;
    Ok(std::thread::spawn(move || {
        if nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return;
        }
        let mut conn: Option<std::net::TcpStream> = None;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let reply = poll_once(&mut conn, addr);
            let sample = match reply {
                Some(v) => Sample {
                    at: t,
                    rtt: Some(t.elapsed()),
                    counter: v["counter"].as_u64().unwrap_or(0),
                    started_at_ms: v["started_at_ms"].as_u64().unwrap_or(0),
                },
                None => {
                    conn = None; // a timed-out request must not answer the next one
                    Sample {
                        at: t,
                        rtt: None,
                        counter: 0,
                        started_at_ms: 0,
                    }
                }
            };
            if let Ok(mut s) = samples.lock() {
                s.push(sample);
            }
            std::thread::sleep(Duration::from_millis(5).saturating_sub(t.elapsed()));
        }
    }))
}

fn poll_once(conn: &mut Option<std::net::TcpStream>, addr: std::net::SocketAddr) -> Option<Value> {
    get(conn, addr, "/", Duration::from_millis(20))
}

/// `GET path` on a keep-alive connection (opened if needed); `None` on any failure.
fn get(
    conn: &mut Option<std::net::TcpStream>,
    addr: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> Option<Value> {
    use std::io::{Read, Write};
    if conn.is_none() {
        let s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.set_nodelay(true).ok()?;
        *conn = Some(s);
    }
    let s = conn.as_mut()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())?;
            if body.len() >= len {
                return serde_json::from_str(&body[..len]).ok();
            }
        }
    }
}

/// Longest gap between good replies within `[from, to]` (the client's clock).
fn downtime(samples: &[Sample], from: Instant, to: Instant) -> Duration {
    let mut last_ok: Option<Instant> = None;
    let mut worst = Duration::ZERO;
    for s in samples.iter().filter(|s| s.at >= from && s.at <= to) {
        if s.rtt.is_some() {
            if let Some(prev) = last_ok {
                worst = worst.max(s.at - prev);
            }
            last_ok = Some(s.at);
        }
    }
    worst
}

/// Median round trip of good replies within `[from, to]`.
fn median_rtt(samples: &[Sample], from: Instant, to: Instant) -> Option<Duration> {
    let mut v: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .filter_map(|s| s.rtt)
        .collect();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// Receives notifications (MEC 021 MobilityProcedure) on a local HTTP endpoint; returns its URL.
fn start_callback(tx: mpsc::Sender<Value>) -> anyhow::Result<String> {
    use ferry_ran::axum;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/notifications/mobility", listener.local_addr()?);
    let tx = Arc::new(Mutex::new(tx));
    let app = axum::Router::new().route(
        "/notifications/mobility",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                if let Ok(t) = tx.lock() {
                    let _ = t.send(v);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    std::thread::spawn(move || {
        rt.block_on(async move {
            let _ = axum::serve(listener, app).await;
        })
    });
    Ok(url)
}

/// `ferry control` on the testbed, stopped (and its state removed) on drop.
struct ControlPlane {
    child: std::process::Child,
    url: String,
    state_dir: PathBuf,
}

impl ControlPlane {
    fn start(
        topology: &std::path::Path,
        plan: &ferry_testbed::Plan,
    ) -> anyhow::Result<ControlPlane> {
        use std::io::BufRead;
        let state_dir =
            std::env::temp_dir().join(format!("ferry-demo-control-{}", std::process::id()));
        let exe = std::env::current_exe()?;
        let mut cmd = ferry();
        // On the management link, so the hosts can tell it the moment a migration commits
        // (traffic then switches at once) and the apps reach their MEC APIs.
        let mgmt_ip = plan
            .ran_api
            .rsplit_once(':')
            .map_or("127.0.0.1", |(ip, _)| ip);
        let listen = format!("{mgmt_ip}:0");
        cmd.args(["control", "--listen", &listen, "--state-dir"])
            .arg(&state_dir)
            .arg("--topology")
            .arg(topology)
            .args(["--ran", &format!("https://{}", plan.ran_api)])
            .arg("--data-plane-cmd")
            .arg(format!(
                "{} testbed route --name {}",
                exe.display(),
                plan.name
            ));
        // The testbed's hosts serve mutual TLS only: control calls them with its certificate.
        cmd.arg("--tls-dir")
            .arg(ferry_testbed::plan::pki_dir(&plan.name));
        // The dashboard links to the last benchmark results, if `make bench` made some here.
        if let Ok(cwd) = std::env::current_dir() {
            cmd.arg("--bench-results").arg(cwd.join("bench-results"));
        }
        for h in &plan.hosts {
            cmd.args(["--host", &format!("{}=https://{}", h.name, h.api)]);
        }
        std::fs::create_dir_all(&state_dir)?;
        let log = std::fs::File::create(state_dir.join("control.log"))?;
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let url = line
            .trim()
            .strip_prefix("ferry control: listening on ")
            .unwrap_or_default()
            .to_string();
        let cp = ControlPlane {
            child,
            url,
            state_dir,
        };
        ensure!(
            cp.url.starts_with("https://"),
            "ferry control did not start: {line:?}"
        );
        Ok(cp)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // SIGTERM, so it deletes its MEC 012 subscription at the RAN.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn story(args: &Args, image: &[u8], testbed: &Testbed) -> anyhow::Result<ExitCode> {
    let plan = ferry_testbed::State::load(&testbed.name)?.plan;
    let ue = plan.ues.first().context("the topology has no UE")?.clone();
    // Every call of the demo is small and answered at once by a healthy control plane.
    // As the operator: control serves TLS and admits the operator's certificate.
    let operator = ferry_testbed::up::operator_tls(&testbed.name)
        .context("the testbed has no operator certificate")?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .use_preconfigured_tls((*operator).clone())
        .build()?;

    let control = ControlPlane::start(&args.topology, &plan)?;
    println!(
        "
control   ferry control at {} (MEC 010-2, 011, 021), consuming MEC 012 from the RAN",
        control.url
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = ferry_control::client::ControlClient::with_tls(&control.url, Some(operator));
    match rt.block_on(client.dashboard_link()) {
        Ok((link, secs)) => println!(
            "dashboard {link}\n          (open it within {secs} s, it works once; the first handover comes about 20 s after the testbed is up.\n           The page is served with the testbed's CA, {}/ca.crt: import it in the browser or accept the warning)",
            ferry_testbed::plan::pki_dir(&plan.name)
        ),
        Err(e) => println!("dashboard unavailable: {e}"),
    }
    let appd = json!({
        "appDId": "counter", "appName": "counter", "appProvider": "ferry", "appSoftVersion": "1", "appDVersion": "1",
        "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": args.technique},
        "ferryContainer": {"args": ["--ballast-mib", args.ballast_mib.to_string(), "--dirty-mib-s", args.dirty_mib_s.to_string(), "--port", "8080"],
                           "memoryMib": 64 + 2 * args.ballast_mib, "port": 8080},
    });
    rt.block_on(client.onboard(&appd, image))
        .map_err(|e| anyhow::anyhow!("onboarding: {e}"))?;
    println!("onboard   MEC 010-2 package 'counter' (AppD: ferryStateRelocation CONTAINER_MIGRATION/{}), image on every host", args.technique);
    let placement = ferry_control::client::Placement::Ue(ue.address.to_string());
    let inst = rt
        .block_on(client.instantiate("counter", Some("counter"), &placement))
        .map_err(|e| anyhow::anyhow!("instantiation: {e}"))?;
    let app_ip = inst["ferryAddress"]
        .as_str()
        .context("the instance has no address")?
        .to_string();
    let instance = inst["id"].as_str().unwrap_or_default().to_string();
    let mut host = inst["ferryHost"].as_str().unwrap_or("?").to_string();
    println!(
        "app       instance {instance} for {} ({}) at {app_ip}, {} MiB state rewritten at {} MiB/s, on {host} (the UE's serving host)",
        ue.name, ue.address, args.ballast_mib, args.dirty_mib_s
    );

    let (tx, rx) = mpsc::channel();
    let callback = start_callback(tx)?;
    let sub = http
        .post(format!("{}/amsi/v1/subscriptions", control.url))
        .json(&json!({"subscriptionType": "MobilityProcedureSubscription", "callbackReference": callback,
            "filterCriteria": {"associateId": [{"type": "UE_IPv4_ADDRESS", "value": ue.address.to_string()}],
                "mobilityStatus": ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED", "INTERHOST_MOVEOUT_FAILED"]}}))
        .send()?;
    ensure!(
        sub.status().as_u16() == 201,
        "MEC 021 subscription: {}",
        sub.text().unwrap_or_default()
    );
    println!(
        "AMS       subscribed to MEC 021 MobilityProcedure notifications for {}",
        ue.address
    );

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let addr: std::net::SocketAddr = format!("{app_ip}:8080").parse()?;
    let poller = start_client(&ue.netns, addr, stop.clone(), samples.clone())?;
    println!(
        "client    in {}'s namespace, polling every 5 ms (20 ms timeout)\n",
        ue.name
    );

    let topo = ferry_ran::topology::Topology::from_file(&args.topology)?;
    let deadline = Instant::now() + Duration::from_secs_f64(ue_trace_end(&topo, &ue.name) + 20.0);
    let (mut relocations, mut failed) = (0, 0);
    let mut latency_checks = Vec::new();
    let mut triggered_at = Instant::now();
    let wanted = expected_host_changes(&topo, &ue.name);
    let mut flagged = std::collections::BTreeSet::new();
    let mut looked = Instant::now();
    while Instant::now() < deadline && relocations + failed < wanted.max(1) {
        let Ok(n) = rx.recv_timeout(Duration::from_millis(200)) else {
            // No MEC 021 outcome is sent while a relocation needs an operator: look at the
            // records now and then, and say so plainly.
            if looked.elapsed() > Duration::from_secs(2) {
                looked = Instant::now();
                for r in needing_operator(&http, &control.url) {
                    if flagged.insert(r["id"].as_str().unwrap_or("?").to_string()) {
                        println!(
                            "NEEDS OPERATOR  relocation {} ({} -> {}): {}\n                settle it: ferry control settle {} --to source|target",
                            r["id"].as_str().unwrap_or("?"),
                            r["sourceHost"].as_str().unwrap_or("?"),
                            r["targetHost"].as_str().unwrap_or("?"),
                            r["advice"].as_str().unwrap_or(""),
                            r["id"].as_str().unwrap_or("?"),
                        );
                    }
                }
            }
            continue;
        };
        let status = n["mobilityStatus"].as_str().unwrap_or("?").to_string();
        match status.as_str() {
            "INTERHOST_MOVEOUT_TRIGGERED" => {
                triggered_at = Instant::now();
                println!(
                    "MEC 021   {status} for {} (the UE handed over; its app is on {host})",
                    ue.address
                );
            }
            "INTERHOST_MOVEOUT_COMPLETED" => {
                let done = Instant::now();
                std::thread::sleep(Duration::from_millis(1500));
                let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
                let down = downtime(&s, triggered_at, done + Duration::from_millis(1000));
                let after = median_rtt(&s, done + Duration::from_millis(500), Instant::now());
                let records: Value = http
                    .get(format!("{}/ferry/control/v1/relocations", control.url))
                    .send()?
                    .json()?;
                let rec = records
                    .as_array()
                    .and_then(|r| r.last())
                    .cloned()
                    .unwrap_or_default();
                let report = &rec["migrationReport"];
                // The UE's latency to its app on the old host, between the handover and the
                // freeze (the migration's prepare phase).
                let prepare =
                    Duration::from_millis(report["timings"]["prepare_ms"].as_u64().unwrap_or(50));
                let before = median_rtt(&s, triggered_at, triggered_at + prepare);
                let target = http
                    .get(format!(
                        "{}/app_lcm/v1/app_instances/{instance}",
                        control.url
                    ))
                    .send()?
                    .json::<Value>()?["ferryHost"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                relocations += 1;
                if let Some(id) = rec["id"].as_str() {
                    // The record keeps what the UE's client saw beside the platform's figure.
                    if let Err(e) = rt.block_on(client.client_downtime(id, down.as_millis() as u64))
                    {
                        eprintln!("control did not take the client's downtime: {e}");
                    }
                }
                println!("MEC 021   {status}");
                println!(
                    "relocate  {host} -> {target}  technique {}  downtime {} ms (client; platform {} ms, app frozen {} ms)  total {} ms  {:.1} MiB moved  latency {} -> {}",
                    report["technique"].as_str().unwrap_or("?"),
                    down.as_millis(),
                    rec["platformDowntimeMs"],
                    report["timings"]["frozen_ms"],
                    report["timings"]["total_ms"],
                    report["bytes_on_wire"].as_f64().unwrap_or(0.0) / 1048576.0,
                    fmt_ms(before),
                    fmt_ms(after),
                );
                latency_checks.push((before, after));
                host = target;
            }
            _ => {
                failed += 1;
                println!("MEC 021   {status}: the app stays on {host} with its state");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();

    continuity(
        &samples,
        &ue.netns,
        addr,
        relocations,
        &latency_checks,
        &host,
    )
}

/// The control plane's relocation records that need an operator.
fn needing_operator(http: &reqwest::blocking::Client, control: &str) -> Vec<Value> {
    http.get(format!("{control}/ferry/control/v1/relocations"))
        .send()
        .and_then(|r| r.json::<Value>())
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["phase"] == "NEEDS_OPERATOR")
        .collect()
}

/// Proves the state survived: the counter never reset, one process start time, ballast intact.
fn continuity(
    samples: &Mutex<Vec<Sample>>,
    ue_netns: &str,
    addr: std::net::SocketAddr,
    relocations: usize,
    latency_checks: &[(Option<Duration>, Option<Duration>)],
    host: &str,
) -> anyhow::Result<ExitCode> {
    let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let good: Vec<&Sample> = s.iter().filter(|s| s.rtt.is_some()).collect();
    ensure!(!good.is_empty(), "the client never reached the app");
    let starts: std::collections::BTreeSet<u64> = good.iter().map(|s| s.started_at_ms).collect();
    let monotonic = good.windows(2).all(|w| w[1].counter > w[0].counter);
    let verify: Value = in_netns(ue_netns, move || {
        get(&mut None, addr, "/verify", Duration::from_secs(10))
    })?
    .unwrap_or(Value::Null);
    let latency_dropped = latency_checks
        .iter()
        .all(|(b, a)| matches!((b, a), (Some(b), Some(a)) if a < b));
    println!(
        "\ncontinuity  {} replies, counter {} -> {} and never reset: {}, one process start time: {}, ballast intact: {}",
        good.len(),
        good[0].counter,
        good[good.len() - 1].counter,
        monotonic,
        starts.len() == 1,
        verify["ok"]
    );
    println!("latency     back down after every relocation: {latency_dropped} ({relocations} relocations, app now on {host})");
    ensure!(
        relocations > 0,
        "no relocation happened (did the trace run?)"
    );
    ensure!(
        monotonic && starts.len() == 1 && verify["ok"] == true,
        "state was not preserved"
    );
    Ok(ExitCode::SUCCESS)
}

fn fmt_ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "?".into())
}

/// How many times the UE's serving host changes on its way: by its trace's steps, or along
/// its waypoints by the cell nearest to it (what the radio model's A3 follows when the cells
/// are alike, as in the example), sampled every 100 ms.
fn expected_host_changes(topo: &ferry_ran::topology::Topology, ue: &str) -> usize {
    let Some(u) = topo.ues.iter().find(|u| u.name == ue) else {
        return 0;
    };
    let host_of = |cell: &str| topo.cell(cell).map(|c| c.host.clone());
    let mut hosts: Vec<Option<String>> = vec![host_of(&u.cell)];
    hosts.extend(u.trace.iter().map(|s| host_of(&s.cell)));
    if !u.waypoints.is_empty() {
        let mut waypoints = u.waypoints.clone();
        waypoints.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let end = waypoints.last().map_or(0.0, |w| w.at_s);
        let nearest = |lat: f64, lon: f64| {
            topo.cells
                .iter()
                .map(|c| {
                    let d = ferry_ran::mobility::distance_m(
                        lat,
                        lon,
                        c.position.latitude,
                        c.position.longitude,
                    );
                    (d, c.host.clone())
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, h)| h)
        };
        for k in 0..=((end * 10.0).ceil() as usize) {
            if let Some((lat, lon)) = ferry_ran::mobility::position_at(&waypoints, k as f64 / 10.0)
            {
                hosts.push(nearest(lat, lon));
            }
        }
    }
    hosts.dedup();
    hosts.len().saturating_sub(1)
}

fn ue_trace_end(topo: &ferry_ran::topology::Topology, ue: &str) -> f64 {
    topo.ues
        .iter()
        .find(|u| u.name == ue)
        .map(|u| {
            let t = u.trace.iter().map(|s| s.at_s).fold(0.0, f64::max);
            let w = u.waypoints.iter().map(|s| s.at_s).fold(0.0, f64::max);
            t.max(w)
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, ok: bool) -> Sample {
        Sample {
            at,
            rtt: ok.then(|| Duration::from_millis(1)),
            counter: 0,
            started_at_ms: 0,
        }
    }

    #[test]
    fn the_example_ue_changes_host_twice() {
        let topo = ferry_ran::topology::Topology::parse(include_str!(
            "../../../../examples/three-hosts.toml"
        ))
        .unwrap();
        assert_eq!(expected_host_changes(&topo, "ue1"), 2);
        assert_eq!(expected_host_changes(&topo, "nobody"), 0);
    }

    #[test]
    fn downtime_is_the_longest_gap_between_good_replies() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let s = vec![
            sample(ms(0), true),
            sample(ms(5), true),
            sample(ms(10), false),
            sample(ms(30), false),
            sample(ms(45), true),
            sample(ms(50), true),
        ];
        assert_eq!(downtime(&s, t, ms(100)), Duration::from_millis(40));
        assert_eq!(downtime(&s, ms(44), ms(100)), Duration::from_millis(5));
    }
}
