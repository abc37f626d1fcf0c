//! Semantic checks of a parsed topology (names, references, addresses), and one-line
//! descriptions of toml's own errors. Every error names the field and, where it can be found
//! in the text, its line.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::addr::Ipv4Cidr;
use crate::locate::{line_of, Seg};
use crate::{Rat, Topology, TopologyError};

/// Longest topology name: it prefixes namespaces and root-namespace links
/// (`<name>-m` must fit the kernel's 15-byte interface names).
pub const MAX_TOPOLOGY_NAME: usize = 10;
/// Longest host, cell or UE name: it appears in interface names inside the testbed's
/// namespaces (`up-<host>`, `h-<host>`, `c-<cell>`), which must fit 15 bytes.
pub const MAX_NODE_NAME: usize = 12;

/// A field path such as `hosts[1].address`, built from segments so the same value both
/// names the field in the message and finds its line.
struct Field<'a>(Vec<Seg<'a>>);

impl<'a> Field<'a> {
    fn top(key: &'a str) -> Self {
        Field(vec![Seg { key, index: None }])
    }
    fn item(key: &'a str, index: usize) -> Self {
        Field(vec![Seg {
            key,
            index: Some(index),
        }])
    }
    fn key(mut self, key: &'a str) -> Self {
        self.0.push(Seg { key, index: None });
        self
    }
    fn at(mut self, key: &'a str, index: usize) -> Self {
        self.0.push(Seg {
            key,
            index: Some(index),
        });
        self
    }
    fn name(&self) -> String {
        let mut s = String::new();
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(seg.key);
            if let Some(n) = seg.index {
                s.push_str(&format!("[{n}]"));
            }
        }
        s
    }
}

fn invalid(text: &str, field: Field, reason: impl Into<String>) -> TopologyError {
    TopologyError::Invalid {
        line: line_of(text, &field.0),
        field: field.name(),
        reason: reason.into(),
    }
}

/// Checks everything the testbed and the RAN rely on.
pub fn check(t: &Topology, text: &str) -> Result<(), TopologyError> {
    check_names(t, text)?;
    check_addresses(t, text)?;
    check_cells(t, text)?;
    check_links(t, text)?;
    check_ues(t, text)?;
    check_radio(t, text)?;
    Ok(())
}

/// The radio model's numbers: finite and in a range where its formulas mean something.
fn check_radio(t: &Topology, text: &str) -> Result<(), TopologyError> {
    let Some(r) = &t.radio else {
        return Ok(());
    };
    let ranges: [(&str, f64, f64, f64); 10] = [
        ("path_loss_exponent", r.path_loss_exponent, 1.5, 6.0),
        ("shadowing_db", r.shadowing_db, 0.0, 20.0),
        (
            "shadowing_decorrelation_m",
            r.shadowing_decorrelation_m,
            1.0,
            10_000.0,
        ),
        ("bandwidth_mhz", r.bandwidth_mhz, 1.4, 400.0),
        ("noise_figure_db", r.noise_figure_db, 0.0, 20.0),
        ("a3_offset_db", r.a3_offset_db, -15.0, 15.0),
        ("hysteresis_db", r.hysteresis_db, 0.0, 15.0),
        ("nr_bandwidth_mhz", r.nr_bandwidth_mhz, 5.0, 400.0),
        ("ca_add_rsrp_dbm", r.ca_add_rsrp_dbm, -140.0, -44.0),
        ("ca_hysteresis_db", r.ca_hysteresis_db, 0.0, 30.0),
    ];
    for (key, v, lo, hi) in ranges {
        if !(v.is_finite() && (lo..=hi).contains(&v)) {
            return Err(invalid(
                text,
                Field::top("radio").key(key),
                format!("{v} is outside {lo}..={hi}"),
            ));
        }
    }
    let times: [(&str, u64, u64, u64); 3] = [
        (
            "meas_period_ms",
            r.meas_period_ms,
            *crate::MEAS_PERIOD_MS.start(),
            *crate::MEAS_PERIOD_MS.end(),
        ),
        ("time_to_trigger_ms", r.time_to_trigger_ms, 0, 60_000),
        ("preparation_ms", r.preparation_ms, 0, 60_000),
    ];
    for (key, v, lo, hi) in times {
        if !(lo..=hi).contains(&v) {
            return Err(invalid(
                text,
                Field::top("radio").key(key),
                format!("{v} ms is outside {lo}..={hi} ms"),
            ));
        }
    }
    Ok(())
}

fn name_problem(name: &str, max: usize, allow_dash: bool) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > max {
        return Some(format!(
            "'{name}' is {} characters; at most {max} fit in interface names (shorten it)",
            name.len()
        ));
    }
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || (allow_dash && c == '-');
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || !name.chars().all(ok_char) {
        let allowed = if allow_dash {
            "lower-case letters, digits and '-'"
        } else {
            "lower-case letters and digits"
        };
        return Some(format!(
            "'{name}' must start with a letter and use only {allowed} (it names namespaces and interfaces)"
        ));
    }
    None
}

/// Checks a topology name on its own (also what `ferry testbed down --name` accepts, so it
/// can never delete by a prefix that is not a testbed's).
pub fn topology_name_problem(name: &str) -> Result<(), String> {
    if let Some(p) = name_problem(name, MAX_TOPOLOGY_NAME, false) {
        return Err(p);
    }
    // `ferry host` daemons name container namespaces `ferry-...`.
    if name == "ferry" {
        return Err(
            "'ferry' is reserved (ferry's own namespaces start with 'ferry-'); pick another name"
                .into(),
        );
    }
    Ok(())
}

fn check_names(t: &Topology, text: &str) -> Result<(), TopologyError> {
    // No '-' in the topology name: `down` deletes by the prefix `<name>-`, which must not
    // match another testbed's names.
    if let Err(p) = topology_name_problem(&t.name) {
        return Err(invalid(text, Field::top("name"), p));
    }
    if t.hosts.is_empty() {
        return Err(invalid(
            text,
            Field::top("name"),
            "the topology has no [[hosts]]; add at least one",
        ));
    }
    // Hosts and UEs get namespaces `<topo>-<name>`, and links refer to hosts and cells by
    // name: one name space for all three kinds.
    let mut seen: HashMap<&str, String> = HashMap::new();
    let all = t
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| ("hosts", i, h.name.as_str()))
        .chain(
            t.cells
                .iter()
                .enumerate()
                .map(|(i, c)| ("cells", i, c.name.as_str())),
        )
        .chain(
            t.ues
                .iter()
                .enumerate()
                .map(|(i, u)| ("ues", i, u.name.as_str())),
        );
    for (kind, i, name) in all {
        let field = Field::item(kind, i).key("name");
        if let Some(p) = name_problem(name, MAX_NODE_NAME, true) {
            return Err(invalid(text, field, p));
        }
        if name == "gw" {
            return Err(invalid(
                text,
                field,
                "'gw' is reserved for the gateway namespace; rename it",
            ));
        }
        if let Some(prev) = seen.get(name) {
            return Err(invalid(
                text,
                field,
                format!("duplicate name '{name}' (already used by {prev}); names of hosts, cells and UEs must be unique"),
            ));
        }
        seen.insert(name, format!("{kind}[{i}]"));
    }
    Ok(())
}

fn parse_ip(text: &str, field: Field, value: &str) -> Result<Ipv4Addr, TopologyError> {
    value.parse().map_err(|_| {
        invalid(
            text,
            field,
            format!("'{value}' is not an IPv4 address (write it as a.b.c.d)"),
        )
    })
}

fn check_addresses(t: &Topology, text: &str) -> Result<(), TopologyError> {
    let mut nets: Vec<(&str, Ipv4Cidr)> = Vec::new();
    for (key, value) in [
        ("app_subnet", &t.app_subnet),
        ("link_subnet", &t.link_subnet),
        ("mgmt_subnet", &t.mgmt_subnet),
    ] {
        let cidr = Ipv4Cidr::parse(value).map_err(|r| invalid(text, Field::top(key), r))?;
        if let Some((other, _)) = nets.iter().find(|(_, n)| n.overlaps(&cidr)) {
            return Err(invalid(
                text,
                Field::top(key),
                format!("{cidr} overlaps {other}; give them disjoint prefixes"),
            ));
        }
        nets.push((key, cidr));
    }
    let mgmt = nets[2].1;
    if mgmt.prefix != 30 {
        return Err(invalid(
            text,
            Field::top("mgmt_subnet"),
            format!("{mgmt} must be a /30 (root side and gateway side)"),
        ));
    }
    let links = nets[1].1;
    // Each link takes a /30; 4 links per host and cell pair is plenty, but keep it sane.
    let need = (t.hosts.len() * t.hosts.len() + t.cells.len() * (t.ues.len() + 1) + t.hosts.len())
        as u64
        * 4;
    if links.size() < need {
        return Err(invalid(
            text,
            Field::top("link_subnet"),
            format!("{links} is too small for this topology (needs {need} addresses); use a larger prefix"),
        ));
    }
    let mut used: HashMap<Ipv4Addr, String> = HashMap::new();
    let nodes = t
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| ("hosts", i, h.address.as_str()))
        .chain(
            t.ues
                .iter()
                .enumerate()
                .map(|(i, u)| ("ues", i, u.address.as_str())),
        );
    for (kind, i, value) in nodes {
        let ip = parse_ip(text, Field::item(kind, i).key("address"), value)?;
        let field = Field::item(kind, i).key("address");
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
            return Err(invalid(
                text,
                field,
                format!("{ip} cannot be a node address"),
            ));
        }
        if let Some((net, cidr)) = nets.iter().find(|(_, n)| n.contains(ip)) {
            return Err(invalid(
                text,
                field,
                format!("{ip} is inside {net} ({cidr}); pick an address outside it"),
            ));
        }
        if let Some(prev) = used.get(&ip) {
            return Err(invalid(
                text,
                field,
                format!("{ip} is already the address of {prev}"),
            ));
        }
        used.insert(ip, format!("{kind}[{i}]"));
    }
    Ok(())
}

/// A cell's global identity: an ECGI for LTE, an NRCGI for NR (never both); the secondary
/// carriers' cell identities (LTE with `[radio]` only).
fn check_cell_identity(t: &Topology, text: &str, i: usize) -> Result<(), TopologyError> {
    let c = &t.cells[i];
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
    };
    let hex_id = |id: &str, max: usize| {
        !id.is_empty() && id.len() <= max && u64::from_str_radix(id, 16).is_ok()
    };
    let plmn = |key: &'static str, mcc: &str, mnc: &str| {
        if !digits(mcc, 3..=3) {
            return Err(invalid(
                text,
                Field::item("cells", i).key(key).key("mcc"),
                "mcc must be 3 digits",
            ));
        }
        if !digits(mnc, 2..=3) {
            return Err(invalid(
                text,
                Field::item("cells", i).key(key).key("mnc"),
                "mnc must be 2 or 3 digits",
            ));
        }
        Ok(())
    };
    match (c.rat, &c.ecgi, &c.nrcgi) {
        (Rat::Lte, Some(e), None) => {
            plmn("ecgi", &e.mcc, &e.mnc)?;
            if !hex_id(&e.cell_id, 7) {
                return Err(invalid(
                    text,
                    Field::item("cells", i).key("ecgi").key("cell_id"),
                    format!(
                        "'{}' is not a 28-bit cell identity (up to 7 hex digits)",
                        e.cell_id
                    ),
                ));
            }
        }
        (Rat::Nr, None, Some(n)) => {
            plmn("nrcgi", &n.mcc, &n.mnc)?;
            if !hex_id(&n.nrcell_id, 9) {
                return Err(invalid(
                    text,
                    Field::item("cells", i).key("nrcgi").key("nrcell_id"),
                    format!(
                        "'{}' is not a 36-bit NR cell identity (up to 9 hex digits)",
                        n.nrcell_id
                    ),
                ));
            }
            if t.radio.is_none() {
                return Err(invalid(
                    text,
                    Field::item("cells", i).key("rat"),
                    "NR cells exist only in the radio model: add a [radio] section",
                ));
            }
        }
        (Rat::Lte, _, _) => {
            return Err(invalid(
                text,
                Field::item("cells", i).key("ecgi"),
                "an LTE cell needs an ecgi = { mcc, mnc, cell_id } and no nrcgi",
            ))
        }
        (Rat::Nr, _, _) => {
            return Err(invalid(
                text,
                Field::item("cells", i).key("nrcgi"),
                "an NR cell (rat = \"NR\") needs an nrcgi = { mcc, mnc, nrcell_id } and no ecgi",
            ))
        }
    }
    for (j, s) in c.secondary_carriers.iter().enumerate() {
        let field = || Field::item("cells", i).at("secondary_carriers", j);
        if c.rat != Rat::Lte || t.radio.is_none() {
            return Err(invalid(
                text,
                field(),
                "secondary carriers are for LTE cells with a [radio] section",
            ));
        }
        if !hex_id(&s.cell_id, 7) {
            return Err(invalid(
                text,
                field().key("cell_id"),
                format!(
                    "'{}' is not a 28-bit cell identity (up to 7 hex digits)",
                    s.cell_id
                ),
            ));
        }
        if !(s.tx_power_dbm.is_finite() && (-30.0..=80.0).contains(&s.tx_power_dbm)) {
            return Err(invalid(
                text,
                field().key("tx_power_dbm"),
                "must be within -30..=80 dBm",
            ));
        }
        if !(s.frequency_mhz.is_finite() && (100.0..=100_000.0).contains(&s.frequency_mhz)) {
            return Err(invalid(
                text,
                field().key("frequency_mhz"),
                "must be within 100..=100000 MHz",
            ));
        }
    }
    Ok(())
}

fn check_cells(t: &Topology, text: &str) -> Result<(), TopologyError> {
    for (i, c) in t.cells.iter().enumerate() {
        if t.host(&c.host).is_none() {
            return Err(invalid(
                text,
                Field::item("cells", i).key("host"),
                format!(
                    "unknown host '{}' (hosts: {})",
                    c.host,
                    names(t.hosts.iter().map(|h| &h.name))
                ),
            ));
        }
        check_cell_identity(t, text, i)?;
        let p = c.position;
        if !(-90.0..=90.0).contains(&p.latitude) || !(-180.0..=180.0).contains(&p.longitude) {
            return Err(invalid(
                text,
                Field::item("cells", i).key("position"),
                "latitude must be within -90..90 and longitude within -180..180",
            ));
        }
        if !(c.radius_m.is_finite() && c.radius_m > 0.0) {
            return Err(invalid(
                text,
                Field::item("cells", i).key("radius_m"),
                "must be a positive number of metres",
            ));
        }
        if !(c.tx_power_dbm.is_finite() && (-30.0..=80.0).contains(&c.tx_power_dbm)) {
            return Err(invalid(
                text,
                Field::item("cells", i).key("tx_power_dbm"),
                "must be within -30..=80 dBm",
            ));
        }
        if !(c.frequency_mhz.is_finite() && (100.0..=100_000.0).contains(&c.frequency_mhz)) {
            return Err(invalid(
                text,
                Field::item("cells", i).key("frequency_mhz"),
                "must be within 100..=100000 MHz",
            ));
        }
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    it.map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_links(t: &Topology, text: &str) -> Result<(), TopologyError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, l) in t.links.iter().enumerate() {
        for (key, end) in [("a", &l.a), ("b", &l.b)] {
            if t.host(end).is_none() && t.cell(end).is_none() {
                return Err(invalid(
                    text,
                    Field::item("links", i).key(key),
                    format!(
                        "unknown node '{end}' (a link joins two hosts, or a cell and its host)"
                    ),
                ));
            }
        }
        if l.a == l.b {
            return Err(invalid(
                text,
                Field::item("links", i).key("b"),
                "a link needs two different ends",
            ));
        }
        let cell_end = t.cell(&l.a).or_else(|| t.cell(&l.b));
        if let Some(cell) = cell_end {
            let other = if cell.name == l.a { &l.b } else { &l.a };
            if t.cell(other).is_some() {
                return Err(invalid(
                    text,
                    Field::item("links", i).key("b"),
                    "cells link to hosts, not to other cells",
                ));
            }
            if *other != cell.host {
                return Err(invalid(
                    text,
                    Field::item("links", i).key("b"),
                    format!(
                        "cell '{}' is served by '{}', so its link must go to '{}', not '{other}'",
                        cell.name, cell.host, cell.host
                    ),
                ));
            }
        }
        let key = if l.a < l.b {
            (l.a.clone(), l.b.clone())
        } else {
            (l.b.clone(), l.a.clone())
        };
        if pairs.contains(&key) {
            return Err(invalid(
                text,
                Field::item("links", i).key("b"),
                format!("duplicate link between '{}' and '{}'", l.a, l.b),
            ));
        }
        pairs.push(key);
        if let Some(r) = l.rate_mbit {
            if !(r.is_finite() && r >= 0.0) {
                return Err(invalid(
                    text,
                    Field::item("links", i).key("rate_mbit"),
                    "must be a number >= 0 (Mbit/s; 0 = unshaped)",
                ));
            }
        }
        if let Some(d) = l.delay_ms {
            if !(d.is_finite() && (0.0..=10_000.0).contains(&d)) {
                return Err(invalid(
                    text,
                    Field::item("links", i).key("delay_ms"),
                    "must be a number of milliseconds in 0..10000",
                ));
            }
        }
    }
    Ok(())
}

fn check_ues(t: &Topology, text: &str) -> Result<(), TopologyError> {
    let cell_names = || names(t.cells.iter().map(|c| &c.name));
    for (i, u) in t.ues.iter().enumerate() {
        if t.cell(&u.cell).is_none() {
            return Err(invalid(
                text,
                Field::item("ues", i).key("cell"),
                format!("unknown cell '{}' (cells: {})", u.cell, cell_names()),
            ));
        }
        if t.cell(&u.cell).is_some_and(|c| c.rat == Rat::Nr) {
            return Err(invalid(
                text,
                Field::item("ues", i).key("cell"),
                format!("'{}' is an NR cell; UEs are served by LTE cells", u.cell),
            ));
        }
        if !u.trace.is_empty() && !u.waypoints.is_empty() {
            return Err(invalid(
                text,
                Field::item("ues", i).key("waypoints"),
                "give either a trace or waypoints, not both",
            ));
        }
        let mut last = 0.0;
        for (j, s) in u.trace.iter().enumerate() {
            if t.cell(&s.cell).is_none() {
                return Err(invalid(
                    text,
                    Field::item("ues", i).at("trace", j).key("cell"),
                    format!("unknown cell '{}' (cells: {})", s.cell, cell_names()),
                ));
            }
            if t.cell(&s.cell).is_some_and(|c| c.rat == Rat::Nr) {
                return Err(invalid(
                    text,
                    Field::item("ues", i).at("trace", j).key("cell"),
                    format!(
                        "'{}' is an NR cell; UEs are handed over to LTE cells",
                        s.cell
                    ),
                ));
            }
            if !(s.at_s.is_finite() && s.at_s >= last) {
                return Err(invalid(
                    text,
                    Field::item("ues", i).at("trace", j).key("at_s"),
                    "times must be >= 0 and in increasing order",
                ));
            }
            last = s.at_s;
        }
        let mut last = 0.0;
        for (j, w) in u.waypoints.iter().enumerate() {
            if !(w.at_s.is_finite() && w.at_s >= last) {
                return Err(invalid(
                    text,
                    Field::item("ues", i).at("waypoints", j).key("at_s"),
                    "times must be >= 0 and in increasing order",
                ));
            }
            if !(-90.0..=90.0).contains(&w.latitude) || !(-180.0..=180.0).contains(&w.longitude) {
                return Err(invalid(
                    text,
                    Field::item("ues", i).at("waypoints", j).key("latitude"),
                    "latitude must be within -90..90 and longitude within -180..180",
                ));
            }
            last = w.at_s;
        }
    }
    Ok(())
}

/// One line from a toml error: `line N, field `F`: message`. toml's spans point at the value
/// (or the table); the field is the key written before it on that line, qualified by the
/// enclosing `[[table]]` and its index.
pub fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let msg = err.message().trim().replace('\n', " ");
    let Some(span) = err.span() else {
        return msg;
    };
    let at = span.start.min(text.len());
    let line = text[..at].matches('\n').count() + 1;
    let line_start = text[..at].rfind('\n').map(|p| p + 1).unwrap_or(0);
    let key = key_before(&text[line_start..at]);
    let table = enclosing_table(&text[..line_start]);
    let field = match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => String::new(),
    };
    if field.is_empty() {
        format!("line {line}: {msg}")
    } else {
        format!("line {line}: field `{field}`: {msg}")
    }
}

/// The last `key =` in `prefix` (the part of the line before the bad value).
fn key_before(prefix: &str) -> Option<String> {
    let eq = prefix.rfind('=')?;
    let before = prefix[..eq].trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .map(|p| p + 1)
        .unwrap_or(0);
    let key = &before[start..];
    (!key.is_empty()).then(|| key.to_string())
}

/// `hosts[2]` for the third `[[hosts]]` section enclosing the text's end, or `[section]`.
fn enclosing_table(before: &str) -> Option<String> {
    let headers: Vec<&str> = before
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| l.starts_with('['))
        .collect();
    let last = *headers.last()?;
    if let Some(name) = last.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
        let n = headers.iter().filter(|h| **h == last).count();
        Some(format!("{}[{}]", name.trim(), n - 1))
    } else {
        Some(
            last.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        )
    }
}
