//! The form of the control plane's answers, read as raw bytes from the real server (served by
//! `ferry_control::serve`) over TCP: Title-Case header names, ProblemDetails on every error
//! (axum's own rejections too), the tolerant reader, `Location` on 201, `Allow` on 405, 406
//! and 415, on MEC 010-2, 011 and 021 and on ferry's own views.

use ferry_control::{Config, Control, MemoryDataPlane};
use mec_http::raw::{self, RawResponse};
use std::net::SocketAddr;
use std::sync::Arc;

async fn req(addr: SocketAddr, method: &str, path: &str, body: &str) -> RawResponse {
    raw::send(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .await
}

/// A 201 with Title-Case headers whose `Location` is the new resource's URL, which answers.
async fn assert_created(addr: SocketAddr, r: &RawResponse) -> String {
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.title_case(), "{:?}", r.headers);
    let location = r.header("Location").expect("Location on 201").to_string();
    let path = location
        .strip_prefix(&format!("http://{addr}"))
        .unwrap_or_else(|| panic!("Location '{location}' is not on this server"));
    let got = raw::send(addr, "GET", path, &[], "").await;
    assert_eq!(got.status, 200, "GET {path}: {got:?}");
    location
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_interoperable_http() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(
        Config::new(dir.path().to_path_buf()),
        Arc::new(MemoryDataPlane::default()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ferry_control::serve(control, listener, async {
        let _ = stopped.await;
    }));

    let r = raw::send(a, "GET", "/amsi/v1/app_mobility_services", &[], "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.title_case(), "{:?}", r.headers);
    assert_eq!(r.header("Content-Type"), Some("application/json"));

    // Tolerant reader: attributes ferry does not know are accepted and ignored, everywhere.
    let r = req(
        a,
        "POST",
        "/amsi/v1/subscriptions",
        r#"{"subscriptionType":"MobilityProcedureSubscription",
        "callbackReference":"http://127.0.0.1:9/cb","requestTestNotification":false,
        "websockNotifConfig":{"requestWebsocketUri":false},"futureAttribute":[1],
        "filterCriteria":{"appInstanceId":"app-1","futureFilter":"x"}}"#,
    )
    .await;
    assert_created(a, &r).await;
    assert!(r.json().get("futureAttribute").is_none());
    let r = req(a, "POST", "/amsi/v1/app_mobility_services", r#"{"serviceConsumerId":{"appInstanceId":"app-1"},
        "deviceInformation":[{"associateId":{"type":"UE_IPv4_ADDRESS","value":"10.150.0.1"},"appMobilityServiceLevel":"APP_MOBILITY_NOT_ALLOWED","futureField":1}],
        "futureAttribute":true}"#).await;
    assert_created(a, &r).await;
    let hash = "a".repeat(64);
    let r = req(a, "POST", "/app_pkgm/v1/app_packages", &format!(r#"{{"appPkgName":"p","appPkgVersion":"1",
        "checksum":{{"algorithm":"SHA-256","hash":"{hash}"}},"appPkgPath":"http://x/p.zip","futureAttribute":1}}"#)).await;
    assert_created(a, &r).await;
    let r = req(
        a,
        "POST",
        "/mec_service_mgmt/v1/applications/app-1/subscriptions",
        r#"{"subscriptionType":"SerAvailabilityNotificationSubscription",
        "callbackReference":"http://127.0.0.1:9/s","futureAttribute":1}"#,
    )
    .await;
    if r.status == 404 {
        r.assert_problem(404); // the app instance is unknown here
    } else {
        assert_created(a, &r).await;
    }

    // Malformed JSON, a missing required attribute, a wrong type or value: 400.
    req(a, "POST", "/amsi/v1/subscriptions", "{\"subscriptionType\"")
        .await
        .assert_problem(400);
    req(
        a,
        "POST",
        "/app_pkgm/v1/app_packages",
        r#"{"appPkgName":"p"}"#,
    )
    .await
    .assert_problem(400);
    req(
        a,
        "POST",
        "/app_pkgm/v1/app_packages",
        r#"{"appPkgName":1,"appPkgVersion":"1","checksum":{"algorithm":"SHA-256","hash":"00"}}"#,
    )
    .await
    .assert_problem(400);
    // Not declared JSON: 415; an Accept the API cannot meet: 406.
    raw::send(
        a,
        "POST",
        "/app_lcm/v1/app_instances",
        &[("Content-Type", "text/plain")],
        "{}",
    )
    .await
    .assert_problem(415);
    raw::send(
        a,
        "GET",
        "/app_lcm/v1/app_instances",
        &[("Accept", "application/xml")],
        "",
    )
    .await
    .assert_problem(406);
    // 404 for unknown paths and resources; 405 with the resource's Allow.
    raw::send(a, "GET", "/nothing", &[], "")
        .await
        .assert_problem(404);
    raw::send(a, "GET", "/app_lcm/v1/app_instances/none", &[], "")
        .await
        .assert_problem(404);
    let r = raw::send(a, "PUT", "/app_lcm/v1/app_instances", &[], "").await;
    r.assert_problem(405);
    let allow = r.header("Allow").expect("Allow on 405");
    assert!(
        allow.contains("GET") && allow.contains("POST") && !allow.contains("PUT"),
        "{allow}"
    );
    let r = raw::send(
        a,
        "POST",
        "/app_pkgm/v1/app_packages/x/package_content",
        &[],
        "",
    )
    .await;
    r.assert_problem(405);
    assert!(
        r.header("Allow")
            .is_some_and(|v| v.contains("PUT") && v.contains("GET") && !v.contains("POST")),
        "{r:?}"
    );
    let r = raw::send(a, "DELETE", "/ferry/control/v1/hosts", &[], "").await;
    r.assert_problem(405);
    assert!(r.header("Allow").is_some_and(|v| v.contains("GET")));

    // MEC 011 transports: the one the platform offers, as a TransportInfo list.
    let r = raw::send(a, "GET", "/mec_service_mgmt/v1/transports", &[], "").await;
    assert_eq!(r.status, 200, "{r:?}");
    let t = r.json();
    assert_eq!(t[0]["type"], "REST_HTTP", "{t}");
    assert_eq!(t[0]["endpoint"]["uris"], serde_json::json!([]), "{t}");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
