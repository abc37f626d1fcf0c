//! MEC 012 CellChange delivery under load, between real servers over mutual TLS (the RAN as
//! `ran`, the subscriber as `control`, one PKI of the test's own): the notifications of each
//! UE arrive in order and complete while several are in flight; a burst larger than the
//! queue merges per UE and still tells every subscriber where every UE is and how many hops
//! it made; a subscriber down for 10 s gets the coalesced state when it returns.
//!
//! The per-UE check, `chain`: each notification leaves the cell the previous one entered,
//! the hops (`ferryMergedHandovers`, 1 when absent) add up to the handovers made, and the
//! last one enters the UE's cell. Nothing here depends on how fast anything is.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_ran::axum;
use ferry_ran::{Options, Ran};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CELLS: [&str; 3] = ["c1", "c2", "c3"];

/// Three cells of one zone, `n` UEs (ue0.., 10.150.0.1..) in c1.
fn topology(n: usize) -> String {
    let mut t =
        String::from("name = \"delivery\"\n[[hosts]]\nname = \"h1\"\naddress = \"10.100.0.11\"\n");
    for (i, c) in CELLS.iter().enumerate() {
        t += &format!(
            "[[cells]]\nname = \"{c}\"\necgi = {{ mcc = \"001\", mnc = \"01\", cell_id = \"000000{i}\" }}\nposition = {{ latitude = 43.73, longitude = 7.4{i} }}\nhost = \"h1\"\n"
        );
    }
    for u in 0..n {
        t += &format!(
            "[[ues]]\nname = \"ue{u}\"\naddress = \"10.150.0.{}\"\ncell = \"c1\"\n",
            u + 1
        );
    }
    t
}

fn cell_id(cell: &str) -> String {
    format!("000000{}", CELLS.iter().position(|c| *c == cell).unwrap())
}

/// The test's PKI: a CA, `ran`, `control` and `operator` for 127.0.0.1.
struct Pki {
    _dir: tempfile::TempDir,
    ran: ferry_tls::TlsFiles,
    control: ferry_tls::TlsFiles,
    operator: ferry_tls::TlsFiles,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let p =
        ferry_tls::Pki::init(dir.path(), "delivery test", ferry_tls::Validity::days(1)).unwrap();
    let local = ferry_tls::San::Ip(std::net::Ipv4Addr::LOCALHOST.into());
    for id in [
        ferry_tls::Identity::Ran,
        ferry_tls::Identity::Control,
        ferry_tls::Identity::Operator,
    ] {
        p.issue(
            &id,
            std::slice::from_ref(&local),
            ferry_tls::Validity::days(1),
        )
        .unwrap();
    }
    Pki {
        ran: ferry_tls::TlsFiles::in_dir(dir.path(), &ferry_tls::Identity::Ran),
        control: ferry_tls::TlsFiles::in_dir(dir.path(), &ferry_tls::Identity::Control),
        operator: ferry_tls::TlsFiles::in_dir(dir.path(), &ferry_tls::Identity::Operator),
        _dir: dir,
    }
}

/// What the subscriber got, in the order the requests reached it, and how many requests it
/// was serving at once at most.
#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Value>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    /// Each answer waits (n % 4) x this, so answers finish out of order.
    delay_ms: u64,
}

async fn callback(State(inbox): State<Inbox>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut got = inbox.got.lock().unwrap();
        got.push(v);
        got.len() as u64
    };
    let now = inbox.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inbox.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis((n % 4) * inbox.delay_ms)).await;
    inbox.in_flight.fetch_sub(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

/// A subscriber's callback server as control serves it: mutual TLS with `control`'s
/// certificate. Stopped (its port closed) on `stop` or drop.
struct Subscriber {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(pki: &Pki, inbox: &Inbox, addr: SocketAddr) -> Subscriber {
        // The port is reused when the subscriber comes back: bind with SO_REUSEADDR.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/cc", axum::routing::post(callback))
            .with_state(inbox.clone());
        let config = ferry_tls::server_config(&pki.control).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = mec_http::serve::serve_on(
                mec_http::serve::Transport::MutualTls(listener, config),
                app,
                async {
                    let _ = rx.await;
                },
            )
            .await;
        });
        Subscriber {
            addr,
            stop: Some(tx),
            task,
        }
    }

    /// Closes the port and waits until the server has stopped.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = (&mut self.task).await;
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The RAN served over TLS on 127.0.0.1:0, with its queue length.
struct RanServer {
    url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// As control: MEC 012.
    client: reqwest::Client,
    /// As the operator: the emulation's own API.
    operator: reqwest::Client,
}

fn client_as(files: &ferry_tls::TlsFiles) -> reqwest::Client {
    let tls = ferry_tls::client_config(files).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .unwrap()
}

impl Drop for RanServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_ran(pki: &Pki, ues: usize, queue: usize) -> RanServer {
    let topo = ferry_ran::topology::Topology::parse(&topology(ues)).unwrap();
    let ran = Ran::with_options(
        &topo,
        Some(&pki.ran),
        Options {
            notify_queue: queue,
            ..Options::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(ferry_ran::serve(ran, listener, std::future::pending()));
    RanServer {
        url,
        task,
        client: client_as(&pki.control),
        operator: client_as(&pki.operator),
    }
}

impl RanServer {
    async fn subscribe(&self, callback: SocketAddr) {
        let r = self
            .client
            .post(format!("{}/rni/v2/subscriptions", self.url))
            .json(&json!({
                "subscriptionType": "CellChangeSubscription",
                "callbackReference": format!("https://{callback}/cc"),
                "filterCriteriaAssocHo": {"hoStatus": [3]},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// One burst: every UE of `ues` one hop on (c1 -> c2 -> c3 -> c1 ...), through the
    /// admin API. Returns each UE's cell after it.
    async fn hop_all(&self, ues: usize, cells: &mut [usize]) {
        let moves: Vec<Value> = (0..ues)
            .map(|u| {
                cells[u] = (cells[u] + 1) % CELLS.len();
                json!({"ue": format!("ue{u}"), "cell": CELLS[cells[u]]})
            })
            .collect();
        let r = self
            .operator
            .post(format!("{}/ferry/ran/v1/handovers", self.url))
            .json(&json!({ "handovers": moves }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["done"], ues, "{v}");
    }

    async fn stats(&self) -> Value {
        self.operator
            .get(format!("{}/ferry/ran/v1/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The notifications of each UE (by its address), in arrival order.
fn by_ue(got: &[Value]) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for n in got {
        let ue = n["associateId"][0]["value"].as_str().unwrap().to_string();
        m.entry(ue).or_default().push(n.clone());
    }
    m
}

fn hops(n: &Value) -> u64 {
    n["ferryMergedHandovers"].as_u64().unwrap_or(1)
}

/// Asserts one UE's notifications form an unbroken chain from `from` to `to` standing for
/// `handovers` hops in all.
#[track_caller]
fn chain(ue: &str, got: &[Value], from: &str, to: &str, handovers: u64) {
    let mut at = cell_id(from);
    for n in got {
        assert_eq!(
            n["srcEcgi"]["cellId"].as_str().unwrap(),
            at,
            "{ue}: out of order or a hop missing in {got:#?}"
        );
        at = n["trgEcgi"][0]["cellId"].as_str().unwrap().to_string();
    }
    assert_eq!(at, cell_id(to), "{ue} ends in {to}");
    assert_eq!(
        got.iter().map(hops).sum::<u64>(),
        handovers,
        "{ue}: every handover accounted for"
    );
}

/// Waits until every UE's last notification enters its cell (or 60 s).
async fn wait_for_final(inbox: &Inbox, ues: usize, cells: &[usize]) {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let m = by_ue(&inbox.got.lock().unwrap());
        let done = (0..ues).all(|u| {
            m.get(&format!("10.150.0.{}", u + 1))
                .and_then(|v| v.last())
                .is_some_and(|n| n["trgEcgi"][0]["cellId"] == cell_id(CELLS[cells[u]]).as_str())
        });
        if done {
            // Anything still on the wire lands now.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_of_each_ue_arrive_in_order_while_several_are_in_flight() {
    let pki = pki();
    let (ues, rounds) = (20, 10);
    let ran = start_ran(&pki, ues, 4096).await;
    let inbox = Inbox {
        delay_ms: 3,
        ..Inbox::default()
    };
    let sub = Subscriber::start(&pki, &inbox, "127.0.0.1:0".parse().unwrap()).await;
    ran.subscribe(sub.addr).await;
    let mut cells = vec![0; ues];
    for _ in 0..rounds {
        ran.hop_all(ues, &mut cells).await;
    }
    wait_for_final(&inbox, ues, &cells).await;
    let m = by_ue(&inbox.got.lock().unwrap());
    for u in 0..ues {
        let got = &m[&format!("10.150.0.{}", u + 1)];
        assert_eq!(got.len(), rounds, "nothing merged with a queue this long");
        chain(&format!("ue{u}"), got, "c1", CELLS[cells[u]], rounds as u64);
    }
    assert!(
        inbox.max_in_flight.load(Ordering::SeqCst) > 1,
        "several notifications in flight to one subscriber"
    );
    let s = ran.stats().await;
    assert_eq!(s["deliveries"][0]["delivered"], ues * rounds);
    assert_eq!(s["deliveries"][0]["lost"], 0);
    assert_eq!(s["handovers"], ues * rounds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_queue_merges_per_ue_and_loses_nothing() {
    let pki = pki();
    let (ues, rounds, queue) = (50, 20, 8);
    let ran = start_ran(&pki, ues, queue).await;
    let inbox = Inbox {
        delay_ms: 2,
        ..Inbox::default()
    };
    let sub = Subscriber::start(&pki, &inbox, "127.0.0.1:0".parse().unwrap()).await;
    ran.subscribe(sub.addr).await;
    let mut cells = vec![0; ues];
    // 1,000 handovers at once against a queue of 8.
    for _ in 0..rounds {
        ran.hop_all(ues, &mut cells).await;
    }
    wait_for_final(&inbox, ues, &cells).await;
    let got = inbox.got.lock().unwrap().clone();
    let m = by_ue(&got);
    for u in 0..ues {
        chain(
            &format!("ue{u}"),
            &m[&format!("10.150.0.{}", u + 1)],
            "c1",
            CELLS[cells[u]],
            rounds as u64,
        );
    }
    assert!(
        got.len() < ues * rounds,
        "the burst was merged: {} notifications for {} handovers",
        got.len(),
        ues * rounds
    );
    let s = ran.stats().await;
    let d = &s["deliveries"][0];
    assert_eq!(d["lost"], 0, "{s}");
    assert_eq!(
        d["merged"].as_u64().unwrap() + d["delivered"].as_u64().unwrap(),
        (ues * rounds) as u64,
        "each handover delivered or merged into one delivered: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_down_for_10_s_gets_the_coalesced_state_when_it_returns() {
    let pki = pki();
    let (ues, queue) = (10, 4);
    let ran = start_ran(&pki, ues, queue).await;
    let inbox = Inbox::default();
    let sub = Subscriber::start(&pki, &inbox, "127.0.0.1:0".parse().unwrap()).await;
    let addr = sub.addr;
    ran.subscribe(addr).await;
    let mut cells = vec![0; ues];
    ran.hop_all(ues, &mut cells).await;
    wait_for_final(&inbox, ues, &cells).await;
    let before = inbox.got.lock().unwrap().len();
    assert_eq!(before, ues);
    let cells_before = cells.clone();

    // Down for 10 s, while every UE hops 7 times.
    sub.stop().await;
    let down_at = Instant::now();
    let mut paused = false;
    for _ in 0..7 {
        ran.hop_all(ues, &mut cells).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        paused |= ran.stats().await["deliveries"][0]["down"] == true;
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed())).await;
    assert!(paused, "the RAN saw the subscriber down and paused");
    assert_eq!(
        inbox.got.lock().unwrap().len(),
        before,
        "nothing while down"
    );

    let _back = Subscriber::start(&pki, &inbox, addr).await;
    wait_for_final(&inbox, ues, &cells).await;
    let got = inbox.got.lock().unwrap()[before..].to_vec();
    let m = by_ue(&got);
    for u in 0..ues {
        let mine = &m[&format!("10.150.0.{}", u + 1)];
        chain(
            &format!("ue{u}"),
            mine,
            CELLS[cells_before[u]],
            CELLS[cells[u]],
            7,
        );
        assert!(
            mine.len() < 7,
            "ue{u}: caught up with the coalesced state, not hop by hop: {mine:#?}"
        );
    }
    let s = ran.stats().await;
    assert_eq!(s["deliveries"][0]["lost"], 0, "{s}");
    assert_eq!(s["deliveries"][0]["down"], false, "{s}");
}
