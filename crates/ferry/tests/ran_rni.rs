//! MEC 012 RNIS of `ferry ran`, end to end: the real binary, a real callback server, real HTTP.

mod ran_support;
mod shared;

use ran_support::*;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(5);
/// After the awaited notifications arrived: how long to keep watching for unwanted ones.
const GRACE: Duration = Duration::from_millis(700);

#[tokio::test]
async fn handover_sends_exactly_one_cell_change_notification() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let sub = post_json(
        &ran.api("/rni/v2/subscriptions"),
        &cell_change(&cb.url("/cc"), ue_filter("10.150.0.1")),
    )
    .await;
    assert_eq!(sub.0, 201, "{}", sub.2);
    let self_href = sub.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();

    let t0 = std::time::Instant::now();
    let printed = handover(&ran, "ue1", "b1").await;
    assert!(printed.contains("a1 -> b1"), "{printed}");

    let got = cb.wait("/cc", 1, WAIT).await;
    assert_eq!(got.len(), 1, "expected one notification, got {}", got.len());
    eprintln!(
        "forced handover (ferry ran handover, a process) -> CellChangeNotification at the callback: {:.1} ms",
        (got[0].at - t0).as_secs_f64() * 1000.0
    );
    tokio::time::sleep(GRACE).await;
    assert_eq!(
        cb.on("/cc").len(),
        1,
        "more than one notification for one handover"
    );
    let n = &got[0].body;
    assert_eq!(n["notificationType"], "CellChangeNotification");
    assert_eq!(n["srcEcgi"], ecgi("00000a1"));
    assert_eq!(n["trgEcgi"], json!([ecgi("00000b1")]));
    assert_eq!(
        n["associateId"],
        json!([{"type": 1, "value": "10.150.0.1"}])
    );
    assert_eq!(n["hoStatus"], 3, "COMPLETED");
    assert_eq!(n["_links"]["subscription"]["href"], self_href.as_str());
    let ts = n["timeStamp"]["seconds"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 30, "timeStamp {ts} is not now ({now})");
}

#[tokio::test]
async fn subscriptions_filter_by_associate_id_and_ecgi() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let subs = [
        ("/other-ue", ue_filter("10.150.0.2")),
        ("/this-ue", ue_filter("10.150.0.1")),
        ("/unrelated-cell", json!({"ecgi": [ecgi("00000a2")]})),
        ("/target-cell", json!({"ecgi": [ecgi("00000b1")]})),
        ("/source-cell", json!({"ecgi": [ecgi("00000a1")]})),
        (
            "/ue-and-cell-mismatch",
            json!({"associateId": [{"type": 1, "value": "10.150.0.2"}], "ecgi": [ecgi("00000b1")]}),
        ),
        ("/only-in-preparation", json!({"hoStatus": [1]})),
        ("/everything", json!({})),
    ];
    for (path, filter) in &subs {
        let r = post_json(
            &ran.api("/rni/v2/subscriptions"),
            &cell_change(&cb.url(path), filter.clone()),
        )
        .await;
        assert_eq!(r.0, 201, "{path}: {}", r.2);
    }
    handover(&ran, "ue1", "b1").await;
    for path in ["/this-ue", "/target-cell", "/source-cell", "/everything"] {
        let n = cb.wait(path, 1, WAIT).await.len();
        assert_eq!(n, 1, "{path} got {n} notifications, expected 1");
    }
    tokio::time::sleep(GRACE).await;
    for path in [
        "/other-ue",
        "/unrelated-cell",
        "/ue-and-cell-mismatch",
        "/only-in-preparation",
    ] {
        assert!(
            cb.on(path).is_empty(),
            "{path} should get nothing: {:?}",
            cb.on(path)
        );
    }
    for path in ["/this-ue", "/target-cell", "/source-cell", "/everything"] {
        assert_eq!(cb.on(path).len(), 1, "{path}");
    }
}

#[tokio::test]
async fn subscription_crud_and_errors() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let root = ran.api("/rni/v2/subscriptions");

    let created = post_json(&root, &cell_change(&cb.url("/x"), ue_filter("10.150.0.1"))).await;
    assert_eq!(created.0, 201);
    let href = created.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(created.1.get("location").unwrap().to_str().unwrap(), href);
    assert_eq!(
        created.2["filterCriteriaAssocHo"]["hoStatus"],
        json!([3]),
        "default hoStatus is echoed"
    );
    assert!(href.starts_with(&ran.url), "{href}");

    let list = get(&root).await;
    assert_eq!(list.0, 200);
    assert_eq!(
        list.2["_links"]["subscription"],
        json!([{"href": href, "subscriptionType": "CellChangeSubscription"}])
    );
    let cc = get(&format!("{root}?subscription_type=cell_change")).await;
    assert_eq!(cc.2["_links"]["subscription"].as_array().unwrap().len(), 1);
    let est = get(&format!("{root}?subscription_type=rab_est")).await;
    assert_eq!(est.2["_links"]["subscription"], json!([]));
    get(&format!("{root}?subscription_type=bogus"))
        .await
        .assert_problem(400);
    get(&format!("{root}?subscriptiontype=cell_change"))
        .await
        .assert_problem(400);

    let one = get(&href).await;
    assert_eq!(one.0, 200);
    assert_eq!(one.2, created.2);

    // PUT: now follow ue2 instead.
    let mut changed = cell_change(&cb.url("/x"), ue_filter("10.150.0.2"));
    changed["_links"] = json!({"self": {"href": href}});
    let put = put_json(&href, &changed).await;
    assert_eq!(put.0, 200, "{}", put.2);
    assert_eq!(
        get(&href).await.2["filterCriteriaAssocHo"]["associateId"][0]["value"],
        "10.150.0.2"
    );
    let mut wrong_self = changed.clone();
    wrong_self["_links"]["self"]["href"] = json!("http://elsewhere/rni/v2/subscriptions/other");
    put_json(&href, &wrong_self).await.assert_problem(400);
    put_json(&format!("{root}/nope"), &changed)
        .await
        .assert_problem(404);

    // Malformed bodies: 400 ProblemDetails naming the problem.
    let not_json = client()
        .post(&root)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(&answer(not_json).await, 400);
    let no_ctype = client().post(&root).body("{}").send().await.unwrap();
    // A body not declared JSON: 415 (docs/http.md).
    assert_problem(&answer(no_ctype).await, 415);
    let no_cb = json!({"subscriptionType": "CellChangeSubscription", "filterCriteriaAssocHo": {}});
    let r = post_json(&root, &no_cb).await;
    assert_problem(&r, 400);
    assert!(
        r.2["detail"]
            .as_str()
            .unwrap()
            .contains("callbackReference"),
        "{}",
        r.2
    );
    post_json(&root, &json!({"callbackReference": cb.url("/x")}))
        .await
        .assert_problem(400);
    post_json(&root, &cell_change("not a url", json!({})))
        .await
        .assert_problem(400);
    post_json(
        &root,
        &cell_change(&cb.url("/x"), json!({"hoStatus": ["COMPLETED"]})),
    )
    .await
    .assert_problem(400);
    post_json(&root, &cell_change(&cb.url("/x"), json!({"hoStatus": [9]})))
        .await
        .assert_problem(400);
    post_json(
        &root,
        &cell_change(
            &cb.url("/x"),
            json!({"associateId": [{"type": 7, "value": "x"}]}),
        ),
    )
    .await
    .assert_problem(400);
    post_json(&root, &cell_change(&cb.url("/x"), ue_filter("10.150.0")))
        .await
        .assert_problem(400);
    let mut no_filter = cell_change(&cb.url("/x"), json!({}));
    no_filter
        .as_object_mut()
        .unwrap()
        .remove("filterCriteriaAssocHo");
    post_json(&root, &no_filter).await.assert_problem(400);
    // A valid MEC 012 type ferry does not serve: 422.
    let rab = json!({"subscriptionType": "RabEstSubscription", "callbackReference": cb.url("/x"), "filterCriteriaQci": {"qci": 9}});
    post_json(&root, &rab).await.assert_problem(422);
    assert_eq!(
        get(&root).await.2["_links"]["subscription"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "bad requests created nothing"
    );

    // DELETE, then it is gone.
    delete(&href).await.assert_status(204);
    get(&href).await.assert_problem(404);
    delete(&href).await.assert_problem(404);
    assert_eq!(get(&root).await.2["_links"]["subscription"], json!([]));

    // Unknown paths and methods are ProblemDetails too; a non-JSON Accept is 406.
    get(&ran.api("/rni/v2/nothing")).await.assert_problem(404);
    delete(&root).await.assert_problem(405);
    let html = client()
        .get(&root)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_problem(&answer(html).await, 406);
}

#[tokio::test]
async fn expired_subscription_is_removed_and_told() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let root = ran.api("/rni/v2/subscriptions");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let deadline = now + Duration::from_millis(1200);
    let mut body = cell_change(&cb.url("/exp"), json!({}));
    body["expiryDeadline"] =
        json!({"seconds": deadline.as_secs(), "nanoSeconds": deadline.subsec_nanos()});
    let created = post_json(&root, &body).await;
    assert_eq!(created.0, 201, "{}", created.2);
    let href = created.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&href).await.0, 200, "alive before its deadline");

    let got = cb.wait("/exp", 1, WAIT).await;
    assert_eq!(got.len(), 1, "no ExpiryNotification");
    let n = &got[0].body;
    assert_eq!(n["notificationType"], "ExpiryNotification");
    assert_eq!(n["_links"]["self"], href.as_str());
    assert_eq!(n["expiryDeadline"]["seconds"], deadline.as_secs());
    get(&href).await.assert_problem(404);
    assert_eq!(get(&root).await.2["_links"]["subscription"], json!([]));

    // An expired subscription gets no cell change notification.
    handover(&ran, "ue1", "a2").await;
    tokio::time::sleep(GRACE).await;
    assert_eq!(cb.on("/exp").len(), 1);

    // Out-of-range time stamps are refused, the farthest valid one is fine.
    body["expiryDeadline"] =
        json!({"seconds": now.as_secs() + 60, "nanoSeconds": 1_000_000_000u32});
    post_json(&root, &body).await.assert_problem(400);
    body["expiryDeadline"] = json!({"seconds": u64::MAX, "nanoSeconds": 999_999_999});
    post_json(&root, &body).await.assert_status(201);
    // A deadline already past is refused.
    body["expiryDeadline"] = json!({"seconds": now.as_secs() - 10, "nanoSeconds": 0});
    post_json(&root, &body).await.assert_problem(422);
}

#[tokio::test]
async fn slow_or_dead_callbacks_do_not_delay_others() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let root = ran.api("/rni/v2/subscriptions");
    // One callback hangs for 30 s, one refuses connections (nothing listens on port 9).
    for target in [
        cb.url("/slow/cc"),
        "http://127.0.0.1:9/dead".to_string(),
        cb.url("/fast"),
    ] {
        let r = post_json(&root, &cell_change(&target, json!({}))).await;
        assert_eq!(r.0, 201);
    }
    let t0 = std::time::Instant::now();
    handover(&ran, "ue1", "b1").await;
    handover(&ran, "ue1", "a1").await;
    let got = cb.wait("/fast", 2, WAIT).await;
    assert_eq!(
        got.len(),
        2,
        "the healthy subscriber got {} of 2 notifications",
        got.len()
    );
    let took = got[1].at - t0;
    eprintln!(
        "two forced handovers with a hung and a dead subscriber: healthy callback had both after {:.1} ms",
        took.as_secs_f64() * 1000.0
    );
    assert!(
        took < Duration::from_secs(2),
        "second notification took {took:?}"
    );
    // Order is kept per subscriber.
    assert_eq!(got[0].body["trgEcgi"][0]["cellId"], "00000b1");
    assert_eq!(got[1].body["trgEcgi"][0]["cellId"], "00000a1");
}

#[tokio::test]
async fn rab_and_plmn_queries_follow_handovers() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    handover(&ran, "ue1", "b1").await;
    let rab = get(&ran.api("/rni/v2/queries/rab_info?app_ins_id=app-1")).await;
    assert_eq!(rab.0, 200);
    assert_eq!(rab.2["appInstanceId"], "app-1");
    let cells = rab.2["cellUserInfo"].as_array().unwrap();
    let in_cell = |id: &str| -> Vec<String> {
        cells
            .iter()
            .filter(|c| c["ecgi"]["cellId"] == id)
            .flat_map(|c| c["ueInfo"].as_array().unwrap().iter())
            .map(|u| u["associateId"][0]["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(in_cell("00000b1"), vec!["10.150.0.1"]);
    assert_eq!(in_cell("00000a1"), vec!["10.150.0.2"]);

    let by_ue = get(&ran.api("/rni/v2/queries/rab_info?ue_ipv4_address=10.150.0.1")).await;
    assert_eq!(by_ue.2["cellUserInfo"].as_array().unwrap().len(), 1);
    assert_eq!(by_ue.2["cellUserInfo"][0]["ecgi"]["cellId"], "00000b1");
    let by_cell = get(&ran.api("/rni/v2/queries/rab_info?cell_id=00000a2,00000b1")).await;
    assert_eq!(by_cell.2["cellUserInfo"].as_array().unwrap().len(), 1);
    get(&ran.api("/rni/v2/queries/rab_info?ue_ipv4_address=nope"))
        .await
        .assert_problem(400);
    get(&ran.api("/rni/v2/queries/rab_info?colour=red"))
        .await
        .assert_problem(400);

    get(&ran.api("/rni/v2/queries/plmn_info"))
        .await
        .assert_problem(400);
    let plmn = get(&ran.api("/rni/v2/queries/plmn_info?app_ins_id=a,b")).await;
    assert_eq!(plmn.0, 200);
    assert_eq!(plmn.2.as_array().unwrap().len(), 2);
    assert_eq!(plmn.2[1]["appInstanceId"], "b");
    assert_eq!(plmn.2[0]["plmn"], json!([{"mcc": "001", "mnc": "01"}]));
}

/// Issue 10: applications (clients with control's access tokens) see and change only their
/// own subscriptions at the RAN, MEC 012 and 013 alike, and hold at most the cap; the
/// operator sees all of them.
#[tokio::test]
async fn apps_see_only_their_own_subscriptions_and_are_capped() {
    use reqwest::Method;
    let ran = RanProcess::start(
        &topology(""),
        &["--no-trace", "--max-subscriptions-per-client", "2"],
    );
    let cb = Callback::start().await;
    // Tokens as control issues them to two app instances (signed with control's key of the
    // test PKI, which the RAN trusts through the CA).
    let issuer =
        mec_http::oauth::TokenIssuer::new(&tls_files(&ferry_tls::Identity::Control)).unwrap();
    let scopes = mec_http::oauth::parse_scopes("rni location").unwrap();
    let token = |app: &str| {
        issuer
            .issue(&format!("app-{app}"), &scopes, Some(app))
            .unwrap()
            .0
    };
    let (ta, tb) = (token("a"), token("b"));
    let call = |method: Method, url: String, token: String, body: Option<serde_json::Value>| async move {
        let mut req = client_without_cert()
            .request(method, url)
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    };
    let rni = ran.api("/rni/v2/subscriptions");
    let tracking = ran.api("/location/v2/subscriptions/userTracking");

    let a_sub = call(
        Method::POST,
        rni.clone(),
        ta.clone(),
        Some(cell_change(&cb.url("/a"), ue_filter("10.150.0.1"))),
    )
    .await;
    assert_eq!(a_sub.0, 201, "{}", a_sub.2);
    let a_href = a_sub.2["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let user = json!({"userTrackingSubscription": {"callbackReference": {"notifyURL": cb.url("/t")},
                      "address": "acr:10.150.0.1"}});
    let a_track = call(
        Method::POST,
        tracking.clone(),
        ta.clone(),
        Some(user.clone()),
    )
    .await;
    assert_eq!(a_track.0, 201, "{}", a_track.2);
    let a_track_url = a_track.1["location"].to_str().unwrap().to_string();

    // b can neither read, change nor remove a's, and its lists do not show them.
    assert_problem(
        &call(Method::GET, a_href.clone(), tb.clone(), None).await,
        403,
    );
    assert_problem(
        &call(Method::DELETE, a_href.clone(), tb.clone(), None).await,
        403,
    );
    assert_problem(
        &call(Method::GET, a_track_url.clone(), tb.clone(), None).await,
        403,
    );
    assert_problem(
        &call(
            Method::PUT,
            a_track_url.clone(),
            tb.clone(),
            Some(user.clone()),
        )
        .await,
        403,
    );
    let b_list = call(Method::GET, rni.clone(), tb.clone(), None).await;
    assert_eq!(
        b_list.2["_links"]["subscription"],
        json!([]),
        "{}",
        b_list.2
    );
    let b_tracking = call(Method::GET, tracking.clone(), tb.clone(), None).await;
    assert_eq!(
        b_tracking.2["notificationSubscriptionList"]["userTrackingSubscription"],
        json!([]),
        "{}",
        b_tracking.2
    );
    // a sees its own; the operator (a certificate) sees every one.
    let a_list = call(Method::GET, rni.clone(), ta.clone(), None).await;
    assert_eq!(
        a_list.2["_links"]["subscription"].as_array().unwrap().len(),
        1,
        "{}",
        a_list.2
    );
    let all = get(&rni).await;
    assert_eq!(all.2["_links"]["subscription"].as_array().unwrap().len(), 1);

    // a holds 2 of 2: a third is refused, with the way out; b is not affected.
    let third = call(
        Method::POST,
        rni.clone(),
        ta.clone(),
        Some(cell_change(&cb.url("/a3"), ue_filter("10.150.0.1"))),
    )
    .await;
    assert_problem(&third, 403);
    assert!(
        third.2["detail"]
            .as_str()
            .unwrap()
            .contains("--max-subscriptions-per-client"),
        "{}",
        third.2
    );
    let b_sub = call(
        Method::POST,
        rni.clone(),
        tb.clone(),
        Some(cell_change(&cb.url("/b"), ue_filter("10.150.0.1"))),
    )
    .await;
    assert_eq!(b_sub.0, 201, "{}", b_sub.2);
    // Once a deletes one, it may make another.
    assert_eq!(
        call(Method::DELETE, a_track_url, ta.clone(), None).await.0,
        204
    );
    let again = call(Method::POST, tracking, ta.clone(), Some(user)).await;
    assert_eq!(again.0, 201, "{}", again.2);
    // a's first subscription is untouched by b's attempts.
    assert_eq!(call(Method::GET, a_href, ta, None).await.0, 200);
}
