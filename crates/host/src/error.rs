//! Maps runtime and migration errors to HTTP statuses and ProblemDetails bodies, each with
//! its machine-readable kind in `type` (`ferry_wire::ProblemType`).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_migration::MigrationError;
use ferry_runtime::image::ImageError;
use ferry_runtime::RuntimeError;
use ferry_wire::ProblemType;
use mec_api::problem::{ProblemDetails, PROBLEM_JSON};

/// An error answer of the host API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ProblemType,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ProblemType::Invalid, detail)
    }
}

fn runtime_kind(e: &RuntimeError) -> (StatusCode, ProblemType) {
    match e {
        RuntimeError::NotFound { .. } => (StatusCode::NOT_FOUND, ProblemType::NotFound),
        RuntimeError::AlreadyExists { .. } | RuntimeError::AddressInUse { .. } => {
            (StatusCode::CONFLICT, ProblemType::AlreadyExists)
        }
        RuntimeError::IncorrectStatus { .. } => (StatusCode::CONFLICT, ProblemType::WrongState),
        RuntimeError::MigrationInProgress { .. } => {
            (StatusCode::CONFLICT, ProblemType::MigrationInProgress)
        }
        RuntimeError::Invalid(_) => (StatusCode::BAD_REQUEST, ProblemType::Invalid),
        RuntimeError::Image(ie) => image_kind(ie),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, ProblemType::Internal),
    }
}

fn image_kind(e: &ImageError) -> (StatusCode, ProblemType) {
    match e {
        ImageError::NotFound(_) => (StatusCode::NOT_FOUND, ProblemType::NotFound),
        ImageError::AlreadyExists(_) => (StatusCode::CONFLICT, ProblemType::AlreadyExists),
        ImageError::InvalidName(_) | ImageError::Malformed(_) => {
            (StatusCode::BAD_REQUEST, ProblemType::Invalid)
        }
        ImageError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ProblemType::TooLarge),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, ProblemType::Internal),
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let (status, kind) = runtime_kind(&e);
        ApiError::new(status, kind, e.to_string())
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let (status, kind) = image_kind(&e);
        ApiError::new(status, kind, e.to_string())
    }
}

impl From<MigrationError> for ApiError {
    fn from(e: MigrationError) -> Self {
        let (status, kind) = match &e {
            MigrationError::Runtime(re) => runtime_kind(re),
            MigrationError::Refused(_) => (StatusCode::BAD_REQUEST, ProblemType::Invalid),
            MigrationError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, ProblemType::Unauthorized)
            }
            MigrationError::Forbidden(_) => (StatusCode::FORBIDDEN, ProblemType::Forbidden),
            MigrationError::UnknownMigration(_) => {
                (StatusCode::NOT_FOUND, ProblemType::UnknownMigration)
            }
            MigrationError::AlreadyExists(_) => (StatusCode::CONFLICT, ProblemType::AlreadyExists),
            MigrationError::WrongState { .. } => (StatusCode::CONFLICT, ProblemType::WrongState),
            MigrationError::ProtocolVersion { .. } => {
                (StatusCode::CONFLICT, ProblemType::ProtocolVersion)
            }
            MigrationError::Integrity(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ProblemType::Integrity)
            }
            MigrationError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ProblemType::TooLarge),
            // The peer failed to answer, or refused: this host could not do its part.
            MigrationError::Peer(_) => (StatusCode::BAD_GATEWAY, ProblemType::Internal),
            MigrationError::Journal(_) | MigrationError::Io(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ProblemType::Internal)
            }
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, detail = %self.detail, "request failed");
        }
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut body = ProblemDetails::new(self.status.as_u16(), title, self.detail);
        body.type_ = Some(self.kind.uri());
        let json = serde_json::to_vec(&body).unwrap_or_default();
        (self.status, [(header::CONTENT_TYPE, PROBLEM_JSON)], json).into_response()
    }
}
