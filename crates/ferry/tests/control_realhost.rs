//! `ferry control` driving a real `ferry host` (runc, the ferry-counter image): onboarding
//! imports the image on the host, instantiation runs the app at the allocated address,
//! operate stops and starts it, termination removes it. The control plane runs in the host's
//! network namespace and is driven from there; everything is removed on drop.

mod common;
mod shared;

use common::*;
use serde_json::{json, Value};
use shared::{sha256_hex, Daemon, BIN};
use std::process::Command;
use std::time::Duration;

/// `ferry control` inside a namespace, killed on drop.
struct ControlInNetns {
    daemon: Daemon,
    _state: tempfile::TempDir,
}

/// Control for `host` (over mutual TLS with the host's PKI, as `control`).
fn start_control(host: &TestHost) -> ControlInNetns {
    let state = tempfile::tempdir().unwrap();
    let pki = host.tls.clone().expect("test hosts run with TLS");
    issue_cert(
        &pki,
        &ferry_tls::Identity::Control,
        &[ferry_tls::San::Ip(std::net::Ipv4Addr::LOCALHOST.into())],
    );
    let (netns, host_api) = (&host.netns, host.api.trim_end_matches("/ferry/v1"));
    // `ip netns exec` execs the program: the child is the daemon itself.
    let daemon = Daemon::spawn(
        Command::new("ip")
            .args(["netns", "exec", netns, BIN, "control"])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--host",
                &format!("edge={host_api}"),
            ])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--tls-dir")
            .arg(&pki),
        "ferry control: listening on ",
        "https://",
        None,
    );
    ControlInNetns {
        daemon,
        _state: state,
    }
}

#[test]
fn control_runs_the_counter_on_a_real_host() {
    let host = TestHost::start();
    let control = start_control(&host);
    let http = host.http.clone();
    let api = |p: &str| control.daemon.api(p);
    let send = |r: reqwest::blocking::RequestBuilder| -> (u16, Value) {
        let r = r.send().expect("request");
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    };

    let image = std::fs::read(counter_image()).unwrap();
    let appd = json!({"appDId": "counter", "appName": "counter", "appProvider": "ferry",
        "appSoftVersion": "1", "appDVersion": "1",
        "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": "auto"},
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
    assert_eq!(
        s,
        202,
        "onboarding on a real host: {b}\n{}",
        host.daemon_log()
    );
    assert_eq!(host.get("/images/counter").0, 200, "the host has the image");

    let (s, i) = send(
        http.post(api("/app_lcm/v1/app_instances"))
            .json(&json!({"appDId": "counter"})),
    );
    assert_eq!(s, 201, "{i}");
    let id = i["id"].as_str().unwrap().to_string();
    let (s, b) = send(
        http.post(api(&format!("/app_lcm/v1/app_instances/{id}/instantiate")))
            .json(&json!({"selectedMECHostInfo": [{"hostName": "edge", "hostId": {}}]})),
    );
    assert_eq!(
        s,
        202,
        "instantiation on a real host: {b}\n{}",
        host.daemon_log()
    );
    let (_, c) = host.get(&format!("/containers/{id}"));
    assert_eq!(c["status"], "running", "{c}");
    // The app answers at the address the control plane gave it.
    let mut conn = host.connect("10.200.0.2:8080");
    let first = conn.get("/").expect("counter answers");
    assert!(first.is_object(), "{first}");

    let (s, b) = send(
        http.post(api(&format!("/app_lcm/v1/app_instances/{id}/operate")))
            .json(&json!({"changeStateTo": "STOPPED"})),
    );
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        host.get(&format!("/containers/{id}")).1["status"],
        "stopped"
    );
    let (s, b) = send(
        http.post(api(&format!("/app_lcm/v1/app_instances/{id}/terminate")))
            .json(&json!({"terminationType": "FORCEFUL"})),
    );
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        host.get(&format!("/containers/{id}")).0,
        404,
        "terminated: gone from the host"
    );
    std::thread::sleep(Duration::from_millis(100));
}
