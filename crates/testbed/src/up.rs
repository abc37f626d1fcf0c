//! Brings a testbed up: checks, plans, builds the network, starts the agent (delay elements
//! and RAN) and one `ferry host` daemon per MEC host, and records what runs where. On any
//! failure it removes what it made (`down`), so a failed `up` leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use ferry_topology::Topology;

use crate::error::TestbedError;
use crate::plan::{pki_dir, run_dir, Plan};
use crate::state::{Proc, State};
use crate::{down, http, net};

/// How long the agent and the hosts get to become ready.
const AGENT_READY: Duration = Duration::from_secs(10);
const HOSTS_READY: Duration = Duration::from_secs(30);

pub struct UpOptions {
    /// The `ferry` binary to run the agent and the hosts with.
    pub ferry_bin: PathBuf,
    /// Start a `ferry host` daemon per host (off: network, delay elements and RAN only).
    pub start_hosts: bool,
    /// More options for every `ferry host` (a benchmark's `--allow-plain-pages`).
    pub host_args: Vec<String>,
}

/// The file the agent creates once its delay elements and RAN run.
pub fn agent_ready_file(name: &str) -> PathBuf {
    PathBuf::from(run_dir(name)).join("agent.ready")
}

/// The copy of the topology file the agent reads.
pub fn topology_copy(name: &str) -> PathBuf {
    PathBuf::from(run_dir(name)).join("topology.toml")
}

pub fn up(topo: &Topology, topo_text: &str, opts: &UpOptions) -> Result<State, TestbedError> {
    let plan = Plan::new(topo);
    net::precheck(&plan)?;
    // From here on, undo everything on failure.
    match try_up(plan, topo_text, opts) {
        Ok(s) => Ok(s),
        Err(e) => {
            if let Err(de) = down::down(&topo.name) {
                tracing::warn!(error = %de, "cleanup after a failed up was incomplete");
            }
            Err(e)
        }
    }
}

fn try_up(plan: Plan, topo_text: &str, opts: &UpOptions) -> Result<State, TestbedError> {
    let name = plan.name.clone();
    let rdir = run_dir(&name);
    std::fs::create_dir_all(&rdir).map_err(|e| TestbedError::io(format!("creating {rdir}"), e))?;
    std::fs::write(topology_copy(&name), topo_text)
        .map_err(|e| TestbedError::io("writing the topology copy", e))?;
    net::build_namespaces(&plan)?;
    let mode = net::detect_delay_mode(&plan.gw_netns);
    let mut state = State {
        plan,
        delay_mode: mode,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        procs: Vec::new(),
    };
    state.save()?;
    net::build(&state.plan, mode)?;

    // Before the agent: its RAN serves TLS with the testbed's own certificates.
    let operator = make_pki(&state.plan)?;
    let agent_log = format!("{rdir}/agent.log");
    let mut agent = spawn(
        Command::new(&opts.ferry_bin).args(["testbed", "agent", "--name", &name]),
        &agent_log,
    )?;
    state.procs.push(Proc {
        role: "agent (delay elements, RAN)".into(),
        pid: agent.id(),
        netns: "(root)".into(),
        log: agent_log.clone(),
        api: Some(state.plan.ran_api.clone()),
    });
    state.save()?;
    wait_agent(&name, &mut agent, &agent_log)?;

    if opts.start_hosts {
        let pki = pki_dir(&name);
        let mut children = Vec::new();
        for h in &state.plan.hosts {
            std::fs::create_dir_all(&h.state_dir)
                .map_err(|e| TestbedError::io(format!("creating {}", h.state_dir), e))?;
            let log = format!("{rdir}/host-{}.log", h.name);
            let child = spawn(
                Command::new(&opts.ferry_bin)
                    .args([
                        "host",
                        "--name",
                        &h.name,
                        "--netns",
                        &h.netns,
                        "--listen",
                        &h.api,
                        "--state-dir",
                        &h.state_dir,
                        "--bridge",
                        &h.bridge,
                        "--gateway",
                        &h.gateway,
                        "--tls-dir",
                        &pki,
                    ])
                    .args(&opts.host_args),
                &log,
            )?;
            state.procs.push(Proc {
                role: format!("ferry host {}", h.name),
                pid: child.id(),
                netns: h.netns.clone(),
                log: log.clone(),
                api: Some(h.api.clone()),
            });
            children.push((h.api.clone(), child, log));
        }
        state.save()?;
        wait_hosts(&mut children, &operator)?;
    }
    state.save()?;
    Ok(state)
}

/// Starts a daemon in its own process group (so the CLI's Ctrl-C does not reach it) with
/// its output in `log`; it outlives `up`.
fn spawn(cmd: &mut Command, log: &str) -> Result<Child, TestbedError> {
    let out = File::create(log).map_err(|e| TestbedError::io(format!("creating {log}"), e))?;
    let err = out
        .try_clone()
        .map_err(|e| TestbedError::io(format!("opening {log}"), e))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| TestbedError::io(format!("starting {:?}", cmd.get_program()), e))
}

fn tail(log: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn wait_agent(name: &str, agent: &mut Child, log: &str) -> Result<(), TestbedError> {
    let start = Instant::now();
    let ready = agent_ready_file(name);
    while !ready.exists() {
        if let Ok(Some(status)) = agent.try_wait() {
            return Err(TestbedError::Invalid(format!(
                "the testbed agent exited ({status}): {} (log: {log})",
                tail(log)
            )));
        }
        if start.elapsed() > AGENT_READY {
            return Err(TestbedError::Timeout {
                what: "the testbed agent".into(),
                secs: AGENT_READY.as_secs(),
                detail: format!("{} (log: {log})", tail(log)),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The testbed's PKI: a CA, each host's certificate for its API address, and the
/// certificates of control, the RAN and the operator (the CLI, the demo's checks). Returns the
/// operator's client configuration.
fn make_pki(plan: &Plan) -> Result<Arc<rustls::ClientConfig>, TestbedError> {
    use ferry_tls::{Identity, Pki, San, TlsFiles, Validity};
    let dir = PathBuf::from(pki_dir(&plan.name));
    let tls = |e: ferry_tls::TlsError| TestbedError::Invalid(format!("testbed PKI: {e}"));
    let pki = Pki::init(
        &dir,
        &format!("ferry testbed {}", plan.name),
        Validity::days(30),
    )
    .map_err(tls)?;
    for h in &plan.hosts {
        let ip = h
            .api
            .rsplit_once(':')
            .and_then(|(ip, _)| ip.parse().ok())
            .ok_or_else(|| TestbedError::Invalid(format!("host API address {}", h.api)))?;
        pki.issue(
            &Identity::Host(h.name.clone()),
            &[San::Ip(ip)],
            Validity::days(30),
        )
        .map_err(tls)?;
    }
    // The RAN and control serve on the management address (control also on loopback, for
    // a control plane started next to the CLI).
    let mgmt: std::net::IpAddr = plan
        .ran_api
        .rsplit_once(':')
        .and_then(|(ip, _)| ip.parse().ok())
        .ok_or_else(|| TestbedError::Invalid(format!("RAN API address {}", plan.ran_api)))?;
    let local = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    pki.issue(&Identity::Ran, &[San::Ip(mgmt)], Validity::days(30))
        .map_err(tls)?;
    pki.issue(
        &Identity::Control,
        &[San::Ip(mgmt), San::Ip(local)],
        Validity::days(30),
    )
    .map_err(tls)?;
    pki.issue(&Identity::Operator, &[], Validity::days(30))
        .map_err(tls)?;
    ferry_tls::client_config(&TlsFiles::in_dir(&dir, &Identity::Operator)).map_err(tls)
}

/// The operator's client configuration of a testbed that is up (for health checks).
pub fn operator_tls(name: &str) -> Option<Arc<rustls::ClientConfig>> {
    let dir = PathBuf::from(pki_dir(name));
    let files = ferry_tls::TlsFiles::in_dir(&dir, &ferry_tls::Identity::Operator);
    ferry_tls::client_config(&files).ok()
}

/// Waits until every host answers `GET /ferry/v1/health` with 200.
fn wait_hosts(
    children: &mut [(String, Child, String)],
    operator: &Arc<rustls::ClientConfig>,
) -> Result<(), TestbedError> {
    let start = Instant::now();
    let mut pending: Vec<usize> = (0..children.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            let (api, child, log) = &mut children[i];
            if let Ok(Some(status)) = child.try_wait() {
                return Err(TestbedError::Invalid(format!(
                    "`ferry host` for {api} exited ({status}): {} (log: {log})",
                    tail(log)
                )));
            }
            let ok = http::get_status(
                api,
                "/ferry/v1/health",
                Duration::from_millis(500),
                Some(operator),
            )
            .map(|c| c == 200);
            if !matches!(ok, Ok(true)) {
                still.push(i);
            }
        }
        pending = still;
        if !pending.is_empty() {
            if start.elapsed() > HOSTS_READY {
                let (api, _, log) = &children[pending[0]];
                return Err(TestbedError::Timeout {
                    what: format!("`ferry host` at {api}"),
                    secs: HOSTS_READY.as_secs(),
                    detail: format!(
                        "GET /ferry/v1/health did not answer 200; {} (log: {log})",
                        tail(log)
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Reads and validates a topology file, returning it and its text.
pub fn read_topology(path: &Path) -> Result<(Topology, String), TestbedError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TestbedError::io(format!("cannot read {}", path.display()), e))?;
    let topo = Topology::parse(&text)
        .map_err(|e| TestbedError::Invalid(format!("{}: {e}", path.display())))?;
    Ok((topo, text))
}
