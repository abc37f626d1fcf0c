//! The figure of `ferry bench migrate` (a hand-written SVG, `bench-results/migrate.svg`):
//! downtime as the client saw it against the app's state size, one panel per link profile,
//! all panels on one log scale so they compare.
//!
//! - one line per series through the medians; a whisker at each point from min to max;
//! - colour: the technique (Podman's checkpoint/restore in grey, the baseline);
//! - marker: the variant (circle: the default, runc and pages over TLS; square: the native
//!   engine; triangle: plain pages);
//! - dash: the app's dirty rate (solid: idle; dashed: it rewrites its memory);
//! - a grey dotted line: the state's transfer time over the link (state / rate), the floor of
//!   stop-and-copy;
//! - each line is labelled at its right end, so the eye needs no legend for the techniques.

use std::fmt::Write as _;

use super::bed::PROFILES;
use super::migrate::Cell;

const PANEL_W: f64 = 470.0;
const PANEL_H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 88.0;
const BOTTOM: f64 = 150.0;

/// A series' colour by its technique (a series is "technique[, variant]...").
fn colour(series: &str) -> &'static str {
    match technique(series) {
        "cold" => "#1f77b4",
        "post-copy" => "#2ca02c",
        "pre-copy" => "#9467bd",
        "hybrid" => "#d62728",
        _ => "#7f7f7f", // podman
    }
}

fn technique(series: &str) -> &str {
    series.split(',').next().unwrap_or(series).trim()
}

/// The marker of a variant: circle (default), square (native engine), triangle (plain pages).
fn marker(series: &str, x: f64, y: f64, fill: &str) -> String {
    if series.contains("native") {
        format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{fill}\"/>",
            x - 4.0,
            y - 4.0
        )
    } else if series.contains("plain pages") {
        format!(
            "<path d=\"M{:.1},{:.1} l5,9 h-10 z\" fill=\"{fill}\"/>",
            x,
            y - 5.5
        )
    } else {
        format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.2\" fill=\"{fill}\"/>")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// "1 s" / "100 ms" for a power of ten of milliseconds.
fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", ms / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// The SVG document.
pub fn svg(cells: &[Cell]) -> String {
    let drawn: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.downtime_ms.0.is_finite())
        .collect();
    let mut profiles: Vec<&str> = Vec::new();
    let mut sizes: Vec<u32> = Vec::new();
    let mut dirty: Vec<u32> = Vec::new();
    for c in cells {
        push(&mut profiles, c.profile.as_str());
        push(&mut sizes, c.ballast_mib);
        push(&mut dirty, c.dirty_mib_s);
    }
    sizes.sort_unstable();
    dirty.sort_unstable();
    // One y scale for all panels: powers of ten around every min and max drawn.
    let lo_ms = drawn
        .iter()
        .map(|c| c.downtime_ms.1)
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let hi_ms = drawn
        .iter()
        .map(|c| c.downtime_ms.2)
        .fold(0.0f64, f64::max)
        .max(lo_ms * 10.0);
    let (lo, hi) = (lo_ms.log10().floor(), hi_ms.log10().ceil());
    let y = |ms: f64| TOP + PANEL_H * (1.0 - (ms.max(10f64.powf(lo)).log10() - lo) / (hi - lo));
    let panel_x = |i: usize| i as f64 * (PANEL_W + LEFT + RIGHT);
    // State sizes on a log axis (they double and quadruple), one slot wide at least.
    let (s_lo, s_hi) = (
        (*sizes.first().unwrap_or(&1) as f64).log2(),
        (*sizes.last().unwrap_or(&1) as f64).log2(),
    );
    let x = |mib: u32| {
        let span = (s_hi - s_lo).max(1.0);
        LEFT + 30.0 + (PANEL_W - 60.0) * ((mib as f64).log2() - s_lo) / span
    };
    // Wide enough for the title and the key under a single panel.
    let width = (panel_x(profiles.len().max(1)) + 10.0).max(900.0);
    let height = TOP + PANEL_H + BOTTOM;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Downtime of a live migration, as the client saw it</text>\n\
         <text x=\"{LEFT}\" y=\"44\" fill=\"#555\">ferry bench migrate: median of the runs (line) and their range (whisker), by the app's state size; one panel per link; log scales</text>\n"
    );
    for (pi, profile) in profiles.iter().enumerate() {
        let px = panel_x(pi);
        let p = PROFILES.iter().find(|p| p.name == *profile);
        let title = match p {
            Some(p) => format!(
                "{}: {} Mbit/s, {} ms one way",
                p.name, p.rate_mbit, p.delay_ms
            ),
            None => profile.to_string(),
        };
        let _ = write!(
            s,
            "<g class=\"panel\" transform=\"translate({px:.1},0)\">\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>\n\
             <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{PANEL_W}\" height=\"{PANEL_H}\" fill=\"none\" stroke=\"#999\"/>\n",
            LEFT + PANEL_W / 2.0,
            TOP - 8.0,
            esc(&title)
        );
        // Grid: decades of ms, labelled on the first panel.
        let mut d = lo;
        while d <= hi {
            let v = 10f64.powf(d);
            let yy = y(v);
            let _ = write!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e5e5e5\"/>",
                LEFT + PANEL_W
            );
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                LEFT - 6.0,
                yy + 4.0,
                ms_label(v)
            );
            d += 1.0;
        }
        for &mib in &sizes {
            let xx = x(mib);
            let _ = writeln!(
                s,
                "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#f0f0f0\"/>\
                 <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{mib} MiB</text>",
                TOP + PANEL_H,
                TOP + PANEL_H + 18.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">state size (the app's memory it keeps dirtying)</text>",
            LEFT + PANEL_W / 2.0,
            TOP + PANEL_H + 38.0
        );
        // The link's floor: the whole state over the link.
        if let Some(p) = p {
            let pts: Vec<String> = sizes
                .iter()
                .map(|&mib| {
                    let ms = super::migrate::transfer_s(mib, p.rate_mbit) * 1000.0;
                    format!("{:.1},{:.1}", x(mib), y(ms))
                })
                .collect();
            if pts.len() > 1 {
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1.5\" stroke-dasharray=\"2 4\"><title>state / link rate</title></polyline>",
                    pts.join(" ")
                );
            }
        }
        // One line per (series, dirty rate).
        let mut lines: Vec<(String, u32)> = Vec::new();
        for c in drawn.iter().filter(|c| c.profile == *profile) {
            push(&mut lines, (c.series(), c.dirty_mib_s));
        }
        let mut labels: Vec<(f64, String, &str)> = Vec::new();
        for (series, d) in &lines {
            let mut pts: Vec<&Cell> = drawn
                .iter()
                .filter(|c| c.profile == *profile && &c.series() == series && c.dirty_mib_s == *d)
                .copied()
                .collect();
            pts.sort_by_key(|c| c.ballast_mib);
            let col = colour(series);
            let dash = if *d > 0 {
                " stroke-dasharray=\"7 4\""
            } else {
                ""
            };
            let path: Vec<String> = pts
                .iter()
                .map(|c| format!("{:.1},{:.1}", x(c.ballast_mib), y(c.downtime_ms.0)))
                .collect();
            let _ = write!(
                s,
                "<g class=\"series\" data-series=\"{}\" data-dirty=\"{d}\">",
                esc(series)
            );
            if path.len() > 1 {
                let _ = write!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"{dash}/>",
                    path.join(" ")
                );
            }
            for c in &pts {
                let (m, mn, mx) = c.downtime_ms;
                let (xx, ym) = (x(c.ballast_mib), y(m));
                let _ = write!(
                    s,
                    "<g><title>{} at {} MiB, {} MiB/s: median {:.0} ms (min {:.0}, max {:.0}; {} of {} runs)</title>\
                     <line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{col}\" stroke-width=\"1.2\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{col}\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{col}\"/>{}</g>",
                    esc(series),
                    c.ballast_mib,
                    c.dirty_mib_s,
                    m,
                    mn,
                    mx,
                    c.ok_runs,
                    c.runs,
                    y(mn),
                    y(mx),
                    xx - 4.0,
                    xx + 4.0,
                    y(mn),
                    y(mn),
                    xx - 4.0,
                    xx + 4.0,
                    y(mx),
                    y(mx),
                    marker(series, xx, ym, col)
                );
            }
            s.push_str("</g>\n");
            if let Some(last) = pts.last() {
                let label = if dirty.len() > 1 {
                    format!("{series} · {d} MiB/s")
                } else {
                    series.clone()
                };
                labels.push((y(last.downtime_ms.0), label, col));
            }
        }
        // Labels at the right edge, nudged apart so none overlaps another.
        labels.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut last_y = f64::NEG_INFINITY;
        for (ly, text, col) in labels {
            let ly = ly.max(last_y + 13.0);
            last_y = ly;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{col}\" font-size=\"11\">{}</text>",
                LEFT + PANEL_W + 6.0,
                ly + 4.0,
                esc(&text)
            );
        }
        s.push_str("</g>\n");
    }
    // The key for what colour cannot say.
    let ky = TOP + PANEL_H + 70.0;
    let _ = writeln!(
        s,
        "<g class=\"key\" transform=\"translate({LEFT},{ky:.1})\" fill=\"#333\">\
         {}<text x=\"10\" y=\"4\">runc, pages over TLS</text>\
         {}<text x=\"170\" y=\"4\">native engine</text>\
         {}<text x=\"300\" y=\"4\">plain pages</text>\
         <line x1=\"420\" x2=\"450\" y1=\"0\" y2=\"0\" stroke=\"#333\" stroke-width=\"2\"/><text x=\"456\" y=\"4\">idle app</text>\
         <line x1=\"530\" x2=\"560\" y1=\"0\" y2=\"0\" stroke=\"#333\" stroke-width=\"2\" stroke-dasharray=\"7 4\"/><text x=\"566\" y=\"4\">app rewriting its memory</text>\
         <line x1=\"0\" x2=\"30\" y1=\"24\" y2=\"24\" stroke=\"#888\" stroke-width=\"1.5\" stroke-dasharray=\"2 4\"/><text x=\"36\" y=\"28\">the state over the link (state / rate): what stop-and-copy cannot beat</text>\
         <text x=\"0\" y=\"52\">colour: cold (blue), post-copy (green), pre-copy (purple), hybrid (red), Podman checkpoint/restore (grey)</text></g>",
        marker("", 0.0, 0.0, "#333"),
        marker("native", 160.0, 0.0, "#333"),
        marker("plain pages", 290.0, 0.0, "#333"),
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_wire::migration::{CheckpointEngine, PageTransport};

    fn cell(
        profile: &str,
        mib: u32,
        technique: &str,
        engine: Option<CheckpointEngine>,
        ms: f64,
    ) -> Cell {
        Cell {
            profile: profile.into(),
            ballast_mib: mib,
            dirty_mib_s: 0,
            technique: technique.into(),
            pages: Some(PageTransport::Tls),
            engine,
            runs: 3,
            ok_runs: 3,
            downtime_ms: (ms, ms * 0.9, ms * 1.2),
            total_ms: (ms * 2.0, ms, ms * 3.0),
            mib_on_wire: mib as f64,
        }
    }

    #[test]
    fn one_panel_per_profile_one_line_per_series_failed_cells_left_out() {
        let mut cells = vec![
            cell("1gbit-5ms", 64, "cold", None, 400.0),
            cell("1gbit-5ms", 256, "cold", None, 1100.0),
            cell(
                "1gbit-5ms",
                64,
                "cold",
                Some(CheckpointEngine::Native),
                300.0,
            ),
            cell(
                "1gbit-5ms",
                256,
                "cold",
                Some(CheckpointEngine::Native),
                900.0,
            ),
            cell("100mbit-20ms", 64, "post-copy", None, 450.0),
            cell("100mbit-20ms", 256, "post-copy", None, 480.0),
            cell("100mbit-20ms", 256, "<podman>", None, 2600.0),
        ];
        cells.push(cell("100mbit-20ms", 64, "hybrid", None, f64::NAN));
        let svg = svg(&cells);
        assert_eq!(svg.matches("<g class=\"panel\"").count(), 2);
        assert!(svg.contains("1gbit-5ms: 1000 Mbit/s, 5 ms one way"));
        assert_eq!(svg.matches("class=\"series\"").count(), 4, "{svg}");
        assert!(svg.contains("data-series=\"cold, native\""));
        assert!(
            !svg.contains("data-series=\"hybrid\""),
            "no median, no line"
        );
        assert!(svg.contains("median 1100 ms (min 990, max 1320; 3 of 3 runs)"));
        assert!(svg.contains("&lt;podman&gt;"), "escaped");
        // Elements open and close in balance (it parses as a document).
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
    }

    #[test]
    fn longer_downtime_is_higher_on_the_figure() {
        let cells = vec![
            cell("1gbit-5ms", 64, "cold", None, 100.0),
            cell("1gbit-5ms", 256, "cold", None, 10_000.0),
        ];
        let svg = svg(&cells);
        let points = svg
            .split("<polyline points=\"")
            .nth(2) // the first is the link's floor
            .and_then(|r| r.split('"').next())
            .unwrap();
        let ys: Vec<f64> = points
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys[1] < ys[0], "{points}");
    }
}
