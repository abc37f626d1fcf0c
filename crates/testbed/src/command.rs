//! Running the external programs the testbed drives (ip, tc, ethtool, ping, iperf3): the
//! runtime's command runner (errors say which command failed and what it printed) plus
//! namespace helpers.

pub use ferry_runtime::command::{output, run, CommandError};

/// `ip -n NS args...` (iproute2 enters only the network namespace).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, CommandError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", all)
}

/// Runs a program inside a network namespace (`ip netns exec`).
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String, CommandError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", all)
}

/// Writes a sysctl inside a namespace, e.g. `net.ipv4.ip_forward=1`.
pub fn sysctl_in(ns: &str, setting: &str) -> Result<(), CommandError> {
    exec_in(ns, "sysctl", &["-qw", setting]).map(|_| ())
}
