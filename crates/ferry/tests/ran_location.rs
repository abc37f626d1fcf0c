//! MEC 013 Location of `ferry ran`, end to end: the real binary, a real callback server.

mod ran_support;
mod shared;

use ran_support::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_millis(700);

fn users_of(list: &Value) -> Vec<(String, String, String)> {
    list["userList"]["user"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["address"].as_str().unwrap().to_string(),
                u["zoneId"].as_str().unwrap().to_string(),
                u["accessPointId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn user(addr: &str, zone: &str, ap: &str) -> (String, String, String) {
    (addr.to_string(), zone.to_string(), ap.to_string())
}

#[tokio::test]
async fn queries_place_the_ue_after_a_handover() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let users = |q: &str| {
        let url = ran.api(&format!("/location/v2/queries/users{q}"));
        async move { get(&url).await }
    };

    let before = users("?address=acr:10.150.0.1").await;
    assert_eq!(before.0, 200);
    assert_eq!(
        users_of(&before.2),
        vec![user("acr:10.150.0.1", "edge-a", "a1")]
    );

    handover(&ran, "ue1", "b1").await;

    let all = users("").await;
    assert_eq!(
        users_of(&all.2),
        vec![
            user("acr:10.150.0.1", "edge-b", "b1"),
            user("acr:10.150.0.2", "edge-a", "a1")
        ]
    );
    // The UE's location is now its new cell's.
    let loc = &all.2["userList"]["user"][0]["locationInfo"];
    assert_eq!(loc["longitude"], json!([7.44]));
    assert_eq!(
        users_of(&users("?zoneId=edge-b").await.2),
        vec![user("acr:10.150.0.1", "edge-b", "b1")]
    );
    assert_eq!(
        users_of(&users("?zoneId=edge-a").await.2),
        vec![user("acr:10.150.0.2", "edge-a", "a1")]
    );
    assert_eq!(users_of(&users("?accessPointId=b1").await.2).len(), 1);
    assert_eq!(users_of(&users("?accessPointId=a2").await.2).len(), 0);
    assert_eq!(
        users_of(&users("?address=10.150.0.1&zoneId=edge-a").await.2).len(),
        0
    );
    assert_eq!(users_of(&users("?zoneId=edge-a,edge-b").await.2).len(), 2);
    assert_problem(&users("?address=tel:123").await, 400);
    assert_problem(&users("?zone=edge-a").await, 400);

    let zones = get(&ran.api("/location/v2/queries/zones")).await;
    assert_eq!(zones.0, 200);
    let z = &zones.2["zoneList"]["zone"];
    assert_eq!(z[0]["zoneId"], "edge-a");
    assert_eq!(z[0]["numberOfAccessPoints"], 2);
    assert_eq!(z[0]["numberOfUsers"], 1);
    assert_eq!(z[1]["zoneId"], "edge-b");
    assert_eq!(z[1]["numberOfUsers"], 1);

    let b = get(&ran.api("/location/v2/queries/zones/edge-b")).await;
    assert_eq!(b.2["zoneInfo"]["numberOfAccessPoints"], 1);
    get(&ran.api("/location/v2/queries/zones/nowhere"))
        .await
        .assert_problem(404);

    let aps = get(&ran.api("/location/v2/queries/zones/edge-a/accessPoints")).await;
    assert_eq!(aps.0, 200);
    let list = &aps.2["accessPointList"];
    assert_eq!(list["zoneId"], "edge-a");
    let ids: Vec<&str> = list["accessPoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accessPointId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["a1", "a2"]);
    assert_eq!(list["accessPoint"][0]["numberOfUsers"], 1);
    assert_eq!(list["accessPoint"][0]["operationStatus"], "Serviceable");
    let ap = get(&ran.api("/location/v2/queries/zones/edge-b/accessPoints/b1")).await;
    assert_eq!(ap.2["accessPointInfo"]["numberOfUsers"], 1);
    get(&ran.api("/location/v2/queries/zones/edge-a/accessPoints/b1"))
        .await
        .assert_problem(404);
    get(&ran.api("/location/v2/queries/zones/nowhere/accessPoints"))
        .await
        .assert_problem(404);
}

fn tracking(cb: &str, address: &str, criteria: Option<Value>) -> Value {
    let mut s = json!({"clientCorrelator": "c-1", "callbackReference": {"notifyURL": cb, "callbackData": "d-1"}, "address": address});
    if let Some(c) = criteria {
        s["userEventCriteria"] = c;
    }
    json!({ "userTrackingSubscription": s })
}

fn zonal(cb: &str, zone: &str, criteria: Option<Value>) -> Value {
    let mut s = json!({"callbackReference": {"notifyURL": cb}, "zoneId": zone});
    if let Some(c) = criteria {
        s["userEventCriteria"] = c;
    }
    json!({ "zonalTrafficSubscription": s })
}

fn event(r: &Received) -> (String, String, String, String) {
    let n = &r.body["zonalPresenceNotification"];
    (
        n["userEventType"].as_str().unwrap().to_string(),
        n["zoneId"].as_str().unwrap().to_string(),
        n["previousAccessPointId"].as_str().unwrap().to_string(),
        n["currentAccessPointId"].as_str().unwrap().to_string(),
    )
}

fn ev(kind: &str, zone: &str, prev: &str, cur: &str) -> (String, String, String, String) {
    (kind.into(), zone.into(), prev.into(), cur.into())
}

#[tokio::test]
async fn user_tracking_and_zonal_traffic_notify() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let ut = ran.api("/location/v2/subscriptions/userTracking");
    let zt = ran.api("/location/v2/subscriptions/zonalTraffic");

    let all = post_json(&ut, &tracking(&cb.url("/ue1-all"), "acr:10.150.0.1", None)).await;
    assert_eq!(all.0, 201, "{}", all.2);
    let all_url = all.2["userTrackingSubscription"]["resourceURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(all.1.get("location").unwrap().to_str().unwrap(), all_url);
    let r = post_json(
        &ut,
        &tracking(
            &cb.url("/ue1-entering"),
            "acr:10.150.0.1",
            Some(json!(["Entering"])),
        ),
    )
    .await;
    assert_eq!(r.0, 201);
    let r = post_json(&ut, &tracking(&cb.url("/ue2"), "acr:10.150.0.2", None)).await;
    assert_eq!(r.0, 201);
    let r = post_json(&zt, &zonal(&cb.url("/zone-b"), "edge-b", None)).await;
    assert_eq!(r.0, 201, "{}", r.2);
    let r = post_json(
        &zt,
        &zonal(
            &cb.url("/zone-a-leaving"),
            "edge-a",
            Some(json!(["Leaving"])),
        ),
    )
    .await;
    assert_eq!(r.0, 201);

    handover(&ran, "ue1", "a2").await; // inside edge-a: Transferring
    handover(&ran, "ue1", "b1").await; // edge-a -> edge-b: Leaving + Entering

    let got = cb.wait("/ue1-all", 3, WAIT).await;
    let events: Vec<_> = got.iter().map(event).collect();
    assert_eq!(
        events,
        vec![
            ev("Transferring", "edge-a", "a1", "a2"),
            ev("Leaving", "edge-a", "a2", "b1"),
            ev("Entering", "edge-b", "a2", "b1"),
        ]
    );
    let n = &got[0].body["zonalPresenceNotification"];
    assert_eq!(n["address"], "acr:10.150.0.1");
    assert_eq!(n["clientCorrelator"], "c-1");
    assert_eq!(n["callbackData"], "d-1");
    assert_eq!(
        n["link"][0],
        json!({"rel": "UserTrackingSubscription", "href": all_url})
    );
    assert!(n["timestamp"]["seconds"].as_u64().unwrap() > 0);

    let entering = cb.wait("/ue1-entering", 1, WAIT).await;
    assert_eq!(
        entering.iter().map(event).collect::<Vec<_>>(),
        vec![ev("Entering", "edge-b", "a2", "b1")]
    );
    let zone_b = cb.wait("/zone-b", 1, WAIT).await;
    assert_eq!(
        zone_b.iter().map(event).collect::<Vec<_>>(),
        vec![ev("Entering", "edge-b", "a2", "b1")]
    );
    let zone_a = cb.wait("/zone-a-leaving", 1, WAIT).await;
    assert_eq!(
        zone_a.iter().map(event).collect::<Vec<_>>(),
        vec![ev("Leaving", "edge-a", "a2", "b1")]
    );
    tokio::time::sleep(GRACE).await;
    assert!(cb.on("/ue2").is_empty(), "ue2 did not move");
    assert_eq!(cb.on("/ue1-all").len(), 3);
    assert_eq!(cb.on("/ue1-entering").len(), 1);
    assert_eq!(cb.on("/zone-b").len(), 1);
    assert_eq!(cb.on("/zone-a-leaving").len(), 1);
}

#[tokio::test]
async fn location_subscription_crud_and_errors() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let ut = ran.api("/location/v2/subscriptions/userTracking");
    let zt = ran.api("/location/v2/subscriptions/zonalTraffic");

    let created = post_json(&ut, &tracking(&cb.url("/x"), "10.150.0.1", None)).await;
    assert_eq!(created.0, 201);
    let sub = &created.2["userTrackingSubscription"];
    assert_eq!(
        sub["address"], "acr:10.150.0.1",
        "address normalised to an acr: URI"
    );
    let url = sub["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(get(&url).await.2, created.2);
    let list = get(&ut).await;
    assert_eq!(
        list.2["notificationSubscriptionList"]["userTrackingSubscription"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        list.2["notificationSubscriptionList"]["resourceURL"],
        ut.as_str()
    );

    let mut changed = tracking(&cb.url("/x"), "acr:10.150.0.2", Some(json!(["Leaving"])));
    changed["userTrackingSubscription"]["resourceURL"] = json!(url);
    let put = put_json(&url, &changed).await;
    assert_eq!(put.0, 200, "{}", put.2);
    assert_eq!(
        get(&url).await.2["userTrackingSubscription"]["address"],
        "acr:10.150.0.2"
    );
    put_json(&format!("{ut}/nope"), &changed)
        .await
        .assert_problem(404);
    changed["userTrackingSubscription"]["resourceURL"] = json!(format!("{ut}/other"));
    put_json(&url, &changed).await.assert_problem(400);

    post_json(&ut, &tracking(&cb.url("/x"), "acr:10.9.9.9", None))
        .await
        .assert_problem(400);
    post_json(&ut, &tracking(&cb.url("/x"), "tel:+331", None))
        .await
        .assert_problem(400);
    post_json(&ut, &tracking("nowhere", "acr:10.150.0.1", None))
        .await
        .assert_problem(400);
    post_json(
        &ut,
        &tracking(
            &cb.url("/x"),
            "acr:10.150.0.1",
            Some(json!(["Teleporting"])),
        ),
    )
    .await
    .assert_problem(400);
    post_json(&ut, &json!({"address": "acr:10.150.0.1"}))
        .await
        .assert_problem(400);

    delete(&url).await.assert_status(204);
    get(&url).await.assert_problem(404);
    delete(&url).await.assert_problem(404);

    // Zonal traffic: unknown zone refused; duration reported back and enforced.
    post_json(&zt, &zonal(&cb.url("/z"), "edge-x", None))
        .await
        .assert_problem(400);
    let mut huge = zonal(&cb.url("/z"), "edge-b", None);
    huge["zonalTrafficSubscription"]["duration"] = json!(u64::MAX);
    post_json(&zt, &huge).await.assert_problem(400);
    let mut short = zonal(&cb.url("/z"), "edge-b", None);
    short["zonalTrafficSubscription"]["duration"] = json!(1);
    let z = post_json(&zt, &short).await;
    assert_eq!(z.0, 201, "{}", z.2);
    assert_eq!(z.2["zonalTrafficSubscription"]["duration"], 1);
    let zurl = z.2["zonalTrafficSubscription"]["resourceURL"]
        .as_str()
        .unwrap()
        .to_string();
    get(&zurl).await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    get(&zurl).await.assert_problem(404);
    handover(&ran, "ue1", "b1").await;
    tokio::time::sleep(GRACE).await;
    assert!(cb.on("/z").is_empty(), "an ended subscription was notified");
}
