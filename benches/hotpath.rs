//! The hot path measured: toolstream's RunTool against a bare tonic server stream, in one run on
//! the same machine.
//!
//! `cargo bench --bench hotpath` (add `-- --quick` for a run under two minutes). Both servers run
//! in child processes (this binary started again in a serve mode) so that their memory is their
//! own; the clients run here. The bare server implements the same generated service and sends the
//! same `RunEvent` messages from a task through a channel, the idiomatic tonic stream, with the
//! same HTTP/2 settings: the ratio is the engine's cost, not the message's.
//!
//! Beside the comparison it measures fan-out: one detached run watched by 1,000 WatchRun streams.
//!
//! The last line is machine-readable:
//! `bench: ratio_1=R1 ratio_64=R64 p99_overhead_us=U rss_per_stream_kb=K slow_reader_tool_slowdown=S
//! fanout_events_per_s=F fanout_rss_growth_kb=G`

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
use toolstream::config::Limits;
use toolstream::json_proto::{json_to_struct, struct_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
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

/// The bare service: `RunTool` streams `count` progress events, `interval_us` apart (0: as fast as
/// the channel takes them), then a result. No engine, no registry, no validation.
#[derive(Clone)]
struct BareService;

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
        let arguments = struct_to_json(request.into_inner().arguments.unwrap_or_default());
        let count = arguments["count"].as_u64().unwrap_or(0);
        let interval = Duration::from_micros(arguments["interval_us"].as_u64().unwrap_or(0));
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let run_id = "bare".to_owned();
            let mut ticker = (!interval.is_zero()).then(|| tokio::time::interval(interval));
            for i in 1..=count {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let event = RunEvent {
                    run_id: run_id.clone(),
                    sequence: i,
                    timestamp: Some(now()),
                    event: Some(Event::Progress(pb::Progress {
                        progress: Some(i as f64 / count as f64),
                        status: Some(format!("tick {i}/{count}")),
                        ..pb::Progress::default()
                    })),
                };
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            let result = RunEvent {
                run_id,
                sequence: count + 1,
                timestamp: Some(now()),
                event: Some(Event::Result(pb::Result {
                    value: Some(toolstream::json_proto::json_to_value(
                        json!({"count": count}),
                    )),
                })),
            };
            let _ = sender.send(Ok(result)).await;
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

/// Serve mode: bind an ephemeral port, print it, serve until stdin closes.
fn serve(kind: &str, lines_file: Option<String>) {
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
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .initial_stream_window_size(1024 * 1024)
                .initial_connection_window_size(16 * 1024 * 1024)
                .max_concurrent_streams(16_384)
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(ToolServiceServer::new(BareService))
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .expect("bare server");
        } else {
            let limits = Limits {
                grace_period: Duration::from_millis(100),
                ..Limits::default()
            };
            Server::new(toolstream_registry(lines_file.as_deref()).await, limits)
                .serve(listener, stop)
                .await
                .expect("toolstream server");
        }
    });
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

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`; 0 when it cannot
/// be read.
fn process_cpu_secs(pid: u32) -> f64 {
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

/// Delivered events per second over `streams` concurrent streams of `count` events each, spread
/// over up to 8 connections.
async fn throughput(
    addr: SocketAddr,
    tool: &str,
    streams: usize,
    count: u64,
) -> (f64, u64, u64, u64) {
    let mut channels = Vec::new();
    for _ in 0..streams.clamp(1, 8) {
        channels.push(channel(addr).await);
    }
    let arguments = if tool == "ticks" {
        json!({"count": count, "interval_ms": 0})
    } else {
        json!({"count": count, "interval_us": 0})
    };
    let start = Instant::now();
    let runs: Vec<_> = (0..streams)
        .map(|i| {
            let client = ToolServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(read_stream(client, request(tool, arguments.clone()), None))
        })
        .collect();
    let mut delivered = 0;
    let mut produced = 0;
    let mut errors = 0;
    for run in runs {
        let stats = run.await.expect("stream task");
        delivered += stats.delivered;
        produced += stats.produced;
        errors += stats.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    (delivered as f64 / elapsed, delivered, produced, errors)
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

/// RSS per stream with `streams` idle-but-open streams, and whether all of them opened.
async fn memory_per_stream(server: &ServerProcess, streams: usize) -> (f64, u64) {
    let mut channels = Vec::new();
    for _ in 0..50 {
        channels.push(channel(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = server.memory_kb("VmRSS:");
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<bool>(streams);
    let mut holders = Vec::with_capacity(streams);
    for i in 0..streams {
        let mut client = ToolServiceClient::new(channels[i % channels.len()].clone());
        let opened = opened_tx.clone();
        holders.push(tokio::spawn(async move {
            let response = client
                .run_tool(request(
                    "ticks",
                    json!({"count": 1, "interval_ms": 600_000}),
                ))
                .await;
            match response {
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
        }));
    }
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
}

/// One detached run of `ticks` (`count` events, `interval_ms` apart) watched by `watchers` WatchRun
/// streams from its first event, spread over `connections` connections, each reading as fast as
/// it can. The server's RSS is sampled every 20 ms while the watchers are attached.
async fn fan_out(
    server: &ServerProcess,
    watchers: usize,
    connections: usize,
    count: u64,
    interval_ms: u64,
) -> FanOutStats {
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(channel(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Start the run detached and leave: from here on only the watchers read it.
    let mut start = request("ticks", json!({"count": count, "interval_ms": interval_ms}));
    start.options = Some(pb::RunOptions {
        on_disconnect: pb::OnDisconnect::Continue as i32,
        ..pb::RunOptions::default()
    });
    let response = ToolServiceClient::new(channels[0].clone())
        .run_tool(start)
        .await
        .expect("start the watched run");
    let run_id = response
        .metadata()
        .get("x-run-id")
        .and_then(|value| value.to_str().ok())
        .expect("x-run-id")
        .to_owned();
    drop(response);

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
    let tasks: Vec<_> = (0..watchers)
        .map(|i| {
            let mut client = RunServiceClient::new(channels[i % channels.len()].clone());
            let run_id = run_id.clone();
            tokio::spawn(async move {
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
                            stats.delivered += 1;
                            stats.last_sequence = event.sequence;
                            stats.got_result |= matches!(other, Some(Event::Result(_)));
                        }
                    }
                }
                (stats, Instant::now())
            })
        })
        .collect();
    let mut total = FanOutStats {
        rss_before_kb,
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
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(quick));
}

/// Watchers of the fan-out run, and the events it produces in quick mode (one per millisecond).
const WATCHERS: usize = 1_000;
const FAN_COUNT: u64 = 2_000;

async fn run(quick: bool) {
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
    let _ = throughput(bare.addr, "bare", 1, 10_000).await;
    let _ = throughput(ts.addr, "ticks", 1, 10_000).await;

    println!(
        "toolstream hot-path benchmark ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "measure", "bare tonic", "toolstream", "ratio"
    );

    let (bare_1, bare_delivered_1, _, _) = throughput(bare.addr, "bare", 1, single).await;
    let (ts_1, delivered_1, produced_1, errors_1) = throughput(ts.addr, "ticks", 1, single).await;
    let ratio_1 = ts_1 / bare_1;
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        "events/s delivered, 1 stream", bare_1, ts_1, ratio_1
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  events delivered / produced",
        format!("{bare_delivered_1}/{}", single + 1),
        format!("{delivered_1}/{produced_1}")
    );

    let (bare_64, bare_delivered_64, _, _) = throughput(bare.addr, "bare", 64, per_stream).await;
    let (ts_64, delivered_64, produced_64, errors_64) =
        throughput(ts.addr, "ticks", 64, per_stream).await;
    let ratio_64 = ts_64 / bare_64;
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8.2}",
        "events/s delivered, 64 streams", bare_64, ts_64, ratio_64
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  events delivered / produced",
        format!("{bare_delivered_64}/{}", 64 * (per_stream + 1)),
        format!("{delivered_64}/{produced_64}")
    );

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

    // Slow consumer, on a fresh server so its peak memory is this test's: the tool's run time
    // (server clock, started → result) with a fast reader and with one 100× slower than the tool.
    let fresh = ServerProcess::start("toolstream", None);
    let slow_count: u64 = if quick { 100_000 } else { 400_000 };
    let fast = read_stream(
        ToolServiceClient::new(channel(fresh.addr).await),
        request("ticks", json!({"count": slow_count, "interval_ms": 0})),
        None,
    )
    .await;
    let fast_time = fast.result_at - fast.started_at;
    // The reader pauses 100 times as long per event as the tool takes to produce one.
    let pause = Duration::from_secs_f64((fast_time / slow_count as f64 * 100.0).max(1e-6));
    let slow = read_stream(
        ToolServiceClient::new(channel(fresh.addr).await),
        request("ticks", json!({"count": slow_count, "interval_ms": 0})),
        Some(pause),
    )
    .await;
    let slow_time = slow.result_at - slow.started_at;
    let slowdown = slow_time / fast_time.max(1e-9);
    println!(
        "{:<44} {:>14} {:>14.3}",
        "slow reader: tool run time, fast reader (s)", "-", fast_time
    );
    println!(
        "{:<44} {:>14} {:>14.3}",
        "slow reader: tool run time, 100x slower (s)", "-", slow_time
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

    // Fan-out, on a fresh server: one detached run, a thousand watchers of it over ten
    // connections. `ticks` asks for an event every millisecond, so the watchers together are
    // offered up to a million events/s. Below that, the figure is what the server (with these
    // clients on the same cores) can fan out: its runtime is busy, the tool's timer fires late,
    // and the run takes longer than `count` milliseconds. Watchers that fall behind would get
    // progress coalesced (delivered < watchers x produced).
    let fresh = ServerProcess::start("toolstream", None);
    let (fan_count, fan_interval_ms) = if quick {
        (FAN_COUNT, 1)
    } else {
        (5 * FAN_COUNT, 1)
    };
    let fan = fan_out(&fresh, WATCHERS, 10, fan_count, fan_interval_ms).await;
    drop(fresh);
    let fan_rss_kb = fan.rss_peak_kb.saturating_sub(fan.rss_before_kb);
    println!(
        "{:<44} {:>14} {:>14.0}",
        format!("fan-out: events/s delivered, {WATCHERS} watchers"),
        "-",
        fan.events_per_sec
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  events delivered / watchers x produced",
        "-",
        format!("{}/{}", fan.delivered, WATCHERS as u64 * fan.produced)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  produced (the run's last sequence)", "-", fan.produced
    );
    println!(
        "{:<44} {:>14} {:>14.2}",
        "  first watch to last stream end (s)", "-", fan.seconds
    );
    println!(
        "{:<44} {:>14} {:>14.2}",
        "  server CPU per delivered event (µs)",
        "-",
        fan.server_cpu_secs * 1e6 / fan.delivered.max(1) as f64
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  watchers with the result / gaps / errors",
        "-",
        format!("{}/{}/{}", fan.results, fan.gaps, fan.errors)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  server RSS before / growth (KiB)",
        "-",
        format!("{}/{fan_rss_kb}", fan.rss_before_kb)
    );
    println!(
        "{:<44} {:>14} {:>14.1}",
        "  server RSS growth per watcher (KiB)",
        "-",
        fan_rss_kb as f64 / WATCHERS as f64
    );

    println!();
    println!(
        "bench: ratio_1={ratio_1:.3} ratio_64={ratio_64:.3} p99_overhead_us={p99_overhead:.0} \
         rss_per_stream_kb={kb_per_stream:.2} slow_reader_tool_slowdown={slowdown:.3} \
         fanout_events_per_s={:.0} fanout_rss_growth_kb={fan_rss_kb}",
        fan.events_per_sec
    );
}
