//! Tears a testbed down: processes, mounts, namespaces, root-namespace links and state.
//! Safe to run twice and after a crash: what to delete is derived from the name prefix
//! (namespaces `<name>-*`, links `<name>-*`, processes inside those namespaces or rooted
//! under the testbed's state directory, the agent by its command line), not only from the
//! state file.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::command::run;
use crate::error::TestbedError;
use crate::plan::{prefix, run_dir, state_dir};
use crate::state::State;

/// What `down` removed (for the CLI to print).
#[derive(Debug, Default)]
pub struct Removed {
    pub processes: usize,
    pub mounts: usize,
    pub namespaces: usize,
    pub links: usize,
}

/// Names of existing namespaces starting with `prefix`.
pub fn our_netns(prefix: &str) -> impl Iterator<Item = String> + '_ {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(move |n| n.starts_with(prefix))
}

/// Root-namespace links whose name starts with `prefix`.
pub fn our_links(prefix: &str) -> Vec<String> {
    let out = run("ip", ["-o", "link", "show"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Pids of processes that belong to testbed `name`: the agent (by its command line), anything
/// running in one of its namespaces, anything whose root is under its state directory (a
/// container of one of its hosts).
pub fn our_processes(name: &str) -> Vec<u32> {
    let p = prefix(name);
    let ns_inodes: HashSet<u64> = our_netns(&p)
        .filter_map(|n| std::fs::metadata(format!("/run/netns/{n}")).ok())
        .map(|m| m.ino())
        .collect();
    let sdir = state_dir(name);
    let agent_args = ["testbed", "agent", "--name", name];
    let me = std::process::id();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = e.path();
        let in_ns = std::fs::metadata(base.join("ns/net"))
            .map(|m| ns_inodes.contains(&m.ino()))
            .unwrap_or(false);
        let rooted = is_container_of(&base, &sdir);
        let cmd: Vec<String> = std::fs::read(base.join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let is_agent = cmd
            .windows(agent_args.len())
            .any(|w| w.iter().zip(agent_args).all(|(a, b)| a == b));
        if in_ns || rooted || is_agent {
            pids.push(pid);
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we found in /proc; failure (already gone) is harmless.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGTERM, up to 3 s to exit, then SIGKILL.
fn stop(pids: &[u32]) {
    for &p in pids {
        signal(p, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in pids.iter().filter(|p| alive(**p)) {
        signal(p, libc::SIGKILL);
    }
}

/// Mount points under `dir`, deepest first.
fn mounts_under(dir: &str) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == dir || m.starts_with(&format!("{dir}/")))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v.dedup();
    v
}

/// Whether process `/proc/PID` is a container of this testbed: its root is an overlay whose
/// layers are under the testbed's state directory. (`/proc/PID/root` reads `/` inside the
/// container's own mount namespace, so the mount table is what tells.)
fn is_container_of(proc_dir: &std::path::Path, sdir: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(proc_dir.join("mountinfo")) else {
        return false;
    };
    let needle = format!("{sdir}/");
    text.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .is_some_and(|root| root.contains(&needle))
}

/// The containers of this testbed's hosts: their network namespace inodes and cgroup paths.
/// The `ferry host` daemons name container namespaces and cgroups without the testbed
/// prefix, so they are found through the containers' processes.
fn containers(name: &str) -> (HashSet<u64>, HashSet<String>) {
    let sdir = state_dir(name);
    let mut inodes = HashSet::new();
    let mut cgroups = HashSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let base = e.path();
        if !is_container_of(&base, &sdir) {
            continue;
        }
        if let Ok(m) = std::fs::metadata(base.join("ns/net")) {
            inodes.insert(m.ino());
        }
        for line in std::fs::read_to_string(base.join("cgroup"))
            .unwrap_or_default()
            .lines()
        {
            if let Some(path) = line.splitn(3, ':').nth(2) {
                if path.len() > 1 {
                    cgroups.insert(path.to_string());
                }
            }
        }
    }
    (inodes, cgroups)
}

/// Named namespaces (`/run/netns/*`) with one of these inodes, except the testbed's own.
fn netns_with_inodes(name: &str, inodes: &HashSet<u64>) -> Vec<String> {
    let p = prefix(name);
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::metadata(e.path())
                .map(|m| inodes.contains(&m.ino()))
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with(&p))
        .collect()
}

/// Removes the cgroups of the killed containers in every v1 hierarchy or the unified one
/// (waiting while their tasks finish exiting), then their host daemons' groups
/// (`/ferry/<daemon>`) where empty: the testbed's daemons are gone and make no more.
fn remove_cgroups(paths: &HashSet<String>) {
    let hierarchies = ferry_runtime::cgroup::Hierarchies::mounted();
    for path in paths {
        for (group, e) in hierarchies.remove(path, Duration::from_secs(10)) {
            tracing::warn!(cgroup = %group.display(), error = %e, "cannot remove cgroup");
        }
    }
    let daemons: HashSet<&str> = paths
        .iter()
        .filter_map(|p| p.trim_start_matches('/').split('/').nth(1))
        .collect();
    for daemon in daemons {
        hierarchies.remove_empty_parents(daemon);
    }
}

/// Removes each host daemon's `/ferry/<daemon>` group where empty, also of hosts whose
/// containers all moved away before `down` (their daemons are gone and make no more). A host's
/// daemon id comes from its state directory, as the daemon computes it.
fn remove_host_cgroups(sdir: &Path) {
    let hierarchies = ferry_runtime::cgroup::Hierarchies::mounted();
    for host in std::fs::read_dir(sdir).into_iter().flatten().flatten() {
        if let Ok(dir) = std::fs::canonicalize(host.path()) {
            if dir.is_dir() {
                hierarchies.remove_empty_parents(&ferry_runtime::daemon_id(&dir));
            }
        }
    }
}

/// Removes testbed `name` and everything it left. Idempotent.
pub fn down(name: &str) -> Result<Removed, TestbedError> {
    ferry_topology::topology_name_problem(name)
        .map_err(|p| TestbedError::Invalid(format!("not a testbed name: {p}")))?;
    let mut removed = Removed::default();
    let p = prefix(name);
    // Found before the processes stop: afterwards nothing ties them to this testbed.
    let (container_inodes, container_cgroups) = containers(name);
    let container_netns = netns_with_inodes(name, &container_inodes);
    // 1. Processes: those the state file names, then whatever the prefix finds.
    let mut pids: Vec<u32> = State::load(name)
        .map(|s| s.procs.iter().map(|p| p.pid).collect())
        .unwrap_or_default();
    pids.retain(|p| alive(*p));
    stop(&pids);
    removed.processes += pids.len();
    for _ in 0..3 {
        let rest: Vec<u32> = our_processes(name)
            .into_iter()
            .filter(|p| alive(*p))
            .collect();
        if rest.is_empty() {
            break;
        }
        // SIGKILL: everything they could clean up is about to be deleted anyway, and a
        // container's init ignores SIGTERM.
        for &p in &rest {
            signal(p, libc::SIGKILL);
        }
        removed.processes += rest.len();
        let deadline = Instant::now() + Duration::from_secs(2);
        while rest.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // 2. Mounts under the state directory (ferry host overlays), deepest first.
    let sdir = state_dir(name);
    for m in mounts_under(&sdir) {
        let c = std::ffi::CString::new(m.clone())
            .map_err(|_| TestbedError::Invalid(format!("bad mount path {m}")))?;
        // SAFETY: umount2 with a valid NUL-terminated path; MNT_DETACH so a busy mount goes too.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc == 0 {
            removed.mounts += 1;
        } else {
            tracing::warn!(mount = %m, error = %std::io::Error::last_os_error(), "cannot unmount");
        }
    }
    // 3. Namespaces (their veths, routes and qdiscs go with them), then root links.
    remove_cgroups(&container_cgroups);
    remove_host_cgroups(Path::new(&sdir));
    for ns in our_netns(&p).chain(container_netns).collect::<Vec<_>>() {
        match run("ip", ["netns", "del", ns.as_str()]) {
            Ok(_) => removed.namespaces += 1,
            Err(e) => tracing::warn!(netns = %ns, error = %e, "cannot delete namespace"),
        }
    }
    for l in our_links(&p) {
        if run("ip", ["link", "del", l.as_str()]).is_ok() {
            removed.links += 1;
        }
    }
    // 4. State: the run directory always; the state directory only once nothing is mounted
    //    in it (never delete through a mount).
    let _ = std::fs::remove_dir_all(run_dir(name));
    if mounts_under(&sdir).is_empty() {
        let _ = std::fs::remove_dir_all(&sdir);
    } else {
        tracing::warn!(dir = %sdir, "mounts remain under the state directory; left it in place");
    }
    let left_ns: Vec<String> = our_netns(&p).collect();
    let left_links = our_links(&p);
    if !left_ns.is_empty() || !left_links.is_empty() {
        return Err(TestbedError::Conflict(format!(
            "could not remove namespaces {left_ns:?} / links {left_links:?}; run `ferry testbed down --name {name}` again"
        )));
    }
    Ok(removed)
}
