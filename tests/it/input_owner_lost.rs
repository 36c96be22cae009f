//! An owner that dies while its run waits for input (two replicas on one Redis): replica A (a
//! real `toolstream serve` process) runs a command tool that asks, A is killed with SIGKILL,
//! and RespondToRun through replica B answers a clear error (never a hang, never a success that
//! resolves nothing); the run then shows its end naming the lost replica and no open request, and
//! its stream the request resolved CANCELLED (once) before that end.

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use toolstream::config::{Limits, StoreConfig};
use toolstream::pb::run_event::Event;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::pb::{InputOutcome, RunState};

use crate::common;
use crate::common::redis_server::RedisServer;
use crate::common::runs::{detached, run_id_of, wait_for_run, watch};
use crate::common::{TestServer, collect, redis_store, registry_with};
use crate::input_requests::{resolutions, respond, runs};

/// A command tool that asks "Go?" (a boolean) and ends with what it read.
const ASKING_TOOL: &str = r#"read arguments
echo '{"ask": {"id": "q1", "prompt": "Go?", "schema": {"type": "boolean"}}}'
read answer
echo '{"result": "answered"}'"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_through_another_replica_to_a_killed_owner_fails_clearly() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("a directory");
    let config = dir.path().join("toolstream.toml");
    let entry = toml::to_string(&toml::Table::from_iter([
        ("kind".to_owned(), "command".into()),
        ("name".to_owned(), "confirm".into()),
        ("asks".to_owned(), true.into()),
        (
            "command".to_owned(),
            toml::Value::Array(vec!["sh".into(), "-c".into(), ASKING_TOOL.into()]),
        ),
    ]))
    .expect("the tool's entry");
    std::fs::write(
        &config,
        format!(
            "[runs]\nstore = \"{}\"\nkey_prefix = \"test:\"\nlease_secs = 1\nreplica_name = \"doomed\"\n\n[[tools]]\n{entry}",
            redis.url()
        ),
    )
    .expect("the config");
    let mut a = common::binary::serve(
        dir.path(),
        &["--config", config.to_str().expect("utf-8")],
        &[],
    )
    .serving();
    let root = std::env::current_dir().expect("cwd");
    let store = StoreConfig {
        lease: Duration::from_secs(5),
        ..redis_store(&redis, "survivor")
    };
    let b =
        TestServer::start_with_store(registry_with(&root, vec![]), Limits::default(), &store).await;

    let mut on_a = ToolServiceClient::connect(format!("http://{}", a.addr))
        .await
        .expect("connect to A");
    let response = on_a
        .run_tool(detached("confirm", json!({})))
        .await
        .expect("RunTool on A");
    let run_id = run_id_of(&response);
    let mut through_b = runs(&b).await;
    let waiting = wait_for_run(&mut through_b, &run_id, "waiting for input", |run| {
        run.state() == RunState::InputRequired
    })
    .await;
    let request_id = waiting.pending_inputs[0].request_id.clone();

    a.child.kill().expect("kill replica A");
    a.child.wait().expect("A's end");

    let refused = respond(&mut through_b, &run_id, &request_id, json!(true))
        .await
        .expect_err("nobody can take the answer");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // It says why: the run ended because its replica was lost.
    assert!(
        refused.message().contains("ended") && refused.message().contains("doomed"),
        "{}",
        refused.message()
    );

    let run = wait_for_run(&mut through_b, &run_id, "ended", |run| {
        run.state() == RunState::Failed
    })
    .await;
    assert_eq!(run.error_code, Code::Unavailable as i32);
    assert!(
        run.error_message.contains("doomed"),
        "{}",
        run.error_message
    );
    assert!(run.pending_inputs.is_empty(), "{run:?}");
    // The run's end resolved the open request CANCELLED, once, before the error: a watcher from
    // the start on the survivor sees every request it was asked resolved exactly once.
    let (events, end) = collect(watch(&mut through_b, &run_id, 0).await).await;
    assert_eq!(
        resolutions(&events),
        [(request_id.clone(), InputOutcome::Cancelled)],
        "{events:?}"
    );
    let end = end.expect("the run's error ends the watch");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("doomed"), "{end:?}");
    let resolved = events.last().expect("events");
    assert!(
        matches!(resolved.event, Some(Event::InputResolved(_))),
        "the resolution is the last event before the error: {events:?}"
    );
    // The record counts it: the run's last sequence is the resolution's.
    assert_eq!(run.last_sequence, resolved.sequence, "{run:?}");
    let again = respond(&mut through_b, &run_id, &request_id, json!(true)).await;
    assert_eq!(again.expect_err("ended").code(), Code::FailedPrecondition);
}
