//! The data plane seam: where MEC 011 traffic rules take effect.
//!
//! ferry steers a UE's packets for an app instance by routing the instance's address to the
//! MEC host that runs it (on the testbed: `ferry testbed route APP_ADDR HOST`). `DataPlane` is
//! that one operation; `CommandDataPlane` runs a configured command, `MemoryDataPlane` only
//! records (tests, or a control plane without a data plane to drive).

use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// The data plane refused or failed to apply a rule.
#[derive(Debug, thiserror::Error)]
#[error("data plane: {0}")]
pub struct DataPlaneError(pub String);

/// Applies traffic steering.
pub trait DataPlane: Send + Sync {
    /// Steers traffic for `app` (the instance's IPv4 address) to MEC host `host`.
    fn route(&self, app: Ipv4Addr, host: &str) -> BoxFuture<'_, Result<(), DataPlaneError>>;
}

/// Runs `PROGRAM ARGS... APP_ADDR HOST` and expects exit status 0.
pub struct CommandDataPlane {
    program: String,
    args: Vec<String>,
}

impl CommandDataPlane {
    /// `command` is split on whitespace: e.g. `"ferry testbed route"`.
    pub fn new(command: &str) -> Result<CommandDataPlane, DataPlaneError> {
        let mut words = command.split_whitespace().map(str::to_string);
        let program = words
            .next()
            .ok_or_else(|| DataPlaneError("the data plane command is empty".into()))?;
        Ok(CommandDataPlane {
            program,
            args: words.collect(),
        })
    }
}

impl DataPlane for CommandDataPlane {
    fn route(&self, app: Ipv4Addr, host: &str) -> BoxFuture<'_, Result<(), DataPlaneError>> {
        let host = host.to_string();
        Box::pin(async move {
            let out = tokio::process::Command::new(&self.program)
                .args(&self.args)
                .arg(app.to_string())
                .arg(&host)
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| DataPlaneError(format!("cannot run '{}': {e}", self.program)))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(DataPlaneError(format!(
                    "'{} {} {app} {host}' failed ({}): {}",
                    self.program,
                    self.args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        })
    }
}

/// Records routes in memory: the current host of each app address, and every call in order.
#[derive(Default)]
pub struct MemoryDataPlane {
    state: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    routes: BTreeMap<Ipv4Addr, String>,
    calls: Vec<(Ipv4Addr, String)>,
}

impl MemoryDataPlane {
    pub fn routes(&self) -> BTreeMap<Ipv4Addr, String> {
        self.state
            .lock()
            .map(|s| s.routes.clone())
            .unwrap_or_default()
    }
    pub fn calls(&self) -> Vec<(Ipv4Addr, String)> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }
}

impl DataPlane for MemoryDataPlane {
    fn route(&self, app: Ipv4Addr, host: &str) -> BoxFuture<'_, Result<(), DataPlaneError>> {
        if let Ok(mut s) = self.state.lock() {
            s.routes.insert(app, host.to_string());
            s.calls.push((app, host.to_string()));
        }
        tracing::info!(%app, host, "route (in-memory data plane)");
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_gets_address_and_host_and_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("calls");
        let script = dir.path().join("route.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3\" >> {}\n[ \"$3\" != bad ]\n",
                out.display()
            ),
        )
        .unwrap();
        let dp = CommandDataPlane::new(&format!("sh {} extra", script.display())).unwrap();
        dp.route(Ipv4Addr::new(10, 200, 0, 2), "edge-a")
            .await
            .unwrap();
        let e = dp
            .route(Ipv4Addr::new(10, 200, 0, 2), "bad")
            .await
            .unwrap_err();
        assert!(e.0.contains("failed"), "{e}");
        let calls = std::fs::read_to_string(&out).unwrap();
        assert_eq!(calls, "extra 10.200.0.2 edge-a\nextra 10.200.0.2 bad\n");
        assert!(CommandDataPlane::new("  ").is_err());
    }
}
