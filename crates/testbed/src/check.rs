//! `ferry testbed check`: measures each shaped or delayed link of a running testbed (RTT by
//! ping, throughput by iperf3) and compares it with what the topology file says.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::command::{exec_in, CommandError};
use crate::error::TestbedError;
use crate::plan::{LinkKind, LinkPlan, Plan};

/// Allowed deviation from the configured value.
pub const TOLERANCE: f64 = 0.10;

#[derive(Debug, Clone, Serialize)]
pub struct LinkCheck {
    pub label: String,
    pub rtt_configured_ms: f64,
    pub rtt_measured_ms: f64,
    pub rtt_ok: bool,
    pub rate_configured_mbit: Option<f64>,
    /// a -> b.
    pub rate_measured_mbit: Option<f64>,
    /// b -> a.
    pub rate_measured_reverse_mbit: Option<f64>,
    pub rate_ok: Option<bool>,
}

impl LinkCheck {
    pub fn ok(&self) -> bool {
        self.rtt_ok && self.rate_ok.unwrap_or(true)
    }
}

/// Median RTT in ms of `count` pings from `from_ns` to `to`, after one warm-up ping (which
/// pays for ARP).
pub fn ping_median(from_ns: &str, to: &str, count: u32) -> Result<f64, TestbedError> {
    let _ = exec_in(from_ns, "ping", &["-c", "1", "-W", "2", to]);
    let out = exec_in(
        from_ns,
        "ping",
        &["-c", &count.to_string(), "-i", "0.05", "-W", "2", to],
    )?;
    let mut rtts: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split(' ').next())
        .filter_map(|t| t.parse().ok())
        .collect();
    if rtts.is_empty() {
        return Err(TestbedError::Invalid(format!(
            "no ping replies from {to} in {from_ns}"
        )));
    }
    rtts.sort_by(|a, b| a.total_cmp(b));
    Ok(rtts[rtts.len() / 2])
}

/// Kills the iperf3 server however the measurement ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP throughput in Mbit/s from `from_ns` to `to_addr` (an address in `to_ns`), or the
/// other way with `reverse`, measured by iperf3 for `secs` seconds after one second of
/// ramp-up (not counted).
pub fn throughput_mbit(
    from_ns: &str,
    to_ns: &str,
    to_addr: &str,
    secs: u32,
    reverse: bool,
) -> Result<f64, TestbedError> {
    let port = "5201";
    let server = Command::new("ip")
        .args([
            "netns", "exec", to_ns, "iperf3", "-s", "-1", "-B", to_addr, "-p", port,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| TestbedError::io("starting iperf3 (install it: apt-get install iperf3)", e))?;
    let _guard = ServerGuard(server);
    let start = Instant::now();
    let duration = (secs + 1).to_string();
    let mut args = vec!["-c", to_addr, "-p", port, "-t", &duration, "-O", "1", "-J"];
    if reverse {
        args.push("-R");
    }
    // The server may not listen yet: iperf3 then fails, or (with -J) reports the refused
    // connection in "error". Starting it takes seconds on an emulated CPU (scripts/kernel-vm).
    let patience = Duration::from_secs(10);
    let v: serde_json::Value = loop {
        match exec_in(from_ns, "iperf3", &args) {
            Ok(out) => {
                let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                    TestbedError::Invalid(format!("cannot read iperf3's output: {e}"))
                })?;
                let refused = v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unable to connect"));
                if !refused || start.elapsed() >= patience {
                    break v;
                }
            }
            Err(CommandError { .. }) if start.elapsed() < patience => {}
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e6)
        .ok_or_else(|| {
            // iperf3 -J puts what went wrong in "error", next to whatever it measured.
            let why = v["error"].as_str().unwrap_or("no error given");
            TestbedError::Invalid(format!("iperf3 reported no received throughput: {why}"))
        })
}

fn within(measured: f64, configured: f64) -> bool {
    (measured - configured).abs() <= configured * TOLERANCE
}

/// Measures one link: RTT from its `a` end to its `b` end, throughput both ways.
pub fn check_link(l: &LinkPlan, pings: u32, secs: u32) -> Result<LinkCheck, TestbedError> {
    let rtt_configured = 2.0 * l.delay_ms.unwrap_or(0.0);
    let rtt = ping_median(&l.a.netns, &l.b.addr.to_string(), pings)?;
    let b_addr = l.b.addr.to_string();
    let (rate, reverse) = match l.rate_mbit {
        Some(_) => (
            Some(throughput_mbit(
                &l.a.netns, &l.b.netns, &b_addr, secs, false,
            )?),
            Some(throughput_mbit(
                &l.a.netns, &l.b.netns, &b_addr, secs, true,
            )?),
        ),
        None => (None, None),
    };
    Ok(LinkCheck {
        label: l.label.clone(),
        rtt_configured_ms: rtt_configured,
        rtt_measured_ms: rtt,
        // An undelayed link only needs to be fast; a veth answers in well under 1 ms.
        rtt_ok: if rtt_configured > 0.0 {
            within(rtt, rtt_configured)
        } else {
            rtt < 1.0
        },
        rate_configured_mbit: l.rate_mbit,
        rate_measured_mbit: rate,
        rate_measured_reverse_mbit: reverse,
        rate_ok: l
            .rate_mbit
            .zip(rate.zip(reverse))
            .map(|(c, (m, r))| within(m, c) && within(r, c)),
    })
}

/// The links `check` measures: host-host links and each UE's link to every cell (all are
/// built at `up`). Uplinks are unshaped plumbing.
pub fn links_to_check(plan: &Plan) -> Vec<&LinkPlan> {
    plan.links
        .iter()
        .filter(|l| l.kind != LinkKind::Uplink)
        .collect()
}
