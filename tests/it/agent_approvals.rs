//! Agent approvals: a tool in `approval_required` (the request's, or the server's
//! `[model] approval_required`) is not called until a person approves the call; the request
//! carries the tool and its arguments; a declined call is not made and the model is told so.

#[allow(dead_code)] // These tests use part of the stand-in.
use crate::common::model;

use crate::common::{TestServer, collect, registry_with, x_run_id};
use model::{StandIn, text, tool_calls};
use serde_json::{Value, json};
use toolstream::config::Limits;
use toolstream::json_proto::{json_to_value, struct_to_json};
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{self, RespondToRunRequest, RunAgentRequest};
use toolstream::server::Server;

async fn agent_server(model: &StandIn, approval_required: Vec<String>) -> TestServer {
    let root = std::env::current_dir().expect("cwd");
    TestServer::serve(
        Server::new(registry_with(&root, Vec::new()), Limits::default())
            .with_agent(model.agent_settings())
            .with_approval_required(approval_required),
    )
    .await
}

/// Starts the agent run; returns its id, the events up to its approval request, that request,
/// and the rest of the stream.
async fn until_approval(
    server: &TestServer,
    request: RunAgentRequest,
) -> (
    String,
    Vec<pb::RunEvent>,
    pb::InputRequested,
    tonic::Streaming<pb::RunEvent>,
) {
    let response = server
        .client()
        .await
        .run_agent(request)
        .await
        .expect("RunAgent");
    let run_id = x_run_id(response.metadata());
    let mut stream = response.into_inner();
    let mut before = Vec::new();
    loop {
        let event = stream
            .message()
            .await
            .expect("the stream")
            .expect("an approval request before the end");
        if let Some(Event::InputRequested(request)) = &event.event {
            let request = request.clone();
            return (run_id, before, request, stream);
        }
        before.push(event);
    }
}

fn call_started(events: &[pb::RunEvent]) -> bool {
    events
        .iter()
        .any(|event| matches!(event.event, Some(Event::ToolCallStarted(_))))
}

async fn answer(server: &TestServer, run_id: &str, request_id: &str, reply: Option<bool>) {
    RunServiceClient::new(server.channel().await)
        .respond_to_run(RespondToRunRequest {
            run_id: run_id.to_owned(),
            request_id: request_id.to_owned(),
            value: reply.map(|approve| json_to_value(Value::Bool(approve))),
            decline: reply.is_none(),
        })
        .await
        .expect("RespondToRun");
}

#[tokio::test]
async fn an_approved_call_runs_after_its_approval() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 2, "interval_ms": 1}"#)]),
        text(&["Two ticks."]),
    ])
    .await;
    let server = agent_server(&model, Vec::new()).await;
    let request = RunAgentRequest {
        prompt: "tick twice".into(),
        approval_required: vec!["ticks".into()],
        ..RunAgentRequest::default()
    };
    let (run_id, before, asked, stream) = until_approval(&server, request).await;
    assert!(!call_started(&before), "the call started before approval");
    assert_eq!(asked.kind(), pb::InputKind::Approval);
    assert_eq!(asked.call_id, "call_1");
    assert_eq!(asked.tool, "ticks");
    assert_eq!(
        asked
            .data
            .clone()
            .map(|data| Value::Object(struct_to_json(data))),
        Some(json!({"tool": "ticks", "arguments": {"count": 2, "interval_ms": 1}}))
    );
    assert_eq!(
        asked
            .schema
            .clone()
            .map(|schema| Value::Object(struct_to_json(schema))),
        Some(json!({"type": "boolean"}))
    );

    answer(&server, &run_id, &asked.request_id, Some(true)).await;
    let (after, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    assert!(call_started(&after), "the approved call never ran");
    assert!(after.iter().any(|event| matches!(
        &event.event,
        Some(Event::ToolCallFinished(finished)) if finished.call_id == "call_1"
    )));
}

#[tokio::test]
async fn a_declined_call_is_not_made_and_the_model_is_told() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 2, "interval_ms": 1}"#)]),
        text(&["I was not allowed to tick."]),
    ])
    .await;
    // Every tool needs approval, by the server's configuration.
    let server = agent_server(&model, vec!["*".into()]).await;
    let request = RunAgentRequest {
        prompt: "tick twice".into(),
        ..RunAgentRequest::default()
    };
    let (run_id, _, asked, stream) = until_approval(&server, request).await;
    answer(&server, &run_id, &asked.request_id, None).await;
    let (after, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    assert!(!call_started(&after), "a declined call ran");
    assert!(after.iter().any(|event| matches!(
        &event.event,
        Some(Event::InputResolved(resolved))
            if resolved.outcome() == pb::InputOutcome::Declined
    )));
    // The model's second turn has the refusal as the call's answer.
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert!(model.told(1, "was not made"), "{}", requests[1]);
}
