//! `ferry bench`: benchmarks (never tests). Results are medians with min and max over
//! repeated runs, printed as a table and written as JSON under `bench-results/`.
//!
//! - `ferry bench checkpoint`: checkpoint and restore of ferry-counter on one host, for a list
//!   of ballast sizes (the figures of the foundation issue), with runc or the native engine.
//! - `ferry bench floor`: the physical floor: CRIU alone (the native engine, no runc, no
//!   network) dumping and restoring the same container on one host, printed next to the
//!   phases of a `ferry bench migrate` run so each phase's distance to the floor shows.
//! - `ferry bench migrate`: live migration between two testbed hosts, every technique the
//!   hosts accept, with the Podman baseline (in `bench/`).
//! - `ferry bench control`: the control plane under a city's handovers (10,000 UEs, real
//!   `ferry ran` and `ferry control`, fake hosts): missed relocations, latency, CPU, memory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::local::LocalHost;
use ferry_wire::migration::CheckpointEngine;

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
    /// CRIU alone on one host (native engine, local disk): the floor under each migration
    /// phase, next to a `bench migrate` run's phases.
    Floor(FloorArgs),
    /// Draws the figure of a `bench migrate` result again (no measurement).
    Plot(PlotArgs),
}

#[derive(clap::Args)]
struct PlotArgs {
    /// The results of `ferry bench migrate`.
    #[arg(long, default_value = "bench-results/migrate.json")]
    json: PathBuf,
    /// Where the SVG goes.
    #[arg(short, long, default_value = "bench-results/migrate.svg")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct FloorArgs {
    /// Ballast sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    ballast_mib: Vec<u32>,
    /// Runs per size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The ferry-counter OCI image archive.
    #[arg(long, default_value = "build/ferry-counter.oci.tar")]
    image: PathBuf,
    /// A `ferry bench migrate` result to set the floor against (its 1gbit-5ms cells).
    #[arg(long, default_value = "bench-results/migrate.json")]
    migrate_results: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/floor.json")]
    out: PathBuf,
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
    /// Who drives CRIU: native (the hosts' default), runc or both (run by run).
    #[arg(long, value_delimiter = ',', default_value = "native")]
    engines: Vec<CheckpointEngine>,
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
        Command::Floor(a) => floor(a),
        Command::Plot(a) => migrate::replot(&a.json, &a.out),
    }
}

/// One size's checkpoint/restore runs with one engine: (checkpoint ms, restore ms, CRIU's
/// frozen and memory-dump ms, image bytes).
struct Sample {
    checkpoint: Vec<f64>,
    restore: Vec<f64>,
    frozen: Vec<f64>,
    memdump: Vec<f64>,
    bytes: u64,
}

/// Checkpoints and restores container `name` (running) `runs` times with `engine`.
fn sample(
    host: &LocalHost,
    name: &str,
    runs: usize,
    engine: CheckpointEngine,
) -> anyhow::Result<Sample> {
    let mut s = Sample {
        checkpoint: Vec::new(),
        restore: Vec::new(),
        frozen: Vec::new(),
        memdump: Vec::new(),
        bytes: 0,
    };
    for _ in 0..runs {
        let c = host.checkpoint(name, engine)?;
        let r = host.restore(name, engine)?;
        s.checkpoint.push(c.checkpoint_ms as f64);
        s.restore.push(r.restore_ms as f64);
        if let Some(d) = c.dump {
            s.frozen.push(d.frozen_us as f64 / 1000.0);
            s.memdump.push(d.memdump_us as f64 / 1000.0);
        }
        s.bytes = c.image_bytes;
    }
    Ok(s)
}

fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let host = LocalHost::start("bench")?;
    host.import_image("counter", &args.image)?;
    let mut rows = Vec::new();
    println!(
        "ferry bench checkpoint: ferry-counter, CRIU {}, images on local disk, {} runs each",
        host.info()?["criu"]["version"].as_str().unwrap_or("?"),
        args.runs
    );
    println!(
        "{:>8}  {:<7} {:>22}  {:>22}  {:>10}",
        "ballast", "engine", "checkpoint", "restore", "images"
    );
    for &mib in &args.ballast_mib {
        let name = format!("counter-{mib}");
        host.run_counter(&name, std::net::Ipv4Addr::new(10, 200, 0, 20), mib, 0.0)?;
        let mut conn = host.connect("10.200.0.20:8080")?;
        conn.get("/")?; // the ballast is written before the app listens
        for &engine in &args.engines {
            let s = sample(&host, &name, args.runs, engine)?;
            println!(
                "{:>5} MiB  {:<7} {:>22}  {:>22}  {:>6.1} MiB",
                mib,
                engine.to_string(),
                fmt_ms(summary(&s.checkpoint)),
                fmt_ms(summary(&s.restore)),
                s.bytes as f64 / 1048576.0
            );
            rows.push(
                json!({"ballast_mib": mib, "engine": engine, "checkpoint_ms": s.checkpoint,
                             "restore_ms": s.restore, "image_bytes": s.bytes,
                             "checkpoint_median_ms": summary(&s.checkpoint).0,
                             "restore_median_ms": summary(&s.restore).0}),
            );
        }
        let v = conn
            .get("/verify")
            .context("the app did not survive the runs")?;
        anyhow::ensure!(v["ok"] == true, "ballast corrupted after the runs: {v}");
        host.delete(&name)?;
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

/// The median of `field` of a `bench migrate` result's report timings, over the good runs
/// of (1 Gbit/s profile, `mib`, `technique`, TLS pages, either engine as `engine`).
fn migrate_median(
    results: &serde_json::Value,
    mib: u32,
    technique: &str,
    engine: CheckpointEngine,
    field: &str,
) -> Option<f64> {
    let v: Vec<f64> = results["runs"]
        .as_array()?
        .iter()
        .filter(|r| {
            r["ok"] == true
                && r["profile"] == "1gbit-5ms"
                && r["ballast_mib"] == mib
                && r["technique"] == technique
                && r["pages"] != "plain"
                && r["engine"] == json!(engine)
        })
        .filter_map(|r| r["report"]["timings"][field].as_f64())
        .collect();
    (!v.is_empty()).then(|| summary(&v).0)
}

fn floor(args: FloorArgs) -> anyhow::Result<ExitCode> {
    let host = LocalHost::start("floor")?;
    host.import_image("counter", &args.image)?;
    let results: Option<serde_json::Value> = std::fs::read(&args.migrate_results)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    println!(
        "ferry bench floor: CRIU {} alone (native engine, no runc, images on local disk), {} runs each",
        host.info()?["criu"]["version"].as_str().unwrap_or("?"),
        args.runs
    );
    let mut rows = Vec::new();
    for &mib in &args.ballast_mib {
        let name = format!("floor-{mib}");
        host.run_counter(&name, std::net::Ipv4Addr::new(10, 200, 0, 21), mib, 0.0)?;
        let mut conn = host.connect("10.200.0.21:8080")?;
        conn.get("/")?;
        let s = sample(&host, &name, args.runs, CheckpointEngine::Native)?;
        let v = conn
            .get("/verify")
            .context("the app did not survive the runs")?;
        anyhow::ensure!(v["ok"] == true, "ballast corrupted after the runs: {v}");
        host.delete(&name)?;
        let (dump, restore) = (summary(&s.checkpoint), summary(&s.restore));
        let (frozen, memdump) = (summary(&s.frozen), summary(&s.memdump));
        // CRIU's frozen time without the pages: the floor of a dump that leaves memory
        // behind (post-copy's).
        let without_pages: Vec<f64> = s
            .frozen
            .iter()
            .zip(&s.memdump)
            .map(|(f, m)| f - m)
            .collect();
        let no_pages = summary(&without_pages);
        let link_ms = migrate::transfer_s(mib, 1000.0) * 1000.0;
        println!(
            "\n{mib} MiB: floor dump {} (CRIU frozen {}, of it memory {}), restore {}",
            fmt_ms(dump),
            fmt_ms(frozen),
            fmt_ms(memdump),
            fmt_ms(restore)
        );
        println!(
            "  {:<34} {:>12} {:>12} {:>12}",
            "phase (1 Gbit/s, median ms)", "runc", "native", "floor"
        );
        let phases: [(&str, &str, &str, f64); 4] = [
            (
                "cold dump (pages over the link)",
                "cold",
                "dump_ms",
                dump.0.max(link_ms),
            ),
            ("cold restore", "cold", "restore_ms", restore.0),
            (
                "post-copy dump (no pages)",
                "post-copy",
                "dump_ms",
                no_pages.0,
            ),
            (
                "post-copy restore (lazy)",
                "post-copy",
                "restore_ms",
                restore.0 - memdump.0.min(restore.0),
            ),
        ];
        for (what, technique, field, fl) in phases {
            let got = |e| {
                results
                    .as_ref()
                    .and_then(|r| migrate_median(r, mib, technique, e, field))
                    .map_or("-".to_string(), |v| format!("{v:.0}"))
            };
            println!(
                "  {what:<34} {:>12} {:>12} {:>12.0}",
                got(CheckpointEngine::Runc),
                got(CheckpointEngine::Native),
                fl
            );
        }
        rows.push(
            json!({"ballast_mib": mib, "checkpoint_ms": s.checkpoint, "restore_ms": s.restore,
                         "criu_frozen_ms": s.frozen, "criu_memdump_ms": s.memdump,
                         "dump_without_pages_ms": without_pages, "link_ms": link_ms}),
        );
    }
    if results.is_none() {
        println!(
            "\nno migration figures next to the floor: run `ferry bench migrate --profiles 1gbit-5ms --engines runc,native` first (it writes {})",
            args.migrate_results.display()
        );
    }
    println!("floor of the cold dump: the larger of CRIU's local dump and state / link rate; of the lazy restore: the restore without reading the pages");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(
            &json!({"benchmark": "floor", "runs": args.runs, "results": rows}),
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
