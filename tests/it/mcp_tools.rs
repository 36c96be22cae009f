//! MCP tools: a real MCP server written with the official Python SDK (FastMCP), started over
//! stdio through a config entry. Its tools are listed with their schemas, its progress
//! notifications become progress events (in order, the last one included, never another call's),
//! errors are tool errors, cancellation reaches it, a crashed server is started again, a server
//! that never completes the handshake fails in bounded time, and its stderr cannot break it.

use std::path::Path;
use std::time::Duration;

use crate::common::{
    TestServer, eventually, list_tools, registry_with, result_value, run_request, run_tool,
};
use serde_json::json;
use tonic::Code;
use toolstream::config::Limits;
use toolstream::json_proto::struct_to_json;
use toolstream::pb::run_event::Event;

/// The `[[tools]]` entry of tests/python/mcp_server.py writing its markers to `markers`.
fn entry(markers: &Path) -> toml::Table {
    entry_in_mode(markers, None)
}

/// The entry with the server's MODE argument (see the script) and, with a mode, a handshake
/// timeout of 10 s: short, since the hanging modes wait it out, but long enough for the first
/// start of a Python MCP server on a busy machine (3 s was not, now and then).
fn entry_in_mode(markers: &Path, mode: Option<&str>) -> toml::Table {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_server.py");
    let mut command = vec![
        toml::Value::from("python3"),
        script.into(),
        markers.display().to_string().into(),
    ];
    let mut table = toml::Table::new();
    if let Some(mode) = mode {
        command.push(mode.into());
        table.insert("handshake_timeout_secs".into(), 10.into());
    }
    table.insert("kind".into(), "mcp".into());
    table.insert("command".into(), toml::Value::Array(command));
    table.insert("prefix".into(), "py.".into());
    table
}

async fn server(markers: &Path) -> TestServer {
    server_of(entry(markers)).await
}

async fn server_of(entry: toml::Table) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    toolstream::configured_tools::load_entries(&[entry], &root, &Limits::default(), &mut registry)
        .await
        .unwrap();
    TestServer::start_with(registry, Limits::default()).await
}

/// The (fraction, status) of every progress event, in the order received.
fn progress_of(events: &[toolstream::pb::RunEvent]) -> Vec<(Option<f64>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => Some((p.progress, p.status.clone())),
            _ => None,
        })
        .collect()
}

/// Fails the test when a fraction is lower than one before it.
fn assert_non_decreasing(progress: &[(Option<f64>, Option<String>)]) {
    for pair in progress.windows(2) {
        assert!(
            pair[0].0.unwrap() <= pair[1].0.unwrap(),
            "progress went backwards: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Whether process `pid` is gone: no such process, or a zombie that another process (not this
/// test) will reap. Read from /proc.
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let mut fields = after.split(' ');
            let state = fields.next().unwrap();
            let ppid: u32 = fields.next().unwrap().parse().unwrap();
            state == "Z" && ppid != std::process::id()
        }
    }
}

/// A bound on waits that should end by themselves, so a regression fails instead of hanging.
const GENEROUS: Duration = Duration::from_secs(60);

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
    let progress = progress_of(&events);
    for (fraction, status) in &progress {
        let fraction = fraction.unwrap();
        assert!((0.0..=1.0).contains(&fraction));
        assert!(status.as_deref().unwrap().starts_with("word "));
    }
    assert_non_decreasing(&progress);
    assert_eq!(
        progress.last(),
        Some(&(Some(1.0), Some("word 4 of 4".to_owned()))),
        "the final progress arrives last: {progress:?}"
    );
    // MCP has no tree: every report is the call's own (here the run's top level).
    assert!(events.iter().all(|e| match &e.event {
        Some(Event::Progress(p)) => p.call_id.is_empty() && p.parent_call_id.is_empty(),
        _ => true,
    }));
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
    let progress = progress_of(&events);
    for (fraction, status) in &progress {
        assert_eq!(*fraction, None);
        assert!(status.as_deref().unwrap().starts_with("step "));
    }
    assert_eq!(
        progress.last(),
        Some(&(None, Some("step 3".to_owned()))),
        "the final status arrives last: {progress:?}"
    );
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"result": "done"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_mcp_progress_arrives_in_order_and_ends_with_the_final_step() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    for _ in 0..5 {
        let (events, status) = run_tool(&server, "py.many_steps", json!({"count": 300})).await;
        assert!(status.is_none(), "{status:?}");
        let progress = progress_of(&events);
        assert_non_decreasing(&progress);
        assert_eq!(
            progress.last(),
            Some(&(Some(1.0), Some("300 of 300".to_owned()))),
            "the final progress arrives last"
        );
        assert_eq!(
            result_value(events.last().unwrap()),
            Some(json!({"result": "done"}))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_for_other_calls_tokens_never_reaches_a_later_call() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let (_, status) = run_tool(&server, "py.stale_progress", json!({})).await;
    assert!(status.is_none(), "{status:?}");
    let stale = |events: &[toolstream::pb::RunEvent]| {
        progress_of(events)
            .into_iter()
            .any(|(_, status)| status.as_deref() == Some("stale"))
    };
    for _ in 0..3 {
        let (events, status) = run_tool(&server, "py.count_words", json!({"text": "a b"})).await;
        assert!(status.is_none(), "{status:?}");
        assert!(!stale(&events), "{:?}", progress_of(&events));
    }
    // A restarted server's progress tokens start again at 0: the old connection's notifications
    // must not reach the new connection's calls either.
    let (_, status) = run_tool(&server, "py.stale_progress", json!({})).await;
    assert!(status.is_none(), "{status:?}");
    let (_, status) = run_tool(&server, "py.crash", json!({})).await;
    assert_eq!(status.unwrap().code(), Code::Internal);
    for _ in 0..3 {
        let (events, status) = run_tool(&server, "py.count_words", json!({"text": "a b"})).await;
        assert!(status.is_none(), "{status:?}");
        assert!(!stale(&events), "{:?}", progress_of(&events));
        assert_eq!(
            progress_of(&events).last(),
            Some(&(Some(1.0), Some("word 2 of 2".to_owned())))
        );
    }
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
        async || marker.exists(),
    )
    .await;
    eventually(Duration::from_secs(10), "no active runs", async || {
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
    let error = toolstream::configured_tools::load_entries(
        &[broken],
        &root,
        &Limits::default(),
        &mut registry,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("entry 1") && error.contains("/nonexistent/mcp-server"),
        "{error}"
    );

    let not_mcp: toml::Table = toml::from_str("kind = \"mcp\"\ncommand = [\"true\"]\n").unwrap();
    let error = toolstream::configured_tools::load_entries(
        &[not_mcp],
        &root,
        &Limits::default(),
        &mut registry,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("handshake"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_that_never_answers_the_handshake_fails_serve_in_bounded_time() {
    let markers = tempfile::tempdir().unwrap();
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    let entries = [entry_in_mode(markers.path(), Some("--hang"))];
    let limits = Limits::default();
    let loading =
        toolstream::configured_tools::load_entries(&entries, &root, &limits, &mut registry);
    let error = tokio::time::timeout(GENEROUS, loading)
        .await
        .expect("loading a hung MCP server must end")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("entry 1") && error.contains("mcp_server.py") && error.contains("handshake"),
        "{error}"
    );
    assert!(
        error.contains("10 s"),
        "the message says how long it waited: {error}"
    );

    // The hung process does not stay behind.
    let pid_file = markers.path().join("hung.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the hung server wrote its pid")
        .parse()
        .unwrap();
    eventually(GENEROUS, "the hung MCP server to be killed", async || {
        is_gone(pid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_mcp_server_that_never_answers_the_handshake_makes_calls_unavailable() {
    let markers = tempfile::tempdir().unwrap();
    let server = server_of(entry_in_mode(markers.path(), Some("--hang-on-restart"))).await;
    let (_, status) = run_tool(&server, "py.crash", json!({})).await;
    assert_eq!(status.unwrap().code(), Code::Internal);

    let call = run_tool(&server, "py.shout", json!({"text": "hello?"}));
    let (_, status) = tokio::time::timeout(GENEROUS, call)
        .await
        .expect("a call to a hung MCP server must end");
    let status = status.expect("the call fails");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("handshake"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stderr_that_is_not_utf8_or_has_huge_lines_does_not_break_the_server() {
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    // The server writes 1.3 MB of stderr per call: far more than a pipe holds, so it blocks
    // (and the call never ends) unless toolstream keeps reading.
    for _ in 0..3 {
        let call = run_tool(&server, "py.noisy", json!({}));
        let (events, status) = tokio::time::timeout(GENEROUS, call)
            .await
            .expect("the noisy call must end");
        assert!(status.is_none(), "{status:?}");
        assert_eq!(
            result_value(events.last().unwrap()),
            Some(json!({"result": "still here"}))
        );
    }
    let (events, status) = run_tool(&server, "py.shout", json!({"text": "ok"})).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"result": "OK"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_servers_elicitation_is_an_input_request_of_the_call() {
    use crate::input_requests::{decline, respond, result_of, runs, start_with, until_asked};
    let markers = tempfile::tempdir().unwrap();
    let server = server(markers.path()).await;
    let mut runs = runs(&server).await;

    let (run_id, mut stream) = start_with(&server, "py.ask_copies", json!({}), None).await;
    let asked = until_asked(&mut stream).await;
    assert_eq!(asked.prompt, "How many copies?");
    assert_eq!(
        asked.kind(),
        toolstream::pb::InputKind::Input,
        "a tool's own question"
    );
    let schema = serde_json::Value::Object(struct_to_json(asked.schema.clone().unwrap()));
    assert_eq!(schema["properties"]["count"]["type"], "integer", "{schema}");
    // The schema is the server's: an answer it refuses never reaches the server.
    let refused = respond(
        &mut runs,
        &run_id,
        &asked.request_id,
        json!({"count": "two"}),
    )
    .await
    .expect_err("count is an integer");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    respond(&mut runs, &run_id, &asked.request_id, json!({"count": 3}))
        .await
        .expect("a valid answer");
    let (result, _) = result_of(stream).await;
    assert_eq!(result, json!({"action": "accept", "count": 3}));

    let (run_id, mut stream) = start_with(&server, "py.ask_copies", json!({}), None).await;
    let asked = until_asked(&mut stream).await;
    decline(&mut runs, &run_id, &asked.request_id).await;
    let (result, _) = result_of(stream).await;
    assert_eq!(result, json!({"action": "decline"}));

    // Nobody answers: the request lapses, and the server is told the elicitation was cancelled.
    let options = toolstream::pb::RunOptions {
        input_timeout_ms: 200,
        ..Default::default()
    };
    let (_, stream) = start_with(&server, "py.ask_copies", json!({}), Some(options)).await;
    let (result, _) = result_of(stream).await;
    assert_eq!(result, json!({"action": "cancel"}));
}
