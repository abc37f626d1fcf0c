//! RFC 7807 `ProblemDetails`, the error body of every ETSI MEC API and of ferry's own APIs.

use serde::{Deserialize, Serialize};

/// Media type of a ProblemDetails body (RFC 7807).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The ETSI MEC `ProblemDetails` schema (all fields optional in the ETSI files; `status` and
/// `detail` are always filled by ferry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct ProblemDetails {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl ProblemDetails {
    /// A problem with the given HTTP status, its standard reason phrase as title, and a detail.
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> Self {
        ProblemDetails {
            type_: None,
            title: Some(title.to_string()),
            status: Some(status),
            detail: Some(detail.into()),
            instance: None,
        }
    }
}

impl std::fmt::Display for ProblemDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.unwrap_or(0),
            self.title.as_deref().unwrap_or(""),
            self.detail.as_deref().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_type_field_and_skips_empty_ones() {
        let p = ProblemDetails::new(404, "Not Found", "no image 'x'");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["detail"], "no image 'x'");
        assert!(v.get("type").is_none());
        let back: ProblemDetails =
            serde_json::from_str(r#"{"type":"about:blank","status":409}"#).unwrap();
        assert_eq!(back.type_.as_deref(), Some("about:blank"));
    }
}
