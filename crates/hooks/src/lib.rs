//! Test hooks: named points of ferry's state machines (a host's migrations, the control
//! plane's relocations) where a test can hold a daemon to inject a fault exactly there (kill
//! it, cut a link) instead of guessing with sleeps. Only a daemon started with
//! `--test-hooks DIR` has them; in production every point is a no-op.
//!
//! Protocol, all files under DIR: the test creates `arm/<point>`; the daemon, reaching the
//! point, removes it (one shot), writes the operation's id to `reached/<point>` and waits
//! until `release/<point>` exists (or [`HOLD`] passed), then removes that and goes on. A test
//! that kills the daemon at the point simply never releases it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a point waits for its release before going on by itself.
pub const HOLD: Duration = Duration::from_secs(120);

/// The protocol's subdirectories of DIR.
const ARM: &str = "arm";
const REACHED: &str = "reached";
const RELEASE: &str = "release";

fn make_dirs(dir: &Path) -> std::io::Result<()> {
    for sub in [ARM, REACHED, RELEASE] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// The test's side of the protocol, on the DIR a daemon was given with `--test-hooks`.
pub mod drive {
    use super::*;

    /// Arms `point`: the next operation reaching it holds there (a stale `reached` goes).
    pub fn arm(dir: &Path, point: &str) -> std::io::Result<()> {
        make_dirs(dir)?;
        let _ = std::fs::remove_file(dir.join(REACHED).join(point));
        std::fs::write(dir.join(ARM).join(point), b"")
    }

    /// The id of the operation holding at `point`, once one does.
    pub fn reached(dir: &Path, point: &str) -> Option<String> {
        std::fs::read_to_string(dir.join(REACHED).join(point)).ok()
    }

    /// Lets the operation holding at `point` go on.
    pub fn release(dir: &Path, point: &str) -> std::io::Result<()> {
        let _ = std::fs::remove_file(dir.join(REACHED).join(point));
        std::fs::write(dir.join(RELEASE).join(point), b"")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    dir: Option<PathBuf>,
}

/// A point that was armed and reached: the daemon waits for its release.
pub struct Held {
    release: PathBuf,
    until: Instant,
}

impl Held {
    fn released(&self) -> bool {
        self.release.exists() || Instant::now() > self.until
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.release);
    }
}

impl Hooks {
    /// Hooks in `dir` (tests), or none.
    pub fn new(dir: Option<PathBuf>) -> Hooks {
        if let Some(d) = &dir {
            let _ = make_dirs(d);
            tracing::warn!(dir = %d.display(), "TEST HOOKS ARE ON: operations can be held at named points and faults injected; never run a production daemon like this");
        }
        Hooks { dir }
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// Reaching `point` for operation `id`: `Some` if a test armed it (it is then told).
    fn reach(&self, point: &str, id: &str) -> Option<Held> {
        let dir = self.dir.as_ref()?;
        std::fs::remove_file(dir.join(ARM).join(point)).ok()?;
        tracing::warn!(point, id, "test hook: holding");
        let _ = std::fs::write(dir.join(REACHED).join(point), id);
        Some(Held {
            release: dir.join(RELEASE).join(point),
            until: Instant::now() + HOLD,
        })
    }

    /// Holds the calling thread at `point` if a test armed it.
    pub fn at(&self, point: &str, id: &str) {
        if let Some(h) = self.reach(point, id) {
            while !h.released() {
                std::thread::sleep(Duration::from_millis(10));
            }
            tracing::warn!(point, id, "test hook: released");
        }
    }

    /// [`Hooks::at`] for async code: the task waits, the worker does not.
    pub async fn at_async(&self, point: &str, id: &str) {
        if let Some(h) = self.reach(point, id) {
            while !h.released() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tracing::warn!(point, id, "test hook: released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_point_holds_once_until_released() {
        let d = tempfile::tempdir().unwrap();
        let h = Hooks::new(Some(d.path().to_path_buf()));
        h.at("p", "x"); // not armed: goes on at once
        drive::arm(d.path(), "p").unwrap();
        let h2 = h.clone();
        let t = std::thread::spawn(move || h2.at("p", "op-1"));
        let id = loop {
            if let Some(id) = drive::reached(d.path(), "p") {
                break id;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(id, "op-1");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "held until released");
        drive::release(d.path(), "p").unwrap();
        t.join().unwrap();
        assert!(!d.path().join("arm/p").exists(), "one shot");
        assert!(!Hooks::default().enabled());
    }
}
