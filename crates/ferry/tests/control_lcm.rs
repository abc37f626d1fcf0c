//! MEC 010-2 of `ferry control`, end to end: the real binary, fake MEC hosts that record the
//! `ferry host` calls, a real callback server.

mod control_support;
mod shared;

use control_support::*;
use serde_json::json;

#[tokio::test]
async fn package_onboarding_distributes_the_image_to_every_host() {
    let (a, b) = (FakeHost::start().await, FakeHost::start().await);
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a), ("edge-b", &b)]));
    let image = fake_image();
    let content = package(&appd("counter"), &image);

    // Bad creations.
    let pk = c.api("/app_pkgm/v1/app_packages");
    let bad_alg = post_json(
        &pk,
        &json!({"appPkgName": "x", "appPkgVersion": "1",
        "checksum": {"algorithm": "MD5", "hash": "00"}}),
    )
    .await;
    assert_problem(&bad_alg, 400);
    let missing = post_json(&pk, &json!({"appPkgName": "x"})).await;
    assert_problem(&missing, 400);
    assert!(
        missing.2["detail"]
            .as_str()
            .unwrap()
            .contains("appPkgVersion"),
        "{}",
        missing.2
    );

    let created = create_package(&c, "counter", "1.0", &content).await;
    assert_eq!(created.0, 201, "{}", created.2);
    assert_schema(
        &created.2,
        &[
            ("id", "string"),
            ("appDId", "string"),
            ("appName", "string"),
            ("appSoftwareVersion", "string"),
            ("appDVersion", "string"),
            ("checksum", "object"),
            ("softwareImages", "array"),
            ("onboardingState", "string"),
            ("operationalState", "string"),
            ("usageState", "string"),
            ("_links", "object"),
        ],
    );
    assert_eq!(created.2["onboardingState"], "CREATED");
    let id = created.2["id"].as_str().unwrap().to_string();
    assert!(created.1["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/app_packages/{id}")));
    let content_url = c.api(&format!("/app_pkgm/v1/app_packages/{id}/package_content"));

    // AppD and content not there yet: 409.
    get(&c.api(&format!("/app_pkgm/v1/app_packages/{id}/appd")))
        .await
        .assert_problem(409);
    get(&content_url).await.assert_problem(409);
    // Wrong content: the checksum does not match.
    let wrong = put_bytes(&content_url, b"not a tar".to_vec()).await;
    assert_problem(&wrong, 400);
    assert!(
        wrong.2["detail"].as_str().unwrap().contains("SHA-256"),
        "{}",
        wrong.2
    );
    assert!(
        a.calls().is_empty(),
        "nothing may reach a host before the content is valid"
    );

    let up = put_bytes(&content_url, content.clone()).await;
    assert_eq!(up.0, 202, "{}", up.2);
    for host in [&a, &b] {
        let calls = host.calls();
        assert_eq!(calls.len(), 1, "{:?}", host.summary());
        assert_eq!(calls[0].path, "/ferry/v1/images");
        assert!(calls[0].query.contains("name=counter") && calls[0].query.contains("replace=true"));
        assert_eq!(
            calls[0].body.as_ref(),
            image.as_slice(),
            "the image must arrive unchanged"
        );
    }
    let info = get(&c.api(&format!("/app_pkgm/v1/app_packages/{id}")))
        .await
        .2;
    assert_eq!(info["onboardingState"], "ONBOARDED");
    assert_eq!(info["operationalState"], "ENABLED");
    assert_eq!(info["appDId"], "counter");
    let d = get(&c.api(&format!("/app_pkgm/v1/app_packages/{id}/appd"))).await;
    assert_eq!(d.0, 200);
    assert_eq!(d.2["ferryStateRelocation"]["mode"], "CONTAINER_MIGRATION");
    assert_eq!(
        d.2["mecVersion"],
        json!(["2.1.1"]),
        "unknown AppD fields are kept"
    );
    get(&c.api("/app_pkgm/v1/onboarded_app_packages/counter/appd"))
        .await
        .assert_status(200);
    // The package comes back as uploaded, by either name.
    for url in [
        content_url.clone(),
        c.api("/app_pkgm/v1/onboarded_app_packages/counter/package_content"),
    ] {
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "application/x-tar");
        assert!(
            r.bytes().await.unwrap() == content,
            "{url}: not the uploaded package"
        );
    }
    get(&c.api("/app_pkgm/v1/onboarded_app_packages/nope/package_content"))
        .await
        .assert_problem(404);
    // Uploading twice: 409.
    put_bytes(&content_url, content).await.assert_problem(409);
    // A second package with the same appDId: 409 at upload.
    let again = package(&appd("counter"), &image);
    let p2 = create_package(&c, "c2", "1", &again).await.2;
    let r = upload(&c, p2["id"].as_str().unwrap(), again).await;
    assert_problem(&r, 409);
    // Filtered list.
    let l = get(&c.api("/app_pkgm/v1/app_packages?filter=(eq,onboardingState,ONBOARDED)"))
        .await
        .2;
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    get(&c.api("/app_pkgm/v1/app_packages?filter=(gt,x,1)"))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn bad_appd_and_bad_technique_are_refused() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a)]));
    let mut d = appd("counter");
    d["ferryStateRelocation"]["technique"] = json!("teleport");
    for (appd, needle) in [
        (d, "teleport"),
        (
            json!({"appDId": "Bad Id!", "appName": "n", "appProvider": "p",
        "appSoftVersion": "1", "appDVersion": "1"}),
            "appDId",
        ),
    ] {
        let content = package(&appd, &fake_image());
        let p = create_package(&c, "x", "1", &content).await.2;
        let r = upload(&c, p["id"].as_str().unwrap(), content).await;
        assert_problem(&r, 400);
        assert!(r.2["detail"].as_str().unwrap().contains(needle), "{}", r.2);
    }
    assert!(a.calls().is_empty());
}

#[tokio::test]
async fn instance_lifecycle_on_a_chosen_host_with_notifications() {
    let (a, b) = (FakeHost::start().await, FakeHost::start().await);
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a), ("edge-b", &b)]));
    let pkg = onboard(&c, "counter").await;
    let cb = Callback::start().await;
    let sub = post_json(
        &c.api("/app_lcm/v1/subscriptions"),
        &json!({
        "subscriptionType": "AppInstanceStateChange", "callbackUri": cb.url("/lcm")}),
    )
    .await;
    assert_eq!(sub.0, 201, "{}", sub.2);
    assert_schema(
        &sub.2,
        &[
            ("id", "string"),
            ("subscriptionType", "string"),
            ("callbackUri", "string"),
            ("_links", "object"),
        ],
    );
    post_json(
        &c.api("/app_lcm/v1/subscriptions"),
        &json!({
        "subscriptionType": "Other", "callbackUri": cb.url("/x")}),
    )
    .await
    .assert_problem(400);

    // Create: unknown appDId is a 400.
    create_instance(&c, "nope").await.assert_problem(400);
    let created = post_json(
        &c.api("/app_lcm/v1/app_instances"),
        &json!({"appDId": "counter", "appInstanceName": "c1"}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    assert_schema(
        &created.2,
        &[
            ("id", "string"),
            ("appDId", "string"),
            ("appProvider", "string"),
            ("appName", "string"),
            ("appSoftVersion", "string"),
            ("appDVersion", "string"),
            ("appPkgId", "string"),
            ("instantiationState", "string"),
            ("_links", "object"),
        ],
    );
    assert_eq!(created.2["instantiationState"], "NOT_INSTANTIATED");
    assert_eq!(created.2["appPkgId"], pkg.as_str());
    let id = created.2["id"].as_str().unwrap().to_string();
    let inst = c.api(&format!("/app_lcm/v1/app_instances/{id}"));
    let operate = |to: &'static str| {
        let url = format!("{inst}/operate");
        async move { post_json(&url, &json!({"changeStateTo": to})).await }
    };

    // The package is in use now and cannot be deleted.
    assert_eq!(
        get(&c.api(&format!("/app_pkgm/v1/app_packages/{pkg}")))
            .await
            .2["usageState"],
        "IN_USE"
    );
    delete(&c.api(&format!("/app_pkgm/v1/app_packages/{pkg}")))
        .await
        .assert_problem(409);

    // Bad instantiations: no host named, unknown host, malformed.
    post_json(&format!("{inst}/instantiate"), &json!({}))
        .await
        .assert_problem(400);
    let unknown = post_json(
        &format!("{inst}/instantiate"),
        &json!({"selectedMECHostInfo": [{"hostName": "edge-z", "hostId": {}}]}),
    )
    .await;
    assert_problem(&unknown, 400);
    assert!(unknown.2["detail"].as_str().unwrap().contains("edge-z"));
    operate("STOPPED").await.assert_problem(409);

    let before = b.calls().len();
    let t0 = std::time::Instant::now();
    let r = post_json(
        &format!("{inst}/instantiate"),
        &json!({"selectedMECHostInfo": [{"hostId": {"name": "edge-b"}}]}),
    )
    .await;
    assert_eq!(r.0, 202, "{}", r.2);
    eprintln!(
        "instantiate (create + start on a fake host, store, data plane, notifications): {:.1} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let op_url = r.1["location"].to_str().unwrap().to_string();
    let op = get(&op_url).await.2;
    assert_schema(
        &op,
        &[
            ("id", "string"),
            ("operationState", "string"),
            ("stateEnteredTime", "object"),
            ("startTime", "object"),
            ("lcmOperation", "string"),
            ("_links", "object"),
        ],
    );
    assert_eq!(op["operationState"], "COMPLETED");
    assert_eq!(op["lcmOperation"], "INSTATIATE");
    let calls = b.calls()[before..].to_vec();
    assert_eq!(
        b.summary()[before..],
        [
            "POST /ferry/v1/containers",
            format!("POST /ferry/v1/containers/{id}/start").as_str()
        ]
    );
    let spec = calls[0].json();
    assert_eq!(spec["name"], id.as_str());
    assert_eq!(spec["image"], "counter");
    assert_eq!(
        spec["ip"], "10.200.0.2",
        "first address of the app subnet after the gateway"
    );
    assert_eq!(spec["args"], json!(["--port", "8080"]));
    assert_eq!(spec["memory_mib"], 64);
    assert_eq!(a.calls().len(), 1, "edge-a got only the image");
    let i = get(&inst).await.2;
    assert_eq!(i["instantiationState"], "INSTANTIATED");
    assert_eq!(i["instantiatedAppState"]["operationalState"], "STARTED");
    assert_eq!(i["ferryHost"], "edge-b");
    assert_eq!(i["ferryAddress"], "10.200.0.2");
    post_json(
        &format!("{inst}/instantiate"),
        &json!({"selectedMECHostInfo": [{"hostName": "edge-a", "hostId": {}}]}),
    )
    .await
    .assert_problem(409);
    delete(&inst).await.assert_problem(409);

    // Operate: stop, stop again (409), start.
    operate("STOPPED").await.assert_status(202);
    operate("STOPPED").await.assert_problem(409);
    operate("PAUSED").await.assert_problem(400);
    operate("STARTED").await.assert_status(202);

    // A second instance gets the next address.
    let id2 = instantiate(&c, "counter", "edge-a").await;
    assert_eq!(instance(&c, &id2).await["ferryAddress"], "10.200.0.3");

    // Terminate, then delete.
    let t = post_json(
        &format!("{inst}/terminate"),
        &json!({"terminationType": "FORCEFUL"}),
    )
    .await;
    assert_eq!(t.0, 202, "{}", t.2);
    assert!(
        b.summary().ends_with(&[
            format!("POST /ferry/v1/containers/{id}/stop"),
            format!("DELETE /ferry/v1/containers/{id}")
        ]),
        "{:?}",
        b.summary()
    );
    post_json(
        &format!("{inst}/terminate"),
        &json!({"terminationType": "FORCEFUL"}),
    )
    .await
    .assert_problem(409);
    delete(&inst).await.assert_status(204);
    get(&inst).await.assert_problem(404);

    // Notifications: one per state change, in order, for both instances.
    cb.wait("/lcm", 5, WAIT).await;
    tokio::time::sleep(GRACE).await;
    let got: Vec<(String, String)> = cb
        .on("/lcm")
        .iter()
        .map(|r| {
            (
                r.body["appInstanceId"].as_str().unwrap_or("").to_string(),
                r.body["notificationType"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let mine: Vec<&str> = got
        .iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(
        mine,
        ["STARTED", "STOPPED", "STARTED", "NOT_INSTANTIATED"],
        "{got:?}"
    );
    assert_eq!(got.len(), 5, "{got:?}");
    let first = &cb.on("/lcm")[0].body;
    assert_schema(
        first,
        &[
            ("id", "string"),
            ("notificationType", "string"),
            ("subscriptionId", "string"),
            ("timeStamp", "object"),
            ("appInstanceId", "string"),
            ("appPkgId", "string"),
            ("appDId", "string"),
            ("_links", "object"),
        ],
    );
    let ops = get(&c.api("/app_lcm/v1/app_lcm_op_occs")).await.2;
    assert_eq!(ops.as_array().unwrap().len(), 5, "{ops}");
}

#[tokio::test]
async fn a_host_that_fails_leaves_the_instance_not_instantiated() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a)]));
    onboard(&c, "counter").await;
    a.fail_paths_ending_with(Some("/start"));
    let created = create_instance(&c, "counter").await.2;
    let id = created["id"].as_str().unwrap();
    let r = instantiate_with(
        &c,
        id,
        &json!({"selectedMECHostInfo": [{"hostName": "edge-a", "hostId": {}}]}),
    )
    .await;
    assert_problem(&r, 502);
    assert!(
        r.2["detail"].as_str().unwrap().contains("injected failure"),
        "{}",
        r.2
    );
    let op = get(r.2["instance"].as_str().unwrap()).await.2;
    assert_eq!(op["operationState"], "FAILED");
    assert!(
        a.summary().ends_with(&[
            format!("POST /ferry/v1/containers/{id}/start"),
            format!("DELETE /ferry/v1/containers/{id}")
        ]),
        "a container that did not start is removed: {:?}",
        a.summary()
    );
    let i = instance(&c, id).await;
    assert_eq!(i["instantiationState"], "NOT_INSTANTIATED");
    assert!(
        i.get("ferryAddress").is_none(),
        "the address is released: {i}"
    );
    // The host recovers: the same instance instantiates, with the same first address.
    a.fail_paths_ending_with(None);
    let r = instantiate_with(
        &c,
        id,
        &json!({"selectedMECHostInfo": [{"hostName": "edge-a", "hostId": {}}]}),
    )
    .await;
    assert_eq!(r.0, 202, "{}", r.2);
    assert_eq!(instance(&c, id).await["ferryAddress"], "10.200.0.2");
}

/// Two zones: edge-a (cell a1) and edge-b (cell b1); ue1 (10.150.0.1) starts in a1.
fn topology() -> String {
    two_zone_topology("ctltest", "10.100.0.11", "10.100.0.12")
}

#[tokio::test]
async fn instantiate_on_the_host_serving_a_ue() {
    let (a, b) = (FakeHost::start().await, FakeHost::start().await);
    let (_d, dir) = state_dir();
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, topology()).unwrap();
    let ran = start_ran(&topo);
    let mut args = host_args(&[("edge-a", &a), ("edge-b", &b)]);
    args.extend([
        "--topology".into(),
        topo.display().to_string(),
        "--ran".into(),
        ran.url.clone(),
    ]);
    let c = ControlProcess::start(&dir, &args);
    onboard(&c, "counter").await;

    let for_ue = |ip: &str| json!({"ferryAssociateId": {"type": "UE_IPv4_ADDRESS", "value": ip}});
    let new_instance = || async {
        let r = create_instance(&c, "counter").await;
        r.2["id"].as_str().unwrap().to_string()
    };
    let i1 = new_instance().await;
    let r = instantiate_with(&c, &i1, &for_ue("10.150.0.1")).await;
    assert_eq!(r.0, 202, "{}", r.2);
    assert_eq!(instance(&c, &i1).await["ferryHost"], "edge-a");

    // The UE moves to b1: the next instance for it goes to edge-b.
    let out = std::process::Command::new(BIN)
        .env("FERRY_TLS_DIR", pki())
        .args(["ran", "handover", "ue1", "b1", "--ran", &ran.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i2 = new_instance().await;
    let r = instantiate_with(&c, &i2, &for_ue("10.150.0.1")).await;
    assert_eq!(r.0, 202, "{}", r.2);
    assert_eq!(instance(&c, &i2).await["ferryHost"], "edge-b");
    assert!(b
        .summary()
        .contains(&format!("POST /ferry/v1/containers/{i2}/start")));

    // Unknown UE, malformed id.
    let i3 = new_instance().await;
    let unknown = instantiate_with(&c, &i3, &for_ue("10.150.0.99")).await;
    assert_problem(&unknown, 400);
    assert!(
        unknown.2["detail"]
            .as_str()
            .unwrap()
            .contains("10.150.0.99"),
        "{}",
        unknown.2
    );
    instantiate_with(&c, &i3, &for_ue("ue1"))
        .await
        .assert_problem(400);

    // Without a RAN the extension cannot be served: a 400 saying so.
    drop(c);
    let (_d2, dir2) = state_dir();
    let c2 = ControlProcess::start(&dir2, &host_args(&[("edge-a", &a)]));
    onboard(&c2, "counter2").await;
    let r = create_instance(&c2, "counter2").await;
    let id = r.2["id"].as_str().unwrap();
    let no_ran = instantiate_with(&c2, id, &for_ue("10.150.0.1")).await;
    assert_problem(&no_ran, 400);
    assert!(
        no_ran.2["detail"].as_str().unwrap().contains("--ran"),
        "{}",
        no_ran.2
    );
}

#[tokio::test]
async fn package_subscriptions_and_operational_state() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a)]));
    let cb = Callback::start().await;
    let subs = c.api("/app_pkgm/v1/subscriptions");
    for (kind, path) in [
        ("AppPackageOnBoarding", "/onb"),
        ("AppPacakgeOperationChange", "/op"),
        ("AppPackageDeletion", "/del"),
    ] {
        let r = post_json(
            &subs,
            &json!({"subsctiptionType": kind, "callbackUri": cb.url(path)}),
        )
        .await;
        assert_eq!(r.0, 201, "{}", r.2);
        assert_schema(
            &r.2,
            &[
                ("id", "string"),
                ("subscriptionType", "string"),
                ("callbackUri", "string"),
                ("_links", "object"),
            ],
        );
    }
    // Only packages of appDId "other" for this one: it must stay silent.
    let filtered = post_json(
        &subs,
        &json!({"subsctiptionType": "AppPackageOnBoarding",
        "callbackUri": cb.url("/other"), "appPkgFilter": ["(eq,appDId,other)"]}),
    )
    .await;
    assert_eq!(filtered.0, 201, "{}", filtered.2);
    post_json(
        &subs,
        &json!({"subsctiptionType": "AppPackageEaten", "callbackUri": cb.url("/x")}),
    )
    .await
    .assert_problem(400);
    post_json(
        &subs,
        &json!({"subsctiptionType": "AppPackageDeletion", "callbackUri": cb.url("/x"),
        "appPkgFilter": ["appDId=x"]}),
    )
    .await
    .assert_problem(400);
    assert_eq!(
        get(&subs).await.2["_links"]["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let pkg = onboard(&c, "counter").await;
    let p = c.api(&format!("/app_pkgm/v1/app_packages/{pkg}"));
    let patch = |state: &'static str| {
        let p = p.clone();
        async move {
            answer(
                client()
                    .patch(&p)
                    .json(&json!({"operationState": state}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let r = patch("DISABLED").await;
    assert_eq!(r.0, 200, "{}", r.2);
    assert_eq!(r.2, json!({"operationState": "DISABLED"}));
    assert_problem(&patch("DISABLED").await, 409);
    assert_problem(&patch("BROKEN").await, 400);
    // A disabled package cannot be instantiated.
    create_instance(&c, "counter").await.assert_problem(409);
    assert_eq!(patch("ENABLED").await.0, 200);
    create_instance(&c, "counter").await.assert_status(201);
    let inst = get(&c.api("/app_lcm/v1/app_instances")).await.2[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    delete(&c.api(&format!("/app_lcm/v1/app_instances/{inst}")))
        .await
        .assert_status(204);
    delete(&p).await.assert_status(204);
    get(&p).await.assert_problem(404);

    let onb = cb.wait("/onb", 1, WAIT).await;
    let op = cb.wait("/op", 2, WAIT).await;
    let del = cb.wait("/del", 1, WAIT).await;
    tokio::time::sleep(GRACE).await;
    assert_eq!(cb.on("/onb").len(), 1);
    assert_eq!(onb[0].body["notificationType"], "AppPackageOnBoarded");
    assert_schema(
        &onb[0].body,
        &[
            ("id", "string"),
            ("notificationType", "string"),
            ("subscriptionId", "string"),
            ("timeStamp", "object"),
            ("appPkgId", "string"),
            ("appDId", "string"),
            ("operationalState", "string"),
            ("_links", "object"),
        ],
    );
    let kinds: Vec<&str> = op
        .iter()
        .map(|n| n.body["notificationType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["AppPacakgeDisabled", "AppPacakgeEnabled"]);
    assert_eq!(cb.on("/op").len(), 2);
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].body["notificationType"], "AppPackageDeleted");
    assert_eq!(del[0].body["appPkgId"], pkg.as_str());
    assert!(
        cb.on("/other").is_empty(),
        "the filter selects appDId 'other' only"
    );
}

#[tokio::test]
async fn onboarding_a_16_mib_image_to_three_hosts() {
    let hosts = [
        FakeHost::start().await,
        FakeHost::start().await,
        FakeHost::start().await,
    ];
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(
        &dir,
        &host_args(&[("h1", &hosts[0]), ("h2", &hosts[1]), ("h3", &hosts[2])]),
    );
    let image: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let content = package(&appd("big"), &image);
    let created = create_package(&c, "big", "1", &content).await;
    let id = created.2["id"].as_str().unwrap();
    let t0 = std::time::Instant::now();
    let up = upload(&c, id, content).await;
    let took = t0.elapsed();
    assert_eq!(up.0, 202, "{}", up.2);
    for h in &hosts {
        assert_eq!(h.calls().len(), 1);
        assert!(
            h.calls()[0].body.as_ref() == image.as_slice(),
            "image arrived intact"
        );
    }
    eprintln!(
        "onboarding a 16 MiB image to 3 hosts (upload, SHA-256, unpack, 3 imports): {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
}

/// Runs `ferry ARGS...`: (success, stdout, stderr).
fn ferry(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .env("FERRY_TLS_DIR", pki())
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_onboards_and_instantiates() {
    let a = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &a)]));
    let appd_file = dir.join("appd.json");
    std::fs::write(&appd_file, serde_json::to_vec(&appd("counter")).unwrap()).unwrap();
    let image_file = dir.join("counter.tar");
    std::fs::write(&image_file, fake_image()).unwrap();
    let (appd_s, image_s) = (
        appd_file.display().to_string(),
        image_file.display().to_string(),
    );
    let url = c.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        ferry(&[
            "control",
            "onboard",
            "--appd",
            &appd_s,
            "--image",
            &image_s,
            "--control",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(out.0, "{}", out.2);
    assert_eq!(
        out.1.trim(),
        "onboarded package pkg-000000000001 (appDId counter, ONBOARDED)"
    );
    assert_eq!(a.calls()[0].body.as_ref(), fake_image().as_slice());

    let url = c.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        ferry(&[
            "control",
            "instantiate",
            "counter",
            "--host",
            "edge-a",
            "--name",
            "c1",
            "--control",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(out.0, "{}", out.2);
    assert_eq!(
        out.1.trim(),
        "instance inst-000000000001 of counter on edge-a at 10.200.0.2"
    );

    let url = c.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        ferry(&[
            "control",
            "instantiate",
            "nope",
            "--host",
            "edge-a",
            "--control",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(!out.0);
    assert!(
        out.2.contains("instance creation refused (400)") && out.2.contains("nope"),
        "{}",
        out.2
    );
    assert_eq!(out.2.trim().lines().count(), 1, "{}", out.2);
    let out = ferry(&[
        "control",
        "instantiate",
        "counter",
        "--control",
        "http://127.0.0.1:9",
    ]);
    assert!(!out.0 && out.2.contains("--host"), "{}", out.2);
}
