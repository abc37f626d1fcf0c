//! The library API another crate (the testbed) embeds: `Ran::new`, `handover`, `subscribe`,
//! `start_trace` and `serve` with a shutdown future, in one process over real TCP.

use ferry_ran::{Ran, RanError};
use std::time::{Duration, Instant};

const TOPO: &str = r#"
name = "embed"
[[hosts]]
name = "h1"
address = "10.100.0.11"
[[hosts]]
name = "h2"
address = "10.100.0.12"
[[cells]]
name = "c1"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000001" }
position = { latitude = 43.73, longitude = 7.42 }
host = "h1"
[[cells]]
name = "c2"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000002" }
position = { latitude = 43.73, longitude = 7.44 }
host = "h2"
[[ues]]
name = "ue1"
address = "10.150.0.1"
cell = "c1"
trace = [{ at_s = 0.3, cell = "c2" }, { at_s = 0.6, cell = "c1" }]
"#;

fn ran() -> Ran {
    Ran::new(&ferry_ran::topology::Topology::parse(TOPO).expect("topology")).expect("ran")
}

#[tokio::test]
async fn forced_handovers_are_published_and_checked() {
    let ran = ran();
    let mut events = ran.subscribe();
    let h = ran.handover("ue1", "c2").expect("handover");
    assert_eq!((h.from_cell.as_str(), h.to_cell.as_str()), ("c1", "c2"));
    assert_eq!(h.ue_address.to_string(), "10.150.0.1");
    let e = events.try_recv().expect("published");
    assert_eq!((e.ue.as_str(), e.to_cell.as_str()), ("ue1", "c2"));
    assert!(matches!(
        ran.handover("ue1", "c2"),
        Err(RanError::SameCell { .. })
    ));
    assert!(matches!(
        ran.handover("ue9", "c1"),
        Err(RanError::UnknownUe(_))
    ));
    assert!(matches!(
        ran.handover("ue1", "c9"),
        Err(RanError::UnknownCell(_))
    ));
    assert!(
        events.try_recv().is_err(),
        "refused handovers publish nothing"
    );
}

#[tokio::test]
async fn trace_drives_handovers_in_time() {
    let ran = ran();
    let mut events = ran.subscribe();
    let t0 = Instant::now();
    let trace = ran.start_trace();
    let first = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("in time")
        .expect("event");
    let t1 = t0.elapsed();
    let second = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("in time")
        .expect("event");
    let t2 = t0.elapsed();
    assert_eq!(first.to_cell, "c2");
    assert_eq!(second.to_cell, "c1");
    assert!(
        t1 >= Duration::from_millis(300) && t1 < Duration::from_millis(500),
        "{t1:?}"
    );
    assert!(
        t2 >= Duration::from_millis(600) && t2 < Duration::from_millis(800),
        "{t2:?}"
    );
    // The driver ends by itself after the last step.
    tokio::time::timeout(Duration::from_secs(2), trace)
        .await
        .expect("trace ends")
        .expect("no panic");
}

#[tokio::test]
async fn serve_answers_and_stops_on_shutdown() {
    let ran = ran();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ferry_ran::serve(ran.clone(), listener, async {
        let _ = stopped.await;
    }));
    let zones: serde_json::Value = reqwest::get(format!("http://{addr}/location/v2/queries/zones"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(zones["zoneList"]["zone"][1]["zoneId"], "h2");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
}
