//! Test hooks: named points of the two state machines where a test can stop a migration to
//! inject a fault exactly there (kill a daemon, cut a link), instead of guessing with sleeps.
//! Only a host started with `--test-hooks DIR` has them; in production every point is a
//! no-op.
//!
//! Protocol, all files under DIR: the test creates `arm/<point>`; the host, reaching the
//! point, removes it (one shot), writes the migration id to `reached/<point>` and waits
//! until `release/<point>` exists (or 120 s passed), then removes that and goes on. A test
//! that kills the daemon at the point simply never releases it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_wire::migration::MigrationId;

/// Every point, on the side that reaches it. Each comes right after the named state or
/// step was made durable, before the next step another party can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Source: recorded `preparing`, before the offer.
    SourcePreparing,
    /// Source: the target holds a parked copy; before pre-copy or the freeze.
    SourceOffered,
    /// Source: recorded `frozen`, the app frozen; before the dump.
    SourceFrozen,
    /// Source: dumped; before the stream.
    SourceDumped,
    /// Source: the target has the images; before the restore order.
    SourceTransferred,
    /// Source: the target restored (parked); before the commit decision.
    SourceRestored,
    /// Source: recorded `committing`; before the commit is sent.
    SourceCommitting,
    /// Source: recorded `committed`; before post-copy's wait and the cleanup.
    SourceCommitted,
    /// Target: recorded `prepared`, copy parked; before answering the offer.
    TargetPrepared,
    /// Target: recorded `images_received`; before answering.
    TargetImagesReceived,
    /// Target: recorded `restored` (parked, lease running); before answering.
    TargetRestored,
    /// Target: recorded `committed`; before the copy is made reachable.
    TargetCommitted,
    /// Target: the copy serves; before answering the commit.
    TargetServing,
}

impl Point {
    pub const ALL: [Point; 13] = [
        Point::SourcePreparing,
        Point::SourceOffered,
        Point::SourceFrozen,
        Point::SourceDumped,
        Point::SourceTransferred,
        Point::SourceRestored,
        Point::SourceCommitting,
        Point::SourceCommitted,
        Point::TargetPrepared,
        Point::TargetImagesReceived,
        Point::TargetRestored,
        Point::TargetCommitted,
        Point::TargetServing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::SourcePreparing => "source-preparing",
            Point::SourceOffered => "source-offered",
            Point::SourceFrozen => "source-frozen",
            Point::SourceDumped => "source-dumped",
            Point::SourceTransferred => "source-transferred",
            Point::SourceRestored => "source-restored",
            Point::SourceCommitting => "source-committing",
            Point::SourceCommitted => "source-committed",
            Point::TargetPrepared => "target-prepared",
            Point::TargetImagesReceived => "target-images-received",
            Point::TargetRestored => "target-restored",
            Point::TargetCommitted => "target-committed",
            Point::TargetServing => "target-serving",
        }
    }
}

/// How long a point waits for its release before going on by itself.
const HOLD: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    dir: Option<PathBuf>,
}

impl Hooks {
    /// Hooks in `dir` (tests), or none.
    pub fn new(dir: Option<PathBuf>) -> Hooks {
        if let Some(d) = &dir {
            for sub in ["arm", "reached", "release"] {
                let _ = std::fs::create_dir_all(d.join(sub));
            }
            tracing::warn!(dir = %d.display(), "TEST HOOKS ARE ON: migrations can be held at named points; never run a production host like this");
        }
        Hooks { dir }
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// Reaching `point` in migration `id`: holds there if a test armed it.
    pub fn at(&self, point: Point, id: &MigrationId) {
        let Some(dir) = &self.dir else { return };
        let armed = dir.join("arm").join(point.name());
        if std::fs::remove_file(&armed).is_err() {
            return;
        }
        tracing::warn!(point = point.name(), migration = %id, "test hook: holding");
        let release = dir.join("release").join(point.name());
        let _ = std::fs::write(dir.join("reached").join(point.name()), id.as_str());
        let deadline = Instant::now() + HOLD;
        while !release.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&release);
        tracing::warn!(point = point.name(), migration = %id, "test hook: released");
    }
}
