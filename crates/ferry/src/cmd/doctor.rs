//! `ferry doctor` (placeholder until its issue lands).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("'ferry doctor' is not built yet")
}
