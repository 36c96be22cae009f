//! Run creation for backend services: an idempotency key makes a retried RunTool answer the run
//! the first attempt started (over gRPC and HTTP, on one server and across two replicas on a real
//! redis-server, ten at once), a key reused for another request is refused naming it, and labels
//! are validated, shown on the run and filter ListRuns on both stores and over HTTP.

use std::collections::{BTreeSet, HashMap};

use crate::common::redis_server::RedisServer;
use crate::common::runs::{detached, run_id_of, wait_for_state};
use crate::common::web::http;
use crate::common::{
    Backend, Fleet, TestServer, collect, redis_store, registry_with, result_value,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use toolstream::config::Limits;
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::pb::{self, ListRunsRequest, RunState, RunToolRequest};

fn registry() -> toolstream::registry::ToolRegistry {
    registry_with(&std::env::current_dir().unwrap(), vec![])
}

/// A detached `ticks` run with `key` and `labels`.
fn keyed(arguments: Value, key: &str, labels: &[(&str, &str)]) -> RunToolRequest {
    let mut request = detached("ticks", arguments);
    let options = request.options.get_or_insert_with(Default::default);
    options.idempotency_key = key.to_owned();
    options.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    request
}

async fn list_labelled(
    server: &TestServer,
    labels: &[(&str, &str)],
) -> Result<Vec<pb::Run>, tonic::Status> {
    let mut runs = RunServiceClient::new(server.channel().await);
    runs.list_runs(ListRunsRequest {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ListRunsRequest::default()
    })
    .await
    .map(|response| response.into_inner().runs)
}

fn ids(runs: &[pb::Run]) -> BTreeSet<String> {
    runs.iter().map(|run| run.run_id.clone()).collect()
}

/// Ten RunTool calls with one key at once, spread over `channels`: the run ids they got.
async fn race(
    channels: &[Channel],
    labels: &'static [(&'static str, &'static str)],
) -> BTreeSet<String> {
    let attempts = (0..10).map(|n| {
        let channel = channels[n % channels.len()].clone();
        tokio::spawn(async move {
            let response = ToolServiceClient::new(channel)
                .run_tool(keyed(
                    json!({"count": 50, "interval_ms": 2}),
                    "race",
                    labels,
                ))
                .await
                .expect("RunTool");
            run_id_of(&response)
        })
    });
    let mut run_ids = BTreeSet::new();
    for attempt in futures::future::join_all(attempts).await {
        run_ids.insert(attempt.expect("an attempt"));
    }
    run_ids
}

async fn retried_run_gets_the_same_run(backend: Backend) {
    let fleet = Fleet::start(backend, registry, Limits::default()).await;
    let arguments = json!({"count": 3, "interval_ms": 1});
    let first = fleet
        .client()
        .await
        .run_tool(keyed(arguments.clone(), "order-17", &[("team", "a")]))
        .await
        .expect("the first attempt");
    let run_id = run_id_of(&first);
    let (first_events, error) = collect(first.into_inner()).await;
    assert!(error.is_none(), "{error:?}");
    // The retry, on the other replica when there is one, after the run ended.
    let retry = ToolServiceClient::new(fleet.observer().channel().await)
        .run_tool(keyed(arguments, "order-17", &[("team", "a")]))
        .await
        .expect("the retry");
    assert_eq!(run_id_of(&retry), run_id, "the retry answers the same run");
    let (replayed, error) = collect(retry.into_inner()).await;
    assert!(error.is_none(), "{error:?}");
    assert!(
        matches!(
            replayed.first().and_then(|e| e.event.as_ref()),
            Some(Event::Started(_))
        ),
        "the replay starts at the start: {replayed:?}"
    );
    assert_eq!(replayed.first().map(|e| e.sequence), Some(1));
    assert_eq!(
        replayed.last().and_then(result_value),
        first_events.last().and_then(result_value)
    );
    assert_eq!(
        replayed.last().and_then(result_value),
        Some(json!({"count": 3}))
    );
    let mut runs = RunServiceClient::new(fleet.observer().channel().await);
    let run = wait_for_state(&mut runs, &run_id, RunState::Succeeded).await;
    assert_eq!(run.idempotency_key, "order-17");
    assert_eq!(run.labels.get("team").map(String::as_str), Some("a"));
    let listed = list_labelled(fleet.observer(), &[])
        .await
        .expect("ListRuns");
    assert_eq!(ids(&listed), BTreeSet::from([run_id]), "one run, not two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_run_tool_gets_the_same_run_in_memory() {
    retried_run_gets_the_same_run(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_run_tool_gets_the_same_run_across_replicas() {
    retried_run_gets_the_same_run(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_racing_requests_on_two_replicas_make_one_run() {
    let redis = RedisServer::start();
    let root = std::env::current_dir().unwrap();
    let a = TestServer::start_with_store(
        registry_with(&root, vec![]),
        Limits::default(),
        &redis_store(&redis, "a"),
    )
    .await;
    let b = TestServer::start_with_store(
        registry_with(&root, vec![]),
        Limits::default(),
        &redis_store(&redis, "b"),
    )
    .await;
    let channels: Vec<Channel> = vec![a.channel().await, b.channel().await];
    let run_ids = race(&channels, &[("job", "race")]).await;
    assert_eq!(run_ids.len(), 1, "ten attempts, one run: {run_ids:?}");
    let listed = list_labelled(&b, &[("job", "race")])
        .await
        .expect("ListRuns");
    assert_eq!(ids(&listed), run_ids);
    let listed = list_labelled(&a, &[]).await.expect("ListRuns");
    assert_eq!(ids(&listed), run_ids, "no other run was started");
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused_naming_it() {
    let server = TestServer::start().await;
    let mut tools = server.client().await;
    let first = tools
        .run_tool(keyed(json!({"count": 1}), "invoice-9", &[]))
        .await
        .expect("the first attempt");
    let run_id = run_id_of(&first);
    for other in [keyed(json!({"count": 2}), "invoice-9", &[]), {
        let mut request = keyed(json!({"paths": ["Cargo.toml"]}), "invoice-9", &[]);
        request.tool = "checksum".into();
        request
    }] {
        let status = tools
            .run_tool(other)
            .await
            .expect_err("a conflicting reuse");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("invoice-9"), "{status:?}");
        assert!(status.message().contains(&run_id), "{status:?}");
    }
    // The same request with its arguments' keys in another order is the same request.
    let again = tools
        .run_tool(keyed(json!({"count": 1}), "invoice-9", &[("x", "y")]))
        .await
        .expect("the same request");
    assert_eq!(run_id_of(&again), run_id);
    let long = "k".repeat(toolstream::engine::MAX_IDEMPOTENCY_KEY + 1);
    let status = tools
        .run_tool(keyed(json!({"count": 1}), &long, &[]))
        .await
        .expect_err("a key too long");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

async fn labels_filter_runs(backend: Backend) {
    let fleet = Fleet::start(backend, registry, Limits::default()).await;
    let mut tools = fleet.client().await;
    let mut started = HashMap::new();
    for (name, labels) in [
        ("a-prod", vec![("team", "a"), ("env", "prod")]),
        ("a-dev", vec![("team", "a"), ("env", "dev")]),
        ("b-prod", vec![("team", "b"), ("env", "prod")]),
        ("none", vec![]),
    ] {
        let response = tools
            .run_tool(keyed(json!({"count": 1}), "", &labels))
            .await
            .expect("RunTool");
        started.insert(name, run_id_of(&response));
        let (_, error) = collect(response.into_inner()).await;
        assert!(error.is_none(), "{error:?}");
    }
    let observer = fleet.observer();
    let want = |names: &[&str]| -> BTreeSet<String> {
        names.iter().map(|name| started[name].clone()).collect()
    };
    let listed = list_labelled(observer, &[("team", "a")])
        .await
        .expect("team=a");
    assert_eq!(ids(&listed), want(&["a-prod", "a-dev"]));
    let listed = list_labelled(observer, &[("team", "a"), ("env", "prod")])
        .await
        .expect("team=a, env=prod");
    assert_eq!(ids(&listed), want(&["a-prod"]));
    let listed = list_labelled(observer, &[("env", "prod")])
        .await
        .expect("env=prod");
    assert_eq!(ids(&listed), want(&["a-prod", "b-prod"]));
    let listed = list_labelled(observer, &[("team", "c")])
        .await
        .expect("team=c");
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(
        list_labelled(observer, &[]).await.expect("all").len(),
        4,
        "no filter lists every run"
    );
    let shown = listed_label(observer, &started["b-prod"]).await;
    assert_eq!(
        shown,
        BTreeSet::from(["env=prod".to_owned(), "team=b".to_owned()])
    );

    // Invalid labels are refused before anything runs, naming the label.
    for labels in [
        vec![("Team", "a")],
        vec![("team", "x".repeat(257).leak() as &str)],
    ] {
        let status = tools
            .run_tool(keyed(json!({"count": 1}), "", &labels))
            .await
            .expect_err("an invalid label");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(labels[0].0), "{status:?}");
    }
    let status = list_labelled(observer, &[("bad key", "a")])
        .await
        .expect_err("an invalid filter");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

async fn listed_label(server: &TestServer, run_id: &str) -> BTreeSet<String> {
    let mut runs = RunServiceClient::new(server.channel().await);
    let run = crate::common::runs::get(&mut runs, run_id)
        .await
        .expect("GetRun");
    run.labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_filter_runs_in_memory() {
    labels_filter_runs(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_filter_runs_across_replicas() {
    labels_filter_runs(Backend::Redis).await;
}

/// `POST /v1/tools/ticks/runs` answering the Run at once, with `key` in the `Idempotency-Key`
/// header and `labels` in the body's options.
async fn http_start(server: &TestServer, key: &str, labels: Value) -> Value {
    let response = http()
        .post(format!("{}/v1/tools/ticks/runs", server.url()))
        .header("accept", "application/json")
        .header("idempotency-key", key)
        .json(&json!({"arguments": {"count": 2}, "options": {"labels": labels}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let run_id = response
        .headers()
        .get("x-run-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let run: Value = response.json().await.expect("the Run");
    assert_eq!(run_id.as_deref(), run["runId"].as_str());
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_the_idempotency_key_header_and_label_filters_work() {
    let fleet = Fleet::start(Backend::Redis, registry, Limits::default()).await;
    let first = http_start(&fleet.runner, "web-1", json!({"source": "web"})).await;
    let again = http_start(fleet.observer(), "web-1", json!({"source": "web"})).await;
    assert_eq!(first["runId"], again["runId"]);
    assert_eq!(again["idempotencyKey"], "web-1");
    assert_eq!(again["labels"], json!({"source": "web"}));
    let other = http_start(&fleet.runner, "web-2", json!({"source": "cron"})).await;
    assert_ne!(other["runId"], first["runId"]);

    let list = |query: &'static str| {
        let url = format!("{}/v1/runs?{query}", fleet.observer().url());
        async move {
            let page: Value = http()
                .get(url)
                .send()
                .await
                .expect("GET")
                .json()
                .await
                .expect("JSON");
            page["runs"]
                .as_array()
                .map(|runs| {
                    runs.iter()
                        .map(|run| run["runId"].clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert_eq!(list("label=source:web").await, vec![first["runId"].clone()]);
    assert_eq!(
        list("label=source:cron").await,
        vec![other["runId"].clone()]
    );
    assert_eq!(
        list("label=source:web&label=source:web").await,
        vec![first["runId"].clone()]
    );
    assert_eq!(list("").await.len(), 2);
    for query in [
        "label=nocolon",
        "label=source:web&label=source:cron",
        "label=Bad:x",
    ] {
        let refused = http()
            .get(format!("{}/v1/runs?{query}", fleet.observer().url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(refused.status(), 400, "{query}");
    }

    // A header and a body naming different keys is a mistake, said so.
    let conflicting = http()
        .post(format!("{}/v1/tools/ticks/runs", fleet.runner.url()))
        .header("accept", "application/json")
        .header("idempotency-key", "one")
        .json(&json!({"arguments": {"count": 1}, "options": {"idempotencyKey": "two"}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(conflicting.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_racing_requests_on_one_server_make_one_run() {
    let server = TestServer::start().await;
    let run_ids = race(&[server.channel().await], &[]).await;
    assert_eq!(run_ids.len(), 1, "ten attempts, one run: {run_ids:?}");
    let listed = list_labelled(&server, &[]).await.expect("ListRuns");
    assert_eq!(ids(&listed), run_ids, "no other run was started");
}
