//! Mobility of `ferry ran` (traces, waypoints, `--no-trace`) and its CLI's answers to bad
//! input, with the real binary.

mod ran_support;
mod shared;

use ran_support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn trace_handover_at_one_second_fires_by_itself() {
    let ran = RanProcess::start(&topology(r#"trace = [{ at_s = 1.0, cell = "b1" }]"#), &[]);
    let cb = Callback::start().await;
    let r = post_json(
        &ran.api("/rni/v2/subscriptions"),
        &cell_change(&cb.url("/cc"), json!({})),
    )
    .await;
    assert_eq!(r.0, 201);
    assert!(cb.on("/cc").is_empty(), "nothing before 1 s");

    let got = cb.wait("/cc", 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the trace's handover did not fire");
    let after = got[0].at - ran.ready;
    eprintln!(
        "trace handover at_s = 1.0 notified {:.3} s after the RAN was ready",
        after.as_secs_f64()
    );
    assert!(
        after >= Duration::from_millis(950),
        "fired early: {after:?}"
    );
    assert!(after < Duration::from_millis(1500), "fired late: {after:?}");
    assert_eq!(got[0].body["srcEcgi"]["cellId"], "00000a1");
    assert_eq!(got[0].body["trgEcgi"][0]["cellId"], "00000b1");
    let (ok, out, err) = ferry(&["ran", "ues", "--ran", &ran.url]).await;
    assert!(ok, "{err}");
    let ue1 = out
        .lines()
        .find(|l| l.starts_with("ue1"))
        .unwrap_or_default()
        .to_string();
    assert!(ue1.contains("b1") && ue1.contains("edge-b"), "{out}");
}

#[tokio::test]
async fn no_trace_keeps_ues_still() {
    let ran = RanProcess::start(
        &topology(r#"trace = [{ at_s = 0.3, cell = "b1" }]"#),
        &["--no-trace"],
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (ok, out, err) = ferry(&["ran", "ues", "--ran", &ran.url]).await;
    assert!(ok, "{err}");
    let ue1 = out
        .lines()
        .find(|l| l.starts_with("ue1"))
        .unwrap_or_default()
        .to_string();
    assert!(ue1.contains(" a1 "), "ue1 moved without a trace: {out}");
}

#[tokio::test]
async fn waypoints_hand_over_to_the_nearest_covering_cell() {
    // Hold at a1 until 0.8 s, then drive east past a2 to b1 by 1.8 s (cells 800 m apart,
    // radius 400 m).
    let walk = r#"waypoints = [
        { at_s = 0.0, latitude = 43.7300, longitude = 7.4200 },
        { at_s = 0.8, latitude = 43.7300, longitude = 7.4200 },
        { at_s = 1.8, latitude = 43.7300, longitude = 7.4400 },
    ]"#;
    let ran = RanProcess::start(&topology(walk), &[]);
    let cb = Callback::start().await;
    let body = json!({"userTrackingSubscription": {
        "callbackReference": {"notifyURL": cb.url("/ue1")}, "address": "acr:10.150.0.1"}});
    let r = post_json(&ran.api("/location/v2/subscriptions/userTracking"), &body).await;
    assert_eq!(r.0, 201, "{}", r.2);

    let got = cb.wait("/ue1", 3, Duration::from_secs(6)).await;
    let events: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let n = &r.body["zonalPresenceNotification"];
            (
                n["userEventType"].as_str().unwrap().to_string(),
                n["currentAccessPointId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("Transferring", "a2"),
        ("Leaving", "b1"),
        ("Entering", "b1"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(events, want);

    // The UE ends at its last waypoint (1.8 s), which MEC 013 reports.
    let end = ran.ready + Duration::from_millis(2100);
    tokio::time::sleep_until(end.into()).await;
    let u = get(&ran.api("/location/v2/queries/users?address=acr:10.150.0.1")).await;
    let loc = &u.2["userList"]["user"][0];
    assert_eq!(loc["accessPointId"], "b1");
    let lon = loc["locationInfo"]["longitude"][0].as_f64().unwrap();
    assert!((lon - 7.44).abs() < 1e-6, "longitude {lon}");
}

#[tokio::test]
async fn radio_model_hands_a_walker_over_by_a3_in_preparation_then_completed() {
    // a1 and a2 are 805 m apart (same power and frequency). ue1 holds at a1 until 0.8 s,
    // walks to a2 by 2.8 s and stays. With offset 3 dB + hysteresis 1 dB, A3 enters about
    // 455 m from a1 (a2 4 dB stronger), fires a time to trigger later; the handover
    // completes the preparation time after that.
    let walk = r#"waypoints = [
        { at_s = 0.0, latitude = 43.7300, longitude = 7.4200 },
        { at_s = 0.8, latitude = 43.7300, longitude = 7.4200 },
        { at_s = 2.8, latitude = 43.7300, longitude = 7.4300 },
    ]"#;
    let radio = "[radio]\ntime_to_trigger_ms = 160\npreparation_ms = 400\nmeas_period_ms = 100\n";
    let ran = RanProcess::start(&format!("{}{radio}", topology(walk)), &[]);
    let cb = Callback::start().await;
    let r = post_json(
        &ran.api("/rni/v2/subscriptions"),
        &cell_change(&cb.url("/cc"), json!({"hoStatus": [1, 3]})),
    )
    .await;
    assert_eq!(r.0, 201, "{}", r.2);
    // The radio model's periodic reports reach MEC 012 (MeasTa: the timing advance).
    let ue1 = json!([{"type": 1, "value": "10.150.0.1"}]);
    let r = post_json(
        &ran.api("/rni/v2/subscriptions"),
        &json!({"subscriptionType": "MeasTaSubscription", "callbackReference": cb.url("/ta"),
            "filterCriteriaAssoc": {"associateId": ue1}}),
    )
    .await;
    assert_eq!(r.0, 201, "{}", r.2);

    let got = cb.wait("/cc", 2, Duration::from_secs(8)).await;
    let seen: Vec<(u64, String, String)> = got
        .iter()
        .map(|r| {
            (
                r.body["hoStatus"].as_u64().unwrap_or(0),
                r.body["srcEcgi"]["cellId"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                r.body["trgEcgi"][0]["cellId"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let want = |s: u64| (s, "00000a1".to_string(), "00000a2".to_string());
    assert_eq!(
        seen,
        vec![want(1), want(3)],
        "IN_PREPARATION then COMPLETED"
    );
    // The RAN's own time stamps: the preparation time lies between them.
    let ms = |b: &serde_json::Value| {
        b["timeStamp"]["seconds"].as_u64().unwrap() * 1000
            + b["timeStamp"]["nanoSeconds"].as_u64().unwrap() / 1_000_000
    };
    let (prep, done) = (ms(&got[0].body), ms(&got[1].body));
    eprintln!("IN_PREPARATION -> COMPLETED: {} ms", done - prep);
    assert!(
        done >= prep + 399,
        "completed {} ms after preparation",
        done - prep
    );
    // A3 waited for a2 to be clearly better: not before the walk passed the middle (1.8 s).
    let prep_after = got[0].at - ran.ready;
    assert!(
        prep_after > Duration::from_millis(1800),
        "prepared at {prep_after:?}, before the UE was nearer a2"
    );
    let (ok, out, err) = ferry(&["ran", "ues", "--ran", &ran.url]).await;
    assert!(ok, "{err}");
    let ue1 = out
        .lines()
        .find(|l| l.starts_with("ue1"))
        .unwrap_or_default();
    assert!(ue1.contains(" a2 "), "{out}");

    let ta = cb.on("/ta");
    assert!(ta.len() >= 5, "{} MeasTa notifications at 100 ms", ta.len());
    assert!(
        ta.iter().all(|n| n.body["timingAdvance"].is_u64()),
        "{:?}",
        ta[0].body
    );

    // Standing at a2 it stays (no ping-pong); a forced handover goes straight to COMPLETED.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cb.on("/cc").len(), 2, "{:?}", cb.on("/cc"));
    let (ok, _, err) = ferry(&["ran", "handover", "ue2", "b1", "--ran", &ran.url]).await;
    assert!(ok, "{err}");
    let got = cb.wait("/cc", 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].body["hoStatus"], 3, "{}", got[2].body);
    assert_eq!(got[2].body["associateId"][0]["value"], "10.150.0.2");

    // --meas-period-ms needs a [radio] table: one line with the fix.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, topology("")).unwrap();
    let (ok, _, err) = ferry(&[
        "ran",
        "--topology",
        plain.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--meas-period-ms",
        "200",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("[radio]"), "{err}");
}

#[tokio::test]
async fn cli_refuses_bad_input_with_one_line_reasons() {
    let one_line = |err: &str| {
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "not one line: {err:?}");
        lines[0].to_string()
    };

    let (ok, _, err) = ferry(&["ran", "--listen", "127.0.0.1:0"]).await;
    assert!(!ok);
    assert!(one_line(&err).contains("--topology"), "{err}");

    let (ok, _, err) = ferry(&[
        "ran",
        "--topology",
        "/nonexistent/topo.toml",
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert!(!ok);
    assert!(one_line(&err).contains("/nonexistent/topo.toml"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, topology(r#"trace = [{ at_s = 1.0, cell = "zz" }]"#)).unwrap();
    let (ok, _, err) = ferry(&[
        "ran",
        "--topology",
        bad.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert!(!ok);
    assert!(one_line(&err).contains("zz"), "{err}");

    let (ok, _, err) = ferry(&[
        "ran",
        "handover",
        "ue1",
        "b1",
        "--ran",
        "http://127.0.0.1:9",
    ])
    .await;
    assert!(!ok);
    assert!(one_line(&err).contains("cannot reach the RAN"), "{err}");

    let ran = RanProcess::start(&topology(""), &["--no-trace"]);
    let (ok, _, err) = ferry(&["ran", "handover", "ue1", "nowhere", "--ran", &ran.url]).await;
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains("400") && line.contains("cells: a1, a2, b1"),
        "{line}"
    );
    let (ok, _, err) = ferry(&["ran", "handover", "ue1", "a1", "--ran", &ran.url]).await;
    assert!(!ok);
    assert!(one_line(&err).contains("already in cell 'a1'"), "{err}");
    let (ok, _, err) = ferry(&["ran", "handover", "ue7", "a1", "--ran", &ran.url]).await;
    assert!(!ok);
    assert!(one_line(&err).contains("no UE named 'ue7'"), "{err}");

    let (ok, out, _) = ferry(&["ran", "--help"]).await;
    assert!(ok);
    assert!(
        out.contains("handover") && out.contains("serve") && out.contains("--no-trace"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_daemon_cleanly() {
    let mut ran = RanProcess::start(&topology(r#"trace = [{ at_s = 30.0, cell = "b1" }]"#), &[]);
    // An open keep-alive connection must not hold the shutdown up.
    let client = client();
    assert_eq!(
        client
            .get(ran.api("/ferry/ran/v1/cells"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let status = tokio::task::block_in_place(|| ran.terminate()).expect("did not exit within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(
        client
            .get(ran.api("/ferry/ran/v1/cells"))
            .send()
            .await
            .is_err(),
        "still serving"
    );
}
