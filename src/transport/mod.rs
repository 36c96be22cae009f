//! The gRPC face of the engine: the `ToolService` and `RunService` implementations and the
//! conversions between wire types and domain types. No tool logic lives here.

mod convert;
mod runs;
mod service;
pub mod wire;

pub use runs::RunServiceImpl;
pub use service::{ToolServiceImpl, status_from_run_error};
