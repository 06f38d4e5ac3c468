//! Refusals and failures as the API reports them: an HTTP status and a `wire::ApiError` body. Every
//! refusal is logged (code and reason only: never personal data or credentials).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cpis_core::wire::ApiError;

use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorised(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorised", message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the central could not complete the request; it is safe to retry",
        )
    }
    pub fn body(&self) -> ApiError {
        ApiError {
            error: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownLa(ods) => {
                Self::not_found(format!("no local authority with ODS code {ods}"))
            }
            StoreError::UploadRaced => Self::new(
                axum::http::StatusCode::CONFLICT,
                "upload_raced",
                "another upload for this local authority was being applied: send the file again",
            ),
            other => {
                // Store messages carry SQL errors, never row contents, so they are safe to log.
                tracing::error!(error = %other, "store failure");
                crate::metrics::store_error("request");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), code = self.code, reason = %self.message, "request failed");
        } else {
            tracing::warn!(status = self.status.as_u16(), code = self.code, reason = %self.message, "request refused");
        }
        (self.status, Json(self.body())).into_response()
    }
}
