//! Native tools: a tool written in Rust as an async closure over a typed argument struct.
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use toolstream::tools::{native::tool_fn, Progress, ToolError};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! let tool = tool_fn("greet", "Greets someone.", |args: Greet, progress: Progress| async move {
//!     progress.report(1.0, "greeting");
//!     Ok::<_, ToolError>(format!("hello, {}", args.name))
//! });
//! ```
//! The input schema users see is derived from `Greet`, doc comments included.

use std::future::Future;
use std::marker::PhantomData;

use futures::FutureExt;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Progress, Tool, ToolError, ToolKind, ToolSpec};

/// A tool made from an async closure; see [`tool_fn`].
pub struct NativeTool<A, F> {
    spec: ToolSpec,
    run: F,
    _args: PhantomData<fn(A)>,
}

/// Makes a tool from an async closure taking the deserialised arguments and a progress handle.
/// The input schema is derived from `A` with `schemars`.
pub fn tool_fn<A, F, Fut, R>(
    name: impl Into<String>,
    description: impl Into<String>,
    run: F,
) -> NativeTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A, Progress) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    R: Serialize,
{
    let input_schema = serde_json::to_value(schemars::schema_for!(A))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    NativeTool {
        spec: ToolSpec {
            name: name.into(),
            description: description.into(),
            input_schema,
            output_schema: None,
            kind: ToolKind::Native,
        },
        run,
        _args: PhantomData,
    }
}

impl<A, F> NativeTool<A, F> {
    /// Declares the JSON Schema of the tool's result, derived from `R`.
    pub fn with_output<R: JsonSchema>(mut self) -> Self {
        self.spec.output_schema = serde_json::to_value(schemars::schema_for!(R)).ok();
        self
    }
}

impl<A, F, Fut, R> Tool for NativeTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A, Progress) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    R: Serialize,
{
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn run(&self, arguments: Value, progress: Progress) -> BoxFuture<'_, Result<Value, ToolError>> {
        let args = match serde_json::from_value::<A>(arguments) {
            Ok(args) => args,
            Err(e) => {
                let message = format!("invalid arguments for tool {:?}: {e}", self.spec.name);
                return futures::future::ready(Err(ToolError::InvalidArguments(message))).boxed();
            }
        };
        let fut = (self.run)(args, progress);
        async move {
            let value = fut.await?;
            serde_json::to_value(value)
                .map_err(|e| ToolError::Internal(format!("the result is not valid JSON: {e}")))
        }
        .boxed()
    }
}
