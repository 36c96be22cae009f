//! The registry as an MCP server (DESIGN.md, "The registry as an MCP server";
//! docs/mcp-server.md), through `rmcp`'s server side. Two faces share what is here:
//!
//! - [`http`]: `/mcp` on the one port, MCP Streamable HTTP, mounted by the web face behind the
//!   same TLS, auth layer and origin check as every other route; it runs tools through the
//!   engine as RunTool does.
//! - [`bridge`]: `toolstream mcp-stdio`, a stdio MCP server that forwards to a toolstream server
//!   over gRPC (for desktop clients that launch stdio servers).
//!
//! Both are thin adapters: `tools/list` is the caller's tools (schemas from the registry), and
//! `tools/call` starts a run and reads it with [`follow_call`], which turns the run's top-level
//! progress into `notifications/progress` and its end into a `CallToolResult` (this module's
//! mapping, written once).

pub mod bridge;
mod elicitation;
pub(crate) mod http;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Future, Stream, StreamExt};
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, ErrorData, Implementation, InputRequests,
    InputRequiredResult, JsonObject, MetaObject, NotificationMetaObject, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

pub(crate) use elicitation::InputQuestion;

use crate::engine::Reply;

/// The `_meta` key of a result (and of each progress notification) holding the run's id.
pub(crate) const RUN_ID_META: &str = "toolstream/runId";

/// The `_meta` key of a `tools/call` request holding the caller's deadline in milliseconds
/// (MCP has no deadline of its own; the `grpc-timeout` header works too).
pub(crate) const TIMEOUT_META: &str = "toolstream/timeoutMs";

/// The name of the agent tool, offered when a model is configured and no tool of the registry
/// has that name.
pub(crate) const AGENT_TOOL: &str = "agent";

/// How a `tools/call` asks the client a run's input request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asking {
    /// `elicitation/create` from the server during the call (revisions up to 2025-11-25).
    Elicit,
    /// An `InputRequiredResult` ending the call; the client retries with the answer (the
    /// 2026-07-28 revision, which forbids requests from the server).
    InResult,
}

/// What a `tools/call` reads of its run, whatever carries the run (the engine here, a gRPC
/// stream in the stdio bridge).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallUpdate {
    /// Progress of the run's top level.
    Progress {
        /// Fraction done, 0 to 1, when known.
        fraction: Option<f64>,
        /// What the tool is doing now.
        status: Option<String>,
    },
    /// The run asks for input (any of its calls); asked of a client that can answer
    /// elicitations.
    InputRequested(InputQuestion),
    /// The run's result.
    Result(Value),
    /// The run failed; its error in words.
    Failed(String),
}

/// How a `tools/call` ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    /// A result.
    Ok,
    /// An `isError` result: the tool (or its run) failed.
    ToolError,
    /// A JSON-RPC error: unknown tool, invalid arguments, a request the server cannot serve.
    ProtocolError,
    /// The client cancelled the call.
    Cancelled,
    /// An `InputRequiredResult`: the run waits for the answers the client retries the call
    /// with (the 2026-07-28 revision).
    InputRequired,
}

impl CallOutcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::ToolError => "tool_error",
            CallOutcome::ProtocolError => "protocol_error",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::InputRequired => "input_required",
        }
    }
}

/// The server's description of itself, shared by `/mcp` and the stdio bridge.
pub(crate) fn server_info() -> ServerConfig {
    let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
    info.server_info = Implementation::new("toolstream", env!("CARGO_PKG_VERSION"));
    info.instructions = Some(
        "toolstream runs each tool call as a run with live progress; the run's id is in each \
         result's _meta[\"toolstream/runId\"] (GetRun, WatchRun on the toolstream server)."
            .to_owned(),
    );
    info
}

/// A JSON Schema as MCP carries it: an object, or nothing.
fn schema_object(schema: &Value) -> Option<Arc<JsonObject>> {
    match schema {
        Value::Object(object) => Some(Arc::new(object.clone())),
        _ => None,
    }
}

/// A tool of the registry as an MCP tool. The output schema is only given when it describes an
/// object: MCP's `structuredContent` is always one, so another schema could not be honoured.
pub(crate) fn mcp_tool(
    name: String,
    description: String,
    input_schema: &Value,
    output_schema: Option<&Value>,
) -> Tool {
    let input = schema_object(input_schema).unwrap_or_else(|| {
        let mut object = JsonObject::new();
        object.insert("type".into(), Value::from("object"));
        Arc::new(object)
    });
    let mut tool = Tool::new(name, description, input);
    let object_output = output_schema
        .filter(|schema| schema.get("type").and_then(Value::as_str) == Some("object"))
        .and_then(schema_object);
    if let Some(output) = object_output {
        tool = tool.with_raw_output_schema(output);
    }
    tool
}

/// `_meta` holding the run's id.
fn run_meta(run_id: &str) -> MetaObject {
    let mut meta = MetaObject::new();
    meta.insert(RUN_ID_META.to_owned(), Value::from(run_id));
    meta
}

/// The text content of a result: a string as it is, anything else as JSON.
fn result_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The result of a run that ended with `value`: its JSON as text content, and the value itself
/// as `structuredContent` when it is an object (MCP's structured content is always one).
pub(crate) fn success_result(run_id: &str, value: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(result_text(&value))]);
    if value.is_object() {
        result.structured_content = Some(value);
    }
    result.meta = Some(run_meta(run_id));
    result
}

/// The result of a run that failed: `isError` with the error in words.
pub(crate) fn error_result(run_id: Option<&str>, message: String) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(message)]);
    result.meta = run_id.map(run_meta);
    result
}

/// The caller's deadline, when it sent `_meta["toolstream/timeoutMs"]` (MCP has none of its
/// own); INVALID_PARAMS for a value that is not a positive number of milliseconds.
pub(crate) fn meta_timeout(
    context: &RequestContext<RoleServer>,
) -> Result<Option<Duration>, ErrorData> {
    let Some(value) = context.meta.get(TIMEOUT_META) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ErrorData::invalid_params(
            format!("_meta[{TIMEOUT_META:?}] must be a positive number of milliseconds"),
            None,
        )),
    }
}

/// The caller's W3C trace context from the request's `_meta` (SEP-414): `traceparent` and
/// `tracestate`, by those names.
pub(crate) fn trace_context(
    context: &RequestContext<RoleServer>,
) -> [(&'static str, Option<&str>); 2] {
    [
        ("traceparent", context.meta.get_traceparent()),
        ("tracestate", context.meta.get_tracestate()),
    ]
}

/// A call refused before any run started (as a gRPC status: the code says why), answered the
/// same way by `/mcp` and the bridge: asking for something that does not exist, or that the
/// caller may not use (which it cannot see either), is a JSON-RPC error; a server too busy or
/// going away is a tool error the caller can read and retry later; anything else a JSON-RPC
/// internal error.
pub(crate) fn refused(
    status: &tonic::Status,
) -> (CallOutcome, Result<CallToolResponse, ErrorData>) {
    use tonic::Code;
    let message = status.message().to_owned();
    match status.code() {
        Code::NotFound
        | Code::InvalidArgument
        | Code::PermissionDenied
        | Code::FailedPrecondition => (
            CallOutcome::ProtocolError,
            Err(ErrorData::invalid_params(message, None)),
        ),
        Code::ResourceExhausted | Code::Unavailable => (
            CallOutcome::ToolError,
            Ok(error_result(None, message).into()),
        ),
        _ => (
            CallOutcome::ProtocolError,
            Err(ErrorData::internal_error(message, None)),
        ),
    }
}

/// Follows a started run to its end for one `tools/call`: with a progress token, each
/// increase of the top level's fraction becomes a `notifications/progress` (`progress` the
/// fraction, `total` 1, `message` the status, the run's id in `_meta`); the end becomes the
/// result. Each input request becomes an `elicitation/create` to a client that declared the
/// capability, and its answer goes to `respond` (the request id, the reply); the elicitations
/// are awaited beside the updates, so progress keeps flowing while the client is asked. With
/// [`Asking::InResult`] a request ends the call with an `InputRequiredResult` instead, whose
/// `requestState` is the run's id. The
/// client cancelling (`notifications/cancelled`, or closing the request's stream where that
/// cancels) drops `updates`, which cancels the run.
pub(crate) async fn follow_call<Respond, Responded>(
    run_id: &str,
    updates: impl Stream<Item = CallUpdate>,
    context: &RequestContext<RoleServer>,
    asking: Asking,
    respond: Respond,
) -> (CallOutcome, Result<CallToolResponse, ErrorData>)
where
    Respond: Fn(String, Reply) -> Responded,
    Responded: Future<Output = ()>,
{
    let progress_token = context.meta.get_progress_token();
    let mut updates = std::pin::pin!(updates);
    // MCP asks that progress increase with every notification.
    let mut last_sent = f64::NEG_INFINITY;
    // Polled in this task (not spawned): rmcp sends an elicitation on the call's own stream
    // only from the task serving the call.
    let mut elicitations = FuturesUnordered::new();
    let respond = &respond;
    loop {
        let update = tokio::select! {
            biased;
            () = context.ct.cancelled() => {
                return (
                    CallOutcome::Cancelled,
                    Err(ErrorData::internal_error("the call was cancelled by the client", None)),
                );
            }
            Some(()) = elicitations.next(), if !elicitations.is_empty() => continue,
            update = updates.next() => update,
        };
        match update {
            Some(CallUpdate::InputRequested(question)) if asking == Asking::InResult => {
                // One question per round: the client answers it and calls again; a question
                // MCP cannot carry stays open for RespondToRun.
                if let Some(request) = elicitation::input_request(&question) {
                    let requests = InputRequests::from([(question.request_id, request)]);
                    let result = InputRequiredResult::new(Some(requests), Some(run_id.to_owned()))
                        .with_meta(run_meta(run_id));
                    return (CallOutcome::InputRequired, Ok(result.into()));
                }
            }
            Some(CallUpdate::InputRequested(question)) => {
                let peer = &context.peer;
                elicitations.push(async move {
                    if let Some(reply) = elicitation::elicit(peer, &question).await {
                        respond(question.request_id, reply).await;
                    }
                });
            }
            Some(CallUpdate::Progress { fraction, status }) => {
                let (Some(token), Some(fraction)) = (&progress_token, fraction) else {
                    continue;
                };
                if fraction.is_nan() || fraction <= last_sent {
                    continue;
                }
                last_sent = fraction;
                let mut param = ProgressNotificationParam::new(token.clone(), fraction.min(1.0))
                    .with_total(1.0);
                param.message = status;
                param.meta = Some(NotificationMetaObject(run_meta(run_id)));
                if let Err(error) = context.peer.notify_progress(param).await {
                    // The client is gone; its request's end (or the cancellation) follows.
                    tracing::debug!(%error, run_id, "progress notification not sent");
                }
            }
            Some(CallUpdate::Result(value)) => {
                return (CallOutcome::Ok, Ok(success_result(run_id, value).into()));
            }
            Some(CallUpdate::Failed(message)) => {
                return (
                    CallOutcome::ToolError,
                    Ok(error_result(Some(run_id), message).into()),
                );
            }
            None => {
                return (
                    CallOutcome::ToolError,
                    Ok(error_result(
                        Some(run_id),
                        "the run's stream ended without a result or an error".to_owned(),
                    )
                    .into()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_output_schemas_are_offered_and_results_map_to_content() {
        let input = serde_json::json!({"type": "object", "properties": {}});
        let object = serde_json::json!({"type": "object"});
        let string = serde_json::json!({"type": "string"});
        let with_object = mcp_tool("a".into(), "A".into(), &input, Some(&object));
        assert!(with_object.output_schema.is_some());
        let with_string = mcp_tool("a".into(), "A".into(), &input, Some(&string));
        assert!(with_string.output_schema.is_none());

        let structured = success_result("r1", serde_json::json!({"n": 1}));
        assert_eq!(
            structured.structured_content,
            Some(serde_json::json!({"n": 1}))
        );
        assert_eq!(structured.is_error, Some(false));
        let text = success_result("r1", Value::from("done"));
        assert!(text.structured_content.is_none());
        let Some(meta) = text.meta else {
            panic!("the run id is in _meta");
        };
        assert_eq!(meta.get(RUN_ID_META), Some(&Value::from("r1")));
        assert_eq!(error_result(None, "no".into()).is_error, Some(true));
    }
}
