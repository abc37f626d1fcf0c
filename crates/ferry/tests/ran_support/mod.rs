//! Helpers of the `ran_*` integration tests: the real `ferry ran` binary as a child process
//! (killed on drop) and a small two-zone topology; on top of `shared` (the callback server,
//! the request helpers), which it re-exports.

#![allow(dead_code)] // each test file uses a different part

pub use crate::shared::*;
use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two zones: edge-a (cells a1, a2) and edge-b (cell b1); ue1 and ue2 start in a1. `extra_ue1`
/// is appended to ue1 (e.g. a trace).
pub fn topology(extra_ue1: &str) -> String {
    [
        two_hosts("rantest", "10.100.0.11", "10.100.0.12"),
        cell("a1", "7.4200", "edge-a"),
        cell("a2", "7.4300", "edge-a"),
        cell("b1", "7.4400", "edge-b"),
        ue("ue1", "10.150.0.1", "a1"),
        format!("{extra_ue1}\n"),
        ue("ue2", "10.150.0.2", "a1"),
    ]
    .concat()
}

/// ECGI JSON of a cell of `topology()`.
pub fn ecgi(cell_id: &str) -> Value {
    serde_json::json!({"plmn": {"mcc": "001", "mnc": "01"}, "cellId": cell_id})
}

/// A running `ferry ran`, killed and reaped on drop.
pub struct RanProcess {
    daemon: Daemon,
    pub url: String,
    /// When the daemon printed its address: the trace's time 0 is just before.
    pub ready: Instant,
    _topology: tempfile::NamedTempFile,
}

impl RanProcess {
    pub fn start(topology: &str, extra_args: &[&str]) -> RanProcess {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(topology.as_bytes()).expect("write topology");
        let daemon = Daemon::spawn(
            Command::new(BIN)
                .env("FERRY_TLS_DIR", pki())
                .args(["ran", "--topology"])
                .arg(file.path())
                .args(["--listen", "127.0.0.1:0"])
                .arg("--tls-dir")
                .arg(pki())
                .args(extra_args),
            "ferry ran: listening on ",
            "https://127.0.0.1:",
            Some(Duration::from_secs(20)),
        );
        RanProcess {
            url: daemon.url.clone(),
            daemon,
            ready: Instant::now(),
            _topology: file,
        }
    }

    /// Sends SIGTERM and waits (up to 5 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon.terminate()
    }

    pub fn api(&self, path: &str) -> String {
        self.daemon.api(path)
    }
}

/// Runs the `ferry` binary to completion: (success, stdout, stderr).
pub async fn ferry(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN)
        .env("FERRY_TLS_DIR", pki())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run ferry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Forces a handover through the CLI (`ferry ran handover`), asserting it succeeded.
pub async fn handover(ran: &RanProcess, ue: &str, cell: &str) -> String {
    let (ok, out, err) = ferry(&["ran", "handover", ue, cell, "--ran", &ran.url]).await;
    assert!(ok, "ferry ran handover {ue} {cell} failed: {err}");
    out
}

/// A cell change subscription body.
pub fn cell_change(callback: &str, filter: Value) -> Value {
    serde_json::json!({
        "subscriptionType": "CellChangeSubscription",
        "callbackReference": callback,
        "filterCriteriaAssocHo": filter,
    })
}

pub fn ue_filter(ip: &str) -> Value {
    serde_json::json!({"associateId": [{"type": 1, "value": ip}]})
}
