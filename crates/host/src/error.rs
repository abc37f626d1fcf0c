//! Maps runtime errors to HTTP statuses and ProblemDetails bodies.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
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

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let status = match &e {
            RuntimeError::NotFound { .. } => StatusCode::NOT_FOUND,
            RuntimeError::AlreadyExists { .. }
            | RuntimeError::IncorrectStatus { .. }
            | RuntimeError::AddressInUse { .. } => StatusCode::CONFLICT,
            RuntimeError::Invalid(_) => StatusCode::BAD_REQUEST,
            RuntimeError::Image(ie) => return ApiError::from_image(ie, e.to_string()),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let detail = e.to_string();
        ApiError::from_image(&e, detail)
    }
}

impl ApiError {
    fn from_image(e: &ImageError, detail: String) -> Self {
        let status = match e {
            ImageError::NotFound(_) => StatusCode::NOT_FOUND,
            ImageError::AlreadyExists(_) => StatusCode::CONFLICT,
            ImageError::InvalidName(_) | ImageError::Malformed(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, detail)
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
