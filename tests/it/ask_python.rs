//! A Python command tool that asks (`answer = yield toolstream.ask(prompt, bool)`, run by
//! `toolstream.tool.main`, tests/tools/ask_tool.py), through a real server: the question reaches
//! the client with the schema derived from the type, the answer resumes the generator, and a
//! declined or expired question raises at the `yield` (caught: the tool goes on; not caught: the
//! run fails naming the outcome). The line handling alone is python/tests/test_tool_ask.py.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tonic::Code;
use toolstream::config::Limits;
use toolstream::json_proto::struct_to_json;
use toolstream::pb::{self, RespondToRunRequest};
use toolstream::tools::Tool;

use crate::common::{TestServer, collect, registry_with};
use crate::input_requests::{respond, result_of, runs, start_with, until_asked};

/// tests/tools/ask_tool.py as the command tool `confirm`, declared with `asks = true`, its input
/// schema read from the helper's `--describe`.
async fn python_asking_tool() -> Arc<dyn Tool> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("tests/tools/ask_tool.py");
    let python = manifest.join("python");
    let entry: toml::Table = toml::from_str(&format!(
        "kind = \"command\"\nname = \"confirm\"\nasks = true\ndescribe = true\n\
         command = [\"python3\", {script:?}]\nenv = {{ PYTHONPATH = {python:?} }}\n"
    ))
    .expect("entry");
    toolstream::tools::command::from_entry(&entry, manifest)
        .await
        .expect("a command tool")
}

async fn server() -> TestServer {
    let root = std::env::current_dir().expect("cwd");
    TestServer::start_with(
        registry_with(&root, vec![python_asking_tool().await]),
        Limits::default(),
    )
    .await
}

/// Starts `confirm` with `arguments` (and `options`); returns the run id, the question it asked
/// and the caller's stream.
async fn asked(
    server: &TestServer,
    arguments: Value,
    options: Option<pb::RunOptions>,
) -> (String, pb::InputRequested, tonic::Streaming<pb::RunEvent>) {
    let (run_id, mut stream) = start_with(server, "confirm", arguments, options).await;
    let question = until_asked(&mut stream).await;
    (run_id, question, stream)
}

fn decline(run_id: &str, request_id: &str) -> RespondToRunRequest {
    RespondToRunRequest {
        run_id: run_id.to_owned(),
        request_id: request_id.to_owned(),
        value: None,
        decline: true,
    }
}

#[tokio::test]
async fn a_python_tool_asks_with_the_schema_of_its_type_and_is_resumed_with_the_answer() {
    let server = server().await;
    let mut client = runs(&server).await;
    let (run_id, question, stream) = asked(&server, json!({"path": "report.pdf"}), None).await;
    assert_eq!(question.prompt, "Overwrite report.pdf?");
    assert_eq!(question.kind(), pb::InputKind::Input);
    assert_eq!(
        question.schema.clone().map(struct_to_json),
        json!({"type": "boolean"}).as_object().cloned()
    );
    respond(&mut client, &run_id, &question.request_id, json!(true))
        .await
        .expect("the answer");
    let (result, _) = result_of(stream).await;
    assert_eq!(result, json!("overwritten"));

    // The same tool, answered no.
    let (run_id, question, stream) = asked(&server, json!({"path": "a.txt"}), None).await;
    respond(&mut client, &run_id, &question.request_id, json!(false))
        .await
        .expect("the answer");
    assert_eq!(result_of(stream).await.0, json!("kept"));
}

#[tokio::test]
async fn a_declined_question_raises_at_the_yield_and_fails_the_run_when_not_caught() {
    let server = server().await;
    let mut client = runs(&server).await;

    let (run_id, question, stream) = asked(&server, json!({"path": "report.pdf"}), None).await;
    client
        .respond_to_run(decline(&run_id, &question.request_id))
        .await
        .expect("the decline");
    assert_eq!(result_of(stream).await.0, json!("kept (declined)"));

    let arguments = json!({"path": "report.pdf", "catch": false});
    let (run_id, question, stream) = asked(&server, arguments, None).await;
    client
        .respond_to_run(decline(&run_id, &question.request_id))
        .await
        .expect("the decline");
    let (_, status) = collect(stream).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status
            .message()
            .contains("InputDeclined: 'Overwrite report.pdf?' was not answered: declined"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_question_nobody_answers_expires_and_the_tool_goes_on() {
    let server = server().await;
    let options = pb::RunOptions {
        input_timeout_ms: 20,
        ..pb::RunOptions::default()
    };
    let (_, _, stream) = asked(&server, json!({"path": "report.pdf"}), Some(options)).await;
    assert_eq!(result_of(stream).await.0, json!("kept (expired)"));
}
