//! RunAgent against a stand-in model that speaks the OpenAI-compatible streaming protocol: every
//! step streams in the order the contract promises, tool failures go back to the model, and model
//! failures end the stream with a clear status.

mod common;
#[path = "agent_support/model.rs"]
mod model;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestServer, collect, endless_tool, eventually, registry_with};
use model::{Reply, StandIn, text, tool_calls};
use serde_json::{Value, json};
use tonic::Code;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, ModelProvider};
use toolstream::config::Limits;
use toolstream::json_proto::{struct_to_json, value_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::{self, RunAgentRequest, tool_call_finished::Outcome};
use toolstream::server::Server;
use toolstream::tools::Tool;

async fn agent_server(url: Option<&str>, extra: Vec<Arc<dyn Tool>>) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let provider: Option<Arc<dyn ModelProvider>> =
        url.map(|url| Arc::new(OpenAiProvider::new(url, Some("test-key".into())).unwrap()) as _);
    let settings = AgentSettings {
        provider,
        default_model: Some("standin-model".into()),
        default_max_steps: 4,
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
/// `progress:` (the run as a whole), `done:ID`, `result`.
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
    assert_eq!(&shape[shape.len() - 4..], ["msg", "msg", "msg", "result"]);
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
    // The run's own progress reaches 1.0 once every call is done.
    let last_overall = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) if p.call_id.is_empty() => p.progress,
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(last_overall, 1.0);
}

#[tokio::test]
async fn tool_failures_and_model_mistakes_go_back_to_the_model() {
    let model = StandIn::start(vec![
        tool_calls(&[
            ("missing", "checksum", r#"{"paths": ["no-such-file.txt"]}"#),
            ("invented", "teleport", r#"{}"#),
            ("broken", "ticks", r#"{"count": "#),
            ("invalid", "ticks", r#"{"count": "many"}"#),
        ]),
        text(&["I could not do it."]),
    ])
    .await;
    let server = agent_server(Some(&model.url), vec![]).await;
    let (events, status) = run(&server, prompt("do impossible things")).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(final_answer(&events), json!("I could not do it."));

    let missing = finished(&events, "missing").unwrap_err();
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
    assert_eq!(fed_back.len(), 4);
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
    assert!(status.message().contains(&down), "{}", status.message());

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
    eventually(Duration::from_secs(10), "the tool to stop", || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
    eventually(Duration::from_secs(10), "no active runs", || {
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
    eventually(Duration::from_secs(10), "the tool to stop", || {
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
