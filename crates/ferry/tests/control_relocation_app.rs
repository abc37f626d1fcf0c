//! Relocation the ETSI application-driven way (AppD `ferryStateRelocation` = APPLICATION) with
//! real parts: two real `ferry host` daemons, the real `ferry ran` and `ferry control`, and the
//! real ferry-counter acting as a MEC 021 application. The counter registers with AMS and
//! subscribes to mobility procedures by itself (control gave it `MEC_API_ROOT`,
//! `MEC_APP_INSTANCE_ID`, `MEC_ASSOCIATE_ID`); on a forced handover it sends its counter and
//! ballast to the target instance that control started on the other host, and reports
//! USER_CONTEXT_TRANSFER_COMPLETED; control switches the traffic and removes the source.
//! Everything is removed on drop.

mod common;
mod realhost_support;
mod shared;

use common::*;
use realhost_support::*;
use serde_json::{json, Value};
use shared::Callback;
use std::time::{Duration, Instant};

const STATUSES: [&str; 3] = [
    "INTERHOST_MOVEOUT_TRIGGERED",
    "INTERHOST_MOVEOUT_COMPLETED",
    "INTERHOST_MOVEOUT_FAILED",
];

/// The AMS registrations naming `instance`.
fn registrations_of(cp: &ControlPlane, instance: &str) -> Vec<Value> {
    let (s, v) = cp.send(
        cp.http
            .get(cp.api("/amsi/v1/app_mobility_services"))
            .query(&[(
                "filter",
                format!("(eq,serviceConsumerId/appInstanceId,{instance})"),
            )]),
    );
    assert_eq!(s, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

/// The callbacks of every MobilityProcedure subscription at AMS.
fn mobility_callbacks(cp: &ControlPlane) -> Vec<String> {
    let list = cp
        .get("/amsi/v1/subscriptions?subscriptionType=mobility_proc")
        .1;
    list["subscription"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["href"].as_str())
        .map(|href| cp.send(cp.http.get(href)).1["callbackReference"].clone())
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

/// Waits until the app at `address` has its registration and its subscription (it makes them
/// itself, right after it starts).
fn wait_app_ready(cp: &ControlPlane, instance: &str, address: &str) {
    let callback = format!("http://{address}:8080/mec/mobility_procedure");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let regs = registrations_of(cp, instance);
        let subscribed = mobility_callbacks(cp).contains(&callback);
        if regs.len() == 1 && subscribed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not register and subscribe: {regs:?}, callbacks {:?}",
            mobility_callbacks(cp)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn address_of(cp: &ControlPlane, instance: &str) -> (String, String) {
    let i = cp.get(&format!("/app_lcm/v1/app_instances/{instance}")).1;
    (
        i["ferryHost"].as_str().unwrap_or("").to_string(),
        i["ferryAddress"].as_str().unwrap_or("").to_string(),
    )
}

/// Can a client in the gateway open a connection to `addr` (within a second)?
fn answers(pair: &Pair, addr: &str) -> bool {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    in_netns(&pair.gw, move || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
}

/// Two real hosts, RAN and control; a MobilityProcedure watcher for ue1; the counter
/// onboarded in APPLICATION mode and instantiated for ue1 on edge-a, registered and
/// subscribed by itself.
struct Setup {
    // Drop order: control plane, then the hosts and namespaces.
    watcher: Callback,
    cp: ControlPlane,
    _dir: tempfile::TempDir,
    pair: Pair,
    id: String,
    source_addr: String,
}

fn setup() -> Setup {
    let pair = Pair::start();
    let dir = tempfile::tempdir().unwrap();
    // On the gateway's link address, so the apps on both hosts reach the MEC APIs there
    // (control tells them: MEC_API_ROOT is its listen address).
    let cp = ControlPlane::start(&pair, dir.path(), "10.99.1.1:0");
    let watcher = recorder(&pair.gw);
    let (s, b) = cp.post(
        "/amsi/v1/subscriptions",
        &json!({"subscriptionType": "MobilityProcedureSubscription",
            "callbackReference": watcher.url("/mp"),
            "filterCriteria": {"associateId": [{"type": "UE_IPv4_ADDRESS", "value": UE}],
                "mobilityStatus": STATUSES}}),
    );
    assert_eq!(s, 201, "{b}");

    cp.onboard(
        &json!({"appDId": "counter", "appName": "counter", "appProvider": "ferry",
        "appSoftVersion": "1", "appDVersion": "1",
        "ferryStateRelocation": {"mode": "APPLICATION"},
        "ferryContainer": {"args": ["--port", "8080", "--ballast-mib", "16"],
            "memoryMib": 128, "port": 8080}}),
    );
    let id = cp.instantiate_for_ue(&pair, "counter");
    let (host, source_addr) = address_of(&cp, &id);
    assert_eq!(host, "edge-a");
    wait_app_ready(&cp, &id, &source_addr);
    let reg = &registrations_of(&cp, &id)[0];
    let dev = &reg["deviceInformation"][0];
    assert_eq!(dev["associateId"]["value"], UE, "{reg}");
    assert_eq!(
        dev["appMobilityServiceLevel"],
        "APP_MOBILITY_WITH_CONFIRMATION"
    );
    assert_eq!(dev["contextTransferState"], "NOT_TRANSFERRED");
    Setup {
        watcher,
        cp,
        _dir: dir,
        pair,
        id,
        source_addr,
    }
}

/// The statuses the watcher got, after waiting for `n` and a while for more.
fn statuses(watcher: &Callback, n: usize) -> Vec<Value> {
    watcher.wait_blocking("/mp", n, Duration::from_secs(40));
    // No further notification follows.
    std::thread::sleep(Duration::from_millis(500));
    watcher.on("/mp").into_iter().map(|r| r.body).collect()
}

fn status_names(got: &[Value]) -> Vec<&str> {
    got.iter()
        .map(|n| n["mobilityStatus"].as_str().unwrap_or(""))
        .collect()
}

#[test]
fn the_app_moves_its_own_context_between_real_hosts() {
    let Setup {
        watcher,
        cp,
        pair,
        id,
        source_addr,
        ..
    } = &setup();

    // A client uses the app: the state to carry over.
    let mut conn = pair.connect(&format!("{source_addr}:8080"));
    let mut last = Value::Null;
    for _ in 0..7 {
        last = conn.get("/").expect("counter answers");
    }
    let before = conn.get("/verify").unwrap();
    assert_eq!(before["ok"], true, "{before}");
    assert_eq!(last["counter"], 7);

    let t0 = Instant::now();
    cp.handover("b1");
    let rel = cp.wait_relocation(0, 90);
    let total = t0.elapsed();
    assert_eq!(
        rel["phase"],
        "COMPLETED",
        "{rel}\n{}\n{}",
        pair.a.daemon_log(),
        pair.b.daemon_log()
    );
    assert_eq!(rel["mode"], "APPLICATION");

    // MEC 021 at a real subscriber: TRIGGERED (with where the target instance listens),
    // then COMPLETED.
    let got = statuses(watcher, 2);
    assert_eq!(status_names(&got), &STATUSES[..2], "{got:?}");
    let target = &got[0]["targetAppInfo"];
    assert_eq!(target["appInstanceId"], id.as_str());
    let ip = &target["commInterface"]["ipAddresses"][0];
    let target_addr = ip["host"].as_str().unwrap().to_string();
    assert_eq!(ip["port"], 8080);
    assert_ne!(
        &target_addr, source_addr,
        "the target instance has its own address"
    );

    // The instance now runs on edge-b, at the target instance's address, once.
    assert_eq!(
        address_of(cp, id),
        ("edge-b".to_string(), target_addr.clone())
    );
    assert_eq!(
        pair.whereabouts(id),
        (None, Some("running".to_string())),
        "the source container is gone, the target runs"
    );
    assert!(
        conn.get("/").is_err(),
        "the source instance no longer serves"
    );
    assert!(
        !answers(pair, &format!("{source_addr}:8080")),
        "nothing answers at the old address"
    );

    // The counter goes on from the source's value, with the source's ballast.
    let mut conn = pair.connect(&format!("{target_addr}:8080"));
    let next = conn.get("/").expect("the target instance answers");
    assert_eq!(next["counter"], 8, "continues from the source's 7: {next}");
    let after = conn.get("/verify").unwrap();
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["checksum"], before["checksum"], "the same ballast");
    assert_ne!(after["started_at_ms"], Value::Null);

    // The registration says the app moved its context; the target instance adopted it (still
    // one) and subscribed; the source's subscription went with it.
    let regs = registrations_of(cp, id);
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(
        regs[0]["deviceInformation"][0]["contextTransferState"],
        "USER_CONTEXT_TRANSFER_COMPLETED"
    );
    wait_app_ready(cp, id, &target_addr);
    let callbacks = mobility_callbacks(cp);
    assert!(
        !callbacks.iter().any(|c| c.contains(source_addr.as_str())),
        "{callbacks:?}"
    );

    let phase_ms = |p: &str| {
        rel["phaseTimesMs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e[0] == p)
            .and_then(|e| e[1].as_u64())
            .unwrap_or(0)
    };
    eprintln!(
        "APPLICATION relocation: handover to COMPLETED seen by the test {} ms; TRIGGERED to COMPLETED {} ms (context transfer {} ms); platform downtime {} ms",
        total.as_millis(),
        phase_ms("COMPLETED") - phase_ms("TRIGGERED"),
        phase_ms("SWITCHING_TRAFFIC") - phase_ms("TRANSFERRING_STATE"),
        rel["platformDowntimeMs"]
    );

    // And back: the target instance does the same when the UE returns.
    cp.handover("a1");
    let rel = cp.wait_relocation(1, 90);
    assert_eq!(rel["phase"], "COMPLETED", "{rel}");
    let (host, back_addr) = address_of(cp, id);
    assert_eq!(host, "edge-a");
    assert_eq!(pair.whereabouts(id), (Some("running".to_string()), None));
    let mut conn = pair.connect(&format!("{back_addr}:8080"));
    assert_eq!(conn.get("/").unwrap()["counter"], 9);
    let v = conn.get("/verify").unwrap();
    assert_eq!(
        (v["ok"].clone(), v["checksum"].clone()),
        (json!(true), before["checksum"].clone())
    );
    assert_eq!(
        watcher
            .wait_blocking("/mp", 4, Duration::from_secs(10))
            .len(),
        4
    );
}

#[test]
fn a_target_host_that_is_down_fails_the_relocation_and_the_app_serves_on() {
    let mut s = setup();
    let mut conn = s.pair.connect(&format!("{}:8080", s.source_addr));
    for _ in 0..3 {
        conn.get("/").expect("counter answers");
    }
    let before = conn.get("/verify").unwrap();
    // edge-b's daemon is down: control cannot start the target instance there.
    s.pair.b.stop_daemon();
    s.cp.handover("b1");
    let rel = s.cp.wait_relocation(0, 90);
    s.pair.b.spawn_daemon();
    assert_eq!(rel["phase"], "FAILED", "{rel}");
    assert!(
        rel["error"].as_str().is_some_and(|e| e.contains("edge-b")),
        "{rel}"
    );
    let got = statuses(&s.watcher, 2);
    assert_eq!(
        status_names(&got),
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_FAILED"],
        "{got:?}"
    );
    // The app stopped changing its state at TRIGGERED (answering 503) while it waited for a
    // target instance; FAILED made it serve on: same instance, same state, going on.
    assert_eq!(
        address_of(&s.cp, &s.id),
        ("edge-a".to_string(), s.source_addr.clone())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        let v = conn.get("/").expect("the source instance still serves");
        if v["counter"].is_u64() || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(next["counter"], 4, "{next}");
    let after = conn.get("/verify").unwrap();
    assert_eq!(after["ok"], true);
    assert_eq!(after["checksum"], before["checksum"]);
    assert_eq!(after["started_at_ms"], before["started_at_ms"]);
    assert_eq!(
        s.pair.whereabouts(&s.id),
        (Some("running".to_string()), None),
        "one instance, on edge-a"
    );
    assert_eq!(
        registrations_of(&s.cp, &s.id)[0]["deviceInformation"][0]["contextTransferState"],
        "NOT_TRANSFERRED"
    );
}
