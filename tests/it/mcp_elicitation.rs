//! Input requests over MCP: during a `tools/call` on `/mcp`, a run's input request is asked of a
//! client that declared the elicitation capability (the official Python MCP SDK client with an
//! `elicitation_callback`), as `elicitation/create` with the request's prompt and schema (a
//! non-object schema wrapped as the property `value`); accepting answers the tool, declining
//! declines it. The server and its tools are input_requests.rs's: `confirm` asks a boolean, `how_many` an
//! object with an integer `count`; each ends with what it got. `toolstream mcp-stdio` asks the
//! same way and answers with RespondToRun; under the 2026-07-28 revision (the SDK 2.x) a question
//! is an `InputRequiredResult` answered in the retried call.

use crate::input_requests::server;
use crate::mcp_server::{client_json, get_run, mcp_http, mcp_stdio, run_id_of};
use serde_json::{Value, json};
use toolstream::pb;

/// The one elicitation the client was asked during `call`.
fn only_elicitation(call: &Value) -> &Value {
    let asked = call["elicitations"].as_array().expect("elicitations");
    assert_eq!(asked.len(), 1, "one elicitation per question: {call}");
    &asked[0]
}

/// `call` (of `confirm`, accepted with true) asked its one question as a boolean `value` and
/// its run succeeded with the answer.
async fn assert_confirmed(server: &crate::common::TestServer, call: &Value) {
    let asked = only_elicitation(call);
    assert_eq!(asked["message"], "Overwrite report.pdf?");
    assert_eq!(
        asked["requestedSchema"],
        json!({"type": "object", "properties": {"value": {"type": "boolean"}}, "required": ["value"]}),
        "a boolean is asked as the property `value`"
    );
    assert_eq!(call["isError"], json!(false), "{call}");
    assert_eq!(
        call["structuredContent"],
        json!({"outcome": "answered", "value": true}),
        "{call}"
    );
    let run = get_run(server, &run_id_of(call), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);
    assert!(run.pending_inputs.is_empty());
}

/// `call` (of `confirm`, declined) asked once and its tool saw the decline.
fn assert_declined(call: &Value) {
    only_elicitation(call);
    assert_eq!(call["isError"], json!(false), "{call}");
    assert_eq!(
        call["structuredContent"],
        json!({"outcome": "declined", "value": null}),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_elicitation_answers_the_tools_question() {
    let server = server().await;
    let call = mcp_http(
        &server,
        &["elicit", "confirm", "{}", "accept", r#"{"value": true}"#],
        None,
    )
    .await;
    assert_confirmed(&server, &call).await;

    // An object schema of primitive properties goes as it is, and so does the answer.
    let call = mcp_http(
        &server,
        &["elicit", "how_many", "{}", "accept", r#"{"count": 3}"#],
        None,
    )
    .await;
    let asked = only_elicitation(&call);
    assert_eq!(asked["message"], "How many copies?");
    assert_eq!(
        asked["requestedSchema"]["properties"]["count"]["type"], "integer",
        "{asked}"
    );
    assert_eq!(
        call["structuredContent"],
        json!({"outcome": "answered", "value": {"count": 3}}),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_cancelled_elicitation_declines_the_tools_question() {
    let server = server().await;
    for action in ["decline", "cancel"] {
        let call = mcp_http(&server, &["elicit", "confirm", "{}", action], None).await;
        assert_declined(&call);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_bridge_asks_the_runs_questions_and_answers_them_with_respond_to_run() {
    let server = server().await;
    let call = mcp_stdio(
        &server,
        &["elicit", "confirm", "{}", "accept", r#"{"value": true}"#],
        None,
    )
    .await;
    assert_confirmed(&server, &call).await;
    let declined = mcp_stdio(&server, &["elicit", "confirm", "{}", "decline"], None).await;
    assert_declined(&declined);
}

/// The Python SDK 2.x (the 2026-07-28 revision) calling `tool` on `server`'s `/mcp`, answering
/// its elicitations with `answers` ([action, content] pairs, in turn).
async fn sdk2_call(server: &crate::common::TestServer, tool: &str, answers: Value) -> Value {
    let manifest = env!("CARGO_MANIFEST_DIR");
    client_json(
        format!("{manifest}/target/mcp2-venv/bin/python"),
        vec![
            format!("{manifest}/tests/python/mcp2_client.py"),
            format!("{}/mcp", server.url()),
            tool.to_owned(),
            "{}".to_owned(),
            answers.to_string(),
        ],
        "scripts/test makes target/mcp2-venv with the Python MCP SDK 2.x",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_2026_07_28_a_question_is_an_input_required_result_answered_in_the_retried_call() {
    let server = server().await;
    let call = sdk2_call(&server, "confirm", json!([["accept", {"value": true}]])).await;
    assert_eq!(call["protocolVersion"], "2026-07-28", "{call}");
    // One run throughout: the retried call read the run the first call started.
    assert_confirmed(&server, &call).await;
    let declined = sdk2_call(&server, "confirm", json!([["decline", null]])).await;
    assert_declined(&declined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_2026_07_28_a_refused_answer_is_asked_again_with_the_reason() {
    let server = server().await;
    let call = sdk2_call(
        &server,
        "how_many",
        json!([["accept", {"count": 0}], ["accept", {"count": 2}]]),
    )
    .await;
    let asked = call["elicitations"].as_array().expect("elicitations");
    assert_eq!(asked.len(), 2, "asked again after the refusal: {call}");
    assert_eq!(asked[0]["message"], "How many copies?");
    let again = asked[1]["message"].as_str().expect("a message");
    assert!(
        again.starts_with("How many copies? (the last answer was refused:")
            && again.contains("count"),
        "the reason names the field: {again}"
    );
    assert_eq!(
        call["structuredContent"],
        json!({"outcome": "answered", "value": {"count": 2}}),
        "{call}"
    );
}
