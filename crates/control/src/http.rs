//! The control plane's HTTP plumbing: the rules every ferry MEC API producer follows
//! (`mec_http::http`: ProblemDetails, strict JSON and query parsing, `Accept`, self links),
//! plus how store errors answer.

pub use mec_http::http::*;

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!("store: {e}");
        ApiError::internal(e.to_string())
    }
}
