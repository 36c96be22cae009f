//! Partial results: a call's output streamed as it is made. Never coalesced (a slow reader gets
//! every one the log holds), stored and replayed (WatchRun from 0, on this replica and through
//! Redis on another), evicted past the log's bound only with a Gap, refused to the tool above the
//! message limit; every kind of tool emits them (native, command, a remote toolstream), checksum
//! emits each file's digest, and every face carries them (gRPC, SSE, WebSocket, JSON lines).

#[allow(dead_code)] // These tests use part of the stand-in.
use crate::common::model;

use std::sync::Arc;

use crate::common::runs::{detached, run_id_of, wait_for_state, watch};
use crate::common::web::{SseReader, http};
use crate::common::{
    Backend, Fleet, TestServer, collect, registry_with, result_value, run_request, run_tool,
};
use futures::{SinkExt, StreamExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Code;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, ModelProvider};
use toolstream::config::Limits;
use toolstream::json_proto::value_to_json;
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{self, RunAgentRequest, RunState};
use toolstream::server::Server;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

/// Arguments of the `emit` test tool.
#[derive(Deserialize, JsonSchema)]
struct EmitArgs {
    /// Partial results to emit, the i-th with value i, appended to the output "items".
    count: u64,
    /// Progress reports between two partial results (each with a long status, to fill a slow
    /// reader's window).
    #[serde(default)]
    progress_between: u64,
}

/// Emits `count` partial results (`items += i`), with progress between, then returns `count`.
fn emit_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "emit",
        "Emits numbered partial results.",
        |args: EmitArgs, progress: Progress| async move {
            let status = "x".repeat(1024);
            for i in 0..args.count {
                for _ in 0..args.progress_between {
                    progress.report(i as f64 / args.count as f64, status.clone());
                }
                progress.partial_append("items", i)?;
            }
            progress.partial(json!({"all_emitted": args.count}))?;
            Ok::<_, ToolError>(args.count)
        },
    ))
}

/// Arguments of the `oversized` test tool.
#[derive(Deserialize, JsonSchema)]
struct OversizedArgs {
    /// Bytes of the string sent as one partial result.
    bytes: usize,
    /// Pass the refusal on (`?`) rather than report it in the result.
    #[serde(default)]
    fail: bool,
}

/// Sends a small partial result, then one of `bytes` bytes; returns what the second got.
fn oversized_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "oversized",
        "Sends a partial result of the given size.",
        |args: OversizedArgs, progress: Progress| async move {
            progress.partial_append("", "small")?;
            let refused = progress.partial("y".repeat(args.bytes));
            if args.fail {
                refused.clone()?;
            }
            Ok::<_, ToolError>(json!({ "refused": refused.err().map(|e| e.to_string()) }))
        },
    ))
}

fn registry() -> toolstream::registry::ToolRegistry {
    let root = std::env::current_dir().unwrap();
    registry_with(&root, vec![emit_tool(), oversized_tool()])
}

/// The partial results among `events`, as `(sequence, call_id, key, value, append)`.
fn partials(events: &[pb::RunEvent]) -> Vec<(u64, String, String, Value, bool)> {
    events
        .iter()
        .filter_map(|event| match &event.event {
            Some(Event::PartialResult(partial)) => Some((
                event.sequence,
                partial.call_id.clone(),
                partial.key.clone(),
                partial.value.clone().map_or(Value::Null, value_to_json),
                partial.append,
            )),
            _ => None,
        })
        .collect()
}

/// The values appended to output `key`, in order.
fn appended(events: &[pb::RunEvent], key: &str) -> Vec<Value> {
    partials(events)
        .into_iter()
        .filter(|(_, _, k, _, append)| k == key && *append)
        .map(|(_, _, _, value, _)| value)
        .collect()
}

fn numbers(count: u64) -> Vec<Value> {
    (0..count).map(|i| json!(i)).collect()
}

fn progress_count(events: &[pb::RunEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Progress(_))))
        .count()
}

async fn slow_reader_gets_every_partial_result(backend: Backend) {
    // A small buffer: a reader that falls behind gets progress coalesced at once.
    let limits = Limits {
        event_buffer: 4,
        ..Limits::default()
    };
    let fleet = Fleet::start(backend, registry, limits).await;
    let (count, between) = (300, 20);
    let response = fleet
        .client()
        .await
        .run_tool(run_request(
            "emit",
            json!({"count": count, "progress_between": between}),
        ))
        .await
        .expect("RunTool");
    let run_id = run_id_of(&response);
    let mut stream = response.into_inner();
    // The reader reads nothing more until the run has ended: several MiB of progress wait on it.
    let mut runs = RunServiceClient::new(fleet.observer().channel().await);
    wait_for_state(&mut runs, &run_id, RunState::Succeeded).await;
    let mut events = vec![stream.message().await.unwrap().expect("started")];
    let (rest, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    events.extend(rest);

    assert_eq!(appended(&events, "items"), numbers(count));
    let last = partials(&events).pop().expect("the last partial");
    assert_eq!(
        (last.2.as_str(), last.3, last.4),
        ("", json!({"all_emitted": count}), false)
    );
    assert!(
        progress_count(&events) < (count * between) as usize,
        "the reader was slow: its progress was coalesced"
    );
    assert_eq!(result_value(events.last().unwrap()), Some(json!(count)));

    // Replayed: a WatchRun from 0 after the end (on the other replica with Redis) gets them all.
    let (replayed, status) = collect(watch(&mut runs, &run_id, 0).await).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(appended(&replayed, "items"), numbers(count));
    assert_eq!(
        partials(&replayed),
        partials(&events),
        "the same events, same sequences"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_partial_result_and_a_watch_from_0_replays_them() {
    slow_reader_gets_every_partial_result(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_replica_b_sees_every_partial_result() {
    slow_reader_gets_every_partial_result(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_watcher_on_replica_b_gets_every_partial_result() {
    let fleet = Fleet::start(Backend::Redis, registry, Limits::default()).await;
    let count = 2000;
    let response = fleet
        .client()
        .await
        .run_tool(detached("emit", json!({"count": count})))
        .await
        .expect("RunTool");
    let run_id = run_id_of(&response);
    let mut runs = RunServiceClient::new(fleet.observer().channel().await);
    let watcher = tokio::spawn(collect(watch(&mut runs, &run_id, 0).await));
    let (mine, status) = collect(response.into_inner()).await;
    assert!(status.is_none(), "{status:?}");
    let (theirs, status) = watcher.await.unwrap();
    assert!(status.is_none(), "{status:?}");
    assert_eq!(appended(&mine, "items"), numbers(count));
    assert_eq!(partials(&theirs), partials(&mine));
}

async fn evicted_partial_results_become_a_gap(backend: Backend) {
    let limits = Limits {
        max_events_per_run: 50,
        ..Limits::default()
    };
    let fleet = Fleet::start(backend, registry, limits).await;
    let count = 400;
    let (events, status) = run_tool(&fleet, "emit", json!({"count": count})).await;
    assert!(status.is_none(), "{status:?}");
    let run_id = events[0].run_id.clone();
    let last_sequence = events.last().unwrap().sequence;

    let mut runs = RunServiceClient::new(fleet.observer().channel().await);
    let (replayed, status) = collect(watch(&mut runs, &run_id, 0).await).await;
    assert!(status.is_none(), "{status:?}");
    assert!(matches!(replayed[0].event, Some(Event::Started(_))));
    let gaps: Vec<&pb::Gap> = replayed
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Gap(gap)) => Some(gap),
            _ => None,
        })
        .collect();
    assert!(!gaps.is_empty(), "the log bound evicted partial results");
    // Never a silent hole: every sequence of the run is either delivered or inside a gap.
    let delivered: Vec<u64> = replayed.iter().map(|e| e.sequence).collect();
    for sequence in 1..=last_sequence {
        assert!(
            delivered.contains(&sequence)
                || gaps
                    .iter()
                    .any(|g| (g.from_sequence..=g.to_sequence).contains(&sequence)),
            "sequence {sequence} is neither delivered nor announced gone"
        );
    }
    // What is delivered is the tail, in order, unchanged.
    let tail = appended(&replayed, "items");
    assert!(!tail.is_empty() && tail.len() < count as usize);
    assert_eq!(tail, numbers(count)[count as usize - tail.len()..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_results_evicted_past_the_log_bound_become_a_gap() {
    evicted_partial_results_become_a_gap(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_results_evicted_from_redis_become_a_gap_on_replica_b() {
    evicted_partial_results_become_a_gap(Backend::Redis).await;
}

fn small_messages() -> Limits {
    Limits {
        max_message_bytes: 64 * 1024,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_partial_result_above_the_message_limit_is_refused_to_the_tool_naming_the_limit() {
    let server = TestServer::start_with(registry(), small_messages()).await;
    let (events, status) = run_tool(&server, "oversized", json!({"bytes": 100_000})).await;
    assert!(status.is_none(), "{status:?}");
    // The small one went out; the large one was refused, never sent cut short.
    assert_eq!(
        partials(&events)
            .into_iter()
            .map(|p| p.3)
            .collect::<Vec<_>>(),
        [json!("small")]
    );
    let result = result_value(events.last().unwrap()).expect("a result");
    let refused = result["refused"].as_str().expect("refused");
    assert!(refused.contains("65536"), "{refused}");
    assert!(refused.contains("max_message_bytes"), "{refused}");

    // Passed on with `?`, it fails the run as OUT_OF_RANGE with the same words.
    let (events, status) = run_tool(
        &server,
        "oversized",
        json!({"bytes": 100_000, "fail": true}),
    )
    .await;
    let status = status.expect("the run failed");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    assert_eq!(partials(&events).len(), 1);

    // Just under the limit passes whole.
    let (events, status) = run_tool(&server, "oversized", json!({"bytes": 60_000})).await;
    assert!(status.is_none(), "{status:?}");
    let sent = partials(&events);
    assert_eq!(sent[1].3.as_str().map(str::len), Some(60_000));
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"refused": null}))
    );
}

/// `[[tools]]` entry of tests/tools/partial_tool.py (with the Python helper importable).
fn partial_command_entry() -> toml::Table {
    let manifest = env!("CARGO_MANIFEST_DIR");
    toml::from_str(&format!(
        "kind = \"command\"\nname = \"partial_cmd\"\n\
         command = [\"python3\", \"{manifest}/tests/tools/partial_tool.py\"]\n\
         env = {{ PYTHONPATH = \"{manifest}/python\" }}\n\
         input_schema = {{ type = \"object\" }}\n"
    ))
    .unwrap()
}

async fn command_server(limits: Limits) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let mut registry = registry();
    toolstream::configured_tools::load_entries(
        &[partial_command_entry()],
        &root,
        &limits,
        &mut registry,
    )
    .await
    .unwrap();
    TestServer::start_with(registry, limits).await
}

#[tokio::test]
async fn a_command_tool_emits_partial_results_through_the_protocol_and_the_python_helper() {
    let server = command_server(Limits::default()).await;
    let (events, status) = run_tool(&server, "partial_cmd", json!({"count": 5})).await;
    assert!(status.is_none(), "{status:?}");
    let sent = partials(&events);
    assert_eq!(appended(&events, "hits"), numbers(5));
    // The helper's `partial(...)` replacing the main output, and a line written by hand.
    assert_eq!(
        (sent[5].2.as_str(), &sent[5].3, sent[5].4),
        ("", &json!("best so far"), false)
    );
    assert_eq!((sent[6].2.as_str(), &sent[6].3), ("raw", &json!({"n": 5})));
    assert_eq!(result_value(events.last().unwrap()), Some(json!(5)));

    // Too large for the server's messages: the call fails naming the limit.
    let server = command_server(small_messages()).await;
    let (_, status) = run_tool(&server, "partial_cmd", json!({"count": 1, "big": 100_000})).await;
    let status = status.expect("the run failed");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("max_message_bytes"), "{status:?}");
}

#[tokio::test]
async fn a_remote_toolstreams_partial_results_are_relayed_under_the_local_call() {
    let remote = TestServer::start_with(registry(), Limits::default()).await;
    let root = std::env::current_dir().unwrap();
    let mut local = registry_with(&root, vec![]);
    let entry: toml::Table = toml::from_str(&format!(
        "kind = \"grpc\"\nendpoint = \"{}\"\nprefix = \"remote.\"\n",
        remote.url()
    ))
    .unwrap();
    toolstream::configured_tools::load_entries(&[entry], &root, &Limits::default(), &mut local)
        .await
        .unwrap();
    let server = TestServer::start_with(local, Limits::default()).await;
    let (events, status) = run_tool(&server, "remote.emit", json!({"count": 50})).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(appended(&events, "items"), numbers(50));
    // The remote's top level is this run's top level: no call id.
    assert!(partials(&events).iter().all(|p| p.1.is_empty()));
}

#[tokio::test]
async fn checksum_emits_each_files_digest_as_soon_as_it_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a.txt", "b.txt", "c.txt"];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(dir.path().join(name), "z".repeat(1000 * (i + 1))).unwrap();
    }
    let server = TestServer::start_with(registry_with(dir.path(), vec![]), Limits::default()).await;
    let (events, status) = run_tool(&server, "checksum", json!({"paths": names})).await;
    assert!(status.is_none(), "{status:?}");
    let result = result_value(events.last().unwrap()).unwrap();
    // Each digest came as the output "files" grew, equal to the result's entries.
    assert_eq!(Value::Array(appended(&events, "files")), result["files"]);
    // Each one before the next file's progress: as soon as it was known.
    let position = |predicate: &dyn Fn(&pb::RunEvent) -> bool| {
        events.iter().position(predicate).expect("the event")
    };
    for (i, name) in names.iter().enumerate().skip(1) {
        let digest_of_previous = position(&|e| match &e.event {
            Some(Event::PartialResult(p)) => p
                .value
                .clone()
                .map(value_to_json)
                .is_some_and(|v| v["path"] == json!(names[i - 1])),
            _ => false,
        });
        let next_file = position(&|e| match &e.event {
            Some(Event::Progress(p)) => p.tool == *name,
            _ => false,
        });
        assert!(digest_of_previous < next_file, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_websocket_and_json_lines_carry_partial_results() {
    let server = TestServer::start_with(registry(), Limits::default()).await;

    // SSE: `event: partial_result`, the canonical JSON of the RunEvent.
    let response = http()
        .post(format!("{}/v1/tools/emit/runs", server.url()))
        .header("accept", "text/event-stream")
        .json(&json!({"arguments": {"count": 3}}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let frames = SseReader::new(response).rest().await;
    let sse: Vec<Value> = frames
        .iter()
        .filter(|f| f.name() == "partial_result")
        .map(|f| f.json()["partialResult"].clone())
        .collect();
    assert_eq!(sse.len(), 4, "{frames:?}");
    assert_eq!(sse[1], json!({"key": "items", "value": 1, "append": true}));
    assert_eq!(sse[3], json!({"value": {"all_emitted": 3}}));

    // JSON lines: the CLI, not on a terminal, prints one line per event.
    let cwd = std::env::current_dir().unwrap();
    let url = server.url();
    // On a blocking thread: the server runs on this test's runtime.
    let output = tokio::task::spawn_blocking(move || {
        crate::common::binary::toolstream(&cwd, &["run", "emit", "--arg", "count=3"])
            .env("TOOLSTREAM_ADDR", url)
            .output()
            .expect("toolstream run")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|line: &Value| line.get("partialResult").is_some())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[2]["partialResult"]["value"], json!(2));

    // WebSocket: the same JSON, in frames.
    let url = format!("ws://{}/v1/ws", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"type": "run_tool", "id": "r1", "tool": "emit", "arguments": {"count": 3}})
                .to_string(),
        ))
        .await
        .unwrap();
    let mut partial_frames = Vec::new();
    while let Some(Ok(message)) = socket.next().await {
        let Ok(text) = message.into_text() else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        let event = frame.get("event").cloned().unwrap_or(frame.clone());
        if let Some(partial) = event.get("partialResult") {
            partial_frames.push(partial.clone());
        }
        if event.get("result").is_some() || frame.get("error").is_some() {
            break;
        }
    }
    assert_eq!(partial_frames.len(), 4, "{partial_frames:?}");
    assert_eq!(partial_frames[0]["value"], json!(0));
}

#[tokio::test]
async fn an_agents_tool_call_shows_its_partial_results_under_the_call_and_not_to_the_model() {
    let model = model::StandIn::start(vec![
        model::tool_calls(&[("call_1", "emit", r#"{"count": 3}"#)]),
        model::text(&["done"]),
    ])
    .await;
    let provider: Arc<dyn ModelProvider> = Arc::new(OpenAiProvider::new(&model.url, None).unwrap());
    let settings = AgentSettings {
        provider: Some(provider),
        default_model: Some("standin-model".into()),
        ..AgentSettings::default()
    };
    let server =
        TestServer::serve(Server::new(registry(), Limits::default()).with_agent(settings)).await;
    let response = server
        .client()
        .await
        .run_agent(RunAgentRequest {
            prompt: "emit three".into(),
            tools: vec!["emit".into()],
            ..RunAgentRequest::default()
        })
        .await
        .expect("RunAgent");
    let (events, status) = collect(response.into_inner()).await;
    assert!(status.is_none(), "{status:?}");

    // Under the call, between its start and its end.
    let sent = partials(&events);
    assert_eq!(appended(&events, "items"), numbers(3));
    assert!(sent.iter().all(|p| p.1 == "call_1"), "{sent:?}");
    let at = |wanted: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .position(|e| e.event.as_ref().is_some_and(wanted))
            .expect("the event")
    };
    let started = at(&|e| matches!(e, Event::ToolCallStarted(_)));
    let finished = at(&|e| matches!(e, Event::ToolCallFinished(_)));
    let first = at(&|e| matches!(e, Event::PartialResult(_)));
    assert!(started < first && sent.last().unwrap().0 < events[finished].sequence);

    // The model read the call's result, and nothing of its partial results.
    let requests = model.requests();
    let tool_messages: Vec<&Value> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_messages.len(), 1);
    assert_eq!(tool_messages[0]["content"], json!("3"));
    assert!(
        !requests[1].to_string().contains("all_emitted"),
        "{}",
        requests[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_run_view_appends_partial_results() {
    if std::env::var_os("TOOLSTREAM_SKIP_BROWSER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: TOOLSTREAM_SKIP_BROWSER_TESTS=1");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let names = ["first.txt", "second.txt", "third.txt"];
    for name in names {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    let server = TestServer::start_with(registry_with(dir.path(), vec![]), Limits::default()).await;
    let url = server.url();
    let output = tokio::task::spawn_blocking(move || {
        let mut args = vec![url.as_str()];
        args.extend(names);
        crate::common::run_python("browser_page_partials.py", &args)
    })
    .await
    .unwrap();
    assert!(
        output.contains("browser page partials: all checks passed"),
        "{output}"
    );
}
