//! Who a certificate's holder is, as the parts of ferry authorize it.

use std::fmt;
use std::str::FromStr;

use crate::TlsError;

/// The URI SAN prefix that carries an identity in a certificate.
pub const URI_PREFIX: &str = "urn:ferry:identity:";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A MEC host's daemon, by its name (`ferry host --name`).
    Host(String),
    /// The control plane (`ferry control`).
    Control,
    /// The RAN / RNIS and Location producer (`ferry ran`).
    Ran,
    /// A person or tool of the operator (the CLI).
    Operator,
    /// A metrics scraper (Prometheus): may read `/metrics` of every part, nothing else.
    Metrics,
}

impl Identity {
    /// The identity's URI SAN.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{self}")
    }

    /// Parses a URI SAN; `None` for URIs that carry no ferry identity.
    pub fn from_uri(uri: &str) -> Option<Result<Identity, TlsError>> {
        uri.strip_prefix(URI_PREFIX).map(str::parse)
    }

    /// A file name stem for its certificate and key (`host-mec1`, `control`).
    pub fn file_stem(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Host(name) => write!(f, "host:{name}"),
            Identity::Control => f.write_str("control"),
            Identity::Ran => f.write_str("ran"),
            Identity::Operator => f.write_str("operator"),
            Identity::Metrics => f.write_str("metrics"),
        }
    }
}

/// Host names as `ferry host --name` takes them: they become file names and URI parts.
fn valid_host_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl FromStr for Identity {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Identity, TlsError> {
        match s {
            "control" => Ok(Identity::Control),
            "ran" => Ok(Identity::Ran),
            "operator" => Ok(Identity::Operator),
            "metrics" => Ok(Identity::Metrics),
            _ => match s.strip_prefix("host:") {
                Some(name) if valid_host_name(name) => Ok(Identity::Host(name.to_string())),
                _ => Err(TlsError::BadIdentity(s.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_text_and_uri() {
        for s in [
            "host:mec1",
            "host:edge-b",
            "control",
            "ran",
            "operator",
            "metrics",
        ] {
            let id: Identity = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
            assert_eq!(Identity::from_uri(&id.uri()).unwrap().unwrap(), id);
        }
        assert_eq!(Identity::Host("mec1".into()).file_stem(), "host-mec1");
    }

    #[test]
    fn bad_identities_are_refused() {
        for s in [
            "",
            "host:",
            "host:MEC1",
            "host:a/b",
            "host:-a",
            "admin",
            "Host:x",
        ] {
            assert!(s.parse::<Identity>().is_err(), "{s}");
        }
        assert!(Identity::from_uri("https://example.com").is_none());
        assert!(Identity::from_uri("urn:ferry:identity:root")
            .unwrap()
            .is_err());
    }
}
