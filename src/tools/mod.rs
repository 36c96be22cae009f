//! What a tool is, and the tools themselves: one module per kind of tool.
//!
//! A tool takes a JSON object of arguments and a [`Progress`] handle, reports progress through the
//! handle while it works, and ends with a JSON result or a [`ToolError`]. It never sees the engine:
//! the handle is all it knows of the run, and dropping its future is how a run cancels it.
//!
//! Tools that are processes (command tools, MCP servers) run in process groups of their own,
//! tracked by [`processes`] until they are reaped, so none outlives the server.

pub mod builtin;
pub mod command;
mod input;
mod lines;
mod listing;
pub mod mcp;
pub mod native;
mod process_group;
pub mod processes;
mod progress;
pub mod remote;

use futures::future::BoxFuture;
use serde_json::Value;

pub use input::{Answer, InputKind, Question};
pub use listing::{ToolListing, ToolSetChange};
pub use progress::{
    PartialOutput, PartialRefused, Progress, ProgressSink, ProgressUpdate, SubTask,
};

/// Where a tool lives. Reported to clients as `Tool.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// Compiled into the server.
    Native,
    /// A subprocess speaking the JSON-lines protocol.
    Command,
    /// A tool of another toolstream server.
    Grpc,
    /// A tool of an MCP server.
    Mcp,
}

impl ToolKind {
    /// The name clients see in `Tool.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Native => "native",
            ToolKind::Command => "command",
            ToolKind::Grpc => "grpc",
            ToolKind::Mcp => "mcp",
        }
    }
}

/// What a client (or a language model) is told about a tool.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// Unique name in the registry.
    pub name: String,
    /// What the tool does.
    pub description: String,
    /// JSON Schema of the arguments; always an object schema.
    pub input_schema: Value,
    /// JSON Schema of the result, when the tool declares one.
    pub output_schema: Option<Value>,
    /// Where the tool lives.
    pub kind: ToolKind,
}

/// How a tool failed. Each variant maps to the gRPC status code a client sees.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The tool ran and reported an error of its own (ABORTED).
    #[error("{0}")]
    Failed(String),
    /// The tool crashed or broke its protocol (INTERNAL).
    #[error("{0}")]
    Internal(String),
    /// The arguments passed the schema but the tool still cannot use them (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArguments(String),
    /// The tool was asked to touch something it may not (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
    /// Something the arguments name does not exist (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// Something the tool depends on cannot be reached (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The tool's own time limit passed (DEADLINE_EXCEEDED).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A size or range limit was passed, such as a message larger than a server's
    /// `max_message_bytes` (OUT_OF_RANGE).
    #[error("{0}")]
    OutOfRange(String),
}

/// A tool the registry can run.
///
/// Most tools are written with [`native::tool_fn`] rather than by implementing this trait.
pub trait Tool: Send + Sync + 'static {
    /// Name, description and schemas.
    fn spec(&self) -> &ToolSpec;

    /// Runs the tool on arguments that already satisfy `spec().input_schema`. The run is cancelled
    /// by dropping the returned future, so a tool must release what it holds on drop.
    fn run(&self, arguments: Value, progress: Progress) -> BoxFuture<'_, Result<Value, ToolError>>;
}
