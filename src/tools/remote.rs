//! Remote tools: the tools of another server speaking `toolstream.v1.ToolService` (a toolstream
//! server, or a Python worker from `toolstream.worker`), listed at start-up and kept listed, each
//! run forwarded as a RunTool call and its progress and partial results relayed.
//!
//! ```toml
//! [[tools]]
//! kind = "grpc"
//! endpoint = "http://127.0.0.1:50052"
//! prefix = "remote."            # optional: tool names become remote.<name>
//! relist_secs = 10              # optional: how often the remote's tools are listed again
//! # TLS (an https:// endpoint): the CA to verify it with (default: the system's roots), and a
//! # client certificate for mTLS; paths relative to the config file
//! tls_ca = "tls/ca.pem"
//! tls_cert = "tls/client.pem"
//! tls_key = "tls/client.key"
//! token_env = "REMOTE_TOKEN"    # optional: sent as `authorization: Bearer` (a remote with auth)
//! ```
//!
//! The remote's tool list is read when the server starts. A remote that cannot be listed then (a
//! worker started at the same time and not up yet, or an endpoint with a typo) does not stop
//! `serve`: the server starts without its tools, the log says which endpoint is down and why, and
//! `/healthz` lists it as unreachable (see `ToolRegistry::sources`). After that the list is kept
//! current ([`relist`]): it is read again every `relist_secs`, and at once when a run finds the
//! remote unreachable or without the tool; while the remote is unreachable it is tried again, more
//! and more slowly up to `relist_secs`, and listed as soon as it answers. So a remote that restarts
//! with other tools is noticed: its new tools appear, the ones it no longer has go away. A tool
//! whose name another tool of this server already has is left out, with a warning in the log.
//! While the remote is unreachable its last known tools stay listed and their runs fail with
//! UNAVAILABLE naming the endpoint; the local server goes on, and the channel reconnects by itself
//! when the remote is back. Cancellation propagates: a run that ends (client gone, deadline)
//! drops the forwarded call, which cancels the remote run. The run's deadline is also sent as the
//! call's `grpc-timeout`, so the remote ends its run on time by itself even when the cancellation
//! cannot reach it. Messages both ways may be as large as this server's `max_message_bytes`.
//! The remote run's progress tree is kept: its top level is this call's progress, and its
//! sub-tasks become nodes of this call, with the remote's call ids prefixed by this call's (so two
//! calls relaying the same remote ids stay apart) and the remote's top-level sub-tasks under this
//! call. Their fractions are not rolled up again: the remote's top level already includes them.
//! The time left is estimated again here, from what arrives. `RemoteTool::error` says how the
//! remote's error codes are mapped. The remote run's input requests are asked again under this
//! call and answered back through the remote's RunService ([`inputs`]).

mod inputs;
mod relist;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::{PartialOutput, Progress, ProgressUpdate, Tool, ToolError, ToolKind, ToolSpec};
use crate::json_proto::{json_to_struct, struct_to_json, value_to_json};
use crate::pb;
use crate::pb::run_service_client::RunServiceClient;
use crate::pb::tool_service_client::ToolServiceClient;
use crate::tls::ClientTls;
use crate::tools::ToolListing;

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
    /// Seconds between two listings of the remote's tools.
    relist_secs: Option<u64>,
    tls_ca: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    /// The environment variable holding the bearer token for the remote.
    token_env: Option<String>,
}

/// How long a listing of the remote's tools may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between two listings when the entry does not say (`relist_secs`).
const DEFAULT_RELIST: Duration = Duration::from_secs(10);

/// The remote server of a `[[tools]]` entry, its tools listed once; [`RemoteSource::keep_listed`]
/// keeps them current.
pub struct RemoteSource {
    remote: Arc<Remote>,
    tools: Vec<Arc<dyn Tool>>,
    /// Why the remote could not be listed at start-up; `None`: it was.
    unreachable: Option<String>,
}

impl RemoteSource {
    /// What the source is, for logs and the registry: `remote http://host:port`.
    pub fn label(&self) -> String {
        format!("remote {}", self.remote.endpoint)
    }

    /// The tools the remote listed at start-up (none when it could not be listed).
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.tools.clone()
    }

    /// Why the remote could not be listed at start-up, if it could not.
    pub fn unreachable(&self) -> Option<&str> {
        self.unreachable.as_deref()
    }

    /// Keeps the tools of `set` (registered with [`tools`](Self::tools)) those the remote lists,
    /// on a background task that ends when the set is dropped. A remote that could not be listed
    /// at start-up is tried again soon, with back-off, and marked unreachable in `set` meanwhile.
    pub fn keep_listed(self, set: Arc<dyn ToolListing>) {
        set.set_unreachable(self.unreachable.clone());
        tokio::spawn(relist::keep_listed(
            self.remote,
            Arc::downgrade(&set),
            self.unreachable.is_some(),
        ));
    }
}

/// Connects to the server of a `[[tools]]` entry and lists its tools. Messages to and from the
/// remote may be up to `max_message_bytes` (this server's `[limits] max_message_bytes`).
///
/// Fails only when the entry itself is wrong (an unknown key, an unusable endpoint or TLS file, a
/// missing token): a remote that cannot be listed now is a source with no tools yet, listed when
/// it answers (see [`RemoteSource::unreachable`]).
pub async fn from_entry(
    entry: &toml::Table,
    base_dir: &std::path::Path,
    max_message_bytes: usize,
) -> Result<RemoteSource, String> {
    let entry: RemoteEntry = entry
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let relist_every = match entry.relist_secs {
        Some(0) => return Err("`relist_secs` must be at least 1".into()),
        Some(secs) => Duration::from_secs(secs),
        None => DEFAULT_RELIST,
    };
    let endpoint = entry.endpoint.trim_end_matches('/').to_owned();
    let tls = ClientTls {
        ca: entry.tls_ca,
        cert: entry.tls_cert,
        key: entry.tls_key,
    }
    .relative_to(base_dir);
    let authorization = match &entry.token_env {
        None => None,
        Some(variable) => {
            let token = std::env::var(variable)
                .ok()
                .filter(|token| !token.is_empty())
                .ok_or_else(|| {
                    format!("token_env names {variable:?}, which is not set or empty")
                })?;
            Some(
                MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    format!("the token in {variable:?} holds characters a header cannot carry")
                })?,
            )
        }
    };
    let channel = crate::tls::endpoint(&endpoint, &tls)?
        .connect_timeout(Duration::from_secs(entry.connect_timeout_secs.unwrap_or(5)))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy();
    // A result this server would pass on to its own clients must not be refused on the way in
    // (tonic's default limit is 4 MiB), nor arguments it accepted on the way out.
    let client = ToolServiceClient::new(channel.clone())
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    // Answers to the remote run's input requests go back on the same connection.
    let runs = RunServiceClient::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let remote = Arc::new(Remote {
        endpoint: Arc::from(endpoint),
        prefix: entry.prefix,
        client,
        runs,
        relist_every,
        relist_now: Notify::new(),
        authorization,
    });
    let (tools, unreachable) = match remote.list().await {
        Ok(tools) => (tools, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    Ok(RemoteSource {
        remote,
        tools,
        unreachable,
    })
}

/// A remote server: how to reach it and how its tools are named here.
struct Remote {
    endpoint: Arc<str>,
    prefix: String,
    client: ToolServiceClient<Channel>,
    /// The remote's RunService, for the answers to its runs' input requests.
    runs: RunServiceClient<Channel>,
    /// Time between two listings.
    relist_every: Duration,
    /// Woken by a run that found the remote unreachable or without its tool.
    relist_now: Notify,
    /// `authorization: Bearer <token>` for every call (`token_env`).
    authorization: Option<MetadataValue<Ascii>>,
}

impl Remote {
    /// A request to the remote, with the bearer token when the entry has one.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}

impl Remote {
    /// Lists the remote's tools, as tools of this server.
    async fn list(self: &Arc<Self>) -> Result<Vec<Arc<dyn Tool>>, String> {
        let mut request = self.request(pb::ListToolsRequest {});
        request.set_timeout(LIST_TIMEOUT);
        let listed = self
            .client
            .clone()
            .list_tools(request)
            .await
            .map_err(|status| {
                format!(
                    "cannot list the tools of {}: {} ({:?})",
                    self.endpoint,
                    status.message(),
                    status.code()
                )
            })?
            .into_inner();
        Ok(listed
            .tools
            .into_iter()
            .map(|tool| {
                let spec = ToolSpec {
                    name: format!("{}{}", self.prefix, tool.name),
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
                    remote: Arc::clone(self),
                }) as Arc<dyn Tool>
            })
            .collect())
    }
}

/// One tool of a remote server.
struct RemoteTool {
    spec: ToolSpec,
    remote_name: String,
    remote: Arc<Remote>,
}

impl RemoteTool {
    /// The remote's status as this tool's error, with the endpoint before its message. A code
    /// that means the same to this server's caller is kept; the others say what the caller can do:
    ///
    /// | remote | local |
    /// |---|---|
    /// | INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, DEADLINE_EXCEEDED, OUT_OF_RANGE, ABORTED | the same |
    /// | CANCELLED (the remote ended the run, not the caller) | ABORTED |
    /// | CANCELLED, UNKNOWN, INTERNAL made here from a transport error (the connection broke) | UNAVAILABLE |
    /// | UNAVAILABLE, RESOURCE_EXHAUSTED (the remote is at its run limit) | UNAVAILABLE |
    /// | UNKNOWN, INTERNAL, DATA_LOSS, UNIMPLEMENTED, UNAUTHENTICATED, FAILED_PRECONDITION, ALREADY_EXISTS | INTERNAL, naming the remote's code |
    ///
    /// OUT_OF_RANGE is what tonic answers for a message over a size limit (the remote's limit on
    /// the arguments, or this server's on the result): the arguments are valid, only too large for
    /// the link, so it must not become INVALID_ARGUMENT.
    fn error(&self, status: tonic::Status) -> ToolError {
        use std::error::Error;
        use tonic::Code;
        // A status with a source was made here from a transport error (the remote did not send
        // it): the connection broke, whatever code it was given (hyper's "operation was
        // canceled" for a request on a connection that just died becomes CANCELLED).
        let status = if status.source().is_some()
            && matches!(
                status.code(),
                Code::Cancelled | Code::Unknown | Code::Internal
            ) {
            tonic::Status::unavailable(format!("the connection was lost ({})", status.message()))
        } else {
            status
        };
        // The remote may have gone, or come back without this tool: list its tools again now
        // rather than at the next regular listing.
        if matches!(status.code(), Code::Unavailable | Code::NotFound) {
            self.remote.relist_now.notify_one();
        }
        let endpoint = &self.remote.endpoint;
        let message = format!("remote {endpoint}: {}", status.message());
        match status.code() {
            Code::InvalidArgument => ToolError::InvalidArguments(message),
            Code::NotFound => ToolError::NotFound(message),
            Code::PermissionDenied => ToolError::PermissionDenied(message),
            Code::DeadlineExceeded => ToolError::DeadlineExceeded(message),
            Code::OutOfRange => ToolError::OutOfRange(message),
            Code::Aborted | Code::Cancelled => ToolError::Failed(message),
            Code::Unavailable | Code::ResourceExhausted => ToolError::Unavailable(format!(
                "remote {endpoint} is unavailable: {}",
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
                "remote {endpoint} failed with {:?}: {}",
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
        let mut request = self.remote.request(pb::RunToolRequest {
            tool: self.remote_name.clone(),
            arguments: Some(json_to_struct(arguments)),
            options: None,
        });
        // The time left goes with the call: the remote then ends its run at the deadline by
        // itself, even if this run's cancellation cannot reach it (a broken link).
        if let Some(deadline) = progress.deadline() {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        // The remote run joins this run's trace.
        crate::traces::inject_metadata(request.metadata_mut());
        let mut client = self.remote.client.clone();
        // The remote run's sub-tasks, by the remote's call id: each relayed as a node of this
        // call, under this call for the remote's top level.
        let mut relayed: HashMap<String, Progress> = HashMap::new();
        let mut events = client
            .run_tool(request)
            .await
            .map_err(|status| self.error(status))?
            .into_inner();
        // The remote run's input requests, asked here and answered back.
        let mut inputs = inputs::RelayedInputs::default();
        loop {
            let event = tokio::select! {
                event = events.message() => event.map_err(|status| self.error(status))?,
                step = inputs.next() => {
                    inputs
                        .carry_on(step, &self.remote)
                        .map_err(|status| self.error(status))?;
                    continue;
                }
            };
            let Some(event) = event else { break };
            // Progress and partial results are relayed under the node that made them; one
            // larger than this server's message limit fails the call, naming the limit.
            let (call_id, parent, label, relay) = match event.event {
                Some(pb::run_event::Event::Progress(remote)) => (
                    remote.call_id,
                    remote.parent_call_id,
                    remote.tool,
                    Relay::Progress(ProgressUpdate {
                        fraction: remote.progress,
                        status: remote.status,
                        data: remote.data.map(struct_to_json).unwrap_or_default(),
                    }),
                ),
                Some(pb::run_event::Event::PartialResult(remote)) => (
                    remote.call_id,
                    remote.parent_call_id,
                    remote.tool,
                    Relay::Partial(PartialOutput {
                        key: remote.key,
                        value: remote.value.map_or(Value::Null, value_to_json),
                        append: remote.append,
                    }),
                ),
                Some(pb::run_event::Event::Result(result)) => {
                    inputs.settle_all().await;
                    return Ok(result.value.map_or(Value::Null, value_to_json));
                }
                Some(pb::run_event::Event::InputRequested(request)) => {
                    let node = node(
                        &progress,
                        &mut relayed,
                        request.call_id.clone(),
                        &request.parent_call_id,
                        &request.tool,
                    );
                    inputs.requested(node.clone(), event.run_id, request);
                    continue;
                }
                Some(pb::run_event::Event::InputResolved(resolved)) => {
                    inputs.resolved(resolved);
                    continue;
                }
                _ => continue,
            };
            let node = node(&progress, &mut relayed, call_id, &parent, &label);
            match relay {
                Relay::Progress(update) => node.update(update),
                Relay::Partial(output) => node.partial_output(output)?,
            }
        }
        Err(ToolError::Internal(format!(
            "remote {} ended the run without a result",
            self.remote.endpoint
        )))
    }
}

/// What a remote's event gives its node here.
enum Relay {
    Progress(ProgressUpdate),
    Partial(PartialOutput),
}

/// The handle that relays a remote node: this call's own for the remote's top level (an empty
/// `call_id`), else the node relayed for it (made on its first event).
fn node<'a>(
    progress: &'a Progress,
    relayed: &'a mut HashMap<String, Progress>,
    call_id: String,
    parent: &str,
    label: &str,
) -> &'a Progress {
    if call_id.is_empty() {
        return progress;
    }
    relayed
        .entry(call_id)
        .or_insert_with_key(|id| progress.relayed(id, parent, label))
}

impl Tool for RemoteTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn run(&self, arguments: Value, progress: Progress) -> BoxFuture<'_, Result<Value, ToolError>> {
        self.forward(arguments, progress).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> RemoteTool {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let remote = Arc::new(Remote {
            endpoint: Arc::from("http://127.0.0.1:1"),
            prefix: String::new(),
            client: ToolServiceClient::new(channel.clone()),
            runs: RunServiceClient::new(channel),
            relist_every: DEFAULT_RELIST,
            relist_now: Notify::new(),
            authorization: None,
        });
        RemoteTool {
            spec: ToolSpec {
                name: "t".into(),
                description: String::new(),
                input_schema: serde_json::json!({"type": "object"}),
                output_schema: None,
                kind: ToolKind::Grpc,
            },
            remote_name: "t".into(),
            remote,
        }
    }

    #[tokio::test]
    async fn a_broken_connection_is_unavailable_but_a_remote_cancel_is_its_error() {
        let tool = tool();
        let mut broken = tonic::Status::cancelled("operation was canceled");
        broken.set_source(Arc::new(std::io::Error::other("connection reset")));
        let error = tool.error(broken);
        assert!(
            matches!(&error, ToolError::Unavailable(m) if m.contains("connection was lost")),
            "{error:?}"
        );

        let sent = tonic::Status::cancelled("the worker stopped the run");
        assert!(
            matches!(tool.error(sent), ToolError::Failed(m) if m.contains("the worker stopped the run"))
        );
    }
}
