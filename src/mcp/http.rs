//! `/mcp`: MCP Streamable HTTP over the operations. `tools/call` runs the tool through
//! [`Operations::run_tool`], the path RunTool takes (the caller's scope, the engine's limits and
//! store: the run is visible to GetRun and WatchRun), and follows it with
//! [`super::follow_call`]; with a model configured, the agent is one more tool (`agent`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use super::{
    AGENT_TOOL, Asking, CallOutcome, CallUpdate, InputQuestion, elicitation, follow_call, mcp_tool,
    meta_timeout, refused, trace_context,
};
use crate::agent::AgentRequest;
use crate::auth::Caller;
use crate::config::McpConfig;
use crate::engine::{
    EventKind, EventStream, OnDisconnect, ReadFrom, Reply, RunHandle, RunOptions, ToolRunRequest,
};
use crate::operations::{Operations, WatchRequest};
use crate::status;
use crate::telemetry::metrics::Metrics;
use crate::tools::ToolSpec;

/// How long a run's input request waits when the client answers in a retried call (the
/// 2026-07-28 revision): a client that never calls again must not hold the run for ever.
const ANSWER_IN_RETRY_TIMEOUT: Duration = Duration::from_secs(600);

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
/// requests, and the end. `refusals` holds why an answer to a request was refused (by request
/// id): the request is asked again with the reason after its prompt.
fn call_updates<'a>(
    events: &'a mut EventStream,
    refusals: &'a HashMap<String, String>,
) -> impl Stream<Item = CallUpdate> + 'a {
    events.filter_map(move |event| {
        std::future::ready(match event {
            Ok(event) => match &event.kind {
                EventKind::Progress { call, update, .. } if call.call_id.is_empty() => {
                    Some(CallUpdate::Progress {
                        fraction: update.fraction,
                        status: update.status.clone(),
                    })
                }
                EventKind::InputRequested(request) => {
                    let prompt = match refusals.get(&*request.request_id) {
                        Some(why) => {
                            format!("{} (the last answer was refused: {why})", request.prompt)
                        }
                        None => request.prompt.clone(),
                    };
                    Some(CallUpdate::InputRequested(InputQuestion {
                        request_id: request.request_id.to_string(),
                        prompt,
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

/// How this call asks the client: in its result under the 2026-07-28 revision when the client
/// declared elicitation (form mode), else with `elicitation/create`.
fn asking(context: &RequestContext<RoleServer>) -> Asking {
    let stateless = context
        .protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    // A capability naming neither mode means form, as MCP's first elicitation revision had it.
    let forms = context
        .client_capabilities()
        .and_then(|capabilities| capabilities.elicitation)
        .is_some_and(|elicitation| elicitation.form.is_some() || elicitation.url.is_none());
    if stateless && forms {
        Asking::InResult
    } else {
        Asking::Elicit
    }
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

    fn options(&self, asking: Asking) -> RunOptions {
        RunOptions {
            min_progress_interval: Some(self.progress_interval),
            on_disconnect: OnDisconnect::Cancel,
            heartbeat_interval: None,
            input_timeout: (asking == Asking::InResult).then_some(ANSWER_IN_RETRY_TIMEOUT),
        }
    }

    /// Reads the run to the call's end, answering elicitations with RespondToRun by the caller:
    /// the same checks (the schema, the first answer wins) as an answer from anywhere else.
    async fn follow(
        &self,
        caller: &Caller,
        events: &mut EventStream,
        refusals: &HashMap<String, String>,
        context: &RequestContext<RoleServer>,
        asking: Asking,
    ) -> (CallOutcome, Result<CallToolResponse, ErrorData>) {
        let run_id = Arc::clone(events.run_id());
        let respond = |request_id: String, reply: Reply| {
            let run_id = &run_id;
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
        let updates = call_updates(events, refusals);
        follow_call(&run_id, updates, context, asking, respond).await
    }

    /// A `tools/call` retried with the answers to the question its `InputRequiredResult` asked
    /// (`requestState` is the run's id): answers the run's open requests, then reads the run
    /// on from its latest state as the first call did. The run keeps the caller's policy: one
    /// the caller may not see is NOT_FOUND, whatever id the client echoes.
    async fn resume(
        &self,
        caller: &Caller,
        request: CallToolRequestParams,
        run_id: String,
        context: &RequestContext<RoleServer>,
    ) -> (CallOutcome, Result<CallToolResponse, ErrorData>) {
        let run = match self.operations.get_run(caller, &run_id).await {
            Ok(run) => run,
            Err(error) => {
                let message = format!("requestState names no run this caller can see: {error}");
                return (
                    CallOutcome::ProtocolError,
                    Err(ErrorData::invalid_params(message, None)),
                );
            }
        };
        let called = run.kind.tool().unwrap_or(AGENT_TOOL);
        if called != request.name {
            let message = format!(
                "requestState names a run of \"{called}\", not of \"{}\"",
                request.name
            );
            return (
                CallOutcome::ProtocolError,
                Err(ErrorData::invalid_params(message, None)),
            );
        }
        let mut refusals = HashMap::new();
        for (request_id, response) in request.input_responses.unwrap_or_default() {
            let asked = run
                .pending_inputs
                .iter()
                .find_map(|event| match &event.kind {
                    EventKind::InputRequested(asked) if *asked.request_id == *request_id => {
                        Some(asked.schema.clone())
                    }
                    _ => None,
                });
            // Answered elsewhere, lapsed, or never asked: nothing to answer.
            let Some(schema) = asked else {
                tracing::debug!(%run_id, request_id, "an input response for no open request");
                continue;
            };
            let reply = match elicitation::reply_to_response(schema.as_ref(), response) {
                Ok(reply) => reply,
                Err(why) => {
                    let message = format!(
                        "inputResponses[\"{request_id}\"] is not an elicitation result: {why}"
                    );
                    return (
                        CallOutcome::ProtocolError,
                        Err(ErrorData::invalid_params(message, None)),
                    );
                }
            };
            if let Err(error) = self
                .operations
                .respond(caller, &run_id, &request_id, reply)
                .await
            {
                // The request stays open (a value the schema refuses): it is asked again.
                refusals.insert(request_id, error.to_string());
            }
        }
        let watch = WatchRequest {
            run_id: run_id.clone(),
            from: ReadFrom::Latest,
            options: self.options(Asking::InResult),
        };
        let mut events = match self.operations.watch_run(caller, &watch).await {
            Ok(events) => events,
            Err(error) => return refused(&status::from_run_error(error)),
        };
        let asking = asking(context);
        let (outcome, result) = self
            .follow(caller, &mut events, &refusals, context, asking)
            .await;
        if outcome == CallOutcome::Cancelled {
            // Watching never cancels a run; the client cancelling its call does.
            if let Err(error) = self.operations.cancel_run(caller, &run_id).await {
                tracing::debug!(%error, %run_id, "the cancelled call's run was not cancelled");
            }
        }
        (outcome, result)
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> (CallOutcome, Result<CallToolResponse, ErrorData>) {
        let (caller, parts) = Self::caller(context);
        if let Some(run_id) = request.request_state.clone() {
            return self.resume(&caller, request, run_id, context).await;
        }
        let asking = asking(context);
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
                options: self.options(asking),
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
                options: self.options(asking),
                deadline,
                owner: None,
                idempotency_key: String::new(),
                labels: Default::default(),
            };
            let _entered = span.enter();
            self.operations.run_tool(&caller, request).await
        };
        let mut events = match started {
            Ok(RunHandle { events, .. }) => events,
            Err(error) => return refused(&status::from_run_error(error)),
        };
        let (outcome, result) = self
            .follow(&caller, &mut events, &HashMap::new(), context, asking)
            .await;
        if outcome == CallOutcome::InputRequired {
            // The run waits for the answer the client brings in its retried call.
            events.keep_run_when_dropped();
        }
        (outcome, result)
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
        result
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
