//! `ferry doctor`: what this machine can do for ferry. Each check says pass/fail and, on a
//! failure, what it disables and how to fix it. Features are probed, never assumed: a real
//! edge server usually has what this development machine lacks (soft-dirty, netem).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use ferry_runtime::criu;

#[derive(clap::Args)]
pub struct Args {
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    /// Required for ferry to work at all (vs. a feature some techniques need).
    required: bool,
    detail: String,
    /// On failure: what it disables and how to fix it.
    fix: String,
}

fn check(
    name: &'static str,
    required: bool,
    ok: bool,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        ok,
        required,
        detail: detail.into(),
        fix: if ok { String::new() } else { fix.into() },
    }
}

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A scratch network namespace for probing netns, veth and qdiscs; removed on drop.
struct ScratchNetns(String);

impl ScratchNetns {
    fn create() -> Option<ScratchNetns> {
        let name = format!("ferry-doctor-{}", std::process::id());
        quiet("ip", &["netns", "add", &name]).then_some(ScratchNetns(name))
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        quiet("ip", &["netns", "del", &self.0]);
    }
}

fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push(check(
        "root",
        true,
        root,
        if root { "running as root" } else { "not root" },
        "ferry host needs root (namespaces, mounts, CRIU): run it as root",
    ));

    let runc = ferry_runtime::runc::Runc::version(Path::new("runc"));
    out.push(check(
        "runc",
        true,
        runc.is_some(),
        runc.clone().unwrap_or_else(|| "not found".into()),
        "no container can run: `apt-get install runc` (or `make deps`)",
    ));

    // Every container runs with a seccomp filter (crates/runtime/src/spec.rs): the kernel
    // reports the field only where it has seccomp.
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    out.push(check(
        "seccomp",
        true,
        seccomp,
        if seccomp { "seccomp filters available" } else { "no seccomp in this kernel" },
        "no container can start (each runs with a seccomp filter): needs a kernel with CONFIG_SECCOMP_FILTER",
    ));

    match criu::find() {
        None => out.push(check(
            "criu",
            true,
            false,
            "not found",
            "no checkpoint/restore or migration: run `scripts/install-deps` (builds CRIU >= 4.2)",
        )),
        Some(path) => {
            let v = criu::version(&path);
            let vs = v
                .map(|(a, b, c)| format!("{a}.{b}.{c}"))
                .unwrap_or_else(|| "unknown".into());
            let new_enough = v.is_some_and(|v| v >= criu::MIN_VERSION);
            out.push(check("criu version", true, new_enough, format!("{vs} at {}", path.display()),
                "CRIU < 4.2 fails on kernels >= 6.13 (vDSO) and cannot dump TCP sockets on >= 6.16: run `scripts/install-deps`"));
            let chk = criu::check(&path);
            out.push(check(
                "criu check",
                true,
                chk.is_ok(),
                chk.as_ref()
                    .map(|_| "looks good".to_string())
                    .unwrap_or_else(|e| e.lines().last().unwrap_or("").to_string()),
                "checkpoint/restore may fail: see `criu check --all`",
            ));
            let f = criu::features(&path);
            out.push(check("criu mem_dirty_track", false, f.mem_dirty_track,
                if f.mem_dirty_track { "soft-dirty page tracking available" } else { "dirty tracking is off" },
                "disables pre-copy and hybrid migration (no CRIU pre-dump): needs a kernel with CONFIG_MEM_SOFT_DIRTY"));
            out.push(check("criu lazy pages (uffd)", false, f.lazy_pages,
                if f.lazy_pages { "userfaultfd available" } else { "no userfaultfd" },
                "disables post-copy migration: needs CONFIG_USERFAULTFD (and vm.unprivileged_userfaultfd or root)"));
            let tls = criu::has_tls(&path);
            out.push(check("criu tls", false, tls,
                if tls { "built with GnuTLS: page traffic can be encrypted" } else { "built without TLS" },
                "a host with --tls-dir refuses to start (memory pages would cross the network in the clear): rebuild with scripts/install-deps (libgnutls28-dev)"));
            let private = path.ends_with(".deps/criu/sbin/criu");
            let cache_dir = if private { criu::KDAT_DIR } else { "/run" };
            let cached = criu::on_tmpfs(std::path::Path::new(cache_dir));
            out.push(check("criu kerndat cache", false, cached,
                format!("{cache_dir} {}", if cached { "is a tmpfs: CRIU keeps its kernel probe results there" } else { "is not a tmpfs" }),
                "every CRIU start probes the kernel again (about 100 ms on the frozen path of a migration): `ferry host` mounts a tmpfs on /run/ferry/criu for ferry's CRIU build; for a system CRIU make /run a tmpfs"));
        }
    }

    let pipe = criu::pipe_max_size();
    let pipe_ok = pipe.is_some_and(|v| v >= criu::MIN_PIPE_MAX_SIZE);
    out.push(check("fs.pipe-max-size", false, pipe_ok,
        pipe.map(|v| v.to_string()).unwrap_or_else(|| "unknown".into()),
        "lazy dumps fail (\"page-pipe: splice: Bad file descriptor\"): `sysctl -w fs.pipe-max-size=4194304` (install-deps does it)"));

    let ipt = quiet("iptables", &["--version"]);
    out.push(check(
        "iptables",
        true,
        ipt,
        if ipt { "present" } else { "not found" },
        "CRIU cannot lock the network during a dump: `apt-get install iptables`",
    ));

    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let overlay = fs.lines().any(|l| l.trim_end().ends_with("overlay"));
    out.push(check(
        "overlayfs",
        true,
        overlay,
        if overlay { "available" } else { "missing" },
        "no container root filesystems: `modprobe overlay`",
    ));

    let cg2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cg1 = Path::new("/sys/fs/cgroup/memory").exists();
    let cg_detail = match (cg2, cg1) {
        (true, _) => "cgroup v2 (unified)",
        (false, true) => "cgroup v1 (hybrid)",
        _ => "no cgroup controllers mounted",
    };
    out.push(check(
        "cgroups",
        true,
        cg2 || cg1,
        cg_detail,
        "no memory/CPU limits: mount cgroups",
    ));

    let ns = ScratchNetns::create();
    out.push(check(
        "network namespaces",
        true,
        ns.is_some(),
        if ns.is_some() {
            "ip netns works"
        } else {
            "ip netns add failed"
        },
        "no container networking or testbed: needs CONFIG_NET_NS and iproute2",
    ));
    if let Some(ns) = &ns {
        let n = ns.0.as_str();
        let veth = quiet(
            "ip",
            &[
                "-n", n, "link", "add", "fd0", "type", "veth", "peer", "name", "fd1",
            ],
        );
        out.push(check(
            "veth",
            true,
            veth,
            if veth {
                "veth pairs work"
            } else {
                "cannot create veth"
            },
            "no container networking: needs CONFIG_VETH",
        ));
        let bridge = quiet("ip", &["-n", n, "link", "add", "fdbr", "type", "bridge"]);
        out.push(check(
            "bridge",
            true,
            bridge,
            if bridge {
                "bridges work"
            } else {
                "cannot create bridge"
            },
            "no container networking: needs CONFIG_BRIDGE",
        ));
        quiet("ip", &["-n", n, "link", "set", "fd0", "up"]);
        for (qdisc, args, fix) in [
            ("netem", vec!["netem", "delay", "1ms"], "the testbed emulates delay with its own forwarder instead (slower, userspace): needs CONFIG_NET_SCH_NETEM for kernel delay"),
            ("tbf", vec!["tbf", "rate", "100mbit", "burst", "32kb", "latency", "50ms"], "links cannot be rate-limited with tbf: needs CONFIG_NET_SCH_TBF"),
            ("htb", vec!["htb", "default", "1"], "links cannot be rate-limited with htb: needs CONFIG_NET_SCH_HTB"),
        ] {
            let mut a = vec!["-n", n, "qdisc", "replace", "dev", "fd0", "root"];
            a.extend(args.iter());
            let ok = quiet("tc", &a);
            let name: &'static str = match qdisc { "netem" => "tc qdisc netem", "tbf" => "tc qdisc tbf", _ => "tc qdisc htb" };
            out.push(check(name, false, ok, if ok { "available" } else { "not available" }, fix));
            quiet("tc", &["-n", n, "qdisc", "del", "dev", "fd0", "root"]);
        }
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let results = checks();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("{:<26} {:<6} DETAIL", "CHECK", "RESULT");
        for c in &results {
            let mark = match (c.ok, c.required) {
                (true, _) => "ok",
                (false, true) => "FAIL",
                (false, false) => "miss",
            };
            println!("{:<26} {:<6} {}", c.name, mark, c.detail);
            if !c.ok {
                println!("{:<26} {:<6} -> {}", "", "", c.fix);
            }
        }
        println!("\nlegend: FAIL = ferry cannot work without it; miss = an optional feature (the line says what it disables).");
    }
    let required_ok = results.iter().all(|c| c.ok || !c.required);
    Ok(if required_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
