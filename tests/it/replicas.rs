//! Several replicas sharing one Redis: a run executing on one replica is got, listed, watched and
//! cancelled through another; a killed replica's runs end UNAVAILABLE naming it; without Redis a
//! replica is NOT_SERVING and refuses new runs naming the store, then recovers; every key
//! expires; a run's stream is bounded and says so; a replayed write is refused.

use crate::common;
use std::time::Duration;

use crate::common::alone::in_own_process;
use crate::common::redis_server::RedisServer;
use crate::common::runs::{
    cancel, detached, get, run_id_of, wait_for_run, watch, watch_in_background,
};
use crate::common::{
    TestServer, collect, eventually, redis_store, registry_with, result_value, run_request,
    with_token,
};
use redis::AsyncCommands;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use toolstream::config::{Limits, StoreConfig};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::pb::{CancelRunRequest, ListRunsRequest, RunState};

/// Generous: the limit of every wait-until loop (never a timing assertion).
const WAIT: Duration = Duration::from_secs(30);

/// A replica named `name` on `redis`. (A lease of a few seconds: short enough for the sweeper
/// to run often, long enough that a busy test machine never makes a live replica look lost.)
async fn replica(redis: &RedisServer, name: &str, limits: Limits) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let store = StoreConfig {
        lease: Duration::from_secs(5),
        ..redis_store(redis, name)
    };
    TestServer::start_with_store(registry_with(&root, vec![]), limits, &store).await
}

async fn runs(server: &TestServer) -> RunServiceClient<Channel> {
    RunServiceClient::new(server.channel().await)
}

/// Starts a detached run on `tools` and returns its id once its first event arrived.
async fn start_detached(
    tools: &mut ToolServiceClient<Channel>,
    arguments: serde_json::Value,
) -> String {
    let response = tools
        .run_tool(detached("ticks", arguments))
        .await
        .expect("RunTool");
    let run_id = run_id_of(&response);
    let mut stream = response.into_inner();
    stream.message().await.unwrap().expect("the started event");
    run_id
}

async fn health(server: &TestServer) -> ServingStatus {
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: "toolstream.v1.ToolService".into(),
        })
        .await
        .map(|response| response.into_inner().status())
        .unwrap_or(ServingStatus::Unknown)
}

async fn wait_for_health(server: &TestServer, wanted: ServingStatus) {
    eventually(WAIT, &format!("health to become {wanted:?}"), || async {
        health(server).await == wanted
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_one_replica_is_got_listed_watched_and_cancelled_through_another() {
    let redis = RedisServer::start();
    let a = replica(&redis, "alpha", Limits::default()).await;
    let b = replica(&redis, "beta", Limits::default()).await;
    let run_id = start_detached(
        &mut a.client().await,
        json!({"count": 1000000, "interval_ms": 5}),
    )
    .await;

    let mut through_b = runs(&b).await;
    let run = get(&mut through_b, &run_id)
        .await
        .expect("B knows the run A started");
    assert_eq!(run.state(), RunState::Running);
    assert_eq!(run.tool, "ticks");
    let listed = through_b
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1);
    assert_eq!(listed.runs[0].run_id, run_id);

    let mut watcher = watch(&mut through_b, &run_id, 0).await;
    let first = watcher.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Started(_))));
    let live = watcher.message().await.unwrap().unwrap();
    assert!(matches!(live.event, Some(Event::Progress(_))));
    let watcher = tokio::spawn(collect(watcher));

    let cancelled = cancel(&mut through_b, &run_id).await.unwrap();
    assert_eq!(cancelled.state(), RunState::Cancelled);
    assert_eq!(cancelled.error_code, Code::Cancelled as i32);
    assert!(
        cancelled.error_message.contains("CancelRun"),
        "{}",
        cancelled.error_message
    );
    let (_, status) = watcher.await.unwrap();
    let status = status.expect("the watcher on B ends with a status");
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(status.message(), cancelled.error_message);
    // A, which ran it, agrees.
    let on_a = get(&mut runs(&a).await, &run_id).await.unwrap();
    assert_eq!(on_a.state(), RunState::Cancelled);
    assert_eq!(on_a.error_message, cancelled.error_message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_s_runs_end_unavailable_naming_it() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toolstream.toml");
    std::fs::write(
        &config,
        format!(
            "[runs]\nstore = \"{}\"\nkey_prefix = \"test:\"\nlease_secs = 1\nreplica_name = \"doomed\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let mut a =
        common::binary::serve(dir.path(), &["--config", config.to_str().unwrap()], &[]).serving();
    let b = replica(&redis, "survivor", Limits::default()).await;

    let mut tools = ToolServiceClient::connect(format!("http://{}", a.addr))
        .await
        .unwrap();
    let run_id = start_detached(&mut tools, json!({"count": 1000000, "interval_ms": 10})).await;
    let mut through_b = runs(&b).await;
    let watcher = watch_in_background(&mut through_b, &run_id).await;

    a.child.kill().expect("kill the replica");
    a.child.wait().unwrap();

    let (_, status) = watcher.await.unwrap();
    let status = status.expect("the watcher ends with a status, not silence");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("doomed"), "{}", status.message());
    let run = get(&mut through_b, &run_id).await.unwrap();
    assert_eq!(run.state(), RunState::Failed);
    assert_eq!(run.error_code, Code::Unavailable as i32);
    assert_eq!(run.error_message, status.message());
    assert!(run.end_time.is_some());
    // A watcher that comes later replays the run and ends the same way.
    let (replay, status) = collect(watch(&mut through_b, &run_id, 0).await).await;
    assert!(matches!(replay[0].event, Some(Event::Started(_))));
    assert_eq!(status.expect("a status").message(), run.error_message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_health_is_not_serving_and_new_runs_are_unavailable_then_it_recovers() {
    let mut redis = RedisServer::start();
    let store_name = redis.url();
    let a = replica(&redis, "alpha", Limits::default()).await;
    let b = replica(&redis, "beta", Limits::default()).await;
    let run_id = start_detached(
        &mut a.client().await,
        json!({"count": 1000000, "interval_ms": 10}),
    )
    .await;
    let mut through_b = runs(&b).await;
    let watcher = watch_in_background(&mut through_b, &run_id).await;
    assert_eq!(health(&b).await, ServingStatus::Serving);

    redis.kill();

    let (_, status) = watcher.await.unwrap();
    let status = status.expect("a watcher through Redis ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&store_name),
        "{}",
        status.message()
    );
    wait_for_health(&b, ServingStatus::NotServing).await;
    let refused = b
        .client()
        .await
        .run_tool(run_request("ticks", json!({"count": 1, "interval_ms": 0})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains(&store_name),
        "{}",
        refused.message()
    );
    let lookup = get(&mut through_b, &run_id).await.unwrap_err();
    assert_eq!(lookup.code(), Code::Unavailable);

    redis.restart();

    wait_for_health(&b, ServingStatus::Serving).await;
    wait_for_health(&a, ServingStatus::Serving).await;
    let (events, status) =
        common::run_tool(&b, "ticks", json!({"count": 3, "interval_ms": 0})).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": 3}))
    );
    let on_a = get(&mut runs(&a).await, &events[0].run_id).await.unwrap();
    assert_eq!(on_a.state(), RunState::Succeeded);
    // The run A kept going is recorded again (the new Redis is empty), and can be cancelled
    // through B.
    wait_for_run(&mut through_b, &run_id, "was recorded again", |run| {
        run.state() == RunState::Running
    })
    .await;
    let cancelled = cancel(&mut through_b, &run_id).await.unwrap();
    assert_eq!(cancelled.state(), RunState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires_and_a_finished_run_goes_after_the_retention_time() {
    let redis = RedisServer::start();
    let limits = Limits {
        retention: Duration::from_secs(2),
        ..Limits::default()
    };
    let a = replica(&redis, "alpha", limits).await;
    let b = replica(&redis, "beta", limits).await;
    let run_id = start_detached(
        &mut a.client().await,
        json!({"count": 40, "interval_ms": 25}),
    )
    .await;
    let mut conn = redis.connection().await;

    let keys: Vec<String> = conn.keys("test:*").await.unwrap();
    for key in [
        format!("test:run:{run_id}"),
        format!("test:run:{run_id}:events"),
        "test:runs".to_owned(),
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    for key in &keys {
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} has no expiry (PTTL {ttl})");
    }

    let mut through_b = runs(&b).await;
    wait_for_run(&mut through_b, &run_id, "succeeded", |run| {
        run.state() == RunState::Succeeded
    })
    .await;
    let ttl: i64 = conn.pttl(format!("test:run:{run_id}")).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 2000,
        "a finished run's record expires after the retention time, not {ttl} ms"
    );

    eventually(WAIT, "the run's keys to expire", || {
        let mut conn = conn.clone();
        let keys = [
            format!("test:run:{run_id}"),
            format!("test:run:{run_id}:events"),
        ];
        async move { conn.exists::<_, usize>(&keys).await.unwrap() == 0 }
    })
    .await;
    for server in [&a, &b] {
        let status = get(&mut runs(server).await, &run_id).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    eventually(WAIT, "the expired run to leave the index", || {
        let mut conn = conn.clone();
        let run_id = run_id.clone();
        async move {
            let indexed: Option<f64> = conn.zscore("test:runs", &run_id).await.unwrap();
            indexed.is_none()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_s_stream_is_bounded_and_a_replay_past_the_bound_starts_with_a_gap() {
    let redis = RedisServer::start();
    let limits = Limits {
        max_events_per_run: 8,
        event_buffer: 4,
        ..Limits::default()
    };
    let a = replica(&redis, "alpha", limits).await;
    let b = replica(&redis, "beta", limits).await;
    let (events, status) =
        common::run_tool(&a, "ticks", json!({"count": 500, "interval_ms": 0})).await;
    assert!(status.is_none());
    let run_id = events[0].run_id.clone();
    let mut conn = redis.connection().await;
    let length: usize = conn
        .xlen(format!("test:run:{run_id}:events"))
        .await
        .unwrap();
    assert!(
        length <= 8,
        "the stream holds {length} entries, past MAXLEN 8"
    );

    let (replay, status) = collect(watch(&mut runs(&b).await, &run_id, 0).await).await;
    assert!(status.is_none(), "{status:?}");
    assert!(matches!(replay[0].event, Some(Event::Started(_))));
    let Some(Event::Gap(gap)) = &replay[1].event else {
        panic!("expected a gap after started: {replay:?}");
    };
    assert_eq!(gap.from_sequence, 2);
    assert!(gap.to_sequence < 502);
    let gaps = replay
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Gap(_))))
        .count();
    assert_eq!(gaps, 1);
    let after: Vec<u64> = replay[2..].iter().map(|e| e.sequence).collect();
    assert!(after.iter().all(|s| *s > gap.to_sequence));
    assert!(after.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        result_value(replay.last().unwrap()),
        Some(json!({"count": 500}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_write_is_refused_by_its_stream() {
    let redis = RedisServer::start();
    let a = replica(&redis, "alpha", Limits::default()).await;
    let (events, status) =
        common::run_tool(&a, "ticks", json!({"count": 3, "interval_ms": 0})).await;
    assert!(status.is_none());
    let run_id = events[0].run_id.clone();
    let key = format!("test:run:{run_id}:events");
    let mut conn = redis.connection().await;
    let before: usize = conn.xlen(&key).await.unwrap();
    // Entry ids are the events' sequences: writing sequence 3 again (a retried batch) is refused.
    let replayed: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(&key)
        .arg("3-0")
        .arg("e")
        .arg("{}")
        .query_async(&mut conn)
        .await;
    assert!(replayed.is_err(), "{replayed:?}");
    let after: usize = conn.xlen(&key).await.unwrap();
    assert_eq!(before, after);
    let ids: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let sequences: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(sequences.first(), Some(&"1-0"));
    assert_eq!(
        sequences.last(),
        Some(&"5-0"),
        "started, 3 progress, result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_comes_from_the_flag_or_the_environment_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = common::binary::serve(
        dir.path(),
        &[],
        &[("TOOLSTREAM_STORE", "postgres://db/runs")],
    )
    .exited();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("runs.store") && stderr.contains("TOOLSTREAM_STORE"),
        "{stderr}"
    );

    let redis = RedisServer::start();
    let mut conn = redis.connection().await;
    let by_flag = common::binary::serve(dir.path(), &["--store", &redis.url()], &[]).serving();
    let by_env =
        common::binary::serve(dir.path(), &[], &[("TOOLSTREAM_STORE", &redis.url())]).serving();
    for served in [&by_flag, &by_env] {
        let mut tools = ToolServiceClient::connect(format!("http://{}", served.addr))
            .await
            .unwrap();
        let run_id = start_detached(&mut tools, json!({"count": 1, "interval_ms": 0})).await;
        // Recorded under the default key prefix before the caller got the id.
        let recorded: bool = conn
            .exists(format!("toolstream:run:{run_id}"))
            .await
            .unwrap();
        assert!(recorded, "run {run_id} is not in Redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_shuts_down_writes_its_runs_ends_before_it_leaves() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process("replicas::a_replica_that_shuts_down_writes_its_runs_ends_before_it_leaves")
    {
        return;
    }
    let redis = RedisServer::start();
    let limits = Limits {
        grace_period: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut a = replica(&redis, "leaving", limits).await;
    let b = replica(&redis, "staying", Limits::default()).await;
    let run_id = start_detached(
        &mut a.client().await,
        json!({"count": 1000000, "interval_ms": 10}),
    )
    .await;
    let mut through_b = runs(&b).await;
    let watcher = watch_in_background(&mut through_b, &run_id).await;

    a.begin_shutdown().await.unwrap().unwrap();

    // Cancelled by the shutdown (UNAVAILABLE, "shut down"), written by A itself: not "lost".
    let (_, status) = watcher.await.unwrap();
    let status = status.expect("a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("shut down"),
        "{}",
        status.message()
    );
    let run = get(&mut through_b, &run_id).await.unwrap();
    assert_eq!(run.state(), RunState::Cancelled);
    assert_eq!(run.error_message, status.message());
    // A released its lease as it left.
    let mut conn = redis.connection().await;
    let leases: Vec<String> = conn.keys("test:replica:leaving-*").await.unwrap();
    assert!(
        leases
            .iter()
            .all(|key| key.ends_with(":runs") || key.ends_with(":cancel")),
        "{leases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_just_reached_the_store_does_not_take_a_live_one_for_lost() {
    let redis = RedisServer::start();
    let a = replica(&redis, "steady", Limits::default()).await;
    let run_id = start_detached(
        &mut a.client().await,
        json!({"count": 1000000, "interval_ms": 10}),
    )
    .await;
    // A's lease lapses as every lease does when the store was out for longer than it: A is
    // alive and takes it back at its next renewal.
    let mut conn = redis.connection().await;
    let leases: Vec<String> = conn.keys("test:replica:steady-*").await.unwrap();
    let lease = leases
        .iter()
        .find(|key| !key.ends_with(":runs") && !key.ends_with(":cancel"))
        .expect("A's lease key")
        .clone();
    let _: usize = conn.del(&lease).await.unwrap();

    // C has reached the store only now: it does not judge A before A could renew.
    let c = replica(&redis, "newcomer", Limits::default()).await;
    let mut through_c = runs(&c).await;
    let run = get(&mut through_c, &run_id).await.unwrap();
    assert_eq!(run.state(), RunState::Running, "{run:?}");
    eventually(WAIT, "A to renew its lease", || {
        let mut conn = conn.clone();
        let lease = lease.clone();
        async move { conn.exists::<_, bool>(&lease).await.unwrap() }
    })
    .await;
    let run = get(&mut through_c, &run_id).await.unwrap();
    assert_eq!(run.state(), RunState::Running, "{run:?}");
    let cancelled = cancel(&mut through_c, &run_id).await.unwrap();
    assert_eq!(cancelled.state(), RunState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_run_is_recorded_again_as_soon_as_an_emptied_store_is_back() {
    let mut redis = RedisServer::start();
    let a = replica(&redis, "alpha", Limits::default()).await;
    let b = replica(&redis, "beta", Limits::default()).await;
    // Silent after its start: its next progress is ten minutes away.
    let run_id = start_detached(
        &mut a.client().await,
        json!({"count": 2, "interval_ms": 600000}),
    )
    .await;
    let mut through_b = runs(&b).await;
    assert_eq!(
        get(&mut through_b, &run_id).await.unwrap().state(),
        RunState::Running
    );

    redis.kill();
    wait_for_health(&a, ServingStatus::NotServing).await;
    redis.restart();
    wait_for_health(&a, ServingStatus::Serving).await;

    // Without a write of its own to notice the loss, the run is recorded again on recovery.
    wait_for_run(&mut through_b, &run_id, "was recorded again", |run| {
        run.state() == RunState::Running
    })
    .await;
    let cancelled = cancel(&mut through_b, &run_id).await.unwrap();
    assert_eq!(cancelled.state(), RunState::Cancelled);
}

/// A replica with auth: tokens `alpha-token` (principal "ann") and `beta-token` ("ben").
async fn replica_with_auth(redis: &RedisServer, name: &str) -> TestServer {
    use std::sync::Arc;
    use toolstream::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
    let root = std::env::current_dir().unwrap();
    let limits = Limits::default();
    let store = StoreConfig {
        lease: Duration::from_secs(5),
        ..redis_store(redis, name)
    };
    let store = toolstream::engine::Store::open(&store, &limits)
        .await
        .expect("open the run store");
    let entry = |principal: &str, token: &str| TokenEntry {
        sha256: token_digest(token),
        principal: Arc::new(Principal {
            name: Arc::from(principal),
            tools: ToolScope::All,
        }),
    };
    let auth = AuthConfig {
        tokens: vec![entry("ann", "alpha-token"), entry("ben", "beta-token")],
        ..AuthConfig::default()
    };
    TestServer::serve(
        toolstream::server::Server::new(registry_with(&root, vec![]), limits)
            .with_store(store)
            .with_auth(auth),
    )
    .await
}

#[tokio::test]
async fn a_run_belongs_to_its_principal_on_every_replica() {
    let redis = RedisServer::start();
    let a = replica_with_auth(&redis, "alpha").await;
    let b = replica_with_auth(&redis, "beta").await;
    let response = a
        .client()
        .await
        .run_tool(with_token(
            Some("alpha-token"),
            detached("ticks", json!({"count": 1000000, "interval_ms": 5})),
        ))
        .await
        .expect("ann's RunTool on A");
    let run_id = response
        .metadata()
        .get("x-run-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut stream = response.into_inner();
    stream.message().await.unwrap().expect("started");

    // On B, through the store: ben gets NOT_FOUND on every call, and ListRuns hides the run.
    let mut through_b = runs(&b).await;
    let b_channel = b.channel().await;
    assert_eq!(
        common::run_service_codes(&b_channel, "beta-token", &run_id).await,
        [Code::NotFound; 3],
        "GetRun, WatchRun, CancelRun of another principal's run through B"
    );
    let listed = through_b
        .list_runs(with_token(Some("beta-token"), ListRunsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty(), "{:?}", listed.runs);

    // Ann sees and cancels it on B.
    let listed = through_b
        .list_runs(with_token(Some("alpha-token"), ListRunsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1);
    assert_eq!(listed.runs[0].run_id, run_id);
    let cancelled = through_b
        .cancel_run(with_token(
            Some("alpha-token"),
            CancelRunRequest {
                run_id: run_id.clone(),
            },
        ))
        .await
        .expect("ann's CancelRun on B")
        .into_inner();
    assert_eq!(cancelled.state(), RunState::Cancelled);
}
