//! `ferry host`: the daemon of one MEC host (HTTP API over its containers).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ferry_host::Security;
use ferry_migration::hooks::Hooks;
use ferry_migration::EngineConfig;
use ferry_runtime::image::ImageLimits;
use ferry_runtime::{Runtime, RuntimeConfig};
use ferry_tls::Identity;

#[derive(clap::Args)]
pub struct Args {
    /// This host's name (reported by the API; part of cgroup paths).
    #[arg(long, default_value = "mec1")]
    name: String,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: SocketAddr,
    /// Where images, containers and checkpoints are kept.
    #[arg(long, default_value = "/var/lib/ferry/host")]
    state_dir: PathBuf,
    /// Run inside this named network namespace (`ip netns`); the API listens there too.
    #[arg(long)]
    netns: Option<String>,
    /// Bridge the containers attach to (created if missing).
    #[arg(long, default_value = "ferry0")]
    bridge: String,
    /// Gateway address on the bridge with the app subnet's prefix; the same on every host.
    #[arg(long, default_value = "10.200.0.1/16")]
    gateway: ipnet::Ipv4Net,
    /// OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runc: PathBuf,
    /// CRIU binary (default: $FERRY_CRIU, the private build of scripts/install-deps, then $PATH).
    #[arg(long)]
    criu: Option<PathBuf>,
    /// Seconds a target keeps a restored, uncommitted copy for this host's migrations.
    #[arg(long, default_value_t = 30)]
    lease_s: u64,
    /// Mutual TLS with the certificates of `ferry pki` in DIR: ca.crt and host-NAME.crt/.key
    /// (NAME as --name). Callers are then authorized by identity: control and operator order,
    /// hosts talk on the migration channel. Without it the host serves only on loopback
    /// (plain HTTP), unless --insecure.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address without --tls-dir: anyone who reaches it
    /// can order this host. For a lab only; logged at start.
    #[arg(long)]
    insecure: bool,
    /// With --tls-dir, let a migration request ask for plain page traffic (`"pages":
    /// "plain"`): CRIU's page server and lazy pages then run without TLS. For benchmarks
    /// that measure what TLS costs; logged at start.
    #[arg(long)]
    allow_plain_pages: bool,
    /// Who drives CRIU for migrations whose request does not say: native (ferry over CRIU's
    /// RPC, nothing but CRIU while the app is frozen: the shorter downtime) or runc (its CLI).
    #[arg(long, env = "FERRY_ENGINE", default_value_t = ferry_wire::migration::CheckpointEngine::Native)]
    engine: ferry_wire::migration::CheckpointEngine,
    /// Largest image archive accepted, in MiB of tar (after gunzip of a gzipped archive).
    #[arg(long, default_value_t = ImageLimits::default().archive_bytes >> 20)]
    max_archive_mib: u64,
    /// Largest image accepted, in MiB of all its layers' uncompressed tars.
    #[arg(long, default_value_t = ImageLimits::default().unpacked_bytes >> 20)]
    max_image_mib: u64,
    /// Most entries (files, directories, links) an image may have, all layers together.
    #[arg(long, default_value_t = ImageLimits::default().entries)]
    max_image_entries: u64,
    /// Highest decompressed-to-compressed ratio of a gzipped archive or layer (past 64 MiB):
    /// gzip bombs decompress about 1000 times, real images 2-10 times.
    #[arg(long, default_value_t = ImageLimits::default().gzip_ratio)]
    max_gzip_ratio: u64,
    /// Test hooks in DIR: migrations can be held at named points and faults injected. For
    /// the project's tests only; never on a production host.
    #[arg(long, hide = true)]
    test_hooks: Option<PathBuf>,
}

/// Moves this (still single-threaded) process into a named network namespace. Must run before
/// any thread starts: setns only moves the calling thread.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = ferry_runtime::net::netns_path(name);
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "network namespace '{name}' not found at {} (create it with `ip netns add {name}`)",
            path.display()
        )
    })?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter network namespace '{name}'"))?;
    // A fresh namespace has loopback down; the API may listen there.
    ferry_runtime::command::run("ip", ["link", "set", "lo", "up"])?;
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(ns) = &args.netns {
        enter_netns(ns)?;
    }
    let criu = args.criu.or_else(ferry_runtime::criu::find).context(
        "CRIU not found: run `scripts/install-deps` (or `make deps`), or pass --criu PATH",
    )?;
    // CRIU's kernel probe results, kept between its starts: about 100 ms less on each
    // dump and restore of a migration.
    match ferry_runtime::criu::ensure_kdat_cache() {
        Ok(state) => tracing::info!(
            dir = ferry_runtime::criu::KDAT_DIR,
            ?state,
            "CRIU kerndat cache"
        ),
        Err(e) => {
            tracing::warn!("no CRIU kerndat cache (each CRIU start probes the kernel again): {e}")
        }
    }
    let (security, client_tls, pages_tls) = match &args.tls_dir {
        Some(dir) => {
            let files = super::pki::own_files(dir, &Identity::Host(args.name.clone()))?;
            // Memory pages are the app's state: with TLS between the hosts, they travel
            // over CRIU's TLS too, so a CRIU built without it cannot serve here.
            if !ferry_runtime::criu::has_tls(&criu) {
                anyhow::bail!(
                    "{} was built without TLS (GnuTLS), so memory pages would cross the network in the clear: rebuild it with `scripts/install-deps` (needs libgnutls28-dev) or pass --criu PATH to one built with it",
                    criu.display()
                );
            }
            let pages = ferry_runtime::criu::CriuTls {
                ca: files.ca.clone(),
                cert: files.cert.clone(),
                key: files.key.clone(),
            };
            if args.allow_plain_pages {
                tracing::warn!("--allow-plain-pages: a migration request may move memory pages without TLS (for benchmarks)");
            }
            (
                Security::MutualTls(ferry_tls::server_config(&files)?),
                Some(ferry_tls::client_config(&files)?),
                Some(pages),
            )
        }
        None if !args.listen.ip().is_loopback() && !args.insecure => anyhow::bail!(
            "refusing to serve {} without TLS: pass --tls-dir DIR (certificates of `ferry pki`), or --insecure for a lab where anyone who reaches it may order this host",
            args.listen
        ),
        None => {
            tracing::warn!(listen = %args.listen, "no --tls-dir: the API is plain HTTP and anyone who reaches it can order this host");
            (Security::Insecure, None, None)
        }
    };
    let config = RuntimeConfig {
        name: args.name.clone(),
        state_dir: args.state_dir,
        bridge: args.bridge,
        gateway: args.gateway,
        runc: args.runc,
        criu,
        image_limits: ImageLimits {
            archive_bytes: args.max_archive_mib.saturating_mul(1 << 20),
            unpacked_bytes: args.max_image_mib.saturating_mul(1 << 20),
            entries: args.max_image_entries,
            gzip_ratio: args.max_gzip_ratio,
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let rt = tokio::task::spawn_blocking(move || Runtime::open(config))
            .await?
            .context("cannot open the host runtime")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(host = %args.name, listen = %args.listen, "ferry host ready");
        let mut engine = EngineConfig::new(&args.name, args.listen.ip());
        engine.lease = std::time::Duration::from_secs(args.lease_s);
        engine.hooks = Hooks::new(args.test_hooks);
        engine.tls = client_tls;
        engine.pages_tls = pages_tls;
        engine.allow_plain_pages = args.allow_plain_pages;
        engine.engine = args.engine;
        ferry_host::serve(
            listener,
            Arc::new(rt),
            engine,
            security,
            super::shutdown_signal(),
        )
        .await?;
        tracing::info!("ferry host stopped (containers keep running)");
        Ok(ExitCode::SUCCESS)
    })
}
