//! `ferry testbed check`: the shaped links measure as configured (RTT and TCP throughput
//! within 10%) on this machine: 1 Gbit/s 5 ms, 100 Mbit/s 20 ms, and a 1 ms cell link.
//! One test in its own binary, so no other testbed test loads the CPUs meanwhile.

#[path = "testbed_support.rs"]
mod support;

use support::*;

/// Runs `check` for links matching `filter`; a measurement disturbed by other work on the
/// machine gets one more try before the test fails.
fn check_passes(name: &str, filter: &str) -> String {
    let mut last = String::new();
    for _ in 0..2 {
        let out = ferry(&[
            "testbed",
            "check",
            "--name",
            name,
            "--link",
            filter,
            "--pings",
            "30",
            "--seconds",
            "4",
        ]);
        last = text(&out);
        if out.status.success() {
            return last;
        }
    }
    panic!("check {filter} failed twice: {last}");
}

#[test]
fn links_measure_as_configured() {
    let name = "tblinks";
    let tb = Testbed::up(name, &topology(name, 6), &["--without-hosts"]);
    for filter in ["mec1-mec2", "mec1-mec3", "ue1@cell1"] {
        let out = check_passes(name, filter);
        let line = out
            .lines()
            .find(|l| l.starts_with(filter))
            .unwrap_or_else(|| panic!("no line for {filter}: {out}"));
        eprintln!("{line}");
        // check prints pass/FAIL per measure; with a rate, both RTT and rate are judged.
        let passes = line.matches("pass").count();
        let want = if filter.starts_with("ue1") { 1 } else { 2 };
        assert_eq!(passes, want, "{line}");
    }
    drop(tb);
}
