//! Operations: what toolstream tells the people who run it, besides its logs.
//!
//! - [`metrics`]: the Prometheus metrics served at `GET /metrics`: toolstream's own (runs, events,
//!   tool processes), fed by the engine through its [`RunObserver`](crate::engine::RunObserver)
//!   hooks, and the gRPC server metrics of go-grpc-middleware, counted by the tower layer in
//!   [`grpc`] around each gRPC service (gRPC-Web included).
//! - [`crate::traces`] (a leaf of its own, since tools and the engine use it too): OpenTelemetry traces over OTLP, configured by the standard `OTEL_*` variables
//!   and off (no exporter, no work per request) when no endpoint is set; the W3C `traceparent` of
//!   a request makes its runs' spans children of the caller's span, and remote tool calls and model
//!   calls carry it on.
//!
//! `docs/operations.md` lists every metric and span for operators.

pub mod grpc;
pub mod metrics;

/// The name of a gRPC status code as go-grpc-middleware writes it in the `grpc_code` label (Go's
/// `codes.Code.String()`), which existing dashboards match on.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}
