//! MCP tools: every tool of an MCP server started over stdio, through the `rmcp` crate.
//!
//! ```toml
//! [[tools]]
//! kind = "mcp"
//! command = ["python3", "my_mcp_server.py"]
//! prefix = "files."             # optional: tool names become files.<name>
//! env = { KEY = "value" }       # optional
//! cwd = "servers"               # optional, relative to the config file (default: its directory)
//! handshake_timeout_secs = 30   # optional: how long `initialize` and `tools/list` may take
//! ```
//!
//! The server is started when toolstream starts (a server that fails to start, to complete the
//! handshake within `handshake_timeout_secs`, or to list its tools, stops `serve` with a message
//! naming the entry) and shared by all runs of its tools. It runs in a process group of its own
//! (`process_group.rs`): Ctrl-C in a terminal reaches toolstream, not the server, and at shutdown
//! [`super::processes::stop_all`] sends the group SIGTERM, then SIGKILL after the grace period,
//! and reaps it. Its stderr goes to the log line by line, lossily decoded (a line too long is
//! logged as skipped), and is read to its end whatever it holds.
//!
//! Each call carries a progress token; the server's progress notifications become progress events
//! of the call (fraction = progress / total when the total is known; status = the message). MCP
//! progress has no tree: it stays the call's own progress, tagged as the call's. They are taken off
//! the transport as they are read ([`ProgressTap`]), before rmcp sees them: rmcp handles each
//! notification on a task of its own but hands a call's response over directly, so progress
//! routed from its handler could arrive out of order, or after the call ended (the final
//! `n of n` lost). Read in the stream's order instead, every notification sent before the
//! response is delivered before the call sees the response. Routes belong to one connection
//! (tokens start again at 0 when the server is started again); a notification for a token no
//! call of that connection is waiting for is dropped, and so is one whose `progress` is lower than
//! the last delivered for its call.
//!
//! The server's `elicitation/create` (form mode) is an input request of the call in progress
//! ([`McpClient`]); an answer goes back as `accept`, a decline as `decline`, no answer as
//! `cancel`.
//!
//! A result with `isError` is a tool error (ABORTED) with the result's text. The result value is
//! the `structuredContent` when there is one, otherwise the text content, parsed as JSON when it
//! is JSON. A run that ends before the call does (client gone, deadline) sends MCP cancellation. A
//! server that crashed is started again on the next call; a restart that does not complete the
//! handshake in time fails that call with UNAVAILABLE.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientConfig,
    ClientRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability,
    ErrorData, FormElicitationCapability, GetMeta, JsonRpcMessage, JsonRpcNotification,
    ProgressNotificationParam, ProgressToken, RequestId, ServerNotification, ServerResult,
};
use rmcp::service::{
    PeerRequestOptions, RequestContext, RunningService, RxJsonRpcMessage, TxJsonRpcMessage,
};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio::process::{ChildStdin, ChildStdout};

use super::lines::{Line, LineReader};
use super::process_group::LongLivedGroup;
use super::{Answer, Progress, ProgressUpdate, Tool, ToolError, ToolKind, ToolSpec};

/// How long the handshake (and the first `tools/list`) may take when the entry does not say.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between SIGTERM and SIGKILL when a server is stopped before shutdown (a restart, or a
/// handshake that timed out). At shutdown the server's grace period applies.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Longest stderr line logged; a longer one is logged as skipped, without its bytes.
const MAX_STDERR_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct McpEntry {
    #[allow(dead_code)]
    kind: String,
    command: Vec<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    handshake_timeout_secs: Option<u64>,
}

/// Starts the MCP server of a `[[tools]]` entry and lists its tools.
pub async fn from_entry(
    entry: &toml::Table,
    base_dir: &Path,
) -> Result<Vec<Arc<dyn Tool>>, String> {
    let entry: McpEntry = entry
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    if entry.command.is_empty() || entry.command[0].is_empty() {
        return Err("`command` must name a program, like [\"python3\", \"server.py\"]".into());
    }
    let handshake_timeout = match entry.handshake_timeout_secs {
        Some(0) => return Err("`handshake_timeout_secs` must be at least 1".into()),
        Some(secs) => Duration::from_secs(secs),
        None => DEFAULT_HANDSHAKE_TIMEOUT,
    };
    let cwd = match &entry.cwd {
        Some(cwd) if cwd.is_absolute() => cwd.clone(),
        Some(cwd) => base_dir.join(cwd),
        None => base_dir.to_path_buf(),
    };
    let server = Arc::new(McpServer {
        command: entry.command,
        env: entry.env,
        cwd,
        handshake_timeout,
        connection: tokio::sync::Mutex::new(None),
    });
    let connection = server.connection().await?;
    let tools = tokio::time::timeout(
        handshake_timeout,
        connection.service.peer().list_all_tools(),
    )
    .await
    .map_err(|_| {
        format!(
            "the MCP server `{}` did not list its tools within {} s (handshake_timeout_secs)",
            server.describe(),
            handshake_timeout.as_secs()
        )
    })?
    .map_err(|e| format!("the MCP server did not list its tools: {e}"))?;
    Ok(tools
        .into_iter()
        .map(|tool| {
            let spec = ToolSpec {
                name: format!("{}{}", entry.prefix, tool.name),
                description: tool.description.map(|d| d.into_owned()).unwrap_or_default(),
                input_schema: Value::Object((*tool.input_schema).clone()),
                output_schema: tool.output_schema.map(|s| Value::Object((*s).clone())),
                kind: ToolKind::Mcp,
            };
            Arc::new(McpTool {
                spec,
                remote_name: tool.name.into_owned(),
                server: Arc::clone(&server),
            }) as Arc<dyn Tool>
        })
        .collect())
}

/// One MCP server process, shared by its tools; started again after it died.
struct McpServer {
    command: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    handshake_timeout: Duration,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// One started server: the MCP session, the progress routes of its calls, and its process group
/// (stopped when the connection is dropped).
struct Connection {
    service: RunningService<RoleClient, McpClient>,
    routes: Arc<ProgressRoutes>,
    _process: LongLivedGroup,
}

impl McpServer {
    fn describe(&self) -> String {
        self.command.join(" ")
    }

    /// The live connection, starting the server when there is none or it died.
    async fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            if !connection.service.is_transport_closed() {
                return Ok(Arc::clone(connection));
            }
            tracing::warn!(server = %self.describe(), "MCP server exited; starting it again");
        }
        // The dead connection goes first: its process group is stopped and reaped.
        *slot = None;
        let connection = Arc::new(self.start().await?);
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Drops a connection whose transport failed, so the next call starts the server again
    /// instead of finding the dying one (its pipe may not look closed yet).
    async fn forget(&self, dead: &Arc<Connection>) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|live| Arc::ptr_eq(live, dead)) {
            *slot = None;
        }
    }

    /// Starts the server and completes the MCP handshake within the handshake timeout. On any
    /// failure the process group is dropped, which stops it.
    async fn start(&self) -> Result<Connection, String> {
        let mut command = tokio::process::Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .envs(&self.env)
            .current_dir(&self.cwd);
        let spawned = LongLivedGroup::spawn(command, STOP_GRACE)
            .map_err(|e| format!("cannot start the MCP server `{}`: {e}", self.describe()))?;
        tracing::debug!(server = %self.describe(), pid = spawned.group.pid(), "MCP server started");
        tokio::spawn(log_stderr(spawned.stderr, self.describe()));
        let routes = Arc::new(ProgressRoutes::default());
        let transport = ProgressTap {
            inner: AsyncRwTransport::new(spawned.stdout, spawned.stdin),
            routes: Arc::clone(&routes),
        };
        let client = McpClient {
            routes: Arc::clone(&routes),
            server: self.describe(),
        };
        let service = tokio::time::timeout(self.handshake_timeout, client.serve(transport))
            .await
            .map_err(|_| {
                format!(
                    "the MCP server `{}` did not complete the MCP handshake within {} s (no \
                     answer to `initialize`; handshake_timeout_secs); it was stopped",
                    self.describe(),
                    self.handshake_timeout.as_secs()
                )
            })?
            .map_err(|e| {
                format!(
                    "the MCP server `{}` did not complete the MCP handshake: {e}",
                    self.describe()
                )
            })?;
        Ok(Connection {
            service,
            routes,
            _process: spawned.group,
        })
    }
}

/// Logs the server's stderr line by line until it closes. Never stops reading before that (a
/// server whose stderr pipe is full blocks): bytes that are not UTF-8 are replaced, and a line
/// longer than [`MAX_STDERR_LINE_BYTES`] is logged as such, without its bytes.
async fn log_stderr(stderr: impl AsyncRead + Unpin, server: String) {
    let mut lines = LineReader::new(stderr, MAX_STDERR_LINE_BYTES);
    loop {
        match lines.next_line().await {
            Ok(Some(Line::Complete(bytes))) => {
                let text = String::from_utf8_lossy(bytes);
                tracing::info!(mcp_server = %server, "{}", text.trim_end());
            }
            Ok(Some(Line::TooLong)) => {
                tracing::info!(
                    mcp_server = %server,
                    "(a stderr line longer than {MAX_STDERR_LINE_BYTES} bytes, not logged)"
                );
            }
            Ok(None) => return,
            Err(error) => {
                // A pipe read fails only when the pipe is unusable; there is nothing left to read.
                tracing::warn!(mcp_server = %server, %error, "cannot read the MCP server's stderr");
                return;
            }
        }
    }
}

/// The stdio transport with progress notifications taken off it as they are read, and the
/// progress token of each `tools/call` noted as it is sent.
///
/// rmcp reads the transport in one loop, in order, and hands a response to its caller from that
/// loop; notifications go to the handler on spawned tasks. Delivering progress here, in the loop,
/// keeps the server's order and delivers everything sent before a response before that response.
struct ProgressTap {
    inner: AsyncRwTransport<RoleClient, ChildStdout, ChildStdin>,
    routes: Arc<ProgressRoutes>,
}

impl Transport<RoleClient> for ProgressTap {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let JsonRpcMessage::Request(request) = &item
            && matches!(request.request, ClientRequest::CallToolRequest(_))
            && let Some(token) = request.request.get_meta().get_progress_token()
        {
            // Noted before the request is written, so no progress for it can come first.
            self.routes.expect(token);
        }
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        // Cancel-safe (rmcp polls it in a `select!`): the inner read is, and a notification is
        // delivered in the same poll that read it.
        loop {
            match self.inner.receive().await? {
                JsonRpcMessage::Notification(JsonRpcNotification {
                    notification: ServerNotification::ProgressNotification(progress),
                    ..
                }) => self.routes.deliver(progress.params),
                other => return Some(other),
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Where one connection's progress notifications go, by progress token.
#[derive(Default)]
struct ProgressRoutes {
    routes: Mutex<HashMap<ProgressToken, Route>>,
}

enum Route {
    /// The call's request was sent but the call has not registered yet (it is sent by rmcp's loop
    /// while the call goes on): its notifications wait here, the latest [`EARLY_LIMIT`] of them.
    Early(VecDeque<ProgressNotificationParam>),
    /// The call's progress handle, and the last `progress` value delivered to it.
    Live {
        progress: Progress,
        last: Option<f64>,
    },
}

/// How many notifications are kept for a call not registered yet.
const EARLY_LIMIT: usize = 64;
/// How many calls may have been sent and not registered (a call dropped in between never does).
const UNREGISTERED_LIMIT: usize = 1024;

/// The calls in progress on a connection, as an elicitation sees them.
enum OnlyCall {
    /// None.
    None,
    /// One, sent but not registered yet.
    Unregistered,
    /// One, with its progress.
    Live(Progress),
    /// This many.
    Several(usize),
}

impl ProgressRoutes {
    /// The one call in progress, if there is only one.
    fn only_call(&self) -> OnlyCall {
        let routes = self.lock();
        let mut calls = routes.values();
        match (calls.next(), routes.len()) {
            (None, _) => OnlyCall::None,
            (Some(Route::Live { progress, .. }), 1) => OnlyCall::Live(progress.clone()),
            (Some(Route::Early(_)), 1) => OnlyCall::Unregistered,
            (Some(_), count) => OnlyCall::Several(count),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, Route>> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A `tools/call` with `token` is being sent.
    fn expect(&self, token: ProgressToken) {
        let mut routes = self.lock();
        if routes.contains_key(&token) {
            return;
        }
        let unregistered = routes
            .values()
            .filter(|route| matches!(route, Route::Early(_)))
            .count();
        if unregistered >= UNREGISTERED_LIMIT {
            routes.retain(|_, route| matches!(route, Route::Live { .. }));
        }
        routes.insert(token, Route::Early(VecDeque::new()));
    }

    fn deliver(&self, notification: ProgressNotificationParam) {
        let mut routes = self.lock();
        match routes.get_mut(&notification.progress_token) {
            Some(Route::Live { progress, last }) => {
                if last.is_some_and(|last| notification.progress < last) {
                    return; // progress only goes forward (MCP requires it to increase)
                }
                *last = Some(notification.progress);
                progress.update(to_update(&notification));
            }
            Some(Route::Early(early)) => {
                if early.len() == EARLY_LIMIT {
                    early.pop_front();
                }
                early.push_back(notification);
            }
            None => {
                tracing::debug!(
                    token = ?notification.progress_token,
                    "dropping MCP progress for no call in progress"
                );
            }
        }
    }

    /// Routes `token`'s progress to `progress` until the guard is dropped, first delivering what
    /// arrived before.
    fn register(self: &Arc<Self>, token: ProgressToken, progress: Progress) -> RouteGuard {
        let mut routes = self.lock();
        let mut last: Option<f64> = None;
        if let Some(Route::Early(early)) = routes.remove(&token) {
            for notification in early {
                if last.is_some_and(|last| notification.progress < last) {
                    continue;
                }
                last = Some(notification.progress);
                progress.update(to_update(&notification));
            }
        }
        routes.insert(token.clone(), Route::Live { progress, last });
        RouteGuard {
            routes: Arc::clone(self),
            token,
        }
    }
}

/// Removes a call's route when the call ends: every notification sent before the response was
/// delivered already ([`ProgressTap`]); later ones are dropped.
struct RouteGuard {
    routes: Arc<ProgressRoutes>,
    token: ProgressToken,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}

fn to_update(notification: &ProgressNotificationParam) -> ProgressUpdate {
    ProgressUpdate {
        fraction: notification
            .total
            .filter(|total| *total > 0.0)
            .map(|total| notification.progress / total),
        status: notification.message.clone(),
        data: Default::default(),
    }
}

/// The client side of the MCP session. Progress never reaches it ([`ProgressTap`] takes it off
/// the transport first). It declares form elicitation, and asks a server's `elicitation/create`
/// of whoever answers the run of the call in progress, as an input request of that call.
#[derive(Clone)]
struct McpClient {
    routes: Arc<ProgressRoutes>,
    server: String,
}

/// How long an elicitation waits for the call that caused it to be registered: it is sent
/// before it is registered, so a fast server can ask in between.
const CALL_REGISTRATION_WAIT: Duration = Duration::from_secs(1);

impl McpClient {
    /// The progress of the one call in progress on this connection. MCP over stdio does not say
    /// which request an elicitation belongs to, so with several calls in progress it cannot be
    /// tied to one: `Err` says so.
    async fn asking_call(&self) -> Result<Progress, String> {
        let waited = tokio::time::Instant::now();
        loop {
            match self.routes.only_call() {
                OnlyCall::Live(progress) => return Ok(progress),
                OnlyCall::Unregistered if waited.elapsed() < CALL_REGISTRATION_WAIT => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                OnlyCall::Unregistered | OnlyCall::None => {
                    return Err("no call of this server is in progress".into());
                }
                OnlyCall::Several(count) => {
                    return Err(format!(
                        "{count} calls of this server are in progress and MCP over stdio does \
                         not say which one asks"
                    ));
                }
            }
        }
    }
}

impl ClientHandler for McpClient {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        // The answers are checked against the schema before they are sent back.
        let form = FormElicitationCapability::new().with_schema_validation(true);
        info.capabilities.elicitation = Some(ElicitationCapability::new().with_form(form));
        info
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            tracing::warn!(server = %self.server, "declined an MCP URL elicitation (only forms are asked)");
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let progress = match self.asking_call().await {
            Ok(progress) => progress,
            Err(why) => {
                tracing::warn!(server = %self.server, "declined an MCP elicitation: {why}");
                return Ok(ElicitResult::new(ElicitationAction::Decline));
            }
        };
        let schema = serde_json::to_value(&requested_schema).ok();
        let answer = progress.ask(message, schema).await;
        Ok(match answer {
            Answer::Answered(value) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(value)
            }
            Answer::Declined => ElicitResult::new(ElicitationAction::Decline),
            // Nobody answered: the request lapsed, the run is ending, or it could not be asked.
            Answer::Expired | Answer::Cancelled | Answer::Refused(_) => {
                ElicitResult::new(ElicitationAction::Cancel)
            }
        })
    }
}

/// Sends MCP cancellation for a call whose run ended before the call did.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    request: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        // Outside a runtime (it is shutting down) the server is about to be killed anyway.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some(request) = self.request.take() {
            let peer = self.peer.clone();
            runtime.spawn(async move {
                let cancelled = CancelledNotificationParam::new(
                    Some(request),
                    Some("the toolstream run was cancelled".into()),
                );
                if let Err(e) = peer.notify_cancelled(cancelled).await {
                    tracing::debug!("could not send MCP cancellation: {e}");
                }
            });
        }
    }
}

/// One tool of an MCP server.
struct McpTool {
    spec: ToolSpec,
    remote_name: String,
    server: Arc<McpServer>,
}

impl McpTool {
    async fn call(&self, arguments: Value, progress: Progress) -> Result<Value, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError::InvalidArguments(
                "arguments must be a JSON object".into(),
            ));
        };
        let connection = self
            .server
            .connection()
            .await
            .map_err(ToolError::Unavailable)?;
        let peer = connection.service.peer().clone();
        let mut params = CallToolRequestParams::new(self.remote_name.clone());
        params.arguments = Some(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let handle = match peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
        {
            Ok(handle) => handle,
            Err(e) => return Err(self.crashed(e, &connection).await),
        };
        let _route = connection
            .routes
            .register(handle.progress_token.clone(), progress);
        let mut cancel = CancelOnDrop {
            peer,
            request: Some(handle.id.clone()),
        };
        let response = handle.await_response().await;
        cancel.request = None;
        let response = match response {
            Ok(response) => response,
            Err(e) => return Err(self.crashed(e, &connection).await),
        };
        match response {
            ServerResult::CallToolResult(result) => {
                let text: Vec<&str> = result
                    .content
                    .iter()
                    .filter_map(|block| block.as_text().map(|t| t.text.as_str()))
                    .collect();
                let text = text.join("\n");
                if result.is_error == Some(true) {
                    return Err(ToolError::Failed(if text.is_empty() {
                        "the MCP tool reported an error without a message".into()
                    } else {
                        text
                    }));
                }
                Ok(match result.structured_content {
                    Some(value) => value,
                    None => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                })
            }
            other => Err(ToolError::Internal(format!(
                "the MCP server answered tools/call with something other than a result: {other:?}"
            ))),
        }
    }

    /// The call's error. An MCP error answer is the tool's failure; a broken transport means the
    /// server died, so the connection is dropped and the next call starts the server again.
    async fn crashed(&self, error: rmcp::ServiceError, connection: &Arc<Connection>) -> ToolError {
        match error {
            rmcp::ServiceError::McpError(e) => ToolError::Failed(format!(
                "MCP server `{}`: {}",
                self.server.describe(),
                e.message
            )),
            e @ (rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)) => {
                self.server.forget(connection).await;
                ToolError::Internal(format!(
                    "MCP server `{}` failed during the call ({e}); it is started again on the next call",
                    self.server.describe()
                ))
            }
            other => ToolError::Internal(format!(
                "MCP server `{}` broke the protocol during the call: {other}",
                self.server.describe()
            )),
        }
    }
}

impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn run(&self, arguments: Value, progress: Progress) -> BoxFuture<'_, Result<Value, ToolError>> {
        self.call(arguments, progress).boxed()
    }
}
