//! `ferry bench`: benchmarks (never tests). Results are medians with min and max over
//! repeated runs, printed as a table and written as JSON under `bench-results/`.
//!
//! - `ferry bench checkpoint`: checkpoint and restore of ferry-counter on one host, for a list
//!   of ballast sizes (the figures of the foundation issue).
//! - `ferry bench migrate`: live migration between two testbed hosts, every technique the
//!   hosts accept, with the Podman baseline (in `bench/`).
//! - `ferry bench control`: the control plane under a city's handovers (10,000 UEs, real
//!   `ferry ran` and `ferry control`, fake hosts): missed relocations, latency, CPU, memory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::local::LocalHost;

mod bed;
mod control;
mod migrate;
mod plot;
mod podman;
mod probe;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Checkpoint and restore ferry-counter on one host (stop-and-copy to local disk).
    Checkpoint(CheckpointArgs),
    /// Live migration between two testbed hosts: downtime, total time, bytes; Podman baseline.
    Migrate(migrate::MigrateArgs),
    /// The control plane under a city's handovers: missed relocations, handover-to-MEC 021
    /// latency, CPU and memory (real `ferry ran` and `ferry control`, fake hosts).
    Control(control::ControlArgs),
}

#[derive(clap::Args)]
struct CheckpointArgs {
    /// Ballast sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    ballast_mib: Vec<u32>,
    /// Runs per size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The ferry-counter OCI image archive.
    #[arg(long, default_value = "build/ferry-counter.oci.tar")]
    image: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/checkpoint.json")]
    out: PathBuf,
}

/// Median, min and max of a sample (sorted copy).
pub fn summary(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

fn fmt_ms((median, min, max): (f64, f64, f64)) -> String {
    format!("{median:.0} ms ({min:.0}-{max:.0})")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Checkpoint(a) => checkpoint(a),
        Command::Migrate(a) => migrate::run(a),
        Command::Control(a) => control::run(a),
    }
}

fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let host = LocalHost::start("bench")?;
    host.import_image("counter", &args.image)?;
    let mut rows = Vec::new();
    println!(
        "ferry bench checkpoint: ferry-counter, runc + CRIU {}, images on local disk, {} runs each",
        host.info()?["criu"]["version"].as_str().unwrap_or("?"),
        args.runs
    );
    println!(
        "{:>8}  {:>22}  {:>22}  {:>10}",
        "ballast", "checkpoint", "restore", "images"
    );
    for &mib in &args.ballast_mib {
        let name = format!("counter-{mib}");
        host.run_counter(&name, std::net::Ipv4Addr::new(10, 200, 0, 20), mib, 0.0)?;
        let mut conn = host.connect("10.200.0.20:8080")?;
        conn.get("/")?; // the ballast is written before the app listens
        let (mut ck, mut rs, mut bytes) = (Vec::new(), Vec::new(), 0u64);
        for _ in 0..args.runs {
            let c = host.checkpoint(&name)?;
            let r = host.restore(&name)?;
            ck.push(c.checkpoint_ms as f64);
            rs.push(r.restore_ms as f64);
            bytes = c.image_bytes;
        }
        let v = conn
            .get("/verify")
            .context("the app did not survive the runs")?;
        anyhow::ensure!(v["ok"] == true, "ballast corrupted after the runs: {v}");
        host.delete(&name)?;
        println!(
            "{:>5} MiB  {:>22}  {:>22}  {:>6.1} MiB",
            mib,
            fmt_ms(summary(&ck)),
            fmt_ms(summary(&rs)),
            bytes as f64 / 1048576.0
        );
        rows.push(json!({"ballast_mib": mib, "checkpoint_ms": ck, "restore_ms": rs, "image_bytes": bytes,
                         "checkpoint_median_ms": summary(&ck).0, "restore_median_ms": summary(&rs).0}));
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(
            &json!({"benchmark": "checkpoint", "runs": args.runs, "results": rows}),
        )?,
    )?;
    println!("written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(summary(&[]).0.is_nan());
    }
}
