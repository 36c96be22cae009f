//! Input requests (human in the loop): a tool asks through its progress handle, the run waits
//! INPUT_REQUIRED with the request in `pending_inputs`, and RespondToRun (gRPC, HTTP, WebSocket)
//! answers it; each outcome (answered, declined, expired, cancelled), an answer failing the schema
//! then a valid one, a second answer, unknown requests and ended runs.

use std::sync::Arc;

use crate::common::runs::{detached, get, wait_for_run};
use crate::common::web::http;
use crate::common::{TestServer, collect, registry_with, result_value, x_run_id};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;
use tonic::transport::Channel;
use toolstream::config::Limits;
use toolstream::json_proto::{json_to_value, struct_to_json, value_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{self, RespondToRunRequest, RunState, WatchRunRequest};
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Answer, Progress, Tool, ToolError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// What a tool reports of the answer it got: its outcome's name, and the value when answered.
pub(crate) fn reported(answer: &Answer) -> Value {
    json!({"outcome": answer.outcome_name(), "value": answer.value().cloned()})
}

/// `confirm`: asks "Overwrite report.pdf?" (a boolean) and ends with what it got.
pub(crate) fn confirm_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "confirm",
        "Asks for a confirmation.",
        |_: NoArgs, progress: Progress| async move {
            let answer = progress
                .ask("Overwrite report.pdf?", Some(json!({"type": "boolean"})))
                .await;
            Ok::<Value, ToolError>(reported(&answer))
        },
    ))
}

/// `how_many`: asks for an object whose `count` is an integer of at least 1.
fn how_many_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "how_many",
        "Asks how many.",
        |_: NoArgs, progress: Progress| async move {
            let schema = json!({
                "type": "object",
                "properties": {"count": {"type": "integer", "minimum": 1}},
                "required": ["count"]
            });
            let answer = progress.ask("How many copies?", Some(schema)).await;
            Ok::<Value, ToolError>(reported(&answer))
        },
    ))
}

pub(crate) async fn server() -> TestServer {
    let root = std::env::current_dir().expect("cwd");
    TestServer::start_with(
        registry_with(&root, vec![confirm_tool(), how_many_tool()]),
        Limits::default(),
    )
    .await
}

pub(crate) async fn runs(server: &TestServer) -> RunServiceClient<Channel> {
    RunServiceClient::new(server.channel().await)
}

/// Starts `tool` with `options`; returns the run id and the caller's stream.
async fn start(
    server: &TestServer,
    tool: &str,
    options: Option<pb::RunOptions>,
) -> (String, tonic::Streaming<pb::RunEvent>) {
    start_with(server, tool, json!({}), options).await
}

/// Starts `tool` with `arguments` and `options`; returns the run id and the caller's stream.
pub(crate) async fn start_with(
    server: &TestServer,
    tool: &str,
    arguments: Value,
    options: Option<pb::RunOptions>,
) -> (String, tonic::Streaming<pb::RunEvent>) {
    let mut request = crate::common::run_request(tool, arguments);
    request.options = options;
    let response = server
        .client()
        .await
        .run_tool(request)
        .await
        .expect("RunTool");
    (x_run_id(response.metadata()), response.into_inner())
}

/// Reads the stream up to its `input_requested` event.
pub(crate) async fn until_asked(stream: &mut tonic::Streaming<pb::RunEvent>) -> pb::InputRequested {
    loop {
        let event = stream
            .message()
            .await
            .expect("the stream")
            .expect("an input_requested event before the end");
        if let Some(Event::InputRequested(request)) = event.event {
            return request;
        }
    }
}

fn respond_request(run_id: &str, request_id: &str, value: Value) -> RespondToRunRequest {
    RespondToRunRequest {
        run_id: run_id.to_owned(),
        request_id: request_id.to_owned(),
        value: Some(json_to_value(value)),
        decline: false,
    }
}

pub(crate) async fn respond(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
    request_id: &str,
    value: Value,
) -> Result<pb::Run, tonic::Status> {
    client
        .respond_to_run(respond_request(run_id, request_id, value))
        .await
        .map(tonic::Response::into_inner)
}

/// Declines the request; fails the test if that is refused.
pub(crate) async fn decline(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
    request_id: &str,
) -> pb::Run {
    client
        .respond_to_run(RespondToRunRequest {
            run_id: run_id.to_owned(),
            request_id: request_id.to_owned(),
            value: None,
            decline: true,
        })
        .await
        .expect("decline")
        .into_inner()
}

/// The run's result, read to the end of its stream.
pub(crate) async fn result_of(
    stream: tonic::Streaming<pb::RunEvent>,
) -> (Value, Vec<pb::RunEvent>) {
    let (events, status) = collect(stream).await;
    assert!(status.is_none(), "the run failed: {status:?}");
    let result = events
        .iter()
        .find_map(result_value)
        .expect("a result event");
    (result, events)
}

/// The outcomes of the `input_resolved` events among `events`.
pub(crate) fn resolutions(events: &[pb::RunEvent]) -> Vec<(String, pb::InputOutcome)> {
    events
        .iter()
        .filter_map(|event| match &event.event {
            Some(Event::InputResolved(resolved)) => {
                Some((resolved.request_id.clone(), resolved.outcome()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_answer_resumes_the_tool_once_and_the_run_shows_its_request_while_it_waits() {
    let server = server().await;
    let mut client = runs(&server).await;
    let (run_id, mut stream) = start(&server, "confirm", None).await;
    let asked = until_asked(&mut stream).await;
    assert_eq!(asked.prompt, "Overwrite report.pdf?");
    assert_eq!(asked.kind(), pb::InputKind::Input);
    assert_eq!(
        asked.schema.clone().map(struct_to_json),
        json!({"type": "boolean"}).as_object().cloned()
    );
    assert_eq!(asked.expire_time, None, "no timeout and no deadline apply");

    // While it waits: INPUT_REQUIRED with the request listed, and a late watcher gets it.
    let run = get(&mut client, &run_id).await.expect("GetRun");
    assert_eq!(run.state(), RunState::InputRequired);
    assert_eq!(run.pending_inputs, vec![asked.clone()]);
    let mut latest = client
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            from_latest: true,
            ..WatchRunRequest::default()
        })
        .await
        .expect("WatchRun")
        .into_inner();
    let started = latest.message().await.expect("watch").expect("started");
    assert!(matches!(started.event, Some(Event::Started(_))));
    assert_eq!(until_asked(&mut latest).await, asked);

    // Unknown requests are NOT_FOUND and leave the request open.
    let unknown = respond(&mut client, &run_id, "input-99", json!(true)).await;
    assert_eq!(unknown.expect_err("unknown").code(), Code::NotFound);

    let answered = respond(&mut client, &run_id, &asked.request_id, json!(true))
        .await
        .expect("the first answer");
    assert!(answered.pending_inputs.is_empty(), "{answered:?}");
    assert_ne!(answered.state(), RunState::InputRequired);

    let second = respond(&mut client, &run_id, &asked.request_id, json!(false)).await;
    assert_eq!(second.expect_err("second").code(), Code::FailedPrecondition);

    let (result, events) = result_of(stream).await;
    assert_eq!(result, json!({"outcome": "answered", "value": true}));
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id.clone(), pb::InputOutcome::Answered)]
    );
    // The run ended: answering is refused.
    let late = respond(&mut client, &run_id, &asked.request_id, json!(true)).await;
    assert_eq!(late.expect_err("ended").code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn an_answer_failing_the_schema_names_the_field_and_the_request_stays_open() {
    let server = server().await;
    let mut client = runs(&server).await;
    let (run_id, mut stream) = start(&server, "how_many", None).await;
    let asked = until_asked(&mut stream).await;

    let refused = respond(&mut client, &run_id, &asked.request_id, json!({"count": 0}))
        .await
        .expect_err("count below its minimum");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("count"), "{}", refused.message());
    let run = get(&mut client, &run_id).await.expect("GetRun");
    assert_eq!(run.state(), RunState::InputRequired);
    assert_eq!(run.pending_inputs.len(), 1);

    respond(&mut client, &run_id, &asked.request_id, json!({"count": 3}))
        .await
        .expect("a valid answer");
    let (result, _) = result_of(stream).await;
    assert_eq!(
        result,
        json!({"outcome": "answered", "value": {"count": 3}})
    );
}

#[tokio::test]
async fn a_declined_request_tells_the_tool_so() {
    let server = server().await;
    let mut client = runs(&server).await;
    let (run_id, mut stream) = start(&server, "confirm", None).await;
    let asked = until_asked(&mut stream).await;
    decline(&mut client, &run_id, &asked.request_id).await;
    let (result, events) = result_of(stream).await;
    assert_eq!(result, json!({"outcome": "declined", "value": null}));
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id, pb::InputOutcome::Declined)]
    );
}

#[tokio::test]
async fn a_request_nobody_answers_expires_at_the_input_timeout() {
    let server = server().await;
    let options = pb::RunOptions {
        input_timeout_ms: 50,
        ..pb::RunOptions::default()
    };
    let (_, mut stream) = start(&server, "confirm", Some(options)).await;
    let asked = until_asked(&mut stream).await;
    assert!(asked.expire_time.is_some(), "a timeout applies: {asked:?}");
    let (result, events) = result_of(stream).await;
    assert_eq!(result, json!({"outcome": "expired", "value": null}));
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id, pb::InputOutcome::Expired)]
    );
}

#[tokio::test]
async fn a_cancelled_run_resolves_its_open_request_cancelled() {
    let server = server().await;
    let mut client = runs(&server).await;
    let (run_id, mut stream) = start(&server, "confirm", None).await;
    let asked = until_asked(&mut stream).await;
    let cancelled = crate::common::runs::cancel(&mut client, &run_id)
        .await
        .expect("CancelRun");
    assert_eq!(cancelled.state(), RunState::Cancelled);
    assert!(cancelled.pending_inputs.is_empty());
    let (events, status) = collect(stream).await;
    assert_eq!(status.expect("cancelled").code(), Code::Cancelled);
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id.clone(), pb::InputOutcome::Cancelled)]
    );
    let late = respond(&mut client, &run_id, &asked.request_id, json!(true)).await;
    assert_eq!(late.expect_err("ended").code(), Code::FailedPrecondition);
}

/// The request a detached run waits on, once GetRun lists it.
async fn pending(client: &mut RunServiceClient<Channel>, run_id: &str) -> pb::InputRequested {
    let run = wait_for_run(client, run_id, "asked", |run| {
        run.state() == RunState::InputRequired
    })
    .await;
    run.pending_inputs[0].clone()
}

async fn detached_run(server: &TestServer, tool: &str) -> String {
    let response = server
        .client()
        .await
        .run_tool(detached(tool, json!({})))
        .await
        .expect("RunTool");
    x_run_id(response.metadata())
}

async fn succeeded_with(client: &mut RunServiceClient<Channel>, run_id: &str) -> Value {
    let run = wait_for_run(client, run_id, "succeeded", |run| {
        run.state() == RunState::Succeeded
    })
    .await;
    run.result.map_or(Value::Null, value_to_json)
}

#[tokio::test]
async fn a_detached_run_is_answered_over_http() {
    let server = server().await;
    let mut client = runs(&server).await;
    let run_id = detached_run(&server, "how_many").await;
    let asked = pending(&mut client, &run_id).await;
    let url = format!(
        "{}/v1/runs/{run_id}/inputs/{}",
        server.url(),
        asked.request_id
    );

    let refused = http()
        .post(&url)
        .json(&json!({"value": {"count": "three"}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("JSON error");
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    assert!(
        body["message"].as_str().unwrap_or("").contains("count"),
        "{body}"
    );

    let answered = http()
        .post(&url)
        .json(&json!({"value": {"count": 2}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(answered.status(), 200);
    let run: Value = answered.json().await.expect("the Run");
    assert_eq!(run["runId"], run_id);
    assert_eq!(run.get("pendingInputs"), None, "{run}");

    let again = http()
        .post(&url)
        .json(&json!({"decline": true}))
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.expect("JSON")["code"],
        "FAILED_PRECONDITION"
    );
    assert_eq!(
        succeeded_with(&mut client, &run_id).await,
        json!({"outcome": "answered", "value": {"count": 2}})
    );
}

#[tokio::test]
async fn a_detached_run_is_answered_over_the_websocket_and_declined_over_http() {
    let server = server().await;
    let mut client = runs(&server).await;

    let run_id = detached_run(&server, "confirm").await;
    let asked = pending(&mut client, &run_id).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", server.addr))
        .await
        .expect("WebSocket handshake");
    let message = json!({"type": "respond", "id": "a1", "runId": run_id,
                         "requestId": asked.request_id, "value": false});
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
    let frame = loop {
        match socket.next().await.expect("a frame").expect("a frame") {
            Message::Text(text) => break serde_json::from_str::<Value>(&text).expect("JSON"),
            _ => continue,
        }
    };
    assert_eq!(frame["id"], "a1", "{frame}");
    assert_eq!(frame["run"]["runId"], run_id, "{frame}");
    assert_eq!(
        succeeded_with(&mut client, &run_id).await,
        json!({"outcome": "answered", "value": false})
    );

    let run_id = detached_run(&server, "confirm").await;
    let asked = pending(&mut client, &run_id).await;
    let declined = http()
        .post(format!(
            "{}/v1/runs/{run_id}/inputs/{}",
            server.url(),
            asked.request_id
        ))
        .json(&json!({"decline": true}))
        .send()
        .await
        .expect("POST");
    assert_eq!(declined.status(), 200);
    assert_eq!(
        succeeded_with(&mut client, &run_id).await,
        json!({"outcome": "declined", "value": null})
    );
}

#[tokio::test]
async fn sse_names_the_input_events() {
    let server = server().await;
    let response = http()
        .post(format!("{}/v1/tools/confirm/runs", server.url()))
        .json(&json!({"arguments": {}, "options": {"inputTimeoutMs": 20}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let frames = crate::common::web::SseReader::new(response).rest().await;
    let names: Vec<&str> = frames.iter().map(|frame| frame.name()).collect();
    assert_eq!(
        names,
        ["started", "input_requested", "input_resolved", "result"],
        "{frames:?}"
    );
}

#[tokio::test]
async fn an_answer_given_on_another_replica_reaches_the_run_through_redis() {
    let redis = crate::common::redis_server::RedisServer::start();
    let root = std::env::current_dir().expect("cwd");
    let replica = |name: &'static str| {
        let store = crate::common::redis_store(&redis, name);
        let registry = registry_with(&root, vec![confirm_tool(), how_many_tool()]);
        async move { TestServer::start_with_store(registry, Limits::default(), &store).await }
    };
    let owner = replica("a").await;
    let other = replica("b").await;
    let mut elsewhere = runs(&other).await;

    let run_id = detached_run(&owner, "how_many").await;
    // The other replica sees the open request in the run's record.
    let asked = pending(&mut elsewhere, &run_id).await;
    assert_eq!(asked.prompt, "How many copies?");

    let refused = respond(
        &mut elsewhere,
        &run_id,
        &asked.request_id,
        json!({"count": -1}),
    )
    .await
    .expect_err("fails the schema");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("count"), "{}", refused.message());
    let unknown = respond(&mut elsewhere, &run_id, "input-7", json!({"count": 1})).await;
    assert_eq!(unknown.expect_err("unknown").code(), Code::NotFound);

    respond(
        &mut elsewhere,
        &run_id,
        &asked.request_id,
        json!({"count": 4}),
    )
    .await
    .expect("the answer, routed to the owner");
    let second = respond(
        &mut elsewhere,
        &run_id,
        &asked.request_id,
        json!({"count": 5}),
    )
    .await;
    assert_eq!(second.expect_err("second").code(), Code::FailedPrecondition);
    assert_eq!(
        succeeded_with(&mut elsewhere, &run_id).await,
        json!({"outcome": "answered", "value": {"count": 4}})
    );
    let ended = respond(
        &mut elsewhere,
        &run_id,
        &asked.request_id,
        json!({"count": 6}),
    )
    .await;
    assert_eq!(ended.expect_err("ended").code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_answers_a_request_and_a_second_answer_fails() {
    let server = server().await;
    let mut client = runs(&server).await;
    let run_id = detached_run(&server, "how_many").await;
    let asked = pending(&mut client, &run_id).await;
    let cwd = std::env::current_dir().expect("cwd");
    let respond = |value: &str| {
        crate::common::binary::toolstream(
            &cwd,
            &[
                "respond",
                &run_id,
                &asked.request_id,
                value,
                "--addr",
                &server.url(),
            ],
        )
        .output()
        .expect("toolstream respond")
    };
    let answered = tokio::task::block_in_place(|| respond(r#"{"count": 2}"#));
    assert!(answered.status.success(), "{answered:?}");
    let run: Value = serde_json::from_slice(&answered.stdout).expect("the Run as JSON");
    assert_eq!(run["runId"], run_id);

    let again = tokio::task::block_in_place(|| respond(r#"{"count": 3}"#));
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    // Already resolved, or the run already ended: either way FAILED_PRECONDITION.
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");
    assert_eq!(
        succeeded_with(&mut client, &run_id).await,
        json!({"outcome": "answered", "value": {"count": 2}})
    );
}

/// `ask_cmd`: a command tool (`asks = true`) that asks on stdout and reads the answer on stdin,
/// and ends with the answer line it read.
async fn asking_command_tool() -> Arc<dyn Tool> {
    let script = r#"
import json, sys
json.loads(sys.stdin.readline())
print(json.dumps({"ask": {"id": "q1", "prompt": "Proceed?", "schema": {"type": "boolean"}}}), flush=True)
print(json.dumps({"result": json.loads(sys.stdin.readline())["answer"]}), flush=True)
"#;
    let entry: toml::Table = toml::from_str(&format!(
        "kind = \"command\"\nname = \"ask_cmd\"\nasks = true\ncommand = [\"python3\", \"-c\", {}]\n",
        toml::Value::String(script.to_owned())
    ))
    .expect("entry");
    toolstream::tools::command::from_entry(&entry, &std::env::current_dir().expect("cwd"))
        .await
        .expect("a command tool")
}

#[tokio::test]
async fn a_command_tool_asks_on_stdout_and_reads_the_answer_on_stdin() {
    let root = std::env::current_dir().expect("cwd");
    let server = TestServer::start_with(
        registry_with(&root, vec![asking_command_tool().await]),
        Limits::default(),
    )
    .await;
    let mut client = runs(&server).await;

    let (run_id, mut stream) = start(&server, "ask_cmd", None).await;
    let asked = until_asked(&mut stream).await;
    assert_eq!(asked.prompt, "Proceed?");
    respond(&mut client, &run_id, &asked.request_id, json!(true))
        .await
        .expect("the answer");
    let (result, _) = result_of(stream).await;
    assert_eq!(
        result,
        json!({"id": "q1", "outcome": "answered", "value": true})
    );

    // Nobody answers: the tool reads `expired` and goes on.
    let options = pb::RunOptions {
        input_timeout_ms: 20,
        ..pb::RunOptions::default()
    };
    let (_, stream) = start(&server, "ask_cmd", Some(options)).await;
    let (result, _) = result_of(stream).await;
    assert_eq!(result, json!({"id": "q1", "outcome": "expired"}));
}

pub(crate) async fn metrics(server: &TestServer) -> String {
    http()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics")
}

#[tokio::test]
async fn metrics_count_runs_waiting_for_input_and_the_time_waited() {
    let server = server().await;
    let mut client = runs(&server).await;
    let (run_id, mut stream) = start(&server, "confirm", None).await;
    let asked = until_asked(&mut stream).await;
    let waiting = metrics(&server).await;
    assert!(
        waiting.contains("toolstream_runs_waiting_for_input 1\n"),
        "{waiting}"
    );
    respond(&mut client, &run_id, &asked.request_id, json!(true))
        .await
        .expect("the answer");
    result_of(stream).await;
    let answered = metrics(&server).await;
    assert!(
        answered.contains("toolstream_runs_waiting_for_input 0\n"),
        "{answered}"
    );
    assert!(
        answered.contains("toolstream_input_wait_seconds_count 1\n"),
        "{answered}"
    );
}

#[tokio::test]
async fn only_the_run_s_principal_may_answer() {
    use toolstream::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
    let principal = |name: &str, secret: &str| TokenEntry {
        sha256: token_digest(secret),
        principal: Arc::new(Principal {
            name: Arc::from(name),
            tools: ToolScope::from_list(None),
        }),
    };
    let auth = AuthConfig {
        tokens: vec![
            principal("alpha", "alpha-secret"),
            principal("beta", "beta-secret"),
        ],
        ..AuthConfig::default()
    };
    let root = std::env::current_dir().expect("cwd");
    let server = TestServer::serve(
        toolstream::server::Server::new(
            registry_with(&root, vec![confirm_tool()]),
            Limits::default(),
        )
        .with_auth(auth),
    )
    .await;
    let response = server
        .client()
        .await
        .run_tool(crate::common::with_token(
            Some("alpha-secret"),
            detached("confirm", json!({})),
        ))
        .await
        .expect("RunTool");
    let run_id = x_run_id(response.metadata());
    let client = runs(&server).await;
    crate::common::eventually(std::time::Duration::from_secs(30), "the run asks", || {
        let mut client = client.clone();
        let run_id = run_id.clone();
        async move {
            client
                .get_run(crate::common::with_token(
                    Some("alpha-secret"),
                    pb::GetRunRequest { run_id },
                ))
                .await
                .is_ok_and(|run| run.into_inner().state() == RunState::InputRequired)
        }
    })
    .await;

    let answer = |token: &'static str| {
        let mut client = client.clone();
        let request = respond_request(&run_id, "input-1", json!(true));
        async move {
            client
                .respond_to_run(crate::common::with_token(Some(token), request))
                .await
        }
    };
    let other = answer("beta-secret").await;
    assert_eq!(other.expect_err("beta's answer").code(), Code::NotFound);
    answer("alpha-secret").await.expect("alpha's answer");
}
