//! MEC 013's geometric resources on the real RAN server over HTTP, with a real callback server:
//! the distance query, distance subscriptions and area (circle) subscriptions, their
//! notifications on handovers (only when the condition becomes true), `checkImmediate` and
//! `count`.

use ferry_ran::axum::{self, body::Bytes, extract::State, routing, Router};
use ferry_ran::Ran;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPO: &str = r#"
name = "geo"
[[hosts]]
name = "h1"
address = "10.100.0.11"
[[cells]]
name = "c1"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000001" }
position = { latitude = 43.73, longitude = 7.42 }
host = "h1"
[[cells]]
name = "c2"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000002" }
position = { latitude = 43.73, longitude = 7.44 }
host = "h1"
[[ues]]
name = "ue1"
address = "10.150.0.1"
cell = "c1"
[[ues]]
name = "ue2"
address = "10.150.0.2"
cell = "c1"
"#;

type Got = Arc<Mutex<Vec<(String, Value)>>>;

async fn record(State(got): State<Got>, uri: axum::http::Uri, body: Bytes) {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    got.lock().unwrap().push((uri.path().to_string(), v));
}

struct Setup {
    ran: Ran,
    api: String,
    cb: String,
    got: Got,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Setup {
    async fn start() -> Setup {
        let ran = Ran::new(&ferry_ran::topology::Topology::parse(TOPO).unwrap()).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}/location/v2", l.local_addr().unwrap());
        let r = ran.clone();
        let t1 = tokio::spawn(async move {
            let _ = ferry_ran::serve(r, l, std::future::pending()).await;
        });
        let got: Got = Arc::default();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cb = format!("http://{}", l.local_addr().unwrap());
        let app = Router::new()
            .route("/{*p}", routing::post(record))
            .with_state(got.clone());
        let t2 = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Setup {
            ran,
            api,
            cb,
            got,
            tasks: vec![t1, t2],
        }
    }

    fn on(&self, path: &str) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v["subscriptionNotification"].clone())
            .collect()
    }

    /// Waits for `n` notifications on `path`, then a little longer to catch extra ones.
    async fn wait(&self, path: &str, n: usize) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(5);
        while self.on(path).len() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.on(path)
    }
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distance_query() {
    let s = Setup::start().await;
    let q = |p: &str| format!("{}/queries/distance?{p}", s.api);
    let (st, v) = get(&q("address=acr:10.150.0.1,acr:10.150.0.2")).await;
    assert_eq!(
        (st, v["terminalDistance"]["distance"].clone()),
        (200, json!(0)),
        "{v}"
    );
    // 0.02 degrees of longitude at latitude 43.73: about 1607 m.
    s.ran.handover("ue2", "c2").unwrap();
    let (_, v) = get(&q("address=acr:10.150.0.1&address=acr:10.150.0.2")).await;
    let d = v["terminalDistance"]["distance"].as_u64().unwrap();
    assert!((1590..1625).contains(&d), "{v}");
    let (_, v) = get(&q("address=acr:10.150.0.2&latitude=43.73&longitude=7.44")).await;
    assert_eq!(v["terminalDistance"]["distance"], 0, "{v}");
    for bad in [
        "address=acr:10.150.0.1",
        "address=acr:10.150.0.9,acr:10.150.0.1",
        "address=acr:10.150.0.1&latitude=x&longitude=1",
        "",
    ] {
        let (st, v) = get(&q(bad)).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distance_subscription_notifies_when_the_criteria_become_true() {
    let s = Setup::start().await;
    let url = format!("{}/subscriptions/distance", s.api);
    let sub = |path: &str, count: u32| {
        json!({"distanceNotificationSubscription": {
            "callbackReference": {"notifyURL": format!("{}{path}", s.cb), "callbackData": "d1"},
            "referenceAddress": ["acr:10.150.0.2"], "monitoredAddress": ["acr:10.150.0.1"],
            "distance": 500, "trackingAccuracy": 10, "criteria": "AnyBeyondDistance",
            "checkImmediate": true, "frequency": 1, "count": count}})
    };
    let (st, created) = post(&url, sub("/far", 2)).await;
    assert_eq!(st, 201, "{created}");
    let href = created["distanceNotificationSubscription"]["resourceURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&href).await.0, 200);
    let (_, list) = get(&url).await;
    assert_eq!(
        list["notificationSubscriptionList"]["distanceNotificationSubscription"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Both in c1: not beyond 500 m, nothing even with checkImmediate.
    assert!(s.wait("/far", 0).await.is_empty());

    s.ran.handover("ue1", "c2").unwrap();
    let n = s.wait("/far", 1).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["distanceCriteria"], "AnyBeyondDistance");
    assert_eq!(n[0]["callbackData"], "d1");
    assert_eq!(n[0]["isFinalNotification"], false);
    assert_eq!(n[0]["terminalLocation"][0]["address"], "acr:10.150.0.1");
    assert_eq!(
        n[0]["terminalLocation"][0]["currentLocation"]["longitude"][0],
        7.44
    );
    // Back within 500 m: the condition ends, no notification; beyond again: the second and last.
    s.ran.handover("ue1", "c1").unwrap();
    assert_eq!(s.wait("/far", 2).await.len(), 1);
    s.ran.handover("ue1", "c2").unwrap();
    let n = s.wait("/far", 2).await;
    assert_eq!(n.len(), 2, "{n:?}");
    assert_eq!(n[1]["isFinalNotification"], true);
    assert_eq!(
        get(&href).await.0,
        404,
        "count reached: the subscription ended"
    );

    // checkImmediate with the condition already true notifies at once.
    let (st, _) = post(&url, sub("/now", 0)).await;
    assert_eq!(st, 201);
    assert_eq!(s.wait("/now", 1).await.len(), 1);

    // Bad ones: an unknown user, a negative distance, one monitored user without reference.
    let mut bad = sub("/x", 0);
    bad["distanceNotificationSubscription"]["monitoredAddress"] = json!(["acr:10.9.9.9"]);
    assert_eq!(post(&url, bad).await.0, 400);
    let mut bad = sub("/x", 0);
    bad["distanceNotificationSubscription"]["distance"] = json!(-1);
    assert_eq!(post(&url, bad).await.0, 400);
    let mut bad = sub("/x", 0);
    bad["distanceNotificationSubscription"]["referenceAddress"] = json!([]);
    assert_eq!(post(&url, bad).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_subscription_notifies_entering_and_leaving() {
    let s = Setup::start().await;
    let url = format!("{}/subscriptions/area/circle", s.api);
    let sub = |path: &str, criteria: &str| {
        json!({"circleNotificationSubscription": {
            "callbackReference": {"notifyURL": format!("{}{path}", s.cb)},
            "address": ["acr:10.150.0.1", "acr:10.150.0.2"],
            "latitude": 43.73, "longitude": 7.44, "radius": 100,
            "trackingAccuracy": 10, "enteringLeavingCriteria": criteria,
            "checkImmediate": true, "frequency": 1}})
    };
    let (st, created) = post(&url, sub("/in", "Entering")).await;
    assert_eq!(st, 201, "{created}");
    // Both outside the circle at c2: no Entering yet.
    assert!(s.wait("/in", 0).await.is_empty());
    let (st, _) = post(&url, sub("/out", "Leaving")).await;
    assert_eq!(st, 201);
    // checkImmediate: both are outside already, one Leaving each.
    assert_eq!(s.wait("/out", 2).await.len(), 2);

    s.ran.handover("ue2", "c2").unwrap();
    let n = s.wait("/in", 1).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["enteringLeavingCriteria"], "Entering");
    assert_eq!(n[0]["terminalLocation"][0]["address"], "acr:10.150.0.2");
    assert_eq!(
        n[0]["link"][0]["href"],
        created["circleNotificationSubscription"]["resourceURL"]
    );
    s.ran.handover("ue2", "c1").unwrap();
    let n = s.wait("/out", 3).await;
    assert_eq!(n.len(), 3, "leaving again after entering: {n:?}");
    assert_eq!(s.on("/in").len(), 1, "leaving is not entering");

    let mut bad = sub("/x", "Entering");
    bad["circleNotificationSubscription"]["latitude"] = json!(91);
    assert_eq!(post(&url, bad).await.0, 400);
    let mut bad = sub("/x", "Sideways");
    bad["circleNotificationSubscription"]["radius"] = json!(1);
    assert_eq!(post(&url, bad).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_subscription_reports_every_period_until_its_duration() {
    let s = Setup::start().await;
    let url = format!("{}/subscriptions/periodic", s.api);
    let (st, created) = post(
        &url,
        json!({"periodicNotificationSubscription": {
            "callbackReference": {"notifyURL": format!("{}/tick", s.cb)},
            "address": ["acr:10.150.0.1"], "requestedAccuracy": 10, "frequency": 1,
            "duration": 3}}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let href = created["periodicNotificationSubscription"]["resourceURL"]
        .as_str()
        .unwrap()
        .to_string();
    let n = s.wait("/tick", 2).await;
    assert!(n.len() >= 2, "{n:?}");
    assert_eq!(n[0]["terminalLocation"][0]["address"], "acr:10.150.0.1");
    assert_eq!(n[0]["isFinalNotification"], false);
    // The duration ends it: a final notification, then nothing, and the resource is gone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n = s.on("/tick");
    assert_eq!(n.last().unwrap()["isFinalNotification"], true, "{n:?}");
    assert_eq!(get(&href).await.0, 404);
    let before = n.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.on("/tick").len(), before);

    let bad = json!({"periodicNotificationSubscription": {
        "callbackReference": {"notifyURL": format!("{}/x", s.cb)},
        "address": ["acr:10.150.0.1"], "requestedAccuracy": 10, "frequency": 0}});
    assert_eq!(post(&url, bad).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_status_subscription_notifies_an_access_point_reaching_its_threshold() {
    let s = Setup::start().await;
    let url = format!("{}/subscriptions/zoneStatus", s.api);
    let (st, created) = post(
        &url,
        json!({"zoneStatusSubscription": {
            "callbackReference": {"notifyURL": format!("{}/zs", s.cb), "callbackData": "z"},
            "zoneId": "h1", "numberOfUsersAPThreshold": 2}}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    // Both users start in c1 (already at the threshold): nothing until it is reached again.
    s.ran.handover("ue1", "c2").unwrap();
    assert!(s.wait("/zs", 0).await.is_empty());
    s.ran.handover("ue2", "c2").unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let zs = || {
        s.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/zs")
            .map(|(_, v)| v["zoneStatusNotification"].clone())
            .collect::<Vec<_>>()
    };
    while zs().is_empty() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = zs();
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["accessPointId"], "c2");
    assert_eq!(n[0]["numberOfUsersInAP"], 2);
    assert_eq!(n[0]["numberOfUsersInZone"], 2);
    assert_eq!(n[0]["callbackData"], "z");

    let bad = json!({"zoneStatusSubscription": {
        "callbackReference": {"notifyURL": format!("{}/x", s.cb)}, "zoneId": "nowhere"}});
    assert_eq!(post(&url, bad).await.0, 400);
}
