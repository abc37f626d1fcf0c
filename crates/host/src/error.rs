//! Maps runtime errors to HTTP statuses and ProblemDetails bodies.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_migration::MigrationError;
use ferry_runtime::image::ImageError;
use ferry_runtime::RuntimeError;
use mec_api::problem::{ProblemDetails, PROBLEM_JSON};

/// An error answer of the host API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

/// The status a runtime error maps to.
fn runtime_status(e: &RuntimeError) -> StatusCode {
    match e {
        RuntimeError::NotFound { .. } => StatusCode::NOT_FOUND,
        RuntimeError::AlreadyExists { .. }
        | RuntimeError::IncorrectStatus { .. }
        | RuntimeError::AddressInUse { .. }
        | RuntimeError::MigrationInProgress { .. } => StatusCode::CONFLICT,
        RuntimeError::Invalid(_) => StatusCode::BAD_REQUEST,
        RuntimeError::Image(ie) => image_status(ie),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn image_status(e: &ImageError) -> StatusCode {
    match e {
        ImageError::NotFound(_) => StatusCode::NOT_FOUND,
        ImageError::AlreadyExists(_) => StatusCode::CONFLICT,
        ImageError::InvalidName(_) | ImageError::Malformed(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        ApiError::new(runtime_status(&e), e.to_string())
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        ApiError::new(image_status(&e), e.to_string())
    }
}

impl From<MigrationError> for ApiError {
    fn from(e: MigrationError) -> Self {
        let status = match &e {
            MigrationError::Runtime(re) => runtime_status(re),
            MigrationError::Refused(_) => StatusCode::BAD_REQUEST,
            MigrationError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            MigrationError::UnknownMigration(_) => StatusCode::NOT_FOUND,
            MigrationError::Integrity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            MigrationError::Phase { .. } | MigrationError::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, detail = %self.detail, "request failed");
        }
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = ProblemDetails::new(self.status.as_u16(), title, self.detail);
        let json = serde_json::to_vec(&body).unwrap_or_default();
        (self.status, [(header::CONTENT_TYPE, PROBLEM_JSON)], json).into_response()
    }
}
