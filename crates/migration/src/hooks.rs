//! The points of a host's migrations where tests hold them ([`ferry_hooks`]: `--test-hooks
//! DIR`; no-ops in production).

use ferry_wire::migration::MigrationId;

/// Every point, on the side that reaches it. Each comes right after the named state or
/// step was made durable, before the next step another party can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Source: recorded `preparing`, before the offer.
    SourcePreparing,
    /// Source: the target holds a parked copy; before pre-copy or the freeze.
    SourceOffered,
    /// Source: recorded `frozen`, the app frozen; before the dump (a dump to a page server
    /// has connected to it by then: it freezes the app at CRIU's word).
    SourceFrozen,
    /// Source: dumped; before the commit decision.
    SourceDumped,
    /// Source: recorded `committing`; before the images call's end (the manifest: it carries
    /// the commit) is sent.
    SourceCommitting,
    /// Source: recorded `committed`; before post-copy's wait and the cleanup.
    SourceCommitted,
    /// Target: recorded `prepared`, copy parked; before answering the offer.
    TargetPrepared,
    /// Target: recorded `images_received`; before answering.
    TargetImagesReceived,
    /// Target: recorded `restored` (parked); before the commit.
    TargetRestored,
    /// Target: recorded `committed`; before the copy is made reachable.
    TargetCommitted,
    /// Target: the copy serves; before answering the images call (or the commit).
    TargetServing,
}

impl Point {
    pub const ALL: [Point; 11] = [
        Point::SourcePreparing,
        Point::SourceOffered,
        Point::SourceFrozen,
        Point::SourceDumped,
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

pub use ferry_hooks::Hooks;

impl Point {
    /// Holds the migration at this point if a test armed it.
    pub(crate) fn reach(self, hooks: &Hooks, id: &MigrationId) {
        hooks.at(self.name(), id.as_str());
    }
}
