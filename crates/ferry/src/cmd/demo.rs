//! `ferry demo` (what `make demo` runs): the app follows its user across the emulated testbed.
//!
//! Brings up `examples/three-hosts.toml` (three MEC hosts, three cells, one UE walking
//! cell1 -> cell2 -> cell3), runs ferry-counter for the UE on its serving host, and has a
//! client in the UE's namespace poll it every 5 ms. It subscribes to the RAN's MEC 012
//! CellChange notifications like any MEC 012 consumer; on each handover to a cell served by
//! another host it migrates the container there (`ferry host` migration API) and steers the
//! app's address to it (the data plane). One line per relocation, then proof of continuity.
//!
//! The relocation decision here is the demo's own, a stand-in until `ferry control`'s
//! relocation controller (MEC 021) drives it. `--single-host` runs the foundation's demo.

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

const APP_IP: &str = "10.200.0.42";

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
    let result = story(&args, &topo, &image, &testbed);
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
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let ns = ferry_runtime::net::netns_path(ue_netns);
    let file = std::fs::File::open(&ns).with_context(|| format!("open {}", ns.display()))?;
    Ok(std::thread::spawn(move || {
        if nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return;
        }
        let addr: std::net::SocketAddr = format!("{APP_IP}:8080").parse().expect("literal address");
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

/// Receives MEC 012 CellChangeNotifications on a local HTTP endpoint; returns its URL.
fn start_callback(tx: mpsc::Sender<Value>) -> anyhow::Result<String> {
    use ferry_ran::axum;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!(
        "http://{}/notifications/cell_change",
        listener.local_addr()?
    );
    let tx = Arc::new(Mutex::new(tx));
    let app = axum::Router::new().route(
        "/notifications/cell_change",
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

fn story(
    args: &Args,
    topo: &ferry_ran::topology::Topology,
    image: &[u8],
    testbed: &Testbed,
) -> anyhow::Result<ExitCode> {
    let state = ferry_testbed::State::load(&testbed.name)?;
    let plan = state.plan;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let api = |host: &str| -> anyhow::Result<String> {
        let h = plan
            .hosts
            .iter()
            .find(|h| h.name == host)
            .context("unknown host")?;
        Ok(format!("http://{}", h.api))
    };
    let ue = plan.ues.first().context("the topology has no UE")?.clone();
    let cell_host = |cell: &str| topo.cell(cell).map(|c| c.host.clone());
    let ecgi_cell = |cell_id: &str| {
        topo.cells
            .iter()
            .find(|c| c.ecgi.cell_id == cell_id)
            .map(|c| c.name.clone())
    };

    // Onboarding, as MEC 010-2 will do it: the image goes to every host.
    for h in &plan.hosts {
        let r = http
            .post(format!(
                "{}/ferry/v1/images?name=counter&replace=true",
                api(&h.name)?
            ))
            .body(image.to_vec())
            .send()?;
        ensure!(
            r.status().is_success(),
            "image import on {}: {}",
            h.name,
            r.text().unwrap_or_default()
        );
    }
    let mut host = cell_host(&ue.start_cell).context("the UE's cell has no host")?;
    let r = http
        .post(format!("{}/ferry/v1/containers", api(&host)?))
        .json(&json!({"name": "counter", "image": "counter", "ip": APP_IP, "memory_mib": 64 + 2 * args.ballast_mib,
                      "args": ["--ballast-mib", args.ballast_mib.to_string(), "--dirty-mib-s", args.dirty_mib_s.to_string(), "--port", "8080"]}))
        .send()?;
    ensure!(
        r.status().is_success(),
        "create: {}",
        r.text().unwrap_or_default()
    );
    let r = http
        .post(format!("{}/ferry/v1/containers/counter/start", api(&host)?))
        .send()?;
    ensure!(
        r.status().is_success(),
        "start: {}",
        r.text().unwrap_or_default()
    );
    ferry_testbed::route_app(&plan, APP_IP.parse()?, &host)?;
    println!(
        "\napp       ferry-counter for {} ({}) at {APP_IP}, {} MiB state rewritten at {} MiB/s, on {host}",
        ue.name, ue.address, args.ballast_mib, args.dirty_mib_s
    );

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let client = start_client(&ue.netns, stop.clone(), samples.clone())?;
    println!(
        "client    in {}'s namespace, polling every 5 ms (20 ms timeout)",
        ue.name
    );

    let (tx, rx) = mpsc::channel();
    let callback = start_callback(tx)?;
    let sub = http
        .post(format!("http://{}/rni/v2/subscriptions", plan.ran_api))
        .json(&json!({"subscriptionType": "CellChangeSubscription", "callbackReference": callback,
                      "filterCriteriaAssocHo": {"associateId": [{"type": 1, "value": ue.address.to_string()}]}}))
        .send()?;
    ensure!(
        sub.status().as_u16() == 201,
        "MEC 012 subscription: {}",
        sub.text().unwrap_or_default()
    );
    println!(
        "RAN       subscribed to MEC 012 CellChange for {} at {}\n",
        ue.address, plan.ran_api
    );

    let trace_end = ue_trace_end(topo, &ue.name);
    let deadline = Instant::now() + Duration::from_secs_f64(trace_end + 15.0);
    let mut relocations = 0;
    let mut latency_checks = Vec::new();
    while Instant::now() < deadline {
        let Ok(n) = rx.recv_timeout(Duration::from_millis(200)) else {
            if relocations > 0 && Instant::now() > deadline - Duration::from_secs(12) {
                break; // the trace is over and the app has settled
            }
            continue;
        };
        let trg = n["trgEcgi"][0]["cellId"]
            .as_str()
            .and_then(ecgi_cell)
            .unwrap_or_default();
        let src = n["srcEcgi"]["cellId"]
            .as_str()
            .and_then(ecgi_cell)
            .unwrap_or_default();
        let Some(target) = cell_host(&trg) else {
            continue;
        };
        println!(
            "handover  {} {src} -> {trg} (MEC 012 CellChangeNotification, hoStatus {})",
            ue.name, n["hoStatus"]
        );
        if target == host {
            println!("          {trg} is served by {host} too: nothing to move");
            continue;
        }
        // The UE now reaches the app over the longer path: sample the latency before moving.
        std::thread::sleep(Duration::from_millis(700));
        let before = {
            let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
            median_rtt(
                &s,
                Instant::now() - Duration::from_millis(600),
                Instant::now(),
            )
        };
        let t0 = Instant::now();
        let r = http
            .post(format!(
                "{}/ferry/v1/containers/counter/migrate",
                api(&host)?
            ))
            .json(&json!({"target": api(&target)?, "technique": args.technique}))
            .send()?;
        let ok = r.status().is_success();
        let report: Value = r.json()?;
        let report = if ok { report } else { report["report"].clone() };
        if !ok {
            println!(
                "          migration {host} -> {target} FAILED ({}): the app stays on {host}",
                report["error"]
            );
            continue;
        }
        ferry_testbed::route_app(&plan, APP_IP.parse()?, &target)?;
        let t1 = Instant::now();
        std::thread::sleep(Duration::from_millis(1500));
        let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
        let down = downtime(
            &s,
            t0 - Duration::from_millis(100),
            t1 + Duration::from_millis(1000),
        );
        let after = median_rtt(&s, t1 + Duration::from_millis(500), Instant::now());
        relocations += 1;
        println!(
            "relocate  {host} -> {target}  technique {}  downtime {} ms (client)  total {} ms  {:.1} MiB moved  latency {} -> {}",
            report["technique"].as_str().unwrap_or("?"),
            down.as_millis(),
            report["timings"]["total_ms"],
            report["bytes_on_wire"].as_f64().unwrap_or(0.0) / 1048576.0,
            fmt_ms(before),
            fmt_ms(after),
        );
        latency_checks.push((before, after));
        host = target;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();

    // Continuity: the counter never reset and the process is the one that started.
    let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let good: Vec<&Sample> = s.iter().filter(|s| s.rtt.is_some()).collect();
    ensure!(!good.is_empty(), "the client never reached the app");
    let starts: std::collections::BTreeSet<u64> = good.iter().map(|s| s.started_at_ms).collect();
    let monotonic = good.windows(2).all(|w| w[1].counter > w[0].counter);
    let verify: Value = in_netns(&ue.netns, || {
        let addr = format!("{APP_IP}:8080").parse().ok()?;
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
    println!(
        "latency     back down after every relocation: {latency_dropped} ({} relocations, app now on {host})",
        relocations
    );
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
