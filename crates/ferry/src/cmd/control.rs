//! `ferry control`: runs the MEC control plane daemon (MEC 010-2 orchestrator, MEC 011 and
//! MEC 021 platform services, persistent store) over the given MEC hosts, or talks to a
//! running one: onboard an app package, instantiate an app.

use anyhow::{bail, Context};
use ferry_control::client::{ControlClient, Placement};
use ferry_control::file_config::{parse_subnet, FileConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Where the daemon listens unless told otherwise (7021: MEC 021).
const DEFAULT_LISTEN: &str = "127.0.0.1:7021";
const DEFAULT_CONTROL: &str = "http://127.0.0.1:7021";

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Serves /app_pkgm/v1 and /app_lcm/v1 (MEC 010-2), /mec_app_support/v1 and /mec_service_mgmt/v1
(MEC 011), /amsi/v1 (MEC 021) and /ferry/control/v1, and prints
`ferry control: listening on http://ADDR` on stdout once it accepts connections. Everything it
is told is kept in STATE_DIR/control.redb: a restarted daemon knows it all again.

Examples:
  ferry control --state-dir /var/lib/ferry-control \\
      --host edge1=http://10.0.0.1:7100 --host edge2=http://10.0.0.2:7100 \\
      --topology examples/three-hosts.toml --ran http://127.0.0.1:7012 \\
      --data-plane-cmd 'ferry testbed route --name three'
  ferry control --config /etc/ferry/control.toml
  ferry control onboard --appd appd.json --image counter.tar
  ferry control instantiate counter --ue 10.150.0.1"
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the control plane daemon (the default).
    Serve(ServeArgs),
    /// Onboard an app package (AppD JSON + OCI image archive) on a running control plane.
    Onboard {
        /// The AppD (JSON), with ferry's extensions `ferryStateRelocation`, `ferryContainer`.
        #[arg(long)]
        appd: PathBuf,
        /// The OCI image archive (`ferry image pack` output; .tar or .tar.gz).
        #[arg(long)]
        image: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create and instantiate an app instance on a host, or on the host serving a UE.
    Instantiate {
        /// The appDId of an onboarded package.
        app_d_id: String,
        /// MEC host to run on.
        #[arg(long, conflicts_with = "ue", required_unless_present = "ue")]
        host: Option<String>,
        /// UE (IPv4 address) whose serving host runs the instance (needs `--ran` on the daemon).
        #[arg(long)]
        ue: Option<String>,
        /// appInstanceName.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a one-time login link to the operator's dashboard (open it in a browser within
    /// two minutes; it gives that browser a session of 12 hours that may only look).
    Dashboard {
        #[command(flatten)]
        conn: Conn,
    },
    /// List the relocations; those that need an operator come with what to do.
    Relocations {
        #[command(flatten)]
        conn: Conn,
    },
    /// Register, list or remove the OAuth 2.0 clients that may get access tokens for the
    /// MEC APIs (app instances get their own at instantiation).
    Clients {
        #[command(subcommand)]
        op: ClientOp,
        #[command(flatten)]
        conn: Conn,
    },
    /// Settle a relocation that needs an operator: keep the app on the source or the target
    /// host. The hosts check the decision against what they know and refuse a wrong one.
    Settle {
        /// The relocation's id (see `ferry control relocations`).
        relocation: String,
        /// source or target.
        #[arg(long)]
        to: ferry_wire::migration::Side,
        /// To the source without the target's word: only for a target host known to be gone
        /// for good (or fenced), never while it may run the app.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Subcommand)]
enum ClientOp {
    /// Register a client; prints its secret once (the control plane keeps only a digest).
    Add {
        /// The client id (letters, digits, '-', '_', '.').
        id: String,
        /// The APIs it may call: app_pkgm, app_lcm, mec_app_support, mec_service_mgmt,
        /// rni, location, amsi (comma-separated or repeated).
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// List the clients (ids and scopes).
    List,
    /// Remove a client: it gets no new tokens (those issued expire within minutes).
    Remove { id: String },
}

/// How the CLI reaches a running control plane.
#[derive(clap::Args)]
struct Conn {
    #[arg(long, env = "FERRY_CONTROL", default_value = DEFAULT_CONTROL)]
    control: String,
    /// Call it as `operator` with the certificates of `ferry pki` in DIR (ca.crt,
    /// operator.crt/.key), for an https:// control plane.
    #[arg(long, env = "FERRY_TLS_DIR")]
    tls_dir: Option<PathBuf>,
}

impl Conn {
    fn client(&self) -> anyhow::Result<ControlClient> {
        let tls = match &self.tls_dir {
            Some(dir) => Some(super::pki::client_tls(dir, &ferry_tls::Identity::Operator)?),
            None if self.control.starts_with("https://") => bail!(
                "{} is served over TLS: pass --tls-dir DIR with the operator's certificates (`ferry pki issue operator`)",
                self.control
            ),
            None => None,
        };
        Ok(ControlClient::with_tls(&self.control, tls))
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML: state_dir, listen, ran, topology, data_plane_cmd,
    /// app_subnet, app_api_root, [hosts]); options given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long)]
    listen: Option<String>,
    /// Directory of the persistent store and uploaded packages.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A MEC host: NAME=http://ADDR:PORT of its `ferry host` API (repeat for each host).
    #[arg(long = "host", value_name = "NAME=URL")]
    hosts: Vec<String>,
    /// Topology file: which host serves each cell, and the app subnet.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Base URL of the RAN's MEC 012/013 APIs (to place an instance at a UE's serving host).
    #[arg(long)]
    ran: Option<String>,
    /// Command that steers an app address to a host, run as `CMD APP_ADDR HOST`
    /// (e.g. 'ferry testbed route'). Without it, traffic rules are only recorded.
    #[arg(long)]
    data_plane_cmd: Option<String>,
    /// Subnet app instances get their addresses from (.1 is the gateway).
    #[arg(long)]
    app_subnet: Option<String>,
    /// URL at which app instances reach these MEC APIs, given to them as MEC_API_ROOT
    /// (default: http://LISTEN_ADDRESS when that is neither loopback nor unspecified).
    #[arg(long, value_name = "URL")]
    app_api_root: Option<String>,
    /// Call the hosts over mutual TLS with the certificates of `ferry pki` in DIR: ca.crt
    /// and control.crt/.key (the hosts' URLs are then https://).
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address without --tls-dir: no TLS and no access
    /// tokens, anyone who reaches it may use every API. For a lab only.
    #[arg(long)]
    insecure: bool,
    /// Subscriptions (per API) one OAuth client may hold.
    #[arg(long, default_value_t = ferry_control::DEFAULT_MAX_SUBSCRIPTIONS)]
    max_subscriptions_per_client: usize,
    /// Seconds between re-readings of where the followed UEs are (MEC 013 queries/users),
    /// which move what a lost notification left behind; 0: only at start and after a
    /// detected gap [default: 30]
    #[arg(long, value_name = "SECS")]
    reconcile_interval: Option<u64>,
    /// Where `ferry bench` writes its results (e.g. bench-results): the dashboard links to
    /// the latest there.
    #[arg(long, value_name = "DIR")]
    bench_results: Option<PathBuf>,
    /// Test hooks in DIR: relocations can be held at named points. For the project's tests
    /// only; never on a production control plane.
    #[arg(long, hide = true)]
    test_hooks: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        None => run_daemon(args.serve),
        Some(Command::Serve(s)) => run_daemon(s),
        Some(Command::Onboard { appd, image, conn }) => {
            client_runtime()?.block_on(onboard(&conn, &appd, &image))
        }
        Some(Command::Instantiate {
            app_d_id,
            host,
            ue,
            name,
            conn,
        }) => {
            let placement = match (host, ue) {
                (Some(h), _) => Placement::Host(h),
                (None, Some(u)) => Placement::Ue(u),
                (None, None) => bail!("name a host (--host NAME) or a UE (--ue IPV4)"),
            };
            client_runtime()?.block_on(instantiate(&conn, &app_d_id, name.as_deref(), &placement))
        }
        Some(Command::Relocations { conn }) => client_runtime()?.block_on(relocations(&conn)),
        Some(Command::Dashboard { conn }) => {
            let (url, secs) = client_runtime()?.block_on(conn.client()?.dashboard_link())?;
            println!("{url}");
            eprintln!("open it within {secs} s; it works once");
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Clients { op, conn }) => client_runtime()?.block_on(clients(&conn, op)),
        Some(Command::Settle {
            relocation,
            to,
            force,
            conn,
        }) => {
            let req = ferry_wire::migration::SettleRequest { to, force };
            let v = client_runtime()?.block_on(conn.client()?.settle(&relocation, &req))?;
            println!(
                "relocation {relocation}: the source host took the decision; its migration is now {}",
                v["state"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn clients(conn: &Conn, op: ClientOp) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match op {
        ClientOp::Add { id, scopes } => {
            let v = client.register_client(&id, &scopes).await?;
            println!(
                "client {} registered for {}\nclient secret (shown once): {}",
                v["clientId"].as_str().unwrap_or("?"),
                v["scopes"],
                v["clientSecret"].as_str().unwrap_or("?")
            );
        }
        ClientOp::List => {
            for c in client.clients().await?.as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<60} {}",
                    c["clientId"].as_str().unwrap_or("?"),
                    c["scopes"],
                    c["appInstanceId"].as_str().unwrap_or("")
                );
            }
        }
        ClientOp::Remove { id } => {
            client.remove_client(&id).await?;
            println!("client {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn relocations(conn: &Conn) -> anyhow::Result<ExitCode> {
    let all = conn.client()?.relocations().await?;
    for r in all.as_array().into_iter().flatten() {
        println!(
            "{:<20} {:<16} {:>8} -> {:<8} {:<18} {}",
            r["id"].as_str().unwrap_or("?"),
            r["appInstanceId"].as_str().unwrap_or("?"),
            r["sourceHost"].as_str().unwrap_or("?"),
            r["targetHost"].as_str().unwrap_or("?"),
            r["phase"].as_str().unwrap_or("?"),
            r["advice"].as_str().or(r["error"].as_str()).unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn onboard(conn: &Conn, appd: &Path, image: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(appd).with_context(|| format!("cannot read {}", appd.display()))?;
    let appd_json: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", appd.display()))?;
    let image_bytes =
        std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let pkg = conn.client()?.onboard(&appd_json, &image_bytes).await?;
    println!(
        "onboarded package {} (appDId {}, {})",
        pkg["id"].as_str().unwrap_or("?"),
        pkg["appDId"].as_str().unwrap_or("?"),
        pkg["onboardingState"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

async fn instantiate(
    conn: &Conn,
    app_d_id: &str,
    name: Option<&str>,
    placement: &Placement,
) -> anyhow::Result<ExitCode> {
    let i = conn
        .client()?
        .instantiate(app_d_id, name, placement)
        .await?;
    println!(
        "instance {} of {app_d_id} on {} at {}",
        i["id"].as_str().unwrap_or("?"),
        i["ferryHost"].as_str().unwrap_or("?"),
        i["ferryAddress"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

/// What the dashboard draws of a topology file.
fn topology_view(t: &ferry_ran::topology::Topology) -> ferry_control::dashboard::TopologyView {
    use ferry_control::dashboard::{TopoCell, TopoHost, TopoLink, TopologyView};
    TopologyView {
        hosts: t
            .hosts
            .iter()
            .map(|h| TopoHost {
                name: h.name.clone(),
                address: h.address.clone(),
            })
            .collect(),
        cells: t
            .cells
            .iter()
            .map(|c| TopoCell {
                name: c.name.clone(),
                host: c.host.clone(),
                latitude: c.position.latitude,
                longitude: c.position.longitude,
                radius_m: c.radius_m,
            })
            .collect(),
        links: t
            .links
            .iter()
            .map(|l| TopoLink {
                a: l.a.clone(),
                b: l.b.clone(),
                rate_mbit: l.rate_mbit.filter(|r| *r > 0.0),
                delay_ms: l.delay_ms,
            })
            .collect(),
    }
}

fn run_daemon(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p).map_err(anyhow::Error::msg)?,
        None => FileConfig::default(),
    };
    let Some(state_dir) = args.state_dir.clone().or(file.state_dir.clone()) else {
        bail!(
            "no state directory: run `ferry control --state-dir DIR` (see `ferry control --help`)"
        );
    };
    let mut config = ferry_control::Config::new(state_dir);
    config.hooks = ferry_hooks::Hooks::new(args.test_hooks.clone());
    if let Some(dir) = &args.tls_dir {
        config.tls = Some(super::pki::own_files(dir, &ferry_tls::Identity::Control)?);
    }
    config.max_subscriptions_per_client = args.max_subscriptions_per_client;
    config.hosts = file.hosts.clone();
    for h in &args.hosts {
        let Some((name, url)) = h.split_once('=') else {
            bail!("--host '{h}' is not NAME=URL (e.g. --host edge1=http://10.0.0.1:7100)");
        };
        let parsed = reqwest::Url::parse(url)
            .with_context(|| format!("--host '{h}': '{url}' is not a URL"))?;
        // One scheme for every host: https with --tls-dir, http without.
        let want = if args.tls_dir.is_some() {
            "https"
        } else {
            "http"
        };
        if parsed.scheme() != want {
            bail!(
                "--host '{h}': use an {want}:// URL{}",
                if want == "https" {
                    " (hosts are called over mutual TLS with --tls-dir)"
                } else {
                    " (https:// needs --tls-dir)"
                }
            );
        }
        config.hosts.insert(
            name.trim().to_string(),
            url.trim_end_matches('/').to_string(),
        );
    }
    if let Some(path) = args.topology.clone().or(file.topology.clone()) {
        let topo = ferry_ran::topology::Topology::from_file(&path)
            .with_context(|| format!("topology {}", path.display()))?;
        for cell in &topo.cells {
            config.cells.insert(cell.name.clone(), cell.host.clone());
            // NR cells (no ECGI) never serve a UE, so no cell change names them.
            if let Some(e) = &cell.ecgi {
                config.ecgis.insert(
                    ferry_control::follow::ecgi_key(&e.mcc, &e.mnc, &e.cell_id),
                    cell.host.clone(),
                );
            }
        }
        config.app_subnet = parse_subnet(&topo.app_subnet)
            .map_err(|e| anyhow::anyhow!("topology {}: app_subnet: {e}", path.display()))?;
        config.topology = Some(topology_view(&topo));
    }
    config.bench_results = args.bench_results.clone();
    if let Some(s) = args.app_subnet.as_deref().or(file.app_subnet.as_deref()) {
        config.app_subnet = parse_subnet(s).map_err(|e| anyhow::anyhow!("--app-subnet: {e}"))?;
    }
    if let Some(secs) = args.reconcile_interval.or(file.reconcile_interval) {
        config.reconcile_every = (secs > 0).then(|| std::time::Duration::from_secs(secs));
    }
    config.ran = args
        .ran
        .clone()
        .or(file.ran.clone())
        .map(|r| r.trim_end_matches('/').to_string());
    let data_plane: Arc<dyn ferry_control::DataPlane> = match args
        .data_plane_cmd
        .as_deref()
        .or(file.data_plane_cmd.as_deref())
    {
        Some(cmd) => Arc::new(
            ferry_control::CommandDataPlane::new(cmd)
                .map_err(|e| anyhow::anyhow!("--data-plane-cmd: {e}"))?,
        ),
        None => Arc::new(ferry_control::MemoryDataPlane::default()),
    };
    let listen = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let api_root = args.app_api_root.clone().or(file.app_api_root.clone());
    if let Some(root) = &api_root {
        let parsed = reqwest::Url::parse(root)
            .with_context(|| format!("--app-api-root '{root}' is not a URL"))?;
        let want = if args.tls_dir.is_some() {
            "https"
        } else {
            "http"
        };
        if parsed.scheme() != want {
            bail!(
                "--app-api-root '{root}': use an {want}:// URL (this control plane serves {want})"
            );
        }
        config.app_api_root = Some(root.trim_end_matches('/').to_string());
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(serve(config, data_plane, &listen, args.insecure))
}

async fn serve(
    mut config: ferry_control::Config,
    data_plane: Arc<dyn ferry_control::DataPlane>,
    listen: &str,
    insecure: bool,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (pick another with --listen)"))?;
    let addr = listener
        .local_addr()
        .context("listening socket has no address")?;
    if config.tls.is_none() && !addr.ip().is_loopback() {
        if !insecure {
            bail!(
                "refusing to serve {addr} without TLS: pass --tls-dir DIR (certificates of `ferry pki`), or --insecure for a lab where anyone who reaches it may use every API"
            );
        }
        tracing::warn!(%addr, "--insecure: serving the MEC APIs without TLS or access tokens");
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Only an address other hosts can route to is worth telling the apps and the hosts.
    let routable = !(addr.ip().is_loopback() || addr.ip().is_unspecified());
    if config.app_api_root.is_none() {
        if routable {
            config.app_api_root = Some(format!("{scheme}://{addr}"));
        } else {
            tracing::info!("app instances are not told where the MEC APIs are: set --app-api-root");
        }
    }
    if routable {
        config.callback_root = Some(format!("{scheme}://{addr}"));
    } else {
        tracing::info!("hosts cannot call back (listening on {addr}): traffic switches when a migration's report arrives, not at its commit");
    }
    let state_dir = config.state_dir.display().to_string();
    let control = ferry_control::Control::open(config, data_plane)
        .with_context(|| format!("cannot open the control plane state in {state_dir}"))?;
    // Printed on stdout (logs go to stderr) so scripts and tests can read the port.
    println!("ferry control: listening on {scheme}://{addr}");
    ferry_control::serve(control, listener, super::shutdown_signal())
        .await
        .context("control plane server failed")?;
    Ok(ExitCode::SUCCESS)
}
