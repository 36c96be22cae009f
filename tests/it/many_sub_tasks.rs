//! A command tool with many sub-tasks (tests/tools/many_sub_tasks.py): the server stays
//! responsive while such a run goes and finishes, what a run holds and is sent as does not grow
//! with its sub-tasks, the cap on live sub-tasks fails the run with an error naming it, and
//! SIGTERM while such a run finishes still ends the server within its grace. On Redis, the run's
//! record does not grow with its sub-tasks either, and another replica shows its progress.

use crate::common;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use crate::common::{TestServer, collect, eventually, redis_store, result_value, run_request};
use prost::Message;
use redis::AsyncCommands;
use serde_json::json;
use tonic::Code;
use toolstream::config::{Config, Overrides};
use toolstream::configured_tools::build_registry;
use toolstream::pb;
use toolstream::pb::run_service_client::RunServiceClient;

/// A bound on waits that end by themselves, so a regression fails instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// `toolstream.toml` declaring the `many` command tool, with `runs` as its `[runs]` table.
fn config_text(runs: &str) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("tests/tools/many_sub_tasks.py");
    format!(
        "[runs]\n{runs}\n\n[[tools]]\nkind = \"command\"\nname = \"many\"\n\
         command = [\"python3\", {script:?}]\n"
    )
}

/// Writes the config in a new directory; its path.
fn write_config(runs: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(&path, config_text(runs)).unwrap();
    (dir, path)
}

/// A test server with the `many` tool and the limits of `runs` (a `[runs]` table).
async fn start(runs: &str) -> (tempfile::TempDir, TestServer) {
    let (dir, path) = write_config(runs);
    let overrides = Overrides {
        root: Some(dir.path().to_owned()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), overrides).unwrap();
    let registry = build_registry(&config).await.unwrap();
    let server = TestServer::start_with(registry, config.limits).await;
    (dir, server)
}

/// A replica named `name` on `redis`, with the `many` tool and default limits.
async fn start_on_redis(redis: &RedisServer, name: &str) -> (tempfile::TempDir, TestServer) {
    let (dir, path) = write_config("");
    let overrides = Overrides {
        root: Some(dir.path().to_owned()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), overrides).unwrap();
    let registry = build_registry(&config).await.unwrap();
    let server =
        TestServer::start_with_store(registry, config.limits, &redis_store(redis, name)).await;
    (dir, server)
}

/// The encoded sizes of GetRun of `run_id` and of ListRuns with page_size 1 (whose run is the
/// newest: this one); both must succeed.
async fn snapshot_sizes(server: &TestServer, run_id: &str) -> (usize, usize) {
    let mut runs = RunServiceClient::new(server.channel().await);
    let run = runs
        .get_run(pb::GetRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .expect("GetRun")
        .into_inner();
    assert_eq!(run.state(), pb::RunState::Succeeded);
    let page = runs
        .list_runs(pb::ListRunsRequest {
            page_size: 1,
            ..pb::ListRunsRequest::default()
        })
        .await
        .expect("ListRuns page_size=1")
        .into_inner();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.runs[0].run_id, run_id);
    (run.encoded_len(), page.encoded_len())
}

/// Runs `many` with `count` sub-tasks opened first and left open (they end with the tool),
/// while another connection asks the server for its tools and `/healthz` again and again.
/// Returns the run id and how many of those calls were answered while the run went.
async fn run_all_open(server: &TestServer, count: u64) -> (String, u64) {
    let answered = Arc::new(AtomicU64::new(0));
    let mut client = server.client().await;
    let response = client
        .run_tool(run_request(
            "many",
            json!({"count": count, "pattern": "all"}),
        ))
        .await
        .expect("RunTool");
    let run_id = common::x_run_id(response.metadata());
    let prober = {
        let answered = Arc::clone(&answered);
        let mut tools = server.client().await;
        let healthz = format!("{}/healthz", server.url());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let listed = tokio::time::timeout(
                    HANG_GUARD,
                    tools.list_tools(pb::ListToolsRequest::default()),
                )
                .await
                .expect("ListTools answers while the run goes");
                assert!(listed.is_ok(), "{listed:?}");
                let health = tokio::time::timeout(HANG_GUARD, http.get(&healthz).send())
                    .await
                    .expect("/healthz answers while the run goes")
                    .expect("/healthz");
                assert!(health.status().is_success(), "{}", health.status());
                answered.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let (events, status) = tokio::time::timeout(HANG_GUARD, collect(response.into_inner()))
        .await
        .expect("the run ends");
    assert!(status.is_none(), "{status:?}");
    let result = events.last().and_then(result_value);
    assert_eq!(result, Some(json!({"sub_tasks": count})));
    // One more answer after the end: the prober was not stuck behind the run.
    let seen = answered.load(Ordering::Relaxed);
    eventually(HANG_GUARD, "a call answered after the run", async || {
        answered.load(Ordering::Relaxed) > seen || prober.is_finished()
    })
    .await;
    assert!(
        !prober.is_finished(),
        "the prober failed: {:?}",
        prober.await
    );
    prober.abort();
    (run_id, answered.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_open_sub_tasks_end_with_the_tool_while_the_server_answers_and_the_run_stays_small() {
    let (_dir, server) = start("max_live_calls_per_run = 40000").await;
    let (small_run, _) = run_all_open(&server, 1_000).await;
    let (small_get, small_list) = snapshot_sizes(&server, &small_run).await;

    let (big_run, answered) = run_all_open(&server, 30_000).await;
    assert!(answered > 0);
    // Every sub-task finished with the tool: none is held as live.
    assert_eq!(server.engine.live_calls(&big_run), Some(0));
    assert!(server.engine.held_events(&big_run).unwrap() <= 10_000);
    let (big_get, big_list) = snapshot_sizes(&server, &big_run).await;
    // Thirty times the sub-tasks, the same run to send: the size does not grow with them.
    assert!(
        big_get <= 2 * small_get && big_list <= 2 * small_list,
        "GetRun {small_get} -> {big_get} bytes, ListRuns {small_list} -> {big_list} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_tasks_past_the_live_limit_fail_the_run_with_an_error_naming_it() {
    let (_dir, server) = start("max_live_calls_per_run = 100").await;
    let mut client = server.client().await;

    // Opened and finished one after the other: never more than one live, any number in all.
    let stream = client
        .run_tool(run_request(
            "many",
            json!({"count": 1_000, "pattern": "each"}),
        ))
        .await
        .expect("RunTool")
        .into_inner();
    let (events, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        events.last().and_then(result_value),
        Some(json!({"sub_tasks": 1_000}))
    );

    // 200 open at once: the 101st is refused and the run fails, saying which limit.
    let stream = client
        .run_tool(run_request("many", json!({"count": 200, "pattern": "all"})))
        .await
        .expect("RunTool")
        .into_inner();
    let (events, status) = collect(stream).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("max_live_calls_per_run") && status.message().contains("100"),
        "{}",
        status.message()
    );
    let past_the_limit = common::progress_nodes(&events)
        .into_iter()
        .filter(|(call_id, ..)| call_id.parse::<u32>().is_ok_and(|id| id > 100))
        .count();
    assert_eq!(
        past_the_limit, 0,
        "no sub-task past the limit reached the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_run_with_many_sub_tasks_finishes_ends_the_server_within_its_grace() {
    let grace = Duration::from_secs(2);
    let (dir, path) = write_config("max_live_calls_per_run = 40000");
    let printed = dir.path().join("printed");
    let mut served = common::binary::serve(
        dir.path(),
        &[
            "--config",
            path.to_str().unwrap(),
            "--grace-period-secs",
            &grace.as_secs().to_string(),
        ],
        &[],
    )
    .serving();
    let mut client =
        pb::tool_service_client::ToolServiceClient::connect(format!("http://{}", served.addr))
            .await
            .expect("connect");
    // The caller's stream stays open (and unread) through the shutdown.
    let _stream = client
        .run_tool(run_request(
            "many",
            json!({"count": 20_000, "pattern": "all", "printed": printed}),
        ))
        .await
        .expect("RunTool");
    // The tool printed every line and ends: the server reads the last ones and finishes the run.
    eventually(HANG_GUARD, "the tool printed its lines", async || {
        printed.exists()
    })
    .await;
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(served.child.id() as libc::pid_t, libc::SIGTERM);
    }
    // The promise: runs get the grace, then are cancelled; closing connections and stopping
    // processes add their own bounded waits, not the length of a run's work.
    let bound = grace * 4 + Duration::from_secs(10);
    let mut exit = None;
    eventually(bound, "the server exits after SIGTERM", async || {
        exit = served.child.try_wait().expect("wait");
        exit.is_some()
    })
    .await;
    assert!(exit.is_some_and(|status| status.success()), "{exit:?}");
}

/// The call id and fraction of each progress node of `run_id`'s GetRun through `server`, once
/// the run succeeded there.
async fn progress_once_succeeded(server: &TestServer, run_id: &str) -> Vec<(String, Option<f64>)> {
    let runs = RunServiceClient::new(server.channel().await);
    let get = || {
        let mut runs = runs.clone();
        let request = pb::GetRunRequest {
            run_id: run_id.to_owned(),
        };
        async move { runs.get_run(request).await.map(|r| r.into_inner()) }
    };
    eventually(HANG_GUARD, "the run succeeded on the replica", || async {
        get()
            .await
            .is_ok_and(|run| run.state() == pb::RunState::Succeeded)
    })
    .await;
    // Succeeded is final: this is the run as it stays.
    let run = get().await.expect("GetRun");
    run.progress
        .iter()
        .map(|node| (node.call_id.clone(), node.progress))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_finished_sub_tasks_leave_the_run_s_record_and_another_replica_shows_its_progress()
{
    let redis = RedisServer::start();
    let (_dir_a, a) = start_on_redis(&redis, "alpha").await;
    let (_dir_b, b) = start_on_redis(&redis, "beta").await;
    let count = 2_000;
    let response = a
        .client()
        .await
        .run_tool(run_request(
            "many",
            json!({"count": count, "pattern": "each"}),
        ))
        .await
        .expect("RunTool");
    let run_id = common::x_run_id(response.metadata());
    let (events, status) = tokio::time::timeout(HANG_GUARD, collect(response.into_inner()))
        .await
        .expect("the run ends");
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        events.last().and_then(result_value),
        Some(json!({"sub_tasks": count}))
    );

    // Through the other replica (which reads the run's record in Redis) as on the one that ran
    // it: the top level, complete, and no sub-task (each finished and was folded).
    let through_b = progress_once_succeeded(&b, &run_id).await;
    assert_eq!(through_b, vec![(String::new(), Some(1.0))]);
    assert_eq!(progress_once_succeeded(&a, &run_id).await, through_b);

    // The record holds the latest progress of live calls only: its size does not depend on how
    // many sub-tasks the run had.
    let record = format!("test:run:{run_id}");
    let fields: Vec<String> = redis.connection().await.hkeys(&record).await.unwrap();
    let progress_fields: Vec<&String> = fields.iter().filter(|f| f.starts_with("p:")).collect();
    assert!(
        progress_fields.len() <= 1,
        "{} progress fields in {record} after {count} sub-tasks (first: {:?})",
        progress_fields.len(),
        progress_fields.iter().take(5).collect::<Vec<_>>()
    );
    assert!(fields.len() <= 20, "{} fields in {record}", fields.len());
}
