//! Running the external programs the testbed drives (ip, tc, ethtool, ping, iperf3) with
//! errors that say which command failed and what it printed.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// An external command that could not run or exited non-zero.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed ({status}): {stderr}")]
pub struct CommandError {
    pub command: String,
    pub status: String,
    pub stderr: String,
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with stdin closed; returns its stdout, or an error carrying its stderr.
pub fn output(cmd: &mut Command) -> Result<String, CommandError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError {
            command: describe(cmd),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(CommandError {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// `output` for a program and its arguments.
pub fn run<I, S>(program: &str, args: I) -> Result<String, CommandError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    output(Command::new(program).args(args))
}

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
