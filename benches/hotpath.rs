//! The hot path measured: toolstream's RunTool against a bare tonic server stream, in one run on
//! the same machine.
//!
//! `cargo bench --bench hotpath` (add `-- --quick` for a run under two minutes). Both servers run
//! in child processes (this binary started again in a serve mode) so that their memory is their
//! own; the clients run here. The bare server implements the same generated service and sends the
//! same `RunEvent` messages from a task through a channel, the idiomatic tonic stream, with the
//! same HTTP/2 settings: the ratio is the engine's cost, not the message's.
//!
//! Against the same transport at its simplest, it also measures a bare stream of 64-byte
//! messages (the physical limit of this stack on this machine); fan-out (one detached run watched
//! by 1,000 WatchRun streams, against a bare broadcast producer); a fleet (10,000 runs each
//! reporting ten times a second, over 100 connections, against the bare producer: latency and
//! server CPU per event); and memory per open stream and per watcher.
//!
//! Partial results (issue 26): delivered partial results/s on 1 and 64 streams against the bare
//! service sending the same messages, and the server's CPU per one, with a line of their own,
//! `bench-partials: ratio_partials_1=R1 ratio_partials_64=R64 cpu_ratio_partial_1=C1
//! cpu_ratio_partial_64=C64`; `-- --partials [ROUNDS]` runs only that measure. Through Redis: a
//! watcher on replica B of a run on replica A against `redis-benchmark`'s pipelined XADD rate,
//! and A → B latency (`-- --redis`). The MCP face: `tools/call` with progress over `/mcp` against
//! the same RunTool over gRPC (`-- --mcp`). `-- --fanout [ROUNDS]` runs only the fan-out.
//!
//! The client (this process) and the servers are pinned to separate cores where the machine has
//! two or more (`--no-pin` leaves them unpinned); the output says which. A server's CPU time is
//! its process's CPU-time clock (all its threads, user and system, to the nanosecond).
//!
//! The last line is machine-readable; the headline keys come first, the cost of an event (server
//! CPU per delivered event, toolstream over bare tonic in the same run):
//! `bench: cpu_ratio_1=C1 cpu_ratio_64=C64 cpu_ratio_fanout=CF cpu_ratio_partial_1=CP1
//! cpu_ratio_partial_64=CP64 fleet_cpu_ratio=C fleet_p99_ratio=P cpu_per_event_ns_1=N1 cpu_per_event_ns_64=N64 bare_cpu_per_event_ns_1=B1
//! bare_cpu_per_event_ns_64=B64 cost_within_baseline=0|1 pinned=0|1 load_start=L load_end=L
//! ratio_1=R1 ratio_64=R64 p99_overhead_us=U rss_per_stream_kb=K slow_reader_tool_slowdown=S
//! fanout_events_per_s=F fanout_rss_growth_kb=G ratio_min_1=M1 ratio_min_64=M64 ratio_fanout=RF
//! fleet_p50_ms=L50 fleet_p99_ms=L99 rss_per_watcher_kb=W subtasks_... ratio_partials_...
//! mcp_... redis_...` (docs/benchmark.md lists them all).

/// The allocator the `toolstream` binary ships with (src/main.rs), so that the servers this bench
/// starts (this binary again) run with it, bare and toolstream alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use toolstream::config::{HttpConfig, Limits, McpConfig};
use toolstream::engine::{Store, StoreConfig};
use toolstream::json_proto::{json_to_struct, struct_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::run_service_server::{RunService, RunServiceServer};
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::pb::tool_service_server::{ToolService, ToolServiceServer};
use toolstream::pb::{self, RunEvent};
use toolstream::registry::ToolRegistry;
use toolstream::server::Server;
use toolstream::tools::builtin::{builtin_tools, confine_to};
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, ToolError};

// ---------------------------------------------------------------------------------------------
// The servers under test (child processes).

/// The bare services, the idiomatic tonic way and nothing more (no engine, no registry, no
/// validation):
/// - `RunTool` streams `count` progress events, `interval_us` apart (0: as fast as the channel
///   takes them), then a result, from a task through a channel of 64. With `minimal`, each event
///   is a bare 64-byte message (a fixed string and the sequence) instead of our progress shape.
/// - `RunTool` of the tool `fanout` starts one producer of `count` progress events `interval_us`
///   apart into a broadcast channel, once `watchers` receivers subscribed; `WatchRun` subscribes
///   to it (any run id), each watcher encoding its own copy of each event.
#[derive(Clone, Default)]
struct BareService {
    fan: Arc<std::sync::Mutex<Option<tokio::sync::broadcast::Sender<RunEvent>>>>,
}

/// The run id of the minimal messages: with the sequence (up to 3 bytes of varint for the quick
/// runs' counts) and two field tags and a length, a message of 64 bytes.
const MINIMAL_PAYLOAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

/// The bare server's run id: as long as toolstream's (a UUID's 32 hex digits), so that both send
/// messages of the same size.
const BARE_RUN_ID: &str = "ba4eba4eba4eba4eba4eba4eba4eba4e";

/// A progress event shaped like toolstream's: run id, sequence, timestamp, fraction, status, and
/// an estimate of the time left (toolstream's server adds one to progress that has a fraction).
fn bare_progress(run_id: &str, i: u64, count: u64) -> RunEvent {
    RunEvent {
        run_id: run_id.to_owned(),
        sequence: i,
        timestamp: Some(now()),
        event: Some(Event::Progress(pb::Progress {
            progress: Some(i as f64 / count as f64),
            status: Some(format!("tick {i}/{count}")),
            eta_seconds: Some((count - i) as f64 * 1e-6),
            ..pb::Progress::default()
        })),
    }
}

/// A partial result shaped like toolstream's `partials` tool's: the next item of the output
/// "items", a small object.
fn bare_partial(run_id: &str, i: u64) -> RunEvent {
    RunEvent {
        run_id: run_id.to_owned(),
        sequence: i,
        timestamp: Some(now()),
        event: Some(Event::PartialResult(pb::PartialResult {
            key: "items".into(),
            value: Some(toolstream::json_proto::json_to_value(json!({"item": i}))),
            append: true,
            ..pb::PartialResult::default()
        })),
    }
}

fn bare_result(run_id: &str, count: u64) -> RunEvent {
    RunEvent {
        run_id: run_id.to_owned(),
        sequence: count + 1,
        timestamp: Some(now()),
        event: Some(Event::Result(pb::Result {
            value: Some(toolstream::json_proto::json_to_value(
                json!({"count": count}),
            )),
        })),
    }
}

/// How far a watcher may fall behind before it skips ahead: toolstream's `event_buffer` (its
/// default, or `TOOLSTREAM_BENCH_EVENT_BUFFER`), and the bare fan-out's broadcast capacity, so
/// both servers hold the same number of events per run.
fn fan_out_buffer() -> usize {
    std::env::var("TOOLSTREAM_BENCH_EVENT_BUFFER")
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(Limits::default().event_buffer)
}

impl BareService {
    /// Starts the broadcast producer of the fan-out measure.
    fn start_fan_out(&self, watchers: usize, count: u64, interval: Duration) {
        // The same bound as toolstream's readers (`event_buffer`): a watcher further behind
        // skips ahead in both, so the two hold and deliver alike.
        let (sender, _) = tokio::sync::broadcast::channel(fan_out_buffer());
        *self.fan.lock().expect("fan lock") = Some(sender.clone());
        let fan = Arc::clone(&self.fan);
        tokio::spawn(async move {
            while sender.receiver_count() < watchers {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut ticker = tokio::time::interval(interval.max(Duration::from_micros(1)));
            for i in 1..=count {
                ticker.tick().await;
                let _ = sender.send(bare_progress(BARE_RUN_ID, i, count));
            }
            let _ = sender.send(bare_result(BARE_RUN_ID, count));
            fan.lock().expect("fan lock").take();
        });
    }
}

#[tonic::async_trait]
impl ToolService for BareService {
    async fn list_tools(
        &self,
        _: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        Ok(Response::new(pb::ListToolsResponse::default()))
    }

    type RunToolStream = ReceiverStream<Result<RunEvent, Status>>;

    async fn run_tool(
        &self,
        request: Request<pb::RunToolRequest>,
    ) -> Result<Response<Self::RunToolStream>, Status> {
        let request = request.into_inner();
        let arguments =
            serde_json::Value::Object(struct_to_json(request.arguments.unwrap_or_default()));
        let count = arguments["count"].as_u64().unwrap_or(0);
        let interval = Duration::from_micros(arguments["interval_us"].as_u64().unwrap_or(0));
        let minimal = arguments["minimal"].as_bool().unwrap_or(false);
        let partials = request.tool == "partials";
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        if request.tool == "fanout" {
            let watchers = arguments["watchers"].as_u64().unwrap_or(0) as usize;
            self.start_fan_out(watchers, count, interval);
            return Ok(Response::new(ReceiverStream::new(receiver)));
        }
        tokio::spawn(async move {
            let run_id = BARE_RUN_ID.to_owned();
            let mut ticker = (!interval.is_zero()).then(|| tokio::time::interval(interval));
            for i in 1..=count {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let event = if minimal {
                    RunEvent {
                        run_id: MINIMAL_PAYLOAD.to_owned(),
                        sequence: i,
                        ..RunEvent::default()
                    }
                } else if partials {
                    bare_partial(&run_id, i)
                } else {
                    bare_progress(&run_id, i, count)
                };
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            let _ = sender.send(Ok(bare_result(&run_id, count))).await;
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    type RunAgentStream = ReceiverStream<Result<RunEvent, Status>>;

    async fn run_agent(
        &self,
        _: Request<pb::RunAgentRequest>,
    ) -> Result<Response<Self::RunAgentStream>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

type BareWatch = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl RunService for BareService {
    async fn get_run(&self, _: Request<pb::GetRunRequest>) -> Result<Response<pb::Run>, Status> {
        Err(Status::unimplemented("bare"))
    }

    async fn list_runs(
        &self,
        _: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }

    type WatchRunStream = BareWatch;

    async fn watch_run(
        &self,
        _: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let receiver = self
            .fan
            .lock()
            .expect("fan lock")
            .as_ref()
            .map(|sender| sender.subscribe())
            .ok_or_else(|| Status::not_found("no fan-out producer"))?;
        // A watcher that lags skips what the channel no longer holds, like a coalescing reader.
        let events = futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((Ok(event), receiver)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn cancel_run(
        &self,
        _: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        Err(Status::unimplemented("bare"))
    }

    async fn respond_to_run(
        &self,
        _: Request<pb::RespondToRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

fn now() -> prost_types::Timestamp {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PacedArgs {
    count: u64,
    interval_us: u64,
}

/// toolstream with the built-ins, a `paced` tool emitting at a fixed rate (the same timer as the
/// bare service uses), and a command tool that prints a prepared file of progress lines.
async fn toolstream_registry(lines_file: Option<&str>) -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    let root = std::env::current_dir().expect("cwd");
    for tool in builtin_tools(confine_to(&root).expect("root")) {
        registry.register(tool).expect("builtin");
    }
    let paced = tool_fn(
        "paced",
        "Emits `count` progress events every `interval_us`.",
        |args: PacedArgs, progress: Progress| async move {
            let mut ticker = tokio::time::interval(Duration::from_micros(args.interval_us.max(1)));
            for i in 1..=args.count {
                ticker.tick().await;
                progress.report(
                    i as f64 / args.count as f64,
                    format!("tick {i}/{}", args.count),
                );
            }
            Ok::<_, ToolError>(json!({"count": args.count}))
        },
    );
    registry.register(Arc::new(paced)).expect("paced");
    registry
        .register(Arc::new(partials_tool()))
        .expect("partials");
    if let Some(file) = lines_file {
        let entry: toml::Table = toml::from_str(&format!(
            "kind = \"command\"\nname = \"lines\"\ncommand = [\"cat\", \"{file}\"]\n"
        ))
        .expect("entry");
        let tool = toolstream::tools::command::from_entry(&entry, &root)
            .await
            .expect("command tool");
        registry.register(tool).expect("lines");
    }
    registry
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PartialsArgs {
    count: u64,
    /// Microseconds between two (0, the default: as fast as it can).
    #[serde(default)]
    interval_us: u64,
}

/// `partials`: `count` partial results, each the next item of the output "items" (the bare
/// service's `partials` sends the same messages), every `interval_us`, or as fast as it can,
/// yielding to the scheduler every 64 as the built-in `ticks` does (a tool that never yields
/// holds its worker: no reader of the run, and no other run on it, moves until it ends).
fn partials_tool() -> impl toolstream::tools::Tool {
    tool_fn(
        "partials",
        "Emits `count` partial results.",
        |args: PartialsArgs, progress: Progress| async move {
            let interval = Duration::from_micros(args.interval_us);
            let mut ticker = (!interval.is_zero()).then(|| tokio::time::interval(interval));
            for i in 1..=args.count {
                match ticker.as_mut() {
                    Some(ticker) => {
                        ticker.tick().await;
                    }
                    None if i % 64 == 0 => tokio::task::yield_now().await,
                    None => {}
                }
                progress.partial_append("items", json!({"item": i}))?;
            }
            Ok::<_, ToolError>(json!({"count": args.count}))
        },
    )
}

/// What the partial-results measure saw: bare's and toolstream's throughput on 1 stream and on
/// 64.
struct PartialResults {
    bare_1: Throughput,
    ts_1: Throughput,
    bare_64: Throughput,
    ts_64: Throughput,
}

impl PartialResults {
    /// Delivered partial results/s, toolstream over bare, on 1 and on 64 streams.
    fn ratios(&self) -> (f64, f64) {
        (
            self.ts_1.per_sec / self.bare_1.per_sec,
            self.ts_64.per_sec / self.bare_64.per_sec,
        )
    }

    /// Server CPU per delivered partial result, toolstream over bare, on 1 and on 64 streams.
    fn cpu_ratios(&self) -> (f64, f64) {
        (
            self.ts_1.cpu_us / self.bare_1.cpu_us,
            self.ts_64.cpu_us / self.bare_64.cpu_us,
        )
    }
}

/// Delivered partial results per second on 1 and 64 streams, toolstream's `partials` against
/// the bare service sending the same messages (issue 26), and the server's CPU per delivered
/// one. Partial results are never coalesced, so every one is delivered: the line under each says
/// so. Prints its own machine-readable line, `bench-partials: ratio_partials_1=R1
/// ratio_partials_64=R64 cpu_ratio_partial_1=C1 cpu_ratio_partial_64=C64`.
async fn partial_results(bare: &ServerProcess, ts: &ServerProcess, quick: bool) -> PartialResults {
    let (single, per_stream) = if quick {
        (100_000, 5_000)
    } else {
        (400_000, 20_000)
    };
    let mut measured = Vec::new();
    for (streams, count) in [(1, single), (64, per_stream)] {
        let bare = throughput(bare, "partials", streams, count).await;
        let ts = throughput(ts, "partials", streams, count).await;
        let ratio = ts.per_sec / bare.per_sec;
        let label = format!("partial results/s delivered, {streams} stream(s)");
        println!(
            "{label:<44} {:>14.0} {:>14.0} {ratio:>8.2}",
            bare.per_sec, ts.per_sec
        );
        // Every one is delivered (none coalesced): delivered equals produced, and the server's
        // CPU per event is the cost without the scheduler's noise.
        let (bare_sent, ts_sent) = (
            format!("{}/{}", bare.delivered, streams as u64 * (count + 1)),
            format!("{}/{}", ts.delivered, ts.produced),
        );
        println!(
            "{:<44} {bare_sent:>14} {ts_sent:>14}",
            "  events delivered / produced"
        );
        println!(
            "{:<44} {:>14.2} {:>14.2} {:>8.2}",
            "  server CPU per delivered event (µs)",
            bare.cpu_us,
            ts.cpu_us,
            ts.cpu_us / bare.cpu_us
        );
        measured.push((bare, ts));
    }
    let partials = PartialResults {
        bare_1: measured[0].0,
        ts_1: measured[0].1,
        bare_64: measured[1].0,
        ts_64: measured[1].1,
    };
    let ((ratio_1, ratio_64), (cpu_1, cpu_64)) = (partials.ratios(), partials.cpu_ratios());
    println!(
        "bench-partials: ratio_partials_1={ratio_1:.3} ratio_partials_64={ratio_64:.3} \
         cpu_ratio_partial_1={cpu_1:.3} cpu_ratio_partial_64={cpu_64:.3}"
    );
    partials
}

// ---------------------------------------------------------------------------------------------
// The MCP face: a tools/call with progress over `/mcp` against the same RunTool over gRPC.

/// The MCP revision the bench's client speaks.
const MCP_PROTOCOL: &str = "2025-11-25";

/// A plain Streamable HTTP MCP client (JSON-RPC over POST, replies as SSE), one session on one
/// HTTP/1.1 connection: the server's share of a call's cost, without an SDK's.
struct McpSession {
    http: reqwest::Client,
    url: String,
    session: String,
}

impl McpSession {
    async fn open(addr: SocketAddr) -> McpSession {
        let http = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()
            .expect("HTTP client");
        let url = format!("http://{addr}/mcp");
        let opened = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": MCP_PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "hotpath", "version": "1"},
                },
            }))
            .send()
            .await
            .expect("MCP initialize");
        let session = opened
            .headers()
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let _ = opened.bytes().await;
        let session = McpSession { http, url, session };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let _ = session.post(&initialized).await.bytes().await;
        session
    }

    async fn post(&self, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", MCP_PROTOCOL)
            .json(body)
            .send()
            .await
            .expect("MCP request")
    }

    /// One `tools/call` of `tool` with a progress token: the progress notifications received,
    /// and whether the call ended with its (successful) result.
    async fn call(&self, id: u64, tool: &str, arguments: serde_json::Value) -> (u64, bool) {
        let request = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": {"progressToken": id}},
        });
        let mut body = self.post(&request).await.bytes_stream();
        let (mut progress, mut pending) = (0, Vec::new());
        while let Some(Ok(chunk)) = body.next().await {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                // SSE: the JSON-RPC messages are the `data:` lines (a JSON reply is one line).
                let data = line.strip_prefix(b"data:").unwrap_or(&line[..]);
                let Ok(message) = serde_json::from_slice::<serde_json::Value>(data) else {
                    continue;
                };
                if message["method"] == "notifications/progress" {
                    progress += 1;
                } else if message["id"] == id {
                    let failed = message.get("error").is_some()
                        || message["result"]["isError"].as_bool().unwrap_or(false);
                    // The server ends the call's event stream after its reply: read it to its
                    // end, so that the connection serves the next call.
                    let rest = async { while let Some(Ok(_)) = body.next().await {} };
                    let _ = tokio::time::timeout(Duration::from_secs(5), rest).await;
                    return (progress, !failed);
                }
            }
        }
        (progress, false)
    }
}

/// What the MCP measure saw: sequential calls per second, and progress delivered per second
/// within one long call, each way.
#[derive(Default)]
struct McpFace {
    grpc_calls_per_s: f64,
    mcp_calls_per_s: f64,
    grpc_events_per_s: f64,
    mcp_events_per_s: f64,
    /// Progress delivered in the long call.
    grpc_events: u64,
    mcp_events: u64,
    /// Server CPU per delivered progress event in the long call (µs).
    grpc_cpu_us: f64,
    mcp_cpu_us: f64,
    /// Calls that did not end with their result.
    failed: u64,
}

/// `calls` sequential calls of `ticks` (`ticks` reports each, no pause) over gRPC RunTool and
/// over `/mcp` (each on one connection, progress every report: the bench's server sends `/mcp`
/// progress without an interval); then one call of `long` reports each way: progress delivered
/// per second and the server's CPU per delivered event.
async fn mcp_face(server: &ServerProcess, calls: u64, ticks: u64, long: u64) -> McpFace {
    let mut face = McpFace::default();
    let grpc = ToolServiceClient::new(channel(server.addr).await);
    let mcp = McpSession::open(server.addr).await;
    let arguments = |count: u64| json!({"count": count, "interval_ms": 0});
    let start = Instant::now();
    for _ in 0..calls {
        let stats = read_stream(grpc.clone(), request("ticks", arguments(ticks)), None).await;
        face.failed += u64::from(stats.errors > 0 || stats.result_at == 0.0);
    }
    face.grpc_calls_per_s = calls as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for id in 1..=calls {
        let (_, ended) = mcp.call(id, "ticks", arguments(ticks)).await;
        face.failed += u64::from(!ended);
    }
    face.mcp_calls_per_s = calls as f64 / start.elapsed().as_secs_f64();

    let pid = server.child.id();
    let (cpu_before, start) = (process_cpu_secs(pid), Instant::now());
    let stats = read_stream(grpc.clone(), request("ticks", arguments(long)), None).await;
    let seconds = start.elapsed().as_secs_f64();
    // Progress only: `started` and `result` are not counted.
    face.grpc_events = stats.delivered.saturating_sub(2);
    face.grpc_events_per_s = face.grpc_events as f64 / seconds;
    face.grpc_cpu_us = (process_cpu_secs(pid) - cpu_before) * 1e6 / face.grpc_events.max(1) as f64;
    let (cpu_before, start) = (process_cpu_secs(pid), Instant::now());
    let (progress, ended) = mcp.call(calls + 1, "ticks", arguments(long)).await;
    let seconds = start.elapsed().as_secs_f64();
    face.failed += u64::from(!ended);
    face.mcp_events = progress;
    face.mcp_events_per_s = progress as f64 / seconds;
    face.mcp_cpu_us = (process_cpu_secs(pid) - cpu_before) * 1e6 / progress.max(1) as f64;
    face
}

fn print_mcp_face(face: &McpFace) {
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "MCP face (issue 30)", "gRPC RunTool", "/mcp", "ratio"
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        "  calls/s, sequential, 20 reports each",
        face.grpc_calls_per_s,
        face.mcp_calls_per_s,
        face.mcp_calls_per_s / face.grpc_calls_per_s
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        "  progress/s delivered in one long call",
        face.grpc_events_per_s,
        face.mcp_events_per_s,
        face.mcp_events_per_s / face.grpc_events_per_s
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  progress delivered in it", face.grpc_events, face.mcp_events
    );
    println!(
        "{:<44} {:>14.2} {:>14.2} {:>8.2}",
        "  server CPU per delivered progress (µs)",
        face.grpc_cpu_us,
        face.mcp_cpu_us,
        face.mcp_cpu_us / face.grpc_cpu_us
    );
    println!("{:<44} {:>14}", "  calls without their result", face.failed);
}

// ---------------------------------------------------------------------------------------------
// Partial results through Redis (issue 26): a run on replica A, watched on replica B.

/// A `redis-server` of the bench's own on a free port, without persistence, stopped when dropped.
struct RedisProcess {
    child: Child,
    port: u16,
}

impl RedisProcess {
    /// Starts one on the servers' cores (where the bench pinned them); `None` when `redis-server`
    /// cannot be started.
    fn start() -> Option<RedisProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .ok()?
            .port();
        let args = [
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(str::to_owned);
        let child = on_server_cores(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = RedisProcess { child, port };
        let began = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if began.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Pipelined XADDs per second (16 per round trip, redis-benchmark's 50 clients), each
    /// adding an entry of one field holding `payload` bytes (as the store's entries hold an
    /// encoded event), by `redis-benchmark` on the client's cores; `None` when it cannot run.
    fn xadd_per_sec(&self, requests: u64, payload: usize) -> Option<f64> {
        let value = "x".repeat(payload);
        let output = Command::new("redis-benchmark")
            .args(["-p", &self.port.to_string(), "-P", "16", "-q", "-n"])
            .arg(requests.to_string())
            .args(["XADD", "bench:xadd", "*", "e", &value])
            .output()
            .ok()?;
        // `XADD bench:xadd * e xxx...: 312500.00 requests per second, p50=...`; a progress line
        // ending in `\r` may come before it.
        let text = String::from_utf8_lossy(&output.stdout);
        text.rsplit('\r').flat_map(str::lines).find_map(|line| {
            let (_, rate) = line.rsplit_once(": ")?;
            rate.split_whitespace().next()?.parse().ok()
        })
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `args` as a command pinned to the servers' cores (with `taskset`) when the bench pinned them.
fn on_server_cores(args: &[String]) -> Command {
    match SERVER_CORES.get() {
        Some(cores) if !cores.is_empty() => {
            let list: Vec<String> = cores.iter().map(ToString::to_string).collect();
            let mut command = Command::new("taskset");
            command.arg("-c").arg(list.join(",")).args(args);
            command
        }
        _ => {
            let mut command = Command::new(&args[0]);
            command.args(&args[1..]);
            command
        }
    }
}

/// What the Redis measure saw.
#[derive(Default)]
struct RedisPartials {
    /// `redis-benchmark`'s pipelined XADDs per second, same machine, same run.
    xadd_per_s: f64,
    /// Partial results a watcher on replica B received per second, from the call on replica A
    /// to the watcher's `result`.
    delivered_per_s: f64,
    delivered: u64,
    produced: u64,
    /// Tool emits on A (the event's timestamp) → the watcher on B receives, at 1,000 partial
    /// results per second (ms).
    p50_ms: f64,
    p99_ms: f64,
    latency_samples: usize,
}

/// A watcher of `run_id` on `addr` from the run's first event: the partial results it received,
/// with their latency (s) when `latencies`, until the run's result.
async fn watch_partials(addr: SocketAddr, run_id: String, latencies: bool) -> (u64, Vec<f64>) {
    let mut client = RunServiceClient::new(channel(addr).await);
    let request = pb::WatchRunRequest {
        run_id,
        ..pb::WatchRunRequest::default()
    };
    // The run's record reaches the store as the run starts: B may not know it for a moment.
    let mut attempts = 0;
    let mut events = loop {
        match client.watch_run(request.clone()).await {
            Ok(response) => break response.into_inner(),
            Err(_) if attempts < 250 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return (0, Vec::new()),
        }
    };
    let (mut received, mut samples) = (0, Vec::new());
    while let Some(Ok(event)) = events.next().await {
        match event.event {
            Some(Event::PartialResult(_)) => {
                received += 1;
                if latencies {
                    samples.push(unix_now() - timestamp_secs(&event));
                }
            }
            Some(Event::Result(_)) => break,
            _ => {}
        }
    }
    (received, samples)
}

/// Partial results through Redis: a fresh `redis-server`, `redis-benchmark`'s pipelined XADD
/// rate on it, then two toolstream replicas sharing it. Throughput: `count` partial results as
/// fast as the tool makes them, in a detached run on replica A, watched from its first event on
/// replica B. Latency: `paced` of them at 1,000/s, likewise. `None` when Redis is not installed.
async fn redis_partials(count: u64, paced: u64) -> Option<RedisPartials> {
    let redis = RedisProcess::start()?;
    let mut measured = RedisPartials {
        // About the size of a stored partial-result event.
        xadd_per_s: redis.xadd_per_sec(4 * count, 80)?,
        ..RedisPartials::default()
    };
    let url = redis.url();
    let a = ServerProcess::start("toolstream-redis", Some(&url));
    let b = ServerProcess::start("toolstream-redis", Some(&url));
    let to_a = channel(a.addr).await;

    let start = Instant::now();
    let run_id = start_detached(&to_a, "partials", json!({"count": count})).await;
    let (delivered, _) = watch_partials(b.addr, run_id, false).await;
    measured.delivered_per_s = delivered as f64 / start.elapsed().as_secs_f64();
    (measured.delivered, measured.produced) = (delivered, count);

    let arguments = json!({"count": paced, "interval_us": 1000});
    let run_id = start_detached(&to_a, "partials", arguments).await;
    let (_, mut latencies) = watch_partials(b.addr, run_id, true).await;
    latencies.sort_by(|x, y| x.total_cmp(y));
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |latency| latency * 1e3)
    };
    (measured.p50_ms, measured.p99_ms) = (at(0.5), at(0.99));
    measured.latency_samples = latencies.len();
    Some(measured)
}

fn print_redis_partials(measured: Option<&RedisPartials>) {
    let Some(measured) = measured else {
        println!(
            "partial results through Redis: not measured (redis-server or redis-benchmark missing)"
        );
        return;
    };
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "partial results through Redis (issue 26)", "XADD -P 16", "A -> B", "ratio"
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        "  per second",
        measured.xadd_per_s,
        measured.delivered_per_s,
        measured.delivered_per_s / measured.xadd_per_s
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  delivered to B / produced on A",
        "",
        format!("{}/{}", measured.delivered, measured.produced)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  latency A -> B p50 / p99 at 1,000/s (ms)",
        "",
        format!("{:.2} / {:.2}", measured.p50_ms, measured.p99_ms)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  latency samples", "", measured.latency_samples
    );
}

/// Serve mode: bind an ephemeral port, print it, serve until stdin closes.
fn serve(kind: &str, lines_file: Option<String>) {
    pin_server();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        std::io::stdout().flush().expect("flush");
        let stop = async {
            // The parent closes our stdin (or dies) when it is done with us.
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            })
            .await;
        };
        if kind == "bare" {
            // One state for both services: WatchRun subscribes to the producer RunTool started.
            let bare = BareService::default();
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic_server()
                .add_service(ToolServiceServer::new(bare.clone()))
                .add_service(RunServiceServer::new(bare))
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .expect("bare server");
        } else if kind == "toolstream-tonic" {
            // toolstream's gRPC services (the engine, the operations, the encoded events) served
            // by tonic's own server with bare's settings, without the listener, the router and
            // its layers: tells their cost from the engine's.
            let registry = Arc::new(toolstream_registry(None).await);
            let engine = toolstream::engine::Engine::new(registry, Limits::default());
            let agent = toolstream::agent::Agent::new(engine, Default::default());
            let operations = Arc::new(toolstream::operations::Operations::new(Arc::new(agent)));
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic_server()
                .add_service(
                    toolstream::pb::encoded::tool_service_server::ToolServiceServer::new(
                        toolstream::transport::ToolServiceImpl::new(Arc::clone(&operations)),
                    ),
                )
                .add_service(
                    toolstream::pb::encoded::run_service_server::RunServiceServer::new(
                        toolstream::transport::RunServiceImpl::new(operations),
                    ),
                )
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .expect("toolstream on tonic's server");
        } else {
            let limits = Limits {
                grace_period: Duration::from_millis(100),
                // Partial results are never coalesced: the log holds every event of the
                // partial-results measure's runs, so that every one is delivered however far
                // its reader falls behind (with the default bound of 10,000, one stream's
                // reader fell more than 10,000 behind and got a gap).
                max_events_per_run: 1_000_000,
                event_buffer: fan_out_buffer(),
                ..Limits::default()
            };
            // `/mcp` sends every progress report a client can take, as RunTool does without a
            // minimum interval: the MCP measure compares the two paths, not their defaults.
            let http = HttpConfig {
                mcp: McpConfig {
                    progress_interval: Duration::ZERO,
                    ..McpConfig::default()
                },
                ..HttpConfig::default()
            };
            // `toolstream-redis`: a replica of a fleet sharing the Redis whose URL is given
            // instead of a file.
            let (lines_file, redis_url) = if kind == "toolstream-redis" {
                (None, lines_file)
            } else {
                (lines_file, None)
            };
            let mut server = Server::new(toolstream_registry(lines_file.as_deref()).await, limits);
            if let Some(url) = redis_url {
                let store = Store::open(&StoreConfig::redis(url), &limits)
                    .await
                    .expect("the Redis store");
                server = server.with_store(store);
            }
            server
                .with_http(http)
                .serve(listener, stop)
                .await
                .expect("toolstream server");
        }
    });
}

/// tonic's own server with the HTTP/2 settings of toolstream's listener.
fn tonic_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_concurrent_streams(16_384)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
}

/// A server in a child process.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(kind: &str, lines_file: Option<&str>) -> ServerProcess {
        let mut command = Command::new(std::env::current_exe().expect("exe"));
        command
            .arg(format!("--serve-{kind}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(file) = lines_file {
            command.arg(file);
        }
        if let Some(cores) = SERVER_CORES.get() {
            let list: Vec<String> = cores.iter().map(ToString::to_string).collect();
            command.env(SERVER_CORES_VAR, list.join(","));
        }
        let mut child = command.spawn().expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server address");
        let addr = line.trim().parse().expect("address");
        ServerProcess { child, addr }
    }

    fn memory_kb(&self, field: &str) -> u64 {
        process_memory_kb(self.child.id(), field)
    }
}

/// CPU time a process has used so far, in seconds: user and system time of all its threads,
/// those that already exited included, from the process's POSIX CPU-time clock
/// (`clock_getcpuclockid`, read with `clock_gettime`: the scheduler's own account, to the
/// nanosecond). Where that clock cannot be read, `/proc/<pid>/stat` (10 ms ticks); 0 when neither
/// can.
fn process_cpu_secs(pid: u32) -> f64 {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    match nix::time::clock_getcpuclockid(pid).and_then(|clock| clock.now()) {
        Ok(time) => time.tv_sec() as f64 + time.tv_nsec() as f64 / 1e9,
        Err(_) => process_stat_cpu_secs(pid.as_raw() as u32),
    }
}

/// CPU time (user + system) of a process from `/proc/<pid>/stat`, in 10 ms ticks; 0 when it cannot
/// be read.
fn process_stat_cpu_secs(pid: u32) -> f64 {
    // Linux reports these in USER_HZ, 100 per second on every architecture we run on.
    const TICKS_PER_SEC: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces): state is the first, utime the
    // 12th and stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SEC
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`); 0 when it cannot be read.
fn process_memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)
                .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Cores: the client and the servers on separate ones, where the machine has them.

/// Tells a server process the cores to pin itself to (`1,3`).
const SERVER_CORES_VAR: &str = "TOOLSTREAM_BENCH_SERVER_CORES";

/// The cores every server process is pinned to (empty: not pinned), set once by [`place_on_cores`].
static SERVER_CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

/// The cores this process may run on.
fn allowed_cores() -> nix::Result<Vec<usize>> {
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&core| allowed.is_set(core).unwrap_or(false))
        .collect())
}

/// Pins the calling thread, and every thread it starts after this, to `cores`.
fn pin_to(cores: &[usize]) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &core in cores {
        set.set(core)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// Splits the cores this process may use: the first half for the client (this process, pinned
/// here, before its runtime starts its threads), the rest for each server process (pinned as it
/// starts, see [`serve`]); the two never share a core, so neither's CPU time is spent waiting for
/// the other's. Returns what was done, in words, and whether it pinned.
fn place_on_cores(pin: bool) -> (String, bool) {
    if !pin {
        return ("not pinned (--no-pin)".to_owned(), false);
    }
    let cores = match allowed_cores() {
        Ok(cores) => cores,
        Err(error) => {
            return (
                format!("NOT pinned: the allowed cores are unknown ({error})"),
                false,
            );
        }
    };
    if cores.len() < 2 {
        return (
            format!(
                "NOT pinned: only {} core allowed; client and servers share it",
                cores.len()
            ),
            false,
        );
    }
    let (client, server) = cores.split_at(cores.len() / 2);
    if let Err(error) = pin_to(client) {
        return (
            format!("NOT pinned: sched_setaffinity failed ({error})"),
            false,
        );
    }
    let _ = SERVER_CORES.set(server.to_vec());
    (
        format!("client pinned to cores {client:?}, each server to {server:?}"),
        true,
    )
}

/// In a server process: pins it to the cores its parent chose, before its runtime starts.
fn pin_server() {
    let Ok(list) = std::env::var(SERVER_CORES_VAR) else {
        return;
    };
    let cores: Vec<usize> = list
        .split(',')
        .filter_map(|core| core.parse().ok())
        .collect();
    if !cores.is_empty()
        && let Err(error) = pin_to(&cores)
    {
        eprintln!("server: could not pin to cores {cores:?}: {error}");
    }
}

/// The 1-minute load average (`/proc/loadavg`); NaN when it cannot be read.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// Clients.

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .tcp_nodelay(true)
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .connect()
        .await
        .expect("connect")
}

fn request(tool: &str, arguments: serde_json::Value) -> pb::RunToolRequest {
    let serde_json::Value::Object(arguments) = arguments else {
        unreachable!()
    };
    pb::RunToolRequest {
        tool: tool.into(),
        arguments: Some(json_to_struct(arguments)),
        options: None,
    }
}

fn timestamp_secs(event: &RunEvent) -> f64 {
    event
        .timestamp
        .map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// What one stream saw.
#[derive(Default, Clone, Copy)]
struct StreamStats {
    delivered: u64,
    produced: u64,
    started_at: f64,
    result_at: f64,
    errors: u64,
}

/// Reads a whole stream, sleeping `pause` after each event.
async fn read_stream(
    mut client: ToolServiceClient<Channel>,
    request: pb::RunToolRequest,
    pause: Option<Duration>,
) -> StreamStats {
    let mut stats = StreamStats::default();
    let mut events = match client.run_tool(request).await {
        Ok(response) => response.into_inner(),
        Err(_) => {
            stats.errors = 1;
            return stats;
        }
    };
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            stats.errors += 1;
            break;
        };
        stats.delivered += 1;
        stats.produced = event.sequence;
        match event.event {
            Some(Event::Started(_)) => stats.started_at = timestamp_secs(&event),
            Some(Event::Result(_)) => stats.result_at = timestamp_secs(&event),
            _ => {}
        }
        if stats.started_at == 0.0 {
            stats.started_at = timestamp_secs(&event);
        }
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    stats
}

/// What a throughput measure saw.
#[derive(Default, Clone, Copy)]
struct Throughput {
    /// Events delivered per second.
    per_sec: f64,
    delivered: u64,
    /// The sum of each stream's last sequence.
    produced: u64,
    errors: u64,
    /// The server process's CPU time per delivered event (µs): less noisy than events/s on a
    /// shared machine, as it does not count time the server waited for a core.
    cpu_us: f64,
}

/// Delivered events per second over `streams` concurrent streams of `count` events each, spread
/// over up to 8 connections.
async fn throughput(server: &ServerProcess, tool: &str, streams: usize, count: u64) -> Throughput {
    let mut channels = Vec::new();
    for _ in 0..streams.clamp(1, 8) {
        channels.push(channel(server.addr).await);
    }
    let arguments = match tool {
        "ticks" => json!({"count": count, "interval_ms": 0}),
        "minimal" => json!({"count": count, "interval_us": 0, "minimal": true}),
        _ => json!({"count": count, "interval_us": 0}),
    };
    let cpu_before = process_cpu_secs(server.child.id());
    let start = Instant::now();
    let runs: Vec<_> = (0..streams)
        .map(|i| {
            let client = ToolServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(read_stream(client, request(tool, arguments.clone()), None))
        })
        .collect();
    let mut total = Throughput::default();
    for run in runs {
        let stats = run.await.expect("stream task");
        total.delivered += stats.delivered;
        total.produced += stats.produced;
        total.errors += stats.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    total.per_sec = total.delivered as f64 / elapsed;
    total.cpu_us =
        (process_cpu_secs(server.child.id()) - cpu_before) * 1e6 / total.delivered.max(1) as f64;
    total
}

/// Latency percentiles (µs) of progress events, emit → receive, at one event per millisecond.
async fn latency(addr: SocketAddr, tool: &str, count: u64) -> (f64, f64, f64) {
    let mut client = ToolServiceClient::new(channel(addr).await);
    let mut events = client
        .run_tool(request(tool, json!({"count": count, "interval_us": 1000})))
        .await
        .expect("latency run")
        .into_inner();
    let mut samples = Vec::with_capacity(count as usize);
    while let Some(Ok(event)) = events.next().await {
        if matches!(event.event, Some(Event::Progress(_))) {
            samples.push((unix_now() - timestamp_secs(&event)) * 1e6);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99), at(0.999))
}

/// `count` connections to `addr`, given a moment to settle.
async fn channels(addr: SocketAddr, count: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(channel(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    channels
}

/// Starts a run that goes on without its caller (`ON_DISCONNECT_CONTINUE`) and leaves it; its id
/// (from `x-run-id`; the bare server sends none and ignores it).
async fn start_detached(channel: &Channel, tool: &str, arguments: serde_json::Value) -> String {
    let mut start = request(tool, arguments);
    start.options = Some(pb::RunOptions {
        on_disconnect: pb::OnDisconnect::Continue as i32,
        ..pb::RunOptions::default()
    });
    let response = ToolServiceClient::new(channel.clone())
        .run_tool(start)
        .await
        .expect("start the watched run");
    response
        .metadata()
        .get("x-run-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("bare")
        .to_owned()
}

/// Server RSS growth per stream (KiB) with `streams` streams held open, each opened by `open` (with
/// its index) and counted once its first event arrived; and the streams that did not open.
async fn rss_per_open_stream<F, Fut>(server: &ServerProcess, streams: usize, open: F) -> (f64, u64)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Response<tonic::Streaming<RunEvent>>, Status>> + Send + 'static,
{
    let baseline = server.memory_kb("VmRSS:");
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<bool>(streams);
    let holders: Vec<_> = (0..streams)
        .map(|i| {
            let response = open(i);
            let opened = opened_tx.clone();
            tokio::spawn(async move {
                match response.await {
                    Ok(response) => {
                        let mut events = response.into_inner();
                        let first = events.next().await;
                        let _ = opened.send(matches!(first, Some(Ok(_)))).await;
                        // Hold the stream open until the task is aborted.
                        let _ = events.next().await;
                    }
                    Err(_) => {
                        let _ = opened.send(false).await;
                    }
                }
            })
        })
        .collect();
    let mut errors = 0;
    for _ in 0..streams {
        if !opened_rx.recv().await.unwrap_or(false) {
            errors += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = server.memory_kb("VmRSS:");
    for holder in holders {
        holder.abort();
    }
    (
        loaded.saturating_sub(baseline) as f64 / streams as f64,
        errors,
    )
}

/// RSS per stream with `streams` idle-but-open streams, and how many did not open.
async fn memory_per_stream(server: &ServerProcess, streams: usize) -> (f64, u64) {
    let channels = channels(server.addr, 50).await;
    rss_per_open_stream(server, streams, |i| {
        let mut client = ToolServiceClient::new(channels[i % channels.len()].clone());
        async move {
            client
                .run_tool(request(
                    "ticks",
                    json!({"count": 1, "interval_ms": 600_000}),
                ))
                .await
        }
    })
    .await
}

/// What one watcher of the fan-out saw.
#[derive(Default)]
struct WatcherStats {
    /// Events of the run received (`sequence` > 0: not gaps or heartbeats).
    delivered: u64,
    /// The last sequence received.
    last_sequence: u64,
    gaps: u64,
    got_result: bool,
    errors: u64,
}

/// What the fan-out measure saw, summed over the watchers.
#[derive(Default)]
struct FanOutStats {
    /// Events received by all watchers per second, first WatchRun sent → last stream ended.
    events_per_sec: f64,
    delivered: u64,
    /// The run's last sequence (the events it produced, `started` and `result` included).
    produced: u64,
    seconds: f64,
    /// Watchers that ended with the run's `result`.
    results: usize,
    gaps: u64,
    errors: u64,
    /// Server RSS just before the watchers, and its peak while they were attached (KiB).
    rss_before_kb: u64,
    rss_peak_kb: u64,
    /// CPU time the server used while the watchers were attached.
    server_cpu_secs: f64,
    /// The steady state: from the moment every watcher has an event of the run until the first
    /// one has its result, the events all watchers received, the server's CPU time, and the
    /// window's length. Opening the watchers is not in it (toolstream's run goes on meanwhile and
    /// its watchers catch up on it coalesced; bare's producer waits for them), so both are
    /// charged for delivering the same live events only.
    window_events: u64,
    window_cpu_secs: f64,
    window_seconds: f64,
}

/// Shared by the watchers of the fan-out measure: how many have an event of the run, whether
/// the steady-state window is open, the events received in it, and whether a result came.
#[derive(Default)]
struct FanOutWindow {
    opened: std::sync::atomic::AtomicUsize,
    counting: std::sync::atomic::AtomicBool,
    events: std::sync::atomic::AtomicU64,
    result_seen: std::sync::atomic::AtomicBool,
}

/// One detached run of `paced` (`count` events, `interval_us` apart) watched by `watchers`
/// WatchRun streams from its first event, spread over `connections` connections, each reading as
/// fast as it can; on the bare server (`bare`), its broadcast producer instead. The server's RSS
/// is sampled every 20 ms while the watchers are attached.
async fn fan_out(
    server: &ServerProcess,
    bare: bool,
    watchers: usize,
    connections: usize,
    count: u64,
    interval_us: u64,
) -> FanOutStats {
    let channels = channels(server.addr, connections).await;
    // Start the run detached and leave: from here on only the watchers read it. The bare
    // server's producer waits for its watchers to subscribe, as it has no history to replay.
    let arguments = json!({"count": count, "interval_us": interval_us, "watchers": watchers});
    let tool = if bare { "fanout" } else { "paced" };
    let run_id = start_detached(&channels[0], tool, arguments).await;

    let pid = server.child.id();
    let rss_before_kb = process_memory_kb(pid, "VmRSS:");
    let cpu_before = process_cpu_secs(pid);
    let attached = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let attached = Arc::clone(&attached);
        tokio::spawn(async move {
            let mut peak = 0;
            while attached.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(process_memory_kb(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    let began = Instant::now();
    let window = Arc::new(FanOutWindow::default());
    let tasks: Vec<_> = (0..watchers)
        .map(|i| {
            let mut client = RunServiceClient::new(channels[i % channels.len()].clone());
            let run_id = run_id.clone();
            let window = Arc::clone(&window);
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                let mut stats = WatcherStats::default();
                let watch = client.watch_run(pb::WatchRunRequest {
                    run_id,
                    ..pb::WatchRunRequest::default()
                });
                let mut events = match watch.await {
                    Ok(response) => response.into_inner(),
                    Err(_) => {
                        stats.errors = 1;
                        return (stats, Instant::now());
                    }
                };
                while let Some(event) = events.next().await {
                    let Ok(event) = event else {
                        stats.errors += 1;
                        break;
                    };
                    match event.event {
                        Some(Event::Gap(_)) => stats.gaps += 1,
                        Some(Event::Heartbeat(_)) => {}
                        other => {
                            if stats.delivered == 0 {
                                window.opened.fetch_add(1, Relaxed);
                            }
                            if window.counting.load(Relaxed) {
                                window.events.fetch_add(1, Relaxed);
                            }
                            stats.delivered += 1;
                            stats.last_sequence = event.sequence;
                            if matches!(other, Some(Event::Result(_))) {
                                stats.got_result = true;
                                window.result_seen.store(true, Relaxed);
                            }
                        }
                    }
                }
                (stats, Instant::now())
            })
        })
        .collect();
    // The steady-state window (see `FanOutStats::window_events`).
    let (opened, ended) = (
        || window.opened.load(std::sync::atomic::Ordering::Relaxed),
        || {
            window
                .result_seen
                .load(std::sync::atomic::Ordering::Relaxed)
        },
    );
    while opened() < watchers && !ended() && began.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (window_cpu, window_began) = (process_cpu_secs(pid), Instant::now());
    window
        .counting
        .store(true, std::sync::atomic::Ordering::Relaxed);
    while !ended() && began.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    window
        .counting
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let mut total = FanOutStats {
        rss_before_kb,
        window_cpu_secs: process_cpu_secs(pid) - window_cpu,
        window_seconds: window_began.elapsed().as_secs_f64(),
        window_events: window.events.load(std::sync::atomic::Ordering::Relaxed),
        ..FanOutStats::default()
    };
    let mut last_end = began;
    for task in tasks {
        let (stats, ended) = task.await.expect("watcher task");
        last_end = last_end.max(ended);
        total.delivered += stats.delivered;
        total.produced = total.produced.max(stats.last_sequence);
        total.results += usize::from(stats.got_result);
        total.gaps += stats.gaps;
        total.errors += stats.errors;
    }
    attached.store(false, std::sync::atomic::Ordering::Relaxed);
    total.server_cpu_secs = process_cpu_secs(pid) - cpu_before;
    total.rss_peak_kb = sampler.await.expect("RSS sampler");
    total.seconds = (last_end - began).as_secs_f64();
    total.events_per_sec = total.delivered as f64 / total.seconds.max(1e-9);
    total
}

/// The fan-out measure on a fresh bare server, then on a fresh toolstream server (whose process
/// ids are printed, for a profiler): bare's stats, then toolstream's.
async fn fan_out_pair(count: u64, interval_us: u64) -> (FanOutStats, FanOutStats) {
    let fresh = ServerProcess::start("bare", None);
    eprintln!("fan-out: bare server pid {}", fresh.child.id());
    let bare = fan_out(&fresh, true, WATCHERS, 10, count, interval_us).await;
    drop(fresh);
    // `TOOLSTREAM_BENCH_FANOUT_KIND=toolstream-tonic`: toolstream's services on tonic's own
    // server (see `serve`), for telling the listener's share of the cost from the engine's.
    let kind = std::env::var("TOOLSTREAM_BENCH_FANOUT_KIND").unwrap_or("toolstream".into());
    let fresh = ServerProcess::start(&kind, None);
    eprintln!("fan-out: toolstream server pid {}", fresh.child.id());
    let ts = fan_out(&fresh, false, WATCHERS, 10, count, interval_us).await;
    drop(fresh);
    (bare, ts)
}

impl FanOutStats {
    /// The server's CPU time per delivered event (ns), over the whole measure (opening the
    /// watchers included).
    fn cpu_ns_per_event(&self) -> f64 {
        self.server_cpu_secs * 1e9 / self.delivered.max(1) as f64
    }

    /// The server's CPU time per event delivered in the steady-state window (ns).
    fn window_cpu_ns_per_event(&self) -> f64 {
        self.window_cpu_secs * 1e9 / self.window_events.max(1) as f64
    }

    /// Events all watchers received per second in the steady-state window.
    fn window_events_per_sec(&self) -> f64 {
        self.window_events as f64 / self.window_seconds.max(1e-9)
    }
}

/// `--fanout [ROUNDS]`: only the fan-out measure (quick size), `ROUNDS` times on fresh servers,
/// with the server CPU per delivered event and its ratio; for working on the fan-out's cost.
async fn fan_out_only(rounds: usize, placement: &str) {
    println!("cores: {placement}");
    for round in 1..=rounds {
        let load = load_average();
        let (bare, ts) = fan_out_pair(FAN_COUNT, 1000).await;
        println!(
            "round {round} (load {load:.2}): fan-out steady state: CPU ns/event bare {:.0} \
             toolstream {:.0} cpu_ratio_fanout={:.3}, events/s bare {:.0} toolstream {:.0}, \
             window events {} and {}; whole measure: CPU ns/event bare {:.0} toolstream {:.0} \
             ({:.3}), delivered {}/{} and {}/{}; ratio_fanout={:.3}",
            bare.window_cpu_ns_per_event(),
            ts.window_cpu_ns_per_event(),
            ts.window_cpu_ns_per_event() / bare.window_cpu_ns_per_event(),
            bare.window_events_per_sec(),
            ts.window_events_per_sec(),
            bare.window_events,
            ts.window_events,
            bare.cpu_ns_per_event(),
            ts.cpu_ns_per_event(),
            ts.cpu_ns_per_event() / bare.cpu_ns_per_event(),
            bare.delivered,
            WATCHERS as u64 * bare.produced,
            ts.delivered,
            WATCHERS as u64 * ts.produced,
            ts.events_per_sec / bare.events_per_sec.max(1e-9),
        );
    }
}

/// What the fleet measure saw.
struct FleetStats {
    /// Tool emits (the event's timestamp) → client receives, over the window (ms).
    p50_ms: f64,
    p99_ms: f64,
    /// Progress events received during the window.
    events: u64,
    /// Server CPU (user + system) during the window.
    server_cpu_secs: f64,
    /// The window's length (s).
    seconds: f64,
    /// Streams that failed to open or ended early.
    errors: u64,
}

impl FleetStats {
    fn cpu_secs_per_million(&self) -> f64 {
        self.server_cpu_secs * 1e6 / self.events.max(1) as f64
    }
}

/// A fleet on a fresh server of `kind`: [`FLEET_RUNS`] concurrent runs, each reporting every
/// [`FLEET_INTERVAL_US`] (toolstream's `paced`, or the bare producer), over [`FLEET_CONNECTIONS`]
/// connections, the runs' phases spread evenly over one interval. Once every stream has its
/// first event and a second has passed, a window of `seconds`: the latency of each progress event
/// received in it, and the server process's CPU time over it (`/proc/<pid>/stat`, so the
/// clients' own CPU is not counted).
async fn fleet(kind: &str, seconds: f64) -> FleetStats {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    let server = ServerProcess::start(kind, None);
    let tool = if kind == "bare" { "bare" } else { "paced" };
    let (runs, interval_us) = (FLEET_RUNS, FLEET_INTERVAL_US);
    let channels = channels(server.addr, FLEET_CONNECTIONS).await;
    // Enough events for any plausible start-up time; the streams are dropped after the window.
    let count = (3600.0 * 1e6 / interval_us as f64) as u64;
    let opened = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Set after the window: each stream ends at its next event (the client leaves).
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..runs)
        .map(|i| {
            let mut client = ToolServiceClient::new(channels[i % channels.len()].clone());
            let request = request(tool, json!({"count": count, "interval_us": interval_us}));
            let (opened, errors) = (Arc::clone(&opened), Arc::clone(&errors));
            let stop = Arc::clone(&stop);
            let phase = Duration::from_micros(interval_us * i as u64 / runs as u64);
            tokio::spawn(async move {
                tokio::time::sleep(phase).await;
                // (received at, latency), both in seconds.
                let mut samples: Vec<(f64, f64)> = Vec::new();
                let mut events = match client.run_tool(request).await {
                    Ok(response) => response.into_inner(),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return samples;
                    }
                };
                let mut first = true;
                while let Some(event) = events.next().await {
                    let Ok(event) = event else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    if first {
                        first = false;
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    if matches!(event.event, Some(Event::Progress(_))) {
                        let received = unix_now();
                        samples.push((received, received - timestamp_secs(&event)));
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                samples
            })
        })
        .collect();
    let waited = Instant::now();
    while opened.load(Ordering::Relaxed) + (errors.load(Ordering::Relaxed) as usize) < runs
        && waited.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = server.child.id();
    let (from, cpu_before) = (unix_now(), process_cpu_secs(pid));
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (to, cpu_after) = (unix_now(), process_cpu_secs(pid));
    let mut latencies = Vec::new();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        if let Ok(samples) = task.await {
            latencies.extend(
                samples
                    .into_iter()
                    .filter(|(received, _)| (from..to).contains(received))
                    .map(|(_, latency)| latency),
            );
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |latency| latency * 1e3)
    };
    FleetStats {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        events: latencies.len() as u64,
        server_cpu_secs: cpu_after - cpu_before,
        seconds: to - from,
        errors: errors.load(Ordering::Relaxed) + (runs - opened.load(Ordering::Relaxed)) as u64,
    }
}

/// RSS per watcher: a fresh server, one detached run that stays silent for ten minutes after its
/// `started` event, and `watchers` WatchRun streams of it over 50 connections; (RSS with them −
/// RSS before) / watchers, and the watchers that did not get the `started` event.
async fn memory_per_watcher(server: &ServerProcess, watchers: usize) -> (f64, u64) {
    let channels = channels(server.addr, 50).await;
    let arguments = json!({"count": 1, "interval_ms": 600_000});
    let run_id = start_detached(&channels[0], "ticks", arguments).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    rss_per_open_stream(server, watchers, |i| {
        let mut client = RunServiceClient::new(channels[i % channels.len()].clone());
        let request = pb::WatchRunRequest {
            run_id: run_id.clone(),
            ..pb::WatchRunRequest::default()
        };
        async move { client.watch_run(request).await }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Sub-tasks: a command tool that opens many sub-tasks.

/// How the sub-task tool's output opens its sub-tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SubTaskPattern {
    /// Each sub-task opened, reported half done and finished before the next (the helper's
    /// `with progress.child(...)`).
    Each,
    /// Every sub-task opened first, none finished: they end with the tool (the create-all-first
    /// pattern).
    All,
}

/// What a run of `count` sub-tasks cost a fresh server.
struct SubTaskCost {
    count: u64,
    /// Server CPU (user + system) from the call to the stream's end, per sub-task (µs).
    cpu_us_per_sub_task: f64,
    /// Server RSS after the run (retained) minus before, in MiB per 100,000 sub-tasks.
    rss_mb_per_100k: f64,
    /// Seconds from the call to the stream's end.
    seconds: f64,
    /// The stream's end was its result (not an error).
    succeeded: bool,
    /// Encoded size of GetRun of the run, or the error.
    get_run: Result<usize, String>,
    /// Encoded size of ListRuns with page_size 1, or the error.
    list_runs: Result<usize, String>,
}

/// Writes the output of a command tool opening `count` sub-tasks the way `pattern` says.
fn write_sub_task_lines(path: &std::path::Path, count: u64, pattern: SubTaskPattern) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("sub-task file"));
    for i in 1..=count {
        writeln!(
            file,
            "{{\"task\":{{\"id\":\"t{i}\",\"label\":\"item {i}\"}}}}"
        )
        .expect("write");
        if pattern == SubTaskPattern::Each {
            writeln!(file, "{{\"task\":{{\"id\":\"t{i}\"}},\"progress\":0.5}}").expect("write");
            writeln!(file, "{{\"task\":{{\"id\":\"t{i}\",\"done\":true}}}}").expect("write");
        }
    }
    writeln!(file, "{{\"result\":{{\"sub_tasks\":{count}}}}}").expect("write");
}

/// Runs a command tool opening `count` sub-tasks on a fresh server (the `lines` tool printing
/// them), then asks GetRun and ListRuns about the run.
async fn sub_task_cost(count: u64, pattern: SubTaskPattern) -> SubTaskCost {
    let file = std::env::temp_dir().join(format!(
        "toolstream-bench-{}-subtasks-{count}.jsonl",
        std::process::id()
    ));
    write_sub_task_lines(&file, count, pattern);
    let server = ServerProcess::start("toolstream", Some(&file.display().to_string()));
    let channel = channel(server.addr).await;
    let rss_before = server.memory_kb("VmRSS:");
    let cpu_before = process_cpu_secs(server.child.id());
    let start = Instant::now();
    let client = ToolServiceClient::new(channel.clone());
    let stats = read_stream(client, request("lines", json!({})), None).await;
    let seconds = start.elapsed().as_secs_f64();
    let rss_growth_kb = server.memory_kb("VmRSS:").saturating_sub(rss_before);
    // The process's CPU time is counted in clock ticks (10 ms): a small run costs less than one,
    // so it runs again on the same server until 100,000 sub-tasks were opened in all.
    let runs_in_all = 100_000u64.div_ceil(count).max(1);
    for _ in 1..runs_in_all {
        let client = ToolServiceClient::new(channel.clone());
        read_stream(client, request("lines", json!({})), None).await;
    }
    let cpu = process_cpu_secs(server.child.id()) - cpu_before;
    let _ = std::fs::remove_file(&file);
    let mut runs = RunServiceClient::new(channel);
    let list_runs = runs
        .list_runs(pb::ListRunsRequest {
            page_size: 1,
            ..pb::ListRunsRequest::default()
        })
        .await
        .map(|page| page.into_inner());
    let run_id = list_runs
        .as_ref()
        .ok()
        .and_then(|page| page.runs.first())
        .map(|run| run.run_id.clone());
    let get_run = match run_id {
        Some(run_id) => runs
            .get_run(pb::GetRunRequest { run_id })
            .await
            .map(|run| prost::Message::encoded_len(&run.into_inner()))
            .map_err(|status| format!("{:?}: {}", status.code(), status.message())),
        None => Err("no run listed".to_owned()),
    };
    SubTaskCost {
        count,
        cpu_us_per_sub_task: cpu * 1e6 / (count * runs_in_all) as f64,
        rss_mb_per_100k: rss_growth_kb as f64 / 1024.0 * 100_000.0 / count as f64,
        seconds,
        succeeded: stats.errors == 0 && stats.result_at > 0.0,
        get_run,
        list_runs: list_runs
            .map(|page| prost::Message::encoded_len(&page))
            .map_err(|status| format!("{:?}: {}", status.code(), status.message())),
    }
}

fn print_sub_task_cost(cost: &SubTaskCost) {
    let size = |result: &Result<usize, String>| match result {
        Ok(bytes) => format!("{bytes} B"),
        Err(error) => error.chars().take(60).collect(),
    };
    println!(
        "{:<44} {:>14.2} {:>14.1} {:>8.1}",
        format!("sub-tasks: {} (CPU µs each, MiB/100k, s)", cost.count),
        cost.cpu_us_per_sub_task,
        cost.rss_mb_per_100k,
        cost.seconds
    );
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "  GetRun / ListRuns(page_size=1) size",
        size(&cost.get_run),
        size(&cost.list_runs),
        if cost.succeeded { "ok" } else { "FAILED" }
    );
}

/// `--subtasks N[,N...] [each|all]`: only the sub-task measure, for the figures of an issue.
async fn sub_tasks_only(counts: &str, pattern: &str) {
    let pattern = if pattern == "all" {
        SubTaskPattern::All
    } else {
        SubTaskPattern::Each
    };
    for count in counts.split(',').filter_map(|n| n.parse::<u64>().ok()) {
        print_sub_task_cost(&sub_task_cost(count, pattern).await);
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = args.get(1).and_then(|a| a.strip_prefix("--serve-")) {
        serve(mode, args.get(2).cloned());
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` builds and starts this binary
    // without it, and a test run is no place for a benchmark.
    if !args.iter().any(|a| a == "--bench") {
        println!("hotpath: benchmark not run (use `cargo bench --bench hotpath [-- --quick]`)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (placement, pinned) = place_on_cores(!args.iter().any(|a| a == "--no-pin"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(at) = args.iter().position(|a| a == "--subtasks") {
        let counts = args.get(at + 1).map_or("1000", String::as_str);
        let pattern = args.get(at + 2).map_or("each", String::as_str);
        runtime.block_on(sub_tasks_only(counts, pattern));
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--partials") {
        let rounds = args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(1);
        runtime.block_on(partials_only(quick, rounds, &placement));
        return;
    }
    if args.iter().any(|a| a == "--redis") {
        let measured = if quick {
            runtime.block_on(redis_partials(100_000, 3_000))
        } else {
            runtime.block_on(redis_partials(400_000, 10_000))
        };
        print_redis_partials(measured.as_ref());
        return;
    }
    if args.iter().any(|a| a == "--mcp") {
        runtime.block_on(async {
            let ts = ServerProcess::start("toolstream", None);
            print_mcp_face(&mcp_face(&ts, MCP_CALLS, MCP_TICKS, 200_000).await);
        });
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--fanout") {
        let rounds = args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(3);
        runtime.block_on(fan_out_only(rounds, &placement));
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--streams") {
        let rounds = args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(3);
        runtime.block_on(streams_only(rounds, &placement));
        return;
    }
    runtime.block_on(run(quick, &placement, pinned));
}

/// `-- --partials [ROUNDS]`: only the partial-results measure, `ROUNDS` times (1 by default) on
/// the same two servers, whose process ids it prints (for a profiler to attach to).
async fn partials_only(quick: bool, rounds: usize, placement: &str) {
    let bare = ServerProcess::start("bare", None);
    let ts = ServerProcess::start("toolstream", None);
    println!(
        "cores: {placement}; bare server pid {}, toolstream server pid {}",
        bare.child.id(),
        ts.child.id()
    );
    // Warm both up.
    let _ = throughput(&bare, "partials", 1, 10_000).await;
    let _ = throughput(&ts, "partials", 1, 10_000).await;
    for round in 1..=rounds {
        println!(
            "{:<44} {:>14} {:>14} {:>8}",
            format!("round {round} (load {:.2})", load_average()),
            "bare tonic",
            "toolstream",
            "ratio"
        );
        partial_results(&bare, &ts, quick).await;
    }
}

/// `--streams [ROUNDS]`: only the 1- and 64-stream measures, `ROUNDS` times on the same two
/// servers (whose process ids it prints, for a profiler to attach to), with the server CPU per
/// delivered event of each and its ratio; for working on the cost of an event.
async fn streams_only(rounds: usize, placement: &str) {
    let (single, per_stream) = (200_000, 10_000);
    let bare = ServerProcess::start("bare", None);
    let ts = ServerProcess::start("toolstream", None);
    println!(
        "cores: {placement}; bare server pid {}, toolstream server pid {}",
        bare.child.id(),
        ts.child.id()
    );
    let _ = throughput(&bare, "bare", 1, 10_000).await;
    let _ = throughput(&ts, "ticks", 1, 10_000).await;
    for round in 1..=rounds {
        let load = load_average();
        let bare_1 = throughput(&bare, "bare", 1, single).await;
        let ts_1 = throughput(&ts, "ticks", 1, single).await;
        let bare_64 = throughput(&bare, "bare", 64, per_stream).await;
        let ts_64 = throughput(&ts, "ticks", 64, per_stream).await;
        println!(
            "round {round} (load {load:.2}): CPU ns/event 1 stream bare {:.0} toolstream {:.0} \
             ({}/{} delivered) cpu_ratio_1={:.3}; 64 streams bare {:.0} toolstream {:.0} \
             cpu_ratio_64={:.3}; ratio_1={:.3} ratio_64={:.3}",
            bare_1.cpu_us * 1e3,
            ts_1.cpu_us * 1e3,
            ts_1.delivered,
            ts_1.produced,
            ts_1.cpu_us / bare_1.cpu_us,
            bare_64.cpu_us * 1e3,
            ts_64.cpu_us * 1e3,
            ts_64.cpu_us / bare_64.cpu_us,
            ts_1.per_sec / bare_1.per_sec,
            ts_64.per_sec / bare_64.per_sec,
        );
    }
}

/// The recorded cost of an event (docs/benchmark.md, issue 30): each ratio of the server's CPU
/// time per delivered event, toolstream over bare tonic in the same run, as measured when it was
/// recorded (medians of six quick runs on 2026-12-07, partial results held encoded, both servers
/// on mimalloc, the bare fan-out bounded as toolstream's readers; 1-minute load 0.7–1.0). A build
/// whose ratio is more than [`BASELINE_SLACK`] above it is flagged `ABOVE` (and
/// `cost_within_baseline=0`): a feature made every event dearer.
const COST_BASELINE: [(&str, f64); 6] = [
    ("cpu_ratio_1", 0.90),
    ("cpu_ratio_64", 1.02),
    ("cpu_ratio_fanout", 1.42),
    ("cpu_ratio_partial_1", 0.96),
    ("cpu_ratio_partial_64", 0.96),
    ("fleet_cpu_ratio", 1.00),
];

/// How far above its baseline a cost ratio may be before it is flagged: the spread of three runs
/// of one build on a loaded 2-core machine.
const BASELINE_SLACK: f64 = 0.10;

/// Watchers of the fan-out run, and the events it produces in quick mode (one per millisecond).
const WATCHERS: usize = 1_000;
const FAN_COUNT: u64 = 2_000;

/// The MCP measure: sequential calls each way, and the reports of each call.
const MCP_CALLS: u64 = 200;
const MCP_TICKS: u64 = 20;

/// The fleet: concurrent runs, each reporting every 100 ms, over this many connections.
const FLEET_RUNS: usize = 10_000;
const FLEET_CONNECTIONS: usize = 100;
const FLEET_INTERVAL_US: u64 = 100_000;

async fn run(quick: bool, placement: &str, pinned: bool) {
    let load_start = load_average();
    let single = if quick { 200_000 } else { 1_000_000 };
    let per_stream = if quick { 10_000 } else { 40_000 };
    let latency_events = if quick { 3_000 } else { 10_000 };
    let idle_streams = 10_000;
    let lines = if quick { 200_000 } else { 1_000_000 };

    // The command tool's output: `lines` progress lines and a result.
    let lines_file =
        std::env::temp_dir().join(format!("toolstream-bench-{}.jsonl", std::process::id()));
    {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&lines_file).expect("lines file"));
        for i in 1..=lines {
            writeln!(
                file,
                "{{\"progress\":{},\"status\":\"line {i}/{lines}\"}}",
                i as f64 / lines as f64
            )
            .expect("write");
        }
        writeln!(file, "{{\"result\":{{\"lines\":{lines}}}}}").expect("write");
    }
    let lines_path = lines_file.display().to_string();

    let bare = ServerProcess::start("bare", None);
    let ts = ServerProcess::start("toolstream", Some(&lines_path));

    // Warm both up.
    let _ = throughput(&bare, "bare", 1, 10_000).await;
    let _ = throughput(&ts, "ticks", 1, 10_000).await;

    println!(
        "toolstream hot-path benchmark ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!("cores: {placement}; 1-minute load average at the start: {load_start:.2}");
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "measure", "bare tonic", "toolstream", "ratio"
    );

    let bare_1 = throughput(&bare, "bare", 1, single).await;
    let ts_1 = throughput(&ts, "ticks", 1, single).await;
    let bare_64 = throughput(&bare, "bare", 64, per_stream).await;
    let ts_64 = throughput(&ts, "ticks", 64, per_stream).await;
    // The physical limit: the same transport sending minimal messages.
    let min_1 = throughput(&bare, "minimal", 1, single).await;
    let min_64 = throughput(&bare, "minimal", 64, per_stream).await;
    let ratio_1 = ts_1.per_sec / bare_1.per_sec;
    let ratio_64 = ts_64.per_sec / bare_64.per_sec;
    let (ratio_min_1, ratio_min_64) =
        (ts_1.per_sec / min_1.per_sec, ts_64.per_sec / min_64.per_sec);
    for (streams, bare, min, ts, ratio, ratio_min) in [
        (1, bare_1, min_1, ts_1, ratio_1, ratio_min_1),
        (64, bare_64, min_64, ts_64, ratio_64, ratio_min_64),
    ] {
        let count = if streams == 1 { single } else { per_stream };
        println!(
            "{:<44} {:>14.0} {:>14.0} {:>8.2}",
            format!("events/s delivered, {streams} stream(s)"),
            bare.per_sec,
            ts.per_sec,
            ratio
        );
        println!(
            "{:<44} {:>14} {:>14}",
            "  events delivered / produced",
            format!("{}/{}", bare.delivered, streams * (count + 1)),
            format!("{}/{}", ts.delivered, ts.produced)
        );
        println!(
            "{:<44} {:>14.0} {:>14} {:>8.2}",
            "  bare of 64-byte messages: events/s", min.per_sec, "", ratio_min
        );
        println!(
            "{:<44} {:>14.2} {:>14.2}",
            "  server CPU per delivered event (µs)", bare.cpu_us, ts.cpu_us
        );
        println!(
            "{:<44} {:>14.2}",
            "  64-byte messages: server CPU/event (µs)", min.cpu_us
        );
    }
    let (errors_1, errors_64) = (ts_1.errors, ts_64.errors);

    let (bare_p50, bare_p99, bare_p999) = latency(bare.addr, "bare", latency_events).await;
    let (ts_p50, ts_p99, ts_p999) = latency(ts.addr, "paced", latency_events).await;
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        "latency p50 at 1,000 events/s (µs)", bare_p50, ts_p50
    );
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        "latency p99 at 1,000 events/s (µs)", bare_p99, ts_p99
    );
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        "latency p999 at 1,000 events/s (µs)", bare_p999, ts_p999
    );
    let p99_overhead = (ts_p99 - bare_p99).max(0.0);

    let partials = partial_results(&bare, &ts, quick).await;
    let mcp = mcp_face(&ts, MCP_CALLS, MCP_TICKS, single).await;
    print_mcp_face(&mcp);

    // Command tool: the tool's own run time (result − started timestamps) for `lines` lines.

    let client = ToolServiceClient::new(channel(ts.addr).await);
    let stats = read_stream(client, request("lines", json!({})), None).await;
    let lines_per_sec = lines as f64 / (stats.result_at - stats.started_at).max(1e-9);
    println!(
        "{:<44} {:>14} {:>14.0}",
        "command tool: progress lines/s parsed", "-", lines_per_sec
    );
    drop(ts);
    drop(bare);
    let _ = std::fs::remove_file(&lines_file);

    // Partial results through Redis, on fresh servers sharing a fresh redis-server.
    let redis = if quick {
        redis_partials(100_000, 3_000).await
    } else {
        redis_partials(400_000, 10_000).await
    };
    print_redis_partials(redis.as_ref());

    // Slow consumer, on a fresh server so its peak memory is this test's: the tool's run time
    // (server clock, started → result) with a fast reader and with one 100× slower than the tool.
    // The run lasts about a second (a run of a few tens of milliseconds measured the scheduler's
    // mood, not the engine); the pairs alternate and the figure is the ratio of the sums.
    let fresh = ServerProcess::start("toolstream", None);
    let slow_count: u64 = if quick { 2_000_000 } else { 5_000_000 };
    let pairs = if quick { 2 } else { 3 };
    let (mut fast_time, mut slow_time) = (0.0, 0.0);
    let mut slow = StreamStats::default();
    for _ in 0..pairs {
        let fast = read_stream(
            ToolServiceClient::new(channel(fresh.addr).await),
            request("ticks", json!({"count": slow_count, "interval_ms": 0})),
            None,
        )
        .await;
        let fast_run = fast.result_at - fast.started_at;
        fast_time += fast_run;
        // The reader pauses 100 times as long per event as the tool takes to produce one.
        let pause = Duration::from_secs_f64((fast_run / slow_count as f64 * 100.0).max(1e-6));
        slow = read_stream(
            ToolServiceClient::new(channel(fresh.addr).await),
            request("ticks", json!({"count": slow_count, "interval_ms": 0})),
            Some(pause),
        )
        .await;
        slow_time += slow.result_at - slow.started_at;
    }
    let slowdown = slow_time / fast_time.max(1e-9);
    println!(
        "{:<44} {:>14} {:>14.3}",
        "slow reader: tool run time, fast reader (s)",
        "-",
        fast_time / pairs as f64
    );
    println!(
        "{:<44} {:>14} {:>14.3}",
        "slow reader: tool run time, 100x slower (s)",
        "-",
        slow_time / pairs as f64
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "slow reader: events delivered / produced",
        "-",
        format!("{}/{}", slow.delivered, slow.produced)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "slow reader: peak server RSS (KiB)",
        "-",
        fresh.memory_kb("VmHWM:")
    );
    drop(fresh);

    let idle = ServerProcess::start("toolstream", None);
    let (kb_per_stream, idle_errors) = memory_per_stream(&idle, idle_streams).await;
    println!(
        "{:<44} {:>14} {:>14.2}",
        format!("RSS per open stream, {idle_streams} streams (KiB)"),
        "-",
        kb_per_stream
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "errors (1 stream / 64 streams / 10,000 idle)",
        "-",
        format!("{errors_1}/{errors_64}/{idle_errors}")
    );
    drop(idle);
    let watched = ServerProcess::start("toolstream", None);
    let (kb_per_watcher, watcher_errors) = memory_per_watcher(&watched, idle_streams).await;
    drop(watched);
    println!(
        "{:<44} {:>14} {:>14.2}",
        format!("RSS per watcher, {idle_streams} watchers (KiB)"),
        "-",
        kb_per_watcher
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  watchers without their first event", "-", watcher_errors
    );

    // Fan-out, on fresh servers: one detached run, a thousand watchers of it over ten
    // connections, against the bare server's broadcast producer. Both emit an event every
    // millisecond on the same timer, so the watchers together are offered up to a million
    // events/s. Below that, the figure is what the server (with these clients on the same cores)
    // can fan out: its runtime is busy, the producer's timer fires late, and the run takes longer
    // than `count` milliseconds. Watchers that fall behind would get progress coalesced
    // (delivered < watchers x produced); bare watchers that lag skip events the same way.
    let (fan_count, fan_interval_us) = if quick {
        (FAN_COUNT, 1000)
    } else {
        (5 * FAN_COUNT, 1000)
    };
    let (bare_fan, fan) = fan_out_pair(fan_count, fan_interval_us).await;
    // The headline figures are the steady state's (see `FanOutStats::window_events`); the whole
    // measure's, as measured before the window existed, stay beside them.
    let ratio_fanout = fan.window_events_per_sec() / bare_fan.window_events_per_sec().max(1e-9);
    let ratio_fanout_whole = fan.events_per_sec / bare_fan.events_per_sec.max(1e-9);
    let cpu_ratio_fanout_whole = fan.cpu_ns_per_event() / bare_fan.cpu_ns_per_event();
    let fan_rss_kb = fan.rss_peak_kb.saturating_sub(fan.rss_before_kb);
    let bare_fan_rss_kb = bare_fan.rss_peak_kb.saturating_sub(bare_fan.rss_before_kb);
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        format!("fan-out: events/s delivered, {WATCHERS} watchers"),
        bare_fan.window_events_per_sec(),
        fan.window_events_per_sec(),
        ratio_fanout
    );
    println!(
        "{:<44} {:>14.2} {:>14.2} {:>8.2}",
        "  steady state: server CPU per event (µs)",
        bare_fan.window_cpu_ns_per_event() / 1e3,
        fan.window_cpu_ns_per_event() / 1e3,
        fan.window_cpu_ns_per_event() / bare_fan.window_cpu_ns_per_event()
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  steady state: events, seconds",
        format!("{}, {:.2}", bare_fan.window_events, bare_fan.window_seconds),
        format!("{}, {:.2}", fan.window_events, fan.window_seconds)
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        "  whole measure: events/s delivered",
        bare_fan.events_per_sec,
        fan.events_per_sec,
        ratio_fanout_whole
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  events delivered / watchers x produced",
        format!(
            "{}/{}",
            bare_fan.delivered,
            WATCHERS as u64 * bare_fan.produced
        ),
        format!("{}/{}", fan.delivered, WATCHERS as u64 * fan.produced)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  produced (the run's last sequence)", bare_fan.produced, fan.produced
    );
    println!(
        "{:<44} {:>14.2} {:>14.2}",
        "  first watch to last stream end (s)", bare_fan.seconds, fan.seconds
    );
    println!(
        "{:<44} {:>14.2} {:>14.2} {:>8.2}",
        "  whole measure: server CPU per event (µs)",
        bare_fan.cpu_ns_per_event() / 1e3,
        fan.cpu_ns_per_event() / 1e3,
        cpu_ratio_fanout_whole
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  watchers with the result / gaps / errors",
        format!("{}/{}/{}", bare_fan.results, bare_fan.gaps, bare_fan.errors),
        format!("{}/{}/{}", fan.results, fan.gaps, fan.errors)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  server RSS before / growth (KiB)",
        format!("{}/{bare_fan_rss_kb}", bare_fan.rss_before_kb),
        format!("{}/{fan_rss_kb}", fan.rss_before_kb)
    );
    println!(
        "{:<44} {:>14.1} {:>14.1}",
        "  server RSS growth per watcher (KiB)",
        bare_fan_rss_kb as f64 / WATCHERS as f64,
        fan_rss_kb as f64 / WATCHERS as f64
    );

    // The fleet: many runs each reporting a few times a second, as deployments are. Fresh
    // servers, one after the other.
    let fleet_seconds = if quick { 5.0 } else { 20.0 };
    let bare_fleet = fleet("bare", fleet_seconds).await;
    let ts_fleet = fleet("toolstream", fleet_seconds).await;
    let fleet_cpu_ratio = ts_fleet.cpu_secs_per_million() / bare_fleet.cpu_secs_per_million();
    let fleet_p99_ratio = ts_fleet.p99_ms / bare_fleet.p99_ms;
    println!(
        "{:<44} {:>14} {:>14}",
        format!("fleet: {FLEET_RUNS} runs x 10/s, {fleet_seconds} s window"),
        "bare tonic",
        "toolstream"
    );
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        "  events/s received in the window",
        bare_fleet.events as f64 / bare_fleet.seconds,
        ts_fleet.events as f64 / ts_fleet.seconds
    );
    println!(
        "{:<44} {:>14.2} {:>14.2}",
        "  latency p50 (ms)", bare_fleet.p50_ms, ts_fleet.p50_ms
    );
    println!(
        "{:<44} {:>14.2} {:>14.2} {:>8.2}",
        "  latency p99 (ms)", bare_fleet.p99_ms, ts_fleet.p99_ms, fleet_p99_ratio
    );
    println!(
        "{:<44} {:>14.2} {:>14.2} {:>8.2}",
        "  server CPU s per million events",
        bare_fleet.cpu_secs_per_million(),
        ts_fleet.cpu_secs_per_million(),
        fleet_cpu_ratio
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  streams failed", bare_fleet.errors, ts_fleet.errors
    );

    // Sub-tasks: the cost of each must not grow with their number.
    let few = sub_task_cost(1_000, SubTaskPattern::Each).await;
    let many = sub_task_cost(100_000, SubTaskPattern::Each).await;
    print_sub_task_cost(&few);
    print_sub_task_cost(&many);

    // The cost of an event: the server's CPU time per delivered event, toolstream's over bare
    // tonic's sending the same message in the same run.
    let fan_cpu_ns = fan.window_cpu_ns_per_event();
    let bare_fan_cpu_ns = bare_fan.window_cpu_ns_per_event();
    let costs = [
        (
            "cpu_ratio_1",
            "1 stream",
            bare_1.cpu_us * 1e3,
            ts_1.cpu_us * 1e3,
        ),
        (
            "cpu_ratio_64",
            "64 streams",
            bare_64.cpu_us * 1e3,
            ts_64.cpu_us * 1e3,
        ),
        ("cpu_ratio_fanout", "fan-out", bare_fan_cpu_ns, fan_cpu_ns),
        (
            "cpu_ratio_partial_1",
            "partial results, 1 stream",
            partials.bare_1.cpu_us * 1e3,
            partials.ts_1.cpu_us * 1e3,
        ),
        (
            "cpu_ratio_partial_64",
            "partial results, 64 streams",
            partials.bare_64.cpu_us * 1e3,
            partials.ts_64.cpu_us * 1e3,
        ),
        (
            "fleet_cpu_ratio",
            "fleet",
            bare_fleet.cpu_secs_per_million() * 1e3,
            ts_fleet.cpu_secs_per_million() * 1e3,
        ),
    ];
    let load_end = load_average();
    println!();
    println!(
        "cost: server CPU per delivered event (ns), same run; load {load_start:.2} -> {load_end:.2}"
    );
    println!(
        "{:<44} {:>14} {:>14} {:>8} {:>10}",
        "", "bare tonic", "toolstream", "ratio", "baseline"
    );
    let mut held = true;
    for (key, what, bare_ns, ts_ns) in costs {
        let ratio = ts_ns / bare_ns;
        let baseline = COST_BASELINE
            .iter()
            .find(|(name, _)| *name == key)
            .map_or(f64::NAN, |(_, ratio)| *ratio);
        let within = ratio <= baseline * (1.0 + BASELINE_SLACK);
        held &= within;
        println!(
            "{:<44} {:>14.0} {:>14.0} {:>8.3} {:>10}",
            format!("  {what} ({key})"),
            bare_ns,
            ts_ns,
            ratio,
            format!("{baseline:.2} {}", if within { "ok" } else { "ABOVE" })
        );
    }
    println!(
        "{:<44} {:>14.2} {:>14.2} {:>8.3}",
        "  fleet latency p99 (ms) (fleet_p99_ratio)",
        bare_fleet.p99_ms,
        ts_fleet.p99_ms,
        fleet_p99_ratio
    );

    let ((partials_1, partials_64), (cpu_partial_1, cpu_partial_64)) =
        (partials.ratios(), partials.cpu_ratios());
    println!();
    println!(
        "bench: cpu_ratio_1={:.3} cpu_ratio_64={:.3} cpu_ratio_fanout={:.3} \
         cpu_ratio_partial_1={cpu_partial_1:.3} cpu_ratio_partial_64={cpu_partial_64:.3} \
         fleet_cpu_ratio={fleet_cpu_ratio:.3} fleet_p99_ratio={fleet_p99_ratio:.3} \
         cpu_per_event_ns_1={:.0} cpu_per_event_ns_64={:.0} bare_cpu_per_event_ns_1={:.0} \
         bare_cpu_per_event_ns_64={:.0} cost_within_baseline={} pinned={} load_start={load_start:.2} \
         load_end={load_end:.2} \
         ratio_1={ratio_1:.3} ratio_64={ratio_64:.3} p99_overhead_us={p99_overhead:.0} \
         rss_per_stream_kb={kb_per_stream:.2} slow_reader_tool_slowdown={slowdown:.3} \
         fanout_events_per_s={:.0} fanout_rss_growth_kb={fan_rss_kb} \
         ratio_min_1={ratio_min_1:.3} ratio_min_64={ratio_min_64:.3} \
         ratio_fanout={ratio_fanout:.3} ratio_fanout_whole={ratio_fanout_whole:.3} \
         cpu_ratio_fanout_whole={cpu_ratio_fanout_whole:.3} fleet_p50_ms={:.2} fleet_p99_ms={:.2} \
         rss_per_watcher_kb={kb_per_watcher:.2} \
         subtasks_cpu_us_per_1k={:.2} subtasks_cpu_us_per_100k={:.2} \
         subtasks_rss_mb_per_100k={:.1} subtasks_getrun_bytes_100k={} \
         ratio_partials_1={partials_1:.3} ratio_partials_64={partials_64:.3} \
         mcp_calls_per_s={:.0} mcp_call_ratio={:.3} mcp_events_per_s={:.0} \
         mcp_event_ratio={:.3} mcp_cpu_ratio={:.3} redis_partials_ratio={:.3} \
         redis_partials_per_s={:.0} redis_xadd_per_s={:.0} redis_partials_p99_ms={:.2}",
        costs[0].3 / costs[0].2,
        costs[1].3 / costs[1].2,
        costs[2].3 / costs[2].2,
        ts_1.cpu_us * 1e3,
        ts_64.cpu_us * 1e3,
        bare_1.cpu_us * 1e3,
        bare_64.cpu_us * 1e3,
        u8::from(held),
        u8::from(pinned),
        fan.window_events_per_sec(),
        ts_fleet.p50_ms,
        ts_fleet.p99_ms,
        few.cpu_us_per_sub_task,
        many.cpu_us_per_sub_task,
        many.rss_mb_per_100k,
        many.get_run.as_ref().map_or(0, |bytes| *bytes),
        mcp.mcp_calls_per_s,
        mcp.mcp_calls_per_s / mcp.grpc_calls_per_s,
        mcp.mcp_events_per_s,
        mcp.mcp_events_per_s / mcp.grpc_events_per_s,
        mcp.mcp_cpu_us / mcp.grpc_cpu_us,
        redis
            .as_ref()
            .map_or(f64::NAN, |r| r.delivered_per_s / r.xadd_per_s),
        redis.as_ref().map_or(f64::NAN, |r| r.delivered_per_s),
        redis.as_ref().map_or(f64::NAN, |r| r.xadd_per_s),
        redis.as_ref().map_or(f64::NAN, |r| r.p99_ms),
    );
}
