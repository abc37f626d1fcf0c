//! `ferry pki`: the operator's CA and the certificates of ferry's parts (see `ferry-tls`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_tls::{Identity, Pki, San, TlsFiles, Validity};

#[derive(Parser)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new CA in DIR (refuses to replace one).
    Init {
        /// Directory of the PKI (created if needed).
        #[arg(long)]
        dir: PathBuf,
        /// Name in the CA's subject.
        #[arg(long, default_value = "ferry")]
        name: String,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue (or re-issue, to rotate) the certificate of one part of ferry.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// Who holds it: host:NAME (as `ferry host --name`), control, ran, operator, or
        /// metrics (a Prometheus scraper: `/metrics` of every part, nothing else).
        #[arg(long)]
        identity: String,
        /// An address or DNS name the part is reached at (repeat for each); clients check it.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// The certificate files of `me` in a `ferry pki` directory, checked to name `me`.
pub fn own_files(dir: &Path, me: &Identity) -> anyhow::Result<TlsFiles> {
    let files = TlsFiles::in_dir(dir, me);
    let named = files.identity().with_context(|| {
        format!(
            "cannot use {} (issue it with `ferry pki issue --dir {} --identity {me}`)",
            files.cert.display(),
            dir.display()
        )
    })?;
    anyhow::ensure!(
        &named == me,
        "{} names {named}, not {me}: issue {me}'s own certificate",
        files.cert.display()
    );
    Ok(files)
}

/// A mutual-TLS client configuration for `me` from a `ferry pki` directory.
pub fn client_tls(dir: &Path, me: &Identity) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(ferry_tls::client_config(&own_files(dir, me)?)?)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Init { dir, name, days } => {
            Pki::init(&dir, &name, Validity::days(days))?;
            println!(
                "CA made in {}: ca.crt goes to every part, ca.key (0600) stays with the operator",
                dir.display()
            );
        }
        Command::Issue {
            dir,
            identity,
            sans,
            days,
        } => {
            let identity: Identity = identity.parse()?;
            let sans = sans
                .iter()
                .map(|s| s.parse::<San>())
                .collect::<Result<Vec<_>, _>>()?;
            let pki = Pki::open(&dir)?;
            let issued = pki
                .issue(&identity, &sans, Validity::days(days))
                .with_context(|| format!("cannot issue the certificate of {identity}"))?;
            println!(
                "{identity}: {} and {} (0600)",
                issued.cert.display(),
                issued.key.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
