//! Progress of long CLI work (indicatif): a migration's phase, the bytes sent so far and the
//! rate; a benchmark's runs done with the time left. Drawn on stderr when it is a terminal;
//! nothing at all otherwise (logs and CI get the results, not the redraws).

use std::io::IsTerminal;
use std::time::Duration;

use ferry_wire::migration::OutgoingView;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where bars go: stderr on a terminal, nowhere otherwise.
fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A set of bars drawn together (the benchmark's runs and its current migration). Lines
/// printed through [`Bars::println`] go to stdout above them.
#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(target()),
        }
    }

    /// Prints a line of results on stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        self.multi.suspend(|| println!("{line}"));
    }

    /// A bar of `total` steps (runs), with the time left.
    pub fn steps(&self, total: u64, what: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} · {elapsed} elapsed, ~{eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar
    }

    /// A migration's bar (see [`MigrationBar`]).
    pub fn migration(&self, container: &str) -> MigrationBar {
        MigrationBar::with_bar(self.multi.add(ProgressBar::no_length()), container)
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

/// One migration: its phase and state, the bytes the source sent so far and the rate.
pub struct MigrationBar {
    bar: ProgressBar,
}

impl MigrationBar {
    /// On its own (`ferry migrate`).
    pub fn new(container: &str) -> MigrationBar {
        MigrationBar::with_bar(ProgressBar::with_draw_target(None, target()), container)
    }

    fn with_bar(bar: ProgressBar, container: &str) -> MigrationBar {
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix}: {msg:<22} {binary_bytes:>10} sent · {binary_bytes_per_sec:>11} · {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(container.to_string());
        bar.set_message("starting");
        bar.enable_steady_tick(Duration::from_millis(100));
        MigrationBar { bar }
    }

    /// The source's view of the migration now.
    pub fn show(&self, v: &OutgoingView) {
        self.bar.set_message(format!("{} ({})", v.phase, v.state));
        self.bar.set_position(v.moved_bytes);
    }
}

impl Drop for MigrationBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
