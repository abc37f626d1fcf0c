//! `ferry`: one binary for every role of a ferry MEC system (like k3s' server and agent).
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses and dispatches.

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Live migration of stateful edge applications inside ETSI MEC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the `ferry host` daemon: one MEC host's containers, checkpoint and restore.
    Host(cmd::host::Args),
    /// Check the kernel and tool features ferry needs, and say how to fix what is missing.
    Doctor(cmd::doctor::Args),
    /// Build or inspect OCI image archives (used by the build to package ferry-counter).
    Image(cmd::image::Args),
    /// Run the emulated RAN: MEC 012 RNIS and MEC 013 Location APIs over a topology.
    Ran(cmd::ran::Args),
    /// Run the MEC control plane: MEC 010-2 orchestrator, MEC 011 and MEC 021 services.
    // Boxed: its options make it much larger than the other variants.
    Control(Box<cmd::control::Args>),
    /// Bring an emulated multi-host edge testbed up or down on this machine.
    Testbed(cmd::testbed::Args),
    /// Run the demo on the embedded default (what `make demo` runs).
    Demo(cmd::demo::Args),
    /// Migrate a container live from one ferry host to another, with progress and report.
    Migrate(cmd::migrate::Args),
    /// Benchmarks: medians with ranges, as tables and JSON.
    Bench(cmd::bench::Args),
    /// The operator's CA and the certificates of ferry's parts (for mutual TLS).
    Pki(cmd::pki::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo and benchmarks print their own story; daemons log at info.
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Bench(_));
    cmd::init_logging(if quiet { "warn" } else { "info" });
    let result = match cli.command {
        Command::Host(args) => cmd::host::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Ran(args) => cmd::ran::run(args),
        Command::Control(args) => cmd::control::run(*args),
        Command::Testbed(args) => cmd::testbed::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Migrate(args) => cmd::migrate::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Pki(args) => cmd::pki::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line with the reason (and, where the error carries it, the fix).
            eprintln!("ferry: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
