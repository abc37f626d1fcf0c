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
        #[arg(long, env = "FERRY_RAN", default_value = DEFAULT_RAN)]
        ran: String,
    },
    /// List the UEs of a running RAN with their cell and zone (MEC host).
    Ues {
        #[arg(long, env = "FERRY_RAN", default_value = DEFAULT_RAN)]
        ran: String,
    },
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match args.command {
        None => rt.block_on(serve(args.serve)),
        Some(Command::Serve(s)) => rt.block_on(serve(s)),
        Some(Command::Handover { ue, cell, ran }) => rt.block_on(handover(&ran, &ue, &cell)),
        Some(Command::Ues { ran }) => rt.block_on(ues(&ran)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = args.topology else {
        bail!("no topology given: run `ferry ran --topology FILE` (see `ferry ran --help`)");
    };
    let topo = ferry_ran::topology::Topology::from_file(&path)
        .with_context(|| format!("topology {}", path.display()))?;
    let ran = ferry_ran::Ran::new(&topo).with_context(|| format!("topology {}", path.display()))?;
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
    // Printed on stdout (logs go to stderr) so scripts and tests can read the port.
    println!("ferry ran: listening on http://{addr}");
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

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")
}

fn unreachable(ran: &str) -> String {
    format!("cannot reach the RAN at {ran} (is `ferry ran` running? pass --ran URL)")
}

async fn handover(ran: &str, ue: &str, cell: &str) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/ferry/ran/v1/ues/{ue}/handover",
        ran.trim_end_matches('/')
    );
    let resp = client()?
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

async fn ues(ran: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/ferry/ran/v1/ues", ran.trim_end_matches('/'));
    let resp = client()?
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
