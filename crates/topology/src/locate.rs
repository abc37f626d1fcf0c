//! Finds the line of a field in the topology text, so that a semantic error (unknown cell,
//! duplicate name, bad address) names the line like toml's own syntax errors do.
//!
//! The typed structs do not keep spans (the RAN reads them as plain values), so we re-locate
//! the key in the text instead. This understands the layout the examples use: top-level keys,
//! `[[hosts]]`-style array tables, and inline tables/arrays inside them
//! (`ecgi = { ... }`, `trace = [ { at_s = 20, cell = "cell2" }, ... ]`). Where it cannot find
//! the key it falls back to the table's header line, and to `None` as a last resort.

/// One step of a field path: a key and, for arrays, an index.
#[derive(Debug, Clone, Copy)]
pub struct Seg<'a> {
    pub key: &'a str,
    pub index: Option<usize>,
}

/// 1-based line of the field `path` (e.g. `hosts[1].address`, `ues[0].trace[2].cell`).
pub fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let (start, end) = match first.index {
        // `[[hosts]]` array tables: the section of the index-th header.
        Some(i) => array_table_section(text, first.key, i)?,
        None => {
            let top_end = first_header(text).unwrap_or(text.len());
            let at = find_key(&text[..top_end], first.key)?;
            return Some(line_at(text, at));
        }
    };
    let mut pos = start;
    for seg in rest {
        match find_key(&text[pos..end], seg.key) {
            Some(off) => pos += off,
            None => return Some(line_at(text, start)),
        }
        if let Some(i) = seg.index {
            // The i-th inline table `{ ... }` of an inline array after `key =`.
            let mut p = pos;
            for _ in 0..=i {
                match text[p..end].find('{') {
                    Some(off) => p += off + 1,
                    None => return Some(line_at(text, pos)),
                }
            }
            pos = p - 1;
        }
    }
    Some(line_at(text, pos))
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Byte offset of the first table header (`[` at the start of a line).
fn first_header(text: &str) -> Option<usize> {
    let mut off = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            return Some(off);
        }
        off += line.len();
    }
    None
}

/// (start, end) byte range of the index-th `[[name]]` section, up to the next `[[name]]`
/// header (sub-tables such as `[hosts.x]` stay inside the section).
fn array_table_section(text: &str, name: &str, index: usize) -> Option<(usize, usize)> {
    let header = format!("[[{name}]]");
    let mut starts = Vec::new();
    let mut off = 0;
    let mut other_top = Vec::new();
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let t = t.split('#').next().unwrap_or("").trim();
        if t == header {
            starts.push(off);
        } else if t.starts_with('[') && !t.starts_with(&format!("[{name}.")) {
            other_top.push(off);
        }
        off += line.len();
    }
    let start = *starts.get(index)?;
    let end = starts
        .iter()
        .chain(other_top.iter())
        .copied()
        .filter(|o| *o > start)
        .min()
        .unwrap_or(text.len());
    Some((start, end))
}

/// Offset of `key` used as a key (followed by optional spaces and `=`, and not part of a
/// longer name).
fn find_key(text: &str, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(off) = text[from..].find(key) {
        let at = from + off;
        let before_ok = at == 0 || !is_key_char(bytes[at - 1]);
        let after = text[at + key.len()..].trim_start_matches([' ', '\t']);
        if before_ok && after.starts_with('=') && !after.starts_with("==") {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'"'
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"t\"\n\
        app_subnet = \"10.0.0.0/8\"\n\
        [[hosts]]\n\
        name = \"a\"\n\
        address = \"1.2.3.4\"\n\
        [[hosts]]\n\
        name = \"b\"\n\
        address = \"1.2.3.5\"\n\
        [[ues]]\n\
        name = \"u\"\n\
        trace = [\n  { at_s = 1, cell = \"x\" },\n  { at_s = 2, cell = \"y\" },\n]\n";

    fn seg(key: &str, index: Option<usize>) -> Seg<'_> {
        Seg { key, index }
    }

    #[test]
    fn finds_top_level_array_and_inline_fields() {
        assert_eq!(line_of(TEXT, &[seg("app_subnet", None)]), Some(2));
        assert_eq!(
            line_of(TEXT, &[seg("hosts", Some(1)), seg("address", None)]),
            Some(8)
        );
        assert_eq!(
            line_of(TEXT, &[seg("hosts", Some(0)), seg("name", None)]),
            Some(4)
        );
        let trace = [
            seg("ues", Some(0)),
            seg("trace", Some(1)),
            seg("cell", None),
        ];
        assert_eq!(line_of(TEXT, &trace), Some(13));
        // A key that is absent falls back to the section header.
        assert_eq!(
            line_of(TEXT, &[seg("hosts", Some(1)), seg("cpus", None)]),
            Some(6)
        );
    }
}
