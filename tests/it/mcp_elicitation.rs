//! Input requests over MCP: during a `tools/call` on `/mcp`, a run's input request is asked of a
//! client that declared the elicitation capability (the official Python MCP SDK client with an
//! `elicitation_callback`), as `elicitation/create` with the request's prompt and schema (a
//! non-object schema wrapped as the property `value`); accepting answers the tool, declining
//! declines it. The server and its tools are input_requests.rs's: `confirm` asks a boolean, `how_many` an
//! object with an integer `count`; each ends with what it got. `toolstream mcp-stdio` asks the
//! same way and answers with RespondToRun.

use crate::input_requests::server;
use crate::mcp_server::{get_run, mcp_http, mcp_stdio, run_id_of};
use serde_json::{Value, json};
use toolstream::pb;

/// The one elicitation the client was asked during `call`.
fn only_elicitation(call: &Value) -> &Value {
    let asked = call["elicitations"].as_array().expect("elicitations");
    assert_eq!(asked.len(), 1, "one elicitation per question: {call}");
    &asked[0]
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
    let asked = only_elicitation(&call);
    assert_eq!(asked["message"], "Overwrite report.pdf?");
    assert_eq!(
        asked["requestedSchema"],
        json!({"type": "object", "properties": {"value": {"type": "boolean"}}, "required": ["value"]}),
        "a boolean is asked as the property `value`"
    );
    assert_eq!(call["isError"], json!(false), "{call}");
    assert_eq!(
        call["structuredContent"],
        json!({"outcome": "answered", "value": true})
    );
    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);

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
        only_elicitation(&call);
        assert_eq!(call["isError"], json!(false), "{call}");
        assert_eq!(
            call["structuredContent"],
            json!({"outcome": "declined", "value": null}),
            "{action}: {call}"
        );
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
    let asked = only_elicitation(&call);
    assert_eq!(asked["message"], "Overwrite report.pdf?");
    assert_eq!(
        asked["requestedSchema"]["properties"]["value"]["type"], "boolean",
        "{asked}"
    );
    assert_eq!(
        call["structuredContent"],
        json!({"outcome": "answered", "value": true}),
        "{call}"
    );
    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);

    let declined = mcp_stdio(&server, &["elicit", "confirm", "{}", "decline"], None).await;
    only_elicitation(&declined);
    assert_eq!(
        declined["structuredContent"],
        json!({"outcome": "declined", "value": null}),
        "{declined}"
    );
}
