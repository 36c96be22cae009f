//! `/mcp`: MCP Streamable HTTP over the operations. `tools/call` runs the tool through
//! [`Operations::run_tool`], the path RunTool takes (the caller's scope, the engine's limits and
//! store: the run is visible to GetRun and WatchRun), and follows it with
//! [`super::follow_call`]; with a model configured, the agent is one more tool (`agent`).

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, ListToolsResult,
    PaginatedRequestParams, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use super::{
    AGENT_TOOL, CallOutcome, CallUpdate, InputQuestion, follow_call, mcp_tool, meta_timeout,
    refused, trace_context,
};
use crate::agent::AgentRequest;
use crate::auth::Caller;
use crate::config::McpConfig;
use crate::engine::{
    EventKind, EventStream, OnDisconnect, Reply, RunHandle, RunOptions, ToolRunRequest,
};
use crate::operations::Operations;
use crate::status;
use crate::telemetry::metrics::Metrics;
use crate::tools::ToolSpec;

/// Metric labels: the methods counted.
const LIST: &str = "tools/list";
const CALL: &str = "tools/call";

fn spec_tool(spec: ToolSpec) -> Tool {
    mcp_tool(
        spec.name,
        spec.description,
        &spec.input_schema,
        spec.output_schema.as_ref(),
    )
}

/// The agent as a tool: a prompt, and the tools it may use.
fn agent_tool() -> Tool {
    let input = serde_json::json!({
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "description": "What to do."},
            "tools": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The tools the agent may call (names from tools/list); empty or absent: every tool this caller may use."
            }
        },
        "required": ["prompt"],
        "additionalProperties": false
    });
    mcp_tool(
        AGENT_TOOL.to_owned(),
        "Runs a language model that calls this server's tools to do what the prompt asks, and \
         answers with its final text; progress follows its steps."
            .to_owned(),
        &input,
        None,
    )
}

/// A run's events as what a `tools/call` reads of them: the top level's progress, the input
/// requests, and the end.
fn call_updates(events: EventStream) -> impl Stream<Item = CallUpdate> {
    events.filter_map(|event| {
        std::future::ready(match event {
            Ok(event) => match &event.kind {
                EventKind::Progress { call, update, .. } if call.call_id.is_empty() => {
                    Some(CallUpdate::Progress {
                        fraction: update.fraction,
                        status: update.status.clone(),
                    })
                }
                EventKind::InputRequested(request) => {
                    Some(CallUpdate::InputRequested(InputQuestion {
                        request_id: request.request_id.to_string(),
                        prompt: request.prompt.clone(),
                        schema: request.schema.clone(),
                    }))
                }
                EventKind::Result(value) => Some(CallUpdate::Result(value.clone())),
                _ => None,
            },
            // Worded as every face words it (a limit named by its configuration key).
            Err(error) => Some(CallUpdate::Failed(
                status::from_run_error(error).message().to_owned(),
            )),
        })
    })
}

/// The caller's deadline: `_meta["toolstream/timeoutMs"]`, or the request's `grpc-timeout`
/// header.
fn deadline(
    context: &RequestContext<RoleServer>,
    parts: Option<&http::request::Parts>,
) -> Result<Option<Duration>, ErrorData> {
    if let Some(timeout) = meta_timeout(context)? {
        return Ok(Some(timeout));
    }
    let header = parts.and_then(|parts| parts.headers.get("grpc-timeout"));
    crate::transport::deadline_from_grpc_timeout(header.map(http::HeaderValue::as_bytes))
        .map_err(|status| ErrorData::invalid_params(status.message().to_owned(), None))
}

/// The arguments of the agent tool.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentArguments {
    prompt: String,
    #[serde(default)]
    tools: Vec<String>,
}

/// The MCP server over the engine, one per session (or per request, statelessly).
#[derive(Clone)]
pub(crate) struct RegistryServer {
    operations: Arc<Operations>,
    metrics: Arc<Metrics>,
    progress_interval: Duration,
}

impl RegistryServer {
    /// The caller's access and the request's HTTP parts, as the auth layer recorded them.
    fn caller(context: &RequestContext<RoleServer>) -> (Caller, Option<&http::request::Parts>) {
        let parts = context.extensions.get::<http::request::Parts>();
        let caller = parts
            .and_then(|parts| parts.extensions.get::<Caller>().cloned())
            .unwrap_or_default();
        (caller, parts)
    }

    /// Whether the agent tool is offered: a model is configured and no tool takes its name.
    fn offers_agent(&self) -> bool {
        self.operations.has_model()
            && self
                .operations
                .engine()
                .registry()
                .spec(AGENT_TOOL)
                .is_none()
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            min_progress_interval: Some(self.progress_interval),
            on_disconnect: OnDisconnect::Cancel,
            heartbeat_interval: None,
            input_timeout: None,
        }
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> (CallOutcome, Result<CallToolResult, ErrorData>) {
        let (caller, parts) = Self::caller(context);
        let deadline = match deadline(context, parts) {
            Ok(deadline) => deadline,
            Err(error) => return (CallOutcome::ProtocolError, Err(error)),
        };
        let [(_, traceparent), (_, tracestate)] = trace_context(context);
        let span = crate::traces::span_with_remote_parent(CALL, traceparent, tracestate);
        let arguments = request.arguments.map(Value::Object);
        let started = if request.name == AGENT_TOOL && self.offers_agent() {
            let arguments: AgentArguments =
                match serde_json::from_value(arguments.unwrap_or(Value::Null)) {
                    Ok(arguments) => arguments,
                    Err(error) => {
                        return (
                            CallOutcome::ProtocolError,
                            Err(ErrorData::invalid_params(
                                format!("invalid arguments for tool \"agent\": {error}"),
                                None,
                            )),
                        );
                    }
                };
            let request = AgentRequest {
                prompt: arguments.prompt,
                system_prompt: String::new(),
                tools: arguments.tools,
                model: String::new(),
                max_steps: 0,
                options: self.options(),
                deadline,
                owner: None,
                idempotency_key: String::new(),
                labels: Default::default(),
                approval_required: Vec::new(),
            };
            let _entered = span.enter();
            self.operations.run_agent(&caller, request).await
        } else {
            let request = ToolRunRequest {
                tool: request.name.into_owned(),
                arguments,
                options: self.options(),
                deadline,
                owner: None,
                idempotency_key: String::new(),
                labels: Default::default(),
            };
            let _entered = span.enter();
            self.operations.run_tool(&caller, request).await
        };
        let handle = match started {
            Ok(handle) => handle,
            Err(error) => return refused(&status::from_run_error(error)),
        };
        let RunHandle { run_id, events, .. } = handle;
        // An elicitation's answer is RespondToRun by the caller: the same checks (the schema,
        // the first answer wins) as an answer from anywhere else.
        let respond = |request_id: String, reply: Reply| {
            let (caller, run_id) = (&caller, &run_id);
            async move {
                if let Err(error) = self
                    .operations
                    .respond(caller, run_id, &request_id, reply)
                    .await
                {
                    tracing::debug!(%error, %run_id, request_id, "elicitation answer refused");
                }
            }
        };
        follow_call(&run_id, call_updates(events), context, respond).await
    }
}

impl rmcp::ServerHandler for RegistryServer {
    fn get_info(&self) -> ServerConfig {
        super::server_info()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (caller, _) = Self::caller(&context);
        let mut tools: Vec<Tool> = self
            .operations
            .list_tools(&caller)
            .into_iter()
            .map(spec_tool)
            .collect();
        if self.offers_agent() {
            tools.push(agent_tool());
        }
        self.metrics.mcp_request(LIST, CallOutcome::Ok.label());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (outcome, result) = self.call(request, &context).await;
        self.metrics.mcp_request(CALL, outcome.label());
        result.map(CallToolResponse::from)
    }
}

/// The `/mcp` service: rmcp's Streamable HTTP server over [`RegistryServer`]. Host and Origin
/// checks are the web face's (the origin check around every route; `allowed_hosts` when
/// configured), so rmcp's own, which only know loopback names, are replaced.
pub(crate) fn service(
    operations: Arc<Operations>,
    metrics: Arc<Metrics>,
    config: &McpConfig,
    max_message_bytes: usize,
) -> StreamableHttpService<RegistryServer, LocalSessionManager> {
    let server = RegistryServer {
        operations,
        metrics,
        progress_interval: config.progress_interval,
    };
    let mut settings = StreamableHttpServerConfig::default()
        .disable_allowed_origins()
        .with_legacy_session_mode(config.sessions)
        .with_max_request_body_bytes(max_message_bytes);
    settings = if config.allowed_hosts.is_empty() {
        settings.disable_allowed_hosts()
    } else {
        settings.with_allowed_hosts(config.allowed_hosts.iter().cloned())
    };
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        settings,
    )
}
