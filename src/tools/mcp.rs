//! MCP tools: every tool of an MCP server started over stdio, through the `rmcp` crate.
//!
//! ```toml
//! [[tools]]
//! kind = "mcp"
//! command = ["python3", "my_mcp_server.py"]
//! prefix = "files."             # optional: tool names become files.<name>
//! env = { KEY = "value" }       # optional
//! cwd = "servers"               # optional, relative to the config file
//! ```
//!
//! The server is started when toolstream starts (a server that fails to start, or to list its
//! tools, stops `serve` with a message naming the entry) and shared by all runs of its tools.
//! Each call carries a progress token; the server's progress notifications become progress events
//! (fraction = progress / total when the total is known; status = the message). A result with
//! `isError` is a tool error (ABORTED) with the result's text. The result value is the
//! `structuredContent` when there is one, otherwise the text content, parsed as JSON when it is
//! JSON. A run that ends before the call does (client gone, deadline) sends MCP cancellation. A
//! server that crashed is started again on the next call.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest,
    ProgressNotificationParam, ProgressToken, RequestId, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::{Progress, ProgressUpdate, Tool, ToolError, ToolKind, ToolSpec};

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
    let cwd = match &entry.cwd {
        Some(cwd) if cwd.is_absolute() => cwd.clone(),
        Some(cwd) => base_dir.join(cwd),
        None => base_dir.to_path_buf(),
    };
    let server = Arc::new(McpServer {
        command: entry.command,
        env: entry.env,
        cwd,
        routes: Arc::new(ProgressRoutes::default()),
        connection: tokio::sync::Mutex::new(None),
    });
    let connection = server.connection().await?;
    let tools = connection
        .service
        .peer()
        .list_all_tools()
        .await
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
    routes: Arc<ProgressRoutes>,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

struct Connection {
    service: RunningService<RoleClient, McpClient>,
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

    async fn start(&self) -> Result<Connection, String> {
        let mut command = tokio::process::Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .envs(&self.env)
            .current_dir(&self.cwd);
        let (transport, stderr) = TokioChildProcess::builder(command)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the MCP server `{}`: {e}", self.describe()))?;
        if let Some(stderr) = stderr {
            let server = self.describe();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(mcp_server = %server, "{line}");
                }
            });
        }
        let client = McpClient {
            routes: Arc::clone(&self.routes),
        };
        let service = client.serve(transport).await.map_err(|e| {
            format!(
                "the MCP server `{}` did not complete the MCP handshake: {e}",
                self.describe()
            )
        })?;
        Ok(Connection { service })
    }
}

/// Where progress notifications go, by progress token.
#[derive(Default)]
struct ProgressRoutes {
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    live: HashMap<ProgressToken, Progress>,
    /// Notifications that arrived before their call registered its token (the request is on the
    /// wire before its handle is returned). Bounded: stale ones are dropped.
    early: HashMap<ProgressToken, ProgressNotificationParam>,
}

/// How many early notifications are kept for calls not yet registered.
const EARLY_LIMIT: usize = 256;

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deliver(&self, notification: ProgressNotificationParam) {
        let mut routes = self.lock();
        match routes.live.get(&notification.progress_token) {
            Some(progress) => progress.update(to_update(&notification)),
            None => {
                if routes.early.len() >= EARLY_LIMIT {
                    routes.early.clear();
                }
                routes
                    .early
                    .insert(notification.progress_token.clone(), notification);
            }
        }
    }

    fn register(self: &Arc<Self>, token: ProgressToken, progress: Progress) -> RouteGuard {
        let mut routes = self.lock();
        if let Some(early) = routes.early.remove(&token) {
            progress.update(to_update(&early));
        }
        routes.live.insert(token.clone(), progress);
        RouteGuard {
            routes: Arc::clone(self),
            token,
        }
    }
}

struct RouteGuard {
    routes: Arc<ProgressRoutes>,
    token: ProgressToken,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.routes.lock();
        routes.live.remove(&self.token);
        routes.early.remove(&self.token);
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

/// The client side of the MCP session: it only listens for progress.
#[derive(Clone)]
struct McpClient {
    routes: Arc<ProgressRoutes>,
}

impl ClientHandler for McpClient {
    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.routes.deliver(params);
        std::future::ready(())
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
        let _route = self
            .server
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
