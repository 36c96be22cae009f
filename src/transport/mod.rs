//! The gRPC face of the engine: the `ToolService` and `RunService` implementations and the
//! conversions between wire types and domain types (shared with the web routes, `crate::web`).
//! No tool logic lives here.

pub(crate) mod convert;
pub(crate) mod runs;
mod service;
pub mod wire;

pub use runs::RunServiceImpl;
pub(crate) use runs::run_to_wire;
pub(crate) use service::deadline_from_grpc_timeout;
pub use service::{ToolServiceImpl, status_from_run_error};
