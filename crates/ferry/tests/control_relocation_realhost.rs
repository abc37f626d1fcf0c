//! The whole relocation chain with real parts: two real `ferry host` daemons (runc, CRIU) in
//! their namespaces, the real `ferry ran` and `ferry control` in the gateway namespace between
//! them, the gateway's route as the data plane. A forced handover makes the control plane
//! migrate the counter app to the other host; the client's open connection and the app's
//! state survive. Everything is removed on drop.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOPOLOGY: &str = r#"
name = "relocreal"

[[hosts]]
name = "edge-a"
address = "10.99.1.2"

[[hosts]]
name = "edge-b"
address = "10.99.2.2"

[[cells]]
name = "a1"
ecgi = { mcc = "001", mnc = "01", cell_id = "00000a1" }
position = { latitude = 43.7300, longitude = 7.4200 }
radius_m = 400.0
host = "edge-a"

[[cells]]
name = "b1"
ecgi = { mcc = "001", mnc = "01", cell_id = "00000b1" }
position = { latitude = 43.7300, longitude = 7.4400 }
radius_m = 400.0
host = "edge-b"

[[ues]]
name = "ue1"
address = "10.150.0.1"
cell = "a1"
"#;

/// A daemon started with `ip netns exec` (the child is the daemon), killed on drop.
struct Daemon {
    child: Child,
    url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_in(netns: &str, args: &[String], banner: &str) -> Daemon {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_ferry")])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let url = line
        .trim()
        .strip_prefix(banner)
        .unwrap_or_default()
        .to_string();
    let d = Daemon { child, url };
    assert!(
        d.url.starts_with("http://"),
        "daemon did not start: {line:?}"
    );
    d
}

fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, data).unwrap();
    let out = Command::new("sha256sum").arg(&p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn handover_migrates_the_app_between_real_hosts() {
    let pair = Pair::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("topology.toml");
    std::fs::write(&topo, TOPOLOGY).unwrap();
    // The data plane: the gateway's route for the app address (control runs in the gateway).
    let route = dir.path().join("route.sh");
    std::fs::write(
        &route,
        "#!/bin/sh\ncase \"$2\" in edge-a) via=10.99.1.2;; edge-b) via=10.99.2.2;; *) exit 1;; esac\nexec ip route replace \"$1/32\" via \"$via\"\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&route)
        .status()
        .unwrap();

    let ran = start_in(
        &pair.gw,
        &[
            "ran".into(),
            "--no-trace".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--topology".into(),
            topo.display().to_string(),
        ],
        "ferry ran: listening on ",
    );
    let state = dir.path().join("control");
    let control = start_in(
        &pair.gw,
        &[
            "control".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--host".into(),
            "edge-a=http://10.99.1.2:7100".into(),
            "--host".into(),
            "edge-b=http://10.99.2.2:7100".into(),
            "--topology".into(),
            topo.display().to_string(),
            "--ran".into(),
            ran.url.clone(),
            "--data-plane-cmd".into(),
            route.display().to_string(),
        ],
        "ferry control: listening on ",
    );
    let http = in_netns(&pair.gw, || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
    });
    let api = |p: &str| format!("{}{p}", control.url);
    let send = |r: reqwest::blocking::RequestBuilder| -> (u16, Value) {
        let r = r.send().expect("request");
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    };

    let image = std::fs::read(counter_image()).unwrap();
    let appd = json!({"appDId": "counter", "appName": "counter", "appProvider": "ferry",
        "appSoftVersion": "1", "appDVersion": "1",
        "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": "cold"},
        "ferryContainer": {"args": ["--port", "8080"], "memoryMib": 64, "port": 8080}});
    let content = ferry_control::client::build_package(&appd, &image).unwrap();
    let (s, p) = send(http.post(api("/app_pkgm/v1/app_packages")).json(&json!({
        "appPkgName": "counter", "appPkgVersion": "1",
        "checksum": {"algorithm": "SHA-256", "hash": sha256_hex(&content)}})));
    assert_eq!(s, 201, "{p}");
    let pkg = p["id"].as_str().unwrap();
    let (s, b) = send(
        http.put(api(&format!(
            "/app_pkgm/v1/app_packages/{pkg}/package_content"
        )))
        .body(content),
    );
    assert_eq!(s, 202, "onboarding: {b}");

    let (s, i) = send(
        http.post(api("/app_lcm/v1/app_instances"))
            .json(&json!({"appDId": "counter"})),
    );
    assert_eq!(s, 201, "{i}");
    let id = i["id"].as_str().unwrap().to_string();
    let (s, b) = send(
        http.post(api(&format!("/app_lcm/v1/app_instances/{id}/instantiate")))
            .json(&json!({"ferryAssociateId": {"type": "UE_IPv4_ADDRESS", "value": "10.150.0.1"}})),
    );
    assert_eq!(s, 202, "instantiation: {b}\n{}", pair.a.daemon_log());
    assert_eq!(pair.whereabouts(&id).0.as_deref(), Some("running"));

    let mut conn = pair.connect("10.200.0.2:8080");
    let first = conn.get("/").expect("counter answers");
    let before = conn.get("/verify").unwrap();
    assert_eq!(before["ok"], true, "{before}");

    // The UE moves to b1: the control plane follows.
    let (s, b) = send(
        http.post(format!("{}/ferry/ran/v1/ues/ue1/handover", ran.url))
            .json(&json!({"cell": "b1"})),
    );
    assert_eq!(s, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut rel = Value::Null;
    while Instant::now() < deadline {
        rel = send(http.get(api("/ferry/control/v1/relocations"))).1;
        let phase = rel[0]["phase"].as_str().unwrap_or("");
        if phase == "COMPLETED" || phase == "FAILED" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        rel[0]["phase"],
        "COMPLETED",
        "{rel}\n{}\n{}",
        pair.a.daemon_log(),
        pair.b.daemon_log()
    );
    assert_eq!(
        pair.whereabouts(&id),
        (None, Some("running".to_string())),
        "the app runs on b only"
    );
    let inst = send(http.get(api(&format!("/app_lcm/v1/app_instances/{id}")))).1;
    assert_eq!(inst["ferryHost"], "edge-b");
    assert!(rel[0]["migrationReport"]["bytes_on_wire"].as_u64().unwrap() > 0);
    assert!(rel[0]["platformDowntimeMs"].as_u64().is_some(), "{rel}");
    eprintln!(
        "relocation: technique {} total {} ms frozen {} ms platform downtime {} ms bytes {}",
        rel[0]["migrationReport"]["technique"],
        rel[0]["migrationReport"]["timings"]["total_ms"],
        rel[0]["migrationReport"]["timings"]["frozen_ms"],
        rel[0]["platformDowntimeMs"],
        rel[0]["migrationReport"]["bytes_on_wire"]
    );

    // Same connection, same process, the counter went on.
    let next = conn
        .get("/")
        .expect("the connection survived the relocation");
    assert_eq!(
        next["counter"].as_u64().unwrap(),
        first["counter"].as_u64().unwrap() + 1
    );
    let after = conn.get("/verify").unwrap();
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["started_at_ms"], before["started_at_ms"]);
    drop(conn);
    drop(control);
    drop(ran);
}
