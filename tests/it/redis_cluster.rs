//! Replicas sharing a Redis Cluster (three primaries on loopback, made with `redis-cli --cluster
//! create`): every key of a run lives in one hash slot (as do a replica's, and the fleet's); a
//! primary's failover is a short outage that loses no run; `[auth] max_runs_per_principal` holds
//! across the fleet, and a killed replica's runs end and free their places. The RunService
//! conformance cases run on a cluster too (`tests/run_service.rs`, `redis_cluster::…`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::binary::serve;
use crate::common::principal_limit::{
    AUTH, ENV, holds_across_replicas_and_a_killed_replica_frees_its_runs,
};
use crate::common::redis_cluster::RedisCluster;
use crate::common::runs::{cancel, detached, run_id_of, wait_for_run, wait_for_state, watch};
use crate::common::{TestServer, collect, eventually, registry_with, result_value};
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use toolstream::config::{Limits, StoreConfig};
use toolstream::pb::RunState;
use toolstream::pb::run_service_client::RunServiceClient;

/// Generous: the limit of every wait-until loop (never a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

/// A replica named `name` on `cluster`, with a lease of a few seconds (short enough for the
/// sweeper to run often, long enough that a busy machine never makes a live replica look lost).
async fn replica(cluster: &RedisCluster, name: &str) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let store = StoreConfig {
        key_prefix: "test:".into(),
        replica_name: Some(name.into()),
        lease: Duration::from_secs(6),
        ..StoreConfig::redis(cluster.url())
    };
    TestServer::start_with_store(registry_with(&root, vec![]), Limits::default(), &store).await
}

async fn runs(server: &TestServer) -> RunServiceClient<Channel> {
    RunServiceClient::new(server.channel().await)
}

/// Starts a detached `ticks` run on `server`; its id.
async fn start(server: &TestServer, count: u64, interval_ms: u64) -> String {
    let response = server
        .client()
        .await
        .run_tool(detached(
            "ticks",
            json!({"count": count, "interval_ms": interval_ms}),
        ))
        .await
        .expect("RunTool");
    run_id_of(&response)
}

async fn serving(server: &TestServer) -> bool {
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: "toolstream.v1.RunService".into(),
        })
        .await
        .is_ok_and(|response| response.into_inner().status() == ServingStatus::Serving)
}

/// The keys under `test:`, grouped by their hash tag (the text in the first braces).
fn keys_by_tag(cluster: &RedisCluster) -> BTreeMap<String, Vec<String>> {
    let mut tagged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in cluster.keys("test:*") {
        let tag = key
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag.to_owned())
            .unwrap_or_else(|| panic!("the key {key} has no hash tag"));
        tagged.entry(tag).or_default().push(key);
    }
    tagged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_a_run_is_in_one_slot_as_are_a_replica_s_and_the_fleet_s() {
    let cluster = RedisCluster::start(3, 0);
    let a = replica(&cluster, "alpha").await;
    let b = replica(&cluster, "beta").await;
    // A run that finishes, one cancelled from the other replica (its owner's cancel list), and
    // one still running.
    let finished = start(&a, 3, 1).await;
    let cancelled = start(&a, 1_000_000, 20).await;
    let running = start(&a, 1_000_000, 20).await;
    let mut through_b = runs(&b).await;
    wait_for_state(&mut through_b, &finished, RunState::Succeeded).await;
    let cancelled_run = cancel(&mut through_b, &cancelled).await.expect("CancelRun");
    assert_eq!(cancelled_run.state(), RunState::Cancelled);
    wait_for_run(&mut through_b, &running, "has progress", |run| {
        run.last_sequence > 2
    })
    .await;

    let tagged = keys_by_tag(&cluster);
    for run_id in [&finished, &cancelled, &running] {
        let keys = tagged.get(run_id.as_str()).expect("the run's keys");
        assert!(
            keys.contains(&format!("test:run:{{{run_id}}}"))
                && keys.contains(&format!("test:run:{{{run_id}}}:events")),
            "{keys:?}"
        );
    }
    let fleet = tagged.get("fleet").expect("the fleet's keys");
    for name in ["runs", "finished", "replicas"] {
        assert!(
            fleet.contains(&format!("test:{{fleet}}:{name}")),
            "{fleet:?}"
        );
    }
    let replicas: Vec<&String> = tagged
        .keys()
        .filter(|tag| tag.starts_with("alpha-") || tag.starts_with("beta-"))
        .collect();
    assert_eq!(replicas.len(), 2, "{tagged:?}");
    // Every group is one slot; the runs' groups are not all on one.
    let mut run_slots = Vec::new();
    for (tag, keys) in &tagged {
        let slots: Vec<u16> = keys.iter().map(|key| cluster.slot(key)).collect();
        assert!(
            slots.windows(2).all(|pair| pair[0] == pair[1]),
            "the keys tagged {tag} are in several slots: {keys:?} {slots:?}"
        );
        if tag.len() == 32 {
            run_slots.push(slots[0]);
        }
    }
    assert_eq!(run_slots.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_s_failover_is_a_short_outage_that_loses_no_run() {
    // Three primaries, each with a replica.
    let cluster = RedisCluster::start(3, 1);
    let a = replica(&cluster, "alpha").await;
    let b = replica(&cluster, "beta").await;
    let mut through_b = runs(&b).await;
    // A run long enough to span the failover, followed from B.
    let before = start(&a, 300, 20).await;
    wait_for_run(
        &mut through_b,
        &before,
        "has progress in the store",
        |run| run.last_sequence > 2,
    )
    .await;
    let watcher = tokio::spawn(collect(watch(&mut through_b, &before, 0).await));

    // The replica of the primary holding the run takes over (CLUSTER FAILOVER: the replica
    // catches up with its primary before it switches, so nothing acknowledged is lost).
    let slot = cluster.slot(&format!("test:run:{{{before}}}"));
    let (primary, replica_port) = cluster.primary_and_replica_of(slot);
    let replica_port = replica_port.expect("the primary has a replica");
    let answer = cluster.cli(replica_port, &["CLUSTER", "FAILOVER"]);
    assert!(answer.contains("OK"), "CLUSTER FAILOVER: {answer}");
    cluster.wait_until("the replica serves the run's slot", |c| {
        c.primary_and_replica_of(slot).0 == replica_port
            && c.cli(primary, &["ROLE"]).starts_with("slave")
    });

    // The run goes on and ends as it would have: its result, every sequence once, in order.
    let done = wait_for_state(&mut through_b, &before, RunState::Succeeded).await;
    let (events, status) = watcher.await.unwrap();
    match status {
        None => {
            assert_eq!(
                result_value(events.last().unwrap()),
                Some(json!({"count": 300}))
            );
            let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
            assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        }
        // A watcher following through the failing primary may be cut off: clearly.
        Some(status) => assert!(
            status.code() == tonic::Code::Unavailable && status.message().contains("run store"),
            "{status:?}"
        ),
    }
    // A replay after it has it all.
    let (replayed, status) = collect(watch(&mut through_b, &before, 0).await).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        result_value(replayed.last().unwrap()),
        Some(json!({"count": 300}))
    );
    assert_eq!(replayed.last().unwrap().sequence, done.last_sequence);

    // Both replicas serve, and a new run works across them.
    eventually(WAIT, "both replicas to serve", || async {
        serving(&a).await && serving(&b).await
    })
    .await;
    let after = start(&a, 3, 1).await;
    let run = wait_for_state(&mut through_b, &after, RunState::Succeeded).await;
    assert_eq!(run.tool, "ticks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_principal_limit_holds_across_the_fleet_and_a_killed_replica_frees_its_runs() {
    let cluster = RedisCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    // One node's plain URL and `redis_cluster = true`: the rest of the cluster is found from it.
    let one_node = format!("redis://127.0.0.1:{}", cluster.nodes[1].port);
    let start = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[runs]\nstore = \"{one_node}\"\nredis_cluster = true\nkey_prefix = \"bin:\"\n\
                 replica_name = \"{name}\"\nlease_secs = 2\n\n\
                 {AUTH}"
            ),
        )
        .unwrap();
        let config = path.to_str().unwrap().to_owned();
        serve(dir.path(), &["--config", &config], &ENV).serving()
    };
    holds_across_replicas_and_a_killed_replica_frees_its_runs(
        start("doomed"),
        &start("survivor"),
        "doomed",
    )
    .await;
}
