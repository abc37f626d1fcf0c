//! `ferry testbed check` on the shaped links (1 Gbit/s 5 ms, 100 Mbit/s 20 ms, a 1 ms cell
//! link): the delay and the rate limit are really there. What a loaded machine can disturb
//! (a few ms more RTT, a rate below the limit) is a measurement, judged by `check` itself
//! and printed here; the test asserts what no load can produce: an RTT below the configured
//! delay, a rate above the configured limit, or a link that barely carries anything.
//! One test in its own binary, so no other testbed test loads the CPUs meanwhile.

#[path = "testbed_support.rs"]
mod support;

use support::*;

/// `check`'s line for the links matching `filter` (its exit status judges the 10%
/// tolerance, a measurement: not asserted here).
fn check_line(name: &str, filter: &str) -> String {
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
    let all = text(&out);
    all.lines()
        .find(|l| l.starts_with(filter))
        .unwrap_or_else(|| panic!("no line for {filter}: {all}"))
        .to_string()
}

/// The numbers of a `check` line: (RTT configured, RTT measured, rate configured, rates
/// measured a->b and b->a), the rates absent for a link without a rate.
fn numbers(line: &str) -> (f64, f64, Option<(f64, f64, f64)>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |w: &str| {
        w.parse::<f64>()
            .unwrap_or_else(|_| panic!("'{w}' in {line}"))
    };
    let rtt_conf = num(words[1]);
    let rtt = num(words[3]);
    let rate = words.iter().position(|w| *w == "Mbit").and_then(|i| {
        let conf = num(words[i - 1]);
        let (ab, ba) = words.get(i + 1)?.split_once('/')?;
        Some((conf, num(ab), num(ba)))
    });
    (rtt_conf, rtt, rate)
}

#[test]
fn links_carry_their_delay_and_rate_limit() {
    let name = "tblinks";
    let tb = Testbed::up(name, &topology(name, 6), &["--without-hosts"]);
    for filter in ["mec1-mec2", "mec1-mec3", "ue1@cell1"] {
        let line = check_line(name, filter);
        eprintln!("{line}");
        let (rtt_conf, rtt, rate) = numbers(&line);
        assert!(rtt >= rtt_conf * 0.85, "the delay is missing: {line}");
        assert!(
            rtt <= rtt_conf * 3.0 + 10.0,
            "far more delay than configured: {line}"
        );
        if let Some((conf, ab, ba)) = rate {
            for got in [ab, ba] {
                assert!(got <= conf * 1.10, "the rate limit is missing: {line}");
                assert!(got >= conf * 0.25, "the link barely carries: {line}");
            }
        } else {
            assert!(
                !filter.contains('-'),
                "no rate measured on a host link: {line}"
            );
        }
    }
    drop(tb);
}
