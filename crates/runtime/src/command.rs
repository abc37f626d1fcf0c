//! Running the external programs a host depends on (runc, criu, ip, iptables) with errors
//! that say which command failed and what it printed.

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

/// Runs `program` with `args`, `input` on its stdin; its stdout, or an error carrying its
/// stderr (e.g. several `ip` commands in one process: `ip -batch -`).
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<String, CommandError> {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let err = |status: String, stderr: String| CommandError {
        command: format!("{program} {}", args.join(" ")),
        status,
        stderr,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| err("not started".into(), e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| err("stdin".into(), e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err("not waited".into(), e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(err(
            out.status.to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
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

/// Like [`output`], with a deadline: once `timeout` has passed, `on_timeout` runs once (to
/// unblock the command the way it can recover from, e.g. closing a stuck connection), and
/// after a further grace period the command is killed. A command that outlived its deadline
/// is an error even if it then succeeds.
pub fn output_until(
    cmd: &mut Command,
    timeout: std::time::Duration,
    on_timeout: impl FnOnce(),
) -> Result<String, CommandError> {
    use std::io::Read;
    const GRACE: std::time::Duration = std::time::Duration::from_secs(15);
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CommandError {
            command: command.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    // Drained on their own threads so a chatty command never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = std::time::Instant::now();
    let mut on_timeout = Some(on_timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        let elapsed = started.elapsed();
        if elapsed > timeout {
            if let Some(f) = on_timeout.take() {
                f();
            }
            if elapsed > timeout + GRACE {
                let _ = child.kill();
                break child.wait().ok();
            }
        }
        // Short: runc's checkpoint and restore run here while an app is frozen, and each
        // poll's wait is added to its downtime.
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default().trim().to_string();
    let timed_out = on_timeout.is_none();
    match status {
        Some(s) if s.success() && !timed_out => Ok(stdout),
        s => Err(CommandError {
            command,
            status: if timed_out {
                format!("timed out after {} s", timeout.as_secs())
            } else {
                s.map(|s| s.to_string()).unwrap_or_else(|| "lost".into())
            },
            stderr: if stderr.is_empty() {
                stdout.trim().to_string()
            } else {
                stderr
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_until_calls_the_timeout_hook_and_reports_the_timeout() {
        let hooked = std::sync::atomic::AtomicBool::new(false);
        let e = output_until(
            Command::new("sleep").arg("1"),
            std::time::Duration::from_millis(100),
            || hooked.store(true, std::sync::atomic::Ordering::SeqCst),
        )
        .unwrap_err();
        assert!(hooked.load(std::sync::atomic::Ordering::SeqCst));
        assert!(e.status.contains("timed out"), "{e}");
        let ok = output_until(
            Command::new("echo").arg("hi"),
            std::time::Duration::from_secs(5),
            || panic!("no timeout expected"),
        )
        .unwrap();
        assert_eq!(ok.trim(), "hi");
    }
}
