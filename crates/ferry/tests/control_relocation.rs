//! The relocation controller of `ferry control`, end to end between real processes: the real
//! `ferry ran` (MEC 012 CellChange over HTTP, forced handovers), the real `ferry control`
//! binary, fake MEC hosts that record (and may delay or fail) the migrate calls, and a real AMS
//! subscriber callback.

mod control_support;
mod shared;

use control_support::*;
use ferry_control::axum::{
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    Router,
};
use ferry_wire::migration::{
    MigrationId, MigrationReport, MigrationView, Outcome, OutgoingState, OutgoingView, Phase,
    Technique, Timings,
};
use ferry_wire::ProblemType;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two zones: edge-a (cell a1) and edge-b (cell b1); ue1 (10.150.0.1) starts in a1.
fn topology() -> String {
    two_zone_topology("reloctest", "10.100.0.11", "10.100.0.12")
}

const UE: &str = "10.150.0.1";

// ---- a fake host whose migrations can be slow or fail ----

#[derive(Clone, Default)]
struct Knobs {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
    /// How long a migration runs (as on a real host, it goes on when the caller goes away).
    migrate_delay: Arc<Mutex<Duration>>,
    migrate_fails: Arc<Mutex<bool>>,
    /// The migrations started here, by id.
    migrations: Arc<Mutex<HashMap<String, FakeMigration>>>,
    /// Migrations in flight now, and the most seen at once.
    in_flight: Arc<Mutex<(usize, usize)>>,
}

/// A migration of the fake host: when it started, how long it runs, whether it fails, and
/// whether it still counts as in flight.
struct FakeMigration {
    started: Instant,
    delay: Duration,
    fails: bool,
    in_flight: bool,
}

struct Host {
    url: String,
    knobs: Knobs,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source host's view of a migration, as `ferry host` serves it.
fn migration_view(
    id: &str,
    container: &str,
    target: &str,
    state: OutgoingState,
    error: Option<&str>,
) -> Value {
    let id: MigrationId = id.parse().unwrap();
    let report = state.is_final().then(|| MigrationReport {
        outcome: state.outcome().unwrap_or(Outcome::Completed),
        timings: Timings {
            frozen_ms: Some(40),
            total_ms: 120,
            ..Timings::default()
        },
        pages_bytes: 1 << 20,
        bytes_on_wire: 1 << 20,
        failed_phase: error.map(|_| Phase::Restore),
        error: error.map(str::to_string),
        ..MigrationReport::new(
            id.clone(),
            container,
            "edge-a",
            target,
            Technique::PreCopy,
            Technique::PreCopy,
        )
    });
    serde_json::to_value(MigrationView::Outgoing(OutgoingView {
        id,
        container: container.into(),
        target: target.into(),
        requested: Technique::PreCopy,
        technique: Technique::PreCopy,
        state,
        phase: if state.is_final() {
            Phase::Cleanup
        } else {
            Phase::Dump
        },
        error: error.map(str::to_string),
        advice: None,
        updated_at_ms: 0,
        moved_bytes: 0,
        report: report.map(Box::new),
    }))
    .unwrap()
}

async fn host_call(
    State(k): State<Knobs>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    k.calls
        .lock()
        .unwrap()
        .push((method.to_string(), path.clone(), v.clone()));
    if let Some(rest) = path.strip_suffix("/migrate") {
        let container = rest.rsplit('/').next().unwrap_or("").to_string();
        let id = v["id"].as_str().unwrap_or("m-fake").to_string();
        {
            let mut f = k.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        let delay = *k.migrate_delay.lock().unwrap();
        let fails = *k.migrate_fails.lock().unwrap();
        k.migrations.lock().unwrap().insert(
            id.clone(),
            FakeMigration {
                started: Instant::now(),
                delay,
                fails,
                in_flight: true,
            },
        );
        let target = v["target"].as_str().unwrap_or("").to_string();
        let mut view = migration_view(&id, &container, &target, OutgoingState::Preparing, None);
        view["target"] = json!(target);
        return (StatusCode::ACCEPTED, view.to_string());
    }
    if let Some(id) = path.strip_prefix("/ferry/v1/migrations/") {
        let mut all = k.migrations.lock().unwrap();
        let Some(m) = all.get_mut(id) else {
            return (
                StatusCode::NOT_FOUND,
                json!({"type": ProblemType::UnknownMigration.uri(), "status": 404}).to_string(),
            );
        };
        let calls = k.calls.lock().unwrap().clone();
        let (container, target) = calls
            .iter()
            .find(|c| c.2["id"] == id)
            .map(|c| {
                let name =
                    c.1.trim_end_matches("/migrate")
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                (name, c.2["target"].as_str().unwrap_or("").to_string())
            })
            .unwrap_or_default();
        if m.started.elapsed() < m.delay {
            let view = migration_view(id, &container, &target, OutgoingState::Frozen, None);
            return (StatusCode::OK, view.to_string());
        }
        if m.in_flight {
            m.in_flight = false;
            k.in_flight.lock().unwrap().0 -= 1;
        }
        let view = if m.fails {
            migration_view(
                id,
                &container,
                &target,
                OutgoingState::RolledBack,
                Some("restore failed on the target"),
            )
        } else {
            migration_view(id, &container, &target, OutgoingState::Completed, None)
        };
        return (StatusCode::OK, view.to_string());
    }
    success(&method, &path, &body)
}

impl Host {
    async fn start() -> Host {
        let knobs = Knobs::default();
        let app = Router::new()
            .fallback(host_call)
            .layer(ferry_control::axum::extract::DefaultBodyLimit::disable())
            .with_state(knobs.clone());
        let (url, task) = serve_as_host(app).await;
        Host { url, knobs, task }
    }

    /// "METHOD PATH" of every call after the onboarding / instantiation ones.
    fn calls_matching(&self, suffix: &str) -> Vec<(String, String, Value)> {
        self.knobs
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.1.ends_with(suffix))
            .cloned()
            .collect()
    }

    fn migrations(&self) -> Vec<Value> {
        self.calls_matching("/migrate")
            .into_iter()
            .map(|c| c.2)
            .collect()
    }
}

// ---- the RAN ----

async fn handover(ran: &Daemon, cell: &str) {
    let r = post_json(
        &format!("{}/ferry/ran/v1/ues/ue1/handover", ran.url),
        &json!({"cell": cell}),
    )
    .await;
    assert_eq!(r.0, 200, "handover: {}", r.2);
}

/// Waits until the RAN lists `n` CellChange subscriptions.
async fn wait_ran_subscriptions(ran: &Daemon, n: usize) {
    let mut got = 0;
    for _ in 0..100 {
        let l = get(&format!("{}/rni/v2/subscriptions", ran.url)).await.2;
        got = l["_links"]["subscription"].as_array().map_or(0, Vec::len);
        if got == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the RAN has {got} subscriptions, expected {n}");
}

/// Everything one test needs: RAN, two hosts, control, an instance on edge-a, an AMS
/// registration for ue1 at `level`, a MobilityProcedure subscriber.
struct Setup {
    _d: tempfile::TempDir,
    dir: std::path::PathBuf,
    ran: Daemon,
    a: Host,
    b: Host,
    c: ControlProcess,
    cb: Callback,
    instance: String,
    registration: String,
}

async fn setup(level: &str, mode: &str) -> Setup {
    setup_with(level, mode, &[]).await
}

/// [`setup`] with more arguments for control.
async fn setup_with(level: &str, mode: &str, control_args: &[&str]) -> Setup {
    let (a, b) = (Host::start().await, Host::start().await);
    let (d, dir) = state_dir();
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, topology()).unwrap();
    let ran = start_ran(&topo);
    let args = vec![
        "--host".to_string(),
        format!("edge-a={}", a.url),
        "--host".into(),
        format!("edge-b={}", b.url),
        "--topology".into(),
        topo.display().to_string(),
        "--ran".into(),
        ran.url.clone(),
    ];
    let mut args = args;
    args.extend(control_args.iter().map(|a| a.to_string()));
    let c = ControlProcess::start(&dir, &args);
    wait_ran_subscriptions(&ran, 1).await;

    let mut d_json = appd("counter");
    d_json["ferryStateRelocation"]["mode"] = json!(mode);
    onboard_appd(&c, &d_json).await;
    let instance = instantiate(&c, "counter", "edge-a").await;

    let reg = post_json(
        &c.api("/amsi/v1/app_mobility_services"),
        &json!({
            "serviceConsumerId": {"appInstanceId": instance},
            "deviceInformation": [{
                "associateId": {"type": "UE_IPv4_ADDRESS", "value": UE},
                "appMobilityServiceLevel": level,
                "contextTransferState": "NOT_TRANSFERRED"
            }]
        }),
    )
    .await;
    assert_eq!(reg.0, 201, "{}", reg.2);
    let registration = reg.2["appMobilityServiceId"].as_str().unwrap().to_string();
    let cb = Callback::start().await;
    let s = post_json(
        &c.api("/amsi/v1/subscriptions"),
        &json!({
            "subscriptionType": "MobilityProcedureSubscription",
            "callbackReference": cb.url("/mp"),
            // Without mobilityStatus the spec's default is TRIGGERED only.
            "filterCriteria": {"associateId": [{"type": "UE_IPv4_ADDRESS", "value": UE}],
                "mobilityStatus": ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED",
                    "INTERHOST_MOVEOUT_FAILED"]}
        }),
    )
    .await;
    assert_eq!(s.0, 201, "{}", s.2);
    Setup {
        _d: d,
        dir,
        ran,
        a,
        b,
        c,
        cb,
        instance,
        registration,
    }
}

impl Setup {
    async fn host_of_instance(&self) -> Value {
        get(&self
            .c
            .api(&format!("/app_lcm/v1/app_instances/{}", self.instance)))
        .await
        .2["ferryHost"]
            .clone()
    }

    async fn statuses(&self, n: usize, secs: u64) -> Vec<String> {
        self.cb
            .wait("/mp", n, Duration::from_secs(secs))
            .await
            .iter()
            .map(|r| r.body["mobilityStatus"].as_str().unwrap_or("").to_string())
            .collect()
    }

    async fn relocations(&self) -> Vec<Value> {
        get(&self.c.api("/ferry/control/v1/relocations"))
            .await
            .2
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn put_context_state(&self, state: &str) {
        let r = put_json(
            &self.c.api(&format!(
                "/amsi/v1/app_mobility_services/{}",
                self.registration
            )),
            &json!({
                "appMobilityServiceId": self.registration,
                "serviceConsumerId": {"appInstanceId": self.instance},
                "deviceInformation": [{
                    "associateId": {"type": "UE_IPv4_ADDRESS", "value": UE},
                    "appMobilityServiceLevel": "APP_MOBILITY_WITH_CONFIRMATION",
                    "contextTransferState": state
                }]
            }),
        )
        .await;
        assert_eq!(r.0, 200, "{}", r.2);
    }
}

#[tokio::test]
async fn handover_migrates_the_container_and_switches_traffic() {
    let s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    // Control asks the RAN for IN_PREPARATION (1) and COMPLETED (3), and only logs the first:
    // nothing moves until the handover completes.
    let callback = s.c.api("/ferry/control/v1/notifications/rni/cell_change");
    let (ours, _) = ran_subscriptions_to(&s.ran, &callback).await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    let sub = get(&ours[0]).await.2;
    assert_eq!(
        sub["filterCriteriaAssocHo"]["hoStatus"],
        json!([1, 3]),
        "{sub}"
    );
    let ecgi = |id: &str| json!({"plmn": {"mcc": "001", "mnc": "01"}, "cellId": id});
    let preparing = post_json(
        &callback,
        &json!({"notificationType": "CellChangeNotification", "hoStatus": 1,
            "associateId": [{"type": 1, "value": UE}],
            "srcEcgi": ecgi("00000a1"), "trgEcgi": [ecgi("00000b1")]}),
    )
    .await;
    assert_eq!(preparing.0, 204, "{}", preparing.2);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(s.cb.on("/mp").is_empty(), "IN_PREPARATION moved something");
    assert!(s.a.migrations().is_empty());
    handover(&s.ran, "b1").await;
    let st = s.statuses(2, 20).await;
    assert_eq!(
        st,
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED"],
        "{:?}",
        s.relocations().await
    );
    let first = &s.cb.on("/mp")[0].body;
    assert_eq!(first["targetAppInfo"]["appInstanceId"], s.instance.as_str());
    assert_eq!(first["associateId"][0]["value"], UE);

    let m = s.a.migrations();
    assert_eq!(m.len(), 1, "exactly one migrate call at the source: {m:?}");
    assert_eq!(m[0]["target"], s.b.url.as_str());
    assert_eq!(m[0]["technique"], "pre-copy");
    assert!(s.b.migrations().is_empty());
    assert_eq!(
        s.a.calls_matching(&format!("/containers/{}/migrate", s.instance))
            .len(),
        1
    );
    assert_eq!(s.host_of_instance().await, "edge-b");
    let rules = get(&s.c.api(&format!(
        "/mec_app_support/v1/applications/{}/traffic_rules",
        s.instance
    )))
    .await
    .2;
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ferryHost"] == "edge-b"),
        "the traffic rule steers to edge-b: {rules}"
    );
    let rel = s.relocations().await;
    assert_eq!(rel.len(), 1, "{rel:?}");
    assert_eq!(rel[0]["phase"], "COMPLETED");
    assert_eq!(rel[0]["sourceHost"], "edge-a");
    assert_eq!(rel[0]["targetHost"], "edge-b");
    assert_eq!(rel[0]["migrationReport"]["bytes_on_wire"], 1048576);
    // frozen_ms (40) plus the traffic switch.
    assert!(
        rel[0]["platformDowntimeMs"].as_u64().unwrap() >= 40,
        "{rel:?}"
    );
    // The context is marked transferred on the app's behalf.
    let reg = get(&s.c.api(&format!(
        "/amsi/v1/app_mobility_services/{}",
        s.registration
    )))
    .await
    .2;
    assert_eq!(
        reg["deviceInformation"][0]["contextTransferState"],
        "USER_CONTEXT_TRANSFER_COMPLETED"
    );
}

#[tokio::test]
async fn not_allowed_keeps_the_instance_where_it_is() {
    let s = setup("APP_MOBILITY_NOT_ALLOWED", "CONTAINER_MIGRATION").await;
    handover(&s.ran, "b1").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(s.a.migrations().is_empty());
    assert!(s.cb.on("/mp").is_empty(), "no mobility procedure");
    assert_eq!(s.host_of_instance().await, "edge-a");
    assert!(s.relocations().await.is_empty());
    // A malformed MEC 012 notification is a 400 ProblemDetails naming the problem.
    let bad = post_json(
        &s.c.api("/ferry/control/v1/notifications/rni/cell_change"),
        &json!({"notificationType": "CellChangeNotification", "hoStatus": "done"}),
    )
    .await;
    assert_problem(&bad, 400);
}

#[tokio::test]
async fn with_confirmation_waits_for_the_app() {
    let s = setup("APP_MOBILITY_WITH_CONFIRMATION", "CONTAINER_MIGRATION").await;
    handover(&s.ran, "b1").await;
    assert_eq!(s.statuses(1, 10).await, ["INTERHOST_MOVEOUT_TRIGGERED"]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        s.a.migrations().is_empty(),
        "no migration before the app confirms"
    );
    assert_eq!(s.host_of_instance().await, "edge-a");
    s.put_context_state("NOT_TRANSFERRED").await; // the app's confirmation
    let st = s.statuses(2, 20).await;
    assert_eq!(st[1], "INTERHOST_MOVEOUT_COMPLETED");
    assert_eq!(s.a.migrations().len(), 1);
    assert_eq!(s.host_of_instance().await, "edge-b");
}

#[tokio::test]
async fn application_mode_waits_for_the_context_transfer() {
    let s = setup("APP_MOBILITY_WITH_CONFIRMATION", "APPLICATION").await;
    handover(&s.ran, "b1").await;
    assert_eq!(s.statuses(1, 10).await, ["INTERHOST_MOVEOUT_TRIGGERED"]);
    // A fresh instance runs on the target for the app to move its context into.
    for _ in 0..50 {
        if !s
            .b
            .calls_matching(&format!("/containers/{}/start", s.instance))
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = s.b.calls_matching("/containers");
    assert_eq!(created.len(), 1, "created on edge-b");
    // The target instance has its own address (the source must reach it), announced in
    // TRIGGERED, and the platform's environment.
    let spec = &created[0].2;
    let source_address = get(&s
        .c
        .api(&format!("/app_lcm/v1/app_instances/{}", s.instance)))
    .await
    .2["ferryAddress"]
        .clone();
    assert_ne!(spec["ip"], source_address);
    let trig = &s.cb.on("/mp")[0].body["targetAppInfo"];
    assert_eq!(
        trig["commInterface"]["ipAddresses"][0],
        json!({"host": spec["ip"], "port": 8080})
    );
    let env: Vec<&str> = spec["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(env.contains(&"A=1"), "{env:?}");
    assert!(
        env.contains(&format!("MEC_APP_INSTANCE_ID={}", s.instance).as_str()),
        "{env:?}"
    );
    assert!(
        env.contains(&format!("MEC_ASSOCIATE_ID={UE}").as_str()),
        "{env:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.host_of_instance().await,
        "edge-a",
        "not moved before the app says so"
    );
    s.put_context_state("USER_CONTEXT_TRANSFER_COMPLETED").await;
    let st = s.statuses(2, 20).await;
    assert_eq!(st[1], "INTERHOST_MOVEOUT_COMPLETED");
    assert!(
        s.a.migrations().is_empty(),
        "no container migration in APPLICATION mode"
    );
    assert_eq!(s.host_of_instance().await, "edge-b");
    let inst = get(&s
        .c
        .api(&format!("/app_lcm/v1/app_instances/{}", s.instance)))
    .await;
    assert_eq!(
        inst.2["ferryAddress"], spec["ip"],
        "the instance is at the target's address"
    );
    assert_eq!(
        s.a.calls_matching(&format!("/containers/{}", s.instance))
            .iter()
            .filter(|c| c.0 == "DELETE")
            .count(),
        1,
        "the source instance is removed"
    );
    assert_eq!(s.relocations().await[0]["mode"], "APPLICATION");
}

#[tokio::test]
async fn failing_migration_leaves_the_app_on_its_host() {
    let s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    *s.a.knobs.migrate_fails.lock().unwrap() = true;
    handover(&s.ran, "b1").await;
    let st = s.statuses(2, 20).await;
    assert_eq!(
        st,
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_FAILED"]
    );
    assert_eq!(s.a.migrations().len(), 1);
    assert_eq!(s.host_of_instance().await, "edge-a");
    let rel = s.relocations().await;
    assert_eq!(rel[0]["phase"], "FAILED");
    assert!(
        rel[0]["error"].as_str().unwrap().contains("restore failed"),
        "{rel:?}"
    );
}

#[tokio::test]
async fn a_failed_relocation_stands_until_the_ue_moves_again() {
    let s = setup_with(
        "APP_MOBILITY_WITHOUT_CONFIRMATION",
        "CONTAINER_MIGRATION",
        &["--reconcile-interval", "1"],
    )
    .await;
    *s.a.knobs.migrate_fails.lock().unwrap() = true;
    handover(&s.ran, "b1").await;
    assert_eq!(
        s.statuses(2, 20).await,
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_FAILED"]
    );
    // Readings find the UE in b1 and its app on edge-a: the failure stands, no retry.
    let done = get(&s.c.api("/ferry/control/v1/follow")).await.2["reconciliations"]
        .as_u64()
        .unwrap();
    for _ in 0..100 {
        let f = get(&s.c.api("/ferry/control/v1/follow")).await.2;
        if f["reconciliations"].as_u64().unwrap() >= done + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.a.migrations().len(), 1, "not retried by a reading");
    assert_eq!(s.cb.on("/mp").len(), 2);
    assert_eq!(s.host_of_instance().await, "edge-a");
    // The UE moves (away and back): its handover is acted on again.
    *s.a.knobs.migrate_fails.lock().unwrap() = false;
    handover(&s.ran, "a1").await;
    handover(&s.ran, "b1").await;
    let st = s.statuses(4, 20).await;
    assert_eq!(
        st[2..],
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED"]
    );
    assert_eq!(s.host_of_instance().await, "edge-b");
}

#[tokio::test]
async fn handovers_during_a_slow_migration_coalesce_to_the_final_host() {
    let s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    *s.a.knobs.migrate_delay.lock().unwrap() = Duration::from_secs(2);
    handover(&s.ran, "b1").await;
    for _ in 0..50 {
        if !s.a.migrations().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While a -> b runs: back to a1, then b1 again, then a1 (the final cell).
    for cell in ["a1", "b1", "a1"] {
        handover(&s.ran, cell).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let st = s.statuses(4, 30).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(st.len(), 4, "{st:?}");
    assert_eq!(s.a.migrations().len(), 1, "a -> b once");
    let back = s.b.migrations();
    assert_eq!(
        back.len(),
        1,
        "then b -> a once, only to the final host: {back:?}"
    );
    assert_eq!(back[0]["target"], s.a.url.as_str());
    assert_eq!(s.host_of_instance().await, "edge-a");
    assert_eq!(s.relocations().await.len(), 2);
}

#[tokio::test]
async fn restart_during_a_relocation_finishes_it() {
    let mut s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    *s.a.knobs.migrate_delay.lock().unwrap() = Duration::from_secs(3);
    handover(&s.ran, "b1").await;
    for _ in 0..50 {
        if !s.a.migrations().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.relocations().await[0]["phase"], "TRANSFERRING_STATE");
    let addr = s.c.addr();
    let args = s.c.args.clone();
    s.c.terminate();
    // Shutdown deleted the RAN subscription.
    wait_ran_subscriptions(&s.ran, 0).await;
    // The source host is still migrating when the daemon is back: recovery asks it for the
    // migration by the id the record holds and follows it to its end.
    s.c = ControlProcess::start_on(&addr, &s.dir, &args);
    assert_eq!(s.relocations().await[0]["phase"], "TRANSFERRING_STATE");
    wait_ran_subscriptions(&s.ran, 1).await;
    let mut phase = Value::Null;
    for _ in 0..100 {
        phase = s.relocations().await[0]["phase"].clone();
        if phase == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phase, "COMPLETED");
    assert_eq!(s.host_of_instance().await, "edge-b");
    assert_eq!(s.a.migrations().len(), 1, "not migrated twice");
    // The restarted daemon still follows handovers.
    handover(&s.ran, "a1").await;
    for _ in 0..100 {
        if s.host_of_instance().await == "edge-a" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.host_of_instance().await, "edge-a");
    assert_eq!(s.b.migrations().len(), 1);
}

/// The hrefs of the RAN's CellChange subscriptions whose callback is `callback`, and how many
/// subscriptions it holds in all.
async fn ran_subscriptions_to(ran: &Daemon, callback: &str) -> (Vec<String>, usize) {
    let l = get(&format!("{}/rni/v2/subscriptions", ran.url)).await.2;
    let all: Vec<String> = l["_links"]["subscription"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["href"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut ours = Vec::new();
    for href in &all {
        if get(href).await.2["callbackReference"] == callback {
            ours.push(href.clone());
        }
    }
    (ours, all.len())
}

#[tokio::test]
async fn sigkilled_control_does_not_leave_a_second_ran_subscription() {
    let mut s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    let callback = s.c.api("/ferry/control/v1/notifications/rni/cell_change");
    let (before, _) = ran_subscriptions_to(&s.ran, &callback).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let addr = s.c.addr();
    let args = s.c.args.clone();
    s.c.kill();
    // No shutdown ran: the subscription is still at the RAN.
    assert_eq!(ran_subscriptions_to(&s.ran, &callback).await.0, before);
    s.c = ControlProcess::start_on(&addr, &s.dir, &args);
    // The restarted daemon replaces it: one subscription, a new one, for the same callback.
    let mut now = (Vec::new(), 0);
    for _ in 0..100 {
        now = ran_subscriptions_to(&s.ran, &callback).await;
        if now.1 == 1 && now.0.len() == 1 && now.0 != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(GRACE).await;
    let settled = ran_subscriptions_to(&s.ran, &callback).await;
    assert_eq!(settled, now, "still exactly one after a while");
    assert_eq!(now.1, 1, "the RAN holds one subscription: {now:?}");
    assert_eq!(now.0.len(), 1, "{now:?}");
    assert_ne!(now.0, before, "the old one was deleted, a new one made");

    handover(&s.ran, "b1").await;
    let st = s.statuses(2, 20).await;
    assert_eq!(
        st,
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED"]
    );
    tokio::time::sleep(GRACE).await;
    assert_eq!(s.relocations().await.len(), 1, "one relocation record");
    assert_eq!(s.cb.on("/mp").len(), 2, "no second procedure");
    assert_eq!(s.a.migrations().len(), 1, "one migration");
    // A clean stop still removes it.
    s.c.terminate();
    wait_ran_subscriptions(&s.ran, 0).await;
}

#[tokio::test]
async fn instances_instantiated_for_the_ue_follow_it_without_a_registration() {
    let s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    let created = create_instance(&s.c, "counter").await;
    let i2 = created.2["id"].as_str().unwrap().to_string();
    let r = instantiate_with(
        &s.c,
        &i2,
        &json!({"ferryAssociateId": {"type": "UE_IPv4_ADDRESS", "value": UE}}),
    )
    .await;
    assert_eq!(r.0, 202, "{}", r.2);
    handover(&s.ran, "b1").await;
    let host_of = |i: String| {
        let url = s.c.api(&format!("/app_lcm/v1/app_instances/{i}"));
        async move { get(&url).await.2["ferryHost"].clone() }
    };
    for _ in 0..100 {
        if host_of(i2.clone()).await == "edge-b" && s.host_of_instance().await == "edge-b" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(host_of(i2.clone()).await, "edge-b");
    assert_eq!(s.host_of_instance().await, "edge-b");
    let mut moved: Vec<String> =
        s.a.calls_matching("/migrate")
            .iter()
            .map(|c| c.1.clone())
            .collect();
    moved.sort();
    let mut want = vec![
        format!("/ferry/v1/containers/{}/migrate", s.instance),
        format!("/ferry/v1/containers/{i2}/migrate"),
    ];
    want.sort();
    assert_eq!(moved, want, "each instance migrated once");
}

#[tokio::test]
async fn restart_rolls_back_a_relocation_that_did_not_land() {
    let mut s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    *s.a.knobs.migrate_delay.lock().unwrap() = Duration::from_secs(3);
    *s.a.knobs.migrate_fails.lock().unwrap() = true;
    handover(&s.ran, "b1").await;
    for _ in 0..50 {
        if !s.a.migrations().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = s.c.addr();
    let args = s.c.args.clone();
    s.c.terminate();
    s.c = ControlProcess::start_on(&addr, &s.dir, &args);
    let st = s.statuses(2, 20).await;
    assert_eq!(
        st,
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_FAILED"]
    );
    let rel = s.relocations().await;
    assert_eq!(rel[0]["phase"], "FAILED", "{rel:?}");
    assert_eq!(s.host_of_instance().await, "edge-a");
}

#[tokio::test]
async fn many_instances_move_concurrently_within_the_per_host_limit() {
    let s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    // Five more instances serving the same UE, each with its registration: six in all.
    let mut all = vec![s.instance.clone()];
    for _ in 0..5 {
        let i = instantiate(&s.c, "counter", "edge-a").await;
        let r = post_json(
            &s.c.api("/amsi/v1/app_mobility_services"),
            &json!({"serviceConsumerId": {"appInstanceId": i},
                "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": UE},
                    "appMobilityServiceLevel": "APP_MOBILITY_WITHOUT_CONFIRMATION"}]}),
        )
        .await;
        assert_eq!(r.0, 201, "{}", r.2);
        all.push(i);
    }
    *s.a.knobs.migrate_delay.lock().unwrap() = Duration::from_millis(800);
    handover(&s.ran, "b1").await;
    let mut done = 0;
    for _ in 0..150 {
        done = s
            .relocations()
            .await
            .iter()
            .filter(|r| r["phase"] == "COMPLETED")
            .count();
        if done == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done, 6);
    assert_eq!(s.a.migrations().len(), 6);
    let max = s.a.knobs.in_flight.lock().unwrap().1;
    assert_eq!(
        max,
        ferry_control::controller::PER_HOST_LIMIT,
        "at most 4 at once, and that many"
    );
    for i in all {
        let h = instance(&s.c, &i).await;
        assert_eq!(h["ferryHost"], "edge-b");
    }
}

#[tokio::test]
async fn handovers_missed_while_control_was_down_are_caught_up_at_its_start() {
    let mut s = setup("APP_MOBILITY_WITHOUT_CONFIRMATION", "CONTAINER_MIGRATION").await;
    let addr = s.c.addr();
    let args = s.c.args.clone();
    s.c.terminate();
    wait_ran_subscriptions(&s.ran, 0).await;
    // Nobody is subscribed: this handover is notified to no one.
    handover(&s.ran, "b1").await;
    s.c = ControlProcess::start_on(&addr, &s.dir, &args);
    let st = s.statuses(2, 20).await;
    assert_eq!(
        st,
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED"]
    );
    assert_eq!(s.host_of_instance().await, "edge-b");
    let f = get(&s.c.api("/ferry/control/v1/follow")).await.2;
    assert_eq!(f["notifications"], 0, "{f}");
    assert_eq!(f["movesFromReconciliation"], 1, "{f}");
}

// ---- many UEs: bursts and lost notifications ----

/// `n` UEs (ue0.. at 10.150.1.1..) in a1, each followed by its own instance on edge-a
/// (registered WITHOUT_CONFIRMATION); the RAN and control started with the extra arguments.
struct Many {
    _d: tempfile::TempDir,
    ran: Daemon,
    _a: Host,
    _b: Host,
    c: ControlProcess,
    /// (UE name, UE address, instance).
    apps: Vec<(String, String, String)>,
}

async fn setup_many(n: usize, ran_args: &[&str], control_args: &[&str]) -> Many {
    let (a, b) = (Host::start().await, Host::start().await);
    let (d, dir) = state_dir();
    let mut topo = [
        two_hosts("many", "10.100.0.11", "10.100.0.12"),
        cell("a1", "7.4200", "edge-a"),
        cell("b1", "7.4400", "edge-b"),
    ]
    .concat();
    for i in 0..n {
        topo += &ue(&format!("ue{i}"), &format!("10.150.1.{}", i + 1), "a1");
    }
    let path = dir.join("topology.toml");
    std::fs::write(&path, topo).unwrap();
    let ran = start_ran_with(&path, ran_args);
    let mut args = vec![
        "--host".to_string(),
        format!("edge-a={}", a.url),
        "--host".into(),
        format!("edge-b={}", b.url),
        "--topology".into(),
        path.display().to_string(),
        "--ran".into(),
        ran.url.clone(),
    ];
    args.extend(control_args.iter().map(|a| a.to_string()));
    let c = ControlProcess::start(&dir, &args);
    wait_ran_subscriptions(&ran, 1).await;
    onboard_appd(&c, &appd("counter")).await;
    let mut apps = Vec::new();
    for i in 0..n {
        let instance = instantiate(&c, "counter", "edge-a").await;
        let address = format!("10.150.1.{}", i + 1);
        let reg = post_json(
            &c.api("/amsi/v1/app_mobility_services"),
            &json!({"serviceConsumerId": {"appInstanceId": instance},
                "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": address},
                    "appMobilityServiceLevel": "APP_MOBILITY_WITHOUT_CONFIRMATION"}]}),
        )
        .await;
        assert_eq!(reg.0, 201, "{}", reg.2);
        apps.push((format!("ue{i}"), address, instance));
    }
    Many {
        _d: d,
        ran,
        _a: a,
        _b: b,
        c,
        apps,
    }
}

impl Many {
    /// One burst through the RAN's batch API: UE i hops a1 <-> b1 `hops(i)` times, the UEs
    /// interleaved. Returns where each UE ends.
    async fn burst(&self, hops: impl Fn(usize) -> usize, now_in_b1: &mut [bool]) {
        let most = (0..self.apps.len()).map(&hops).max().unwrap_or(0);
        let mut moves = Vec::new();
        for round in 0..most {
            for (i, (ue, _, _)) in self.apps.iter().enumerate() {
                if round < hops(i) {
                    now_in_b1[i] = !now_in_b1[i];
                    let cell = if now_in_b1[i] { "b1" } else { "a1" };
                    moves.push(json!({"ue": ue, "cell": cell}));
                }
            }
        }
        let r = post_json(
            &format!("{}/ferry/ran/v1/handovers", self.ran.url),
            &json!({ "handovers": moves }),
        )
        .await;
        assert_eq!(r.0, 200, "{}", r.2);
        assert_eq!(r.2["done"], moves.len(), "{}", r.2);
    }

    /// Instances whose host is not the one serving their UE's cell (UE, instance, host,
    /// wanted), once there are none or 60 s passed.
    async fn misplaced(&self, now_in_b1: &[bool]) -> Vec<(String, String, String, String)> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let mut wrong = Vec::new();
            for (i, (ue, _, instance)) in self.apps.iter().enumerate() {
                let want = if now_in_b1[i] { "edge-b" } else { "edge-a" };
                let host = instance_host(&self.c, instance).await;
                if host != want {
                    wrong.push((ue.clone(), instance.clone(), host, want.to_string()));
                }
            }
            if wrong.is_empty() || Instant::now() > end {
                return wrong;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn follow(&self) -> Value {
        get(&self.c.api("/ferry/control/v1/follow")).await.2
    }
}

async fn instance_host(c: &ControlProcess, id: &str) -> String {
    instance(c, id).await["ferryHost"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_burst_larger_than_any_queue_leaves_no_app_on_the_wrong_host() {
    // A RAN queue of 4 notifications for 12 UEs making 20 to 31 hops each at once; and then
    // a burst nobody is told of (control's subscription deleted at the RAN behind its back),
    // which only reconciliation can catch.
    let n = 12;
    let m = setup_many(n, &["--notify-queue", "4"], &["--reconcile-interval", "1"]).await;
    let mut in_b1 = vec![false; n];
    m.burst(|i| 20 + i, &mut in_b1).await;
    let wrong = m.misplaced(&in_b1).await;
    assert!(wrong.is_empty(), "apps on the wrong host: {wrong:?}");
    let stats = get(&format!("{}/ferry/ran/v1/stats", m.ran.url)).await.2;
    let d = &stats["deliveries"][0];
    assert!(
        d["merged"].as_u64().unwrap() > 0,
        "the burst overflowed the queue: {stats}"
    );
    assert_eq!(d["lost"], 0, "{stats}");
    let f = m.follow().await;
    assert!(f["mergedNotifications"].as_u64().unwrap() > 0, "{f}");

    // The gap: the RAN forgets control's subscription (as a restarted RAN would).
    let subs = get(&format!("{}/rni/v2/subscriptions", m.ran.url)).await.2;
    let href = subs["_links"]["subscription"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    delete(&href).await.assert_status(204);
    m.burst(|i| 1 + i % 3, &mut in_b1).await;
    let wrong = m.misplaced(&in_b1).await;
    assert!(wrong.is_empty(), "apps on the wrong host: {wrong:?}");
    let f = m.follow().await;
    assert!(f["resubscriptions"].as_u64().unwrap() >= 1, "{f}");
    assert!(f["movesFromReconciliation"].as_u64().unwrap() >= 1, "{f}");
    // Control subscribed again: the RAN holds one subscription.
    wait_ran_subscriptions(&m.ran, 1).await;
}
