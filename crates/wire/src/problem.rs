//! Machine-readable kinds of error of the host API and the migration channel. Carried in the
//! ProblemDetails `type` member as `urn:ferry:problem:<kind>`, so a client decides on the
//! kind, never on the text of `detail`.

use serde::{Deserialize, Serialize};

const PREFIX: &str = "urn:ferry:problem:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemType {
    /// No such container, image or other resource.
    NotFound,
    /// The API has nothing at this path (or not for this method's path): a wrong URL, not a
    /// missing resource. Every route of the OpenAPI document answers something else.
    NoRoute,
    /// The host has no record of this migration id.
    UnknownMigration,
    /// The request is malformed or asks for something this host cannot do.
    Invalid,
    /// Missing or wrong credentials (the migration token).
    Unauthorized,
    /// The caller's identity may not do this (a host ordering another host, say).
    Forbidden,
    /// The resource exists already.
    AlreadyExists,
    /// The resource is not in a state that allows this (wrong status, wrong migration state).
    WrongState,
    /// The container is held by a migration.
    MigrationInProgress,
    /// The peer speaks another version of the channel.
    ProtocolVersion,
    /// Images or pages do not match what the source announced.
    Integrity,
    /// Past one of the host's caps on untrusted input (image size, entries, ratio).
    TooLarge,
    /// The host failed to do its part (CRIU, runc, disk).
    Internal,
}

impl ProblemType {
    pub const ALL: [ProblemType; 13] = [
        ProblemType::NotFound,
        ProblemType::NoRoute,
        ProblemType::UnknownMigration,
        ProblemType::Invalid,
        ProblemType::Unauthorized,
        ProblemType::Forbidden,
        ProblemType::AlreadyExists,
        ProblemType::WrongState,
        ProblemType::MigrationInProgress,
        ProblemType::ProtocolVersion,
        ProblemType::Integrity,
        ProblemType::TooLarge,
        ProblemType::Internal,
    ];

    /// The `type` URI of a ProblemDetails of this kind.
    pub fn uri(self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        format!("{PREFIX}{}", v.as_str().unwrap_or(""))
    }

    /// The kind a ProblemDetails' `type` names, if it is one of ferry's.
    pub fn from_uri(uri: &str) -> Option<ProblemType> {
        let kind = uri.strip_prefix(PREFIX)?;
        serde_json::from_value(serde_json::Value::String(kind.to_string())).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for p in ProblemType::ALL {
            assert_eq!(ProblemType::from_uri(&p.uri()), Some(p), "{}", p.uri());
        }
        assert_eq!(
            ProblemType::UnknownMigration.uri(),
            "urn:ferry:problem:unknown-migration"
        );
        assert_eq!(ProblemType::from_uri("about:blank"), None);
        assert_eq!(ProblemType::from_uri("urn:ferry:problem:nonsense"), None);
    }
}
