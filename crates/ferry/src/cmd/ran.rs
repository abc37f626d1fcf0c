//! `ferry ran`: runs the emulated RAN daemon (MEC 012 RNIS + MEC 013 Location over a topology
//! file), or talks to a running one: list UEs, force a handover.

use anyhow::{bail, Context};
use clap::Subcommand;
use ferry_ran::admin::{HandoverView, UeView};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the daemon listens unless told otherwise (7012: MEC 012).
const DEFAULT_LISTEN: &str = "127.0.0.1:7012";
const DEFAULT_RAN: &str = "http://127.0.0.1:7012";

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Without a subcommand, `ferry ran --topology FILE` runs the daemon (same as `ferry ran serve`).
With a [radio] table in the topology, walking UEs hand over by the A3 event of a path-loss
model and every UE reports its measurements (docs/radio.md).
It serves /rni/v2 (MEC 012), /location/v2 (MEC 013) and /ferry/ran/v1 (ferry's control) and
prints `ferry ran: listening on http://ADDR` on stdout once it accepts connections.

Examples:
  ferry ran --topology examples/three-hosts.toml --listen 127.0.0.1:7012
  ferry ran ues
  ferry ran handover ue1 cell2 --ran http://127.0.0.1:7012"
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the RAN daemon (the default).
    Serve(ServeArgs),
    /// Force a handover of UE to CELL on a running RAN and print it.
    Handover {
        ue: String,
        cell: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the UEs of a running RAN with their cell and zone (MEC host).
    Ues {
        #[command(flatten)]
        conn: Conn,
    },
}

/// How the CLI reaches a running RAN.
#[derive(clap::Args)]
struct Conn {
    #[arg(long, env = "FERRY_RAN", default_value = DEFAULT_RAN)]
    ran: String,
    /// Call it as `operator` with the certificates of `ferry pki` in DIR, for an https://
    /// RAN.
    #[arg(long, env = "FERRY_TLS_DIR")]
    tls_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Topology file (TOML): cells, hosts, UEs and their traces or waypoints.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Do not drive the UEs' traces and waypoints: handovers only when forced.
    #[arg(long)]
    no_trace: bool,
    /// Serve TLS with the certificates of `ferry pki` in DIR (ca.crt, ran.crt/.key): ferry's
    /// parts call with their certificates, applications with access tokens of ferry control.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address without --tls-dir: no TLS and no access
    /// tokens. For a lab only.
    #[arg(long)]
    insecure: bool,
    /// Notifications queued per subscription; beyond it MEC 012 CellChange notifications
    /// merge per UE (the latest cell wins, `ferryMergedHandovers` counts the hops) and the
    /// others are dropped and counted (`ferryLostNotifications`).
    #[arg(long, default_value_t = default_notify_queue(), value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    notify_queue: u32,
    /// Period of every UE's measurement reports (ms), overriding the topology's
    /// `[radio] meas_period_ms` (default 240). Only with a `[radio]` table (docs/radio.md).
    #[arg(long, value_parser = clap::value_parser!(u64).range(ferry_ran::topology::MEAS_PERIOD_MS))]
    meas_period_ms: Option<u64>,
    /// Subscriptions (MEC 012 and 013 together) one OAuth client (an app) may hold.
    #[arg(long, default_value_t = ferry_ran::DEFAULT_MAX_SUBSCRIPTIONS)]
    max_subscriptions_per_client: usize,
}

fn default_notify_queue() -> u32 {
    ferry_ran::Options::default().notify_queue as u32
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match args.command {
        None => rt.block_on(serve(args.serve)),
        Some(Command::Serve(s)) => rt.block_on(serve(s)),
        Some(Command::Handover { ue, cell, conn }) => rt.block_on(handover(&conn, &ue, &cell)),
        Some(Command::Ues { conn }) => rt.block_on(ues(&conn)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = args.topology else {
        bail!("no topology given: run `ferry ran --topology FILE` (see `ferry ran --help`)");
    };
    let topo = ferry_ran::topology::Topology::from_file(&path)
        .with_context(|| format!("topology {}", path.display()))?;
    let files = match &args.tls_dir {
        Some(dir) => Some(super::pki::own_files(dir, &ferry_tls::Identity::Ran)?),
        None => None,
    };
    let options = ferry_ran::Options {
        notify_queue: args.notify_queue as usize,
        meas_period_ms: args.meas_period_ms,
    };
    if args.meas_period_ms.is_some() && topo.radio.is_none() {
        bail!(
            "--meas-period-ms needs the radio model: add a [radio] table to {} (see docs/radio.md)",
            path.display()
        );
    }
    let ran = ferry_ran::Ran::with_options(&topo, files.as_ref(), options)
        .with_context(|| format!("topology {}", path.display()))?;
    ran.set_max_subscriptions_per_client(args.max_subscriptions_per_client);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (pick another with --listen)",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .context("listening socket has no address")?;
    if files.is_none() && !addr.ip().is_loopback() {
        if !args.insecure {
            bail!(
                "refusing to serve {addr} without TLS: pass --tls-dir DIR (certificates of `ferry pki`), or --insecure for a lab where anyone who reaches it may use every API"
            );
        }
        tracing::warn!(%addr, "--insecure: serving MEC 012/013 without TLS or access tokens");
    }
    let scheme = if ran.tls() { "https" } else { "http" };
    // Printed on stdout (logs go to stderr) so scripts and tests can read the port.
    println!("ferry ran: listening on {scheme}://{addr}");
    let trace = (!args.no_trace).then(|| ran.start_trace());
    ferry_ran::serve(ran, listener, super::shutdown_signal())
        .await
        .context("RAN server failed")?;
    if let Some(t) = trace {
        t.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns an error answer (ProblemDetails) of the RAN into a one-line error.
async fn check(resp: reqwest::Response, ran: &str) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<mec_api::ProblemDetails>(&text)
        .ok()
        .and_then(|p| p.detail)
        .unwrap_or(text);
    bail!("RAN at {ran} answered {status}: {detail}")
}

impl Conn {
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        match &self.tls_dir {
            Some(dir) => {
                let tls = super::pki::client_tls(dir, &ferry_tls::Identity::Operator)?;
                b = b.use_preconfigured_tls((*tls).clone());
            }
            None if self.ran.starts_with("https://") => bail!(
                "{} is served over TLS: pass --tls-dir DIR with the operator's certificates",
                self.ran
            ),
            None => {}
        }
        b.build().context("cannot build the HTTP client")
    }
}

fn unreachable(ran: &str) -> String {
    format!("cannot reach the RAN at {ran} (is `ferry ran` running? pass --ran URL)")
}

async fn handover(conn: &Conn, ue: &str, cell: &str) -> anyhow::Result<ExitCode> {
    let ran = conn.ran.as_str();
    let url = format!(
        "{}/ferry/ran/v1/ues/{ue}/handover",
        ran.trim_end_matches('/')
    );
    let resp = conn
        .client()?
        .post(&url)
        .json(&serde_json::json!({ "cell": cell }))
        .send()
        .await
        .with_context(|| unreachable(ran))?;
    let h: HandoverView = check(resp, ran)
        .await?
        .json()
        .await
        .context("unexpected answer from the RAN")?;
    println!(
        "{} ({}): {} -> {} at {}.{:09}",
        h.ue, h.address, h.from_cell, h.to_cell, h.at.seconds, h.at.nano_seconds
    );
    Ok(ExitCode::SUCCESS)
}

async fn ues(conn: &Conn) -> anyhow::Result<ExitCode> {
    let ran = conn.ran.as_str();
    let url = format!("{}/ferry/ran/v1/ues", ran.trim_end_matches('/'));
    let resp = conn
        .client()?
        .get(&url)
        .send()
        .await
        .with_context(|| unreachable(ran))?;
    let list: Vec<UeView> = check(resp, ran)
        .await?
        .json()
        .await
        .context("unexpected answer from the RAN")?;
    println!(
        "{:<16} {:<16} {:<16} {:<16} CELL_ID",
        "UE", "ADDRESS", "CELL", "ZONE"
    );
    for u in list {
        println!(
            "{:<16} {:<16} {:<16} {:<16} {}",
            u.name, u.address, u.cell, u.zone, u.ecgi.cell_id
        );
    }
    Ok(ExitCode::SUCCESS)
}
