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

#[derive(clap::Subcommand)]
enum Command {
    /// Build the namespaces and links of a topology file and start its daemons.
    Up {
        /// The topology file (see examples/three-hosts.toml).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Do not start `ferry host` daemons (network, delay elements and RAN only).
        #[arg(long)]
        without_hosts: bool,
    },
    /// Remove a testbed: processes, mounts, namespaces, links (safe to run twice).
    Down {
        /// The topology file the testbed came from.
        #[arg(short = 'f', long = "file", conflicts_with = "name")]
        file: Option<PathBuf>,
        /// The testbed's name (the topology's `name`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show running testbeds: namespaces, addresses, processes and their health.
    Status {
        /// Only this testbed.
        #[arg(long)]
        name: Option<String>,
    },
    /// Measure each link (RTT by ping, throughput by iperf3) against the topology file.
    Check {
        #[arg(short = 'f', long = "file", conflicts_with = "name")]
        file: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
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
        #[arg(long)]
        name: Option<String>,
    },
    /// Re-wire a UE's data path to a cell (what the agent does on each RAN handover; the RAN
    /// itself is told with `ferry ran handover`).
    #[command(hide = true)]
    Attach {
        ue: String,
        cell: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// The background supervisor `up` starts (delay elements, RAN, handover hook).
    #[command(hide = true)]
    Agent {
        #[arg(long)]
        name: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Up {
            file,
            without_hosts,
        } => cmd_up(&file, !without_hosts),
        Command::Down { file, name } => cmd_down(file, name),
        Command::Status { name } => cmd_status(name),
        Command::Check {
            file,
            name,
            link,
            pings,
            seconds,
        } => cmd_check(pick(file, name)?, link, pings, seconds),
        Command::Route {
            app_addr,
            host,
            name,
        } => {
            let s = load(pick(None, name)?)?;
            ferry_testbed::route_app(&s.plan, app_addr, &host)?;
            println!("{app_addr} -> {host}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Attach { ue, cell, name } => {
            let s = load(pick(None, name)?)?;
            ferry_testbed::attach_ue(&s.plan, &ue, &cell)?;
            println!("{ue} -> {cell}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent { name } => agent(&name),
    }
}

/// The testbed a command is about: from `-f FILE`, `--name`, or the only one running.
fn pick(file: Option<PathBuf>, name: Option<String>) -> anyhow::Result<String> {
    if let Some(f) = file {
        let (t, _) = up::read_topology(&f)?;
        return Ok(t.name);
    }
    if let Some(n) = name {
        return Ok(n);
    }
    let running = state::list();
    match running.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no testbed is up; start one with `ferry testbed up -f FILE`"),
        many => bail!(
            "several testbeds are up ({}); choose one with --name",
            many.join(", ")
        ),
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
    };
    let s = up::up(&topo, &text, &opts)?;
    print_state(&s);
    println!(
        "testbed '{}' up in {:.2} s (down: ferry testbed down --name {})",
        s.plan.name,
        t0.elapsed().as_secs_f64(),
        s.plan.name
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_down(file: Option<PathBuf>, name: Option<String>) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let name = match (file, name) {
        (None, None) => pick(None, None).context("`down` needs -f FILE or --name NAME")?,
        (f, n) => pick(f, n)?,
    };
    let r = down::down(&name)?;
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
        "  RAN       {}  (MEC 012 /rni/v2, MEC 013 /location/v2)",
        p.ran_api
    );
    for h in &p.hosts {
        println!(
            "  host {:<8} netns {:<16} api http://{}  state {}",
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
        let ran = ferry_ran::Ran::new(&topo)?;
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
