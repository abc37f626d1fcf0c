//! Where ferry's containers sit in the cgroup tree, and removing the groups runc leaves.
//!
//! Container `name` of the daemon with id `daemon` is the group `/ferry/<daemon>/<name>`, in
//! the unified hierarchy (cgroup v2) or in every v1 controller's. runc creates the group and
//! its parents and removes only the group itself. On cgroup v2, runc 1.1 (Debian 12's) tries
//! that rmdir once: while a task of the container is still exiting (a thread of a killed app
//! freeing its memory, slow under load) it fails with EBUSY and `runc delete` does not report
//! it (on v1 runc retries for about 150 ms; runc 1.2 retries on v2 too). So after `runc
//! delete` the runtime removes what is left: the group, waiting while it still has tasks,
//! then its parents where they are empty.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The parent of every group ferry makes, in each hierarchy.
const PARENT: &str = "ferry";

/// The group of container `name` of daemon `daemon` (config.json's `cgroupsPath`).
pub fn path(daemon: &str, name: &str) -> String {
    format!("/{PARENT}/{daemon}/{name}")
}

/// The cgroup hierarchies a container has a group in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies(Vec<PathBuf>);

impl Hierarchies {
    /// This machine's, under `/sys/fs/cgroup`.
    pub fn mounted() -> Hierarchies {
        Hierarchies::under(Path::new("/sys/fs/cgroup"))
    }

    /// The hierarchies mounted under `base`: `base` itself when it is the unified hierarchy
    /// (it has `cgroup.controllers`), otherwise each directory in it (the v1 controllers, and
    /// `unified` in hybrid mode; the aliases such as `cpu -> cpu,cpuacct` are symlinks).
    pub fn under(base: &Path) -> Hierarchies {
        if base.join("cgroup.controllers").is_file() {
            return Hierarchies(vec![base.to_path_buf()]);
        }
        let mut roots: Vec<PathBuf> = std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        roots.sort();
        Hierarchies(roots)
    }

    /// The hierarchies' root directories.
    pub fn roots(&self) -> &[PathBuf] {
        &self.0
    }

    /// Removes `group` (a path under `/ferry/`; anything else is left alone) in every
    /// hierarchy, waiting up to `patience` while it still has tasks. Returns the groups that
    /// remain, with the reason. Its parents stay: a container being created beside it needs
    /// them (runc makes the path level by level and, on cgroup v1, copies cpuset.mems from
    /// each parent: one removed under it fails that container's start with ENODEV). They go
    /// with [`Hierarchies::remove_empty_parents`] once the daemon makes no more.
    pub fn remove(&self, group: &str, patience: Duration) -> Vec<(PathBuf, io::Error)> {
        let rel = Path::new(group.trim_start_matches('/'));
        if rel.components().next() != Some(std::path::Component::Normal(PARENT.as_ref()))
            || rel.components().count() < 2
        {
            return Vec::new();
        }
        let deadline = Instant::now() + patience;
        let mut left = Vec::new();
        for root in &self.0 {
            let dir = root.join(rel);
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // Tasks still exiting (or, in a v1 hierarchy, not yet gone from `tasks`).
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        left.push((dir, e));
                        break;
                    }
                }
            }
        }
        left
    }

    /// Removes `/ferry/<daemon>` in every hierarchy where it is empty: when the daemon starts
    /// (before it makes any group) and when it is taken down. `/ferry` itself stays, shared by
    /// every daemon on the machine, any of which may be making a group under it right now
    /// (runc and container engines leave their parents likewise).
    pub fn remove_empty_parents(&self, daemon: &str) {
        for root in &self.0 {
            let _ = std::fs::remove_dir(root.join(PARENT).join(daemon));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkdirs(base: &Path, dirs: &[&str]) {
        for d in dirs {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
    }

    #[test]
    fn unified_is_one_hierarchy_v1_one_per_controller() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        mkdirs(v2.path(), &["init.scope", "ferry/a1/app"]);
        assert_eq!(
            Hierarchies::under(v2.path()),
            Hierarchies(vec![v2.path().to_path_buf()])
        );

        let v1 = tempfile::tempdir().unwrap();
        mkdirs(v1.path(), &["cpu,cpuacct", "memory", "unified"]);
        std::os::unix::fs::symlink("cpu,cpuacct", v1.path().join("cpu")).unwrap();
        assert_eq!(
            Hierarchies::under(v1.path()),
            Hierarchies(vec![
                v1.path().join("cpu,cpuacct"),
                v1.path().join("memory"),
                v1.path().join("unified"),
            ])
        );
    }

    #[test]
    fn removes_the_group_and_leaves_its_parents() {
        let v1 = tempfile::tempdir().unwrap();
        mkdirs(
            v1.path(),
            &[
                "memory/ferry/a1/app",
                "memory/ferry/b2/app",
                "pids/ferry/a1/app",
            ],
        );
        let h = Hierarchies::under(v1.path());
        let left = h.remove(&path("a1", "app"), Duration::ZERO);
        assert!(left.is_empty(), "{left:?}");
        assert!(!v1.path().join("memory/ferry/a1/app").exists());
        assert!(!v1.path().join("pids/ferry/a1/app").exists());
        assert!(v1.path().join("memory/ferry/a1").is_dir());
        assert!(v1.path().join("memory/ferry/b2/app").is_dir());
        // Idempotent.
        assert!(h.remove(&path("a1", "app"), Duration::ZERO).is_empty());
    }

    #[test]
    fn a_group_that_cannot_go_is_reported_and_its_parents_stay() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "").unwrap();
        // A group with a child group is busy (on cgroupfs EBUSY, here ENOTEMPTY).
        mkdirs(v2.path(), &["ferry/a1/app/inner"]);
        let left = Hierarchies::under(v2.path()).remove(&path("a1", "app"), Duration::ZERO);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, v2.path().join("ferry/a1/app"));
        assert!(v2.path().join("ferry/a1/app/inner").is_dir());
    }

    #[test]
    fn only_groups_under_ferry_are_touched() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "").unwrap();
        mkdirs(v2.path(), &["system.slice/x.service", "ferry"]);
        let h = Hierarchies::under(v2.path());
        assert!(h
            .remove("/system.slice/x.service", Duration::ZERO)
            .is_empty());
        assert!(h.remove("/ferry", Duration::ZERO).is_empty());
        assert!(h.remove("/", Duration::ZERO).is_empty());
        assert!(v2.path().join("system.slice/x.service").is_dir());
        assert!(v2.path().join("ferry").is_dir());
    }

    #[test]
    fn empty_parents_of_one_daemon_go() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "").unwrap();
        mkdirs(v2.path(), &["ferry/a1", "ferry/b2/app"]);
        let h = Hierarchies::under(v2.path());
        h.remove_empty_parents("b2");
        assert!(v2.path().join("ferry/b2/app").is_dir());
        h.remove_empty_parents("a1");
        assert!(!v2.path().join("ferry/a1").exists());
        assert!(v2.path().join("ferry").is_dir());
        std::fs::remove_dir_all(v2.path().join("ferry/b2/app")).unwrap();
        h.remove_empty_parents("b2");
        assert!(!v2.path().join("ferry/b2").exists());
        // The shared parent stays.
        assert!(v2.path().join("ferry").is_dir());
    }
}
