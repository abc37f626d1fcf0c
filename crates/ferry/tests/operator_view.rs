//! The operator's view of a running system, with real parts: the dashboard in a real browser
//! (headless Chromium) while a handover relocates an app between two real hosts, and the
//! Prometheus metrics every daemon serves, scraped and parsed.
//!
//! Screenshots of the dashboard go to `target/tmp/dashboard/` (cargo's scratch directory for
//! integration tests), as the test's artefacts.

mod browser;
mod common;
mod realhost_support;
mod shared;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::Browser;
use common::*;
use ferry_metrics::exposition::{self, Scrape};
use realhost_support::*;
use serde_json::{json, Value};

/// Where the screenshots go.
fn artefacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// `GET url` with `client`: (status, body text).
fn get_text(client: &reqwest::blocking::Client, url: &str) -> (u16, String) {
    let r = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// Scrapes `base`/metrics as `client` and reads it strictly; the text is kept as an
/// artefact (`target/tmp/dashboard/metrics-NAME.txt`).
fn scrape(client: &reqwest::blocking::Client, base: &str, name: &str) -> Scrape {
    let (status, text) = get_text(client, &format!("{base}/metrics"));
    assert_eq!(status, 200, "{base}/metrics: {text}");
    let _ = std::fs::create_dir_all(artefacts());
    let _ = std::fs::write(artefacts().join(format!("metrics-{name}.txt")), &text);
    exposition::parse(&text)
        .unwrap_or_else(|e| panic!("{base}/metrics is not the text format: {e}"))
}

fn count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.value(name, labels).unwrap_or(0.0)
}

#[test]
fn the_dashboard_shows_a_relocation_live_in_a_browser_and_every_daemon_is_scraped() {
    let pair = Pair::start();
    let dir = tempfile::tempdir().unwrap();
    // On an address the hosts reach: the commit is heard and traffic switches then.
    let cp = ControlPlane::start(&pair, dir.path(), "10.99.1.1:0");
    cp.onboard(&json!({"appDId": "counter", "appName": "counter", "appProvider": "ferry",
        "appSoftVersion": "1", "appDVersion": "1",
        "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": "cold"},
        "ferryContainer": {"args": ["--port", "8080", "--ballast-mib", "16"], "memoryMib": 128, "port": 8080}}));
    let id = cp.instantiate_for_ue(&pair, "counter");
    let pki = pair.a.tls.clone().expect("TLS hosts");
    // A MEC 021 subscriber, so the notifications go somewhere.
    let inbox = recorder(&pair.gw);
    let (s, sub) = cp.post(
        "/amsi/v1/subscriptions",
        &json!({"subscriptionType": "MobilityProcedureSubscription",
            "callbackReference": inbox.url("/mobility"),
            // Without mobilityStatus the spec's default is TRIGGERED only.
            "filterCriteria": {"associateId": [{"type": "UE_IPv4_ADDRESS", "value": UE}],
                "mobilityStatus": ["INTERHOST_MOVEOUT_TRIGGERED", "INTERHOST_MOVEOUT_COMPLETED",
                    "INTERHOST_MOVEOUT_FAILED"]}}),
    );
    assert_eq!(s, 201, "{sub}");

    // Nobody gets in without a login link (or the operator's certificate).
    let stranger = {
        // Trusts the CA, presents no certificate.
        let tls = ferry_tls::client_config_server_auth(&pki.join("ca.crt")).unwrap();
        in_netns(&pair.gw, move || {
            reqwest::blocking::Client::builder()
                .use_preconfigured_tls((*tls).clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
        })
    };
    for path in [
        "/ferry/dashboard/",
        "/ferry/dashboard/events",
        "/ferry/dashboard/state",
    ] {
        assert_eq!(get_text(&stranger, &cp.api(path)).0, 401, "{path}");
    }
    let (s, link) = cp.post("/ferry/control/v1/dashboard/links", &json!({}));
    assert_eq!(s, 201, "{link}");
    let spent = cp.api(link["path"].as_str().unwrap());
    let r = stranger.get(&spent).send().unwrap();
    assert_eq!(r.status().as_u16(), 303, "a fresh link logs in");
    assert_eq!(
        get_text(&stranger, &spent).0,
        401,
        "a login link works once"
    );
    // The metrics scraper's certificate reads /metrics and nothing else.
    let scraper = client_in(&pair.gw, Some((&pki, "metrics")));
    for url in [
        cp.api("/ferry/control/v1/relocations"),
        format!("{}/containers", pair.a.api),
    ] {
        assert_eq!(get_text(&scraper, &url).0, 403, "{url}");
    }
    assert_eq!(get_text(&scraper, &cp.api("/ferry/dashboard/state")).0, 401);

    // The browser logs in with a link of its own.
    let (s, link) = cp.post("/ferry/control/v1/dashboard/links", &json!({}));
    assert_eq!(s, 201, "{link}");
    let pin = browser::spki_pin(&pki.join("control.crt"));
    let mut b = Browser::launch(Some(&pair.gw), Some(&pin));
    b.navigate(&cp.api(link["path"].as_str().unwrap()));
    b.wait_for(
        "the live stream",
        "document.getElementById('status')?.dataset.state === 'live'",
        Duration::from_secs(30),
    );
    b.wait_for(
        "both hosts on the map",
        "!!document.querySelector('#map [data-host=\"edge-a\"]') && !!document.querySelector('#map [data-host=\"edge-b\"]')",
        Duration::from_secs(10),
    );
    b.wait_for(
        "the UE in its cell",
        &format!("document.querySelector('#map [data-ue=\"{UE}\"]')?.dataset.cell === 'a1'"),
        Duration::from_secs(10),
    );
    b.wait_for(
        "the app on edge-a",
        &format!(
            "!!document.querySelector('#map [data-instance=\"{id}\"][data-on-host=\"edge-a\"]')"
        ),
        Duration::from_secs(10),
    );
    b.screenshot(&artefacts().join("1-before-handover.png"));

    // The UE moves: the page shows the relocation as it happens, then where the app is.
    let moved = Instant::now();
    cp.handover("b1");
    b.wait_for(
        "a relocation bar",
        "document.querySelectorAll('#timeline .reloc').length > 0",
        Duration::from_secs(15),
    );
    let seen_after = moved.elapsed();
    b.screenshot(&artefacts().join("2-relocation-in-flight.png"));
    let segments = b.wait_for(
        "the completed relocation's phases",
        "(() => { const r = document.querySelector('#timeline .reloc[data-phase=\"COMPLETED\"]');\
            return r ? [...r.querySelectorAll('.seg')].map(s => s.dataset.segment) : null; })()",
        Duration::from_secs(90),
    );
    let done_after = moved.elapsed();
    let segments: Vec<&str> = segments
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for phase in ["prepare", "dump", "restore", "commit"] {
        assert!(
            segments.contains(&phase),
            "no {phase} in the bar: {segments:?}"
        );
    }
    b.wait_for(
        "the app on edge-b",
        &format!(
            "!!document.querySelector('#map [data-instance=\"{id}\"][data-on-host=\"edge-b\"]')"
        ),
        Duration::from_secs(10),
    );
    b.wait_for(
        "the UE in its new cell",
        &format!("document.querySelector('#map [data-ue=\"{UE}\"]')?.dataset.cell === 'b1'"),
        Duration::from_secs(10),
    );
    let facts = b.wait_for(
        "the bytes moved and the downtime",
        "document.querySelector('#timeline .reloc[data-phase=\"COMPLETED\"] .facts')?.innerText",
        Duration::from_secs(5),
    );
    let facts = facts.as_str().unwrap_or("");
    assert!(
        facts.contains("MiB") && facts.contains("downtime"),
        "{facts}"
    );
    b.wait_for(
        "the MEC 021 notifications",
        "['INTERHOST_MOVEOUT_TRIGGERED', 'INTERHOST_MOVEOUT_COMPLETED'].every(s => \
            !!document.querySelector(`#notifications li[data-status=\"${s}\"]`))",
        Duration::from_secs(10),
    );
    b.screenshot(&artefacts().join("3-after-relocation.png"));
    eprintln!(
        "dashboard: relocation bar {seen_after:?} after the handover, completed with phases {segments:?} after {done_after:?}; screenshots in {}",
        artefacts().display()
    );
    drop(b);

    // What each daemon counted of it, read by the scraper.
    let source = scrape(
        &scraper,
        pair.a.api.trim_end_matches("/ferry/v1"),
        "source-host",
    );
    let cold_done = [("technique", "cold"), ("outcome", "completed")];
    assert_eq!(count(&source, "ferry_migrations_total", &cold_done), 1.0);
    let dump = source
        .histogram(
            "ferry_migration_phase_seconds",
            &[("technique", "cold"), ("phase", "dump")],
        )
        .expect("the dump's duration");
    assert_eq!(dump.count, 1);
    assert!(count(&source, "ferry_migration_bytes_total", &[]) > 0.0);
    assert_eq!(
        count(
            &source,
            "ferry_http_requests_total",
            &[
                ("route", "/ferry/v1/containers/{name}/migrate"),
                ("status", "202")
            ]
        ),
        1.0
    );
    let target = scrape(
        &scraper,
        pair.b.api.trim_end_matches("/ferry/v1"),
        "target-host",
    );
    assert_eq!(
        count(&target, "ferry_migrations_total", &[]),
        0.0,
        "the source counts a migration, not the target"
    );
    assert!(
        count(
            &target,
            "ferry_http_requests_total",
            &[("route", "/ferry/v1/channel/{id}/images")]
        ) >= 1.0
    );

    let control = scrape(&scraper, &cp.control.url, "control");
    assert_eq!(
        count(
            &control,
            "ferry_relocations_total",
            &[("mode", "container_migration"), ("outcome", "completed")]
        ),
        1.0
    );
    for (h, labels) in [
        ("ferry_relocation_duration_seconds", vec![]),
        (
            "ferry_relocation_downtime_seconds",
            vec![("seen_by", "platform")],
        ),
        ("ferry_handover_to_notification_seconds", vec![]),
    ] {
        let series = control
            .histogram(h, &labels)
            .unwrap_or_else(|| panic!("{h} missing"));
        assert_eq!(series.count, 1, "{h}");
    }
    assert!(
        control
            .histogram("ferry_store_seconds", &[("op", "put")])
            .is_some_and(|s| s.count > 0),
        "store latency"
    );
    assert!(
        count(
            &control,
            "ferry_http_requests_total",
            &[("route", "/ferry/dashboard/events"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        count(
            &control,
            "ferry_http_requests_total",
            &[("route", "/ferry/dashboard/"), ("status", "401")]
        ) >= 1.0
    );

    assert!(
        count(
            &control,
            "ferry_notifications_total",
            &[("result", "delivered")]
        ) >= 2.0,
        "TRIGGERED and COMPLETED to the subscriber"
    );

    let ran = scrape(&scraper, &cp.ran.url, "ran");
    assert_eq!(count(&ran, "ferry_ran_handovers_total", &[]), 1.0);
    assert!(
        count(
            &ran,
            "ferry_notifications_total",
            &[("result", "delivered")]
        ) >= 1.0,
        "the CellChange to control"
    );
    eprintln!(
        "sample: ferry_migration_phase_seconds{{technique=\"cold\",phase=\"dump\"}} sum {:.3} s; \
         control's handover-to-TRIGGERED {:.3} s",
        dump.sum,
        control
            .histogram("ferry_handover_to_notification_seconds", &[])
            .map(|h| h.sum)
            .unwrap_or(0.0)
    );
    drop(cp);
}

// ---- OpenAPI documents against the live servers ----

/// One daemon's API to check: its document's URL, and a client for each path prefix that
/// needs a particular caller (the rest: `default`).
struct LiveApi<'a> {
    name: &'a str,
    /// Scheme and authority, e.g. `https://127.0.0.1:7100`.
    origin: String,
    /// Where the document is.
    doc_path: &'a str,
    /// Every documented path starts with it.
    base: &'a str,
    default: reqwest::blocking::Client,
    by_prefix: Vec<(&'a str, reqwest::blocking::Client)>,
}

/// Whether an answer is "no route here" (the fallback's problem type) or "not this method".
fn unrouted(status: u16, body: &Value) -> bool {
    status == 405 || (status == 404 && body["type"] == mec_http::http::NO_ROUTE)
}

impl LiveApi<'_> {
    fn client(&self, path: &str) -> &reqwest::blocking::Client {
        self.by_prefix
            .iter()
            .find(|(p, _)| path.starts_with(p))
            .map(|(_, c)| c)
            .unwrap_or(&self.default)
    }

    fn send(&self, method: &str, path: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .client(path)
            .request(m, format!("{}{path}", self.origin))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Every route of the document answers (with whatever its handler says to an empty
    /// body and made-up ids); a documented path answers 405 to every method the document does
    /// not name; no path above a documented one answers unless documented. Returns how many
    /// operations were checked.
    fn check(&self) -> usize {
        let (s, doc) = self.send("GET", self.doc_path);
        assert_eq!(s, 200, "{}: {doc}", self.name);
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "{doc}"
        );
        let paths = doc["paths"].as_object().expect("paths");
        assert!(!paths.is_empty());
        let fill = |p: &str| {
            p.split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "nothing-0"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        };
        let methods = ["get", "post", "put", "patch", "delete"];
        let mut checked = 0;
        for (path, item) in paths {
            assert!(path.starts_with(self.base), "{}: {path}", self.name);
            let concrete = fill(path);
            for m in methods {
                let (status, body) = self.send(&m.to_uppercase(), &concrete);
                if item.get(m).is_some() {
                    assert!(
                        !unrouted(status, &body),
                        "{}: {} {path} is documented but not served: {status} {body}",
                        self.name,
                        m.to_uppercase()
                    );
                    checked += 1;
                } else {
                    assert_eq!(
                        status,
                        405,
                        "{}: {} {path} answers but is not documented: {body}",
                        self.name,
                        m.to_uppercase()
                    );
                }
            }
            // Every path above a documented one, within the API: documented, or no route.
            let segs: Vec<&str> = path.split('/').collect();
            for n in 1..segs.len() {
                let parent = segs[..n].join("/");
                if parent.len() <= self.base.trim_end_matches('/').len()
                    || paths.contains_key(&parent)
                {
                    continue;
                }
                let (status, body) = self.send("GET", &fill(&parent));
                assert!(
                    unrouted(status, &body),
                    "{}: GET {parent} answers {status} but is not documented: {body}",
                    self.name
                );
            }
        }
        let (status, body) = self.send("GET", &format!("{}no-such-route", self.base));
        assert!(unrouted(status, &body), "{}: {status} {body}", self.name);
        checked
    }
}

#[test]
fn the_openapi_documents_match_the_live_apis() {
    assert_eq!(
        ferry_wire::ProblemType::NoRoute.uri(),
        mec_http::http::NO_ROUTE,
        "one problem type for no route, host and MEC producers alike"
    );
    // A real host in its namespace: the operator orders it, another host uses its channel.
    let host = TestHost::start();
    let pki = host.tls.clone().expect("TLS host");
    let as_host = client_in(&host.netns, Some((&pki, "host:probe")));
    let origin = host.api.trim_end_matches("/ferry/v1").to_string();
    let host_api = LiveApi {
        name: "host",
        origin,
        doc_path: "/ferry/v1/openapi.json",
        base: "/ferry/v1/",
        default: host.http.clone(),
        by_prefix: vec![("/ferry/v1/channel", as_host)],
    };
    let host_ops = host_api.check();

    // The RAN and control on loopback with the tests' PKI, as the operator sees them.
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("topology.toml");
    std::fs::write(
        &topo,
        shared::two_zone_topology("oapi", "10.98.1.2", "10.98.2.2"),
    )
    .unwrap();
    let pki = shared::pki();
    let ran = shared::Daemon::spawn(
        std::process::Command::new(shared::BIN)
            .args(["ran", "--no-trace", "--listen", "127.0.0.1:0", "--topology"])
            .arg(&topo)
            .arg("--tls-dir")
            .arg(pki),
        "ferry ran: listening on ",
        "https://",
        Some(Duration::from_secs(30)),
    );
    let control = shared::Daemon::spawn(
        std::process::Command::new(shared::BIN)
            .args(["control", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path().join("control"))
            .arg("--topology")
            .arg(&topo)
            .args(["--ran", &ran.url])
            .args(["--host", "edge-a=https://10.98.1.2:7100"])
            .args(["--host", "edge-b=https://10.98.2.2:7100"])
            .arg("--tls-dir")
            .arg(pki),
        "ferry control: listening on ",
        "https://",
        Some(Duration::from_secs(30)),
    );
    let operator = blocking_client(&ferry_tls::Identity::Operator);
    let ran_ops = LiveApi {
        name: "ran",
        origin: ran.url.clone(),
        doc_path: "/ferry/ran/v1/openapi.json",
        base: "/ferry/ran/v1/",
        default: operator.clone(),
        by_prefix: vec![],
    }
    .check();
    let control_ops = LiveApi {
        name: "control",
        origin: control.url.clone(),
        doc_path: "/ferry/control/v1/openapi.json",
        base: "/ferry/control/v1/",
        default: operator,
        by_prefix: vec![],
    }
    .check();
    eprintln!(
        "openapi: {host_ops} operations of /ferry/v1, {control_ops} of /ferry/control/v1, {ran_ops} of /ferry/ran/v1 answer as documented"
    );
}

/// A blocking client presenting `identity`'s certificate of the tests' PKI.
fn blocking_client(identity: &ferry_tls::Identity) -> reqwest::blocking::Client {
    let tls = ferry_tls::client_config(&shared::tls_files(identity)).expect("client TLS");
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}
