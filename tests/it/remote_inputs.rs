//! Input requests of a remote toolstream, relayed: server A federates server B (`[[tools]] kind =
//! "grpc"`); B's tool asks, A's run shows the same question under its call, a client of A
//! answers it (or declines), and the answer reaches B's tool through RespondToRun on B. When B
//! resolves the request itself (answered on B, expired on B), A's request is resolved the same
//! way, asked only once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tonic::transport::Channel;
use toolstream::config::Limits;
use toolstream::json_proto::{struct_to_json, value_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{self, RunState};
use toolstream::registry::ToolRegistry;
use toolstream::server::Server;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Question, Tool, ToolError};

use crate::common::model::{StandIn, text, tool_calls};
use crate::common::runs::{RUN_WAIT, cancel, get, wait_for_run, watch};
use crate::common::{TestServer, collect, eventually, registry_with};
use crate::input_requests::{
    confirm_tool, decline, reported, resolutions, respond, result_of, runs, start_with, until_asked,
};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// `short_lived`: asks "Still there?" (a boolean) with a question of its own that lapses a
/// quarter of a second after it is asked.
fn short_lived_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "short_lived",
        "Asks a question that lapses soon.",
        |_: NoArgs, progress: Progress| async move {
            let question = Question {
                expire_time: Some(SystemTime::now() + Duration::from_millis(250)),
                ..Question::new("Still there?", Some(json!({"type": "boolean"})))
            };
            let answer = progress.ask_question(question).await;
            Ok::<Value, ToolError>(reported(&answer))
        },
    ))
}

/// Server B, whose tools ask.
async fn asking_server() -> TestServer {
    let root = std::env::current_dir().expect("cwd");
    TestServer::start_with(
        registry_with(&root, vec![confirm_tool(), short_lived_tool()]),
        Limits::default(),
    )
    .await
}

/// A registry with B's tools, named with `prefix`.
async fn federating(b: &TestServer, prefix: &str) -> ToolRegistry {
    let root = std::env::current_dir().expect("cwd");
    let entry: toml::Table = toml::from_str(&format!(
        "kind = \"grpc\"\nendpoint = \"{}\"\nprefix = \"{prefix}\"\n",
        b.url()
    ))
    .expect("entry");
    let mut registry = registry_with(&root, vec![]);
    toolstream::configured_tools::load_entries(&[entry], &root, &Limits::default(), &mut registry)
        .await
        .expect("B's tools");
    registry
}

/// Server B, whose tools ask, and server A, which federates B's tools as `remote.*`.
async fn servers() -> (TestServer, TestServer) {
    let b = asking_server().await;
    let a = TestServer::start_with(federating(&b, "remote.").await, Limits::default()).await;
    (a, b)
}

/// B's run, once it waits for input, with the request it waits on.
async fn waiting_on_b(b: &mut RunServiceClient<Channel>) -> pb::Run {
    eventually(RUN_WAIT, "B's run waiting for input", async || {
        let listed = b
            .list_runs(pb::ListRunsRequest {
                state: RunState::InputRequired as i32,
                ..pb::ListRunsRequest::default()
            })
            .await
            .ok()?
            .into_inner();
        listed.runs.into_iter().next()
    })
    .await
}

/// The events B's run `run_id` logged, once it succeeded.
async fn ended_on_b(b: &mut RunServiceClient<Channel>, run_id: &str) -> Vec<pb::RunEvent> {
    let run = wait_for_run(b, run_id, "B's run ended", |run| {
        run.state() == RunState::Succeeded
    })
    .await;
    assert!(run.pending_inputs.is_empty(), "{run:?}");
    collect(watch(b, run_id, 0).await).await.0
}

/// A run of B's `confirm` through A, waiting on both servers for its answer.
struct Asking {
    /// Kept: the servers live as long as the test.
    _servers: (TestServer, TestServer),
    a_runs: RunServiceClient<Channel>,
    b_runs: RunServiceClient<Channel>,
    /// A's run, its stream from its caller, and the request it shows.
    run_id: String,
    stream: tonic::Streaming<pb::RunEvent>,
    asked: pb::InputRequested,
    /// B's run, as it waits.
    on_b: pb::Run,
}

impl Asking {
    async fn start() -> Asking {
        let (a, b) = servers().await;
        let a_runs = runs(&a).await;
        let mut b_runs = runs(&b).await;
        let (run_id, mut stream) = start_with(&a, "remote.confirm", json!({}), None).await;
        let asked = until_asked(&mut stream).await;
        let on_b = waiting_on_b(&mut b_runs).await;
        Asking {
            _servers: (a, b),
            a_runs,
            b_runs,
            run_id,
            stream,
            asked,
            on_b,
        }
    }

    /// The id of the request B's run waits on.
    fn b_request(&self) -> String {
        self.on_b.pending_inputs[0].request_id.clone()
    }
}

#[tokio::test]
async fn a_remote_runs_question_is_asked_under_the_local_call_and_answered_through_it() {
    let Asking {
        mut a_runs,
        mut b_runs,
        run_id,
        stream,
        asked,
        on_b,
        _servers,
    } = Asking::start().await;
    assert_eq!(asked.prompt, "Overwrite report.pdf?");
    assert_eq!(asked.kind(), pb::InputKind::Input);
    assert_eq!(
        asked.schema.clone().map(struct_to_json),
        json!({"type": "boolean"}).as_object().cloned()
    );
    let on_a = get(&mut a_runs, &run_id).await.expect("GetRun on A");
    assert_eq!(on_a.state(), RunState::InputRequired);
    assert_eq!(on_a.pending_inputs, vec![asked.clone()]);
    assert_eq!(on_b.pending_inputs[0].prompt, asked.prompt);

    respond(&mut a_runs, &run_id, &asked.request_id, json!(true))
        .await
        .expect("the answer on A");
    let second = respond(&mut a_runs, &run_id, &asked.request_id, json!(false)).await;
    assert_eq!(
        second.expect_err("a second answer").code(),
        tonic::Code::FailedPrecondition
    );

    let (result, events) = result_of(stream).await;
    assert_eq!(result, json!({"outcome": "answered", "value": true}));
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id, pb::InputOutcome::Answered)]
    );
    // B's request was answered by the relay, once, with A's answer.
    let b_events = ended_on_b(&mut b_runs, &on_b.run_id).await;
    assert_eq!(
        resolutions(&b_events),
        vec![(
            on_b.pending_inputs[0].request_id.clone(),
            pb::InputOutcome::Answered
        )]
    );
}

#[tokio::test]
async fn a_decline_on_the_local_run_declines_the_remote_request() {
    let mut asking = Asking::start().await;
    decline(&mut asking.a_runs, &asking.run_id, &asking.asked.request_id).await;
    let b_request = asking.b_request();
    let (result, events) = result_of(asking.stream).await;
    assert_eq!(result, json!({"outcome": "declined", "value": null}));
    assert_eq!(
        resolutions(&events),
        vec![(asking.asked.request_id, pb::InputOutcome::Declined)]
    );
    let b_events = ended_on_b(&mut asking.b_runs, &asking.on_b.run_id).await;
    assert_eq!(
        resolutions(&b_events),
        vec![(b_request, pb::InputOutcome::Declined)]
    );
}

#[tokio::test]
async fn a_request_answered_on_the_remote_resolves_the_local_one_with_that_answer() {
    let mut asking = Asking::start().await;
    let b_request = asking.b_request();
    respond(
        &mut asking.b_runs,
        &asking.on_b.run_id,
        &b_request,
        json!(false),
    )
    .await
    .expect("the answer on B");
    let (result, events) = result_of(asking.stream).await;
    assert_eq!(result, json!({"outcome": "answered", "value": false}));
    // A's request was resolved with B's answer, once, and is not open any more.
    assert_eq!(
        resolutions(&events),
        vec![(asking.asked.request_id.clone(), pb::InputOutcome::Answered)]
    );
    let answered = events.iter().find_map(|event| match &event.event {
        Some(Event::InputResolved(resolved)) => resolved.value.clone(),
        _ => None,
    });
    assert_eq!(answered.map(value_to_json), Some(json!(false)));
    let late = respond(
        &mut asking.a_runs,
        &asking.run_id,
        &asking.asked.request_id,
        json!(true),
    )
    .await;
    assert_eq!(
        late.expect_err("resolved on B").code(),
        tonic::Code::FailedPrecondition
    );
}

#[tokio::test]
async fn a_request_that_expires_on_the_remote_expires_locally_no_later() {
    let (a, b) = servers().await;
    let mut b_runs = runs(&b).await;
    let (_, mut stream) = start_with(&a, "remote.short_lived", json!({}), None).await;
    let asked = until_asked(&mut stream).await;
    let (result, events) = result_of(stream).await;
    assert_eq!(result, json!({"outcome": "expired", "value": null}));
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id, pb::InputOutcome::Expired)]
    );

    // B's request expired by itself (the relay did not decline it), at the time A showed.
    let listed = b_runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect("ListRuns on B")
        .into_inner();
    let b_run_id = listed.runs[0].run_id.clone();
    let b_events = collect(watch(&mut b_runs, &b_run_id, 0).await).await.0;
    let b_asked = b_events
        .iter()
        .find_map(|event| match &event.event {
            Some(Event::InputRequested(request)) => Some(request.clone()),
            _ => None,
        })
        .expect("B's request");
    assert!(b_asked.expire_time.is_some(), "{b_asked:?}");
    assert_eq!(asked.expire_time, b_asked.expire_time);
    assert_eq!(
        resolutions(&b_events),
        vec![(b_asked.request_id, pb::InputOutcome::Expired)]
    );
}

#[tokio::test]
async fn cancelling_the_local_run_cancels_the_remote_request() {
    let mut asking = Asking::start().await;
    let b_request = asking.b_request();
    cancel(&mut asking.a_runs, &asking.run_id)
        .await
        .expect("CancelRun on A");
    let b_run = wait_for_run(
        &mut asking.b_runs,
        &asking.on_b.run_id,
        "cancelled",
        |run| run.state() == RunState::Cancelled,
    )
    .await;
    assert!(b_run.pending_inputs.is_empty(), "{b_run:?}");
    let b_events = collect(watch(&mut asking.b_runs, &asking.on_b.run_id, 0).await)
        .await
        .0;
    assert_eq!(
        resolutions(&b_events),
        vec![(b_request, pb::InputOutcome::Cancelled)]
    );
    let (a_events, _) = collect(asking.stream).await;
    assert_eq!(
        resolutions(&a_events),
        vec![(asking.asked.request_id, pb::InputOutcome::Cancelled)]
    );
}

#[tokio::test]
async fn an_agents_call_of_a_remote_tool_asks_under_the_call() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "remote.confirm", "{}")]),
        text(&["Overwritten."]),
    ])
    .await;
    let b = asking_server().await;
    let a = TestServer::serve(
        Server::new(federating(&b, "remote.").await, Limits::default())
            .with_agent(model.agent_settings()),
    )
    .await;
    let response = a
        .client()
        .await
        .run_agent(pb::RunAgentRequest {
            prompt: "overwrite the report".into(),
            ..pb::RunAgentRequest::default()
        })
        .await
        .expect("RunAgent");
    let run_id = crate::common::x_run_id(response.metadata());
    let mut stream = response.into_inner();
    let asked = until_asked(&mut stream).await;
    assert_eq!(
        (
            asked.call_id.as_str(),
            asked.tool.as_str(),
            asked.prompt.as_str()
        ),
        ("call_1", "remote.confirm", "Overwrite report.pdf?")
    );
    respond(&mut runs(&a).await, &run_id, &asked.request_id, json!(true))
        .await
        .expect("the answer on A");
    let (events, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        resolutions(&events),
        vec![(asked.request_id, pb::InputOutcome::Answered)]
    );
    // The model got the remote tool's result, made with the answer.
    assert!(model.told(1, "answered"), "{:?}", model.requests());
}
