//! The state file of a running testbed (`/run/ferry/testbed/<name>/state.json`): the plan and
//! what runs where (pids, logs), so `status` can show it and `down` can remove it. `down`
//! does not depend on it: it derives what to delete from the name prefix as well.
//!
//! Things that change while the testbed runs are kept in one small file each, written by
//! one writer: `ues/<ue>` (serving cell, by whoever re-wires the UE) and `routes/<addr>`
//! (host of an app instance, by `route_app`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::TestbedError;
use crate::plan::{run_dir, Plan};

/// How link delays are made.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DelayMode {
    /// The kernel's netem qdisc.
    Netem,
    /// The userspace delay element in the testbed agent (no netem on this kernel).
    Forwarder,
}

/// A background process the testbed started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    pub role: String,
    pub pid: u32,
    pub netns: String,
    pub log: String,
    /// Where it serves its API, if it has one.
    pub api: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub plan: Plan,
    pub delay_mode: DelayMode,
    pub started_unix: u64,
    pub procs: Vec<Proc>,
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(run_dir(name)).join("state.json")
}

impl State {
    pub fn load(name: &str) -> Result<State, TestbedError> {
        let p = path(name);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TestbedError::NotUp(name.to_string()))
            }
            Err(e) => return Err(TestbedError::io(format!("reading {}", p.display()), e)),
        };
        serde_json::from_str(&text).map_err(|e| {
            TestbedError::Invalid(format!(
                "{} is unreadable ({e}); run `ferry testbed down --name {name}`",
                p.display()
            ))
        })
    }

    /// Writes the file atomically (temp file + rename).
    pub fn save(&self) -> Result<(), TestbedError> {
        let p = path(&self.plan.name);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| TestbedError::Invalid(format!("cannot encode state: {e}")))?;
        std::fs::write(&tmp, text)
            .map_err(|e| TestbedError::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &p)
            .map_err(|e| TestbedError::io(format!("writing {}", p.display()), e))
    }
}

/// Names of the testbeds that have a state file.
pub fn list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(crate::plan::RUN_ROOT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("state.json").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn write_kv(name: &str, dir: &str, key: &str, value: &str) -> Result<(), TestbedError> {
    let d = PathBuf::from(run_dir(name)).join(dir);
    std::fs::create_dir_all(&d)
        .map_err(|e| TestbedError::io(format!("creating {}", d.display()), e))?;
    let f = d.join(key);
    std::fs::write(&f, value).map_err(|e| TestbedError::io(format!("writing {}", f.display()), e))
}

fn read_kv(name: &str, dir: &str) -> BTreeMap<String, String> {
    let d = PathBuf::from(run_dir(name)).join(dir);
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if let (Ok(k), Ok(v)) = (
                e.file_name().into_string(),
                std::fs::read_to_string(e.path()),
            ) {
                m.insert(k, v.trim().to_string());
            }
        }
    }
    m
}

/// Records the serving cell of a UE.
pub fn set_ue_cell(name: &str, ue: &str, cell: &str) -> Result<(), TestbedError> {
    write_kv(name, "ues", ue, cell)
}

/// Serving cell per UE.
pub fn ue_cells(name: &str) -> BTreeMap<String, String> {
    read_kv(name, "ues")
}

/// Records the host an app address is routed to.
pub fn set_app_route(name: &str, addr: &str, host: &str) -> Result<(), TestbedError> {
    write_kv(name, "routes", addr, host)
}

/// Host per app address.
pub fn app_routes(name: &str) -> BTreeMap<String, String> {
    read_kv(name, "routes")
}
