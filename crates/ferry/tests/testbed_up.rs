//! `ferry testbed up/down/status/route` and the data plane, with real namespaces, real
//! delay elements and the real `ferry host` daemons.

#[path = "testbed_support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

/// Up with three `ferry host` daemons; each answers its health check from the root
/// namespace; the UE reaches its serving host with the cell link's delay and another host
/// over the host-host link; `down` leaves nothing behind, and a second `down` is fine.
#[test]
fn three_hosts_come_up_and_down_leaves_nothing() {
    let name = "tbup";
    let a = addrs(1);
    let tb = Testbed::up(name, &topology(name, 1), &[]);
    assert_eq!(
        netns_with_prefix(&format!("{name}-")).len(),
        5,
        "gw, 3 hosts, 1 UE"
    );
    for (i, h) in a.hosts.iter().enumerate() {
        let api = format!("{h}:7100");
        let out = Command::new("curl")
            .args(operator_tls(name))
            .args(["-s", "-m", "5", &format!("https://{api}/ferry/v1/health")])
            .output()
            .expect("curl");
        // The hosts answer nothing without a client certificate of the testbed's CA.
        let plain = Command::new("curl")
            .args([
                "-s",
                "-k",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("https://{api}/ferry/v1/health"))
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&plain.stdout),
            "000",
            "{api} without a certificate"
        );
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            body.contains(&format!("mec{}", i + 1)),
            "health of {api}: {body}"
        );
    }
    let pids = status_pids(name);
    assert_eq!(pids.len(), 4, "agent + 3 hosts");
    assert!(pids.iter().all(|p| alive(*p)));
    // Serving host over the 1 ms cell link; mec2 also over the 5 ms host link.
    assert_rtt(
        "ue1 -> mec1",
        ping_median(&tb.ns("ue1"), &a.hosts[0], 15),
        2.0,
    );
    assert_rtt(
        "ue1 -> mec2",
        ping_median(&tb.ns("ue1"), &a.hosts[1], 15),
        12.0,
    );
    // Host to host (migration path) crosses the shaped link: mec1 -> mec3 takes the 10 ms
    // path through mec2, not the direct 20 ms one.
    assert_rtt(
        "mec1 -> mec3",
        ping_median(&tb.ns("mec1"), &a.hosts[2], 15),
        20.0,
    );

    let out = ferry(&["testbed", "down", "--name", name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(netns_with_prefix(&format!("{name}-")).is_empty());
    assert!(links_with_prefix(&format!("{name}-")).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    for p in pids {
        assert!(!alive(p), "pid {p} survived down");
    }
    assert!(!std::path::Path::new(&format!("/run/ferry/testbed/{name}")).exists());
    assert!(!std::path::Path::new(&format!("/var/lib/ferry/testbed/{name}")).exists());
    let again = ferry(&["testbed", "down", "--name", name]);
    assert!(again.status.success(), "second down: {}", text(&again));
    drop(tb);
}

/// Moving an app address from host to host with `ferry testbed route` changes which host
/// answers and the UE's latency to it. The app is an address on the host's loopback (what
/// the `ferry host` bridge route does for a container).
#[test]
fn route_switch_changes_which_host_answers() {
    let name = "tbroute";
    let a = addrs(2);
    let tb = Testbed::up(name, &topology(name, 2), &["--without-hosts"]);
    let app = format!("{}.0.42", a.app_subnet_prefix);
    let place = |host: &str, add: bool| {
        let verb = if add { "add" } else { "del" };
        let ok = Command::new("ip")
            .args([
                "-n",
                &tb.ns(host),
                "addr",
                verb,
                &format!("{app}/32"),
                "dev",
                "lo",
            ])
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip addr {verb} {app} in {host}");
    };
    let route = |host: &str| {
        let out = ferry(&["testbed", "route", &app, host, "--name", name]);
        assert!(out.status.success(), "route to {host}: {}", text(&out));
    };
    place("mec2", true);
    route("mec2");
    assert_rtt("app on mec2", ping_median(&tb.ns("ue1"), &app, 15), 12.0);
    // Move it to mec3: without the route switch nobody answers...
    place("mec2", false);
    place("mec3", true);
    assert_eq!(
        ping_median(&tb.ns("ue1"), &app, 3),
        None,
        "answered before the route switch"
    );
    // ...with it, mec3 answers over mec1 -> mec2 -> mec3 (1 + 5 + 5 ms each way).
    route("mec3");
    assert_rtt("app on mec3", ping_median(&tb.ns("ue1"), &app, 15), 22.0);
    // And on the serving host itself: only the cell link.
    place("mec3", false);
    place("mec1", true);
    route("mec1");
    assert_rtt("app on mec1", ping_median(&tb.ns("ue1"), &app, 15), 2.0);
    // The root namespace reaches it too, through the gateway.
    let root = Command::new("ping")
        .args(["-c", "2", "-W", "2", "-q", &app])
        .status()
        .expect("ping");
    assert!(root.success(), "root namespace cannot reach the app");
    // Bad input is refused with a reason.
    let out = ferry(&["testbed", "route", "10.1.2.3", "mec1", "--name", name]);
    assert!(
        !out.status.success() && text(&out).contains("app subnet"),
        "{}",
        text(&out)
    );
    let out = ferry(&["testbed", "route", &app, "mec9", "--name", name]);
    assert!(
        !out.status.success() && text(&out).contains("unknown host 'mec9'"),
        "{}",
        text(&out)
    );
    drop(tb);
}

/// A handover on the RAN re-wires the UE's path: the latency to the new serving host drops
/// from the host-link path to the cell link alone.
#[test]
fn handover_rewires_the_ue_path() {
    let name = "tbho";
    let a = addrs(3);
    let tb = Testbed::up(name, &topology(name, 3), &["--without-hosts"]);
    assert_rtt(
        "before: ue1 -> mec2",
        ping_median(&tb.ns("ue1"), &a.hosts[1], 10),
        12.0,
    );
    // The testbed's RAN serves TLS with the testbed's own PKI: call it as the operator.
    let ran = "https://10.199.3.1:7200";
    let pki = ferry_testbed::plan::pki_dir(name);
    let out = ferry(&[
        "ran",
        "handover",
        "ue1",
        "cell2",
        "--ran",
        ran,
        "--tls-dir",
        &pki,
    ]);
    assert!(out.status.success(), "handover: {}", text(&out));
    // The agent re-wires asynchronously, right after the RAN publishes the handover.
    let mut rtt = None;
    for _ in 0..50 {
        rtt = ping_median(&tb.ns("ue1"), &a.hosts[1], 5);
        if rtt.is_some_and(|r| r < 6.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_rtt("after: ue1 -> mec2", rtt, 2.0);
    assert_rtt(
        "after: ue1 -> mec1",
        ping_median(&tb.ns("ue1"), &a.hosts[0], 10),
        12.0,
    );
    let status = text(&ferry(&["testbed", "status", "--name", name]));
    assert!(status.contains("cell cell2"), "{status}");
    drop(tb);
}

/// After a crash (agent killed, state file gone), `down` still removes everything, deriving
/// it from the name prefix.
#[test]
fn down_after_a_crash_removes_everything() {
    let name = "tbcrash";
    let tb = Testbed::up(name, &topology(name, 4), &["--without-hosts"]);
    let pids = status_pids(name);
    assert_eq!(pids.len(), 1);
    // A stray process inside one of the namespaces, as a crashed daemon would leave.
    let mut stray = Command::new("ip")
        .args(["netns", "exec", &tb.ns("mec2"), "sleep", "600"])
        .spawn()
        .expect("spawn sleep");
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_dir_all(format!("/run/ferry/testbed/{name}")).expect("remove state");
    let out = ferry(&["testbed", "down", "--name", name]);
    assert!(out.status.success(), "{}", text(&out));
    let _ = stray.wait();
    assert!(netns_with_prefix(&format!("{name}-")).is_empty());
    assert!(links_with_prefix(&format!("{name}-")).is_empty());
    assert!(!alive(pids[0]), "agent survived");
    drop(tb);
}

/// Every subcommand names its testbed the same way: `-f FILE` works wherever `--name` does
/// (status, route, down after `up -f FILE`), and neither or both is a one-line error that
/// changes nothing, even when this is the only testbed up.
#[test]
fn a_testbed_is_named_by_its_file_or_its_name() {
    let name = "tbfile";
    let a = addrs(8);
    let tb = Testbed::up(name, &topology(name, 8), &["--without-hosts"]);
    let file = tb.file.path().to_str().expect("utf-8 path").to_string();
    let status = ferry(&["testbed", "status", "-f", &file]);
    assert!(
        status.status.success() && text(&status).contains(&format!("testbed {name} ")),
        "{}",
        text(&status)
    );
    let app = format!("{}.0.42", a.app_subnet_prefix);
    let out = ferry(&["testbed", "route", &app, "mec2", "-f", &file]);
    assert!(out.status.success(), "route -f: {}", text(&out));
    let shown = text(&ferry(&["testbed", "status", "--name", name]));
    assert!(
        shown.contains(&format!("app  {app:<15} -> mec2")),
        "{shown}"
    );

    for args in [
        vec!["testbed", "down"],
        vec!["testbed", "down", "-f", &file, "--name", name],
        vec!["testbed", "route", &app, "mec3"],
        vec!["testbed", "status", "-f", &file, "--name", name],
    ] {
        let out = ferry(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("-f FILE or --name NAME"), "{args:?}: {err}");
    }
    assert_eq!(
        netns_with_prefix(&format!("{name}-")).len(),
        5,
        "a refused down removed something"
    );
    let shown = text(&ferry(&["testbed", "status", "--name", name]));
    assert!(
        shown.contains(&format!("app  {app:<15} -> mec2")),
        "a refused route moved the app: {shown}"
    );

    let out = ferry(&["testbed", "down", "-f", &file]);
    assert!(out.status.success(), "down -f: {}", text(&out));
    assert!(
        text(&out).contains(&format!("testbed '{name}' down")),
        "{}",
        text(&out)
    );
    assert!(netns_with_prefix(&format!("{name}-")).is_empty());
    assert!(links_with_prefix(&format!("{name}-")).is_empty());
    assert!(!std::path::Path::new(&format!("/run/ferry/testbed/{name}")).exists());
    drop(tb);
}

/// Without a testbed: each subcommand that needs one says, in one line, how to name it, and
/// refuses both ways at once, a name that is not a testbed's, and `up` without its file.
#[test]
fn naming_errors_are_one_line_with_the_fix() {
    let nowhere = "/nonexistent/topology.toml";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["down"],
            "`ferry testbed down` needs a testbed: add -f FILE or --name NAME",
        ),
        (
            vec!["check"],
            "`ferry testbed check` needs a testbed: add -f FILE or --name NAME",
        ),
        (
            vec!["route", "10.1.0.1", "mec1"],
            "`ferry testbed route` needs a testbed",
        ),
        (
            vec!["attach", "ue1", "cell1"],
            "`ferry testbed attach` needs a testbed",
        ),
        (vec!["agent"], "`ferry testbed agent` needs a testbed"),
        (
            vec!["down", "-f", nowhere, "--name", "x"],
            "takes -f FILE or --name NAME, not both",
        ),
        (vec!["check", "--file", nowhere, "--name", "x"], "not both"),
        (
            vec!["route", "10.1.0.1", "mec1", "-f", nowhere, "--name", "x"],
            "not both",
        ),
        (vec!["status", "-f", nowhere, "--name", "x"], "not both"),
        (
            vec!["down", "--name", "../etc"],
            "--name: '../etc' must start with a letter",
        ),
        (
            vec!["down", "-f", nowhere],
            "cannot read /nonexistent/topology.toml",
        ),
        (vec!["up"], "give -f FILE"),
        (vec!["up", "--name", "x"], "give -f FILE"),
    ];
    for (args, want) in cases {
        let out = ferry(&[&["testbed"], args.as_slice()].concat());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?}, got {err}");
    }
}

/// A malformed file is rejected before anything is created, naming the line and the field.
#[test]
fn malformed_topology_is_rejected_with_line_and_field() {
    let name = "tbbad";
    let good = topology(name, 5);
    let bad = good.replacen("cell = \"cell1\"", "cell = \"cell9\"", 1);
    let line = bad[..bad.find("cell9").unwrap()].matches('\n').count() + 1;
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), &bad).unwrap();
    let out = ferry(&["testbed", "up", "-f", file.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("line {line}")) && t.contains("ues[0].cell") && t.contains("cell9"),
        "{t}"
    );
    assert!(netns_with_prefix(&format!("{name}-")).is_empty());
    // A syntax error too.
    std::fs::write(
        file.path(),
        good.replacen("delay_ms = 5.0", "delay_ms = \"5\"", 1),
    )
    .unwrap();
    let out = ferry(&["testbed", "up", "-f", file.path().to_str().unwrap()]);
    assert!(
        !out.status.success() && text(&out).contains("links[0].delay_ms"),
        "{}",
        text(&out)
    );
}

/// The whole stack: a ferry-counter container on mec2 (through mec2's `ferry host` API from
/// the root namespace), routed with `ferry testbed route`, answers the UE over cell1 ->
/// mec1 -> mec2; `down` then removes the container's processes, namespace, overlay mount and
/// cgroups (on cgroup v1 or v2).
#[test]
fn container_app_is_reachable_and_down_removes_it() {
    let name = "tbapp";
    let a = addrs(7);
    let image =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/ferry-counter.oci.tar");
    assert!(
        image.is_file(),
        "{} is missing: run `make test` (it builds the image)",
        image.display()
    );
    let tb = Testbed::up(name, &topology(name, 7), &[]);
    let api = format!("https://{}:7100/ferry/v1", a.hosts[1]);
    let app = format!("{}.0.10", a.app_subnet_prefix);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(operator_tls(name))
            // A deadline for a hung host, not a speed check: importing the image takes
            // seconds on an emulated CPU (scripts/test-kernel).
            .args(["-s", "-m", "120", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let image_arg = format!("@{}", image.display());
    // Imports the image into the host at `api`, creates and starts container `c` at `ip`
    // there, and returns the host daemon's id.
    let run_counter = |api: &str, c: &str, ip: &str| {
        let r = curl(&[
            "-X",
            "POST",
            "--data-binary",
            &image_arg,
            &format!("{api}/images?name=counter"),
        ]);
        assert!(r.ends_with("201"), "import into {api}: {r}");
        let body = format!(
            r#"{{"name":"{c}","image":"counter","ip":"{ip}","memory_mib":64,"args":["--port","8080"]}}"#
        );
        let r = curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            &format!("{api}/containers"),
        ]);
        assert!(r.ends_with("201"), "create {c} on {api}: {r}");
        let r = curl(&["-X", "POST", &format!("{api}/containers/{c}/start")]);
        assert!(r.ends_with("200"), "start {c} on {api}: {r}");
        let info = curl(&[&format!("{api}/info")]);
        let info: serde_json::Value =
            serde_json::from_str(info.rsplit_once('\n').map_or("", |(b, _)| b)).expect("info");
        info["id"].as_str().expect("the host's id").to_string()
    };
    let daemon = run_counter(&api, "c1", &app);
    assert!(
        !cgroups_of_daemon(&daemon).is_empty(),
        "the container runs in no cgroup of mec2's daemon {daemon}"
    );
    // A container of mec1 that is gone before `down`, as after a migration away: its daemon's
    // group stays while the daemon runs, and `down` must take it.
    let api1 = format!("https://{}:7100/ferry/v1", a.hosts[0]);
    let daemon1 = run_counter(&api1, "gone", &format!("{}.0.11", a.app_subnet_prefix));
    let r = curl(&["-X", "DELETE", &format!("{api1}/containers/gone")]);
    assert!(r.ends_with("204"), "delete on mec1: {r}");
    assert!(
        !cgroups_of_daemon(&daemon1).is_empty(),
        "mec1's daemon {daemon1} has no group of its own while it runs"
    );

    let out = ferry(&["testbed", "route", &app, "mec2", "--name", name]);
    assert!(out.status.success(), "{}", text(&out));
    let mut reply = String::new();
    for _ in 0..50 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.ns("ue1"),
                "curl",
                "-s",
                "-m",
                "2",
                &format!("http://{app}:8080/"),
            ])
            .output()
            .expect("curl in ue1");
        reply = String::from_utf8_lossy(&out.stdout).into_owned();
        if reply.contains("counter") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reply.contains("\"counter\""),
        "the UE got no answer from the app: {reply:?}"
    );
    assert_rtt(
        "ue1 -> app on mec2",
        ping_median(&tb.ns("ue1"), &app, 10),
        12.0,
    );
    let sdir = format!("/var/lib/ferry/testbed/{name}/");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&sdir))
            .count()
    };
    assert!(
        mounted() > 0,
        "expected the container's overlay under {sdir}"
    );
    let before: Vec<String> = netns_with_prefix("");

    let out = ferry(&["testbed", "down", "--name", name]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mounted(), 0, "mounts left under {sdir}");
    let after: Vec<String> = netns_with_prefix("");
    let gone: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
    assert!(
        gone.iter().any(|n| !n.starts_with(name)),
        "the container's namespace survived: {after:?}"
    );
    assert!(!std::path::Path::new(&sdir).exists());
    assert_eq!(
        cgroups_of_daemon(&daemon),
        Vec::<std::path::PathBuf>::new(),
        "cgroups of mec2's daemon left after down"
    );
    assert_eq!(
        cgroups_of_daemon(&daemon1),
        Vec::<std::path::PathBuf>::new(),
        "the group of mec1's daemon, whose container went before down, left after down"
    );
    drop(tb);
}

/// curl's options to call a testbed's hosts as `operator` (mutual TLS with its PKI).
fn operator_tls(name: &str) -> Vec<String> {
    let dir = ferry_testbed::plan::pki_dir(name);
    vec![
        "--cacert".into(),
        format!("{dir}/ca.crt"),
        "--cert".into(),
        format!("{dir}/operator.crt"),
        "--key".into(),
        format!("{dir}/operator.key"),
    ]
}

/// `ferry control` on a testbed's management address, as `make demo` runs it (TLS, the
/// hosts over mutual TLS); stopped on drop.
struct Control {
    child: std::process::Child,
    url: String,
    _state: tempfile::TempDir,
}

impl Control {
    fn start(tb: &Testbed) -> Control {
        use std::io::BufRead;
        let plan = ferry_testbed::State::load(&tb.name).unwrap().plan;
        let mgmt_ip = plan.ran_api.rsplit_once(':').unwrap().0.to_string();
        let state = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(FERRY);
        cmd.args([
            "control",
            "--listen",
            &format!("{mgmt_ip}:0"),
            "--state-dir",
        ])
        .arg(state.path())
        .arg("--topology")
        .arg(tb.file.path())
        .args(["--ran", &format!("https://{}", plan.ran_api)])
        .arg("--tls-dir")
        .arg(ferry_testbed::plan::pki_dir(&tb.name));
        for h in &plan.hosts {
            cmd.args(["--host", &format!("{}=https://{}", h.name, h.api)]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ferry control");
        let mut line = String::new();
        let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let url = line
            .trim()
            .strip_prefix("ferry control: listening on ")
            .unwrap_or_default()
            .to_string();
        assert!(
            url.starts_with("https://"),
            "control did not start: {line:?}"
        );
        Control {
            child,
            url,
            _state: state,
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// What an unauthenticated caller got: the HTTP status, or 0 when no HTTP answer came (no
/// route, refused, or no TLS session without a client certificate).
fn anonymous_call(ns: Option<&str>, method: &str, url: &str) -> u16 {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    // -k: an attacker does not care who the server is; no client certificate, no token. The
    // token endpoint gets a well-formed grant without client credentials.
    let (content_type, body) = if url.ends_with("/oauth2/token") {
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials",
        )
    } else {
        ("application/json", "{}")
    };
    let out = cmd
        .args([
            "-k",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "3",
            "-X",
            method,
        ])
        .args(["-H", &format!("Content-Type: {content_type}"), "-d", body])
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Issue 10: a subscriber's phone (the UE) and an app's container get nothing from any ferry
/// API: each host's API, the RAN's MEC 012/013, control's MEC APIs and its own API. From the
/// root namespace, which reaches them all, the same anonymous calls show what guards each:
/// the hosts give no TLS session without a client certificate, the RAN and control answer
/// 401.
#[test]
fn nobody_from_a_ue_or_an_app_container_gets_in() {
    let name = "tbsec";
    let a = addrs(9);
    let image =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/ferry-counter.oci.tar");
    assert!(
        image.is_file(),
        "{} is missing: run `make test`",
        image.display()
    );
    let tb = Testbed::up(name, &topology(name, 9), &[]);
    let control = Control::start(&tb);
    let plan = ferry_testbed::State::load(name).unwrap().plan;

    // An app container on mec1, made by the operator.
    let api = format!("https://{}:7100/ferry/v1", a.hosts[0]);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(operator_tls(name))
            .args(["-s", "-m", "10"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", image.display()),
        &format!("{api}/images?name=counter"),
    ]);
    let app = format!("{}.0.10", a.app_subnet_prefix);
    let body =
        format!(r#"{{"name":"c1","image":"counter","ip":"{app}","args":["--port","8080"]}}"#);
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("{api}/containers"),
    ]);
    curl(&["-X", "POST", &format!("{api}/containers/c1/start")]);
    let c1: serde_json::Value =
        serde_json::from_str(&curl(&[&format!("{api}/containers/c1")])).unwrap();
    let app_ns = c1["netns"]
        .as_str()
        .expect("the container's netns")
        .to_string();
    assert_eq!(c1["status"], "running", "{c1}");

    let mut targets: Vec<(String, &str, String)> = Vec::new();
    for h in &plan.hosts {
        let base = format!("https://{}/ferry/v1", h.api);
        targets.push((
            format!("host {}", h.name),
            "GET",
            format!("{base}/containers"),
        ));
        targets.push((
            format!("host {}", h.name),
            "POST",
            format!("{base}/containers"),
        ));
        targets.push((
            format!("host {}", h.name),
            "POST",
            format!("{base}/channel"),
        ));
    }
    let ran = format!("https://{}", plan.ran_api);
    targets.push((
        "RAN".into(),
        "GET",
        format!("{ran}/rni/v2/queries/rab_info"),
    ));
    targets.push(("RAN".into(), "POST", format!("{ran}/rni/v2/subscriptions")));
    targets.push((
        "RAN".into(),
        "GET",
        format!("{ran}/location/v2/queries/users"),
    ));
    let cp = &control.url;
    targets.push((
        "control".into(),
        "GET",
        format!("{cp}/app_lcm/v1/app_instances"),
    ));
    targets.push((
        "control".into(),
        "POST",
        format!("{cp}/app_pkgm/v1/app_packages"),
    ));
    targets.push((
        "control".into(),
        "GET",
        format!("{cp}/amsi/v1/app_mobility_services"),
    ));
    targets.push((
        "control".into(),
        "GET",
        format!("{cp}/mec_service_mgmt/v1/services"),
    ));
    targets.push((
        "control".into(),
        "GET",
        format!("{cp}/ferry/control/v1/relocations"),
    ));
    targets.push(("control".into(), "POST", format!("{cp}/oauth2/token")));

    let ue = tb.ns("ue1");
    let mut table = String::new();
    for (what, method, url) in &targets {
        let from_ue = anonymous_call(Some(&ue), method, url);
        let from_app = anonymous_call(Some(&app_ns), method, url);
        let from_root = anonymous_call(None, method, url);
        table += &format!("{what:<10} {method:<4} {url:<60} ue {from_ue:>3}  app {from_app:>3}  root {from_root:>3}\n");
        for (who, got) in [
            ("the UE", from_ue),
            ("the app", from_app),
            ("root", from_root),
        ] {
            assert!(
                got == 0 || got == 401,
                "{who} got {got} from {method} {url}:\n{table}"
            );
        }
        // Reachable from the root namespace: what answers there is the guard itself.
        let guard = if what.starts_with("host") { 0 } else { 401 };
        assert_eq!(from_root, guard, "{method} {url} from root:\n{table}");
    }
    eprintln!("anonymous calls (0: no HTTP answer):\n{table}");
    // The app still runs: nothing above touched it.
    let c1: serde_json::Value =
        serde_json::from_str(&curl(&[&format!("{api}/containers/c1")])).unwrap();
    assert_eq!(c1["status"], "running", "{c1}");
    drop(control);
    drop(tb);
}
