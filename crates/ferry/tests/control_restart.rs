//! `ferry control` restarted on the same state directory knows every package, instance,
//! registration, subscription and rule, and its subscriptions keep delivering (expiry timers
//! re-armed, workers restarted).

mod control_support;
mod shared;

use control_support::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every resource list the control plane serves, by URL path.
async fn snapshot(c: &ControlProcess, inst: &str, sub_hrefs: &[String]) -> Vec<(String, Value)> {
    let mut paths: Vec<String> = [
        "/app_pkgm/v1/app_packages",
        "/app_lcm/v1/app_instances",
        "/app_lcm/v1/app_lcm_op_occs",
        "/app_lcm/v1/subscriptions",
        "/amsi/v1/app_mobility_services",
        "/amsi/v1/subscriptions",
        "/mec_service_mgmt/v1/services",
        "/ferry/control/v1/hosts",
        "/ferry/control/v1/relocations",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    paths.push(format!(
        "/mec_app_support/v1/applications/{inst}/traffic_rules"
    ));
    paths.push(format!("/mec_app_support/v1/applications/{inst}/dns_rules"));
    paths.push(format!(
        "/mec_service_mgmt/v1/applications/{inst}/subscriptions"
    ));
    let mut out = Vec::new();
    for p in paths {
        let r = get(&c.api(&p)).await;
        assert_eq!(r.0, 200, "{p}: {}", r.2);
        out.push((p, r.2));
    }
    for h in sub_hrefs {
        let r = get(h).await;
        assert_eq!(r.0, 200, "{h}: {}", r.2);
        out.push((h.clone(), r.2));
    }
    out
}

#[tokio::test]
async fn restart_keeps_every_resource_and_subscriptions_keep_delivering() {
    let (a, b) = (FakeHost::start().await, FakeHost::start().await);
    let (_d, dir) = state_dir();
    let args = host_args(&[("edge-a", &a), ("edge-b", &b)]);
    let mut c = ControlProcess::start(&dir, &args);
    let cb = Callback::start().await;

    onboard(&c, "counter").await;
    let inst = instantiate(&c, "counter", "edge-a").await;
    let mut sub_hrefs = Vec::new();
    let lcm = post_json(
        &c.api("/app_lcm/v1/subscriptions"),
        &json!({
        "subscriptionType": "AppInstanceStateChange", "callbackUri": cb.url("/lcm")}),
    )
    .await;
    assert_eq!(lcm.0, 201);
    sub_hrefs.push(
        lcm.2["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let mut reg_ids = Vec::new();
    for (n, level) in [
        "APP_MOBILITY_NOT_ALLOWED",
        "APP_MOBILITY_WITH_CONFIRMATION",
        "APP_MOBILITY_WITHOUT_CONFIRMATION",
    ]
    .iter()
    .enumerate()
    {
        let r = post_json(&c.api("/amsi/v1/app_mobility_services"), &json!({
            "serviceConsumerId": {"appInstanceId": inst},
            "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": format!("10.150.0.{}", n + 1)},
                "appMobilityServiceLevel": level}]})).await;
        assert_eq!(r.0, 201);
        reg_ids.push(r.2["appMobilityServiceId"].as_str().unwrap().to_string());
    }
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 5;
    let exp = post_json(
        &c.api("/amsi/v1/subscriptions"),
        &json!({
        "subscriptionType": "MobilityProcedureSubscription", "callbackReference": cb.url("/exp"),
        "filterCriteria": {}, "expiryDeadline": {"seconds": deadline, "nanoSeconds": 0}}),
    )
    .await;
    assert_eq!(exp.0, 201);
    let exp_href = exp.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let svc_sub = post_json(&c.api(&format!("/mec_service_mgmt/v1/applications/{inst}/subscriptions")), &json!({
        "subscriptionType": "SerAvailabilityNotificationSubscription", "callbackReference": cb.url("/svc")})).await;
    assert_eq!(svc_sub.0, 201);
    sub_hrefs.push(
        svc_sub.2["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let svc = post_json(&c.api(&format!("/mec_service_mgmt/v1/applications/{inst}/services")), &json!({
        "serName": "counter-api", "version": "1", "state": "ACTIVE", "serializer": "JSON",
        "transportInfo": {"id": "t", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP", "version": "1.1",
            "endpoint": {"uris": ["http://10.200.0.2:8080/"]}, "security": {}}})).await;
    assert_eq!(svc.0, 201);
    let ser = svc.2["serInstanceId"].as_str().unwrap().to_string();
    let rule_url = c.api(&format!(
        "/mec_app_support/v1/applications/{inst}/traffic_rules/ferry-steer"
    ));
    let mut rule = get(&rule_url).await.2;
    rule["ferryHost"] = json!("edge-b");
    put_json(&rule_url, &rule).await.assert_status(200);
    cb.wait("/svc", 1, WAIT).await;

    let before = snapshot(&c, &inst, &sub_hrefs).await;
    let hosts = get(&c.api("/ferry/control/v1/hosts")).await.2;
    assert_eq!(hosts["edge-a"], a.url.as_str(), "{hosts}");
    assert_eq!(
        get(&c.api("/ferry/control/v1/relocations")).await.2,
        json!([])
    );
    let status = c.terminate().expect("ferry control exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let addr = c.addr();
    drop(c);

    let c = ControlProcess::start_on(&addr, &dir, &args);
    let after = snapshot(&c, &inst, &sub_hrefs).await;
    for ((p, x), (_, y)) in before.iter().zip(&after) {
        assert_eq!(x, y, "{p} changed across the restart");
    }
    assert_eq!(before.len(), after.len());
    // The expiring subscription is still there before its deadline...
    get(&exp_href).await.assert_status(200);
    // ...and ids stay unique.
    let r = post_json(
        &c.api("/amsi/v1/app_mobility_services"),
        &json!({"serviceConsumerId": {"mepId": "mep1"}}),
    )
    .await;
    assert_eq!(r.0, 201);
    assert!(
        !reg_ids.contains(&r.2["appMobilityServiceId"].as_str().unwrap().to_string()),
        "{}",
        r.2
    );

    // The restored workers deliver: a service removal and a termination...
    delete(&c.api(&format!(
        "/mec_service_mgmt/v1/applications/{inst}/services/{ser}"
    )))
    .await
    .assert_status(204);
    post_json(
        &c.api(&format!("/app_lcm/v1/app_instances/{inst}/terminate")),
        &json!({"terminationType": "FORCEFUL"}),
    )
    .await
    .assert_status(202);
    let svc_got = cb.wait("/svc", 2, WAIT).await;
    assert_eq!(svc_got.len(), 2);
    assert_eq!(
        svc_got[1].body["serviceReferences"][0]["changeType"],
        "REMOVED"
    );
    let lcm_got = cb.wait("/lcm", 1, WAIT).await;
    assert_eq!(lcm_got.len(), 1);
    assert_eq!(lcm_got[0].body["notificationType"], "NOT_INSTANTIATED");
    // ...and the re-armed expiry timer fires once.
    let e = cb.wait("/exp", 1, Duration::from_secs(8)).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].body["notificationType"], "ExpiryNotification");
    tokio::time::sleep(GRACE).await;
    assert_eq!(cb.on("/exp").len(), 1);
    get(&exp_href).await.assert_problem(404);
    assert_eq!(cb.on("/lcm").len(), 1);
}

#[tokio::test]
async fn bad_command_lines_fail_with_a_reason() {
    let (_d, dir) = state_dir();
    // A topology whose cell b1 is served by edge-b, which is not given as a host.
    let topo = dir.join("topology.toml");
    let cell = |name: &str, id: &str, host: &str| {
        format!(
            "[[cells]]\nname = \"{name}\"\necgi = {{ mcc = \"001\", mnc = \"01\", cell_id = \"{id}\" }}\n\
             position = {{ latitude = 43.73, longitude = 7.42 }}\nradius_m = 400.0\nhost = \"{host}\"\n"
        )
    };
    let text = format!(
        "name = \"t\"\n[[hosts]]\nname = \"edge-a\"\naddress = \"10.100.0.11\"\n\
         [[hosts]]\nname = \"edge-b\"\naddress = \"10.100.0.12\"\n{}{}",
        cell("a1", "00000a1", "edge-a"),
        cell("b1", "00000b1", "edge-b")
    );
    std::fs::write(&topo, text).unwrap();
    let missing = dir.join("missing.toml");
    for (args, needle) in [
        (vec!["control"], "--state-dir"),
        (
            vec![
                "control",
                "--state-dir",
                dir.to_str().unwrap(),
                "--topology",
                topo.to_str().unwrap(),
                "--host",
                "edge-a=http://127.0.0.1:9",
            ],
            "edge-b",
        ),
        (
            vec!["control", "--config", missing.to_str().unwrap()],
            "missing.toml",
        ),
        (
            vec![
                "control",
                "--state-dir",
                dir.to_str().unwrap(),
                "--host",
                "edge-a",
            ],
            "NAME=URL",
        ),
        (
            vec![
                "control",
                "--state-dir",
                dir.to_str().unwrap(),
                "--host",
                "a=ftp://x",
            ],
            "http",
        ),
        (
            vec![
                "control",
                "--state-dir",
                dir.to_str().unwrap(),
                "--app-subnet",
                "10.0.0.0",
            ],
            "subnet",
        ),
        (
            vec![
                "control",
                "--state-dir",
                dir.to_str().unwrap(),
                "--listen",
                "nonsense",
            ],
            "cannot listen",
        ),
    ] {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}
