//! `ferry demo --single-host`: the foundation's story on one host: run ferry-counter, talk to
//! it over one TCP connection, checkpoint it (the app is gone), restore it, and show on the
//! same connection that its state survived.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{ensure, Context};
use serde_json::json;

use super::local::LocalHost;

pub struct Args {
    pub image: PathBuf,
    pub ballast_mib: u32,
    pub dirty_mib_s: f64,
}

const APP_IP: &str = "10.200.0.10";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    println!("== ferry demo: one MEC host, a stateful app, checkpoint and restore ==\n");
    let host = LocalHost::start("demo")?;
    let info = host.info()?;
    println!(
        "host      ferry host in netns {} | {} | CRIU {}",
        host.netns,
        info["runtime"].as_str().unwrap_or("?"),
        info["criu"]["version"].as_str().unwrap_or("?")
    );

    let image = host.import_image("counter", &args.image)?;
    println!(
        "image     imported {} ({} layer, {})",
        image["digest"].as_str().unwrap_or("?"),
        image["layers"].as_array().map_or(0, Vec::len),
        args.image.display()
    );

    host.run_counter(
        "counter",
        APP_IP.parse()?,
        args.ballast_mib,
        args.dirty_mib_s,
    )?;
    println!(
        "app       ferry-counter at {APP_IP}:8080, {} MiB ballast, rewriting {} MiB/s",
        args.ballast_mib, args.dirty_mib_s
    );

    let mut conn = host.connect(&format!("{APP_IP}:8080"))?;
    let mut last = json!(null);
    for _ in 0..5 {
        last = conn.get("/")?;
    }
    let before = conn.get("/verify")?;
    println!(
        "client    one TCP connection, 5 requests: counter={} started_at_ms={} ballast checksum ok={}",
        last["counter"], before["started_at_ms"], before["ok"]
    );

    let t = Instant::now();
    let ck = host.checkpoint("counter", ferry_wire::migration::CheckpointEngine::Runc)?;
    println!(
        "checkpoint  {} ms, {:.1} MiB of images in {} -- the app is no longer running",
        ck.checkpoint_ms,
        ck.image_bytes as f64 / 1048576.0,
        ck.image_dir.display()
    );
    let status = host.container("counter")?.status;
    ensure!(
        status == ferry_wire::Status::Checkpointed,
        "expected checkpointed, got {status}"
    );

    let rs = host.restore("counter", ferry_wire::migration::CheckpointEngine::Runc)?;
    println!(
        "restore     {} ms (checkpoint to running again: {} ms)",
        rs.restore_ms,
        t.elapsed().as_millis()
    );

    let after = conn
        .get("/")
        .context("the TCP connection did not survive")?;
    let verify = conn.get("/verify")?;
    println!(
        "client    same connection: counter={} started_at_ms={} ballast checksum ok={}",
        after["counter"], verify["started_at_ms"], verify["ok"]
    );
    let counter_before = last["counter"].as_u64().unwrap_or(0);
    let counter_after = after["counter"].as_u64().unwrap_or(0);
    ensure!(
        counter_after == counter_before + 1,
        "counter went {counter_before} -> {counter_after}"
    );
    ensure!(
        after["started_at_ms"] == before["started_at_ms"],
        "the app was restarted, not restored"
    );
    ensure!(verify["ok"] == true, "ballast corrupted: {verify}");
    println!(
        "\nresult    state survived: counter {counter_before} -> {counter_after}, same process start time, \
         ballast intact, TCP connection kept"
    );
    host.delete("counter")?;
    host.cleanup();
    println!("cleanup   container, namespaces and state removed");
    Ok(ExitCode::SUCCESS)
}
