//! Shared by the integration tests: start the real server on an ephemeral port and connect real
//! clients to it.

pub mod alone;
pub mod binary;
pub mod certs;
pub mod model;
pub mod principal_limit;
pub mod redis_cluster;
pub mod redis_server;
pub mod runs;
pub mod web;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use toolstream::config::{Limits, StoreConfig};
use toolstream::engine::{Engine, Store};
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::registry::ToolRegistry;
use toolstream::server::{ServeError, Server};
use toolstream::tools::Tool;
use toolstream::tools::builtin::{builtin_tools, confine_to};

/// A server running in this test process on 127.0.0.1 and a port the OS chose.
pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// A registry with the built-in tools (file tools confined to `root`) plus `extra`.
pub fn registry_with(root: &Path, extra: Vec<Arc<dyn Tool>>) -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    for tool in builtin_tools(confine_to(root).expect("root")) {
        registry.register(tool).expect("builtin");
    }
    for tool in extra {
        registry.register(tool).expect("extra tool");
    }
    registry
}

impl TestServer {
    /// Starts a server with the built-in tools confined to the working directory.
    pub async fn start() -> TestServer {
        let root = std::env::current_dir().expect("cwd");
        Self::start_with(registry_with(&root, Vec::new()), Limits::default()).await
    }

    /// Starts a server over `registry` with `limits`.
    pub async fn start_with(registry: ToolRegistry, limits: Limits) -> TestServer {
        Self::serve(Server::new(registry, limits)).await
    }

    /// Starts a server over `registry` with `limits`, keeping its runs in the store `store`
    /// describes.
    pub async fn start_with_store(
        registry: ToolRegistry,
        limits: Limits,
        store: &StoreConfig,
    ) -> TestServer {
        let store = Store::open(store, &limits)
            .await
            .expect("open the run store");
        Self::serve(Server::new(registry, limits).with_store(store)).await
    }

    /// Starts a server built by the caller (with an agent, say).
    pub async fn serve(server: Server) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let engine = Arc::clone(server.engine());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            // Only an explicit begin_shutdown drains: a dropped sender (the test is over) must
            // not start a drain, whose end stops every tool process of this test binary.
            if signal.await.is_err() {
                std::future::pending::<()>().await;
            }
        }));
        TestServer {
            addr,
            engine,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new connection to the server.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("url")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect")
    }

    /// A tool service client on a new connection.
    pub async fn client(&self) -> ToolServiceClient<Channel> {
        ToolServiceClient::new(self.channel().await)
    }

    /// Whether the engine still takes new runs.
    pub fn engine_accepting(&self) -> bool {
        self.engine.is_accepting()
    }

    /// Sends the shutdown signal and returns the serve task, to await its end. The drain stops
    /// every tool process of this process: a test calling this runs in a process of its own
    /// ([`alone::in_own_process`]).
    pub fn begin_shutdown(&mut self) -> JoinHandle<Result<(), ServeError>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.take().expect("server already shut down")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Aborted, not drained (see `serve`).
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Polls `probe` every 10 ms until it says the wait is over, and returns what it waited for;
/// fails the test after `limit`. For waiting on effects that happen in the background (a cancelled
/// tool noticing, a run reaching a state), never for timing.
///
/// The probe answers with a [`Probe`]: `true`/`false`; `Some(value)` or `None`; or `Ok(value)` or
/// `Err(what it saw instead)`, which the failure message shows (the last one seen). Plain closures
/// returning a future work too (`|| async { ... }`).
pub async fn eventually<P: Probe>(
    limit: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> P,
) -> P::Value {
    let start = tokio::time::Instant::now();
    loop {
        let seen = match probe().await.outcome() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if start.elapsed() > limit {
            match seen {
                Some(seen) => panic!("timed out waiting for: {what} (last seen: {seen})"),
                None => panic!("timed out waiting for: {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a probe of [`eventually`] answers: the value waited for, or not yet (with what it saw
/// instead, when it says).
pub trait Probe {
    /// What [`eventually`] returns once the wait is over.
    type Value;
    /// The value, or what was seen instead (`None` when the probe does not say).
    fn outcome(self) -> Result<Self::Value, Option<String>>;
}

impl Probe for bool {
    type Value = ();
    fn outcome(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Probe for Result<T, E> {
    type Value = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Whether run `run_id` of `engine` is known and in `state`.
pub async fn run_is(
    engine: &toolstream::engine::Engine,
    run_id: &str,
    state: toolstream::engine::RunState,
) -> bool {
    engine
        .get_run(run_id)
        .await
        .is_ok_and(|run| run.state == state)
}

/// Runs `python3 tests/python/<script> <args>` and returns its output, failing the test with the
/// script's output when it exits non-zero.
pub fn run_python(script: &str, args: &[&str]) -> String {
    run_python_with_env(script, args, &[])
}

/// [`run_python`] with extra environment variables for the script.
pub fn run_python_with_env(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let output = std::process::Command::new("python3")
        .arg(format!("{manifest}/tests/python/{script}"))
        .args(args)
        .env("TOOLSTREAM_PROTO_DIR", format!("{manifest}/proto"))
        .envs(env.iter().copied())
        .output()
        .expect("python3 must be installed (scripts/test installs its packages)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Reads a whole stream: the events, and the closing status when it ended with an error.
pub async fn collect(
    mut stream: tonic::Streaming<toolstream::pb::RunEvent>,
) -> (Vec<toolstream::pb::RunEvent>, Option<tonic::Status>) {
    let mut events = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return (events, None),
            Err(status) => return (events, Some(status)),
        }
    }
}

/// A `RunToolRequest` for `tool` with JSON `arguments`.
pub fn run_request(tool: &str, arguments: serde_json::Value) -> toolstream::pb::RunToolRequest {
    let serde_json::Value::Object(object) = arguments else {
        panic!("arguments must be an object");
    };
    toolstream::pb::RunToolRequest {
        tool: tool.to_owned(),
        arguments: Some(toolstream::json_proto::json_to_struct(object)),
        options: None,
    }
}

/// The JSON value of a `result` event, or `None` for another kind of event.
pub fn result_value(event: &toolstream::pb::RunEvent) -> Option<serde_json::Value> {
    match &event.event {
        Some(toolstream::pb::run_event::Event::Result(result)) => {
            Some(result.value.clone().map_or(
                serde_json::Value::Null,
                toolstream::json_proto::value_to_json,
            ))
        }
        _ => None,
    }
}

/// Sets a flag when dropped: put one inside a tool's future to see that a run stopped it.
pub struct DropFlag(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `tool` to its end: the events, and the closing status when the run failed (whether it
/// failed before the stream started or during it).
pub async fn run_tool(
    server: &TestServer,
    tool: &str,
    arguments: serde_json::Value,
) -> (Vec<toolstream::pb::RunEvent>, Option<tonic::Status>) {
    match server
        .client()
        .await
        .run_tool(run_request(tool, arguments))
        .await
    {
        Ok(response) => collect(response.into_inner()).await,
        Err(status) => (Vec::new(), Some(status)),
    }
}

/// The tools the server lists.
pub async fn list_tools(server: &TestServer) -> Vec<toolstream::pb::Tool> {
    server
        .client()
        .await
        .list_tools(toolstream::pb::ListToolsRequest {})
        .await
        .expect("ListTools")
        .into_inner()
        .tools
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// A tool named `endless` that reports a status every 5 ms forever and sets `stopped` when its
/// run drops it: the way tests see that a run really stopped its tool.
pub fn endless_tool(stopped: Arc<std::sync::atomic::AtomicBool>) -> Arc<dyn Tool> {
    use toolstream::tools::native::tool_fn;
    use toolstream::tools::{Progress, ToolError};
    Arc::new(tool_fn(
        "endless",
        "Never ends.",
        move |_: NoArgs, progress: Progress| {
            let guard = DropFlag(Arc::clone(&stopped));
            async move {
                let _guard = guard;
                let mut i = 0u64;
                loop {
                    i += 1;
                    progress.status(format!("still going ({i})"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                #[allow(unreachable_code)]
                Ok::<(), ToolError>(())
            }
        },
    ))
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NestedArgs {
    items: u32,
    /// Each step a sub-task of its item (reporting 0.5, then done), for a tree three deep.
    #[serde(default)]
    deep: bool,
}

/// A tool named `nested`: the seed's "Nested Progress" example written with sub-tasks (one per
/// item, weight 1/items, three steps each), with no arithmetic. With `deep`, each step is a
/// sub-task of its item.
pub fn nested_tool() -> Arc<dyn Tool> {
    use toolstream::tools::native::tool_fn;
    use toolstream::tools::{Progress, ToolError};
    Arc::new(tool_fn(
        "nested",
        "The seed's nested progress example.",
        |args: NestedArgs, progress: Progress| async move {
            let items = args.items.max(1);
            for i in 0..items {
                let sub = progress.child(format!("item {}", i + 1), 1.0 / f64::from(items));
                for j in 0..3 {
                    let status = format!("Item {}, step {}", i + 1, j + 1);
                    if args.deep {
                        let step = sub.child(format!("step {}", j + 1), 1.0 / 3.0);
                        step.report(0.5, status);
                        step.finish();
                    } else {
                        sub.report(f64::from(j + 1) / 3.0, status);
                    }
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, ToolError>("All done")
        },
    ))
}

/// The seed's overall numbers for `items` items of three steps: `i/n + (j+1)/3/n`.
pub fn seed_fractions(items: u32) -> Vec<f64> {
    let n = f64::from(items);
    (0..items)
        .flat_map(|i| (0..3).map(move |j| f64::from(i) / n + f64::from(j + 1) / 3.0 / n))
        .collect()
}

/// One progress event as `(call_id, parent_call_id, tool, progress, status)`.
pub type Node = (String, String, String, Option<f64>, Option<String>);

/// The progress events of a run, as [`Node`]s, in order.
pub fn progress_nodes(events: &[toolstream::pb::RunEvent]) -> Vec<Node> {
    events
        .iter()
        .filter_map(|event| match &event.event {
            Some(toolstream::pb::run_event::Event::Progress(p)) => Some((
                p.call_id.clone(),
                p.parent_call_id.clone(),
                p.tool.clone(),
                p.progress,
                p.status.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// The fractions reported for node `call_id`, in order, each change once (a change smaller than
/// rounding is none: the later value stands).
pub fn fractions_of(nodes: &[Node], call_id: &str) -> Vec<f64> {
    let mut fractions: Vec<f64> = Vec::new();
    for fraction in nodes
        .iter()
        .filter(|node| node.0 == call_id)
        .filter_map(|node| node.3)
    {
        match fractions.last_mut() {
            Some(last) if (*last - fraction).abs() < 1e-9 => *last = fraction,
            _ => fractions.push(fraction),
        }
    }
    fractions
}

/// Whether two lists of fractions are equal but for rounding.
pub fn same_fractions(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

/// Which run store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One server, runs in its memory.
    Memory,
    /// Two replicas sharing a real redis-server: runs execute on the first, RunService calls go
    /// to the second.
    Redis,
    /// As `Redis`, with a Redis Cluster of three primaries instead of one server.
    RedisCluster,
}

/// The servers of a test: `runner` executes runs (ToolService); RunService calls go to
/// [`Fleet::observer`] (the runner itself with the memory store, another replica with Redis).
pub struct Fleet {
    pub runner: TestServer,
    pub other: Option<TestServer>,
    pub _redis: Option<SharedRedis>,
}

/// The Redis a fleet of test replicas shares: one server, or a cluster.
pub enum SharedRedis {
    Server(redis_server::RedisServer),
    Cluster(redis_cluster::RedisCluster),
}

impl SharedRedis {
    /// The Redis of `backend` (`None` for the memory store).
    pub fn start(backend: Backend) -> Option<SharedRedis> {
        match backend {
            Backend::Memory => None,
            Backend::Redis => Some(SharedRedis::Server(redis_server::RedisServer::start())),
            Backend::RedisCluster => Some(SharedRedis::Cluster(
                redis_cluster::RedisCluster::start(3, 0),
            )),
        }
    }

    /// The run store of a test replica on it (replica ids start with `name`).
    pub fn store(&self, name: &str) -> StoreConfig {
        match self {
            SharedRedis::Server(redis) => redis_store(redis, name),
            SharedRedis::Cluster(cluster) => StoreConfig {
                key_prefix: "test:".into(),
                replica_name: Some(name.into()),
                ..StoreConfig::redis(cluster.url())
            },
        }
    }
}

/// The run store of a test replica on `redis` (replica ids start with `name`).
pub fn redis_store(redis: &redis_server::RedisServer, name: &str) -> StoreConfig {
    StoreConfig {
        key_prefix: "test:".into(),
        replica_name: Some(name.into()),
        ..StoreConfig::redis(redis.url())
    }
}

impl Fleet {
    /// Starts the servers for `backend`, each over a registry from `registry`.
    pub async fn start(
        backend: Backend,
        registry: impl Fn() -> ToolRegistry,
        limits: Limits,
    ) -> Fleet {
        match backend {
            Backend::Memory => Fleet {
                runner: TestServer::start_with(registry(), limits).await,
                other: None,
                _redis: None,
            },
            Backend::Redis | Backend::RedisCluster => {
                let redis = SharedRedis::start(backend).expect("a shared Redis");
                let runner =
                    TestServer::start_with_store(registry(), limits, &redis.store("a")).await;
                let other =
                    TestServer::start_with_store(registry(), limits, &redis.store("b")).await;
                Fleet {
                    runner,
                    other: Some(other),
                    _redis: Some(redis),
                }
            }
        }
    }

    /// Where RunService calls go.
    pub fn observer(&self) -> &TestServer {
        self.other.as_ref().unwrap_or(&self.runner)
    }
}

impl std::ops::Deref for Fleet {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.runner
    }
}

/// The run id a RunTool/RunAgent response carries in its `x-run-id` metadata.
pub fn x_run_id(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("x-run-id")
        .expect("x-run-id metadata")
        .to_str()
        .expect("an ASCII run id")
        .to_owned()
}

/// `message` with `authorization: Bearer <token>` (none for `None`).
pub fn with_token<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// The codes GetRun, WatchRun and CancelRun of `run_id` answer `token` with on `channel` (`Ok`
/// for a call that was served). A principal that does not own the run gets NOT_FOUND on all.
pub async fn run_service_codes(channel: &Channel, token: &str, run_id: &str) -> [tonic::Code; 3] {
    use toolstream::pb::{CancelRunRequest, GetRunRequest, WatchRunRequest};
    let mut runs = toolstream::pb::run_service_client::RunServiceClient::new(channel.clone());
    let code =
        |result: Result<(), tonic::Status>| result.map_or_else(|s| s.code(), |()| tonic::Code::Ok);
    let run_id = run_id.to_owned();
    let get = runs
        .get_run(with_token(
            Some(token),
            GetRunRequest {
                run_id: run_id.clone(),
            },
        ))
        .await
        .map(drop);
    let watch = runs
        .watch_run(with_token(
            Some(token),
            WatchRunRequest {
                run_id: run_id.clone(),
                ..WatchRunRequest::default()
            },
        ))
        .await
        .map(drop);
    let cancel = runs
        .cancel_run(with_token(Some(token), CancelRunRequest { run_id }))
        .await
        .map(drop);
    [code(get), code(watch), code(cancel)]
}
