//! Helpers of the relocation tests with real parts (on top of `common`'s `Pair`: two real
//! `ferry host` daemons and a gateway namespace): the real `ferry ran` and `ferry control` in
//! the gateway namespace, the gateway's route as the data plane, the counter package, and a
//! real HTTP server there that records notifications. Everything stops on drop. Built on
//! `shared` (the daemon, the inbox, the topology).

#![allow(dead_code)] // each test file uses a different part

use crate::common::{counter_image, in_netns, issue_cert, Pair};
use crate::shared::{sha256_hex, Callback, Daemon, Inbox};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Two MEC hosts (`Pair`'s addresses), a cell each; ue1 starts in a1 (served by edge-a).
pub fn topology() -> String {
    crate::shared::two_zone_topology("relocreal", "10.99.1.2", "10.99.2.2")
}

pub const UE: &str = "10.150.0.1";

/// Starts `ferry ARGS` in `netns` and waits for its `BANNER http://...` line on stdout (`ip
/// netns exec` execs the program: the child is the daemon itself).
pub fn start_in(netns: &str, args: &[String], banner: &str) -> Daemon {
    Daemon::spawn(
        Command::new("ip")
            .args(["netns", "exec", netns, crate::shared::BIN])
            .args(args),
        banner,
        "https://",
        None,
    )
}

/// The real RAN and the real control plane in the gateway namespace, managing `pair`'s hosts.
pub struct ControlPlane {
    // Control first: it unsubscribes from a RAN that is still there.
    pub control: Daemon,
    pub ran: Daemon,
    /// An HTTP client whose sockets live in the gateway namespace.
    pub http: reqwest::blocking::Client,
    /// How control was started (for a restart on the same address).
    gw: String,
    args: Vec<String>,
    log: Option<std::path::PathBuf>,
}

impl ControlPlane {
    /// `ferry ran` on 127.0.0.1 and `ferry control` on `listen`, both in the gateway; the
    /// data plane is the gateway's route for the app address (`dir` holds the files).
    pub fn start(pair: &Pair, dir: &Path, listen: &str) -> ControlPlane {
        Self::start_with(pair, dir, listen, &[], None)
    }

    /// [`ControlPlane::start`] with more arguments for `ferry control`, its log in `log`.
    pub fn start_with(
        pair: &Pair,
        dir: &Path,
        listen: &str,
        extra: &[String],
        log: Option<&Path>,
    ) -> ControlPlane {
        let topo = dir.join("topology.toml");
        std::fs::write(&topo, topology()).unwrap();
        let route = dir.join("route.sh");
        std::fs::write(
            &route,
            "#!/bin/sh\ncase \"$2\" in edge-a) via=10.99.1.2;; edge-b) via=10.99.2.2;; *) exit 1;; esac\nexec ip route replace \"$1/32\" via \"$via\"\n",
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&route)
            .status()
            .unwrap();
        let pki = pair.a.tls.clone().expect("test hosts run with TLS");
        let local = ferry_tls::San::Ip(std::net::Ipv4Addr::LOCALHOST.into());
        issue_cert(
            &pki,
            &ferry_tls::Identity::Ran,
            std::slice::from_ref(&local),
        );
        let ran = start_in(
            &pair.gw,
            &[
                "ran".into(),
                "--no-trace".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--topology".into(),
                topo.display().to_string(),
                "--tls-dir".into(),
                pki.display().to_string(),
            ],
            "ferry ran: listening on ",
        );
        let scheme = if pair.a.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut args: Vec<String> = vec![
            "control".into(),
            "--listen".into(),
            listen.into(),
            "--state-dir".into(),
            dir.join("control").display().to_string(),
            "--host".into(),
            format!("edge-a={scheme}://10.99.1.2:7100"),
            "--host".into(),
            format!("edge-b={scheme}://10.99.2.2:7100"),
            "--topology".into(),
            topo.display().to_string(),
            "--ran".into(),
            ran.url.clone(),
            "--data-plane-cmd".into(),
            route.display().to_string(),
        ];
        // Mutual TLS: control calls the hosts and the RAN with its own certificate and serves
        // TLS on its address (and loopback) to them and the apps.
        let listen_ip: std::net::IpAddr = listen
            .rsplit_once(':')
            .and_then(|(ip, _)| ip.parse().ok())
            .expect("listen address");
        issue_cert(
            &pki,
            &ferry_tls::Identity::Control,
            &[ferry_tls::San::Ip(listen_ip), local],
        );
        args.extend(["--tls-dir".into(), pki.display().to_string()]);
        args.extend(extra.iter().cloned());
        let control = Self::spawn_control(&pair.gw, &args, log);
        let http = crate::common::client_in(&pair.gw, Some((&pki, "operator")));
        ControlPlane {
            control,
            ran,
            http,
            gw: pair.gw.clone(),
            args,
            log: log.map(Path::to_path_buf),
        }
    }

    fn spawn_control(gw: &str, args: &[String], log: Option<&Path>) -> Daemon {
        Daemon::spawn_logging(
            Command::new("ip")
                .args(["netns", "exec", gw, crate::shared::BIN])
                .args(args),
            "ferry control: listening on ",
            "https://",
            None,
            log,
        )
    }

    /// SIGKILLs `ferry control` (a crash: no shutdown code runs).
    pub fn kill_control(&mut self) {
        self.control.kill();
    }

    /// Starts `ferry control` again on the address and state it had.
    pub fn restart_control(&mut self) {
        let addr = self.control.url.trim_start_matches("https://").to_string();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = addr;
        }
        self.control = Self::spawn_control(&self.gw, &args, self.log.as_deref());
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.control.url)
    }

    /// (status, JSON body) of a request.
    pub fn send(&self, r: reqwest::blocking::RequestBuilder) -> (u16, Value) {
        let r = r.send().expect("request");
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.api(path)))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(self.api(path)).json(body))
    }

    /// Onboards the counter image under `appd` (a MEC 010-2 package, checksum and all).
    pub fn onboard(&self, appd: &Value) {
        let image = std::fs::read(counter_image()).unwrap();
        let content = ferry_control::client::build_package(appd, &image).unwrap();
        let (s, p) = self.post(
            "/app_pkgm/v1/app_packages",
            &json!({"appPkgName": "counter", "appPkgVersion": "1",
                "checksum": {"algorithm": "SHA-256", "hash": sha256_hex(&content)}}),
        );
        assert_eq!(s, 201, "{p}");
        let pkg = p["id"].as_str().unwrap();
        let (s, b) = self.send(
            self.http
                .put(self.api(&format!("/app_pkgm/v1/app_packages/{pkg}/package_content")))
                .body(content),
        );
        assert_eq!(s, 202, "onboarding: {b}");
    }

    /// Creates an instance of `app_d_id` and instantiates it for `UE` (at its serving host);
    /// returns its id.
    pub fn instantiate_for_ue(&self, pair: &Pair, app_d_id: &str) -> String {
        let (s, i) = self.post("/app_lcm/v1/app_instances", &json!({"appDId": app_d_id}));
        assert_eq!(s, 201, "{i}");
        let id = i["id"].as_str().unwrap().to_string();
        let (s, b) = self.post(
            &format!("/app_lcm/v1/app_instances/{id}/instantiate"),
            &json!({"ferryAssociateId": {"type": "UE_IPv4_ADDRESS", "value": UE}}),
        );
        assert_eq!(s, 202, "instantiation: {b}\n{}", pair.a.daemon_log());
        id
    }

    /// Forces ue1's handover to `cell` at the RAN.
    pub fn handover(&self, cell: &str) {
        let (s, b) = self.send(
            self.http
                .post(format!("{}/ferry/ran/v1/ues/ue1/handover", self.ran.url))
                .json(&json!({"cell": cell})),
        );
        assert_eq!(s, 200, "{b}");
    }

    /// Waits (up to `secs`) until the `n`th relocation record (0-based) is COMPLETED or
    /// FAILED; returns it.
    pub fn wait_relocation(&self, n: usize, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let rel = self.get("/ferry/control/v1/relocations").1;
            let phase = rel[n]["phase"].as_str().unwrap_or("");
            if phase == "COMPLETED" || phase == "FAILED" || Instant::now() > deadline {
                return rel[n].clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A real HTTP server in a namespace that answers every POST with 204 and records it (a MEC
/// API consumer's callback). Stops accepting on drop.
pub fn recorder(netns: &str) -> Callback {
    let listener = in_netns(netns, || {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind recorder")
    });
    let addr = listener.local_addr().unwrap();
    let inbox = Inbox::new(format!("http://{addr}"));
    let stop = Arc::new(AtomicBool::new(false));
    let (g, s) = (inbox.clone(), stop.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let g = g.clone();
            std::thread::spawn(move || record(conn, &g));
        }
    });
    let stopper = StopAccepting {
        stop,
        addr,
        netns: netns.to_string(),
    };
    Callback::new(inbox, stopper)
}

/// Stops a recorder's accept loop on drop.
struct StopAccepting {
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    netns: String,
}

impl Drop for StopAccepting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let addr = self.addr;
        let _ = std::panic::catch_unwind(|| {
            in_netns(&self.netns, move || {
                let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            })
        });
    }
}

/// Serves one keep-alive connection: each request is recorded and answered 204.
fn record(conn: std::net::TcpStream, inbox: &Inbox) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut request = String::new();
        if r.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if h == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        inbox.record(path, serde_json::from_slice(&body).unwrap_or(Value::Null));
        if w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}
