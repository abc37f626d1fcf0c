//! MEC 021 AMS of `ferry control`, end to end: the real binary, real HTTP, a real callback
//! server (mobility procedure notifications, sent by the relocation controller's call, are
//! tested in crates/control/tests/mobility.rs).

mod control_support;
mod shared;

use control_support::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn registration(app: &str, ue: &str, level: &str) -> Value {
    json!({
        "serviceConsumerId": {"appInstanceId": app},
        "deviceInformation": [{
            "associateId": {"type": "UE_IPv4_ADDRESS", "value": ue},
            "appMobilityServiceLevel": level,
            "contextTransferState": "NOT_TRANSFERRED"
        }]
    })
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn registrations_store_and_validate_the_three_service_levels() {
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &[]);
    let url = c.api("/amsi/v1/app_mobility_services");
    let levels = [
        "APP_MOBILITY_NOT_ALLOWED",
        "APP_MOBILITY_WITH_CONFIRMATION",
        "APP_MOBILITY_WITHOUT_CONFIRMATION",
    ];
    let mut ids = Vec::new();
    for (n, level) in levels.iter().enumerate() {
        let r = post_json(
            &url,
            &registration(&format!("inst-{n}"), &format!("10.150.0.{}", n + 1), level),
        )
        .await;
        assert_eq!(r.0, 201, "{}", r.2);
        let id = r.2["appMobilityServiceId"]
            .as_str()
            .expect("appMobilityServiceId")
            .to_string();
        assert!(r.1["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/amsi/v1/app_mobility_services/{id}")));
        assert_schema(
            &r.2,
            &[
                ("serviceConsumerId", "object"),
                ("deviceInformation", "array"),
            ],
        );
        ids.push(id);
    }
    for (id, level) in ids.iter().zip(levels) {
        let g = get(&format!("{url}/{id}")).await;
        assert_eq!(g.0, 200);
        assert_eq!(
            g.2["deviceInformation"][0]["appMobilityServiceLevel"],
            level
        );
        assert_eq!(
            g.2["deviceInformation"][0]["associateId"]["type"],
            "UE_IPv4_ADDRESS"
        );
    }
    // Filter on the level.
    let l = get(&format!(
        "{url}?filter=(eq,deviceInformation/appMobilityServiceLevel,APP_MOBILITY_NOT_ALLOWED)"
    ))
    .await;
    assert_eq!(l.0, 200);
    assert_eq!(l.2.as_array().unwrap().len(), 1, "{}", l.2);
    assert_eq!(l.2[0]["appMobilityServiceId"], ids[0].as_str());
    assert_eq!(get(&url).await.2.as_array().unwrap().len(), 3);

    // Bad bodies.
    let bad_level = post_json(&url, &registration("i", "10.150.0.9", "SOMETIMES")).await;
    assert_problem(&bad_level, 400);
    assert!(
        bad_level.2["detail"]
            .as_str()
            .unwrap()
            .contains("SOMETIMES"),
        "{}",
        bad_level.2
    );
    post_json(
        &url,
        &registration("i", "not-an-ip", "APP_MOBILITY_NOT_ALLOWED"),
    )
    .await
    .assert_problem(400);
    post_json(
        &url,
        &json!({"serviceConsumerId": {"appInstanceId": "a", "mepId": "m"}}),
    )
    .await
    .assert_problem(400);
    post_json(&url, &json!({"deviceInformation": []}))
        .await
        .assert_problem(400);
    let no_ctype = answer(client().post(&url).body("{}").send().await.unwrap()).await;
    // A body not declared JSON: 415 (docs/http.md).
    assert_problem(&no_ctype, 415);
    let not_json = answer(
        client()
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(&not_json, 406);

    // PUT: the app reports its context transferred.
    let mut body = registration("inst-1", "10.150.0.2", "APP_MOBILITY_WITH_CONFIRMATION");
    body["deviceInformation"][0]["contextTransferState"] = json!("USER_CONTEXT_TRANSFER_COMPLETED");
    let p = put_json(&format!("{url}/{}", ids[1]), &body).await;
    assert_eq!(p.0, 200, "{}", p.2);
    assert_eq!(
        get(&format!("{url}/{}", ids[1])).await.2["deviceInformation"][0]["contextTransferState"],
        "USER_CONTEXT_TRANSFER_COMPLETED"
    );
    body["appMobilityServiceId"] = json!("other");
    put_json(&format!("{url}/{}", ids[1]), &body)
        .await
        .assert_problem(400);
    body["appMobilityServiceId"] = json!("ams-999");
    put_json(&format!("{url}/ams-999"), &body)
        .await
        .assert_problem(404);

    // Deregister task and DELETE.
    post_json(&format!("{url}/{}/deregister_task", ids[0]), &json!({}))
        .await
        .assert_status(204);
    get(&format!("{url}/{}", ids[0])).await.assert_problem(404);
    delete(&format!("{url}/{}", ids[2]))
        .await
        .assert_status(204);
    delete(&format!("{url}/{}", ids[2]))
        .await
        .assert_problem(404);
    post_json(&format!("{url}/{}/deregister_task", ids[2]), &json!({}))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn registration_expiry_time_removes_it() {
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &[]);
    let url = c.api("/amsi/v1/app_mobility_services");
    let mut body = registration("i", "10.150.0.1", "APP_MOBILITY_WITHOUT_CONFIRMATION");
    body["expiryTime"] = json!(1);
    let r = post_json(&url, &body).await;
    assert_eq!(r.0, 201, "{}", r.2);
    assert_eq!(r.2["expiryTime"], 1);
    let id = r.2["appMobilityServiceId"].as_str().unwrap();
    get(&format!("{url}/{id}")).await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    get(&format!("{url}/{id}")).await.assert_problem(404);
}

#[tokio::test]
async fn subscriptions_good_and_bad_and_expiry_notified_once() {
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &[]);
    let cb = Callback::start().await;
    let url = c.api("/amsi/v1/subscriptions");
    let mp = |cbpath: &str| {
        json!({
            "subscriptionType": "MobilityProcedureSubscription",
            "callbackReference": cb.url(cbpath),
            "filterCriteria": {"associateId": [{"type": "UE_IPv4_ADDRESS", "value": "10.150.0.1"}]}
        })
    };
    let r = post_json(&url, &mp("/mp")).await;
    assert_eq!(r.0, 201, "{}", r.2);
    assert_schema(
        &r.2,
        &[
            ("subscriptionType", "string"),
            ("callbackReference", "string"),
            ("filterCriteria", "object"),
            ("_links", "object"),
        ],
    );
    assert_eq!(
        r.2["filterCriteria"]["mobilityStatus"],
        json!(["INTERHOST_MOVEOUT_TRIGGERED"]),
        "the spec's default is in the answer"
    );
    let self_href = r.2["_links"]["self"]["href"].as_str().unwrap().to_string();
    assert_eq!(r.1["location"].to_str().unwrap(), self_href);
    let adj = post_json(
        &url,
        &json!({"subscriptionType": "AdjacentAppInfoSubscription",
        "callbackReference": cb.url("/adj"), "filterCriteria": {}}),
    )
    .await;
    assert_eq!(adj.0, 201, "{}", adj.2);

    // Bad ones.
    let mut no_cb = mp("/x");
    no_cb.as_object_mut().unwrap().remove("callbackReference");
    post_json(&url, &no_cb).await.assert_problem(400);
    post_json(&url, &json!({"subscriptionType": "CellChangeSubscription", "callbackReference": cb.url("/x"), "filterCriteria": {}})).await.assert_problem(400);
    let mut bad_status = mp("/x");
    bad_status["filterCriteria"]["mobilityStatus"] = json!([1]);
    post_json(&url, &bad_status).await.assert_problem(400);
    let mut past = mp("/x");
    past["expiryDeadline"] = json!({"seconds": 1000, "nanoSeconds": 0});
    post_json(&url, &past).await.assert_problem(422);
    let mut ftp = mp("/x");
    ftp["callbackReference"] = json!("ftp://h/x");
    post_json(&url, &ftp).await.assert_problem(400);

    let text = answer(
        client()
            .post(&url)
            .header("content-type", "text/plain")
            .body(mp("/x").to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(&text, 415);

    // Lists, by type.
    let all = get(&url).await.2;
    assert_eq!(all["subscription"].as_array().unwrap().len(), 2, "{all}");
    assert_schema(&all, &[("_links", "object")]);
    let only = get(&format!("{url}?subscriptionType=mobility_proc"))
        .await
        .2;
    assert_eq!(
        only["subscription"],
        json!([{"href": self_href, "subscriptionType": "MobilityProcedureSubscription"}])
    );
    get(&format!("{url}?subscriptionType=everything"))
        .await
        .assert_problem(400);

    // PUT: type cannot change; a good PUT changes the filter.
    let mut as_adj = mp("/mp");
    as_adj["subscriptionType"] = json!("AdjacentAppInfoSubscription");
    put_json(&self_href, &as_adj).await.assert_problem(400);
    let mut changed = mp("/mp");
    changed["filterCriteria"]["mobilityStatus"] =
        json!(["INTERHOST_MOVEOUT_COMPLETED", "INTERHOST_MOVEOUT_FAILED"]);
    let p = put_json(&self_href, &changed).await;
    assert_eq!(p.0, 200, "{}", p.2);
    assert_eq!(
        get(&self_href).await.2["filterCriteria"]["mobilityStatus"][1],
        "INTERHOST_MOVEOUT_FAILED"
    );
    delete(&self_href).await.assert_status(204);
    get(&self_href).await.assert_problem(404);

    // Expiry: one ExpiryNotification, then the subscription is gone.
    let deadline = now_s() + 2;
    let mut exp = mp("/exp");
    exp["expiryDeadline"] = json!({"seconds": deadline, "nanoSeconds": 0});
    let e = post_json(&url, &exp).await;
    assert_eq!(e.0, 201, "{}", e.2);
    let e_href = e.2["_links"]["self"]["href"].as_str().unwrap().to_string();
    let got = cb.wait("/exp", 1, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(GRACE).await;
    assert_eq!(cb.on("/exp").len(), 1, "exactly one expiry notification");
    let n = &got[0].body;
    assert_eq!(n["notificationType"], "ExpiryNotification");
    assert_eq!(
        n["expiryDeadline"],
        json!({"seconds": deadline, "nanoSeconds": 0})
    );
    assert_eq!(n["_links"]["subscription"]["href"], e_href.as_str());
    assert_schema(
        n,
        &[
            ("notificationType", "string"),
            ("_links", "object"),
            ("expiryDeadline", "object"),
        ],
    );
    get(&e_href).await.assert_problem(404);
}

#[tokio::test]
async fn adjacent_app_instances_query_and_notification() {
    let (a, b) = (FakeHost::start().await, FakeHost::start().await);
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a), ("edge-b", &b)]));
    onboard(&c, "counter").await;
    let i1 = instantiate(&c, "counter", "edge-a").await;
    let cb = Callback::start().await;
    let s = post_json(
        &c.api("/amsi/v1/subscriptions"),
        &json!({"subscriptionType": "AdjacentAppInfoSubscription",
        "callbackReference": cb.url("/adj"), "filterCriteria": {"appInstanceId": i1}}),
    )
    .await;
    assert_eq!(s.0, 201, "{}", s.2);
    let i2 = instantiate(&c, "counter", "edge-b").await;

    let got = cb.wait("/adj", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(GRACE).await;
    assert_eq!(
        cb.on("/adj").len(),
        1,
        "one notification for one new instance"
    );
    let n = &got[0].body;
    assert_eq!(n["notificationType"], "AdjacentAppInfoNotification");
    assert_eq!(
        n["adjacentAppInfo"],
        json!([{"appInstanceId": i2,
        "commInterface": [{"ipAddresses": [{"host": "10.200.0.3", "port": 8080}]}]}])
    );
    assert_eq!(
        n["_links"]["subscription"]["href"],
        s.2["_links"]["self"]["href"]
    );

    let q = c.api("/amsi/v1/queries/adjacent_app_instances");
    let all = get(&q).await;
    assert_eq!(all.0, 200);
    assert_eq!(all.2.as_array().unwrap().len(), 2);
    for x in all.2.as_array().unwrap() {
        assert_schema(
            x,
            &[
                ("appInstanceId", "string"),
                ("appDId", "string"),
                ("appInstanceCommLink", "array"),
            ],
        );
    }
    let others = get(&format!(
        "{q}?filter=(eq,appDId,counter);(neq,appInstanceId,{i1})"
    ))
    .await
    .2;
    assert_eq!(others.as_array().unwrap().len(), 1);
    assert_eq!(others[0]["appInstanceId"], i2.as_str());
    assert_eq!(others[0]["mecHostInformation"]["hostName"], "edge-b");
    assert!(get(&format!("{q}?filter=(eq,appDId,other)"))
        .await
        .2
        .as_array()
        .unwrap()
        .is_empty());
    get(&format!("{q}?filter=appDId")).await.assert_problem(400);
    get(&format!("{q}?all_fields=1")).await.assert_problem(400);
}
