//! MEC 011 of `ferry control`, end to end: readiness, traffic rules applied through a real
//! data plane command, DNS rules, timing, the service registry and availability
//! notifications to a real callback server.

mod control_support;
mod shared;

use control_support::*;
use serde_json::json;
use std::time::Duration;

/// A data plane command that appends "APP HOST" to a file, and fails for host "edge-bad".
fn data_plane_script(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let log = dir.join("routes.log");
    let script = dir.join("route.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1 $2\" >> {}\n[ \"$2\" != edge-bad ] || {{ echo 'no such host' >&2; exit 3; }}\n", log.display()),
    )
    .unwrap();
    (format!("sh {}", script.display()), log)
}

#[tokio::test]
async fn readiness_traffic_and_dns_rules_timing() {
    let (a, b) = (FakeHost::start().await, FakeHost::start().await);
    let (_d, dir) = state_dir();
    let (cmd, log) = data_plane_script(&dir);
    let mut args = host_args(&[("edge-a", &a), ("edge-b", &b)]);
    args.extend(["--data-plane-cmd".to_string(), cmd]);
    let c = ControlProcess::start(&dir, &args);
    onboard(&c, "counter").await;
    let created = create_instance(&c, "counter").await.2;
    let id = created["id"].as_str().unwrap().to_string();
    let app = c.api(&format!("/mec_app_support/v1/applications/{id}"));
    let confirm = |what: &str, body: serde_json::Value| {
        let url = format!("{app}/{what}");
        async move { post_json(&url, &body).await }
    };

    // Not instantiated yet: confirm_ready is a 409; unknown app a 404; bad indication a 400.
    confirm("confirm_ready", json!({"indication": "READY"}))
        .await
        .assert_problem(409);
    post_json(
        &c.api("/mec_app_support/v1/applications/nope/confirm_ready"),
        &json!({"indication": "READY"}),
    )
    .await
    .assert_problem(404);
    confirm("confirm_ready", json!({"indication": "SOON"}))
        .await
        .assert_problem(400);

    let r = instantiate_with(
        &c,
        &id,
        &json!({"selectedMECHostInfo": [{"hostName": "edge-a", "hostId": {}}]}),
    )
    .await;
    assert_eq!(r.0, 202, "{}", r.2);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "10.200.0.2 edge-a\n",
        "instantiation steers the address to its host"
    );
    confirm("confirm_ready", json!({"indication": "READY"}))
        .await
        .assert_status(204);
    confirm(
        "confirm_termination",
        json!({"operationAction": "TERMINATING"}),
    )
    .await
    .assert_problem(409);
    confirm(
        "confirm_termination",
        json!({"operationAction": "EXPLODING"}),
    )
    .await
    .assert_problem(400);

    // Traffic rules.
    let rules = get(&format!("{app}/traffic_rules")).await;
    assert_eq!(rules.0, 200);
    let rule = rules.2[0].clone();
    assert_schema(
        &rule,
        &[
            ("trafficRuleId", "string"),
            ("filterType", "string"),
            ("priority", "integer"),
            ("trafficFilter", "array"),
            ("action", "string"),
            ("state", "string"),
        ],
    );
    assert_eq!(rule["trafficRuleId"], "ferry-steer");
    assert_eq!(rule["ferryHost"], "edge-a");
    let rule_url = format!("{app}/traffic_rules/ferry-steer");
    assert_eq!(get(&rule_url).await.2, rule);
    let mut moved = rule.clone();
    moved["ferryHost"] = json!("edge-b");
    let p = put_json(&rule_url, &moved).await;
    assert_eq!(p.0, 200, "{}", p.2);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "10.200.0.2 edge-a\n10.200.0.2 edge-b\n"
    );
    assert_eq!(get(&rule_url).await.2["ferryHost"], "edge-b");
    // A dstInterface.dstIpAddress that is no known host's address is refused.
    let mut by_ip = rule.clone();
    by_ip.as_object_mut().unwrap().remove("ferryHost");
    by_ip["dstInterface"]["dstIpAddress"] = json!("192.0.2.1");
    put_json(&rule_url, &by_ip).await.assert_problem(400);
    // Failures: unknown host, id mismatch, unknown rule, bad enum, data plane failure.
    let mut bad = rule.clone();
    bad["ferryHost"] = json!("edge-z");
    put_json(&rule_url, &bad).await.assert_problem(400);
    put_json(&format!("{app}/traffic_rules/other"), &rule)
        .await
        .assert_problem(400);
    let mut other = rule.clone();
    other["trafficRuleId"] = json!("other");
    put_json(&format!("{app}/traffic_rules/other"), &other)
        .await
        .assert_problem(404);
    let mut bad_action = rule.clone();
    bad_action["action"] = json!("TELEPORT");
    put_json(&rule_url, &bad_action).await.assert_problem(400);
    // An INACTIVE rule is stored without touching the data plane.
    let mut inactive = moved.clone();
    inactive["state"] = json!("INACTIVE");
    put_json(&rule_url, &inactive).await.assert_status(200);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);

    // DNS rules (from the AppD's appDNSRule, pointing at the instance).
    let dns = get(&format!("{app}/dns_rules")).await.2;
    assert_eq!(
        dns,
        json!([{"dnsRuleId": "dns1", "domainName": "counter.mec", "ipAddressType": "IP_V4",
        "ipAddress": "10.200.0.2", "ttl": 30, "state": "ACTIVE"}])
    );
    let mut d = dns[0].clone();
    d["ipAddress"] = json!("10.200.0.9");
    put_json(&format!("{app}/dns_rules/dns1"), &d)
        .await
        .assert_status(200);
    assert_eq!(
        get(&format!("{app}/dns_rules/dns1")).await.2["ipAddress"],
        "10.200.0.9"
    );
    d["ipAddress"] = json!("nope");
    put_json(&format!("{app}/dns_rules/dns1"), &d)
        .await
        .assert_problem(400);
    get(&format!("{app}/dns_rules/dns9"))
        .await
        .assert_problem(404);

    // Timing.
    let t = get(&c.api("/mec_app_support/v1/timing/current_time")).await;
    assert_eq!(t.0, 200);
    assert_schema(
        &t.2,
        &[
            ("seconds", "integer"),
            ("nanoSeconds", "integer"),
            ("timeSourceStatus", "string"),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t.2["seconds"].as_u64().unwrap()) < 5);
    let caps = get(&c.api("/mec_app_support/v1/timing/timing_caps")).await;
    assert_eq!(caps.0, 200);
    assert_schema(&caps.2, &[("timeStamp", "object")]);

    // Termination removes the rules.
    post_json(
        &c.api(&format!("/app_lcm/v1/app_instances/{id}/terminate")),
        &json!({"terminationType": "GRACEFUL"}),
    )
    .await
    .assert_status(202);
    assert!(get(&format!("{app}/traffic_rules"))
        .await
        .2
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn data_plane_failure_is_a_502_and_keeps_the_old_rule() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let (cmd, _log) = data_plane_script(&dir);
    let bad = FakeHost::start().await;
    let mut args = host_args(&[("edge-a", &a), ("edge-bad", &bad)]);
    args.extend(["--data-plane-cmd".to_string(), cmd]);
    let c = ControlProcess::start(&dir, &args);
    onboard(&c, "counter").await;
    let id = instantiate(&c, "counter", "edge-a").await;
    let rule_url = c.api(&format!(
        "/mec_app_support/v1/applications/{id}/traffic_rules/ferry-steer"
    ));
    let mut rule = get(&rule_url).await.2;
    rule["ferryHost"] = json!("edge-bad");
    let r = put_json(&rule_url, &rule).await;
    assert_problem(&r, 502);
    assert!(
        r.2["detail"].as_str().unwrap().contains("no such host"),
        "{}",
        r.2
    );
    assert_eq!(get(&rule_url).await.2["ferryHost"], "edge-a");
}

#[tokio::test]
async fn service_registry_and_availability_notifications() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a)]));
    onboard(&c, "counter").await;
    let producer = instantiate(&c, "counter", "edge-a").await;
    let consumer = instantiate(&c, "counter", "edge-a").await;
    let cb = Callback::start().await;
    let sm = c.api("/mec_service_mgmt/v1");
    let sub = post_json(
        &format!("{sm}/applications/{consumer}/subscriptions"),
        &json!({
        "subscriptionType": "SerAvailabilityNotificationSubscription",
        "callbackReference": cb.url("/svc"),
        "filteringCriteria": {"serNames": ["counter-api"]}}),
    )
    .await;
    assert_eq!(sub.0, 201, "{}", sub.2);
    assert_schema(
        &sub.2,
        &[
            ("subscriptionType", "string"),
            ("callbackReference", "string"),
            ("_links", "object"),
        ],
    );
    post_json(
        &format!("{sm}/applications/{consumer}/subscriptions"),
        &json!({
        "subscriptionType": "Other", "callbackReference": cb.url("/x")}),
    )
    .await
    .assert_problem(400);
    post_json(&format!("{sm}/applications/nope/subscriptions"), &json!({
        "subscriptionType": "SerAvailabilityNotificationSubscription", "callbackReference": cb.url("/x")})).await.assert_problem(404);

    let service = |name: &str| {
        json!({
            "serName": name, "version": "1.0", "state": "ACTIVE", "serializer": "JSON",
            "serCategory": {"href": "http://x/cat/1", "id": "cat1", "name": "demo", "version": "1"},
            "transportInfo": {"id": "t1", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP", "version": "1.1",
                "endpoint": {"uris": ["http://10.200.0.2:8080/"]}, "security": {}},
            "scopeOfLocality": "MEC_HOST"
        })
    };
    let apps = format!("{sm}/applications/{producer}/services");
    let s = post_json(&apps, &service("counter-api")).await;
    assert_eq!(s.0, 201, "{}", s.2);
    assert_schema(
        &s.2,
        &[
            ("serInstanceId", "string"),
            ("serName", "string"),
            ("version", "string"),
            ("state", "string"),
            ("transportInfo", "object"),
            ("serializer", "string"),
        ],
    );
    let ser = s.2["serInstanceId"].as_str().unwrap().to_string();
    let other = post_json(&apps, &service("other-api")).await;
    assert_eq!(other.0, 201);
    // Bad registrations.
    let mut bad = service("x");
    bad["serializer"] = json!("YAML");
    post_json(&apps, &bad).await.assert_problem(400);
    post_json(&apps, &json!({"serName": "x"}))
        .await
        .assert_problem(400);
    post_json(&format!("{sm}/applications/nope/services"), &service("x"))
        .await
        .assert_problem(404);

    // Queries.
    assert_eq!(
        get(&format!("{sm}/services"))
            .await
            .2
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let by_name = get(&format!("{sm}/services?ser_name=counter-api")).await.2;
    assert_eq!(by_name.as_array().unwrap().len(), 1);
    assert_eq!(by_name[0]["serInstanceId"], ser.as_str());
    assert_eq!(
        get(&format!(
            "{sm}/services?ser_category_id=cat1&scope_of_locality=MEC_HOST"
        ))
        .await
        .2
        .as_array()
        .unwrap()
        .len(),
        2
    );
    assert!(get(&format!("{sm}/services?is_local=false"))
        .await
        .2
        .as_array()
        .unwrap()
        .is_empty());
    get(&format!("{sm}/services?ser_name=a&ser_instance_id=b"))
        .await
        .assert_problem(400);
    get(&format!("{sm}/services?is_local=maybe"))
        .await
        .assert_problem(400);
    get(&format!("{sm}/services/{ser}"))
        .await
        .assert_status(200);
    get(&format!("{sm}/services/nope"))
        .await
        .assert_problem(404);
    get(&format!("{sm}/applications/{consumer}/services/{ser}"))
        .await
        .assert_problem(404);

    // Change state, then delete: ADDED, STATE_CHANGED, REMOVED for counter-api only.
    let mut inactive = service("counter-api");
    inactive["state"] = json!("INACTIVE");
    put_json(&format!("{apps}/{ser}"), &inactive)
        .await
        .assert_status(200);
    delete(&format!("{apps}/{ser}")).await.assert_status(204);
    delete(&format!("{apps}/{ser}")).await.assert_problem(404);
    let got = cb.wait("/svc", 3, WAIT).await;
    tokio::time::sleep(GRACE).await;
    let changes: Vec<String> = cb
        .on("/svc")
        .iter()
        .map(|r| {
            r.body["serviceReferences"][0]["changeType"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(changes, ["ADDED", "STATE_CHANGED", "REMOVED"]);
    let n = &got[0].body;
    assert_schema(
        n,
        &[
            ("notificationType", "string"),
            ("serviceReferences", "array"),
            ("_links", "object"),
        ],
    );
    assert_eq!(n["serviceReferences"][0]["serName"], "counter-api");
    assert_eq!(
        n["_links"]["subscription"]["href"],
        sub.2["_links"]["self"]["href"]
    );

    // Subscriptions list, read, delete.
    let sub_href = sub.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let l = get(&format!("{sm}/applications/{consumer}/subscriptions"))
        .await
        .2;
    assert_eq!(l["_links"]["subscriptions"][0]["href"], sub_href.as_str());
    get(&sub_href).await.assert_status(200);
    delete(&sub_href).await.assert_status(204);
    get(&sub_href).await.assert_problem(404);
}

#[tokio::test]
async fn graceful_termination_and_stop_are_notified_and_wait_for_confirmation() {
    let host = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &host)]));
    let cb = Callback::start().await;
    onboard(&c, "counter").await;
    let id = instantiate(&c, "counter", "edge-a").await;
    let subs = c.api(&format!(
        "/mec_app_support/v1/applications/{id}/subscriptions"
    ));
    let body = |kind: &str, app: &str| json!({"subscriptionType": kind, "callbackReference": cb.url("/term"), "appInstanceId": app});

    post_json(&subs, &body("Other", &id))
        .await
        .assert_problem(400);
    post_json(
        &subs,
        &body("AppTerminationNotificationSubscription", "someone-else"),
    )
    .await
    .assert_problem(400);
    post_json(
        &c.api("/mec_app_support/v1/applications/nobody/subscriptions"),
        &body("AppTerminationNotificationSubscription", "nobody"),
    )
    .await
    .assert_problem(404);
    let created = post_json(&subs, &body("AppTerminationNotificationSubscription", &id)).await;
    assert_eq!(created.0, 201, "{}", created.2);
    let href = created.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(created.1["location"].to_str().unwrap(), href);
    let list = get(&subs).await;
    assert_eq!(
        list.2["_links"]["subscriptions"][0]["href"],
        href.as_str(),
        "{}",
        list.2
    );
    get(&href).await.assert_status(200);

    // A graceful termination waits for the instance's confirmation (the timeout is far).
    let terminate = tokio::spawn(post_json_owned(
        c.api(&format!("/app_lcm/v1/app_instances/{id}/terminate")),
        json!({"terminationType": "GRACEFUL", "gracefulTerminationTimeout": 120}),
    ));
    let got = cb.wait("/term", 1, WAIT).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let n = &got[0].body;
    assert_eq!(n["notificationType"], "AppTerminationNotification");
    assert_eq!(n["operationAction"], "TERMINATING");
    assert_eq!(n["maxGracefulTimeout"], 120);
    assert_eq!(n["_links"]["subscription"]["href"], href.as_str());
    let confirm = n["_links"]["confirmTermination"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(confirm.ends_with(&format!("/applications/{id}/confirm_termination")));
    tokio::time::sleep(GRACE).await;
    assert!(!terminate.is_finished(), "terminate did not wait");
    assert_eq!(
        instance(&c, &id).await["instantiationState"],
        "INSTANTIATED"
    );
    post_json(&confirm, &json!({"operationAction": "STOPPING"}))
        .await
        .assert_problem(409);
    post_json(&confirm, &json!({"operationAction": "TERMINATING"}))
        .await
        .assert_status(204);
    let t = tokio::time::timeout(WAIT, terminate)
        .await
        .expect("terminate goes on after the confirmation")
        .unwrap();
    assert_eq!(t.0, 202, "{}", t.2);
    assert_eq!(t.2["operationState"], "COMPLETED", "{}", t.2);
    assert_eq!(
        instance(&c, &id).await["instantiationState"],
        "NOT_INSTANTIATED"
    );
    post_json(&confirm, &json!({"operationAction": "TERMINATING"}))
        .await
        .assert_problem(409);

    // A graceful stop nobody confirms goes on after its timeout.
    let other = instantiate(&c, "counter", "edge-a").await;
    let other_subs = c.api(&format!(
        "/mec_app_support/v1/applications/{other}/subscriptions"
    ));
    let s = post_json(
        &other_subs,
        &body("AppTerminationNotificationSubscription", &other),
    )
    .await;
    assert_eq!(s.0, 201, "{}", s.2);
    let stop = post_json(
        &c.api(&format!("/app_lcm/v1/app_instances/{other}/operate")),
        &json!({"changeStateTo": "STOPPED", "stopType": "GRACEFUL", "gracefulStopTimeout": 1}),
    )
    .await;
    assert_eq!(stop.0, 202, "{}", stop.2);
    let got = cb.wait("/term", 2, WAIT).await;
    assert_eq!(got[1].body["operationAction"], "STOPPING");
    assert_eq!(got[1].body["maxGracefulTimeout"], 1);
    assert_eq!(
        instance(&c, &other).await["instantiatedAppState"]["operationalState"],
        "STOPPED"
    );

    delete(&href).await.assert_status(204);
    get(&href).await.assert_problem(404);
}

async fn post_json_owned(url: String, body: serde_json::Value) -> Answer {
    post_json(&url, &body).await
}

/// MEC 011 v3.1.1 service liveness: a producer registered with `livenessInterval` gets a
/// liveness resource; heartbeats keep its service ACTIVE, two intervals of silence make it
/// SUSPENDED (notified as a state change) and the next heartbeat makes it ACTIVE again.
#[tokio::test]
async fn service_liveness_suspends_a_silent_producer_and_revives_it() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a)]));
    onboard(&c, "counter").await;
    let producer = instantiate(&c, "counter", "edge-a").await;
    let cb = Callback::start().await;
    let sm = c.api("/mec_service_mgmt/v1");
    let sub = post_json(
        &format!("{sm}/applications/{producer}/subscriptions"),
        &json!({
        "subscriptionType": "SerAvailabilityNotificationSubscription",
        "callbackReference": cb.url("/svc"),
        "filteringCriteria": {"serNames": ["beating"]}}),
    )
    .await;
    assert_eq!(sub.0, 201, "{}", sub.2);
    let service = |name: &str, interval: Option<u32>| {
        let mut s = json!({
            "serName": name, "version": "1.0", "state": "ACTIVE", "serializer": "JSON",
            "transportInfo": {"id": "t1", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP", "version": "1.1",
                "endpoint": {"uris": ["http://10.200.0.2:8080/"]}, "security": {}}
        });
        if let Some(i) = interval {
            s["livenessInterval"] = json!(i);
        }
        s
    };
    let apps = format!("{sm}/applications/{producer}/services");

    // Without livenessInterval: no heartbeats, no liveness resource.
    let quiet = post_json(&apps, &service("quiet", None)).await;
    assert_eq!(quiet.0, 201, "{}", quiet.2);
    assert!(quiet.2.get("livenessInterval").is_none(), "{}", quiet.2);
    assert!(quiet.2["_links"].get("liveness").is_none(), "{}", quiet.2);
    let quiet_self = quiet.2["_links"]["self"]["href"].as_str().unwrap();
    get(&format!("{quiet_self}/liveness"))
        .await
        .assert_problem(404);
    // 0 asks the platform to choose.
    let chosen = post_json(&apps, &service("chosen", Some(0))).await;
    assert_eq!(chosen.2["livenessInterval"], 10, "{}", chosen.2);

    let s = post_json(&apps, &service("beating", Some(2))).await;
    assert_eq!(s.0, 201, "{}", s.2);
    assert_eq!(s.2["livenessInterval"], 2, "{}", s.2);
    let ser = s.2["serInstanceId"].as_str().unwrap().to_string();
    let liveness = s.2["_links"]["liveness"]["href"]
        .as_str()
        .expect("a liveness link")
        .to_string();
    let beat = |state: &'static str| {
        let url = liveness.clone();
        async move {
            answer(
                client()
                    .patch(&url)
                    .json(&json!({"state": state}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let state = || async { get(&format!("{sm}/services/{ser}")).await.2["state"].clone() };

    // Heartbeats every half second for three seconds: the service stays ACTIVE.
    for _ in 0..6 {
        beat("ACTIVE").await.assert_status(204);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(state().await, "ACTIVE");
    let info = get(&liveness).await;
    assert_eq!(info.0, 200, "{}", info.2);
    assert_eq!(info.2["state"], "ACTIVE");
    assert_eq!(info.2["interval"], 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last = info.2["timeStamp"]["seconds"].as_u64().unwrap();
    assert!(now - last <= 2, "last heartbeat at {last}, now {now}");
    beat("INACTIVE").await.assert_problem(400);

    // Silence: SUSPENDED, notified.
    let got = cb.wait("/svc", 2, Duration::from_secs(20)).await;
    let change = &got[1].body["serviceReferences"][0];
    assert_eq!(change["changeType"], "STATE_CHANGED", "{}", got[1].body);
    assert_eq!(change["state"], "SUSPENDED", "{}", got[1].body);
    assert_eq!(state().await, "SUSPENDED");
    assert_eq!(get(&liveness).await.2["state"], "SUSPENDED");

    // The next heartbeat: ACTIVE again, notified.
    beat("ACTIVE").await.assert_status(204);
    assert_eq!(state().await, "ACTIVE");
    let got = cb.wait("/svc", 3, WAIT).await;
    assert_eq!(got[2].body["serviceReferences"][0]["state"], "ACTIVE");
    let changes: Vec<_> = got
        .iter()
        .map(|r| r.body["serviceReferences"][0]["changeType"].clone())
        .collect();
    assert_eq!(changes, ["ADDED", "STATE_CHANGED", "STATE_CHANGED"]);

    // Gone with its service.
    delete(&format!("{apps}/{ser}")).await.assert_status(204);
    get(&liveness).await.assert_problem(404);
}
