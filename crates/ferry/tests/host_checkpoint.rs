//! `ferry host` with real runc and CRIU: the counter's state survives checkpoint/restore, an
//! established TCP connection survives too, and a restarted daemon finds its containers.
//! Needs root, runc and CRIU >= 4.2 (`make test` installs them).

mod common;

use common::TestHost;
use serde_json::{json, Value};

const APP: &str = "10.200.0.10:8080";

fn counter(v: &Value) -> u64 {
    v["counter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter in {v}"))
}

#[test]
fn checkpoint_and_restore_keep_counter_and_ballast() {
    let host = TestHost::start();
    host.import_counter_image();
    host.run_counter("c1", "10.200.0.10", 16);

    let mut conn = host.connect(APP);
    for expected in 1..=3 {
        assert_eq!(counter(&conn.get("/").unwrap()), expected);
    }
    let before = conn.get("/verify").unwrap();
    assert_eq!(before["ok"], true, "{before}");
    drop(conn);
    let confined = confinement(&host, "c1");

    let (s, report) = host.post("/containers/c1/checkpoint", json!({}));
    assert_eq!(s, 200, "checkpoint: {report}");
    assert!(
        report["image_bytes"].as_u64().unwrap() > 16 << 20,
        "ballast pages are in the images: {report}"
    );
    let (_, c) = host.get("/containers/c1");
    assert_eq!(c["status"], "checkpointed");

    // The app is really gone: nothing answers until the restore.
    let gone = common::in_netns(&host.netns, || {
        std::net::TcpStream::connect_timeout(
            &APP.parse().unwrap(),
            std::time::Duration::from_millis(300),
        )
        .is_err()
    });
    assert!(
        gone,
        "the app still answers after a checkpoint without leave_running"
    );

    let (s, report) = host.post("/containers/c1/restore", json!({}));
    assert_eq!(s, 200, "restore: {report}");
    let mut conn = host.connect(APP);
    let after = conn.get("/").unwrap();
    assert_eq!(counter(&after), 4, "the counter continues: {after}");
    assert_eq!(
        after["started_at_ms"], before["started_at_ms"],
        "same process, not a restart"
    );
    let verify = conn.get("/verify").unwrap();
    assert_eq!(verify["ok"], true, "every ballast page came back: {verify}");
    assert_eq!(verify["checksum"], before["checksum"], "ballast unchanged");
    assert!(
        !ferry_runtime_lock(&host, "c1"),
        "CRIU's network lock was removed"
    );
    assert_eq!(
        confinement(&host, "c1"),
        confined,
        "the restored app is as confined as before"
    );
}

/// The app process's confinement as the kernel reports it (`/proc/PID/status`), checked to
/// be least privilege: no new privileges, a seccomp filter, no CAP_SYS_ADMIN (bit 21) or
/// CAP_NET_ADMIN (bit 12), nothing inheritable or ambient.
fn confinement(host: &TestHost, name: &str) -> Vec<(String, String)> {
    let (_, c) = host.get(&format!("/containers/{name}"));
    let netns = c["netns"].as_str().unwrap();
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    let pids = String::from_utf8(pids.stdout).unwrap();
    let pid = pids
        .split_whitespace()
        .next()
        .expect("the app runs in its namespace");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let fields: Vec<(String, String)> = status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| {
            [
                "NoNewPrivs",
                "Seccomp",
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
            ]
            .contains(k)
        })
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("NoNewPrivs"), Some("1"), "{fields:?}");
    assert_eq!(get("Seccomp"), Some("2"), "a seccomp filter: {fields:?}");
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        let mask = u64::from_str_radix(get(set).unwrap(), 16).unwrap();
        assert_eq!(mask & (1 << 21), 0, "{set} has CAP_SYS_ADMIN: {fields:?}");
        assert_eq!(mask & (1 << 12), 0, "{set} has CAP_NET_ADMIN: {fields:?}");
        assert_ne!(mask, 0, "{set}: {fields:?}");
    }
    for set in ["CapInh", "CapAmb"] {
        assert_eq!(
            u64::from_str_radix(get(set).unwrap(), 16).unwrap(),
            0,
            "{set}"
        );
    }
    fields
}

/// Whether the container's namespace still carries CRIU's iptables lock.
fn ferry_runtime_lock(host: &TestHost, name: &str) -> bool {
    let (_, c) = host.get(&format!("/containers/{name}"));
    let ns = c["netns"].as_str().unwrap().to_string();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "iptables", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("CRIU")
}

#[test]
fn established_tcp_connection_survives_checkpoint_restore() {
    let host = TestHost::start();
    host.import_counter_image();
    host.run_counter("tcp", "10.200.0.11", 4);
    let mut conn = host.connect("10.200.0.11:8080");
    assert_eq!(counter(&conn.get("/").unwrap()), 1);

    let (s, r) = host.post(
        "/containers/tcp/checkpoint",
        json!({"tcp_established": true}),
    );
    assert_eq!(s, 200, "checkpoint: {r}");
    let (s, r) = host.post("/containers/tcp/restore", json!({"tcp_established": true}));
    assert_eq!(s, 200, "restore: {r}");

    // The same socket, opened before the checkpoint, carries on.
    let v = conn.get("/").expect("the connection survived");
    assert_eq!(counter(&v), 2, "{v}");
}

#[test]
fn leave_running_checkpoint_keeps_serving() {
    let host = TestHost::start();
    host.import_counter_image();
    host.run_counter("snap", "10.200.0.12", 4);
    let mut conn = host.connect("10.200.0.12:8080");
    assert_eq!(counter(&conn.get("/").unwrap()), 1);
    let dir = host.state_dir().join("snapshot-1");
    let (s, r) = host.post(
        "/containers/snap/checkpoint",
        json!({"leave_running": true, "tcp_established": true, "image_dir": dir}),
    );
    assert_eq!(s, 200, "{r}");
    assert!(dir.join("inventory.img").is_file());
    assert_eq!(counter(&conn.get("/").unwrap()), 2);
    let (_, c) = host.get("/containers/snap");
    assert_eq!(c["status"], "running");
    // A second checkpoint into the same (now non-empty) directory is refused.
    let (s, r) = host.post(
        "/containers/snap/checkpoint",
        json!({"leave_running": true, "image_dir": dir}),
    );
    assert_eq!(s, 409, "{r}");
}

#[test]
fn restarted_daemon_finds_its_containers() {
    let mut host = TestHost::start();
    host.import_counter_image();
    host.run_counter("keep", "10.200.0.13", 4);
    let mut conn = host.connect("10.200.0.13:8080");
    assert_eq!(counter(&conn.get("/").unwrap()), 1);

    host.stop_daemon();
    // The app does not depend on the daemon.
    assert_eq!(counter(&conn.get("/").unwrap()), 2);
    host.spawn_daemon();

    let (s, c) = host.get("/containers/keep");
    assert_eq!(s, 200);
    assert_eq!(c["status"], "running", "{c}");
    let (_, images) = host.get("/images");
    assert_eq!(images.as_array().map(Vec::len), Some(1));
    // And it can still act on it.
    let (s, r) = host.post(
        "/containers/keep/checkpoint",
        json!({"tcp_established": true}),
    );
    assert_eq!(s, 200, "{r}");
    let (s, r) = host.post("/containers/keep/restore", json!({"tcp_established": true}));
    assert_eq!(s, 200, "{r}");
    assert_eq!(counter(&conn.get("/").unwrap()), 3);
}

/// A gzip stream inflating to a tar with one file of `size` zeros, made of one small gzip
/// member repeated (multi-member gzip), so the test never holds or compresses those bytes.
fn gzip_bomb(size: u64) -> Vec<u8> {
    use std::io::Write;
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    const CHUNK: u64 = 8 << 20;
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    let zeros = gz(&vec![0u8; CHUNK as usize]);
    let mut out = gz(h.as_bytes());
    for _ in 0..size / CHUNK {
        out.extend_from_slice(&zeros);
    }
    out
}

#[test]
fn bad_requests_get_problem_details() {
    let host = TestHost::start();
    host.import_counter_image();

    let problem = |status: u16, body: &Value| {
        assert_eq!(
            body["status"], status,
            "ProblemDetails carries the status: {body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    };
    let (s, b) = host.post(
        "/containers",
        json!({"name": "x", "image": "no-such-image"}),
    );
    assert_eq!(s, 404);
    problem(404, &b);

    let (s, _) = host.post("/containers", json!({"name": "dup", "image": "counter"}));
    assert_eq!(s, 201);
    let (s, b) = host.post("/containers", json!({"name": "dup", "image": "counter"}));
    assert_eq!(s, 409);
    problem(409, &b);

    let (s, b) = host.post("/containers", json!({"name": "../etc", "image": "counter"}));
    assert_eq!(s, 400);
    problem(400, &b);
    let (s, b) = host.post(
        "/containers",
        json!({"name": "y", "image": "counter", "bogus": 1}),
    );
    // The tolerant reader: attributes a newer client adds are ignored, not refused.
    assert_eq!(s, 201, "unknown fields are ignored: {b}");
    assert!(b["request"].get("bogus").is_none(), "{b}");
    assert_eq!(host.delete("/containers/y"), 204);
    let (s, b) = host.post(
        "/containers",
        json!({"name": "z", "image": "counter", "ip": "192.168.1.1"}),
    );
    assert_eq!(s, 400, "an address outside the app subnet: {b}");

    let (s, b) = host.post("/containers/dup/restore", json!({}));
    assert_eq!(s, 400, "no checkpoint to restore from: {b}");
    let (s, b) = host.post("/containers/dup/checkpoint", json!({}));
    assert_eq!(
        s, 409,
        "a container that does not run cannot be checkpointed: {b}"
    );
    problem(409, &b);
    let (s, b) = host.post("/containers/nope/start", json!({}));
    assert_eq!(s, 404);
    problem(404, &b);

    let r = host
        .http
        .post(format!("{}/containers", host.api))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // Not declared JSON: 415 (docs/http.md).
    let r = host
        .http
        .post(format!("{}/containers", host.api))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // A body that is no image archive at all.
    let r = host
        .http
        .post(format!("{}/images?name=junk", host.api))
        .body(vec![0x1f, 0x8b, 0x08, 0, 1, 2])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "{}", r.text().unwrap_or_default());
    let (s, _) = host.get("/images/junk");
    assert_eq!(s, 404, "a failed import leaves no image behind");

    // A gzip bomb (1 GiB of zeros in about a MiB): refused at the ratio, nothing kept.
    let r = host
        .http
        .post(format!("{}/images?name=bomb", host.api))
        .body(gzip_bomb(1 << 30))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().unwrap();
    assert_eq!(p["type"], "urn:ferry:problem:too-large", "{p}");
    let (s, _) = host.get("/images/bomb");
    assert_eq!(s, 404);
    let staging = host.state_dir().join("images/staging");
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "staging left behind"
    );
    let (s, _) = host.get("/images/no-such");
    assert_eq!(s, 404);

    // An image in use (container "dup") is not replaced by different content.
    let other = host.state_dir().join("other.tar");
    let packed = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "image",
            "pack",
            "--file",
            "/bin/true:/true:0755",
            "--entrypoint",
            "/true",
            "-o",
        ])
        .arg(&other)
        .status()
        .unwrap();
    assert!(packed.success());
    let r = host
        .http
        .post(format!("{}/images?name=counter&replace=true", host.api))
        .body(std::fs::read(&other).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "{}", r.text().unwrap_or_default());
    // The same content again is fine.
    let r = host
        .http
        .post(format!("{}/images?name=counter&replace=true", host.api))
        .body(std::fs::read(common::counter_image()).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[test]
fn deleting_everything_leaves_nothing_behind() {
    let host = TestHost::start();
    host.import_counter_image();
    host.run_counter("gone", "10.200.0.14", 4);
    let (s, r) = host.post("/containers/gone/checkpoint", json!({}));
    assert_eq!(s, 200, "{r}");
    let (_, c) = host.get("/containers/gone");
    let netns = c["netns"].as_str().unwrap().to_string();
    assert_eq!(host.delete("/containers/gone"), 204);
    assert_eq!(host.get("/containers/gone").0, 404);
    assert!(
        host.leftover_mounts().is_empty(),
        "mounts left: {:?}",
        host.leftover_mounts()
    );
    assert!(
        !std::path::Path::new("/run/netns").join(&netns).exists(),
        "netns {netns} left"
    );
    // Other tests run counters concurrently, so runc's own state is the precise check.
    let runc_root = host.state_dir().join("runc");
    let left: Vec<_> = std::fs::read_dir(&runc_root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "runc still knows containers: {left:?}");
}

/// The host API's answers as raw bytes (a higher-level client would hide header case):
/// Title-Case header names, ProblemDetails for axum's own rejections too, 405 with `Allow`,
/// 406, 415, and unknown attributes of a request ignored.
#[test]
fn host_api_answers_are_interoperable_http() {
    use mec_http::raw;
    let host = TestHost::start();
    let addr: std::net::SocketAddr = "127.0.0.1:7100".parse().unwrap();
    let ns = host.netns.clone();
    // The host speaks mutual TLS: the raw client presents the operator's certificate.
    let tls = ferry_tls::client_config(&ferry_tls::TlsFiles::in_dir(
        host.tls.as_ref().unwrap(),
        &ferry_tls::Identity::Operator,
    ))
    .unwrap();
    let send = |method: &'static str,
                path: &'static str,
                extra: Vec<(&'static str, &'static str)>,
                body: &'static str| {
        let tls = tls.clone();
        common::in_netns(&ns, move || {
            raw::request_tls(addr, tls, method, path, &extra, body.as_bytes()).expect("request")
        })
    };
    let r = send("GET", "/ferry/v1/health", vec![], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.title_case(), "{:?}", r.headers);
    assert_eq!(r.header("Content-Type"), Some("application/json"));

    let json = vec![("Content-Type", "application/json")];
    send("GET", "/ferry/v1/nothing", vec![], "").assert_problem(404);
    send("GET", "/elsewhere", vec![], "").assert_problem(404);
    let r = send("PUT", "/ferry/v1/containers", json.clone(), "{}");
    r.assert_problem(405);
    let allow = r.header("Allow").expect("Allow on 405");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    send(
        "GET",
        "/ferry/v1/containers",
        vec![("Accept", "text/html")],
        "",
    )
    .assert_problem(406);
    send(
        "POST",
        "/ferry/v1/containers",
        vec![("Content-Type", "text/plain")],
        "{}",
    )
    .assert_problem(415);
    send("POST", "/ferry/v1/containers", json.clone(), "{\"name\":").assert_problem(400);
    // Unknown attributes are ignored: the request fails on its content (no such image), not
    // on its form.
    let r = send(
        "POST",
        "/ferry/v1/containers",
        json,
        r#"{"name":"x","image":"no-such-image","ip":"10.200.0.77","futureAttribute":{"a":1}}"#,
    );
    r.assert_problem(404);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no-such-image"),
        "{:?}",
        r.json()
    );
}
