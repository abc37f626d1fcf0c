//! The official ETSI YAML as the judge: schemathesis (pinned in
//! scripts/schemathesis-requirements.txt, installed by scripts/install-deps into
//! .deps/schemathesis) runs against the real `ferry ran` and `ferry control` binaries with the
//! ETSI MEC files vendored in docs/etsi-mec/: MEC 012 and 013 on the RAN; MEC 010-2 AppLcm and
//! AppPkgMgmt, MEC 011 both, MEC 021 on the control plane (its MEC hosts are fake ones that
//! record the calls). Seed data (a package, an instance, subscriptions of every kind ferry
//! serves, an AMS registration, a service) is created first and its identifiers handed to
//! schemathesis, so per-resource operations meet real resources, not only 404s.
//!
//! Checks: no server error, response bodies and status codes and content types as the file
//! documents them. The files' known bugs are fixed in a copy first (`etsi/fix_spec.py`, each
//! fix with its line and reason); operations ferry does not implement are listed in
//! [`NOT_TESTED`], ferry's deliberate departures in [`DEPARTURES`] with the reason. Both lists are in docs/etsi-mec/README.md.

mod control_support;
mod shared;

use control_support::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Examples per operation in the fuzzing phase (the examples and coverage phases add theirs):
/// enough to find a wrong schema, few enough for CI.
const MAX_EXAMPLES: u32 = 20;
/// A fixed seed: a failure in CI can be replayed.
const SEED: &str = "14";

/// Operations not tested: (file, operationId, the operation, why).
const NOT_TESTED: &[(&str, &str, &str, &str)] = &[
    (
        "MEC010-2_AppLcm.yaml",
        "appInstNotificationPOST",
        "POST /user_defined_notification",
        CALLBACK,
    ),
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "app_pkg_notificationPOST",
        "POST /user_defined_notification",
        CALLBACK,
    ),
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "appDIdPUT",
        "PUT /onboarded_app_packages/{appDId}/package_content",
        "not implemented: a package has no appDId before its content is read (upload by appPkgId)",
    ),
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "appPkgPUT",
        "PUT /app_packages/{appPkgId}/package_content",
        "schemathesis cannot make application/zip bodies; ferry's packages are tar archives \
         (crates/control/README.md); crates/ferry/tests/control_lcm.rs tests the upload",
    ),
];

const CALLBACK: &str =
    "the subscriber's callback endpoint, in the file for its notification type; not a resource of the producer";

/// Operations that end a seeded resource without DELETE: they run with the DELETEs, after
/// everything else. (file, operationId)
const LAST: &[(&str, &str)] = &[
    (
        "MEC021_AppMobilityService.yaml",
        "app_mobility_service_derPOST",
    ),
    ("MEC010-2_AppLcm.yaml", "appLcmTerminatePOST"),
];

/// Checks turned off for one operation where ferry departs from the file on purpose, each
/// documented in crates/control/README.md: (file, operationId, check, why).
const DEPARTURES: &[(&str, &str, &str, &str)] = &[
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "appPkgIdGET",
        "content_type_conformance",
        "GET /app_packages/{appPkgId}/appd: ferry's AppD is JSON, not a TOSCA YAML file or a zip",
    ),
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "appPkgGET",
        "content_type_conformance",
        "GET /app_packages/{appPkgId}/package_content: ferry's packages are tar archives, not CSAR zips",
    ),
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "appDIdGET",
        "content_type_conformance",
        "GET /onboarded_app_packages/{appDId}/package_content: a tar archive, not a CSAR zip",
    ),
    (
        "MEC010-2_AppPkgMgmt.yaml",
        "appDGET",
        "content_type_conformance",
        "GET /onboarded_app_packages/{appDId}/appd: ferry's AppD is JSON, not TOSCA YAML or a zip",
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv() -> PathBuf {
    std::env::var_os("FERRY_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".deps"))
        .join("schemathesis")
}

/// One run of schemathesis against one file.
struct Run<'a> {
    /// File name in docs/etsi-mec/.
    file: &'a str,
    /// The API root on the server under test (`http://127.0.0.1:PORT/rni/v2`).
    url: String,
    /// Path parameters of the seeded resources: (path template, name, value); a template
    /// of "*" gives the value to every operation.
    params: Vec<(&'a str, &'a str, String)>,
}

/// Runs schemathesis; returns its output when it found a failure or an error.
fn judge(run: &Run, work: &Path) -> Result<(), String> {
    let bin = venv().join("bin");
    assert!(
        bin.join("schemathesis").is_file(),
        "{} is missing: run scripts/install-deps (as root; `make test` does)",
        bin.join("schemathesis").display()
    );
    let stem = run.file.trim_end_matches(".yaml");
    let spec = work.join(format!("{stem}.fixed.yaml"));
    let fixed = Command::new(bin.join("python"))
        .arg(repo().join("crates/ferry/tests/etsi/fix_spec.py"))
        .arg(repo().join("docs/etsi-mec").join(run.file))
        .arg(&spec)
        .output()
        .expect("run fix_spec.py");
    assert!(
        fixed.status.success(),
        "fix_spec.py failed on {}: {}",
        run.file,
        String::from_utf8_lossy(&fixed.stderr)
    );

    let mut config = String::from(
        "[checks]\nenabled = false\nnot_a_server_error.enabled = true\n\
         response_schema_conformance.enabled = true\nstatus_code_conformance.enabled = true\n\
         content_type_conformance.enabled = true\n",
    );
    config.push_str("\n[parameters]\n");
    for (path, name, value) in &run.params {
        if *path == "*" {
            config.push_str(&format!("\"path.{name}\" = {value:?}\n"));
        }
    }
    for (path, name, value) in &run.params {
        if *path != "*" {
            config.push_str(&format!(
                "\n[[operations]]\ninclude-path = {path:?}\nparameters = {{ \"path.{name}\" = {value:?} }}\n"
            ));
        }
    }
    for (file, id, _, _) in NOT_TESTED {
        if *file == run.file {
            config.push_str(&format!(
                "\n[[operations]]\ninclude-operation-id = {id:?}\nenabled = false\n"
            ));
        }
    }
    for (file, id, check, _) in DEPARTURES {
        if *file == run.file {
            config.push_str(&format!(
                "\n[[operations]]\ninclude-operation-id = {id:?}\nchecks.{check}.enabled = false\n"
            ));
        }
    }
    let config_file = work.join(format!("{stem}.toml"));
    std::fs::write(&config_file, &config).unwrap();

    // Two passes: every operation but DELETE and `LAST`, then those, so that ending a seeded
    // resource does not leave the other operations nothing but 404s.
    let last: Vec<&str> = LAST
        .iter()
        .filter(|(f, _)| *f == run.file)
        .map(|(_, id)| *id)
        .collect();
    let mut text = String::new();
    let mut ok = true;
    for pass in ["exclude", "include"] {
        let mut select = vec![format!("--{pass}-method"), "DELETE".to_string()];
        for id in &last {
            select.push(format!("--{pass}-operation-id"));
            select.push(id.to_string());
        }
        let out = Command::new(bin.join("schemathesis"))
            .current_dir(work)
            .arg("--config-file")
            .arg(&config_file)
            .arg("run")
            .arg(&spec)
            .args(["--url", &run.url])
            .args(&select)
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", &MAX_EXAMPLES.to_string()])
            .args(["--seed", SEED, "--generation-database", "none"])
            .args(["--suppress-health-check", "filter_too_much,too_slow"])
            .args(["--workers", "1", "--no-color"])
            // As the operator, over TLS: the producers run secured, as in production.
            .arg("--tls-verify")
            .arg(pki().join("ca.crt"))
            .arg("--request-cert")
            .arg(pki().join("operator.crt"))
            .arg("--request-cert-key")
            .arg(pki().join("operator.key"))
            .output()
            .expect("run schemathesis");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // A file whose DELETEs are all untested has no second pass.
        let nothing = pass == "include" && stdout.contains("No operations matched the filters");
        ok &= out.status.success() || nothing;
        text += &stdout;
        text += &String::from_utf8_lossy(&out.stderr);
    }
    if ok {
        // What was judged, and the warnings (operations that only met 404s, say), for the log
        // of a passing run (`--nocapture`).
        eprintln!("==== {} passed\n{text}", run.file);
        Ok(())
    } else {
        Err(format!("==== {} ({config_file:?})\n{text}", run.file))
    }
}

fn judge_all(runs: &[Run]) {
    let work = tempfile::tempdir().unwrap();
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| judge(r, work.path()).err())
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ran_conforms_to_mec012_and_mec013() {
    let (_d, dir) = state_dir();
    let topo = dir.join("topology.toml");
    std::fs::write(
        &topo,
        two_zone_topology("conform", "10.100.0.11", "10.100.0.12"),
    )
    .unwrap();
    let ran = start_ran(&topo);
    // Notifications of the seeded subscriptions land here (schemathesis's own subscriptions
    // name callbacks that do not answer; their failed deliveries are logged and dropped).
    let callback = Callback::start().await;
    let cb = &callback.url("/cb");

    let rni = post_json(
        &ran.api("/rni/v2/subscriptions"),
        &json!({"subscriptionType": "CellChangeSubscription", "callbackReference": cb,
            "filterCriteriaAssocHo": {"hoStatus": [3]}}),
    )
    .await;
    assert_eq!(rni.0, 201, "{}", rni.2);
    // One subscription of every other MEC 012 type, so the list holds each of them.
    let ue = json!([{"type": 1, "value": "10.150.0.1"}]);
    for body in [
        json!({"subscriptionType": "RabEstSubscription", "filterCriteriaQci": {"qci": 9}}),
        json!({"subscriptionType": "RabModSubscription",
            "filterCriteriaQci": {"qci": 9, "erabId": 1}}),
        json!({"subscriptionType": "RabRelSubscription",
            "filterCriteriaQci": {"qci": 9, "erabId": 1}}),
        json!({"subscriptionType": "MeasRepUeSubscription",
            "filterCriteriaAssocTri": {"associateId": ue, "trigger": [1, 12]}}),
        json!({"subscriptionType": "NrMeasRepUeSubscription",
            "filterCriteriaNrMrs": {"associateId": ue, "triggerNr": [1]}}),
        json!({"subscriptionType": "MeasTaSubscription",
            "filterCriteriaAssoc": {"associateId": ue}}),
        json!({"subscriptionType": "CaReconfSubscription",
            "filterCriteriaAssoc": {"associateId": ue}}),
        json!({"subscriptionType": "S1BearerSubscription",
            "S1BearerSubscriptionCriteria": {"associateId": ue}, "eventType": [1, 2, 3]}),
    ] {
        let mut body = body;
        body["callbackReference"] = json!(cb);
        let r = post_json(&ran.api("/rni/v2/subscriptions"), &body).await;
        assert_eq!(r.0, 201, "{body}: {}", r.2);
    }
    let user = post_json(
        &ran.api("/location/v2/subscriptions/userTracking"),
        &json!({"userTrackingSubscription": {"callbackReference": {"notifyURL": cb},
            "address": "10.150.0.1"}}),
    )
    .await;
    assert_eq!(user.0, 201, "{}", user.2);
    let zonal = post_json(
        &ran.api("/location/v2/subscriptions/zonalTraffic"),
        &json!({"zonalTrafficSubscription": {"callbackReference": {"notifyURL": cb},
            "zoneId": "edge-a"}}),
    )
    .await;
    assert_eq!(zonal.0, 201, "{}", zonal.2);
    let distance = post_json(
        &ran.api("/location/v2/subscriptions/distance"),
        &json!({"distanceNotificationSubscription": {"callbackReference": {"notifyURL": cb},
            "monitoredAddress": ["acr:10.150.0.1"], "referenceAddress": ["acr:10.150.0.1"],
            "distance": 100, "trackingAccuracy": 10, "criteria": "AllBeyondDistance",
            "checkImmediate": false, "frequency": 10}}),
    )
    .await;
    assert_eq!(distance.0, 201, "{}", distance.2);
    let circle = post_json(
        &ran.api("/location/v2/subscriptions/area/circle"),
        &json!({"circleNotificationSubscription": {"callbackReference": {"notifyURL": cb},
            "address": ["acr:10.150.0.1"], "latitude": 43.73, "longitude": 7.42, "radius": 100,
            "trackingAccuracy": 10, "enteringLeavingCriteria": "Entering",
            "checkImmediate": false, "frequency": 10}}),
    )
    .await;
    assert_eq!(circle.0, 201, "{}", circle.2);
    let periodic = post_json(
        &ran.api("/location/v2/subscriptions/periodic"),
        &json!({"periodicNotificationSubscription": {"callbackReference": {"notifyURL": cb},
            "address": ["acr:10.150.0.1"], "requestedAccuracy": 10, "frequency": 60}}),
    )
    .await;
    assert_eq!(periodic.0, 201, "{}", periodic.2);
    let zone_status = post_json(
        &ran.api("/location/v2/subscriptions/zoneStatus"),
        &json!({"zoneStatusSubscription": {"callbackReference": {"notifyURL": cb},
            "zoneId": "edge-a", "numberOfUsersZoneThreshold": 5}}),
    )
    .await;
    assert_eq!(zone_status.0, 201, "{}", zone_status.2);

    judge_all(&[
        Run {
            file: "MEC012_RniAPI.yaml",
            url: ran.api("/rni/v2"),
            params: vec![("*", "subscriptionId", last_segment(&rni))],
        },
        Run {
            file: "MEC013_LocationAPI.yaml",
            url: ran.api("/location/v2"),
            params: vec![
                ("*", "zoneId", "edge-a".into()),
                ("*", "accessPointId", "a1".into()),
                (
                    "/subscriptions/userTracking/{subscriptionId}",
                    "subscriptionId",
                    last_segment(&user),
                ),
                (
                    "/subscriptions/zonalTraffic/{subscriptionId}",
                    "subscriptionId",
                    last_segment(&zonal),
                ),
                (
                    "/subscriptions/distance/{subscriptionId}",
                    "subscriptionId",
                    last_segment(&distance),
                ),
                (
                    "/subscriptions/area/circle/{subscriptionId}",
                    "subscriptionId",
                    last_segment(&circle),
                ),
                (
                    "/subscriptions/periodic/{subscriptionId}",
                    "subscriptionId",
                    last_segment(&periodic),
                ),
                (
                    "/subscriptions/zoneStatus/{subscriptionId}",
                    "subscriptionId",
                    last_segment(&zone_status),
                ),
            ],
        },
    ]);
}

/// The id at the end of a 201's Location.
fn last_segment(a: &Answer) -> String {
    let loc = a.1["location"].to_str().unwrap();
    loc.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_conforms_to_mec010_2_mec011_and_mec021() {
    let host = FakeHost::start().await;
    let (_d, dir) = state_dir();
    let c = ControlProcess::start(&dir, &host_args(&[("edge-a", &host)]));
    // Confirms graceful stops and terminations, or each would wait out its timeout.
    let callback = Callback::start_confirming().await;
    let cb = &callback.url("/cb");

    let pkg = onboard(&c, "conform-app").await;
    let app = instantiate(&c, "conform-app", "edge-a").await;
    let op = get(&c.api("/app_lcm/v1/app_lcm_op_occs")).await;
    assert_eq!(op.0, 200, "{}", op.2);
    let op = op.2[0]["id"]
        .as_str()
        .expect("an operation occurrence")
        .to_string();
    let lcm_sub = post_json(
        &c.api("/app_lcm/v1/subscriptions"),
        &json!({"subscriptionType": "AppInstanceStateChange", "callbackUri": cb}),
    )
    .await;
    assert_eq!(lcm_sub.0, 201, "{}", lcm_sub.2);
    let pkg_sub = post_json(
        &c.api("/app_pkgm/v1/subscriptions"),
        &json!({"subsctiptionType": "AppPackageOnBoarding", "callbackUri": cb}),
    )
    .await;
    assert_eq!(pkg_sub.0, 201, "{}", pkg_sub.2);
    let ams = post_json(
        &c.api("/amsi/v1/app_mobility_services"),
        &json!({"serviceConsumerId": {"appInstanceId": app},
            "deviceInformation": [{"associateId": {"type": "UE_IPv4_ADDRESS", "value": "10.150.0.1"},
                "appMobilityServiceLevel": "APP_MOBILITY_NOT_ALLOWED"}]}),
    )
    .await;
    assert_eq!(ams.0, 201, "{}", ams.2);
    let ams_sub = post_json(
        &c.api("/amsi/v1/subscriptions"),
        &json!({"subscriptionType": "MobilityProcedureSubscription", "callbackReference": cb,
            "filterCriteria": {"appInstanceId": app}}),
    )
    .await;
    assert_eq!(ams_sub.0, 201, "{}", ams_sub.2);
    let service = post_json(
        &c.api(&format!("/mec_service_mgmt/v1/applications/{app}/services")),
        &json!({"serName": "conform", "serCategory": {"href": "http://x/c", "id": "c1", "name": "c", "version": "1"},
            "version": "1", "state": "ACTIVE", "serializer": "JSON",
            "transportInfo": {"id": "t1", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP",
                "version": "2", "endpoint": {"uris": ["http://127.0.0.1:9/api"]}, "security": {}}}),
    )
    .await;
    assert_eq!(service.0, 201, "{}", service.2);
    let ser_sub = post_json(
        &c.api(&format!("/mec_service_mgmt/v1/applications/{app}/subscriptions")),
        &json!({"subscriptionType": "SerAvailabilityNotificationSubscription", "callbackReference": cb}),
    )
    .await;
    assert_eq!(ser_sub.0, 201, "{}", ser_sub.2);
    let app_sub = post_json(
        &c.api(&format!(
            "/mec_app_support/v1/applications/{app}/subscriptions"
        )),
        &json!({"subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": cb, "appInstanceId": app}),
    )
    .await;
    assert_eq!(app_sub.0, 201, "{}", app_sub.2);
    let app_d = instance(&c, &app).await["appDId"]
        .as_str()
        .unwrap()
        .to_string();

    // Ordered so that no run deletes what a later one needs: the instance goes in the
    // AppLcm run, the package (which instances use) in the last.
    judge_all(&[
        Run {
            file: "MEC011_MecAppSupportApi.yaml",
            url: c.api("/mec_app_support/v1"),
            params: vec![
                ("*", "appInstanceId", app.clone()),
                ("*", "trafficRuleId", "ferry-steer".into()),
                ("*", "dnsRuleId", "dns1".into()),
                ("*", "subscriptionId", last_segment(&app_sub)),
            ],
        },
        Run {
            file: "MEC011_MecServiceMgmtApi.yaml",
            url: c.api("/mec_service_mgmt/v1"),
            params: vec![
                ("*", "appInstanceId", app.clone()),
                ("*", "serviceId", last_segment(&service)),
                ("*", "subscriptionId", last_segment(&ser_sub)),
            ],
        },
        Run {
            file: "MEC021_AppMobilityService.yaml",
            url: c.api("/amsi/v1"),
            params: vec![
                ("*", "appMobilityServiceId", last_segment(&ams)),
                ("*", "subscriptionId", last_segment(&ams_sub)),
            ],
        },
        Run {
            file: "MEC010-2_AppLcm.yaml",
            url: c.api("/app_lcm/v1"),
            params: vec![
                ("*", "appInstanceId", app.clone()),
                ("*", "appLcmOpOccId", op),
                ("*", "subscriptionId", last_segment(&lcm_sub)),
            ],
        },
        Run {
            file: "MEC010-2_AppPkgMgmt.yaml",
            url: c.api("/app_pkgm/v1"),
            params: vec![
                ("*", "appPkgId", pkg.clone()),
                ("*", "appDId", app_d.clone()),
                ("*", "subscriptionId", last_segment(&pkg_sub)),
            ],
        },
    ]);
}
