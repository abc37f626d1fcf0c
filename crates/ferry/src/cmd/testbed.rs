//! `ferry testbed`: bring an emulated multi-host edge network up on this machine, show it,
//! measure its links, switch app routes, and take it down. The hidden `agent` subcommand is
//! the background supervisor `up` starts: it runs the delay elements and the RAN, and
//! re-wires a UE's data path on each handover. The work is in the `ferry-testbed` crate.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry_testbed::{check, down, state, up, State};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Which testbed a command is about: the topology file it was brought up from or its name
/// (the file's `name`), one of the two. Checked in [`Target::name`] rather than by clap, so
/// the error is one line that names the fix.
#[derive(clap::Args)]
struct Target {
    /// The topology file (see examples/three-hosts.toml); its `name` names the testbed.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// The testbed's name (the topology's `name`).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

impl Target {
    /// The named testbed, `None` when neither `-f` nor `--name` was given.
    fn name_if_given(self, verb: &str) -> anyhow::Result<Option<String>> {
        match (self.file, self.name) {
            (Some(_), Some(_)) => {
                bail!("`ferry testbed {verb}` takes -f FILE or --name NAME, not both; drop one")
            }
            (Some(f), None) => Ok(Some(up::read_topology(&f)?.0.name)),
            (None, Some(n)) => {
                // The name becomes a path under /run/ferry/testbed and a prefix `down`
                // deletes by: only what a topology may be called.
                ferry_testbed::topology::topology_name_problem(&n)
                    .map_err(|p| anyhow::anyhow!("--name: {p}"))?;
                Ok(Some(n))
            }
            (None, None) => Ok(None),
        }
    }

    /// The named testbed; neither `-f` nor `--name` is an error (never a guess: another
    /// testbed on this machine may be someone else's).
    fn name(self, verb: &str) -> anyhow::Result<String> {
        match self.name_if_given(verb)? {
            Some(n) => Ok(n),
            None => {
                let running = state::list();
                let hint = if running.is_empty() {
                    "none is up".to_string()
                } else {
                    format!("up now: {}", running.join(", "))
                };
                bail!("`ferry testbed {verb}` needs a testbed: add -f FILE or --name NAME ({hint})")
            }
        }
    }
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build the namespaces and links of a topology file and start its daemons.
    Up {
        /// The topology file (see examples/three-hosts.toml); its `name` names the testbed.
        /// Required.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Not for `up` (it is built from a file); accepted so the error can say so.
        #[arg(long, value_name = "NAME", hide = true)]
        name: Option<String>,
        /// Do not start `ferry host` daemons (network, delay elements and RAN only).
        #[arg(long)]
        without_hosts: bool,
    },
    /// Remove a testbed: processes, mounts, namespaces, links (safe to run twice).
    Down {
        #[command(flatten)]
        target: Target,
    },
    /// Show running testbeds (all of them without -f or --name): namespaces, addresses,
    /// processes and their health.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Measure each link (RTT by ping, throughput by iperf3) against the topology file.
    Check {
        #[command(flatten)]
        target: Target,
        /// Only links whose label contains this (e.g. `mec1-mec2`, `ue1@`).
        #[arg(long)]
        link: Option<String>,
        /// Pings per link (the median is reported).
        #[arg(long, default_value_t = 20)]
        pings: u32,
        /// Seconds of iperf3 per shaped link (after 1 s of ramp-up).
        #[arg(long, default_value_t = 3)]
        seconds: u32,
    },
    /// Route an app instance's address to the MEC host that runs it.
    Route {
        /// The instance's address (in the topology's app_subnet).
        app_addr: Ipv4Addr,
        /// The MEC host.
        host: String,
        #[command(flatten)]
        target: Target,
    },
    /// Re-wire a UE's data path to a cell (what the agent does on each RAN handover; the RAN
    /// itself is told with `ferry ran handover`).
    #[command(hide = true)]
    Attach {
        ue: String,
        cell: String,
        #[command(flatten)]
        target: Target,
    },
    /// The background supervisor `up` starts (delay elements, RAN, handover hook). `up`
    /// starts it with `--name`, which is how `down` finds it.
    #[command(hide = true)]
    Agent {
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Up {
            file,
            name,
            without_hosts,
        } => {
            let file = match (file, name) {
                (Some(f), None) => f,
                _ => bail!(
                    "`ferry testbed up` builds a testbed from its topology file: give -f FILE only (the file's `name` names the testbed)"
                ),
            };
            cmd_up(&file, !without_hosts)
        }
        Command::Down { target } => cmd_down(&target.name("down")?),
        Command::Status { target } => cmd_status(target.name_if_given("status")?),
        Command::Check {
            target,
            link,
            pings,
            seconds,
        } => cmd_check(target.name("check")?, link, pings, seconds),
        Command::Route {
            app_addr,
            host,
            target,
        } => {
            let s = load(target.name("route")?)?;
            ferry_testbed::route_app(&s.plan, app_addr, &host)?;
            println!("{app_addr} -> {host}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Attach { ue, cell, target } => {
            let s = load(target.name("attach")?)?;
            ferry_testbed::attach_ue(&s.plan, &ue, &cell)?;
            println!("{ue} -> {cell}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent { target } => agent(&target.name("agent")?),
    }
}

fn load(name: String) -> anyhow::Result<State> {
    Ok(State::load(&name)?)
}

fn cmd_up(file: &std::path::Path, hosts: bool) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let (topo, text) = up::read_topology(file)?;
    let opts = up::UpOptions {
        ferry_bin: std::env::current_exe().context("cannot find the ferry binary")?,
        start_hosts: hosts,
        host_args: Vec::new(),
    };
    let s = up::up(&topo, &text, &opts)?;
    print_state(&s);
    println!(
        "testbed '{}' up in {:.2} s (down: ferry testbed down --name {} or -f FILE)",
        s.plan.name,
        t0.elapsed().as_secs_f64(),
        s.plan.name
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_down(name: &str) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let r = down::down(name)?;
    println!(
        "testbed '{name}' down in {:.2} s: {} processes, {} mounts, {} namespaces, {} links removed",
        t0.elapsed().as_secs_f64(),
        r.processes,
        r.mounts,
        r.namespaces,
        r.links
    );
    Ok(ExitCode::SUCCESS)
}

fn print_state(s: &State) {
    let p = &s.plan;
    println!("testbed {}  (delays: {:?})", p.name, s.delay_mode);
    println!(
        "  gateway   netns {:<16} mgmt {} <-> root {} ({})",
        p.gw_netns, p.mgmt_gw.addr, p.mgmt_root.addr, p.mgmt_root.ifname
    );
    println!(
        "  RAN       https://{}  (MEC 012 /rni/v2, MEC 013 /location/v2)",
        p.ran_api
    );
    for h in &p.hosts {
        println!(
            "  host {:<8} netns {:<16} api https://{}  state {}",
            h.name, h.netns, h.api, h.state_dir
        );
    }
    let cells = state::ue_cells(&p.name);
    for u in &p.ues {
        let cell = cells.get(&u.name).map(String::as_str).unwrap_or("?");
        println!(
            "  ue   {:<8} netns {:<16} address {}  cell {}",
            u.name, u.netns, u.address, cell
        );
    }
    for (addr, host) in state::app_routes(&p.name) {
        println!("  app  {addr:<15} -> {host}");
    }
    for pr in &s.procs {
        let alive = std::path::Path::new(&format!("/proc/{}", pr.pid)).exists();
        let health = match (&pr.api, pr.role.starts_with("ferry host")) {
            (Some(api), true) => match ferry_testbed::http::get_status(
                api,
                "/ferry/v1/health",
                Duration::from_millis(500),
                ferry_testbed::up::operator_tls(&p.name).as_ref(),
            ) {
                Ok(c) => format!("health {c}"),
                Err(e) => format!("health: {e}"),
            },
            _ => String::new(),
        };
        println!(
            "  pid {:<7} {:<5} {:<28} netns {:<14} {}  log {}",
            pr.pid,
            if alive { "up" } else { "DEAD" },
            pr.role,
            pr.netns,
            health,
            pr.log
        );
    }
}

fn cmd_status(name: Option<String>) -> anyhow::Result<ExitCode> {
    let names = match name {
        Some(n) => vec![n],
        None => state::list(),
    };
    if names.is_empty() {
        println!("no testbed is up");
    }
    for n in names {
        print_state(&State::load(&n)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_check(
    name: String,
    filter: Option<String>,
    pings: u32,
    secs: u32,
) -> anyhow::Result<ExitCode> {
    let s = load(name)?;
    println!(
        "{:<16} {:>9} {:>9} {:>5}   {:>10} {:>14} {:>5}",
        "link", "RTT conf", "RTT meas", "", "rate conf", "rate meas", ""
    );
    let mut all_ok = true;
    for l in check::links_to_check(&s.plan) {
        if filter
            .as_ref()
            .is_some_and(|f| !l.label.contains(f.as_str()))
        {
            continue;
        }
        let c = check::check_link(l, pings, secs)?;
        all_ok &= c.ok();
        let verdict = |ok: bool| if ok { "pass" } else { "FAIL" };
        let measured = c.rate_measured_mbit.zip(c.rate_measured_reverse_mbit);
        let (rc, rm, rv) = match (c.rate_configured_mbit, measured, c.rate_ok) {
            (Some(cf), Some((m, r)), Some(ok)) => (
                format!("{cf:.0} Mbit"),
                format!("{m:.0}/{r:.0} Mbit"),
                verdict(ok),
            ),
            _ => ("-".into(), "-".into(), ""),
        };
        println!(
            "{:<16} {:>6.2} ms {:>6.2} ms {:>5}   {:>10} {:>14} {:>5}",
            c.label,
            c.rtt_configured_ms,
            c.rtt_measured_ms,
            verdict(c.rtt_ok),
            rc,
            rm,
            rv
        );
    }
    println!(
        "tolerance {:.0}%; RTT is the median of {pings} pings, rate is iperf3 TCP a->b/b->a over {secs} s",
        check::TOLERANCE * 100.0
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The supervisor: delay elements (threads), the RAN API on the management address, and the
/// handover hook. Runs until SIGTERM (from `down`) or Ctrl-C.
fn agent(name: &str) -> anyhow::Result<ExitCode> {
    let state = State::load(name)?;
    let topo = ferry_testbed::topology::Topology::from_file(&up::topology_copy(name))?;
    let n = ferry_testbed::agent::start_delay_elements(&state)?;
    tracing::info!(testbed = name, delay_elements = n, "delay elements running");
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let pki = std::path::PathBuf::from(ferry_testbed::plan::pki_dir(name));
        let files = super::pki::own_files(&pki, &ferry_tls::Identity::Ran)?;
        let ran = ferry_ran::Ran::with_tls(&topo, Some(&files))?;
        let listener = tokio::net::TcpListener::bind(&state.plan.ran_api)
            .await
            .with_context(|| format!("cannot listen on {} for the RAN", state.plan.ran_api))?;
        let mut events = ran.subscribe();
        let plan = state.plan.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(h) => {
                        let plan = plan.clone();
                        let res = tokio::task::spawn_blocking(move || {
                            ferry_testbed::agent::on_handover(&plan, &h.ue, &h.to_cell)
                        })
                        .await;
                        match res {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::error!(error = %e, "cannot re-wire UE after handover")
                            }
                            Err(e) => tracing::error!(error = %e, "handover hook failed"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "handover hook lagged")
                    }
                    Err(_) => break,
                }
            }
        });
        let _trace = ran.start_trace();
        std::fs::write(up::agent_ready_file(name), std::process::id().to_string())
            .context("cannot write the ready file")?;
        tracing::info!(api = %state.plan.ran_api, "RAN serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot handle SIGTERM")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        ferry_ran::serve(ran, listener, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
