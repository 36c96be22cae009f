//! RunAgent against a stand-in model that speaks the OpenAI-compatible streaming protocol: every
//! step streams in the order the contract promises, tool failures go back to the model, and model
//! failures end the stream with a clear status.

use crate::common;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::model::{Reply, StandIn, fails_mid_answer, text, tool_calls};
use crate::common::{TestServer, collect, endless_tool, eventually, registry_with};
use serde_json::{Value, json};
use tonic::Code;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, DEFAULT_MAX_PARALLEL_CALLS, ModelProvider};
use toolstream::config::Limits;
use toolstream::json_proto::{struct_to_json, value_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::{self, RunAgentRequest, tool_call_finished::Outcome};
use toolstream::server::Server;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

async fn agent_server(url: Option<&str>, extra: Vec<Arc<dyn Tool>>) -> TestServer {
    agent_server_with(url, extra, DEFAULT_MAX_PARALLEL_CALLS).await
}

async fn agent_server_with(
    url: Option<&str>,
    extra: Vec<Arc<dyn Tool>>,
    max_parallel_calls: usize,
) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let provider: Option<Arc<dyn ModelProvider>> =
        url.map(|url| Arc::new(OpenAiProvider::new(url, Some("test-key".into())).unwrap()) as _);
    let settings = AgentSettings {
        provider,
        default_model: Some("standin-model".into()),
        default_max_steps: 4,
        max_parallel_calls,
    };
    TestServer::serve(
        Server::new(registry_with(&root, extra), Limits::default()).with_agent(settings),
    )
    .await
}

fn prompt(text: &str) -> RunAgentRequest {
    RunAgentRequest {
        prompt: text.into(),
        ..RunAgentRequest::default()
    }
}

async fn run(
    server: &TestServer,
    request: RunAgentRequest,
) -> (Vec<pb::RunEvent>, Option<tonic::Status>) {
    match server.client().await.run_agent(request).await {
        Ok(response) => collect(response.into_inner()).await,
        Err(status) => (Vec::new(), Some(status)),
    }
}

/// A short name per event, to compare orders: `started`, `msg`, `call:ID`, `progress:ID`,
/// `progress:` (the run as a whole), `partial:ID`, `done:ID`, `result`.
fn shape(events: &[pb::RunEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event.event.as_ref().unwrap() {
            Event::Started(_) => "started".to_owned(),
            Event::Message(_) => "msg".to_owned(),
            Event::ToolCallStarted(call) => format!("call:{}", call.call_id),
            Event::Progress(progress) => format!("progress:{}", progress.call_id),
            Event::ToolCallFinished(call) => format!("done:{}", call.call_id),
            Event::Result(_) => "result".to_owned(),
            Event::Gap(_) => "gap".to_owned(),
            Event::Heartbeat(_) => "heartbeat".to_owned(),
            Event::InputRequested(request) => format!("ask:{}", request.call_id),
            Event::InputResolved(_) => "answered".to_owned(),
            Event::PartialResult(partial) => format!("partial:{}", partial.call_id),
        })
        .collect()
}

fn finished(events: &[pb::RunEvent], call_id: &str) -> Result<Value, String> {
    events
        .iter()
        .find_map(|event| match &event.event {
            Some(Event::ToolCallFinished(call)) if call.call_id == call_id => {
                Some(match call.outcome.clone().unwrap() {
                    Outcome::Result(value) => Ok(value_to_json(value)),
                    Outcome::Error(error) => Err(error),
                })
            }
            _ => None,
        })
        .expect("the call finished")
}

fn final_answer(events: &[pb::RunEvent]) -> Value {
    match &events.last().unwrap().event {
        Some(Event::Result(result)) => value_to_json(result.value.clone().unwrap()),
        other => panic!("the last event is not a result: {other:?}"),
    }
}

/// The messages the agent sent to the model in request `n`.
fn tool_messages(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

#[tokio::test]
async fn one_tool_call_streams_every_step_in_order() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 3, "interval_ms": 1}"#)]),
        text(&["Three ", "ticks ", "done."]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let (events, status) = run(&server, prompt("tick three times")).await;
    assert!(status.is_none(), "{status:?}");

    let shape = shape(&events);
    assert_eq!(shape[0], "started");
    assert_eq!(shape[1], "call:call_1");
    let done = shape.iter().position(|s| s == "done:call_1").unwrap();
    let tool_progress = shape.iter().filter(|s| *s == "progress:call_1").count();
    assert!(tool_progress >= 1, "{shape:?}");
    assert!(
        shape[2..done].iter().all(|s| s.starts_with("progress:")),
        "{shape:?}"
    );
    assert!(
        shape[..done].iter().any(|s| s == "progress:"),
        "run-level progress: {shape:?}"
    );
    // The answer streams, the run's own bar reaches the end, the result closes the stream.
    assert_eq!(
        &shape[shape.len() - 5..],
        ["msg", "msg", "msg", "progress:", "result"]
    );
    assert_eq!(final_answer(&events), json!("Three ticks done."));
    assert_eq!(finished(&events, "call_1"), Ok(json!({"count": 3})));
    for pair in events.windows(2) {
        assert!(pair[1].sequence > pair[0].sequence);
    }

    let Some(Event::Started(started)) = &events[0].event else {
        unreachable!()
    };
    assert_eq!(started.model, "standin-model");
    assert_eq!(started.max_steps, 4);
    let Some(Event::ToolCallStarted(call)) = &events[1].event else {
        unreachable!()
    };
    assert_eq!(call.tool, "ticks");
    assert_eq!(
        Value::Object(struct_to_json(call.arguments.clone().unwrap())),
        json!({"count": 3, "interval_ms": 1})
    );
    // Progress of a call names its call and tool; the run's own progress names none.
    for event in &events {
        if let Some(Event::Progress(progress)) = &event.event {
            if progress.call_id.is_empty() {
                assert!(progress.tool.is_empty());
            } else {
                assert_eq!(progress.tool, "ticks");
            }
        }
    }

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["model"], "standin-model");
    assert_eq!(requests[0]["stream"], true);
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["checksum", "ticks"]);
    let fed_back = tool_messages(&requests[1]);
    assert_eq!(fed_back.len(), 1);
    assert_eq!(fed_back[0]["tool_call_id"], "call_1");
    assert_eq!(
        serde_json::from_str::<Value>(fed_back[0]["content"].as_str().unwrap()).unwrap(),
        json!({"count": 3})
    );
    let assistant = &requests[1]["messages"][1];
    assert_eq!(
        assistant["tool_calls"][0]["function"]["arguments"],
        r#"{"count": 3, "interval_ms": 1}"#
    );
}

#[tokio::test]
async fn parallel_calls_each_keep_their_progress_before_their_end() {
    let model = StandIn::start(vec![
        tool_calls(&[
            ("a", "ticks", r#"{"count": 5, "interval_ms": 2}"#),
            ("b", "ticks", r#"{"count": 2, "interval_ms": 1}"#),
        ]),
        text(&["both done"]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let (events, status) = run(&server, prompt("tick twice")).await;
    assert!(status.is_none(), "{status:?}");
    let shape = shape(&events);
    for id in ["a", "b"] {
        let start = shape
            .iter()
            .position(|s| *s == format!("call:{id}"))
            .unwrap();
        let end = shape
            .iter()
            .position(|s| *s == format!("done:{id}"))
            .unwrap();
        assert!(start < end);
        for (i, s) in shape.iter().enumerate() {
            if *s == format!("progress:{id}") {
                assert!(start < i && i < end, "{shape:?}");
            }
        }
    }
    // Both calls start before either ends: they run in parallel.
    let first_done = shape.iter().position(|s| s.starts_with("done:")).unwrap();
    assert!(shape[..first_done].contains(&"call:a".to_owned()));
    assert!(shape[..first_done].contains(&"call:b".to_owned()));
    assert_eq!(finished(&events, "a"), Ok(json!({"count": 5})));
    assert_eq!(finished(&events, "b"), Ok(json!({"count": 2})));
    assert_eq!(final_answer(&events), json!("both done"));
    assert_eq!(tool_messages(&model.requests()[1]).len(), 2);
    // The run's own progress: the first step covers half of it, so once both calls are done it
    // stands at 0.5; the answer takes it to 1.
    assert_run_progress_never_goes_back(&events);
    let overall = run_fractions(&events);
    assert!(overall.contains(&0.5), "{overall:?}");
    assert_eq!(overall.last(), Some(&1.0));
}

/// The fractions of the run's own progress (empty `call_id`), in order.
fn run_fractions(events: &[pb::RunEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) if p.call_id.is_empty() => p.progress,
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_runs_own_bar_moves_with_its_calls_and_ends_at_one_without_an_eta() {
    // The model answers after one step, as most runs do.
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 5, "interval_ms": 20}"#)]),
        text(&["Five ticks."]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let (events, status) = run(&server, prompt("tick five times")).await;
    assert!(status.is_none(), "{status:?}");

    // While the call progresses, the run's own fraction rises with it, report by report.
    let shape = shape(&events);
    let start = shape.iter().position(|s| s == "call:call_1").unwrap();
    let done = shape.iter().position(|s| s == "done:call_1").unwrap();
    let during_call = run_fractions(&events[start..done]);
    assert!(
        during_call.len() >= 5 && during_call.windows(2).all(|pair| pair[1] > pair[0]),
        "the run's fraction while its call ran: {during_call:?}"
    );
    // The last report of the run's own progress is 1.0, after the model's text, before the
    // result: a UI's bar ends full.
    let last_progress = events
        .iter()
        .rposition(|e| matches!(&e.event, Some(Event::Progress(p)) if p.call_id.is_empty()))
        .unwrap();
    let Some(Event::Progress(last)) = &events[last_progress].event else {
        unreachable!()
    };
    assert_eq!(last.progress, Some(1.0));
    assert_eq!(shape[last_progress + 1..], ["result"]);
    // How many turns are left is unknown: the run's own progress has no time left, while each
    // call's keeps the server's estimate.
    for event in &events {
        if let Some(Event::Progress(progress)) = &event.event
            && progress.call_id.is_empty()
        {
            assert_eq!(progress.eta_seconds, None, "{progress:?}");
        }
    }
    assert!(
        events.iter().any(|e| matches!(&e.event,
            Some(Event::Progress(p)) if p.call_id == "call_1" && p.eta_seconds.is_some())),
        "the call's progress has an ETA"
    );
}

#[tokio::test]
async fn tool_failures_and_model_mistakes_go_back_to_the_model() {
    let model = StandIn::start(vec![
        tool_calls(&[
            ("missing", "checksum", r#"{"paths": ["no-such-file.txt"]}"#),
            ("invented", "teleport", r#"{}"#),
            ("broken", "ticks", r#"{"count": "#),
            ("invalid", "ticks", r#"{"count": "many"}"#),
            ("crash", "explodes", r#"{}"#),
        ]),
        text(&["I could not do it."]),
    ])
    .await;
    let explodes: Arc<dyn Tool> = Arc::new(tool_fn(
        "explodes",
        "Panics.",
        |_: NoArgs, _: Progress| async move {
            if true {
                panic!("boom");
            }
            Ok::<_, ToolError>(())
        },
    ));
    let server = agent_server(Some(&model.url), vec![explodes]).await;
    let (events, status) = run(&server, prompt("do impossible things")).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(final_answer(&events), json!("I could not do it."));

    let missing = finished(&events, "missing").unwrap_err();
    assert!(
        missing.starts_with("tool \"checksum\" failed: "),
        "{missing}"
    );
    assert!(missing.contains("no-such-file.txt"), "{missing}");
    let invented = finished(&events, "invented").unwrap_err();
    assert!(
        invented.contains("no tool named \"teleport\""),
        "{invented}"
    );
    let broken = finished(&events, "broken").unwrap_err();
    assert!(broken.contains("not valid JSON"), "{broken}");
    let invalid = finished(&events, "invalid").unwrap_err();
    assert!(invalid.contains("field count"), "{invalid}");
    let crash = finished(&events, "crash").unwrap_err();
    assert_eq!(crash, "tool \"explodes\" crashed: boom");

    let raw = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::ToolCallStarted(call)) if call.call_id == "broken" => Some(call.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(raw.raw_arguments, r#"{"count": "#);
    assert!(raw.arguments.is_none());

    let fed_back = tool_messages(&model.requests()[1]);
    assert_eq!(fed_back.len(), 5);
    assert!(
        fed_back
            .iter()
            .all(|m| m["content"].as_str().unwrap().starts_with("error: "))
    );
}

#[tokio::test]
async fn reaching_max_steps_fails_precondition() {
    let call = || tool_calls(&[("again", "ticks", r#"{"count": 1, "interval_ms": 0}"#)]);
    let model = StandIn::start(vec![call(), call(), call()]).await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let mut request = prompt("loop forever");
    request.max_steps = 2;
    let (events, status) = run(&server, request).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("2 steps"), "{}", status.message());
    assert_eq!(
        shape(&events).iter().filter(|s| *s == "done:again").count(),
        2
    );
    assert_eq!(model.requests().len(), 2);
}

#[tokio::test]
async fn model_failures_end_the_stream_with_a_clear_status() {
    // Nothing listens on this port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = format!("http://{closed}/v1");
    let server = agent_server(Some(&down), vec![]).await;
    let (_, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Unavailable);
    // The URL tried, once, and why it failed.
    let message = status.message();
    assert!(
        message.starts_with(&format!(
            "model endpoint {down}/chat/completions is unreachable: "
        )),
        "{message}"
    );
    assert_eq!(message.matches(&down).count(), 1, "{message}");
    assert!(message.contains("Connection refused"), "{message}");

    let model = StandIn::start(vec![
        Reply::Events(vec!["this is not json".into()]),
        Reply::Status(
            401,
            r#"{"error": {"message": "Incorrect API key provided"}}"#.into(),
        ),
        Reply::Status(503, "overloaded".into()),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let (_, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status.message().contains("not JSON"),
        "{}",
        status.message()
    );

    let (_, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("Incorrect API key"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("401"), "{}", status.message());

    let (_, status) = run(&server, prompt("hello")).await;
    assert_eq!(status.unwrap().code(), Code::Unavailable);
    assert_eq!(model.requests()[0]["messages"][0]["content"], "hello");
}

#[tokio::test]
async fn requests_are_checked_before_anything_runs() {
    let server = agent_server(None, vec![]).await;
    let (events, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert!(events.is_empty());
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("--model-url"),
        "{}",
        status.message()
    );

    let model = StandIn::start(vec![]).await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let mut request = prompt("hello");
    request.tools = vec!["ticks".into(), "nope".into()];
    let (_, status) = run(&server, request).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope"));

    let (_, status) = run(&server, prompt("  ")).await;
    assert_eq!(status.unwrap().code(), Code::InvalidArgument);
    assert!(model.requests().is_empty(), "nothing reached the model");
}

#[tokio::test]
async fn the_request_tools_limit_what_the_model_sees() {
    let model = StandIn::start(vec![
        tool_calls(&[("c", "checksum", r#"{"paths": ["Cargo.toml"]}"#)]),
        text(&["ok"]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let mut request = prompt("hash it");
    request.tools = vec!["ticks".into()];
    request.system_prompt = "Be brief.".into();
    let (events, status) = run(&server, request).await;
    assert!(status.is_none());
    let offered = &model.requests()[0]["tools"];
    assert_eq!(offered.as_array().unwrap().len(), 1);
    assert_eq!(offered[0]["function"]["name"], "ticks");
    assert_eq!(model.requests()[0]["messages"][0]["role"], "system");
    // The model asked for a tool it was not offered: that is its mistake, told back to it.
    assert!(
        finished(&events, "c")
            .unwrap_err()
            .contains("no tool named \"checksum\"")
    );
}

#[tokio::test]
async fn cancelling_mid_tool_stops_the_tool_and_the_run() {
    let stopped = Arc::new(AtomicBool::new(false));
    let model = StandIn::start(vec![tool_calls(&[("slow", "endless", "{}")])]).await;
    let server = agent_server(Some(&model.url), vec![endless_tool(Arc::clone(&stopped))]).await;
    let mut client = server.client().await;
    let mut stream = client
        .run_agent(prompt("run forever"))
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = stream.message().await.unwrap().unwrap();
        if matches!(&event.event, Some(Event::Progress(p)) if p.call_id == "slow") {
            break;
        }
    }
    assert!(!stopped.load(Ordering::SeqCst));
    drop(stream);
    eventually(Duration::from_secs(10), "the tool to stop", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
    eventually(Duration::from_secs(10), "no active runs", async || {
        server.engine.active_runs() == 0
    })
    .await;
}

#[tokio::test]
async fn a_deadline_stops_the_agent_and_its_tools() {
    let stopped = Arc::new(AtomicBool::new(false));
    let model = StandIn::start(vec![tool_calls(&[("slow", "endless", "{}")])]).await;
    let server = agent_server(Some(&model.url), vec![endless_tool(Arc::clone(&stopped))]).await;
    let mut request = tonic::Request::new(prompt("run forever"));
    request.set_timeout(Duration::from_millis(300));
    let status = match server.client().await.run_agent(request).await {
        Ok(response) => collect(response.into_inner()).await.1,
        Err(status) => Some(status),
    };
    assert_eq!(status.unwrap().code(), Code::DeadlineExceeded);
    eventually(Duration::from_secs(10), "the tool to stop", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_python_client_runs_the_agent() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 2, "interval_ms": 1}"#)]),
        text(&["Done ", "ticking."]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let addr = server.addr.to_string();
    let output =
        tokio::task::spawn_blocking(move || common::run_python("agent_client.py", &[&addr]))
            .await
            .unwrap();
    assert!(
        output.contains("python agent client: all checks passed"),
        "{output}"
    );
}

/// Run-level progress (empty `call_id`) never goes back.
fn assert_run_progress_never_goes_back(events: &[pb::RunEvent]) {
    let fractions: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) if p.call_id.is_empty() => p.progress,
            _ => None,
        })
        .collect();
    assert!(
        fractions.windows(2).all(|pair| pair[1] >= pair[0]),
        "run-level progress went back: {fractions:?}"
    );
}

/// Every progress event of a call comes between its `tool_call_started` and its
/// `tool_call_finished`.
fn assert_progress_inside_calls(shape: &[String]) {
    let mut open = std::collections::HashSet::new();
    let mut closed = std::collections::HashSet::new();
    for s in shape {
        if let Some(id) = s.strip_prefix("call:") {
            open.insert(id.to_owned());
        } else if let Some(id) = s.strip_prefix("done:") {
            open.remove(id);
            closed.insert(id.to_owned());
        } else if let Some(id) = s.strip_prefix("progress:").filter(|id| !id.is_empty()) {
            assert!(
                open.contains(id) && !closed.contains(id),
                "progress of {id} outside its call: {shape:?}"
            );
        }
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// Counts the calls of the `gauge` tool in flight. Each call enters, pauses once, then waits until
/// `full` calls have been in flight at once (so a test sees the bound reached), and leaves.
struct Gauge {
    full: usize,
    in_flight: AtomicUsize,
    max_seen: AtomicUsize,
    finished: AtomicUsize,
    reached: tokio::sync::watch::Sender<bool>,
}

fn gauge_tool(gauge: Arc<Gauge>) -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "gauge",
        "Counts the calls in flight.",
        move |_: NoArgs, _: Progress| {
            let gauge = Arc::clone(&gauge);
            async move {
                let now = gauge.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.max_seen.fetch_max(now, Ordering::SeqCst);
                if now >= gauge.full {
                    gauge.reached.send_replace(true);
                }
                // Every call pauses while in flight, so calls started together overlap.
                tokio::task::yield_now().await;
                let mut reached = gauge.reached.subscribe();
                let _ = reached.wait_for(|reached| *reached).await;
                gauge.in_flight.fetch_sub(1, Ordering::SeqCst);
                gauge.finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ToolError>(json!({"in_flight": now}))
            }
        },
    ))
}

#[tokio::test]
async fn tool_calls_in_flight_never_exceed_max_parallel_calls() {
    const BOUND: usize = 4;
    let gauge = Arc::new(Gauge {
        full: BOUND,
        in_flight: AtomicUsize::new(0),
        max_seen: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        reached: tokio::sync::watch::Sender::new(false),
    });
    let ids: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
    let calls: Vec<(&str, &str, &str)> =
        ids.iter().map(|id| (id.as_str(), "gauge", "{}")).collect();
    let model = StandIn::start(vec![tool_calls(&calls), text(&["measured"])]).await;
    let server = agent_server_with(
        Some(&model.url),
        vec![gauge_tool(Arc::clone(&gauge))],
        BOUND,
    )
    .await;
    let (events, status) = run(&server, prompt("measure")).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(gauge.max_seen.load(Ordering::SeqCst), BOUND);
    assert_eq!(gauge.finished.load(Ordering::SeqCst), 20);
    for id in &ids {
        assert!(finished(&events, id).is_ok());
    }
    // A call waiting for its turn has not started: at any point of the stream, at most BOUND
    // calls are between their tool_call_started and their tool_call_finished.
    let mut open = 0usize;
    for s in shape(&events) {
        if s.starts_with("call:") {
            open += 1;
            assert!(open <= BOUND, "{open} calls open at once");
        } else if s.starts_with("done:") {
            open -= 1;
        }
    }
    assert_run_progress_never_goes_back(&events);
    assert_eq!(final_answer(&events), json!("measured"));
}

#[tokio::test]
async fn progress_reported_after_a_call_returns_is_dropped() {
    // The tool hands a clone of its progress handle to a task that reports once the call has
    // returned and the agent is asking the model again.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (reported_tx, reported_rx) = tokio::sync::oneshot::channel::<()>();
    let go = Arc::new(std::sync::Mutex::new(Some(go_rx)));
    let reported = Arc::new(std::sync::Mutex::new(Some(reported_tx)));
    let lingering: Arc<dyn Tool> = Arc::new(tool_fn(
        "lingering",
        "Keeps its progress handle after it returns.",
        move |_: NoArgs, progress: Progress| {
            let go = go.lock().unwrap().take();
            let reported = reported.lock().unwrap().take();
            async move {
                progress.report(0.5, "working");
                tokio::spawn(async move {
                    if let Some(go) = go {
                        let _ = go.await;
                    }
                    progress.report(0.25, "still here");
                    if let Some(reported) = reported {
                        let _ = reported.send(());
                    }
                });
                Ok::<_, ToolError>(json!({"returned": true}))
            }
        },
    ));
    let late_report = Box::pin(async move {
        let _ = go_tx.send(());
        reported_rx.await.expect("the late report was made");
    });
    let model = StandIn::start(vec![
        tool_calls(&[("l", "lingering", "{}")]),
        Reply::After(late_report, Box::new(text(&["ok"]))),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![lingering]).await;
    let (events, status) = run(&server, prompt("linger")).await;
    assert!(status.is_none(), "{status:?}");
    let shape = shape(&events);
    assert!(shape.contains(&"progress:l".to_owned()), "{shape:?}");
    assert_progress_inside_calls(&shape);
    assert_run_progress_never_goes_back(&events);
    assert_eq!(final_answer(&events), json!("ok"));
}

#[tokio::test]
async fn run_progress_never_goes_back_across_steps() {
    let model = StandIn::start(vec![
        tool_calls(&[("one", "ticks", r#"{"count": 3, "interval_ms": 0}"#)]),
        tool_calls(&[
            ("two", "ticks", r#"{"count": 3, "interval_ms": 0}"#),
            ("three", "ticks", r#"{"count": 1, "interval_ms": 0}"#),
        ]),
        text(&["done"]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let (events, status) = run(&server, prompt("tick in two steps")).await;
    assert!(status.is_none(), "{status:?}");
    let statuses: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) if p.call_id.is_empty() => p.status.as_deref(),
            _ => None,
        })
        .collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("step 1")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("step 2")),
        "{statuses:?}"
    );
    assert_run_progress_never_goes_back(&events);
}

#[tokio::test]
async fn an_overloaded_endpoint_mid_answer_ends_unavailable() {
    let model = StandIn::start(vec![
        fails_mid_answer(
            &["Let me ", "think"],
            json!({"message": "Overloaded", "type": "overloaded_error"}),
        ),
        fails_mid_answer(
            &["Let me"],
            json!({"message": "The server had an error while processing your request.", "type": "server_error"}),
        ),
        fails_mid_answer(
            &["Let me"],
            json!({"message": "content policy", "type": "invalid_request_error"}),
        ),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;

    let (events, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(
        status.message().contains("Overloaded"),
        "{}",
        status.message()
    );
    // What streamed before the error stays sent.
    assert_eq!(shape(&events), ["started", "msg", "msg"]);

    let (_, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());

    // Any other error the endpoint reports mid-answer stays INTERNAL.
    let (_, status) = run(&server, prompt("hello")).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Internal, "{}", status.message());
    assert!(
        status.message().contains("content policy"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn sub_tasks_and_relayed_remote_trees_nest_under_their_call_with_unique_ids() {
    // A remote server with the nested tool; this one runs it locally and as `remote.nested`.
    let root = std::env::current_dir().unwrap();
    let remote = TestServer::start_with(
        registry_with(&root, vec![common::nested_tool()]),
        Limits::default(),
    )
    .await;
    let model = StandIn::start(vec![
        tool_calls(&[
            ("call_1", "nested", r#"{"items": 2}"#),
            ("call_2", "remote.nested", r#"{"items": 2, "deep": true}"#),
            ("call_3", "remote.nested", r#"{"items": 2, "deep": true}"#),
        ]),
        text(&["Nested."]),
    ])
    .await;
    let mut registry = registry_with(&root, vec![common::nested_tool()]);
    let entry: toml::Table = toml::from_str(&format!(
        "kind = \"grpc\"\nendpoint = \"{}\"\nprefix = \"remote.\"\n",
        remote.url()
    ))
    .unwrap();
    toolstream::configured_tools::load_entries(&[entry], &root, &Limits::default(), &mut registry)
        .await
        .unwrap();
    let settings = AgentSettings {
        provider: Some(Arc::new(
            OpenAiProvider::new(&model.url, Some("test-key".into())).unwrap(),
        )),
        default_model: Some("standin-model".into()),
        default_max_steps: 4,
        max_parallel_calls: DEFAULT_MAX_PARALLEL_CALLS,
    };
    let server =
        TestServer::serve(Server::new(registry, Limits::default()).with_agent(settings)).await;
    let (events, status) = run(&server, prompt("nest")).await;
    assert!(status.is_none(), "{status:?}");

    let nodes = common::progress_nodes(&events);
    let mut parents: std::collections::HashMap<String, String> = Default::default();
    for node in &nodes {
        let known = parents.insert(node.0.clone(), node.1.clone());
        assert!(
            known.is_none_or(|parent| parent == node.1),
            "one parent per node: {node:?}"
        );
    }
    let under = |call: &str| {
        let mut ids: Vec<(String, String)> = parents
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{call}/")))
            .map(|(id, parent)| (id.clone(), parent.clone()))
            .collect();
        ids.sort();
        ids
    };
    // The local tool's sub-tasks are under its call.
    assert_eq!(
        under("call_1"),
        [("call_1/1", "call_1"), ("call_1/2", "call_1")].map(|(a, b)| (a.into(), b.into()))
    );
    // Each remote run's tree is under the call that relayed it, its ids prefixed by the call's:
    // the same remote ids in two calls stay apart.
    for call in ["call_2", "call_3"] {
        let ids = under(call);
        assert_eq!(ids.len(), 8, "{ids:?}");
        for (id, parent) in &ids {
            let relative = &id[call.len() + 1..];
            let expected = match relative.rsplit_once('/') {
                Some((up, _)) => format!("{call}/{up}"),
                None => call.to_owned(),
            };
            assert_eq!(*parent, expected, "{id}");
        }
    }
    // Each call's whole tree is reported before its end.
    for call in ["call_1", "call_2", "call_3"] {
        let done = events
            .iter()
            .position(|e| matches!(&e.event, Some(Event::ToolCallFinished(c)) if c.call_id == call))
            .unwrap();
        let last = events
            .iter()
            .rposition(|e| {
                matches!(&e.event, Some(Event::Progress(p))
                    if p.call_id == call || p.call_id.starts_with(&format!("{call}/")))
            })
            .unwrap();
        assert!(last < done, "{call}");
    }
}
