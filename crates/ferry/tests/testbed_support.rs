//! Helpers shared by the testbed tests (included with `#[path]`; as a test target of its own
//! it has no tests). Each test gets its own topology name and addresses, so tests run in
//! parallel without colliding, and a `Testbed` guard that runs `ferry testbed down` on drop,
//! also when the test fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// `ferry ARGS`, with CRIU pointed at the repository's private build (the `ferry host`
/// daemons need it and look next to the binary, which is elsewhere under a custom target dir).
pub fn ferry(args: &[&str]) -> Output {
    let mut cmd = Command::new(FERRY);
    cmd.args(args);
    let criu = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.deps/criu/sbin/criu");
    if std::env::var_os("FERRY_CRIU").is_none() && criu.is_file() {
        cmd.env("FERRY_CRIU", criu);
    }
    cmd.output().expect("run ferry")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Addresses of test topology number `k` (distinct per test).
pub struct Addrs {
    pub hosts: [String; 3],
    pub ue: String,
    pub app_subnet_prefix: String,
}

pub fn addrs(k: u8) -> Addrs {
    Addrs {
        hosts: [1, 2, 3].map(|i| format!("10.{}.0.1{i}", 110 + k)),
        ue: format!("10.{}.0.1", 130 + k),
        app_subnet_prefix: format!("10.{}", 150 + k),
    }
}

/// A three-host, three-cell, one-UE topology like examples/three-hosts.toml, with no trace
/// (tests hand over explicitly) and addresses of number `k`.
pub fn topology(name: &str, k: u8) -> String {
    let a = addrs(k);
    let mut t = format!(
        "name = \"{name}\"\napp_subnet = \"{}.0.0/16\"\nlink_subnet = \"10.{}.0.0/16\"\nmgmt_subnet = \"10.199.{k}.0/30\"\n",
        a.app_subnet_prefix,
        170 + k
    );
    for (i, h) in a.hosts.iter().enumerate() {
        t += &format!("[[hosts]]\nname = \"mec{}\"\naddress = \"{h}\"\n", i + 1);
    }
    for i in 1..=3 {
        t += &format!(
            "[[cells]]\nname = \"cell{i}\"\necgi = {{ mcc = \"001\", mnc = \"01\", cell_id = \"000000{i}\" }}\nposition = {{ latitude = 43.7{i}, longitude = 7.4{i} }}\nhost = \"mec{i}\"\n"
        );
    }
    t += "[[links]]\na = \"mec1\"\nb = \"mec2\"\nrate_mbit = 1000.0\ndelay_ms = 5.0\n";
    t += "[[links]]\na = \"mec2\"\nb = \"mec3\"\nrate_mbit = 1000.0\ndelay_ms = 5.0\n";
    t += "[[links]]\na = \"mec1\"\nb = \"mec3\"\nrate_mbit = 100.0\ndelay_ms = 20.0\n";
    for i in 1..=3 {
        t += &format!("[[links]]\na = \"cell{i}\"\nb = \"mec{i}\"\ndelay_ms = 1.0\n");
    }
    t += &format!(
        "[[ues]]\nname = \"ue1\"\naddress = \"{}\"\ncell = \"cell1\"\n",
        a.ue
    );
    t
}

/// A running testbed; `down` on drop.
pub struct Testbed {
    pub name: String,
    pub file: tempfile::NamedTempFile,
}

impl Testbed {
    /// Writes the topology and runs `ferry testbed up` (with `extra` flags); panics with the
    /// output if it fails.
    pub fn up(name: &str, topology: &str, extra: &[&str]) -> Testbed {
        let file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        std::fs::write(file.path(), topology).expect("write topology");
        // A leftover of an earlier, killed run must not make this one fail.
        let _ = ferry(&["testbed", "down", "--name", name]);
        let tb = Testbed {
            name: name.to_string(),
            file,
        };
        let path = tb.file.path().to_str().expect("utf-8 path").to_string();
        let mut args = vec!["testbed", "up", "-f", path.as_str()];
        args.extend_from_slice(extra);
        let out = ferry(&args);
        assert!(out.status.success(), "up failed: {}", text(&out));
        tb
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = ferry(&["testbed", "down", "--name", &self.name]);
    }
}

/// Median RTT in ms of `n` pings from namespace `ns` to `to` (after one warm-up ping).
pub fn ping_median(ns: &str, to: &str, n: u32) -> Option<f64> {
    let _ = Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2", to])
        .output();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            &n.to_string(),
            "-i",
            "0.05",
            "-W",
            "2",
            to,
        ])
        .output()
        .ok()?;
    let mut v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split(' ').next())
        .filter_map(|t| t.parse().ok())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Asserts an RTT carries the configured delay `want` ms: at least 85% of it (the delay is
/// really there: without it a veth answers in a tenth of a millisecond; the userspace delay
/// element measured 1.84 ms for 2) and below 1.4 x + 3 ms, which still tells the test
/// topology's paths apart (2, 12 and 22 ms) on a loaded machine. How close it comes is a
/// measurement (`ferry testbed check`), not asserted.
pub fn assert_rtt(what: &str, got: Option<f64>, want: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no ping replies"));
    eprintln!("{what}: RTT {got:.2} ms, configured {want:.2} ms");
    assert!(
        got >= want * 0.85 && got <= want * 1.4 + 3.0,
        "{what}: RTT {got:.2} ms, configured {want:.2} ms"
    );
}

/// The cgroup directories of daemon `id` (`/ferry/<id>`) in every hierarchy where one exists.
pub fn cgroups_of_daemon(id: &str) -> Vec<PathBuf> {
    let parent = ferry_runtime::cgroup::path(id, "");
    ferry_runtime::cgroup::Hierarchies::mounted()
        .roots()
        .iter()
        .map(|root| root.join(parent.trim_matches('/')))
        .filter(|p| p.is_dir())
        .collect()
}

pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect()
}

pub fn links_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Pids from the `pid N` lines of `ferry testbed status`.
pub fn status_pids(name: &str) -> Vec<u32> {
    let out = ferry(&["testbed", "status", "--name", name]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pid "))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| p.parse().ok())
        .collect()
}
