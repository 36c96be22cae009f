//! Remote tools: the tools of another toolstream server, listed at start-up, each run forwarded
//! as a RunTool call and its progress relayed.
//!
//! ```toml
//! [[tools]]
//! kind = "grpc"
//! endpoint = "http://127.0.0.1:50052"
//! prefix = "remote."            # optional: tool names become remote.<name>
//! ```
//!
//! The remote's tool list is read once, when the server starts: a remote that cannot be listed
//! then stops `serve` with a message naming the entry. Later, a remote that cannot be reached fails
//! the run with UNAVAILABLE naming the endpoint, and the local server goes on; the channel
//! reconnects by itself when the remote is back. Cancellation propagates: a run that ends (client
//! gone, deadline) drops the forwarded call, which cancels the remote run. The run's deadline is
//! also sent as the call's `grpc-timeout`, so the remote ends its run on time by itself even when
//! the cancellation cannot reach it. The remote run's progress tree is kept: its top level is this
//! call's progress, and its sub-tasks become nodes of this call, with the remote's call ids
//! prefixed by this call's (so two calls relaying the same remote ids stay apart) and the remote's
//! top-level sub-tasks under this call. Their fractions are not rolled up again: the remote's top
//! level already includes them. The time left is estimated again here, from what arrives. Messages both ways may be as large as this server's
//! `max_message_bytes`. `RemoteTool::error` says how the remote's error codes are mapped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::{Progress, ProgressUpdate, Tool, ToolError, ToolKind, ToolSpec};
use crate::json_proto::{json_to_struct, struct_to_json, value_to_json};
use crate::pb;
use crate::pb::tool_service_client::ToolServiceClient;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteEntry {
    #[allow(dead_code)]
    kind: String,
    endpoint: String,
    #[serde(default)]
    prefix: String,
    /// Seconds to wait for the remote when connecting.
    connect_timeout_secs: Option<u64>,
}

/// How long start-up waits for the remote's tool list.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the server of a `[[tools]]` entry and lists its tools. Messages to and from the
/// remote may be up to `max_message_bytes` (this server's `[limits] max_message_bytes`).
pub async fn from_entry(
    entry: &toml::Table,
    max_message_bytes: usize,
) -> Result<Vec<Arc<dyn Tool>>, String> {
    let entry: RemoteEntry = entry
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let endpoint = entry.endpoint.trim_end_matches('/').to_owned();
    let channel = Endpoint::from_shared(endpoint.clone())
        .map_err(|e| format!("endpoint {endpoint:?} is not a URL like http://host:port: {e}"))?
        .connect_timeout(Duration::from_secs(entry.connect_timeout_secs.unwrap_or(5)))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy();
    // A result this server would pass on to its own clients must not be refused on the way in
    // (tonic's default limit is 4 MiB), nor arguments it accepted on the way out.
    let mut client = ToolServiceClient::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let mut request = tonic::Request::new(pb::ListToolsRequest {});
    request.set_timeout(LIST_TIMEOUT);
    let listed = client
        .list_tools(request)
        .await
        .map_err(|status| {
            format!(
                "cannot list the tools of {endpoint}: {} ({:?})",
                status.message(),
                status.code()
            )
        })?
        .into_inner();
    let endpoint: Arc<str> = Arc::from(endpoint);
    Ok(listed
        .tools
        .into_iter()
        .map(|tool| {
            let spec = ToolSpec {
                name: format!("{}{}", entry.prefix, tool.name),
                description: tool.description,
                input_schema: tool
                    .input_schema
                    .map(|s| Value::Object(struct_to_json(s)))
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                output_schema: tool.output_schema.map(|s| Value::Object(struct_to_json(s))),
                kind: ToolKind::Grpc,
            };
            Arc::new(RemoteTool {
                spec,
                remote_name: tool.name,
                client: client.clone(),
                endpoint: Arc::clone(&endpoint),
            }) as Arc<dyn Tool>
        })
        .collect())
}

/// One tool of a remote server.
struct RemoteTool {
    spec: ToolSpec,
    remote_name: String,
    client: ToolServiceClient<Channel>,
    endpoint: Arc<str>,
}

impl RemoteTool {
    /// The remote's status as this tool's error, with the endpoint before its message. A code
    /// that means the same to this server's caller is kept; the others say what the caller can do:
    ///
    /// | remote | local |
    /// |---|---|
    /// | INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, DEADLINE_EXCEEDED, OUT_OF_RANGE, ABORTED | the same |
    /// | CANCELLED (the remote ended the run, not the caller) | ABORTED |
    /// | UNAVAILABLE, RESOURCE_EXHAUSTED (the remote is at its run limit) | UNAVAILABLE |
    /// | UNKNOWN, INTERNAL, DATA_LOSS, UNIMPLEMENTED, UNAUTHENTICATED, FAILED_PRECONDITION, ALREADY_EXISTS | INTERNAL, naming the remote's code |
    ///
    /// OUT_OF_RANGE is what tonic answers for a message over a size limit (the remote's limit on
    /// the arguments, or this server's on the result): the arguments are valid, only too large for
    /// the link, so it must not become INVALID_ARGUMENT.
    fn error(&self, status: tonic::Status) -> ToolError {
        use tonic::Code;
        let message = format!("remote {}: {}", self.endpoint, status.message());
        match status.code() {
            Code::InvalidArgument => ToolError::InvalidArguments(message),
            Code::NotFound => ToolError::NotFound(message),
            Code::PermissionDenied => ToolError::PermissionDenied(message),
            Code::DeadlineExceeded => ToolError::DeadlineExceeded(message),
            Code::OutOfRange => ToolError::OutOfRange(message),
            Code::Aborted | Code::Cancelled => ToolError::Failed(message),
            Code::Unavailable | Code::ResourceExhausted => ToolError::Unavailable(format!(
                "remote toolstream server {} is unavailable: {}",
                self.endpoint,
                status.message()
            )),
            Code::Ok
            | Code::Unknown
            | Code::Internal
            | Code::DataLoss
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::AlreadyExists => ToolError::Internal(format!(
                "remote {} failed with {:?}: {}",
                self.endpoint,
                status.code(),
                status.message()
            )),
        }
    }

    async fn forward(&self, arguments: Value, progress: Progress) -> Result<Value, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError::InvalidArguments(
                "arguments must be a JSON object".into(),
            ));
        };
        let mut request = tonic::Request::new(pb::RunToolRequest {
            tool: self.remote_name.clone(),
            arguments: Some(json_to_struct(arguments)),
            options: None,
        });
        // The time left goes with the call: the remote then ends its run at the deadline by
        // itself, even if this run's cancellation cannot reach it (a broken link).
        if let Some(deadline) = progress.deadline() {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        let mut client = self.client.clone();
        // The remote run's sub-tasks, by the remote's call id: each relayed as a node of this
        // call, under this call for the remote's top level.
        let mut relayed: HashMap<String, Progress> = HashMap::new();
        let mut events = client
            .run_tool(request)
            .await
            .map_err(|status| self.error(status))?
            .into_inner();
        while let Some(event) = events
            .message()
            .await
            .map_err(|status| self.error(status))?
        {
            match event.event {
                Some(pb::run_event::Event::Progress(remote)) => {
                    let update = ProgressUpdate {
                        fraction: remote.progress,
                        status: remote.status,
                        data: remote.data.map(struct_to_json).unwrap_or_default(),
                    };
                    if remote.call_id.is_empty() {
                        progress.update(update);
                    } else {
                        relayed
                            .entry(remote.call_id)
                            .or_insert_with_key(|id| {
                                progress.relayed(id, &remote.parent_call_id, &remote.tool)
                            })
                            .update(update);
                    }
                }
                Some(pb::run_event::Event::Result(result)) => {
                    return Ok(result.value.map_or(Value::Null, value_to_json));
                }
                _ => {}
            }
        }
        Err(ToolError::Internal(format!(
            "remote {} ended the run without a result",
            self.endpoint
        )))
    }
}

impl Tool for RemoteTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn run(&self, arguments: Value, progress: Progress) -> BoxFuture<'_, Result<Value, ToolError>> {
        self.forward(arguments, progress).boxed()
    }
}
