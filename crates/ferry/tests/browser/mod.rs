//! A real browser for the tests: headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-deps`) driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, NUL-separated JSON), so it
//! needs no port and may run inside a test's network namespace. A fresh profile per browser;
//! the browser is closed and reaped on drop.

#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What Chromium is started with (headless, as root in a test, nothing from the network).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    "--remote-debugging-pipe",
];

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    commands: std::fs::File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// The base64 SHA-256 of a certificate's public key (what `--ignore-certificate-errors-spki-list`
/// pins): the browser then trusts that one server key, as an operator's browser trusts the
/// operator's CA, and nothing else.
pub fn spki_pin(cert_pem: &Path) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let pem = std::fs::read(cert_pem).expect("certificate");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let spki = cert.tbs_certificate.subject_pki.raw;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki))
}

impl Browser {
    /// Starts Chromium (in network namespace `netns` if given), trusting the server key
    /// `pin` (see [`spki_pin`]).
    pub fn launch(netns: Option<&str>, pin: Option<&str>) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("ferry-chromium-")
            .tempdir()
            .expect("profile dir");
        let (cmd_r, cmd_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let (ans_r, ans_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "chromium"]);
                c
            }
            None => Command::new("chromium"),
        };
        cmd.args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()));
        if let Some(pin) = pin {
            cmd.arg(format!("--ignore-certificate-errors-spki-list={pin}"));
        }
        // A group of its own: whatever Chromium starts goes with it.
        cmd.arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (r, w) = (cmd_r.as_raw_fd(), ans_w.as_raw_fd());
        // SAFETY: between fork and exec only dup/dup2 run (async-signal-safe). The copies made
        // by dup have no close-on-exec flag, whatever numbers they get, so after the two dup2
        // fds 3 and 4 are the pipe ends Chromium's --remote-debugging-pipe expects.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::dup(r);
                let b = libc::dup(w);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("start chromium (scripts/install-deps installs Debian's chromium)");
        drop(cmd_r);
        drop(ans_w);
        let answers = reader(ans_r);
        let mut b = Browser {
            child,
            commands: std::fs::File::from(cmd_w),
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}), false);
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            false,
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b
    }

    /// One DevTools call (on the page's session or the browser's); its `result`.
    pub fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if on_page {
            msg["sessionId"] = Value::String(self.session.clone());
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium went away ({method}): {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer from chromium to {method}: {e}"));
            if m["id"].as_u64() == Some(id) {
                if let Some(err) = m.get("error") {
                    panic!("chromium refused {method}: {err}");
                }
                return m["result"].clone();
            }
        }
    }

    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }), true);
        if let Some(e) = r.get("errorText") {
            panic!("navigating to {url}: {e}");
        }
    }

    /// The value of a JavaScript expression in the page (awaited if a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            true,
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits (up to `within`) until `expression` is truthy in the page; its value. On time
    /// out, panics with `what` and the page's text.
    pub fn wait_for(&mut self, what: &str, expression: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expression);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(_) => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "the page did not show {what} within {within:?}\n--- page text ---\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page as it is, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
            true,
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

/// Reads the answers pipe on a thread: each NUL-terminated JSON message to the channel.
fn reader(fd: OwnedFd) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(std::fs::File::from(fd));
        loop {
            let mut buf = Vec::new();
            match r.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if buf.last() == Some(&0) {
                        buf.pop();
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    rx
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to close; killed if it does not within a few seconds.
        self.next_id += 1;
        let msg = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        if let Ok(mut bytes) = serde_json::to_vec(&msg) {
            bytes.push(0);
            let _ = self.commands.write_all(&bytes);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its helpers (zygote, renderers) too, closed or not.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}
