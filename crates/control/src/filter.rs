//! The attribute-based `filter` query parameter of ETSI GS MEC 009 (clause 6.19), the subset
//! ferry serves: `(op,attr,value)` terms joined by `;` (AND), `op` one of `eq`, `neq`, `in`,
//! `nin` (`in`/`nin` take several comma-separated values), `attr` a `/`-separated path into
//! the resource's JSON. A path through an array matches if any element matches.
//!
//! Example: `filter=(eq,appDId,counter);(neq,mecHostInformation/hostName,edge-a)`.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    In,
    Nin,
}

/// One parsed term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    op: Op,
    path: Vec<String>,
    values: Vec<String>,
}

/// A parsed filter: all terms must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    terms: Vec<Term>,
}

impl Filter {
    /// Parses a filter expression; the error says which term is wrong and why.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut terms = Vec::new();
        for raw in text.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            let inner = raw
                .strip_prefix('(')
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| {
                    format!("filter term '{raw}' must look like (op,attribute,value)")
                })?;
            let mut parts = inner.split(',');
            let op = match parts.next().unwrap_or("").trim() {
                "eq" => Op::Eq,
                "neq" => Op::Neq,
                "in" => Op::In,
                "nin" => Op::Nin,
                other => {
                    return Err(format!(
                    "filter operator '{other}' in '{raw}' is not supported (use eq, neq, in, nin)"
                ))
                }
            };
            let attr = parts.next().unwrap_or("").trim();
            if attr.is_empty() {
                return Err(format!("filter term '{raw}' names no attribute"));
            }
            let values: Vec<String> = parts.map(|v| v.trim().to_string()).collect();
            if values.is_empty() || (matches!(op, Op::Eq | Op::Neq) && values.len() != 1) {
                return Err(format!(
                    "filter term '{raw}' needs one value (eq, neq) or at least one (in, nin)"
                ));
            }
            terms.push(Term {
                op,
                path: attr.split('/').map(str::to_string).collect(),
                values,
            });
        }
        Ok(Filter { terms })
    }

    /// Does the resource match every term?
    pub fn matches(&self, resource: &Value) -> bool {
        self.terms.iter().all(|t| {
            let mut found = Vec::new();
            collect(resource, &t.path, &mut found);
            let hit = found.iter().any(|v| t.values.iter().any(|w| w == v));
            match t.op {
                Op::Eq | Op::In => hit,
                Op::Neq | Op::Nin => !hit,
            }
        })
    }
}

/// The scalar values at `path` (as strings), descending into arrays.
fn collect(v: &Value, path: &[String], out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        _ => match path.split_first() {
            None => match v {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                Value::Bool(b) => out.push(b.to_string()),
                _ => {}
            },
            Some((head, rest)) => {
                if let Some(next) = v.get(head) {
                    collect(next, rest, out)
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terms_combine_and_paths_cross_arrays() {
        let r = json!({"appDId": "d1", "links": [{"host": "a"}, {"host": "b"}], "n": 3});
        assert!(Filter::parse("(eq,appDId,d1)").unwrap().matches(&r));
        assert!(Filter::parse("(eq,links/host,b);(neq,appDId,d2)")
            .unwrap()
            .matches(&r));
        assert!(!Filter::parse("(eq,links/host,c)").unwrap().matches(&r));
        assert!(Filter::parse("(in,n,1,3)").unwrap().matches(&r));
        assert!(!Filter::parse("(nin,n,3)").unwrap().matches(&r));
        assert!(Filter::parse("").unwrap().matches(&r));
    }

    #[test]
    fn bad_filters_say_why() {
        assert!(Filter::parse("eq,a,b")
            .unwrap_err()
            .contains("(op,attribute,value)"));
        assert!(Filter::parse("(gt,a,1)").unwrap_err().contains("gt"));
        assert!(Filter::parse("(eq,a)").unwrap_err().contains("value"));
        assert!(Filter::parse("(eq,,x)").unwrap_err().contains("attribute"));
    }
}
