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

/// The credentials control gave instance `id` in its container's environment (as the fake
/// host got the create call): (client id, secret, token URL).
async fn instance_credentials(host: &FakeHost, id: &str) -> (String, String, String) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        for call in host.calls() {
            if call.method != "POST" || !call.path.ends_with("/containers") {
                continue;
            }
            let env: Vec<String> = serde_json::from_value(call.json()["env"].clone()).unwrap();
            let var = |k: &str| {
                env.iter()
                    .find_map(|e| e.strip_prefix(&format!("{k}=")).map(str::to_string))
            };
            if var("MEC_APP_INSTANCE_ID").as_deref() == Some(id) {
                return (
                    var("MEC_CLIENT_ID").expect("MEC_CLIENT_ID"),
                    var("MEC_CLIENT_SECRET").expect("MEC_CLIENT_SECRET"),
                    var("MEC_TOKEN_URL").expect("MEC_TOKEN_URL"),
                );
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no container for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An access token by the client credentials grant (RFC 6749 4.4), as an app gets one.
async fn token(url: &str, id: &str, secret: &str) -> String {
    let r = client_without_cert()
        .post(url)
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// A call with a bearer token and no client certificate (an app's call).
async fn as_app(method: reqwest::Method, url: &str, token: &str, body: Option<&Value>) -> Answer {
    let mut req = client_without_cert()
        .request(method, url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    answer(req.send().await.unwrap()).await
}

/// Issue 10: each app instance gets its own OAuth client and acts only for itself; a missing,
/// forged, expired or wrong-scope token is refused with 401/403 and a ProblemDetails.
#[tokio::test]
async fn each_app_acts_only_for_itself_and_bad_tokens_are_refused() {
    use reqwest::Method;
    let host = FakeHost::start().await;
    let (_d, dir) = state_dir();
    // Instances get credentials where control tells them its API root: its own address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = host_args(&[("edge-a", &host)]);
    args.extend([
        "--app-api-root".to_string(),
        format!("https://127.0.0.1:{port}"),
    ]);
    let c = ControlProcess::start_on(&format!("127.0.0.1:{port}"), &dir, &args);
    onboard(&c, "counter").await;
    let a = instantiate(&c, "counter", "edge-a").await;
    let b = instantiate(&c, "counter", "edge-a").await;
    let (a_id, a_secret, token_url) = instance_credentials(&host, &a).await;
    let (b_id, b_secret, _) = instance_credentials(&host, &b).await;
    assert_ne!(a_id, b_id, "each instance is its own client");
    let ta = token(&token_url, &a_id, &a_secret).await;
    let tb = token(&token_url, &b_id, &b_secret).await;
    let url = c.api("/amsi/v1/app_mobility_services");

    // a registers for itself; b may not register for a, nor read, change or remove a's.
    let reg = as_app(
        Method::POST,
        &url,
        &ta,
        Some(&registration(
            &a,
            "10.150.0.1",
            "APP_MOBILITY_WITHOUT_CONFIRMATION",
        )),
    )
    .await;
    assert_eq!(reg.0, 201, "{}", reg.2);
    let reg_url = format!("{url}/{}", reg.2["appMobilityServiceId"].as_str().unwrap());
    let forged = as_app(
        Method::POST,
        &url,
        &tb,
        Some(&registration(&a, "10.150.0.2", "APP_MOBILITY_NOT_ALLOWED")),
    )
    .await;
    assert_problem(&forged, 403);
    assert_problem(&as_app(Method::GET, &reg_url, &tb, None).await, 403);
    let changed = registration(&a, "10.150.0.3", "APP_MOBILITY_NOT_ALLOWED");
    assert_problem(
        &as_app(Method::PUT, &reg_url, &tb, Some(&changed)).await,
        403,
    );
    assert_problem(&as_app(Method::DELETE, &reg_url, &tb, None).await, 403);
    let listed = as_app(Method::GET, &url, &tb, None).await;
    assert_eq!(listed.0, 200);
    assert_eq!(listed.2, json!([]), "b sees none of a's registrations");
    // MEC 011: b may not act under a's /applications path either.
    let a_rules = c.api(&format!(
        "/mec_app_support/v1/applications/{a}/traffic_rules"
    ));
    assert_problem(&as_app(Method::GET, &a_rules, &tb, None).await, 403);
    assert_eq!(as_app(Method::GET, &a_rules, &ta, None).await.0, 200);
    // a's registration is still a's, unchanged.
    let mine = as_app(Method::GET, &reg_url, &ta, None).await;
    assert_eq!(mine.0, 200, "{}", mine.2);
    assert_eq!(
        mine.2["deviceInformation"][0]["associateId"]["value"],
        "10.150.0.1"
    );

    // No token: 401 with a Bearer challenge.
    let r = client_without_cert().get(&url).send().await.unwrap();
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_problem(&answer(r).await, 401);
    // A token with one byte of its payload changed: 401 invalid_token.
    let mut parts: Vec<String> = ta.split('.').map(str::to_string).collect();
    let mut payload = parts[1].clone().into_bytes();
    payload[5] = if payload[5] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).unwrap();
    let r = client_without_cert()
        .get(&url)
        .bearer_auth(parts.join("."))
        .send()
        .await
        .unwrap();
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert_problem(&answer(r).await, 401);
    // Signed by control's key but expired (minted here with control's files of the test
    // PKI): 401.
    let issuer =
        mec_http::oauth::TokenIssuer::new(&tls_files(&ferry_tls::Identity::Control)).unwrap();
    let scopes = mec_http::oauth::parse_scopes("amsi").unwrap();
    let expired = issuer
        .issue_at(&a_id, &scopes, Some(&a), now_s() - 3600)
        .unwrap()
        .0;
    assert_problem(&as_app(Method::GET, &reg_url, &expired, None).await, 401);
    // A client the operator registered for the RNIS only: 403 insufficient_scope on MEC 021.
    let reg_client = client()
        .post(c.api("/ferry/control/v1/clients"))
        .json(&json!({"clientId": "rnis-reader", "scopes": ["rni"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reg_client.status(), 201);
    let secret = reg_client.json::<Value>().await.unwrap()["clientSecret"]
        .as_str()
        .unwrap()
        .to_string();
    let t_rni = token(&token_url, "rnis-reader", &secret).await;
    let r = client_without_cert()
        .get(&url)
        .bearer_auth(&t_rni)
        .send()
        .await
        .unwrap();
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert_problem(&answer(r).await, 403);
}
