//! The whole relocation chain with real parts: two real `ferry host` daemons (runc, CRIU) in
//! their namespaces, the real `ferry ran` and `ferry control` in the gateway namespace between
//! them, the gateway's route as the data plane. A forced handover makes the control plane
//! migrate the counter app to the other host; the client's open connection and the app's
//! state survive. Everything is removed on drop.

mod common;
mod realhost_support;
mod shared;

use common::*;
use realhost_support::*;
use serde_json::json;

/// On loopback, the hosts cannot call the control plane back: traffic switches when the
/// control plane, following the migration, sees it committed or ended.
#[test]
fn handover_migrates_the_app_between_real_hosts() {
    handover_migrates(
        "127.0.0.1:0",
        json!({"mode": "CONTAINER_MIGRATION", "technique": "cold"}),
        &["--port", "8080"],
        false,
    );
}

/// Reachable from the hosts, the control plane hears of the commit and switches traffic
/// then: for post-copy, while memory still moves and before the source cleaned up.
#[test]
fn post_copy_relocation_switches_traffic_at_the_commit() {
    handover_migrates(
        "10.99.1.1:0",
        json!({"mode": "CONTAINER_MIGRATION", "technique": "post-copy"}),
        &[
            "--port",
            "8080",
            "--ballast-mib",
            "32",
            "--dirty-mib-s",
            "8",
        ],
        true,
    );
}

/// Hosts over mutual TLS: control orders them with its own certificate, the hosts talk to
/// each other with theirs, and the relocation still moves the app with its connection.
#[test]
fn relocation_between_hosts_over_mutual_tls() {
    let pki = tempfile::tempdir().unwrap();
    ferry_tls::Pki::init(pki.path(), "test", ferry_tls::Validity::days(1)).unwrap();
    let pair = Pair::start_secure(pki.path());
    handover_migrates_on(
        pair,
        "10.99.1.1:0",
        json!({"mode": "CONTAINER_MIGRATION", "technique": "cold"}),
        &["--port", "8080"],
        true,
    );
}

fn handover_migrates(listen: &str, relocation: serde_json::Value, args: &[&str], callback: bool) {
    handover_migrates_on(Pair::start(), listen, relocation, args, callback)
}

fn handover_migrates_on(
    pair: Pair,
    listen: &str,
    relocation: serde_json::Value,
    args: &[&str],
    callback: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&pair, dir.path(), listen);
    cp.onboard(
        &json!({"appDId": "counter", "appName": "counter", "appProvider": "ferry",
        "appSoftVersion": "1", "appDVersion": "1",
        "ferryStateRelocation": relocation,
        "ferryContainer": {"args": args, "memoryMib": 128, "port": 8080}}),
    );
    let id = cp.instantiate_for_ue(&pair, "counter");
    assert_eq!(pair.whereabouts(&id).0.as_deref(), Some("running"));

    let mut conn = pair.connect("10.200.0.2:8080");
    let first = conn.get("/").expect("counter answers");
    let before = conn.get("/verify").unwrap();
    assert_eq!(before["ok"], true, "{before}");

    // The UE moves to b1: the control plane follows.
    cp.handover("b1");
    let rel = cp.wait_relocation(0, 90);
    assert_eq!(
        rel["phase"],
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
    let inst = cp.get(&format!("/app_lcm/v1/app_instances/{id}")).1;
    assert_eq!(inst["ferryHost"], "edge-b");
    assert!(rel["migrationReport"]["bytes_on_wire"].as_u64().unwrap() > 0);
    assert!(rel["platformDowntimeMs"].as_u64().is_some(), "{rel}");
    // With the callback the commit is always heard; without it, following the migration sees
    // the commit only when a poll falls between commit and cleanup: either is right then.
    if callback {
        assert_eq!(rel["trafficSwitchedAtCommit"], true, "{rel}");
    }
    if rel["trafficSwitchedAtCommit"] == true {
        // Switched before the memory had all moved and the source was cleaned up.
        let t = &rel["migrationReport"]["timings"];
        assert!(
            rel["platformDowntimeMs"].as_u64().unwrap()
                < t["frozen_ms"].as_u64().unwrap()
                    + t["lazy_completion_ms"].as_u64().unwrap_or(0)
                    + t["cleanup_ms"].as_u64().unwrap(),
            "{rel}"
        );
    }
    eprintln!(
        "relocation: technique {} total {} ms frozen {} ms platform downtime {} ms bytes {}",
        rel["migrationReport"]["technique"],
        rel["migrationReport"]["timings"]["total_ms"],
        rel["migrationReport"]["timings"]["frozen_ms"],
        rel["platformDowntimeMs"],
        rel["migrationReport"]["bytes_on_wire"]
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
    drop(cp);
}
