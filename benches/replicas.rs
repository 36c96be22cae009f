//! Several replicas sharing runs through Redis, measured: a real `redis-server` (no persistence)
//! and two replicas (`a` runs the tools, `b` only watches) served from this process with the
//! Redis store, and Rust tonic clients (started with the integration tests' helpers).
//!
//! `cargo bench --bench replicas` (add `-- --quick` for a shorter run; about 20 s and 1 minute
//! once built). It measures:
//!
//! 1. throughput: one run of `ticks` with no pause (`interval_ms` 0) on `a`, read by its caller on
//!    `a` and watched from the start on `b`: events the run produced per second (its last
//!    sequence over the time from the call to the caller's last event) and events delivered to
//!    the watcher on `b` per second (events received, gaps excluded, over the time from the call
//!    to the watcher's last event). What `b` gets is what Redis holds: progress coalesced as the
//!    run's writer batches it.
//! 2. latency at 1,000 events/s: a bench-only `paced` tool on `a` reports 1,000 times a second;
//!    for each progress event the watcher on `b` receives, the time from the event's timestamp
//!    (taken when the tool reported it) to its arrival, p50/p99/p999 (same machine, same clock).
//! 3. Redis memory: `used_memory` (INFO memory) before and after N finished runs of `ticks`, for
//!    runs of 1 event and of 500 events (`interval_ms` 1), the entries their streams hold
//!    (XLEN), and from the two sizes the cost of a run apart from its events and of one entry.
//!
//! 4. 1 and 2 again through a TLS-only redis-server (`rediss://`, certificates made here), and
//!    through a Redis Cluster of three primaries (`redis+cluster://`, made with `redis-cli
//!    --cluster create`), in the same run, so that plain, TLS and cluster compare on one machine
//!    at one time.
//!
//! The last line is machine-readable:
//! `bench: redis_produced_per_s=P redis_delivered_per_s=D redis_p50_ms=M redis_p99_ms=N
//! redis_bytes_per_run=R redis_bytes_per_event=E redis_bytes_run_base=B
//! redis_tls_produced_per_s=P redis_tls_delivered_per_s=D redis_tls_p50_ms=M redis_tls_p99_ms=N
//! redis_cluster_produced_per_s=P redis_cluster_delivered_per_s=D redis_cluster_p50_ms=M
//! redis_cluster_p99_ms=N`
//! (`redis_bytes_per_run` for a run of 500 events; `redis_bytes_per_event` per stream entry).

// The integration tests' helpers: a redis-server, servers in this process, RunService calls.
#[allow(dead_code)] // the benchmark uses part of them
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::certs::TestPki;
use common::redis_cluster::RedisCluster;
use common::redis_server::{RedisServer, Secured, ServerTlsFiles};
use common::runs::{run_id_of, watch};
use common::{TestServer, redis_store, registry_with, run_request};
use serde_json::json;
use toolstream::config::{Limits, StoreConfig};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::registry::ToolRegistry;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, ToolError};

/// The key prefix of the replicas' store (`common::redis_store`).
const PREFIX: &str = "test:";

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PacedArgs {
    count: u64,
    per_sec: u64,
}

/// The built-in tools and `paced`, which reports `count` times at `per_sec` a second on a tokio
/// interval (a late tick is made up, so the average rate holds).
fn registry() -> ToolRegistry {
    let paced = tool_fn(
        "paced",
        "Reports `count` times at `per_sec` a second.",
        |args: PacedArgs, progress: Progress| async move {
            let mut ticker =
                tokio::time::interval(Duration::from_secs(1) / args.per_sec.max(1) as u32);
            for i in 1..=args.count {
                ticker.tick().await;
                progress.report(i as f64 / args.count as f64, format!("event {i}"));
            }
            Ok::<_, ToolError>(json!({"count": args.count}))
        },
    );
    let root = std::env::current_dir().expect("cwd");
    registry_with(&root, vec![Arc::new(paced)])
}

/// Starts a replica named `name` on `redis` in this process.
async fn replica(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::start_with_store(registry(), Limits::default(), &redis_store(redis, name)).await
}

/// Starts `tool` on `a`: its run id, and a task reading the caller's stream to its end that
/// returns the last sequence and when it arrived.
async fn start(
    a: &TestServer,
    tool: &str,
    arguments: serde_json::Value,
) -> (String, tokio::task::JoinHandle<(u64, Instant)>) {
    let response = a
        .client()
        .await
        .run_tool(run_request(tool, arguments))
        .await
        .expect("RunTool");
    let run_id = run_id_of(&response);
    let mut stream = response.into_inner();
    let caller = tokio::spawn(async move {
        let mut last = 0;
        while let Some(event) = stream.message().await.expect("the caller's stream") {
            last = last.max(event.sequence);
        }
        (last, Instant::now())
    });
    (run_id, caller)
}

/// WatchRun of `run_id` on `b` from the start.
async fn watch_on(b: &TestServer, run_id: &str) -> tonic::Streaming<toolstream::pb::RunEvent> {
    watch(&mut RunServiceClient::new(b.channel().await), run_id, 0).await
}

struct Throughput {
    produced: u64,
    delivered: u64,
    produced_per_s: f64,
    delivered_per_s: f64,
}

async fn throughput(a: &TestServer, b: &TestServer, count: u64) -> Throughput {
    let begin = Instant::now();
    let (run_id, caller) = start(a, "ticks", json!({"count": count, "interval_ms": 0})).await;
    let mut watcher = watch_on(b, &run_id).await;
    let mut delivered = 0u64;
    while let Some(event) = watcher.message().await.expect("the watcher's stream") {
        if event.sequence > 0 {
            delivered += 1;
        }
    }
    let watched = begin.elapsed().as_secs_f64();
    let (produced, ended) = caller.await.expect("caller");
    Throughput {
        produced,
        delivered,
        produced_per_s: produced as f64 / (ended - begin).as_secs_f64(),
        delivered_per_s: delivered as f64 / watched,
    }
}

/// Milliseconds from each progress event's timestamp to its arrival on `b`, sorted.
async fn latencies(a: &TestServer, b: &TestServer, count: u64) -> Vec<f64> {
    let (run_id, caller) = start(a, "paced", json!({"count": count, "per_sec": 1000})).await;
    let mut watcher = watch_on(b, &run_id).await;
    let mut millis = Vec::with_capacity(count as usize);
    while let Some(event) = watcher.message().await.expect("the watcher's stream") {
        let received = SystemTime::now();
        if let (Some(Event::Progress(_)), Some(stamp)) = (&event.event, &event.timestamp) {
            let sent =
                SystemTime::UNIX_EPOCH + Duration::new(stamp.seconds as u64, stamp.nanos as u32);
            let delay = received.duration_since(sent).unwrap_or_default();
            millis.push(delay.as_secs_f64() * 1000.0);
        }
    }
    caller.await.expect("caller");
    millis.sort_by(f64::total_cmp);
    millis
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

struct Footprint {
    bytes_per_run: f64,
    entries_per_run: f64,
}

/// Redis memory per finished run of `ticks` with `count` events: `runs` runs, 10 at a time.
async fn footprint(
    redis: &RedisServer,
    a: &TestServer,
    runs: usize,
    count: u64,
    interval_ms: u64,
) -> Footprint {
    let mut conn = redis.connection().await;
    let before = used_memory(&mut conn).await;
    let mut run_ids = Vec::with_capacity(runs);
    for wave in 0..runs.div_ceil(10) {
        let mut callers = Vec::new();
        for _ in wave * 10..((wave + 1) * 10).min(runs) {
            let arguments = json!({"count": count, "interval_ms": interval_ms});
            let (run_id, caller) = start(a, "ticks", arguments).await;
            run_ids.push(run_id);
            callers.push(caller);
        }
        for caller in callers {
            caller.await.expect("caller");
        }
    }
    let after = used_memory(&mut conn).await;
    let mut entries = 0u64;
    for run_id in &run_ids {
        let length: u64 = redis::cmd("XLEN")
            .arg(format!("{PREFIX}run:{run_id}:events"))
            .query_async(&mut conn)
            .await
            .expect("XLEN");
        entries += length;
    }
    Footprint {
        bytes_per_run: (after - before) as f64 / runs as f64,
        entries_per_run: entries as f64 / runs as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; a build of every target starts this binary without it.
    if !args.iter().any(|a| a == "--bench") {
        println!("replicas: benchmark not run (use `cargo bench --bench replicas [-- --quick]`)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(quick));
}

async fn run(quick: bool) {
    let (events, latency_events, runs) = if quick {
        (1_000_000, 3_000, 100)
    } else {
        (4_000_000, 10_000, 400)
    };
    let redis = RedisServer::start();
    let a = replica(&redis, "a").await;
    let b = replica(&redis, "b").await;
    println!(
        "replicas bench ({}): redis-server {} (no persistence), replicas a={} b={}, in this \
         process",
        if quick { "quick" } else { "full" },
        redis.url(),
        a.addr,
        b.addr
    );

    let flow = throughput(&a, &b, events).await;
    println!(
        "throughput, ticks count={events} on a, watched on b: produced {} events ({:.0}/s), \
         b received {} ({:.0}/s, {:.3}% of them: one call's progress coalesced per write)",
        flow.produced,
        flow.produced_per_s,
        flow.delivered,
        flow.delivered_per_s,
        100.0 * flow.delivered as f64 / flow.produced as f64
    );

    let millis = latencies(&a, &b, latency_events).await;
    let (p50, p99, p999) = (
        percentile(&millis, 0.50),
        percentile(&millis, 0.99),
        percentile(&millis, 0.999),
    );
    println!(
        "latency at 1,000 events/s, report on a -> arrival on b: {} of {latency_events} progress \
         events received, p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms",
        millis.len()
    );

    let small = footprint(&redis, &a, runs, 1, 0).await;
    let large = footprint(&redis, &a, runs, 500, 1).await;
    let per_entry = (large.bytes_per_run - small.bytes_per_run)
        / (large.entries_per_run - small.entries_per_run);
    let base = small.bytes_per_run - per_entry * small.entries_per_run;
    println!(
        "redis memory, {runs} finished runs each: ticks count=1: {:.0} B/run ({:.1} entries); \
         ticks count=500: {:.0} B/run ({:.1} entries); so {per_entry:.0} B per entry + {base:.0} \
         B per run",
        small.bytes_per_run, small.entries_per_run, large.bytes_per_run, large.entries_per_run
    );

    // The same through TLS.
    let pki = TestPki::new();
    let tls_redis = RedisServer::start_secured(Secured {
        tls: Some(ServerTlsFiles {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            ca: pki.ca_file.clone(),
        }),
        ..Secured::default()
    });
    let tls_store = |name: &str| StoreConfig {
        ca_pem: Some(pki.ca.pem.as_bytes().to_vec()),
        ..redis_store(&tls_redis, name)
    };
    let tls_a = TestServer::start_with_store(registry(), Limits::default(), &tls_store("a")).await;
    let tls_b = TestServer::start_with_store(registry(), Limits::default(), &tls_store("b")).await;
    let tls_flow = throughput(&tls_a, &tls_b, events).await;
    let tls_millis = latencies(&tls_a, &tls_b, latency_events).await;
    let (tls_p50, tls_p99) = (percentile(&tls_millis, 0.50), percentile(&tls_millis, 0.99));
    println!(
        "through TLS ({}): produced {:.0}/s, b received {:.0}/s; latency at 1,000 events/s p50 \
         {tls_p50:.2} ms, p99 {tls_p99:.2} ms",
        tls_redis.url(),
        tls_flow.produced_per_s,
        tls_flow.delivered_per_s
    );

    // The same through a Redis Cluster of three primaries.
    let cluster = RedisCluster::start(3, 0);
    let cluster_store = |name: &str| StoreConfig {
        key_prefix: "bench:".into(),
        replica_name: Some(name.into()),
        ..StoreConfig::redis(cluster.url())
    };
    let cluster_a =
        TestServer::start_with_store(registry(), Limits::default(), &cluster_store("a")).await;
    let cluster_b =
        TestServer::start_with_store(registry(), Limits::default(), &cluster_store("b")).await;
    let cluster_flow = throughput(&cluster_a, &cluster_b, events).await;
    let cluster_millis = latencies(&cluster_a, &cluster_b, latency_events).await;
    let (cluster_p50, cluster_p99) = (
        percentile(&cluster_millis, 0.50),
        percentile(&cluster_millis, 0.99),
    );
    println!(
        "through a cluster of three primaries ({}): produced {:.0}/s, b received {:.0}/s; \
         latency at 1,000 events/s p50 {cluster_p50:.2} ms, p99 {cluster_p99:.2} ms",
        cluster.url(),
        cluster_flow.produced_per_s,
        cluster_flow.delivered_per_s
    );

    println!();
    println!(
        "bench: redis_produced_per_s={:.0} redis_delivered_per_s={:.0} redis_p50_ms={p50:.2} \
         redis_p99_ms={p99:.2} redis_bytes_per_run={:.0} redis_bytes_per_event={per_entry:.0} \
         redis_bytes_run_base={base:.0} redis_tls_produced_per_s={:.0} \
         redis_tls_delivered_per_s={:.0} redis_tls_p50_ms={tls_p50:.2} redis_tls_p99_ms={tls_p99:.2} \
         redis_cluster_produced_per_s={:.0} redis_cluster_delivered_per_s={:.0} \
         redis_cluster_p50_ms={cluster_p50:.2} redis_cluster_p99_ms={cluster_p99:.2}",
        flow.produced_per_s,
        flow.delivered_per_s,
        large.bytes_per_run,
        tls_flow.produced_per_s,
        tls_flow.delivered_per_s,
        cluster_flow.produced_per_s,
        cluster_flow.delivered_per_s
    );
}
