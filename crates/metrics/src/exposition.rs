//! A strict reader of Prometheus' text exposition format (version 0.0.4), for the tests and
//! tools that check what a daemon serves at `/metrics`: every line must be a comment, a
//! `# HELP`/`# TYPE` line or a sample of a declared family; names, labels, escapes and values
//! are checked, and a histogram's buckets must be cumulative and end in `+Inf` = `_count`.
//! Errors name the line.

use std::collections::BTreeMap;

/// A metric family's type (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name (`x_bucket` for a bucket of histogram `x`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family: its `# TYPE`, `# HELP` and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub kind: Kind,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// A whole scrape, by family name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub families: BTreeMap<String, Family>,
}

/// One histogram series (the buckets of one label set, without `le`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    /// (upper bound, cumulative count), ascending, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `{a="x",b="y"}` (the braces included) to the labels; the rest of the line after it.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !valid_name(name, false) {
            return Err(format!("bad label name '{name}'"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("bad escape in a label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label '{name}' twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The family a sample name belongs to, given the declared families.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families
                .get(base)
                .is_some_and(|f| matches!(f.kind, Kind::Histogram | Kind::Summary))
            {
                return Some(base);
            }
        }
    }
    None
}

/// Reads a scrape; the first problem, with its line, is the error.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |e: String| format!("line {n}: {e}: {line}");
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_name(name, true) {
                        return Err(err(format!("bad metric name '{name}'")));
                    }
                    let kind = match kind.trim() {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "summary" => Kind::Summary,
                        "untyped" => Kind::Untyped,
                        k => return Err(err(format!("unknown type '{k}'"))),
                    };
                    let f = families.entry(name.to_string()).or_insert(Family {
                        kind,
                        help: String::new(),
                        samples: Vec::new(),
                    });
                    if !f.samples.is_empty() {
                        return Err(err("TYPE after the family's samples".into()));
                    }
                    f.kind = kind;
                }
                (Some("HELP"), Some(name), help) => {
                    if !valid_name(name, true) {
                        return Err(err(format!("bad metric name '{name}'")));
                    }
                    families
                        .entry(name.to_string())
                        .or_insert(Family {
                            kind: Kind::Untyped,
                            help: String::new(),
                            samples: Vec::new(),
                        })
                        .help = help.unwrap_or_default().to_string();
                }
                _ => {} // any other comment
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("sample without a value".into()))?;
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return Err(err(format!("bad metric name '{name}'")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .and_then(parse_value)
            .ok_or_else(|| err("bad or missing value".into()))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp '{ts}'")))?;
        }
        if fields.next().is_some() {
            return Err(err("text after the timestamp".into()));
        }
        let family = family_of(name, &families)
            .ok_or_else(|| err(format!("sample of undeclared family '{name}'")))?
            .to_string();
        if let Some(f) = families.get_mut(&family) {
            f.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    let scrape = Scrape { families };
    for (name, f) in &scrape.families {
        if f.kind == Kind::Histogram {
            for labels in scrape.series_labels(name) {
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                scrape
                    .histogram(name, &pairs)
                    .ok_or_else(|| format!("histogram {name}{labels:?} is not consistent"))?;
            }
        }
    }
    Ok(scrape)
}

fn matches(s: &Sample, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels` (all of them for
    /// `&[]`); `None` when none matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = family_of(name, &self.families)?;
        let mut found = None;
        for s in &self.families[family].samples {
            if s.name == name && matches(s, labels) {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// The label sets (without `le`) of a histogram's series.
    fn series_labels(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let mut out: Vec<BTreeMap<String, String>> = Vec::new();
        for s in self
            .families
            .get(name)
            .map(|f| &f.samples[..])
            .unwrap_or(&[])
        {
            let mut l = s.labels.clone();
            l.remove("le");
            if !out.contains(&l) {
                out.push(l);
            }
        }
        out
    }

    /// The histogram series of `name` whose labels are exactly `labels` (besides `le`), if it
    /// is consistent: cumulative buckets in ascending order ending in `+Inf`, whose count is
    /// `_count`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<HistogramSeries> {
        let f = self.families.get(name)?;
        if f.kind != Kind::Histogram {
            return None;
        }
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let same = |s: &Sample| {
            let mut l = s.labels.clone();
            l.remove("le");
            l == want
        };
        let mut buckets = Vec::new();
        let (mut sum, mut count) = (None, None);
        for s in f.samples.iter().filter(|s| same(s)) {
            if s.name == format!("{name}_bucket") {
                let le = parse_value(s.labels.get("le")?)?;
                buckets.push((le, s.value as u64));
            } else if s.name == format!("{name}_sum") {
                sum = Some(s.value);
            } else if s.name == format!("{name}_count") {
                count = Some(s.value as u64);
            }
        }
        let count = count?;
        let ascending = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last()?;
        (ascending && last.0 == f64::INFINITY && last.1 == count).then_some(HistogramSeries {
            buckets,
            sum: sum?,
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_prometheus_encoder_writes() {
        let r = crate::Registry::new();
        let c = r.counter_vec("ferry_x_total", "X \"quoted\"\nnew line", &["kind"]);
        c.with_label_values(&["a\"b\\c"]).inc_by(2);
        let h = r.histogram_vec("ferry_y_seconds", "Y", &["phase"], vec![0.1, 1.0]);
        h.with_label_values(&["dump"]).observe(0.5);
        h.with_label_values(&["dump"]).observe(5.0);
        let s = parse(&r.encode()).unwrap();
        assert_eq!(s.value("ferry_x_total", &[("kind", "a\"b\\c")]), Some(2.0));
        let series = s
            .histogram("ferry_y_seconds", &[("phase", "dump")])
            .unwrap();
        assert_eq!(series.count, 2);
        assert_eq!(series.sum, 5.5);
        assert_eq!(series.buckets, vec![(0.1, 0), (1.0, 1), (f64::INFINITY, 2)]);
    }

    #[test]
    fn refuses_what_is_not_the_format() {
        for (text, why) in [
            ("x 1\n", "undeclared"),
            ("# TYPE x counter\nx{a=\"1\" 1\n", "unterminated labels"),
            ("# TYPE x counter\nx{a=1} 1\n", "unquoted"),
            ("# TYPE x counter\nx one\n", "bad value"),
            ("# TYPE x counter\nx{a=\"\\q\"} 1\n", "bad escape"),
            ("# TYPE 1x counter\n", "bad name"),
            ("# TYPE x histogram\nx_bucket{le=\"1\"} 2\nx_bucket{le=\"+Inf\"} 1\nx_sum 1\nx_count 1\n", "not cumulative"),
            ("# TYPE x histogram\nx_bucket{le=\"1\"} 1\nx_sum 1\nx_count 1\n", "no +Inf"),
            ("# TYPE x counter\nx 1\n# TYPE x gauge\n", "TYPE after samples"),
        ] {
            assert!(parse(text).is_err(), "{why}: {text}");
        }
        assert!(parse("# TYPE x gauge\n# a comment\n\nx 1 1700000000000\n").is_ok());
    }
}
