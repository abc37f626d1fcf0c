//! The form of the RAN's answers, read as raw bytes from the real server over TCP (a
//! higher-level client would hide header case): Title-Case header names, ProblemDetails on
//! every error (axum's own rejections too), the tolerant reader, `Location` on 201, `Allow`
//! on 405, 406 and 415.

use ferry_ran::Ran;
use mec_http::raw::{self, RawResponse};
use std::net::SocketAddr;

const TOPO: &str = r#"
name = "form"
[[hosts]]
name = "h1"
address = "10.100.0.11"
[[cells]]
name = "c1"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000001" }
position = { latitude = 43.73, longitude = 7.42 }
host = "h1"
[[cells]]
name = "c2"
ecgi = { mcc = "001", mnc = "01", cell_id = "0000002" }
position = { latitude = 43.73, longitude = 7.44 }
host = "h1"
[[ues]]
name = "ue1"
address = "10.150.0.1"
cell = "c1"
"#;

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        let ran = Ran::new(&ferry_ran::topology::Topology::parse(TOPO).unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(ferry_ran::serve(ran, listener, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> RawResponse {
        raw::send(self.addr, method, path, extra, body).await
    }

    async fn json(&self, method: &str, path: &str, body: &str) -> RawResponse {
        self.req(method, path, &[("Content-Type", "application/json")], body)
            .await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn assert_title_case(r: &RawResponse) {
    assert!(r.title_case(), "{:?}", r.headers);
}

fn assert_problem(r: &RawResponse, status: u16) {
    r.assert_problem(status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_interoperable_http() {
    let s = Server::start().await;

    let r = s.req("GET", "/location/v2/queries/users", &[], "").await;
    assert_eq!(r.status, 200);
    assert_title_case(&r);
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| n == "Content-Type" && v == "application/json"));

    // Tolerant reader: attributes this version does not know are ignored; the 201 names the
    // new resource in Location, the same URL as its self link.
    let sub = r#"{"subscriptionType":"CellChangeSubscription",
        "callbackReference":"http://127.0.0.1:9/cb","requestTestNotification":true,
        "websockNotifConfig":{"requestWebsocketUri":false},"someFutureAttribute":{"x":[1,2]},
        "filterCriteriaAssocHo":{"hoStatus":[3],"ecgi":[],"futureFilter":1}}"#;
    let r = s.json("POST", "/rni/v2/subscriptions", sub).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_title_case(&r);
    let location = r.header("Location").expect("Location on 201").to_string();
    assert_eq!(r.json()["_links"]["self"]["href"], location.as_str());
    assert!(r.json().get("someFutureAttribute").is_none());
    let path = location.trim_start_matches(&format!("http://{}", s.addr));
    assert_eq!(s.req("GET", path, &[], "").await.status, 200);

    let r = s
        .json(
            "POST",
            "/location/v2/subscriptions/zonalTraffic",
            r#"{"zonalTrafficSubscription":
        {"callbackReference":{"notifyURL":"http://127.0.0.1:9/z"},"zoneId":"h1","extra":true}}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.header("Location").is_some());

    // Malformed JSON, a missing required attribute, a wrong type: 400.
    assert_problem(
        &s.json("POST", "/rni/v2/subscriptions", "{\"subscriptionType\":")
            .await,
        400,
    );
    assert_problem(
        &s.json("POST", "/rni/v2/subscriptions", r#"{"subscriptionType":"CellChangeSubscription","callbackReference":"http://127.0.0.1:9/cb"}"#).await,
        400,
    );
    assert_problem(
        &s.json("POST", "/rni/v2/subscriptions", r#"{"subscriptionType":"CellChangeSubscription","callbackReference":"http://127.0.0.1:9/cb","filterCriteriaAssocHo":{"hoStatus":"x"}}"#).await,
        400,
    );
    // A body that is not declared JSON: 415.
    assert_problem(
        &s.req(
            "POST",
            "/rni/v2/subscriptions",
            &[("Content-Type", "text/plain")],
            sub,
        )
        .await,
        415,
    );
    // An answer the client does not accept: 406.
    assert_problem(
        &s.req(
            "GET",
            "/location/v2/queries/users",
            &[("Accept", "text/html")],
            "",
        )
        .await,
        406,
    );
    // Unknown path: 404; a method the resource does not allow: 405 listing the allowed ones.
    assert_problem(&s.req("GET", "/rni/v2/nothing/here", &[], "").await, 404);
    let r = s.req("DELETE", "/rni/v2/queries/rab_info", &[], "").await;
    assert_problem(&r, 405);
    let allow = r.header("Allow").expect("Allow on 405");
    assert!(
        allow.contains("GET") && !allow.contains("DELETE"),
        "{allow}"
    );
    let r = s.json("PATCH", "/rni/v2/subscriptions", "{}").await;
    assert_problem(&r, 405);
    let allow = r.header("Allow").expect("Allow on 405");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    // ferry's own admin API follows the same rules.
    let r = s
        .json(
            "POST",
            "/ferry/ran/v1/ues/ue1/handover",
            r#"{"cell":"c2","reason":"test"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_title_case(&r);
    assert_problem(
        &s.json("POST", "/ferry/ran/v1/ues/ue1/handover", "[").await,
        400,
    );

    s.stop().await;
}
