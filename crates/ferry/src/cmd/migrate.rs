//! `ferry migrate CONTAINER --from URL --to URL`: asks the source host to migrate a container
//! live to the target host, shows the phases while it runs (polling the source's container
//! record), then prints the migration report (or the raw JSON with `--json`).
//!
//! The pieces are public so that `ferry bench migrate` drives migrations the same way:
//! [`Hosts::migrate`] (one blocking call, the answer classified), [`report_table`] and
//! [`phase_breakdown`] (how a report is shown).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

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
    technique: String,
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
}

/// The answer of the source host to a migration request.
#[derive(Debug)]
pub enum Answer {
    /// 200: the container runs on the target.
    Completed(Value),
    /// 502 with a report: rolled back (runs on the source) or unknown (an operator decides).
    Failed { detail: String, report: Value },
    /// Any other status (400 bad technique / not available, 404, 409 already migrating...).
    Refused { status: u16, detail: String },
}

/// The API base of a host from what a user types: `http://IP:7100`, with or without
/// `/ferry/v1`, with or without the scheme.
pub fn api_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/ferry/v1").unwrap_or(url);
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// The one-line fix for a host that does not answer.
fn unreachable(url: &str, err: &reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach the ferry host API at {url} ({}): check the address and that `ferry host` \
         runs there (in a testbed: `ferry testbed status`)",
        root_cause(err)
    )
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut e = err;
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

/// Source and target host of a migration, with the HTTP client used for both.
pub struct Hosts {
    pub from: String,
    pub to: String,
    http: reqwest::blocking::Client,
    /// The status poller's client: short timeouts, a stuck GET must not hide progress.
    poll: reqwest::blocking::Client,
}

impl Hosts {
    pub fn new(from: &str, to: &str) -> anyhow::Result<Hosts> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A cold migration of a large state over a slow link takes minutes.
            .timeout(Duration::from_secs(1800))
            .build()?;
        let poll = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        Ok(Hosts {
            from: api_base(from),
            to: api_base(to),
            http,
            poll,
        })
    }

    /// Checks that the source is a ferry host and knows the container (before anything
    /// starts). Something else answering on the address (a proxy, another service) is told
    /// apart from a missing container by the body: ferry answers with ProblemDetails.
    pub fn check_source(&self, container: &str) -> anyhow::Result<()> {
        let health = format!("{}/ferry/v1/health", self.from);
        let r = self
            .http
            .get(&health)
            .send()
            .map_err(|e| unreachable(&self.from, &e))?;
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        if !status.is_success() || body["status"] != "ok" {
            bail!(
                "{} is not a ferry host API (GET /ferry/v1/health answered {status}): check the \
                 address and port (in a testbed: `ferry testbed status`)",
                self.from
            );
        }
        let url = format!("{}/ferry/v1/containers/{container}", self.from);
        let r = self
            .http
            .get(&url)
            .send()
            .map_err(|e| unreachable(&self.from, &e))?;
        if r.status().as_u16() == 404 {
            bail!(
                "no container '{container}' on {}: list them with `curl {}/ferry/v1/containers`",
                self.from,
                self.from
            );
        }
        if !r.status().is_success() {
            bail!("{url}: {}", problem_detail(r));
        }
        Ok(())
    }

    /// Posts the migration and waits for its end (one blocking call).
    pub fn migrate(&self, container: &str, technique: &str) -> anyhow::Result<Answer> {
        self.migrate_with(container, json!({ "technique": technique }))
    }

    /// [`Hosts::migrate`] with more fields of the request (`target` is added).
    pub fn migrate_with(&self, container: &str, mut request: Value) -> anyhow::Result<Answer> {
        let url = format!("{}/ferry/v1/containers/{container}/migrate", self.from);
        request["target"] = json!(self.to);
        let r = self
            .http
            .post(&url)
            .json(&request)
            .send()
            .map_err(|e| unreachable(&self.from, &e))?;
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or(Value::Null);
        let detail = body["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        Ok(match status {
            200 => Answer::Completed(body),
            _ if body.get("report").is_some_and(Value::is_object) => Answer::Failed {
                detail,
                report: body["report"].clone(),
            },
            _ => Answer::Refused { status, detail },
        })
    }

    /// The phase of the container's outgoing migration on the source, if one runs.
    pub fn phase(&self, container: &str) -> Option<String> {
        let url = format!("{}/ferry/v1/containers/{container}", self.from);
        let v: Value = self.poll.get(url).send().ok()?.json().ok()?;
        // `outgoing` is null when no migration runs (yet, or any more).
        let out = v.get("outgoing").filter(|o| o.is_object())?;
        let phase = out["phase"].as_str().unwrap_or("");
        let phase = if phase.is_empty() { "prepare" } else { phase };
        Some(if out["committed"] == true && phase != "commit" {
            format!("{phase} (committed)")
        } else {
            phase.to_string()
        })
    }
}

fn problem_detail(r: reqwest::blocking::Response) -> String {
    let status = r.status();
    let body: Value = r.json().unwrap_or(Value::Null);
    format!(
        "{status}: {}",
        body["detail"].as_str().unwrap_or(&body.to_string())
    )
}

/// Shows phase changes on stderr until dropped: a redrawn line on a terminal, one line per
/// change otherwise (logs, CI).
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(hosts: Arc<Hosts>, container: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let tty = std::io::stderr().is_terminal();
            let t0 = Instant::now();
            let spinner = ['|', '/', '-', '\\'];
            let mut last = String::new();
            let mut tick = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let phase = hosts.phase(&container).unwrap_or_else(|| last.clone());
                let secs = t0.elapsed().as_secs_f64();
                let mut err = std::io::stderr().lock();
                if tty {
                    let shown = if phase.is_empty() { "starting" } else { &phase };
                    let _ = write!(
                        err,
                        "\r{} migrating {container}: {shown:<20} {secs:6.2} s",
                        spinner[tick % 4]
                    );
                    let _ = err.flush();
                } else if phase != last && !phase.is_empty() {
                    let _ = writeln!(err, "{secs:8.3} s  {phase}");
                }
                drop(err);
                last = phase;
                tick += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            if tty {
                let _ = write!(std::io::stderr(), "\r{:60}\r", "");
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Timing fields of a report in phase order, with their labels. Fields the report does not
/// carry (a phase not reached, a technique without it) are left out by the callers.
const TIMINGS: &[(&str, &str)] = &[
    ("prepare_ms", "prepare"),
    ("pre_copy_ms", "pre-copy rounds"),
    ("freeze_ms", "freeze"),
    ("dump_ms", "dump"),
    ("transfer_ms", "transfer"),
    ("restore_ms", "restore"),
    ("commit_ms", "commit"),
    ("lazy_completion_ms", "lazy completion"),
    ("cleanup_ms", "cleanup"),
    ("frozen_ms", "frozen (freeze..commit)"),
    ("total_ms", "total"),
];

/// Every timing of the report, known ones first in phase order, then any other `*_ms` field
/// a newer host adds (so the CLI never hides a phase).
fn timings(report: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Some(t) = report["timings"].as_object() else {
        return out;
    };
    for (key, label) in TIMINGS {
        if let Some(v) = t.get(*key).and_then(Value::as_f64) {
            out.push((label.to_string(), v));
        }
    }
    for (key, v) in t {
        if TIMINGS.iter().any(|(k, _)| k == key) {
            continue;
        }
        if let Some(v) = v.as_f64() {
            out.push((key.trim_end_matches("_ms").replace('_', " "), v));
        }
    }
    out
}

/// One line: `prepare 12 ms, freeze 3 ms, dump 2100 ms, ...` (for the benchmark's misses).
pub fn phase_breakdown(report: &Value) -> String {
    timings(report)
        .iter()
        .map(|(l, v)| format!("{l} {v:.0} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: &Value) -> String {
    match bytes.as_f64() {
        Some(b) => format!("{:.1} MiB", b / 1048576.0),
        None => "-".to_string(),
    }
}

/// The report as a human-readable table.
pub fn report_table(report: &Value) -> String {
    let s = |k: &str| report[k].as_str().unwrap_or("?").to_string();
    let mut out = format!(
        "migration {} of {}: {} -> {}\n  technique {} (requested {}), outcome {}\n",
        s("id"),
        s("container"),
        s("source"),
        s("target"),
        s("technique"),
        s("requested"),
        s("outcome")
    );
    if let (Some(p), Some(e)) = (report["failed_phase"].as_str(), report["error"].as_str()) {
        out.push_str(&format!("  failed in {p}: {e}\n"));
    }
    out.push_str("  phase                        time\n");
    for (label, v) in timings(report) {
        out.push_str(&format!("  {label:<24} {v:>8.0} ms\n"));
    }
    out.push_str(&format!(
        "  bytes on the wire {} (memory pages {}, image stream {})\n",
        mib(&report["bytes_on_wire"]),
        mib(&report["pages_bytes"]),
        mib(&report["stream_bytes"])
    ));
    if let Some(rounds) = report["pre_copy_rounds"].as_array() {
        for r in rounds {
            out.push_str(&format!(
                "  pre-copy round {}: {} pages in {} ms\n",
                r["round"], r["pages"], r["ms"]
            ));
        }
    }
    for key in ["remote_page_faults", "lazy_pages_bytes"] {
        if let Some(v) = report.get(key).filter(|v| !v.is_null()) {
            out.push_str(&format!("  {}: {v}\n", key.replace('_', " ")));
        }
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let hosts = Arc::new(Hosts::new(&args.from, &args.to)?);
    hosts.check_source(&args.container)?;
    let answer = {
        let _progress = Progress::start(hosts.clone(), args.container.clone());
        let mut request = json!({ "technique": args.technique });
        let hints = [
            ("link_bit_s", args.link_mbit.map(|m| m * 1_000_000)),
            ("dirty_bytes_s", args.dirty_mib_s.map(|m| m << 20)),
            ("dump_timeout_s", args.dump_timeout_s),
        ];
        for (key, value) in hints {
            if let Some(v) = value {
                request[key] = json!(v);
            }
        }
        hosts
            .migrate_with(&args.container, request)
            .with_context(|| format!("migrating {}", args.container))?
    };
    match answer {
        Answer::Completed(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report_table(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Answer::Failed { detail: _, report } => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report_table(&report));
            }
            let fix = if report["outcome"] == "unknown" {
                "the target may run it: ask the target host before doing anything else"
            } else {
                "it runs on the source as before; fix the cause and retry"
            };
            eprintln!(
                "ferry: migration {} in phase {}: {} ({fix})",
                report["outcome"]
                    .as_str()
                    .unwrap_or("failed")
                    .replace('_', " "),
                report["failed_phase"].as_str().unwrap_or("?"),
                report["error"].as_str().unwrap_or("no reason given")
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
    fn api_base_accepts_what_users_type() {
        assert_eq!(api_base("10.0.0.1:7100"), "http://10.0.0.1:7100");
        assert_eq!(
            api_base("http://10.0.0.1:7100/ferry/v1/"),
            "http://10.0.0.1:7100"
        );
    }

    #[test]
    fn breakdown_keeps_phase_order_and_unknown_timings() {
        let r = json!({"timings": {"total_ms": 900, "dump_ms": 500, "freeze_ms": 3,
                                   "restore_ms": null, "page_fault_wait_ms": 7}});
        assert_eq!(
            phase_breakdown(&r),
            "freeze 3 ms, dump 500 ms, total 900 ms, page fault wait 7 ms"
        );
        assert!(report_table(&r).contains("total"));
        assert_eq!(phase_breakdown(&json!({})), "");
    }
}
