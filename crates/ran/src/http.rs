//! The RAN's HTTP plumbing: the rules every ferry MEC API producer follows
//! (`mec_http::http`: ProblemDetails, strict JSON and query parsing, `Accept`, self links),
//! plus how RAN errors answer.

pub use mec_http::http::*;

impl From<crate::RanError> for ApiError {
    fn from(e: crate::RanError) -> ApiError {
        use crate::RanError::*;
        match e {
            UnknownUe(_) => ApiError::not_found(e.to_string()),
            UnknownCell(_) => ApiError::bad_request(e.to_string()),
            SameCell { .. } => ApiError::conflict(e.to_string()),
            InvalidTopology(_) => ApiError::unprocessable(e.to_string()),
            Tls(_) => ApiError::internal(e.to_string()),
        }
    }
}
