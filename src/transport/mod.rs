//! The gRPC face of the engine: the `ToolService` implementation and the conversions between wire
//! types and domain types. No tool logic lives here.

mod convert;
mod service;

pub use crate::json_proto::{json_to_struct, json_to_value, struct_to_json, value_to_json};
pub use service::{ToolServiceImpl, status_from_run_error};
