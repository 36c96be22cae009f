//! MCP tools: a real MCP server written with the official Python SDK (FastMCP), started over
//! stdio through a config entry. Its tools are listed with their schemas, its progress
//! notifications become progress events, errors are tool errors, cancellation reaches it, and a
//! crashed server is started again.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    TestServer, eventually, list_tools, registry_with, result_value, run_request, run_tool,
};
use serde_json::json;
use tonic::Code;
use toolstream::config::Limits;
use toolstream::json_proto::struct_to_json;
use toolstream::pb::run_event::Event;

fn entry(markers: &Path) -> toml::Table {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_server.py");
    let mut table = toml::Table::new();
    table.insert("kind".into(), "mcp".into());
    table.insert(
        "command".into(),
        toml::Value::Array(vec![
            "python3".into(),
            script.into(),
            markers.display().to_string().into(),
        ]),
    );
    table.insert("prefix".into(), "py.".into());
    table
}

async fn server(markers: &Path) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    toolstream::sources::load_entries(&[entry(markers)], &root, &Limits::default(), &mut registry)
        .await
        .unwrap();
    TestServer::start_with(registry, Limits::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_are_listed_with_prefix_kind_and_schema() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let tools = list_tools(&server).await;
    let count = tools.iter().find(|t| t.name == "py.count_words").unwrap();
    assert_eq!(count.kind, "mcp");
    assert!(count.description.contains("Counts the words"));
    let schema = struct_to_json(count.input_schema.clone().unwrap());
    assert_eq!(schema["required"], json!(["text"]));
    for name in ["py.steps", "py.shout", "py.fail", "py.slow", "py.crash"] {
        assert!(tools.iter().any(|t| t.name == name), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_progress_notifications_become_progress_events() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let (events, status) = run_tool(
        &server,
        "py.count_words",
        json!({"text": "one two three four"}),
    )
    .await;
    assert!(status.is_none(), "{status:?}");
    let progress: Vec<(Option<f64>, Option<String>)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => Some((p.progress, p.status.clone())),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "progress arrived");
    for (fraction, status) in &progress {
        let fraction = fraction.unwrap();
        assert!((0.0..=1.0).contains(&fraction));
        assert!(status.as_deref().unwrap().starts_with("word "));
    }
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"words": 4}))
    );

    // The structured content is the result: FastMCP wraps a plain return value as
    // {"result": value}. Schema violations never reach the server.
    let (events, _) = run_tool(&server, "py.shout", json!({"text": "hey"})).await;
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"result": "HEY"}))
    );
    let (_, status) = run_tool(&server, "py.shout", json!({"txt": "hey"})).await;
    assert_eq!(status.unwrap().code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_progress_without_a_total_has_a_status_and_no_fraction() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let (events, status) = run_tool(&server, "py.steps", json!({"count": 3})).await;
    assert!(status.is_none(), "{status:?}");
    let progress: Vec<(Option<f64>, Option<String>)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => Some((p.progress, p.status.clone())),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "progress arrived");
    for (fraction, status) in &progress {
        assert_eq!(*fraction, None);
        assert!(status.as_deref().unwrap().starts_with("step "));
    }
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"result": "done"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_errors_are_aborted_with_their_message() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let (_, status) = run_tool(&server, "py.fail", json!({"reason": "no coffee"})).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("refused: no coffee"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_sends_mcp_cancellation() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let mut stream = server
        .client()
        .await
        .run_tool(run_request("py.slow", json!({})))
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = stream.message().await.unwrap().unwrap();
        if matches!(event.event, Some(Event::Progress(_))) {
            break;
        }
    }
    drop(stream);
    let marker = markers.path().join("cancelled");
    eventually(
        Duration::from_secs(20),
        "the MCP server to see the cancellation",
        || marker.exists(),
    )
    .await;
    eventually(Duration::from_secs(10), "no active runs", || {
        server.engine.active_runs() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_mcp_server_is_started_again_on_next_use() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let (_, status) = run_tool(&server, "py.crash", json!({})).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("started again"),
        "{}",
        status.message()
    );

    let (events, status) = run_tool(&server, "py.shout", json!({"text": "back"})).await;
    assert!(status.is_none(), "the next call works: {status:?}");
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"result": "BACK"}))
    );
}

#[tokio::test]
async fn an_mcp_server_that_cannot_start_is_a_config_error_naming_the_entry() {
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    let broken: toml::Table =
        toml::from_str("kind = \"mcp\"\ncommand = [\"/nonexistent/mcp-server\"]\n").unwrap();
    let error =
        toolstream::sources::load_entries(&[broken], &root, &Limits::default(), &mut registry)
            .await
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("entry 1") && error.contains("/nonexistent/mcp-server"),
        "{error}"
    );

    let not_mcp: toml::Table = toml::from_str("kind = \"mcp\"\ncommand = [\"true\"]\n").unwrap();
    let error =
        toolstream::sources::load_entries(&[not_mcp], &root, &Limits::default(), &mut registry)
            .await
            .unwrap_err()
            .to_string();
    assert!(error.contains("handshake"), "{error}");
}
