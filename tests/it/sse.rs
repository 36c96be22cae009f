//! Runs over HTTP as server-sent events, on the gRPC port: the framing (`id`, `event`, `data`
//! lines), keep-alive comments while a tool is silent, the terminal event then the end,
//! `event: error` with the code's name, resume with `Last-Event-ID` / `?after=` / `?from=latest`,
//! coalescing for a slow reader, and streams ending cleanly when the server drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::alone::in_own_process;
use crate::common::model::{StandIn, text, tool_calls};
use crate::common::web::{Frame, SseReader, event_key, http, snake};
use crate::common::{TestServer, endless_tool, eventually, registry_with, run_is};
use serde_json::{Value, json};
use toolstream::agent::AgentSettings;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::config::{HttpConfig, Limits};
use toolstream::engine::RunState;
use toolstream::server::Server;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// `silent`: says nothing for 700 ms, then answers.
fn silent_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "silent",
        "Thinks quietly.",
        |_: NoArgs, _: Progress| async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok::<_, ToolError>(json!("done"))
        },
    ))
}

/// `fails`: reports half way, then fails.
fn failing_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "fails",
        "Gets half way.",
        |_: NoArgs, progress: Progress| async move {
            progress.report(0.5, "half way");
            Err::<Value, _>(ToolError::Failed("the disk is on fire".into()))
        },
    ))
}

async fn web_server(limits: Limits, extra: Vec<Arc<dyn Tool>>) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let http = HttpConfig {
        keep_alive: Duration::from_millis(100),
        ..HttpConfig::default()
    };
    TestServer::serve(Server::new(registry_with(&root, extra), limits).with_http(http)).await
}

async fn start(server: &TestServer, tool: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/tools/{tool}/runs", server.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Checks an event frame against its data: the name is the oneof field's, the id the sequence.
fn check_event(frame: &Frame) -> Value {
    let data = frame.json();
    let key = event_key(&data);
    assert_eq!(frame.name(), snake(&key), "{frame:?}");
    match frame.id() {
        Some(id) => assert_eq!(data["sequence"], id.to_string(), "{frame:?}"),
        // Gaps and heartbeats: sequence 0, which canonical JSON leaves out.
        None => {
            assert!(matches!(key.as_str(), "gap" | "heartbeat"), "{frame:?}");
            assert!(data.get("sequence").is_none(), "{frame:?}");
        }
    }
    data
}

#[tokio::test]
async fn a_run_streams_id_event_and_data_lines_then_ends_after_its_result() {
    let server = web_server(Limits::default(), vec![]).await;
    let response = start(
        &server,
        "ticks",
        json!({"arguments": {"count": 3, "interval_ms": 1}}),
    )
    .await;
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let mut sse = SseReader::new(response);
    let events = sse.rest().await;

    let names: Vec<&str> = events.iter().map(Frame::name).collect();
    assert_eq!(
        names,
        ["started", "progress", "progress", "progress", "result"]
    );
    let ids: Vec<u64> = events.iter().map(|e| e.id().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    for event in &events {
        let data = check_event(event);
        assert_eq!(data["runId"], run_id.as_str());
        // RFC 3339 with a Z, as protobuf's printers write it.
        assert!(data["timestamp"].as_str().unwrap().ends_with('Z'), "{data}");
    }
    let started = events[0].json();
    assert_eq!(started["started"]["tool"], "ticks");
    assert_eq!(started["started"]["runId"], run_id.as_str());
    let progress = events[3].json();
    assert_eq!(progress["progress"]["progress"], 1.0);
    // google.protobuf.Value numbers are doubles, written as protobuf's printers write them.
    assert_eq!(events[4].json()["result"]["value"], json!({"count": 3}));
}

#[tokio::test]
async fn a_silent_tool_gets_keep_alive_comments_until_its_result() {
    let server = web_server(Limits::default(), vec![silent_tool()]).await;
    let mut sse = SseReader::new(start(&server, "silent", json!({})).await);
    let mut frames = Vec::new();
    while let Some(frame) = sse.next().await {
        frames.push(frame);
    }
    let names: Vec<&str> = frames.iter().map(Frame::name).collect();
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"result"), "{names:?}");
    // 700 ms of silence with keep-alives every 100 ms.
    let comments = names.iter().filter(|name| **name == ":").count();
    assert!(comments >= 3, "{names:?}");
    assert!(
        names[1..names.len() - 1].iter().all(|name| *name == ":"),
        "{names:?}"
    );
}

#[tokio::test]
async fn heartbeats_asked_for_have_no_id() {
    let server = web_server(Limits::default(), vec![silent_tool()]).await;
    let mut sse = SseReader::new(
        start(
            &server,
            "silent",
            json!({"options": {"heartbeatIntervalMs": 200}}),
        )
        .await,
    );
    let events = sse.rest().await;
    let heartbeats: Vec<&Frame> = events.iter().filter(|e| e.name() == "heartbeat").collect();
    assert!(!heartbeats.is_empty(), "{events:?}");
    for heartbeat in heartbeats {
        assert_eq!(heartbeat.id(), None);
        let data = check_event(heartbeat);
        assert_eq!(data["heartbeat"]["lastSequence"], "1");
    }
    assert_eq!(events.last().unwrap().name(), "result");
}

#[tokio::test]
async fn a_run_that_fails_after_streaming_began_ends_with_an_error_event() {
    let server = web_server(Limits::default(), vec![failing_tool()]).await;
    let mut sse = SseReader::new(start(&server, "fails", json!({})).await);
    let events = sse.rest().await;
    let names: Vec<&str> = events.iter().map(Frame::name).collect();
    assert_eq!(names, ["started", "progress", "error"]);
    let error = &events[2];
    assert_eq!(error.id(), None);
    let body = error.json();
    assert_eq!(body["code"], "ABORTED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the disk is on fire"),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn errors_before_streaming_are_http_statuses_with_code_and_message() {
    let limits = Limits {
        max_concurrent_runs: 1,
        max_message_bytes: 4096,
        ..Limits::default()
    };
    let stopped = Arc::new(AtomicBool::new(false));
    let server = web_server(limits, vec![endless_tool(stopped)]).await;
    let url = server.url();
    let client = http();

    async fn expect(response: reqwest::Response, status: u16, code: &str, needle: &str) {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }

    let post = |path: &str, body: &str| {
        client
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    expect(
        post("/v1/tools/nope/runs", "{}").await.unwrap(),
        404,
        "NOT_FOUND",
        "nope",
    )
    .await;
    expect(
        post(
            "/v1/tools/ticks/runs",
            r#"{"arguments": {"count": "many"}}"#,
        )
        .await
        .unwrap(),
        400,
        "INVALID_ARGUMENT",
        "count",
    )
    .await;
    expect(
        post("/v1/tools/ticks/runs", r#"{"argumnts": {}}"#)
            .await
            .unwrap(),
        400,
        "INVALID_ARGUMENT",
        "argumnts",
    )
    .await;
    expect(
        post("/v1/tools/ticks/runs", "{not json").await.unwrap(),
        400,
        "INVALID_ARGUMENT",
        "RunToolRequest",
    )
    .await;
    expect(
        post(
            "/v1/tools/ticks/runs",
            &format!("{{\"arguments\": {{\"x\": \"{}\"}}}}", "y".repeat(8192)),
        )
        .await
        .unwrap(),
        413,
        "OUT_OF_RANGE",
        "",
    )
    .await;
    expect(
        post("/v1/agent/runs", r#"{"prompt": "hi"}"#).await.unwrap(),
        400,
        "FAILED_PRECONDITION",
        "model",
    )
    .await;
    let get = |path: &str| client.get(format!("{url}{path}")).send();
    expect(
        get("/v1/runs/r-unknown").await.unwrap(),
        404,
        "NOT_FOUND",
        "r-unknown",
    )
    .await;
    expect(
        get("/v1/runs/r-unknown/events").await.unwrap(),
        404,
        "NOT_FOUND",
        "r-unknown",
    )
    .await;
    expect(
        get("/v1/runs?state=sleeping").await.unwrap(),
        400,
        "INVALID_ARGUMENT",
        "SLEEPING",
    )
    .await;
    expect(
        get("/v1/runs/x/events?after=soon").await.unwrap(),
        400,
        "INVALID_ARGUMENT",
        "after",
    )
    .await;
    expect(
        get("/v1/nowhere").await.unwrap(),
        404,
        "NOT_FOUND",
        "/v1/nowhere",
    )
    .await;
    expect(
        get("/v1/tools/ticks/runs").await.unwrap(),
        405,
        "UNIMPLEMENTED",
        "GET",
    )
    .await;

    // The server's one run slot taken: the next run is refused with 429.
    let mut running = SseReader::new(post("/v1/tools/endless/runs", "{}").await.unwrap());
    assert_eq!(running.next_event().await.unwrap().name(), "started");
    expect(
        post("/v1/tools/ticks/runs", r#"{"arguments": {"count": 1}}"#)
            .await
            .unwrap(),
        429,
        "RESOURCE_EXHAUSTED",
        "limit",
    )
    .await;
}

#[tokio::test]
async fn accept_json_starts_a_detached_run_that_can_be_watched_and_resumed() {
    let server = web_server(Limits::default(), vec![]).await;
    let url = server.url();
    let response = http()
        .post(format!("{url}/v1/tools/ticks/runs"))
        .header("accept", "application/json")
        .json(&json!({"arguments": {"count": 5, "interval_ms": 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let run: Value = response.json().await.unwrap();
    let run_id = run["runId"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/runs/{run_id}"));
    assert_eq!(run["tool"], "ticks");
    assert_eq!(run["state"], "RUN_STATE_RUNNING");

    // The caller is gone (the response ended) and the run goes on to its end.
    let engine = Arc::clone(&server.engine);
    let id = run_id.clone();
    eventually(
        Duration::from_secs(30),
        "the detached run to succeed",
        || run_is(&engine, &id, RunState::Succeeded),
    )
    .await;
    let run: Value = http()
        .get(format!("{url}{location}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "RUN_STATE_SUCCEEDED");
    assert_eq!(run["lastSequence"], "7");
    assert_eq!(run["result"], json!({"count": 5}));

    let watch = |query: &str, last_event_id: Option<&str>| {
        let mut request = http().get(format!("{url}/v1/runs/{run_id}/events{query}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };
    let ids = |events: &[Frame]| events.iter().map(|e| e.id().unwrap()).collect::<Vec<_>>();

    let all = SseReader::new(watch("", None).await.unwrap()).rest().await;
    assert_eq!(ids(&all), [1, 2, 3, 4, 5, 6, 7]);
    // A reconnecting EventSource sends Last-Event-ID; it wins over the URL's cursor.
    let resumed = SseReader::new(watch("?after=1", Some("4")).await.unwrap())
        .rest()
        .await;
    assert_eq!(ids(&resumed), [5, 6, 7]);
    for event in &resumed {
        check_event(event);
    }
    let after = SseReader::new(watch("?after=2", None).await.unwrap())
        .rest()
        .await;
    assert_eq!(ids(&after), [3, 4, 5, 6, 7]);
    // A cursor at the end still ends with the terminal event; one past it is refused.
    let at_end = SseReader::new(watch("?after=7", None).await.unwrap())
        .rest()
        .await;
    assert_eq!(ids(&at_end), [7]);
    let past = watch("?after=99", None).await.unwrap();
    assert_eq!(past.status(), 400);
    let error: Value = past.json().await.unwrap();
    assert_eq!(error["code"], "OUT_OF_RANGE");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("past the run's last event"),
        "{error}"
    );
    let latest = SseReader::new(watch("?from=latest", None).await.unwrap())
        .rest()
        .await;
    let names: Vec<&str> = latest.iter().map(Frame::name).collect();
    assert_eq!(names.first(), Some(&"started"));
    assert_eq!(names.last(), Some(&"result"));

    // The list has it; the state filter takes short names.
    let page: Value = http()
        .get(format!(
            "{url}/v1/runs?state=succeeded&tool=ticks&pageSize=10"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = page["runs"].as_array().unwrap();
    assert!(
        runs.iter().any(|run| run["runId"] == run_id.as_str()),
        "{page}"
    );
}

#[tokio::test]
async fn a_run_can_be_cancelled_over_http_and_every_stream_of_it_ends() {
    let stopped = Arc::new(AtomicBool::new(false));
    let server = web_server(Limits::default(), vec![endless_tool(Arc::clone(&stopped))]).await;
    let url = server.url();
    let response = start(&server, "endless", json!({})).await;
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let mut caller = SseReader::new(response);
    assert_eq!(caller.next_event().await.unwrap().name(), "started");
    let mut watcher = SseReader::new(
        http()
            .get(format!("{url}/v1/runs/{run_id}/events?from=latest"))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(watcher.next_event().await.unwrap().name(), "started");

    let run: Value = http()
        .post(format!("{url}/v1/runs/{run_id}/cancel"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "RUN_STATE_CANCELLED");
    assert_eq!(run["errorCode"], 1);
    for stream in [&mut caller, &mut watcher] {
        let events = stream.rest().await;
        let last = events.last().unwrap();
        assert_eq!(last.name(), "error");
        assert_eq!(last.json()["code"], "CANCELLED");
    }
    eventually(Duration::from_secs(10), "the tool to stop", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn closing_the_http_response_cancels_the_run() {
    let stopped = Arc::new(AtomicBool::new(false));
    let server = web_server(Limits::default(), vec![endless_tool(Arc::clone(&stopped))]).await;
    let response = start(&server, "endless", json!({})).await;
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let mut sse = SseReader::new(response);
    assert_eq!(sse.next_event().await.unwrap().name(), "started");
    drop(sse);
    eventually(Duration::from_secs(10), "the tool to stop", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(
        server.engine.get_run(&run_id).await.unwrap().state,
        RunState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_http_reader_gets_coalesced_progress_and_the_log_stays_bounded() {
    let server = web_server(Limits::default(), vec![]).await;
    let count = 200_000u64;
    let response = start(
        &server,
        "ticks",
        json!({"arguments": {"count": count, "interval_ms": 0}}),
    )
    .await;
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let mut sse = SseReader::new(response);
    assert_eq!(sse.next_event().await.unwrap().name(), "started");
    // The reader stops reading while the tool runs: the tool is not slowed, nothing piles up.
    let engine = Arc::clone(&server.engine);
    let mut most_held = 0;
    eventually(Duration::from_secs(120), "the run to finish", || {
        most_held = most_held.max(engine.held_events(&run_id).unwrap_or(0));
        run_is(&engine, &run_id, RunState::Succeeded)
    })
    .await;
    assert!(most_held <= 1000, "the log held {most_held} events");

    let events = sse.rest().await;
    let ids: Vec<u64> = events.iter().map(|e| e.id().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert_eq!(*ids.last().unwrap(), count + 2);
    assert_eq!(events.last().unwrap().name(), "result");
    assert!(
        (events.len() as u64) < count / 2,
        "{} of {count} progress events delivered: not coalesced",
        events.len()
    );
}

#[tokio::test]
async fn health_turns_503_and_streams_end_cleanly_when_the_server_drains() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process("sse::health_turns_503_and_streams_end_cleanly_when_the_server_drains") {
        return;
    }
    let root = std::env::current_dir().unwrap();
    let limits = Limits {
        grace_period: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut server = TestServer::serve(Server::new(registry_with(&root, vec![]), limits)).await;
    let url = server.url();
    let healthz = || async {
        let response = http().get(format!("{url}/healthz")).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body)
    };
    assert_eq!(healthz().await, (200, json!({"status": "SERVING"})));

    let response = http()
        .post(format!("{url}/v1/tools/ticks/runs"))
        .json(&json!({"arguments": {"count": 5, "interval_ms": 60000}}))
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(response);
    assert_eq!(sse.next_event().await.unwrap().name(), "started");

    let serve_task = server.begin_shutdown();
    let health = eventually(
        Duration::from_secs(10),
        "/healthz to stop answering 200",
        async || {
            let health = healthz().await;
            (health.0 != 200).then_some(health)
        },
    )
    .await;
    assert_eq!(health, (503, json!({"status": "NOT_SERVING"})));
    let refused = http()
        .post(format!("{url}/v1/tools/ticks/runs"))
        .json(&json!({"arguments": {"count": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "UNAVAILABLE");

    // The grace period passes: the run is cancelled, its stream says so and ends cleanly.
    let events = sse.rest().await;
    let last = events.last().unwrap();
    assert_eq!(last.name(), "error");
    assert_eq!(last.json()["code"], "UNAVAILABLE");
    serve_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn json_routes_answer_over_http2_too() {
    let server = web_server(Limits::default(), vec![]).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/v1/tools", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let tools: Value = response.json().await.unwrap();
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ticks") && names.contains(&"checksum"),
        "{names:?}"
    );
    let ticks = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == "ticks")
        .unwrap();
    assert_eq!(ticks["inputSchema"]["type"], "object");
    assert_eq!(ticks["kind"], "native");

    let response = client
        .post(format!("{}/v1/tools/ticks/runs", server.url()))
        .json(&json!({"arguments": {"count": 2, "interval_ms": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let names: Vec<String> = SseReader::new(response)
        .rest()
        .await
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    assert_eq!(names, ["started", "progress", "progress", "result"]);
}

#[tokio::test]
async fn an_agent_run_streams_its_text_and_tool_calls_as_sse() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 2, "interval_ms": 1}"#)]),
        text(&["Two ", "ticks."]),
        tool_calls(&[("call_9", "ticks", r#"{"count": 1, "interval_ms": 0}"#)]),
        text(&["Again."]),
    ])
    .await;
    let root = std::env::current_dir().unwrap();
    let settings = AgentSettings {
        provider: Some(Arc::new(OpenAiProvider::new(&model.url, None).unwrap())),
        default_model: Some("standin-model".into()),
        ..AgentSettings::default()
    };
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![]), Limits::default()).with_agent(settings),
    )
    .await;
    let response = http()
        .post(format!("{}/v1/agent/runs", server.url()))
        .json(&json!({"prompt": "tick twice", "tools": ["ticks"], "maxSteps": 3}))
        .send()
        .await
        .unwrap();
    let events = SseReader::new(response).rest().await;
    for event in &events {
        check_event(event);
    }
    let names: Vec<&str> = events.iter().map(Frame::name).collect();
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"result"), "{names:?}");
    for name in ["tool_call_started", "tool_call_finished", "message"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let started = events[0].json();
    assert_eq!(started["started"]["model"], "standin-model");
    assert_eq!(started["started"]["maxSteps"], 3);
    let call = events
        .iter()
        .find(|e| e.name() == "tool_call_started")
        .unwrap()
        .json();
    assert_eq!(call["toolCallStarted"]["callId"], "call_1");
    assert_eq!(
        call["toolCallStarted"]["arguments"],
        json!({"count": 2, "interval_ms": 1})
    );
    let call_progress = events
        .iter()
        .filter(|e| e.name() == "progress")
        .map(Frame::json)
        .filter(|e| e["progress"]["callId"] == "call_1")
        .count();
    assert!(call_progress >= 1, "{names:?}");
    assert_eq!(
        events.last().unwrap().json()["result"]["value"],
        "Two ticks."
    );

    // Detached: the Run at once, an agent run.
    let response = http()
        .post(format!("{}/v1/agent/runs", server.url()))
        .header("accept", "application/json")
        .json(&json!({"prompt": "again", "tools": ["ticks"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["agent"], true);
    assert!(run.get("tool").is_none(), "{run}");
}
