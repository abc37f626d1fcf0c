//! The OCI runtime configuration (`config.json`) ferry writes for a container: runc's defaults
//! plus the image's process, the container's limits, and a network namespace given by path.
//!
//! The namespace is given by path on purpose: runc then treats it as external, so CRIU neither
//! dumps nor recreates it, and a restore re-attaches whatever namespace the bundle names (on a
//! migration target: the target's namespace, already holding the container's address).

use std::path::Path;

use oci_spec::runtime::{
    Arch, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, LinuxSeccomp,
    LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder, ProcessBuilder, RootBuilder,
    Spec,
};

use crate::container::ContainerRequest;
use crate::image::ImageConfig;

/// Annotation through which runc hands CRIU a configuration file (runc 1.1 has no flags for
/// the options set there).
pub const CRIU_CONFIG_ANNOTATION: &str = "org.criu.config";

/// CRIU options for every dump and restore of a container. `skip-in-flight`: a client waiting
/// in the listen queue must not make a checkpoint fail ("In-flight connection"); it retries.
pub const CRIU_CONFIG: &str = "skip-in-flight\n";

/// The same for a migration's final dump. The container's network is parked then (host side
/// of its veth down, route gone) and stays parked on the target until the commit, so CRIU's
/// own iptables lock adds nothing but time: measured here, it took about 190 ms of the dump
/// and 230 ms of the restore of a post-copy migration. A restore uses the dump's method.
pub const CRIU_CONFIG_PARKED: &str = "skip-in-flight\nnetwork-lock skip\n";

/// The capabilities an app keeps (bounding, effective, permitted; none inheritable or
/// ambient): what a network service needs to run as root in its own namespaces, and nothing
/// that reaches the host (no SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE, DAC_READ_SEARCH,
/// MKNOD, NET_RAW ...). Docker's default set minus NET_RAW and MKNOD.
pub const CAPABILITIES: [Capability; 12] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::AuditWrite,
    Capability::Setfcap,
];

/// System calls an app is refused (EPERM) whatever its capabilities: kernel surface that a
/// network service has no use for and that container escapes are made of (modules, kexec,
/// mounts and namespaces, keyrings, bpf, perf, io_uring, userfaultfd, handles by inode).
/// CRIU dumps and restores the filter with the process (the parasite runs with seccomp
/// suspended), so it survives checkpoints and migrations.
pub const DENIED_SYSCALLS: [&str; 37] = [
    "acct",
    "add_key",
    "bpf",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "userfaultfd",
    "uselib",
];

fn seccomp() -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(vec![LinuxSyscallBuilder::default()
            .names(
                DENIED_SYSCALLS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(libc::EPERM as u32)
            .build()?])
        .build()
}

/// A container's CRIU options file: `base` ([`CRIU_CONFIG`] or [`CRIU_CONFIG_PARKED`]) and, on
/// a unified cgroup hierarchy, `cgroup-root` naming the container's own cgroup. runc 1.1
/// tells CRIU the restored container's cgroup per v1 controller, but on cgroup v2 with an
/// empty controller name that CRIU matches to nothing: the restored process went back to the
/// cgroup it was dumped from, the source host's (frozen when both hosts share a kernel, so
/// the restore hung; elsewhere outside the container's limits and left behind).
pub fn criu_config(base: &str, unified_cgroup: Option<&str>) -> String {
    match unified_cgroup {
        Some(cg) => format!("{base}cgroup-root {cg}\n"),
        None => base.to_string(),
    }
}

/// The paths runc masks in every container (the runtime spec's defaults): a file is hidden
/// under a bind of /dev/null, a directory under an empty read-only tmpfs.
pub fn masked_paths() -> Vec<String> {
    oci_spec::runtime::Linux::default()
        .masked_paths()
        .clone()
        .unwrap_or_default()
}

/// Builds the runtime spec for `req` on top of the image's configuration.
pub fn build(
    req: &ContainerRequest,
    image: &ImageConfig,
    netns_path: &Path,
    cgroups_path: &str,
    criu_config: &Path,
) -> Result<Spec, oci_spec::OciSpecError> {
    let mut args: Vec<String> = image.entrypoint.clone();
    match &req.args {
        Some(a) => args.extend(a.iter().cloned()),
        None => args.extend(image.cmd.iter().cloned()),
    }
    let mut env: Vec<String> = if image.env.is_empty() {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()]
    } else {
        image.env.clone()
    };
    env.extend(req.env.iter().cloned());

    let caps: oci_spec::runtime::Capabilities = CAPABILITIES.into_iter().collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(oci_spec::runtime::Capabilities::new())
                .ambient(oci_spec::runtime::Capabilities::new())
                .build()?,
        )
        .args(args)
        .env(env)
        .cwd(
            image
                .working_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
        )
        .build()?;

    // runc's default namespaces, minus the cgroup namespace (CRIU and cgroup v1 hosts do not
    // mix well with it), with the network namespace given by path.
    let namespaces: Vec<LinuxNamespace> = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .chain(std::iter::once(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(netns_path.to_path_buf())
            .build(),
    ))
    .collect::<Result<_, _>>()?;

    let mut resources = LinuxResourcesBuilder::default();
    if let Some(mib) = req.memory_mib {
        let bytes = (mib as i64).saturating_mul(1024 * 1024);
        resources = resources.memory(LinuxMemoryBuilder::default().limit(bytes).build()?);
    }
    if let Some(cpus) = req.cpus {
        let period: u64 = 100_000;
        let quota = (cpus * period as f64).round() as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota(quota)
                .build()?,
        );
    }

    let default_linux = oci_spec::runtime::Linux::default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(cgroups_path)
        .resources(resources.build()?)
        .masked_paths(masked_paths())
        .readonly_paths(default_linux.readonly_paths().clone().unwrap_or_default())
        .seccomp(seccomp()?)
        .build()?;

    let mut spec = Spec::default();
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(false)
            .build()?,
    ));
    spec.set_hostname(Some(req.name.clone()));
    spec.set_linux(Some(linux));
    let mut annotations = std::collections::HashMap::new();
    annotations.insert(
        CRIU_CONFIG_ANNOTATION.to_string(),
        criu_config.display().to_string(),
    );
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_config_names_the_cgroup_only_on_cgroup_v2() {
        assert_eq!(criu_config(CRIU_CONFIG, None), CRIU_CONFIG);
        assert_eq!(
            criu_config(CRIU_CONFIG_PARKED, Some("/ferry/h/c1")),
            "skip-in-flight\nnetwork-lock skip\ncgroup-root /ferry/h/c1\n"
        );
    }

    #[test]
    fn spec_carries_process_limits_and_netns_path() {
        let req = ContainerRequest {
            name: "c1".into(),
            image: "counter".into(),
            args: Some(vec!["--port".into(), "8080".into()]),
            env: vec!["A=1".into()],
            memory_mib: Some(128),
            cpus: Some(0.5),
            ip: None,
        };
        let image = ImageConfig {
            entrypoint: vec!["/ferry-counter".into()],
            cmd: vec!["--ballast-mib".into(), "1".into()],
            ..Default::default()
        };
        let spec = build(
            &req,
            &image,
            Path::new("/run/netns/x"),
            "/ferry/h/c1",
            Path::new("/c.conf"),
        )
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["/ferry-counter", "--port", "8080"])
        );
        assert_eq!(
            v["linux"]["resources"]["memory"]["limit"],
            128 * 1024 * 1024
        );
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/x"));
        assert!(!ns.iter().any(|n| n["type"] == "cgroup"));
        assert_eq!(v["annotations"][CRIU_CONFIG_ANNOTATION], "/c.conf");
        // Least privilege: no new privileges, no SYS_ADMIN, nothing inheritable, seccomp on.
        assert_eq!(v["process"]["noNewPrivileges"], true);
        let caps = &v["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            let names: Vec<&str> = caps[set]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(names.len(), CAPABILITIES.len(), "{set}: {names:?}");
            assert!(!names.contains(&"CAP_SYS_ADMIN") && !names.contains(&"CAP_NET_ADMIN"));
        }
        assert_eq!(caps["inheritable"], serde_json::json!([]));
        let seccomp = &v["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(seccomp["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert!(seccomp["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("mount")));
    }
}
