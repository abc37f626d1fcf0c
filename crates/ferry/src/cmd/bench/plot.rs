//! A hand-written SVG of the migration benchmark: per cell (profile, ballast, dirty rate) one
//! bar per technique, the median downtime on a log scale, a whisker from min to max.

use super::migrate::Cell;

const W: f64 = 960.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 110.0;
const TOP: f64 = 40.0;

/// A series' colour by its technique (a series is "technique[, variant]").
fn colour(series: &str) -> &'static str {
    match series.split(',').next().unwrap_or(series) {
        "cold" => "#1f77b4",
        "post-copy" => "#2ca02c",
        "pre-copy" => "#9467bd",
        "hybrid" => "#8c564b",
        _ => "#d62728", // podman
    }
}

/// A variant of a technique (", plain pages") is drawn lighter than the technique itself.
fn opacity(series: &str) -> f64 {
    if series.contains(',') {
        0.45
    } else {
        1.0
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}

/// The SVG document (log scale from 10 ms to the next power of ten above the largest max).
pub fn svg(cells: &[Cell]) -> String {
    let mut groups: Vec<(String, u32, u32)> = Vec::new();
    let mut techniques: Vec<String> = Vec::new();
    for c in cells {
        let g = (c.profile.clone(), c.ballast_mib, c.dirty_mib_s);
        if !groups.contains(&g) {
            groups.push(g);
        }
        if !techniques.contains(&c.series()) {
            techniques.push(c.series());
        }
    }
    let max = cells
        .iter()
        .map(|c| c.downtime_ms.2)
        .filter(|v| v.is_finite())
        .fold(100.0f64, f64::max);
    let (lo, hi) = (1.0f64, max.log10().ceil().max(2.0));
    let plot_h = H - TOP - BOTTOM;
    let y = |ms: f64| TOP + plot_h * (1.0 - (ms.max(10.0).log10() - lo) / (hi - lo));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\">ferry bench migrate: downtime seen by the client (median, min-max; log scale)</text>\n"
    );
    // Axis with a line per power of ten.
    let mut p = lo;
    while p <= hi {
        let v = 10f64.powf(p);
        let yy = y(v);
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{} ms</text>\n",
            W - 10.0,
            LEFT - 5.0,
            yy + 4.0,
            v
        ));
        p += 1.0;
    }
    let group_w = (W - LEFT - 10.0) / groups.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / techniques.len().max(1) as f64).min(40.0);
    for (gi, g) in groups.iter().enumerate() {
        let gx = LEFT + gi as f64 * group_w + group_w * 0.1;
        for (ti, t) in techniques.iter().enumerate() {
            let Some(c) = cells.iter().find(|c| {
                (&c.profile, c.ballast_mib, c.dirty_mib_s) == (&g.0, g.1, g.2) && &c.series() == t
            }) else {
                continue;
            };
            let (m, mn, mx) = c.downtime_ms;
            if !m.is_finite() {
                continue;
            }
            let x = gx + ti as f64 * bar_w;
            let base = y(10.0);
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"{}\"><title>{} {:.0} ms ({:.0}-{:.0})</title></rect>\n",
                y(m),
                bar_w - 2.0,
                (base - y(m)).max(0.0),
                colour(t),
                opacity(t),
                esc(t),
                m,
                mn,
                mx
            ));
            let cx = x + (bar_w - 2.0) / 2.0;
            s.push_str(&format!(
                "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n",
                y(mn),
                y(mx)
            ));
        }
        let lx = gx + group_w * 0.4;
        let ly = H - BOTTOM + 15.0;
        s.push_str(&format!(
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{} MiB, {} MiB/s</text>\
             <text x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            g.1,
            g.2,
            ly + 14.0,
            esc(&g.0)
        ));
    }
    for (ti, t) in techniques.iter().enumerate() {
        let x = LEFT + ti as f64 * 150.0;
        let ly = H - 30.0;
        s.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\" fill-opacity=\"{}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>\n",
            ly - 10.0,
            colour(t),
            opacity(t),
            x + 16.0,
            esc(t)
        ));
    }
    s.push_str("</svg>\n");
    s
}
