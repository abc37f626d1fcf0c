//! `Control::notify_mobility`, the relocation controller's call, with the control plane
//! served over real HTTP and a real callback server: subscription filters, exactly one
//! notification per event per subscriber, per-subscriber order, and a hanging callback that
//! does not delay the others. Also the relocation-record restart path.

use ferry_control::ams::MobilityEvent;
use ferry_control::axum::{
    self, body::Bytes, extract::State, http::StatusCode, http::Uri, routing::post, Router,
};
use ferry_control::relocation::{Phase, RelocationRecord};
use ferry_control::store::Table;
use ferry_control::{Config, Control, MemoryDataPlane};
use mec_api::ams::{AssociateId, MobilityStatus, TargetAppInfo};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Got = Arc<Mutex<Vec<(String, Value, Instant)>>>;

async fn record(State(got): State<Got>, uri: Uri, body: Bytes) -> StatusCode {
    if uri.path().starts_with("/slow/") {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    got.lock()
        .unwrap()
        .push((uri.path().to_string(), v, Instant::now()));
    StatusCode::NO_CONTENT
}

struct Servers {
    control: Control,
    api: String,
    cb: String,
    got: Got,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Servers {
    async fn start(dir: &std::path::Path) -> Servers {
        let control = Control::open(
            Config::new(dir.to_path_buf()),
            Arc::new(MemoryDataPlane::default()),
        )
        .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", l.local_addr().unwrap());
        let router = control.router();
        let t1 = tokio::spawn(async move {
            let _ = axum::serve(l, router).await;
        });
        let got: Got = Arc::default();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cb = format!("http://{}", l.local_addr().unwrap());
        let app = Router::new()
            .route("/{*p}", post(record))
            .with_state(got.clone());
        let t2 = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Servers {
            control,
            api,
            cb,
            got,
            tasks: vec![t1, t2],
        }
    }

    async fn subscribe(&self, path: &str, filter: Value) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/amsi/v1/subscriptions", self.api))
            .json(&json!({"subscriptionType": "MobilityProcedureSubscription",
                "callbackReference": format!("{}{path}", self.cb), "filterCriteria": filter}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["_links"]["self"]["href"].as_str().unwrap().to_string()
    }

    fn on(&self, path: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, v, _)| v.clone())
            .collect()
    }

    async fn wait(&self, path: &str, n: usize) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(5);
        while self.on(path).len() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.on(path)
    }
}

fn event(app: &str, ue: &str, status: MobilityStatus) -> MobilityEvent {
    MobilityEvent {
        app_instance_id: app.to_string(),
        associate_id: vec![AssociateId::ue_ipv4(ue)],
        status,
        target: Some(TargetAppInfo {
            app_instance_id: app.to_string(),
            comm_interface: None,
        }),
    }
}

#[tokio::test]
async fn mobility_notifications_follow_filters_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Servers::start(dir.path()).await;
    let all = s
        .subscribe(
            "/all",
            json!({"mobilityStatus": ["INTERHOST_MOVEOUT_TRIGGERED",
        "INTERHOST_MOVEOUT_COMPLETED", "INTERHOST_MOVEOUT_FAILED"]}),
        )
        .await;
    s.subscribe("/default", json!({})).await;
    s.subscribe(
        "/ue2",
        json!({"associateId": [{"type": "UE_IPv4_ADDRESS", "value": "10.150.0.2"}],
        "mobilityStatus": ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED"]}),
    )
    .await;
    s.subscribe("/app9", json!({"appInstanceId": "inst-9"}))
        .await;
    s.subscribe("/slow/x", json!({})).await;

    let t0 = Instant::now();
    use MobilityStatus::*;
    for (app, ue, st) in [
        ("inst-1", "10.150.0.1", InterhostMoveoutTriggered),
        ("inst-1", "10.150.0.1", InterhostMoveoutCompleted),
        ("inst-2", "10.150.0.2", InterhostMoveoutTriggered),
        ("inst-2", "10.150.0.2", InterhostMoveoutFailed),
    ] {
        assert!(s.control.notify_mobility(&event(app, ue, st)).unwrap() >= 1);
    }
    // notify_mobility only queues: four calls take no time even with a hanging subscriber.
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );

    let got = s.wait("/all", 4).await;
    let first_at = s
        .got
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _, _)| p == "/all")
        .map(|(_, _, at)| *at)
        .unwrap();
    eprintln!(
        "notify_mobility -> MobilityProcedureNotification at a real callback: {:.1} ms (first of 4 events)",
        (first_at - t0).as_secs_f64() * 1000.0
    );
    // In order per app instance (the instances' notifications may interleave).
    let of = |app: &str| -> Vec<&str> {
        got.iter()
            .filter(|n| n["targetAppInfo"]["appInstanceId"] == app)
            .map(|n| n["mobilityStatus"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        of("inst-1"),
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED"]
    );
    assert_eq!(
        of("inst-2"),
        ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_FAILED"]
    );
    let n = got
        .iter()
        .find(|n| n["targetAppInfo"]["appInstanceId"] == "inst-1")
        .unwrap();
    assert_eq!(n["notificationType"], "MobilityProcedureNotification");
    assert_eq!(
        n["associateId"],
        json!([{"type": "UE_IPv4_ADDRESS", "value": "10.150.0.1"}])
    );
    assert_eq!(n["targetAppInfo"]["appInstanceId"], "inst-1");
    assert_eq!(n["_links"]["subscription"]["href"], all.as_str());
    assert!(n["timeStamp"]["seconds"].is_u64());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.on("/all").len(), 4, "exactly once per event");
    let d: Vec<String> = s
        .on("/default")
        .iter()
        .map(|n| n["mobilityStatus"].to_string())
        .collect();
    assert_eq!(d.len(), 2, "default filter = TRIGGERED only: {d:?}");
    let u: Vec<String> = s
        .on("/ue2")
        .iter()
        .map(|n| n["mobilityStatus"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        u,
        ["INTERHOST_MOVEOUT_TRIGGERED"],
        "ue2's FAILED is filtered out by status"
    );
    assert!(s.on("/app9").is_empty());
}

#[tokio::test]
async fn registration_changes_reach_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let s = Servers::start(dir.path()).await;
    let mut events = s.control.registration_events();
    let r = reqwest::Client::new()
        .post(format!("{}/amsi/v1/app_mobility_services", s.api))
        .json(&json!({"serviceConsumerId": {"appInstanceId": "inst-1"},
            "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": "10.150.0.1"},
            "appMobilityServiceLevel": "APP_MOBILITY_WITH_CONFIRMATION"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.service_consumer_id.app_instance_id.as_deref(),
        Some("inst-1")
    );
    let regs = ferry_control::ams::registrations(&s.control).unwrap();
    assert_eq!(regs.len(), 1);
}

#[tokio::test]
async fn in_flight_relocations_are_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rec = RelocationRecord {
        id: "rel-1".into(),
        app_instance_id: "inst-1".into(),
        associate_id: "10.150.0.1".into(),
        source_host: "edge-a".into(),
        target_host: "edge-b".into(),
        mode: mec_api::app_pkgm::StateRelocationMode::ContainerMigration,
        technique: Some(ferry_wire::Technique::Cold),
        migration_id: Some("m-00000000000000aa".parse().unwrap()),
        source_address: Some("10.200.0.2".into()),
        target_address: Some("10.200.0.2".into()),
        phase: Phase::TransferringState,
        phase_times_ms: vec![(Phase::Triggered, 1)],
        migration_report: None,
        platform_downtime_ms: None,
        traffic_switched_at_commit: false,
        error: None,
        advice: None,
        notified: true,
    };
    {
        let c = Control::open(
            Config::new(dir.path().to_path_buf()),
            Arc::new(MemoryDataPlane::default()),
        )
        .unwrap();
        c.store().put(Table::Relocations, "rel-1", &rec).unwrap();
        let mut done = rec.clone();
        done.id = "rel-0".into();
        done.phase = Phase::Completed;
        c.store().put(Table::Relocations, "rel-0", &done).unwrap();
    }
    let c = Control::open(
        Config::new(dir.path().to_path_buf()),
        Arc::new(MemoryDataPlane::default()),
    )
    .unwrap();
    assert_eq!(c.in_flight_relocations().unwrap(), vec![rec]);
}

#[tokio::test]
async fn service_levels_decide_and_context_transfer_is_marked_for_the_app() {
    use ferry_control::ams::{decide, set_context_transfer_state, MobilityDecision};
    use mec_api::ams::{AppMobilityServiceLevel as L, ContextTransferState};
    assert_eq!(
        decide(Some(L::AppMobilityNotAllowed)),
        MobilityDecision::SteerOnly
    );
    assert_eq!(
        decide(Some(L::AppMobilityWithConfirmation)),
        MobilityDecision::RelocateAfterConfirmation
    );
    assert_eq!(
        decide(Some(L::AppMobilityWithoutConfirmation)),
        MobilityDecision::Relocate
    );
    assert_eq!(decide(None), MobilityDecision::Relocate);

    let dir = tempfile::tempdir().unwrap();
    let s = Servers::start(dir.path()).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for (app, ue) in [
        ("inst-1", "10.150.0.1"),
        ("inst-2", "10.150.0.2"),
        ("inst-3", "10.150.0.1"),
    ] {
        let r: Value = client
            .post(format!("{}/amsi/v1/app_mobility_services", s.api))
            .json(&json!({"serviceConsumerId": {"appInstanceId": app},
                "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": ue},
                "appMobilityServiceLevel": "APP_MOBILITY_WITHOUT_CONFIRMATION",
                "contextTransferState": "NOT_TRANSFERRED"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["appMobilityServiceId"].as_str().unwrap().to_string());
    }
    let ue1 = "10.150.0.1".parse().unwrap();
    // The controller's index of who follows the UE, kept by the API's writes.
    let mine: Vec<String> = s
        .control
        .ue_index()
        .followers(ue1)
        .into_iter()
        .map(|f| f.instance)
        .collect();
    assert_eq!(mine, ["inst-1", "inst-3"]);

    let mut events = s.control.registration_events();
    let r = set_context_transfer_state(
        &s.control,
        &ids[0],
        ue1,
        ContextTransferState::UserContextTransferCompleted,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        r.device_information[0].context_transfer_state,
        Some(ContextTransferState::UserContextTransferCompleted)
    );
    assert_eq!(
        events.recv().await.unwrap(),
        r,
        "the controller hears of it"
    );
    // Seen by the app over the API.
    let g: Value = client
        .get(format!(
            "{}/amsi/v1/app_mobility_services/{}",
            s.api, ids[0]
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        g["deviceInformation"][0]["contextTransferState"],
        "USER_CONTEXT_TRANSFER_COMPLETED"
    );
    // Wrong UE or registration: nothing changes.
    assert!(set_context_transfer_state(
        &s.control,
        &ids[1],
        ue1,
        ContextTransferState::UserContextTransferCompleted
    )
    .unwrap()
    .is_none());
    assert!(set_context_transfer_state(
        &s.control,
        "ams-999",
        ue1,
        ContextTransferState::UserContextTransferCompleted
    )
    .unwrap()
    .is_none());
}
