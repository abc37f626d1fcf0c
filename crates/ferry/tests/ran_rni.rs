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
    // RabMod and RabRel filters require the E-RAB id; S1Bearer at least one event.
    let rab = json!({"subscriptionType": "RabModSubscription", "callbackReference": cb.url("/x"), "filterCriteriaQci": {"qci": 9}});
    post_json(&root, &rab).await.assert_problem(400);
    let s1 = json!({"subscriptionType": "S1BearerSubscription", "callbackReference": cb.url("/x"),
        "S1BearerSubscriptionCriteria": {}, "eventType": []});
    post_json(&root, &s1).await.assert_problem(400);
    let bad_trigger = json!({"subscriptionType": "MeasRepUeSubscription", "callbackReference": cb.url("/x"),
        "filterCriteriaAssocTri": {"trigger": [7]}});
    post_json(&root, &bad_trigger).await.assert_problem(400);
    post_json(
        &root,
        &json!({"subscriptionType": "NoSuchSubscription", "callbackReference": cb.url("/x")}),
    )
    .await
    .assert_problem(400);
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

    // Every other type expires alike, and an expired RabEst subscriber hears of no bearer.
    for (query, mut other) in every_other_type(&cb.url("/exp-other")) {
        let deadline =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(800);
        other["expiryDeadline"] =
            json!({"seconds": deadline.as_secs(), "nanoSeconds": deadline.subsec_nanos()});
        let r = post_json(&root, &other).await;
        assert_eq!(r.0, 201, "{query}: {}", r.2);
    }
    let told = cb.wait("/exp-other", 8, WAIT).await;
    assert_eq!(told.len(), 8, "one ExpiryNotification per type");
    assert!(told
        .iter()
        .all(|n| n.body["notificationType"] == "ExpiryNotification"));
    assert_eq!(get(&root).await.2["_links"]["subscription"], json!([]));
    handover(&ran, "ue1", "b1").await;
    tokio::time::sleep(GRACE).await;
    assert_eq!(cb.on("/exp-other").len(), 8);

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

/// One subscription body of every MEC 012 type but CellChange, with its `subscription_type`
/// query value, for the callback `cb`.
fn every_other_type(cb: &str) -> Vec<(&'static str, serde_json::Value)> {
    let ue = json!([{"type": 1, "value": "10.150.0.1"}]);
    vec![
        (
            "rab_est",
            json!({"subscriptionType": "RabEstSubscription", "callbackReference": cb,
            "filterCriteriaQci": {"qci": 9}}),
        ),
        (
            "rab_mod",
            json!({"subscriptionType": "RabModSubscription", "callbackReference": cb,
            "filterCriteriaQci": {"qci": 9, "erabId": 1}}),
        ),
        (
            "rab_rel",
            json!({"subscriptionType": "RabRelSubscription", "callbackReference": cb,
            "filterCriteriaQci": {"qci": 9, "erabId": 1}}),
        ),
        (
            "meas_rep_ue",
            json!({"subscriptionType": "MeasRepUeSubscription", "callbackReference": cb,
            "filterCriteriaAssocTri": {"associateId": ue, "trigger": [1]}}),
        ),
        (
            "nr_meas_rep_ue",
            json!({"subscriptionType": "NrMeasRepUeSubscription", "callbackReference": cb,
            "filterCriteriaNrMrs": {"associateId": ue, "triggerNr": [1]}}),
        ),
        (
            "timing_advance_ue",
            json!({"subscriptionType": "MeasTaSubscription", "callbackReference": cb,
            "filterCriteriaAssoc": {"associateId": ue}}),
        ),
        (
            "ca_reconf",
            json!({"subscriptionType": "CaReconfSubscription", "callbackReference": cb,
            "filterCriteriaAssoc": {"associateId": ue}}),
        ),
        (
            "s1_bearer",
            json!({"subscriptionType": "S1BearerSubscription", "callbackReference": cb,
            "S1BearerSubscriptionCriteria": {"associateId": ue}, "eventType": [1]}),
        ),
    ]
}

#[tokio::test]
async fn every_subscription_type_is_created_read_listed_updated_and_deleted() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let root = ran.api("/rni/v2/subscriptions");
    let cc = post_json(&root, &cell_change(&cb.url("/cc"), json!({}))).await;
    assert_eq!(cc.0, 201, "{}", cc.2);
    let mut hrefs = Vec::new();
    for (query, body) in every_other_type(&cb.url("/x")) {
        let created = post_json(&root, &body).await;
        assert_eq!(created.0, 201, "{query}: {}", created.2);
        let href = created.2["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(created.1["location"].to_str().unwrap(), href);
        let mut echoed = created.2.clone();
        echoed.as_object_mut().unwrap().remove("_links");
        assert_eq!(echoed, body, "{query}: the answer carries what was asked");
        let read = get(&href).await;
        assert_eq!((read.0, &read.2), (200, &created.2), "{query}");
        // The type filter selects exactly this one.
        let listed = get(&format!("{root}?subscription_type={query}")).await;
        assert_eq!(
            listed.2["_links"]["subscription"],
            json!([{"href": href, "subscriptionType": body["subscriptionType"]}]),
            "{query}"
        );
        // PUT: a new callback; the type stays.
        let mut changed = body.clone();
        changed["callbackReference"] = json!(cb.url("/y"));
        let put = put_json(&href, &changed).await;
        assert_eq!(put.0, 200, "{query}: {}", put.2);
        assert_eq!(
            get(&href).await.2["callbackReference"],
            cb.url("/y").as_str()
        );
        let other = cell_change(&cb.url("/y"), json!({}));
        put_json(&href, &other).await.assert_problem(400);
        hrefs.push(href);
    }
    let all = get(&root).await;
    assert_eq!(all.2["_links"]["subscription"].as_array().unwrap().len(), 9);
    let two = get(&format!("{root}?subscription_type=cell_change,s1_bearer")).await;
    assert_eq!(
        two.2["_links"]["subscription"].as_array().unwrap().len(),
        2,
        "{}",
        two.2
    );
    for href in &hrefs {
        delete(href).await.assert_status(204);
        get(href).await.assert_problem(404);
    }
    assert_eq!(
        get(&root).await.2["_links"]["subscription"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn rab_and_s1_subscribers_see_the_handover_cells_and_the_bearer_change() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let cb = Callback::start().await;
    let root = ran.api("/rni/v2/subscriptions");
    let subs = [
        (
            "/est",
            json!({"subscriptionType": "RabEstSubscription", "filterCriteriaQci": {"qci": 9}}),
        ),
        (
            "/est-qci5",
            json!({"subscriptionType": "RabEstSubscription", "filterCriteriaQci": {"qci": 5}}),
        ),
        (
            "/est-in-a2",
            json!({"subscriptionType": "RabEstSubscription",
            "filterCriteriaQci": {"qci": 9, "ecgi": [ecgi("00000a2")]}}),
        ),
        (
            "/rel",
            json!({"subscriptionType": "RabRelSubscription", "filterCriteriaQci": {"qci": 9, "erabId": 1}}),
        ),
        (
            "/mod",
            json!({"subscriptionType": "RabModSubscription", "filterCriteriaQci": {"qci": 9, "erabId": 1}}),
        ),
        (
            "/s1",
            json!({"subscriptionType": "S1BearerSubscription",
            "S1BearerSubscriptionCriteria": {"associateId": [{"type": 1, "value": "10.150.0.1"}]},
            "eventType": [1, 3]}),
        ),
        (
            "/s1-mod",
            json!({"subscriptionType": "S1BearerSubscription",
            "S1BearerSubscriptionCriteria": {}, "eventType": [2]}),
        ),
        (
            "/s1-ue2",
            json!({"subscriptionType": "S1BearerSubscription",
            "S1BearerSubscriptionCriteria": {"associateId": [{"type": 1, "value": "10.150.0.2"}]},
            "eventType": [1, 2, 3]}),
        ),
    ];
    for (path, body) in &subs {
        let mut body = body.clone();
        body["callbackReference"] = json!(cb.url(path));
        let r = post_json(&root, &body).await;
        assert_eq!(r.0, 201, "{path}: {}", r.2);
    }
    handover(&ran, "ue1", "b1").await;
    let est = cb.wait("/est", 1, WAIT).await;
    assert_eq!(est[0].body["notificationType"], "RabEstNotification");
    assert_eq!(
        est[0].body["ecgi"],
        ecgi("00000b1"),
        "established in the target"
    );
    assert_eq!(est[0].body["erabId"], 1);
    assert_eq!(est[0].body["erabQosParameters"]["qci"], 9);
    assert_eq!(est[0].body["associateId"][0]["value"], "10.150.0.1");
    let rel = cb.wait("/rel", 1, WAIT).await;
    assert_eq!(rel[0].body["notificationType"], "RabRelNotification");
    assert_eq!(
        rel[0].body["ecgi"],
        ecgi("00000a1"),
        "released in the source"
    );
    assert_eq!(rel[0].body["erabReleaseInfo"]["erabId"], 1);
    let s1 = cb.wait("/s1", 2, WAIT).await;
    assert_eq!(s1.len(), 2);
    // In order: released at the source eNB, then established at the target's.
    assert_eq!(s1[0].body["s1Event"], 3);
    assert_eq!(s1[0].body["s1UeInfo"]["ecgi"], json!([ecgi("00000a1")]));
    assert_eq!(s1[1].body["notificationType"], "S1BearerNotification");
    assert_eq!(s1[1].body["s1Event"], 1);
    assert_eq!(s1[1].body["s1UeInfo"]["ecgi"], json!([ecgi("00000b1")]));
    let bearer = &s1[1].body["s1UeInfo"]["s1BearerInfo"][0];
    assert_eq!(bearer["erabId"], 1);
    assert_ne!(
        bearer["enbInfo"]["ipAddress"],
        s1[0].body["s1UeInfo"]["s1BearerInfo"][0]["enbInfo"]["ipAddress"],
        "another eNB"
    );
    assert!(bearer["sGwInfo"]["tunnelId"].is_string());

    // The operator makes ue1's bearer a GBR one of QCI 1: RabMod and S1 MODIFY.
    let changed = put_json(
        &ran.api("/ferry/ran/v1/ues/ue1/bearer"),
        &json!({"qci": 1, "qosInformation": {"erabMbrDl": 2000, "erabMbrUl": 2000, "erabGbrDl": 1000, "erabGbrUl": 1000}}),
    )
    .await;
    assert_eq!(changed.0, 200, "{}", changed.2);
    let m = cb.wait("/mod", 1, WAIT).await;
    assert_eq!(m[0].body["notificationType"], "RabModNotification");
    assert_eq!(m[0].body["ecgi"], ecgi("00000b1"));
    assert_eq!(m[0].body["erabQosParameters"]["qci"], 1);
    assert_eq!(
        m[0].body["erabQosParameters"]["qosInformation"]["erabGbrDl"],
        1000
    );
    let s1m = cb.wait("/s1-mod", 1, WAIT).await;
    assert_eq!(s1m[0].body["s1Event"], 2);
    // rab_info shows the new QoS.
    let rab = get(&ran.api("/rni/v2/queries/rab_info?qci=1")).await;
    assert_eq!(
        rab.2["cellUserInfo"][0]["ueInfo"][0]["associateId"][0]["value"],
        "10.150.0.1"
    );
    put_json(
        &ran.api("/ferry/ran/v1/ues/nobody/bearer"),
        &json!({"qci": 9}),
    )
    .await
    .assert_problem(404);
    put_json(&ran.api("/ferry/ran/v1/ues/ue1/bearer"), &json!({"qci": 0}))
        .await
        .assert_problem(400);
    // Without a certificate or token the admin API refuses.
    let anon = client_without_cert()
        .put(ran.api("/ferry/ran/v1/ues/ue1/bearer"))
        .json(&json!({"qci": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);

    tokio::time::sleep(GRACE).await;
    for path in ["/est-qci5", "/est-in-a2", "/s1-ue2"] {
        assert!(cb.on(path).is_empty(), "{path}: {:?}", cb.on(path));
    }
    assert_eq!(cb.on("/est").len(), 1);
    assert_eq!(cb.on("/rel").len(), 1);
    assert_eq!(
        cb.on("/s1").len(),
        2,
        "no MODIFY for a subscriber of 1 and 3"
    );
}

#[tokio::test]
async fn s1_bearer_and_layer2_queries_apply_their_filters() {
    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    handover(&ran, "ue1", "b1").await;
    let q = |s: &str| ran.api(&format!("/rni/v2/queries/{s}"));

    let all = get(&q("s1_bearer_info")).await;
    assert_eq!(all.0, 200, "{}", all.2);
    assert_eq!(all.2["s1UeInfo"].as_array().unwrap().len(), 2);
    let ue1 = get(&q("s1_bearer_info?ue_ipv4_address=10.150.0.1")).await;
    let infos = ue1.2["s1UeInfo"].as_array().unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0]["ecgi"], json!([ecgi("00000b1")]));
    assert_eq!(infos[0]["s1BearerInfoDetailed"][0]["erabId"], 1);
    let in_a1 = get(&q("s1_bearer_info?cell_id=00000a1")).await;
    assert_eq!(
        in_a1.2["s1UeInfo"][0]["associateId"][0]["value"],
        "10.150.0.2"
    );
    assert_eq!(in_a1.2["s1UeInfo"].as_array().unwrap().len(), 1);
    get(&q("s1_bearer_info?cell_id=00000a2"))
        .await
        .assert_problem(404);
    get(&q("s1_bearer_info?erab_id=5"))
        .await
        .assert_problem(404);
    get(&q("s1_bearer_info?erab_id=x"))
        .await
        .assert_problem(400);
    get(&q("s1_bearer_info?colour=red"))
        .await
        .assert_problem(400);

    let l2 = get(&q("layer2_meas")).await;
    assert_eq!(l2.0, 200, "{}", l2.2);
    let cells = l2.2["cellInfo"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    let cell = |id: &str| {
        cells
            .iter()
            .find(|c| c["ecgi"]["cellId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(cell("00000b1")["number_of_active_ue_dl_nongbr_cell"], 1);
    assert_eq!(cell("00000a2")["number_of_active_ue_dl_nongbr_cell"], 0);
    assert!(
        cell("00000a1")["dl_total_prb_usage_cell"].as_u64()
            > cell("00000a2")["dl_total_prb_usage_cell"].as_u64()
    );
    assert_eq!(l2.2["cellUEInfo"].as_array().unwrap().len(), 2);
    let b1 = get(&q("layer2_meas?cell_id=00000b1")).await;
    assert_eq!(b1.2["cellInfo"].as_array().unwrap().len(), 1);
    assert_eq!(b1.2["cellUEInfo"][0]["associateId"]["value"], "10.150.0.1");
    let by_ue = get(&q("layer2_meas?ue_ipv4_address=10.150.0.2")).await;
    assert_eq!(by_ue.2["cellUEInfo"].as_array().unwrap().len(), 1);
    assert_eq!(by_ue.2["cellUEInfo"][0]["ecgi"], ecgi("00000a1"));
    // Only a2 has no UE left.
    let idle = get(&q("layer2_meas?dl_total_prb_usage_cell=0")).await;
    assert_eq!(
        idle.2["cellInfo"].as_array().unwrap().len(),
        1,
        "{}",
        idle.2
    );
    assert_eq!(idle.2["cellInfo"][0]["ecgi"], ecgi("00000a2"));
    let none = get(&q("layer2_meas?dl_gbr_pdr_cell=1")).await;
    assert_eq!(
        none.2["cellInfo"],
        json!([]),
        "not estimated: matches nothing"
    );
    get(&q("layer2_meas?ue_ipv4_address=x"))
        .await
        .assert_problem(400);
    get(&q("layer2_meas?dl_total_prb_usage_cell=lots"))
        .await
        .assert_problem(400);
}

/// The per-client cap counts subscriptions of every MEC 012 type.
#[tokio::test]
async fn the_cap_counts_every_subscription_type() {
    let ran = RanProcess::start(
        &topology(""),
        &["--no-trace", "--max-subscriptions-per-client", "3"],
    );
    let cb = Callback::start().await;
    let issuer =
        mec_http::oauth::TokenIssuer::new(&tls_files(&ferry_tls::Identity::Control)).unwrap();
    let scopes = mec_http::oauth::parse_scopes("rni").unwrap();
    let token = issuer.issue("app-a", &scopes, Some("a")).unwrap().0;
    let post = |body: serde_json::Value| {
        let token = token.clone();
        let url = ran.api("/rni/v2/subscriptions");
        async move {
            answer(
                client_without_cert()
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let types = every_other_type(&cb.url("/x"));
    // RabEst, MeasRepUe, S1Bearer: three different types fill the cap of 3.
    for i in [0, 3, 7] {
        let r = post(types[i].1.clone()).await;
        assert_eq!(r.0, 201, "{}: {}", types[i].0, r.2);
    }
    for (query, body) in &types {
        assert_problem(&post(body.clone()).await, 403);
        let _ = query;
    }
    assert_problem(&post(cell_change(&cb.url("/x"), json!({}))).await, 403);
    // The operator is not capped.
    assert_eq!(
        post_json(&ran.api("/rni/v2/subscriptions"), &types[5].1)
            .await
            .0,
        201
    );
}

/// `topology(walk)` with the radio model (100 ms reports), three NR cells (n1 at a1, n2 at
/// a2, n3 at b1) and a 2.6 GHz secondary carrier `00000c1` on a1: SCells are added above
/// -105 dBm (within about 150 m of a1) and released below -108 dBm (beyond about 190 m).
fn nr_and_ca_topology(walk: &str) -> String {
    let a1 = r#"cell_id = "00000a1" }"#;
    let base = topology(walk);
    assert!(base.contains(a1));
    let nr = |name: &str, id: &str, longitude: &str| {
        format!(
            "\n[[cells]]\nname = \"{name}\"\nrat = \"NR\"\n\
             nrcgi = {{ mcc = \"001\", mnc = \"01\", nrcell_id = \"{id}\" }}\n\
             position = {{ latitude = 43.7300, longitude = {longitude} }}\nhost = \"edge-a\"\n"
        )
    };
    format!(
        "{}{}{}{}\n[radio]\nmeas_period_ms = 100\ntime_to_trigger_ms = 160\n\
         ca_add_rsrp_dbm = -105.0\nca_hysteresis_db = 3.0\n",
        base.replacen(
            a1,
            &format!(
                "{a1}\nsecondary_carriers = [{{ cell_id = \"00000c1\", frequency_mhz = 2600 }}]"
            ),
            1
        ),
        nr("n1", "000000101", "7.4200"),
        nr("n2", "000000102", "7.4300"),
        nr("n3", "000000103", "7.4400"),
    )
}

/// ue1 holds at a1 until 0.8 s, walks to a2 (805 m east) by 2.8 s and stays.
const WALK_A1_A2: &str = r#"waypoints = [
    { at_s = 0.0, latitude = 43.7300, longitude = 7.4200 },
    { at_s = 0.8, latitude = 43.7300, longitude = 7.4200 },
    { at_s = 2.8, latitude = 43.7300, longitude = 7.4300 },
]"#;

fn nrcgi(id: &str) -> serde_json::Value {
    json!({"plmn": {"mcc": "001", "mnc": "01"}, "nrcellId": id})
}

fn nr_sub(cb: &str, filter: serde_json::Value) -> serde_json::Value {
    json!({"subscriptionType": "NrMeasRepUeSubscription", "callbackReference": cb,
        "filterCriteriaNrMrs": filter})
}

#[tokio::test]
async fn nr_measurement_reports_follow_the_nr_cells_periodic_and_a3() {
    let ran = RanProcess::start(&nr_and_ca_topology(WALK_A1_A2), &[]);
    let cb = Callback::start().await;
    let ue = |ip: &str| json!([{"type": 1, "value": ip}]);
    let subs = [
        // ue2 stands at a1 (and n1): periodic reports with n1 as its NR serving cell.
        (
            "/ue2-periodic",
            json!({"associateId": ue("10.150.0.2"), "triggerNr": [1]}),
        ),
        // ue1 walks from n1 to n2: the NR A3 event moves its NR serving cell.
        (
            "/ue1-a3",
            json!({"associateId": ue("10.150.0.1"), "triggerNr": [12]}),
        ),
        // Nobody is served by n3 (it is only ever a neighbour).
        ("/n3", json!({"nrcgi": [nrcgi("000000103")]})),
        // Triggers the model never produces.
        ("/b1-cgi", json!({"triggerNr": [2, 30]})),
    ];
    for (path, filter) in &subs {
        let r = post_json(
            &ran.api("/rni/v2/subscriptions"),
            &nr_sub(&cb.url(path), filter.clone()),
        )
        .await;
        assert_eq!(r.0, 201, "{path}: {}", r.2);
    }

    let periodic = cb.wait("/ue2-periodic", 3, WAIT).await;
    assert!(
        periodic.len() >= 3,
        "{} periodic NR reports",
        periodic.len()
    );
    for n in &periodic {
        let b = &n.body;
        assert_eq!(b["notificationType"], "NrMeasRepUeNotification");
        assert_eq!(b["triggerNr"], 1, "{b}");
        assert_eq!(b["associateId"][0]["value"], "10.150.0.2");
        let serving = &b["servCellMeasInfo"][0];
        assert_eq!(serving["nrcgi"], nrcgi("000000101"), "{b}");
        // At the site: SS-RSRP about -35.5 dBm (index 121 of 0..=126, TS 38.133).
        let ssb = &serving["sCell"]["measQuantityResultsSsbCell"];
        let rsrp = ssb["rsrp"].as_u64().unwrap();
        assert!((115..=126).contains(&rsrp), "SS-RSRP index {rsrp}");
        assert!(ssb["rsrq"].as_u64().unwrap() <= 127 && ssb["sinr"].as_u64().unwrap() <= 127);
        let neigh = b["nrNeighCellMeasInfo"].as_array().unwrap();
        assert_eq!(
            neigh[0]["nrcgi"],
            nrcgi("000000102"),
            "strongest neighbour first: {b}"
        );
        let n2 = neigh[0]["measQuantityResultsSsbCell"]["rsrp"]
            .as_u64()
            .unwrap();
        assert!(n2 < rsrp, "n2 ({n2}) weaker than n1 ({rsrp}) at a1");
        assert_eq!(serving["nCell"]["measQuantityResultsSsbCell"]["rsrp"], n2);
        assert!(b.get("eutraNeighCellMeasInfo").is_none());
    }

    let a3 = cb.wait("/ue1-a3", 1, Duration::from_secs(8)).await;
    assert!(
        !a3.is_empty(),
        "no NR A3 report while ue1 walked from n1 to n2"
    );
    let b = &a3[0].body;
    assert_eq!(b["triggerNr"], 12, "{b}");
    assert_eq!(b["servCellMeasInfo"][0]["nrcgi"], nrcgi("000000102"), "{b}");
    let neigh = b["nrNeighCellMeasInfo"].as_array().unwrap();
    let n1 = neigh
        .iter()
        .find(|n| n["nrcgi"] == nrcgi("000000101"))
        .expect("n1 heard");
    let serving = b["servCellMeasInfo"][0]["sCell"]["measQuantityResultsSsbCell"]["rsrp"]
        .as_u64()
        .unwrap();
    // The event needs n2 better by offset + hysteresis (4 dB; index steps are 1 dB).
    assert!(
        serving >= n1["measQuantityResultsSsbCell"]["rsrp"].as_u64().unwrap() + 3,
        "{b}"
    );
    // A3 waited for the walk to pass the middle (1.8 s).
    assert!(a3[0].at - ran.ready > Duration::from_millis(1800));
    // Standing at a2 it stays on n2: one event only.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(cb.on("/ue1-a3").len(), 1, "{:?}", cb.on("/ue1-a3"));
    assert!(cb.on("/n3").is_empty(), "{:?}", cb.on("/n3"));
    assert!(cb.on("/b1-cgi").is_empty(), "{:?}", cb.on("/b1-cgi"));
}

fn ca_sub(cb: &str, filter: serde_json::Value) -> serde_json::Value {
    json!({"subscriptionType": "CaReconfSubscription", "callbackReference": cb,
        "filterCriteriaAssoc": filter})
}

/// ue1 starts 300 m east of a1 (no SCell: the first reports come before any subscription
/// can), walks to a1 from 1.5 s to 2.5 s, stays until 3 s, then walks to a2 by 5 s.
const WALK_TO_A1_AND_AWAY: &str = r#"waypoints = [
    { at_s = 0.0, latitude = 43.7300, longitude = 7.4237 },
    { at_s = 1.5, latitude = 43.7300, longitude = 7.4237 },
    { at_s = 2.5, latitude = 43.7300, longitude = 7.4200 },
    { at_s = 3.0, latitude = 43.7300, longitude = 7.4200 },
    { at_s = 5.0, latitude = 43.7300, longitude = 7.4300 },
]"#;

#[tokio::test]
async fn carrier_aggregation_adds_and_releases_the_secondary_carrier() {
    let ran = RanProcess::start(&nr_and_ca_topology(WALK_TO_A1_AND_AWAY), &[]);
    let cb = Callback::start().await;
    let subs = [
        ("/ue1", ue_filter("10.150.0.1")),
        ("/ue2", ue_filter("10.150.0.2")),
        ("/b1", json!({"ecgi": [ecgi("00000b1")]})),
    ];
    for (path, filter) in &subs {
        let r = post_json(
            &ran.api("/rni/v2/subscriptions"),
            &ca_sub(&cb.url(path), filter.clone()),
        )
        .await;
        assert_eq!(r.0, 201, "{path}: {}", r.2);
    }
    let scell = json!([{"ecgi": ecgi("00000c1")}]);

    // ue2 stands at a1 with the SCell (since before the subscription): a handover to a2
    // releases it in a1, one back to a1 adds it again, one to b1 (none there) releases it.
    handover(&ran, "ue2", "a2").await;
    let got = cb.wait("/ue2", 1, WAIT).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].body["ecgi"],
        ecgi("00000a1"),
        "released in the old cell"
    );
    assert_eq!(got[0].body["secondaryCellRemove"], scell, "{}", got[0].body);
    assert!(got[0].body.get("carrierAggregationMeasInfo").is_none());
    handover(&ran, "ue2", "a1").await;
    let got = cb.wait("/ue2", 2, WAIT).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].body["secondaryCellAdd"], scell, "{}", got[1].body);
    handover(&ran, "ue2", "b1").await;
    let got = cb.wait("/ue2", 3, WAIT).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2].body["ecgi"], ecgi("00000a1"));
    assert_eq!(got[2].body["secondaryCellRemove"], scell);

    // ue1: added as it reaches a1 (within about 150 m, after 1.5 s), released as it walks
    // away (beyond about 190 m, at about 3.5 s).
    let got = cb.wait("/ue1", 2, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (add, remove) = (&got[0].body, &got[1].body);
    assert_eq!(add["notificationType"], "CaReconfNotification");
    assert_eq!(add["ecgi"], ecgi("00000a1"));
    assert_eq!(add["associateId"][0]["value"], "10.150.0.1");
    assert_eq!(add["secondaryCellAdd"], scell, "{add}");
    assert!(add.get("secondaryCellRemove").is_none(), "{add}");
    let m = &add["carrierAggregationMeasInfo"][0];
    assert_eq!(
        (m["cellIdSrv"].as_str(), m["cellIdNei"].as_str()),
        (Some("00000a1"), Some("00000c1"))
    );
    // Just above -105 dBm: RSRP index 36 or a little more (TS 36.133).
    let rsrp_nei = m["rsrpNei"].as_u64().unwrap();
    assert!((36..=45).contains(&rsrp_nei), "{m}");
    assert!(
        m["rsrpSrv"].as_u64().unwrap() > rsrp_nei,
        "the primary is stronger: {m}"
    );
    assert!(m["rsrqNei"].as_u64().unwrap() <= 34 && m["sinrNei"].as_u64().unwrap() <= 127);
    let added_after = got[0].at - ran.ready;
    assert!(
        added_after > Duration::from_millis(1500),
        "added at {added_after:?}"
    );
    assert_eq!(remove["ecgi"], ecgi("00000a1"));
    assert_eq!(remove["secondaryCellRemove"], scell, "{remove}");
    assert!(remove.get("secondaryCellAdd").is_none(), "{remove}");
    let released_after = got[1].at - ran.ready;
    assert!(
        released_after > Duration::from_millis(3000),
        "released at {released_after:?}, before ue1 left a1"
    );

    // No flapping, and nothing for b1.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(cb.on("/ue1").len(), 2, "{:?}", cb.on("/ue1"));
    assert_eq!(cb.on("/ue2").len(), 3, "{:?}", cb.on("/ue2"));
    assert!(cb.on("/b1").is_empty(), "{:?}", cb.on("/b1"));
}
