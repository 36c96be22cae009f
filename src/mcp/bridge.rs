//! `toolstream mcp-stdio`: a stdio MCP server that forwards to a toolstream server over gRPC,
//! for desktop clients that launch their MCP servers as processes. `tools/list` is ListTools,
//! `tools/call` is RunTool (the run lives on the server: GetRun and WatchRun see it, and its id
//! is in the result's `_meta`), read with [`super::follow_call`] exactly as `/mcp` reads a run.
//! The run's input requests are asked of a client that declared elicitation, and its answer
//! goes back as RespondToRun. Stdout carries the protocol only.

use futures::{Stream, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, ListToolsResult, PaginatedRequestParams,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::{
    Asking, CallOutcome, CallUpdate, InputQuestion, follow_call, mcp_tool, meta_timeout, refused,
    trace_context,
};
use crate::engine::Reply;
use crate::json_proto::{json_to_struct, json_to_value, struct_to_json, value_to_json};
use crate::pb;
use crate::pb::run_event::Event;
use crate::pb::run_service_client::RunServiceClient;
use crate::pb::tool_service_client::ToolServiceClient;

/// At most one progress event per call per this interval from the server: as `/mcp` asks of
/// the engine by default.
const PROGRESS_INTERVAL_MS: u32 = 100;

/// Why the bridge cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The token cannot be sent as a header.
    #[error("the token holds characters an authorization header cannot carry")]
    Token,
    /// The MCP client did not complete the handshake on stdin/stdout.
    #[error("the MCP client on stdin/stdout did not complete the handshake: {0}")]
    Handshake(String),
    /// The session's task failed.
    #[error("the MCP session ended abnormally: {0}")]
    Session(String),
}

/// The stdio MCP server over one gRPC channel.
#[derive(Clone)]
pub struct GrpcBridge {
    channel: Channel,
    authorization: Option<MetadataValue<Ascii>>,
}

impl GrpcBridge {
    /// A bridge calling the server on `channel`, with `token` as the bearer token of every call.
    pub fn new(channel: Channel, token: Option<&str>) -> Result<Self, BridgeError> {
        let authorization = token
            .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
            .transpose()
            .map_err(|_| BridgeError::Token)?;
        Ok(GrpcBridge {
            channel,
            authorization,
        })
    }

    /// Serves one MCP client on stdin and stdout until it closes them.
    pub async fn serve_stdio(self) -> Result<(), BridgeError> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|error| BridgeError::Handshake(error.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|error| BridgeError::Session(error.to_string()))?;
        Ok(())
    }

    /// `message` as a call with the bearer token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }

    async fn call(
        &self,
        params: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> (CallOutcome, Result<CallToolResponse, ErrorData>) {
        let mut request = self.request(pb::RunToolRequest {
            tool: params.name.into_owned(),
            arguments: params.arguments.map(json_to_struct),
            options: Some(pb::RunOptions {
                min_progress_interval_ms: PROGRESS_INTERVAL_MS,
                ..pb::RunOptions::default()
            }),
        });
        match meta_timeout(context) {
            Ok(Some(timeout)) => request.set_timeout(timeout),
            Ok(None) => {}
            Err(error) => return (CallOutcome::ProtocolError, Err(error)),
        }
        // The caller's trace context goes on as gRPC metadata: the server joins its trace.
        for (key, value) in trace_context(context) {
            if let Some(Ok(value)) = value.map(MetadataValue::try_from) {
                request.metadata_mut().insert(key, value);
            }
        }
        let mut client = ToolServiceClient::new(self.channel.clone());
        let response = match client.run_tool(request).await {
            Ok(response) => response,
            Err(status) => return refused(&status),
        };
        let run_id = response
            .metadata()
            .get("x-run-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // An elicitation's answer goes back as RespondToRun on the same connection, with the
        // same token: the server checks it as an answer from anywhere else.
        let respond = |request_id: String, reply: Reply| {
            let run_id = run_id.clone();
            async move {
                let request = self.request(pb::RespondToRunRequest {
                    decline: matches!(reply, Reply::Decline),
                    value: match reply {
                        Reply::Value(value) => Some(json_to_value(value)),
                        Reply::Decline => None,
                    },
                    run_id,
                    request_id,
                });
                let mut runs = RunServiceClient::new(self.channel.clone());
                if let Err(status) = runs.respond_to_run(request).await {
                    tracing::debug!(message = status.message(), "elicitation answer refused");
                }
            }
        };
        // Elicitation only: answering in a retried call would need the run to outlive this
        // call's stream.
        follow_call(
            &run_id,
            call_updates(response.into_inner()),
            context,
            Asking::Elicit,
            respond,
        )
        .await
    }
}

/// A RunTool stream as what a `tools/call` reads of it.
fn call_updates(
    events: impl Stream<Item = Result<pb::RunEvent, tonic::Status>>,
) -> impl Stream<Item = CallUpdate> {
    events.filter_map(|event| {
        std::future::ready(match event {
            Ok(event) => match event.event {
                Some(Event::Progress(progress)) if progress.call_id.is_empty() => {
                    Some(CallUpdate::Progress {
                        fraction: progress.progress,
                        status: progress.status,
                    })
                }
                Some(Event::InputRequested(request)) => {
                    Some(CallUpdate::InputRequested(InputQuestion {
                        request_id: request.request_id,
                        prompt: request.prompt,
                        schema: request
                            .schema
                            .map(|schema| Value::Object(struct_to_json(schema))),
                    }))
                }
                Some(Event::Result(result)) => Some(CallUpdate::Result(
                    result.value.map_or(Value::Null, value_to_json),
                )),
                _ => None,
            },
            Err(status) => Some(CallUpdate::Failed(status.message().to_owned())),
        })
    })
}

/// A gRPC error of ListTools as a JSON-RPC error.
fn list_error(status: tonic::Status) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the toolstream server answered ListTools with {:?}: {}",
            status.code(),
            status.message()
        ),
        None,
    )
}

impl rmcp::ServerHandler for GrpcBridge {
    fn get_info(&self) -> ServerConfig {
        super::server_info()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut client = ToolServiceClient::new(self.channel.clone());
        let tools = client
            .list_tools(self.request(pb::ListToolsRequest {}))
            .await
            .map_err(list_error)?
            .into_inner()
            .tools;
        let tools: Vec<Tool> = tools
            .into_iter()
            .map(|tool| {
                let schema = |schema: prost_types::Struct| Value::Object(struct_to_json(schema));
                let input = tool.input_schema.map_or(Value::Null, schema);
                let output = tool.output_schema.map(schema);
                mcp_tool(tool.name, tool.description, &input, output.as_ref())
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (_, result) = self.call(request, &context).await;
        result
    }
}
