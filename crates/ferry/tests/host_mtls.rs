//! The host API over mutual TLS, with real daemons, real certificates of one operator PKI and
//! real migrations: who may order a host, who may talk on the migration channel, and that a
//! cold and a post-copy migration still move the counter with its state and TCP connection.

mod common;

use std::path::Path;

use common::{client_in, Pair};
use serde_json::{json, Value};

const IP: &str = "10.200.0.40";
const APP: &str = "10.200.0.40:8080";
const TARGET: &str = "https://10.99.2.2:7100";

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ferry_tls::Pki::init(dir.path(), "test", ferry_tls::Validity::days(1)).unwrap();
    dir
}

/// A request to host a's API as `identity` (or with a certificate of another CA): the
/// status, or `None` when no HTTP answer came (the handshake was refused).
fn call_as(
    pair: &Pair,
    tls: (&Path, &str),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let client = client_in(&pair.a.netns, Some(tls));
    let mut req = client.request(method, format!("{}{path}", pair.a.api));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().unwrap_or(Value::Null)))
}

#[test]
fn identities_decide_who_may_order_a_host() {
    let dir = pki();
    let pair = Pair::start_secure(dir.path());
    let d = dir.path();
    // The operator (the harness' client) and control may list and create.
    let (s, _) = pair.a.get("/containers");
    assert_eq!(s, 200);
    let (s, _) = call_as(
        &pair,
        (d, "control"),
        reqwest::Method::GET,
        "/containers",
        None,
    )
    .unwrap();
    assert_eq!(s, 200);

    // Another host may not order this one, nor may the RAN.
    let create = json!({"name": "x", "image": "counter", "ip": "10.200.0.41"});
    for who in ["host:mec3", "ran"] {
        let (s, p) = call_as(
            &pair,
            (d, who),
            reqwest::Method::POST,
            "/containers",
            Some(create.clone()),
        )
        .expect("an HTTP answer");
        assert_eq!(s, 403, "{who}: {p}");
        assert_eq!(p["type"], "urn:ferry:problem:forbidden", "{p}");
        assert!(p["detail"].as_str().unwrap().contains(who), "{p}");
    }
    // Nor may control speak on the migration channel.
    let (s, _) = call_as(
        &pair,
        (d, "control"),
        reqwest::Method::POST,
        "/channel",
        Some(json!({})),
    )
    .unwrap();
    assert_eq!(s, 403);
    assert_eq!(
        pair.a.get("/containers").1,
        json!([]),
        "nothing was created"
    );

    // A certificate of another CA gets no HTTP answer at all.
    let other = pki();
    assert!(call_as(
        &pair,
        (other.path(), "operator"),
        reqwest::Method::GET,
        "/health",
        None
    )
    .is_none());
    // Neither does a client without a certificate.
    let plain = client_in(&pair.a.netns, None);
    assert!(plain.get(format!("{}/health", pair.a.api)).send().is_err());
    assert!(plain
        .get(format!("{}/health", pair.a.api.replace("https", "http")))
        .send()
        .map(|r| !r.status().is_success())
        .unwrap_or(true));
}

#[test]
fn a_migration_offer_from_a_host_in_another_hosts_name_is_refused() {
    let dir = pki();
    let pair = Pair::start_secure(dir.path());
    let offer = json!({"protocol_version": ferry_wire::channel::PROTOCOL_VERSION,
        "id": "m-0123456789abcdef", "source": pair.b.netns, "technique": "cold", "lease_ms": 30000, "pages": "tls", "engine": "runc",
        "container": {"name": "evil", "image": "counter", "ip": "10.200.0.42"}});
    let client = client_in(&pair.a.netns, Some((dir.path(), "host:mec3")));
    let r = client
        .post(format!("{}/channel", pair.a.api))
        .bearer_auth("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        .json(&offer)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let p: Value = r.json().unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("in the name of"),
        "{p}"
    );
    assert_eq!(
        pair.a.get("/containers").1,
        json!([]),
        "no parked copy was made"
    );
    assert_eq!(
        pair.a.get("/migrations").1,
        json!([]),
        "no migration was recorded"
    );
}

fn counter(v: &Value) -> u64 {
    v["counter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter in {v}"))
}

#[test]
fn cold_and_post_copy_migrations_over_mutual_tls_keep_state_and_connection() {
    let dir = pki();
    let pair = Pair::start_secure(dir.path());
    pair.a.import_counter_image();
    pair.b.import_counter_image();
    pair.a.run_counter("app", IP, 16);
    pair.route(IP, 1);
    let mut conn = pair.connect(APP);
    assert_eq!(counter(&conn.get("/").unwrap()), 1);
    let before = conn.get("/verify").unwrap();

    let mut expected = 1;
    for (technique, from, to, to_host) in [
        ("cold", &pair.a, TARGET, 2),
        ("post-copy", &pair.b, "https://10.99.1.2:7100", 1),
    ] {
        let id = from
            .start_migration("app", json!({"target": to, "technique": technique}))
            .unwrap_or_else(|(s, v)| panic!("{technique} refused ({s}): {v}"));
        let v = from.wait_migration(&id, std::time::Duration::from_secs(120), false);
        assert_eq!(v["state"], "completed", "{technique}: {v}");
        pair.route(IP, to_host);
        expected += 1;
        let got = conn.get("/").expect("the TCP connection survived");
        assert_eq!(counter(&got), expected, "{technique}: {got}");
        let verify = conn.get("/verify").unwrap();
        assert_eq!(verify["ok"], true, "{technique}: {verify}");
        assert_eq!(verify["started_at_ms"], before["started_at_ms"]);
        eprintln!("{technique} over mutual TLS: {}", v["report"]["timings"]);
    }
}

#[test]
fn a_host_refuses_a_network_address_without_tls() {
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "host",
            "--name",
            "lab",
            "--listen",
            "192.0.2.1:7100",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve 192.0.2.1:7100 without TLS"),
        "{err}"
    );
    assert!(
        err.contains("--tls-dir") && err.contains("--insecure"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "nothing was set up"
    );
}

/// What a process in an app's container tries, each result as `name=exit status` in
/// `/probe.txt` (busybox's applets; the container's stdio is /dev/null).
const ESCAPE_PROBE: &str = r#"r=/probe.txt
unshare -n true; echo "new_netns=$?" >> $r
unshare -m true; echo "new_mntns=$?" >> $r
nsenter --net=/proc/1/ns/net true; echo "setns=$?" >> $r
mount -t proc proc /mnt; echo "mount=$?" >> $r
ls /run/netns > /dev/null 2>&1; echo "host_netns_dir=$?" >> $r
nc -w 2 10.99.1.2 7100 < /dev/null; echo "own_host_api=$?" >> $r
nc -w 2 10.200.0.1 7100 < /dev/null; echo "gateway_api=$?" >> $r
echo done >> $r
exec sleep 3600"#;

/// Issue 10: a process in an app's container (the platform's confinement: no SYS_ADMIN,
/// seccomp, no new privileges) cannot make or enter namespaces, mount, see the host's named
/// namespaces, or open a connection to the host it runs on (its API included).
#[test]
fn a_process_in_a_container_cannot_reach_its_host_or_other_namespaces() {
    let dir = pki();
    let pair = Pair::start_secure(dir.path());
    let image = pair.a.state_dir().join("probe.oci.tar");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["image", "pack", "--file", "/bin/busybox:/bin/busybox:0755"])
        .args([
            "--entrypoint",
            "/bin/busybox",
            "--reference",
            "probe:latest",
            "-o",
        ])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = pair
        .a
        .http
        .post(format!("{}/images?name=probe", pair.a.api))
        .body(std::fs::read(&image).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, c) = pair.a.post(
        "/containers",
        json!({"name": "probe", "image": "probe", "ip": "10.200.0.45",
               "args": ["sh", "-c", ESCAPE_PROBE]}),
    );
    assert_eq!(s, 201, "{c}");
    assert_eq!(pair.a.post("/containers/probe/start", json!({})).0, 200);
    let result = pair.a.state_dir().join("containers/probe/upper/probe.txt");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let t = std::fs::read_to_string(&result).unwrap_or_default();
        if t.contains("done") {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probe result: {t:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    eprintln!("escape attempts from the container (non-zero: refused):\n{text}");
    for attempt in [
        "new_netns",
        "new_mntns",
        "setns",
        "mount",
        "host_netns_dir",
        "own_host_api",
        "gateway_api",
    ] {
        let status = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{attempt}=")))
            .unwrap_or_else(|| panic!("{attempt} did not run:\n{text}"));
        assert_ne!(
            status, "0",
            "{attempt} succeeded from inside the container:\n{text}"
        );
    }
    // The host's own guard, not a missing route: the host itself still reaches the app.
    assert_eq!(pair.a.get("/containers/probe").1["status"], "running");
}
