//! `ferry migrate CONTAINER --from URL --to URL`: asks the source host to migrate a container
//! live to the target host (an operation resource, `202` + `Location`), follows it showing
//! the phases, then prints the migration report (or the JSON with `--json`).
//!
//! The pieces are public so that `ferry bench migrate` drives migrations the same way:
//! [`Hosts::migrate`] (start, follow, the end classified), [`report_table`] and
//! [`phase_breakdown`] (how a report is shown).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry_host_client::{Blocking, HostClient, HostError, ProblemType};
use ferry_wire::migration::{
    MigrateRequest, MigrationReport, MigrationView, OutgoingState, OutgoingView, Technique, Timings,
};

#[derive(clap::Args)]
pub struct Args {
    /// The container to move (its name on the source host).
    container: String,
    /// The source host's API, e.g. http://10.100.0.11:7100.
    #[arg(long)]
    from: String,
    /// The target host's API, e.g. http://10.100.0.12:7100 (the source connects to it).
    #[arg(long)]
    to: String,
    /// cold, post-copy, pre-copy, hybrid or auto (the source picks; see `ferry host` docs).
    #[arg(long, default_value = "auto")]
    technique: Technique,
    /// Print the report as JSON (stdout) instead of a table; progress still goes to stderr.
    #[arg(long)]
    json: bool,
    /// The host-to-host link rate in Mbit/s, for `auto` (default: 1000).
    #[arg(long)]
    link_mbit: Option<u64>,
    /// How fast the app writes its memory, MiB/s, for `auto` (default: unknown).
    #[arg(long)]
    dirty_mib_s: Option<u64>,
    /// Give up (and roll back) a dump that takes longer (default: 30 s + 1 s per MiB).
    #[arg(long)]
    dump_timeout_s: Option<u64>,
    /// Call the source over mutual TLS as `operator`, with the certificates of `ferry pki` in
    /// DIR (ca.crt, operator.crt/.key).
    #[arg(long)]
    pub tls_dir: Option<std::path::PathBuf>,
}

/// How a migration ended, as the source host says.
#[derive(Debug)]
pub enum Answer {
    /// The container runs on the target.
    Completed(Box<MigrationReport>),
    /// Rolled back (runs on the source), or lost (post-copy after the commit).
    Failed(Box<MigrationReport>),
    /// In doubt or a failed thaw: the source host cannot say by itself; an operator decides
    /// (`POST /ferry/v1/migrations/{id}/settle` on the source).
    NeedsOperator(Box<OutgoingView>),
    /// Not started: 400 bad technique / not available, 404, 409 already migrating...
    Refused { status: u16, detail: String },
}

/// The one-line fix for a host that does not answer.
fn unreachable(url: &str, err: &HostError) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach the ferry host API at {url} ({err}): check the address and that \
         `ferry host` runs there (in a testbed: `ferry testbed status`)"
    )
}

/// Source and target host of a migration.
pub struct Hosts {
    from: Blocking,
    /// The target's API, as the source will call it.
    pub to: String,
}

impl Hosts {
    pub fn new(from: &str, to: &str) -> anyhow::Result<Hosts> {
        Hosts::with_client(HostClient::new(from)?, to)
    }

    /// The source over mutual TLS as `operator`, with the PKI files in `dir`.
    pub fn secure(from: &str, to: &str, dir: &std::path::Path) -> anyhow::Result<Hosts> {
        let tls = super::pki::client_tls(dir, &ferry_tls::Identity::Operator)?;
        Hosts::with_client(HostClient::with_tls(from, tls)?, to)
    }

    fn with_client(from: HostClient, to: &str) -> anyhow::Result<Hosts> {
        let to = HostClient::new(to)?.base().to_string();
        Ok(Hosts {
            from: Blocking::new(from)?,
            to,
        })
    }

    pub fn source_url(&self) -> &str {
        self.from.client().base()
    }

    /// Checks that the source is a ferry host and knows the container (before anything
    /// starts). Something else answering on the address (a proxy, another service) is told
    /// apart from a missing container by the problem kind ferry puts in its answers.
    pub fn check_source(&self, container: &str) -> anyhow::Result<()> {
        let c = self.from.client();
        let url = c.base();
        match self.from.block_on(c.health()) {
            Ok(h) if h.status == "ok" => {}
            Ok(_) | Err(HostError::Protocol { .. } | HostError::Answered { .. }) => bail!(
                "{url} is not a ferry host API (GET /ferry/v1/health): check the address and \
                 port (in a testbed: `ferry testbed status`)"
            ),
            Err(e) => return Err(unreachable(url, &e)),
        }
        match self.from.block_on(c.find_container(container)) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => bail!(
                "no container '{container}' on {url}: list them with `curl {url}/ferry/v1/containers`"
            ),
            Err(e) if e.no_answer() => Err(unreachable(url, &e)),
            Err(e) => bail!("{url}: {e}"),
        }
    }

    /// Starts the migration and follows it to its end; `progress` hears each phase (and
    /// state) change.
    pub fn migrate(
        &self,
        container: &str,
        mut req: MigrateRequest,
        mut progress: impl FnMut(&OutgoingView),
    ) -> anyhow::Result<Answer> {
        req.target = self.to.clone();
        let c = self.from.client();
        let started = match self.from.block_on(c.migrate(container, &req)) {
            Ok(MigrationView::Outgoing(v)) => v,
            Ok(MigrationView::Incoming(_)) => {
                bail!("{}: answered with an incoming migration", c.base())
            }
            Err(HostError::Answered {
                status, problem, ..
            }) => {
                return Ok(Answer::Refused {
                    status,
                    detail: problem.detail.unwrap_or_default(),
                })
            }
            Err(e) => return Err(unreachable(c.base(), &e)),
        };
        let id = started.id.clone();
        let mut silent_since = None;
        loop {
            match self.from.block_on(c.migration(&id)) {
                Ok(MigrationView::Outgoing(v)) => {
                    silent_since = None;
                    progress(&v);
                    match (v.state, v.report.clone()) {
                        (OutgoingState::Completed, Some(r)) => return Ok(Answer::Completed(r)),
                        (OutgoingState::RolledBack | OutgoingState::Lost, Some(r)) => {
                            return Ok(Answer::Failed(r))
                        }
                        (OutgoingState::InDoubt | OutgoingState::RollbackFailed, _) => {
                            return Ok(Answer::NeedsOperator(Box::new(v)))
                        }
                        _ => {}
                    }
                }
                Ok(MigrationView::Incoming(_)) => {
                    bail!("{}: migration {id} is not outgoing", c.base())
                }
                Err(e) if e.kind() == Some(ProblemType::UnknownMigration) => {
                    bail!("{}: the source host forgot migration {id}", c.base())
                }
                // A source busy or restarting: keep asking for a while.
                Err(e) => {
                    let since = *silent_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(60) {
                        return Err(unreachable(c.base(), &e)).context(format!(
                            "following migration {id} (ask again: GET {}/ferry/v1/migrations/{id})",
                            c.base()
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Shows phase changes on stderr: a redrawn line on a terminal, one line per change
/// otherwise (logs, CI).
struct Progress {
    tty: bool,
    t0: Instant,
    last: String,
    container: String,
}

impl Progress {
    fn new(container: &str) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            t0: Instant::now(),
            last: String::new(),
            container: container.to_string(),
        }
    }

    fn show(&mut self, v: &OutgoingView) {
        let now = format!("{} ({})", v.phase, v.state);
        let secs = self.t0.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(
                err,
                "\r migrating {}: {now:<32} {secs:6.2} s",
                self.container
            );
            let _ = err.flush();
        } else if now != self.last {
            let _ = writeln!(err, "{secs:8.3} s  {now}");
        }
        self.last = now;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r{:70}\r", "");
        }
    }
}

/// The report's timings in phase order, with their labels; phases not reached left out.
fn timings(t: &Timings) -> Vec<(&'static str, u64)> {
    [
        ("prepare", t.prepare_ms),
        ("pre-copy rounds", t.pre_copy_ms),
        ("freeze", t.freeze_ms),
        ("dump", t.dump_ms),
        ("transfer", t.transfer_ms),
        ("restore", t.restore_ms),
        ("restore call", t.restore_call_ms),
        ("commit", t.commit_ms),
        ("lazy completion", t.lazy_completion_ms),
        ("cleanup", t.cleanup_ms),
        ("frozen (freeze..commit)", t.frozen_ms),
        ("total", Some(t.total_ms)),
    ]
    .into_iter()
    .filter_map(|(l, v)| v.map(|v| (l, v)))
    .collect()
}

/// One line: `prepare 12 ms, freeze 3 ms, dump 2100 ms, ...` (for the benchmark's misses).
pub fn phase_breakdown(report: &MigrationReport) -> String {
    timings(&report.timings)
        .iter()
        .map(|(l, v)| format!("{l} {v} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// The report as a human-readable table.
pub fn report_table(r: &MigrationReport) -> String {
    let mut out = format!(
        "migration {} of {}: {} -> {}\n  technique {} (requested {}), outcome {}\n",
        r.id, r.container, r.source, r.target, r.technique, r.requested, r.outcome
    );
    if let (Some(p), Some(e)) = (r.failed_phase, &r.error) {
        out.push_str(&format!("  failed in {p}: {e}\n"));
    }
    out.push_str("  phase                        time\n");
    for (label, v) in timings(&r.timings) {
        out.push_str(&format!("  {label:<24} {v:>8} ms\n"));
    }
    out.push_str(&format!(
        "  bytes on the wire {} (memory pages {}, image stream {})\n",
        mib(r.bytes_on_wire),
        mib(r.pages_bytes),
        mib(r.stream_bytes)
    ));
    for p in &r.pre_copy_rounds {
        out.push_str(&format!(
            "  pre-copy round {}: {} pages in {} ms\n",
            p.round, p.pages, p.ms
        ));
    }
    if let Some(f) = r.remote_page_faults {
        let early = r
            .remote_page_faults_first_100ms
            .map(|e| format!(" ({e} in the first 100 ms after the restore)"))
            .unwrap_or_default();
        out.push_str(&format!("  remote page faults: {f}{early}\n"));
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let hosts = match &args.tls_dir {
        Some(dir) => Hosts::secure(&args.from, &args.to, dir)?,
        None => Hosts::new(&args.from, &args.to)?,
    };
    hosts.check_source(&args.container)?;
    let req = MigrateRequest {
        technique: args.technique,
        link_bit_s: args.link_mbit.map(|m| m * 1_000_000),
        dirty_bytes_s: args.dirty_mib_s.map(|m| m << 20),
        dump_timeout_s: args.dump_timeout_s,
        ..MigrateRequest::default()
    };
    let answer = {
        let mut progress = Progress::new(&args.container);
        hosts
            .migrate(&args.container, req, |v| progress.show(v))
            .with_context(|| format!("migrating {}", args.container))?
    };
    let print = |r: &MigrationReport| -> anyhow::Result<()> {
        if args.json {
            println!("{}", serde_json::to_string_pretty(r)?);
        } else {
            print!("{}", report_table(r));
        }
        Ok(())
    };
    match answer {
        Answer::Completed(report) => {
            print(&report)?;
            Ok(ExitCode::SUCCESS)
        }
        Answer::Failed(report) => {
            print(&report)?;
            eprintln!(
                "ferry: migration {} in phase {}: {} ({})",
                report.outcome.to_string().replace('_', " "),
                report
                    .failed_phase
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                report.error.as_deref().unwrap_or("no reason given"),
                match report.outcome {
                    ferry_wire::Outcome::Lost =>
                        "the app runs on the target but misses memory: restart or redeploy it there",
                    _ => "it runs on the source as before; fix the cause and retry",
                }
            );
            Ok(ExitCode::FAILURE)
        }
        Answer::NeedsOperator(v) => {
            if let Some(r) = &v.report {
                print(r)?;
            }
            eprintln!(
                "ferry: migration {} is {} and needs an operator: {}\n  settle it: curl -X POST {}/ferry/v1/migrations/{}/settle -d '{{\"to\": \"source\"}}' (or \"target\")",
                v.id,
                v.state,
                v.advice.as_deref().unwrap_or(""),
                hosts.source_url(),
                v.id
            );
            Ok(ExitCode::FAILURE)
        }
        Answer::Refused { status, detail } => {
            bail!("the source refused the migration ({status}): {detail}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_keeps_phase_order_and_leaves_out_phases_not_reached() {
        let t = Timings {
            total_ms: 900,
            dump_ms: Some(500),
            freeze_ms: Some(3),
            ..Timings::default()
        };
        let r = MigrationReport {
            outcome: ferry_wire::Outcome::Completed,
            timings: t,
            pages_bytes: 1 << 20,
            bytes_on_wire: 1 << 20,
            ..MigrationReport::new(
                "m-1".parse().unwrap(),
                "app",
                "a",
                "b",
                Technique::Auto,
                Technique::Cold,
            )
        };
        assert_eq!(
            phase_breakdown(&r),
            "freeze 3 ms, dump 500 ms, total 900 ms"
        );
        assert!(report_table(&r).contains("memory pages 1.0 MiB"));
    }
}
