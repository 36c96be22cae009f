//! Errors on the HTTP side: the gRPC code a run error maps to (chosen in one place,
//! `crate::status`), carried as `{"code": "NOT_FOUND", "message": "..."}`
//! with an HTTP status before a stream began, or as the `error` event / frame after.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::{Code, Status};

use crate::engine::RunError;
use crate::status;

/// An error as the HTTP routes and the WebSocket report it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: Code,
    pub(crate) message: String,
    /// The HTTP status when it is not the one the code maps to (413 for a body too large).
    status: Option<StatusCode>,
}

impl ApiError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status: None,
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// `{"code": "...", "message": "..."}`.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({"code": code_name(self.code), "message": self.message})
    }

    /// The HTTP status of an error before anything streamed.
    pub(crate) fn http_status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| http_status(self.code))
    }

    /// The error in the terms of the client that sent `headers`: a gRPC status (trailers-only,
    /// with the request's own content type, which gRPC-Web clients expect back) to gRPC and
    /// gRPC-Web clients, the JSON body with its HTTP status to others.
    pub(crate) fn for_client(self, headers: &HeaderMap) -> Response {
        let grpc_content_type = headers
            .get(header::CONTENT_TYPE)
            .filter(|value| value.as_bytes().starts_with(b"application/grpc"));
        match grpc_content_type {
            Some(content_type) => {
                let mut response =
                    Status::new(self.code, self.message).into_http::<axum::body::Body>();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
                response
            }
            None => self.into_response(),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        status::from_run_error(error).into()
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError::new(status.code(), status.message())
    }
}

impl From<crate::json_proto::JsonError> for ApiError {
    fn from(error: crate::json_proto::JsonError) -> Self {
        match error {
            crate::json_proto::JsonError::Parse { .. } => {
                ApiError::invalid_argument(error.to_string())
            }
            crate::json_proto::JsonError::Write { .. } => {
                ApiError::new(Code::Internal, error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.http_status(), self.body().to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The gRPC code's canonical name, as google.rpc.Code spells it.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The HTTP status of an error before anything streamed (DESIGN.md, "Web delivery").
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_statuses_design_lists() {
        for (code, status) in [
            (Code::NotFound, 404),
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Aborted, 500),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
