//! The gRPC face: the `ToolService` and `RunService` implementations, each method an adapter
//! over one operation (`crate::operations`), and the conversions between wire types and domain
//! types (shared with the web routes, `crate::web`). No tool logic lives here.

pub(crate) mod convert;
pub(crate) mod runs;
mod service;
pub mod wire;

pub use runs::RunServiceImpl;
pub(crate) use runs::{page_to_wire, run_filter, run_to_wire, watch_request};
pub use service::ToolServiceImpl;
pub(crate) use service::deadline_from_grpc_timeout;

use crate::auth::Caller;

/// The caller the authentication layer recorded for a gRPC call (anonymous when it recorded
/// none, which only happens with auth off).
fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}
