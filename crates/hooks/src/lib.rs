//! Test hooks: named points of ferry's state machines (a host's migrations, the control
//! plane's relocations) where a test can hold a daemon to inject a fault exactly there (kill
//! it, cut a link) instead of guessing with sleeps. Only a daemon started with
//! `--test-hooks DIR` has them; in production every point is a no-op.
//!
//! Protocol, all files under DIR: the test creates `arm/<point>`; the daemon, reaching the
//! point, removes it (one shot), writes the operation's id to `reached/<point>` and waits
//! until `release/<point>` exists (or [`HOLD`] passed), then removes that and goes on. A test
//! that kills the daemon at the point simply never releases it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a point waits for its release before going on by itself.
pub const HOLD: Duration = Duration::from_secs(120);

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
            for sub in ["arm", "reached", "release"] {
                let _ = std::fs::create_dir_all(d.join(sub));
            }
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
        std::fs::remove_file(dir.join("arm").join(point)).ok()?;
        tracing::warn!(point, id, "test hook: holding");
        let _ = std::fs::write(dir.join("reached").join(point), id);
        Some(Held {
            release: dir.join("release").join(point),
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
        std::fs::write(d.path().join("arm/p"), b"").unwrap();
        let h2 = h.clone();
        let t = std::thread::spawn(move || h2.at("p", "op-1"));
        let reached = d.path().join("reached/p");
        while !reached.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::read_to_string(&reached).unwrap(), "op-1");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "held until released");
        std::fs::write(d.path().join("release/p"), b"").unwrap();
        t.join().unwrap();
        assert!(!d.path().join("arm/p").exists(), "one shot");
        assert!(!Hooks::default().enabled());
    }
}
