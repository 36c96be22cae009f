//! Command tools: real subprocesses declared in a real config file, speaking JSON lines, written
//! with the Python `toolstream.tool` helper (tests/tools/scripted_tool.py).

use crate::common;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{TestServer, collect, eventually, result_value, run_request};
use serde_json::{Map, Value, json};
use tonic::Code;
use toolstream::config::{Config, Overrides};
use toolstream::configured_tools::build_registry;
use toolstream::json_proto::struct_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;

const SCRIPTED_SCHEMA: &str = "{ type = \"object\", properties = { behaviour = { type = \
                               \"string\" }, items = { type = \"integer\" } }, required = \
                               [\"behaviour\"] }";

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `[[tools]]` entries running tests/tools/scripted_tool.py with the helper importable; `cwd` is
/// `work/`, relative to the config file.
fn scripted_entries() -> String {
    let script = manifest_path("tests/tools/scripted_tool.py");
    let python = manifest_path("python");
    let common = format!(
        "command = [\"python3\", {script:?}]\ncwd = \"work\"\nenv = {{ PYTHONPATH = {python:?} }}\n"
    );
    format!(
        "[[tools]]\nkind = \"command\"\nname = \"scripted\"\ndescription = \"Does what it is \
         told.\"\n{common}input_schema = {SCRIPTED_SCHEMA}\n\n\
         [[tools]]\nkind = \"command\"\nname = \"scripted_with_timeout\"\n{common}\
         input_schema = {SCRIPTED_SCHEMA}\ntimeout_secs = 4\n\n\
         [[tools]]\nkind = \"command\"\nname = \"missing\"\ncommand = [\"/no/such/program\"]\n\n\
         [[tools]]\nkind = \"command\"\nname = \"plain\"\n\
         command = [\"python3\", {script:?}, \"plain\"]\ncwd = \"work\"\nenv = {{ PYTHONPATH = {python:?} }}\n"
    )
}

/// Writes `text` as toolstream.toml in a new directory (with a `work/` subdirectory) and builds
/// the registry from it the way `serve` does.
async fn registry_from(
    text: &str,
) -> (
    tempfile::TempDir,
    Result<toolstream::registry::ToolRegistry, toolstream::configured_tools::BuildError>,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let path = dir.path().join("toolstream.toml");
    std::fs::write(&path, text).unwrap();
    let overrides = Overrides {
        root: Some(dir.path().to_owned()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), overrides).unwrap();
    let registry = build_registry(&config).await;
    (dir, registry)
}

async fn start() -> (tempfile::TempDir, TestServer) {
    let (dir, registry) = registry_from(&scripted_entries()).await;
    let server = TestServer::start_with(registry.unwrap(), Default::default()).await;
    (dir, server)
}

fn progress_of(event: &pb::RunEvent) -> Option<&pb::Progress> {
    match &event.event {
        Some(Event::Progress(progress)) => Some(progress),
        _ => None,
    }
}

fn data_of(progress: &pb::Progress) -> Map<String, Value> {
    progress
        .data
        .clone()
        .map(struct_to_json)
        .unwrap_or_default()
}

/// Reads events until a progress event carrying the tool's pid and its child's pid.
async fn pids_from(stream: &mut tonic::Streaming<pb::RunEvent>) -> (u32, u32) {
    loop {
        let event = stream
            .message()
            .await
            .expect("the stream must not fail before the tool reports its pids")
            .expect("the stream must not end before the tool reports its pids");
        if let Some(progress) = progress_of(&event) {
            let data = data_of(progress);
            if let (Some(pid), Some(child)) = (data.get("pid"), data.get("child_pid")) {
                let pid = pid.as_u64().unwrap() as u32;
                let child = child.as_u64().unwrap() as u32;
                return (pid, child);
            }
        }
    }
}

/// The process state letter from /proc, `None` once the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

fn is_alive(pid: u32) -> bool {
    !matches!(process_state(pid), None | Some('Z' | 'X'))
}

/// The tool's process was stopped and reaped (no zombie), and its child, which init adopts and
/// reaps, is dead.
async fn assert_stopped(pid: u32, child: u32) {
    eventually(
        Duration::from_secs(15),
        "the tool's process to be reaped",
        async || process_state(pid).is_none(),
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the tool's child to be stopped",
        async || !is_alive(child),
    )
    .await;
}

#[tokio::test]
async fn list_tools_shows_command_tools_with_their_config() {
    let (_dir, server) = start().await;
    let tools = common::list_tools(&server).await;
    let scripted = tools.iter().find(|t| t.name == "scripted").unwrap();
    assert_eq!(scripted.kind, "command");
    assert_eq!(scripted.description, "Does what it is told.");
    let schema = struct_to_json(scripted.input_schema.clone().unwrap());
    assert_eq!(schema["required"], json!(["behaviour"]));
    let plain = tools.iter().find(|t| t.name == "plain").unwrap();
    assert_eq!(
        struct_to_json(plain.input_schema.clone().unwrap()),
        *json!({"type": "object"}).as_object().unwrap()
    );
}

#[tokio::test]
async fn progress_with_status_and_data_then_the_result() {
    let (_dir, server) = start().await;
    let (events, status) = common::run_tool(
        &server,
        "scripted",
        json!({"behaviour": "progress", "items": 4}),
    )
    .await;
    assert!(status.is_none(), "{status:?}");

    // A reader that falls behind gets older progress coalesced away, so check that every report
    // that arrived is intact, that the newest one (item 4) arrived, and that all four were
    // produced (the result's sequence number counts them).
    let progress: Vec<&pb::Progress> = events.iter().filter_map(progress_of).collect();
    assert!(!progress.is_empty(), "{events:?}");
    for report in &progress {
        let data = data_of(report);
        let n = data
            .get("item")
            .and_then(Value::as_u64)
            .expect("item in data") as usize;
        assert_eq!(report.progress, Some(n as f64 / 4.0));
        assert_eq!(report.status.as_deref(), Some(&*format!("item {n} of 4")));
        assert_eq!(data.get("tags"), Some(&json!(["a", "b"])));
        assert!(!data.contains_key("progress") && !data.contains_key("status"));
    }
    assert_eq!(
        data_of(progress.last().unwrap()).get("item"),
        Some(&json!(4))
    );
    assert_eq!(
        events.last().unwrap().sequence,
        6,
        "started + 4 progress + result"
    );

    let result = result_value(events.last().unwrap()).expect("the last event is the result");
    assert_eq!(result, json!({"processed": 4}));
}

#[tokio::test]
async fn the_tool_runs_in_its_configured_directory_with_its_environment() {
    // `cwd = "work"` is relative to the config file; PYTHONPATH (from `env`) makes the helper
    // importable.
    let (dir, server) = start().await;
    let (events, status) = common::run_tool(&server, "plain", json!({"numbers": [1, 2, 39]})).await;
    assert!(status.is_none(), "{status:?}");
    let work = dir.path().join("work").canonicalize().unwrap();
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"sum": 42, "cwd": work.to_str().unwrap()}))
    );
}

#[tokio::test]
async fn a_raised_exception_ends_the_run_aborted_with_its_message() {
    let (_dir, server) = start().await;
    let (events, status) =
        common::run_tool(&server, "scripted", json!({"behaviour": "raise"})).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("ValueError: disk full on /data"),
        "{}",
        status.message()
    );
    // Progress already sent stays sent.
    let progress: Vec<&pb::Progress> = events.iter().filter_map(progress_of).collect();
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].status.as_deref(), Some("about to fail"));
}

#[tokio::test]
async fn garbage_output_is_an_internal_error_naming_the_line_and_stops_the_tool() {
    let (_dir, server) = start().await;
    let mut stream = server
        .client()
        .await
        .run_tool(run_request("scripted", json!({"behaviour": "garbage"})))
        .await
        .unwrap()
        .into_inner();
    let (pid, child) = pids_from(&mut stream).await;
    let (_events, status) = collect(stream).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let message = status.message();
    assert!(message.contains("output line 2"), "{message}");
    assert!(message.contains("not JSON"), "{message}");
    assert!(message.contains("this is not json"), "{message}");
    assert_stopped(pid, child).await;
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error_with_the_end_of_stderr() {
    let (_dir, server) = start().await;
    let (_events, status) =
        common::run_tool(&server, "scripted", json!({"behaviour": "crash"})).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let message = status.message();
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.contains("fatal: the widget broke"), "{message}");
}

#[tokio::test]
async fn a_program_that_cannot_start_is_an_internal_error_naming_it() {
    let (_dir, server) = start().await;
    let (_events, status) = common::run_tool(&server, "missing", json!({})).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("cannot start `/no/such/program`"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn exiting_without_a_result_line_is_an_error() {
    let (_dir, server) = start().await;
    let (events, status) =
        common::run_tool(&server, "scripted", json!({"behaviour": "no_result"})).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("without printing a result line"),
        "{}",
        status.message()
    );
    assert!(events.iter().all(|e| result_value(e).is_none()));
}

#[tokio::test]
async fn a_grpc_deadline_stops_the_tool_and_its_children() {
    let (_dir, server) = start().await;
    let mut request = tonic::Request::new(run_request("scripted", json!({"behaviour": "hang"})));
    request.set_timeout(Duration::from_secs(5));
    let mut stream = server
        .client()
        .await
        .run_tool(request)
        .await
        .unwrap()
        .into_inner();
    let (pid, child) = pids_from(&mut stream).await;
    assert!(is_alive(pid) && is_alive(child), "the tool is running");
    let (_, status) = collect(stream).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_stopped(pid, child).await;
}

#[tokio::test]
async fn the_tools_own_timeout_stops_it_with_deadline_exceeded() {
    let (_dir, server) = start().await;
    let mut stream = server
        .client()
        .await
        .run_tool(run_request(
            "scripted_with_timeout",
            json!({"behaviour": "hang"}),
        ))
        .await
        .unwrap()
        .into_inner();
    let (pid, child) = pids_from(&mut stream).await;
    assert!(is_alive(pid) && is_alive(child), "the tool is running");
    let (_, status) = collect(stream).await;
    let status = status.expect("the run fails");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("timeout of 4 s (timeout_secs)"),
        "{}",
        status.message()
    );
    assert_stopped(pid, child).await;
}

#[tokio::test]
async fn cancelling_mid_stream_stops_the_tool_and_its_children() {
    let (_dir, server) = start().await;
    let mut stream = server
        .client()
        .await
        .run_tool(run_request("scripted", json!({"behaviour": "hang"})))
        .await
        .unwrap()
        .into_inner();
    let (pid, child) = pids_from(&mut stream).await;
    assert!(is_alive(pid) && is_alive(child), "the tool is running");
    drop(stream);
    assert_stopped(pid, child).await;
    eventually(Duration::from_secs(10), "no active runs", async || {
        server.engine.active_runs() == 0
    })
    .await;
}

#[tokio::test]
async fn a_tool_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let (_dir, server) = start().await;
    let mut stream = server
        .client()
        .await
        .run_tool(run_request("scripted", json!({"behaviour": "stubborn"})))
        .await
        .unwrap()
        .into_inner();
    let (pid, child) = pids_from(&mut stream).await;
    assert!(is_alive(pid) && is_alive(child), "the tool is running");
    drop(stream);
    assert_stopped(pid, child).await;
}

/// The error `build_registry` gives for a config with `entries`.
async fn config_error(entries: &str) -> String {
    let (_dir, registry) = registry_from(entries).await;
    match registry {
        Ok(_) => panic!("the config must be refused:\n{entries}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn config_mistakes_stop_the_server_naming_the_entry() {
    let ok = "kind = \"command\"\ncommand = [\"true\"]\n";
    let cases = [
        (
            "[[tools]]\nkind = \"shell\"\nname = \"odd\"\ncommand = [\"true\"]\n".to_owned(),
            "entry 1 (\"odd\")",
            "unknown kind \"shell\"",
        ),
        (
            "[[tools]]\nkind = \"command\"\nname = \"nocmd\"\n".to_owned(),
            "entry 1 (\"nocmd\")",
            "missing field `command`",
        ),
        (
            format!("[[tools]]\nname = \"twice\"\n{ok}\n[[tools]]\nname = \"twice\"\n{ok}"),
            "entry 2 (\"twice\")",
            "already registered",
        ),
        (
            format!("[[tools]]\nname = \"badschema\"\n{ok}input_schema = {{ type = 12 }}\n"),
            "entry 1 (\"badschema\")",
            "not a valid JSON Schema",
        ),
        (
            format!("[[tools]]\nname = \"typo\"\n{ok}timeout = 5\n"),
            "entry 1 (\"typo\")",
            "unknown field `timeout`",
        ),
    ];
    for (entries, entry, problem) in cases {
        let message = config_error(&entries).await;
        assert!(message.contains(entry), "{message}");
        assert!(message.contains(problem), "{message}");
    }
}

/// `[[tools]]` entries for tests/tools/nested_tool.py: `nested_helper` (the seed's nested example
/// with the helper's sub-tasks) and `nested_raw` (the same lines written by hand).
fn nested_entries() -> String {
    let script = manifest_path("tests/tools/nested_tool.py");
    let python = manifest_path("python");
    let common = format!("cwd = \"work\"\nenv = {{ PYTHONPATH = {python:?} }}\n");
    format!(
        "[[tools]]\nkind = \"command\"\nname = \"nested_helper\"\n\
         command = [\"python3\", {script:?}]\n{common}\n\
         [[tools]]\nkind = \"command\"\nname = \"nested_raw\"\n\
         command = [\"python3\", {script:?}, \"raw\"]\n{common}"
    )
}

#[tokio::test]
async fn the_protocol_and_the_python_helper_make_the_same_tree_as_the_rust_api() {
    let (_dir, registry) = registry_from(&nested_entries()).await;
    let mut registry = registry.unwrap();
    registry.register(common::nested_tool()).unwrap();
    let server = TestServer::start_with(registry, Default::default()).await;
    let items = json!({"items": ["a", "b", "c"]});

    let mut trees = Vec::new();
    for tool in ["nested", "nested_helper", "nested_raw"] {
        let arguments = if tool == "nested" {
            json!({"items": 3})
        } else {
            items.clone()
        };
        let (events, status) = collect(
            server
                .client()
                .await
                .run_tool(run_request(tool, arguments))
                .await
                .unwrap()
                .into_inner(),
        )
        .await;
        assert!(status.is_none(), "{tool}: {status:?}");
        assert_eq!(
            result_value(events.last().unwrap()),
            Some(json!("All done"))
        );
        trees.push((tool, common::progress_nodes(&events)));
    }
    // The same events, node for node: ids, parents, labels, fractions and statuses.
    let (_, rust) = &trees[0];
    for (tool, tree) in &trees[1..] {
        assert_eq!(tree, rust, "{tool} differs from the Rust API");
    }
    // Which are a tree of one node per item under the run, and the seed's overall numbers.
    assert_eq!(
        rust.iter()
            .filter(|node| !node.0.is_empty() && node.3.is_none())
            .map(|node| (node.0.as_str(), node.1.as_str(), node.2.as_str()))
            .collect::<Vec<_>>(),
        [
            ("1", "", "item 1"),
            ("2", "", "item 2"),
            ("3", "", "item 3")
        ]
    );
    assert!(common::same_fractions(
        &common::fractions_of(rust, ""),
        &common::seed_fractions(3)
    ));
}

#[tokio::test]
async fn sub_task_lines_that_break_the_protocol_are_internal_errors_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"task": {"id": "a", "parent": "nobody"}}"#,
            "which no earlier line made",
        ),
        (
            r#"{"task": {"id": "a", "done": true}}
{"task": {"id": "a"}, "progress": 0.5}"#,
            "after it was done",
        ),
        (r#"{"task": {"id": "a", "weight": "heavy"}}"#, "task.weight"),
        (
            r#"{"partial": {"value": 1, "task": "nobody"}}"#,
            "names a task that no earlier line made",
        ),
        (
            r#"{"task": {"id": "a", "done": true}}
{"partial": {"value": 1, "task": "a"}}"#,
            "partial.task \"a\" is named after it was done",
        ),
    ];
    let mut entries = String::new();
    for (index, (lines, _)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("lines{index}.jsonl"));
        std::fs::write(&file, format!("{lines}\n{{\"result\": 1}}\n")).unwrap();
        entries.push_str(&format!(
            "[[tools]]\nkind = \"command\"\nname = \"lines{index}\"\ncommand = [\"cat\", {:?}]\n",
            file.display().to_string()
        ));
    }
    let (_config_dir, registry) = registry_from(&entries).await;
    let server = TestServer::start_with(registry.unwrap(), Default::default()).await;
    for (index, (lines, reason)) in cases.iter().enumerate() {
        let (_, status) = common::run_tool(&server, &format!("lines{index}"), json!({})).await;
        let status = status.expect("the run fails");
        assert_eq!(status.code(), Code::Internal, "{lines}");
        assert!(status.message().contains(reason), "{}", status.message());
        assert!(
            status.message().contains("output line"),
            "{}",
            status.message()
        );
    }
}

#[tokio::test]
async fn a_partial_result_naming_a_sub_task_is_shown_under_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.jsonl");
    std::fs::write(
        &file,
        r#"{"task": {"id": "f1", "label": "file 1"}}
{"partial": {"value": "00ff", "key": "sha256", "task": "f1"}}
{"partial": {"value": 1, "key": "files", "append": true}}
{"result": 1}
"#,
    )
    .unwrap();
    let entry = format!(
        "[[tools]]\nkind = \"command\"\nname = \"digests\"\ncommand = [\"cat\", {:?}]\n",
        file.display().to_string()
    );
    let (_config_dir, registry) = registry_from(&entry).await;
    let server = TestServer::start_with(registry.unwrap(), Default::default()).await;
    let (events, status) = common::run_tool(&server, "digests", json!({})).await;
    assert!(status.is_none(), "{status:?}");
    let node = events
        .iter()
        .filter_map(progress_of)
        .find(|progress| progress.tool == "file 1")
        .expect("the sub-task's node")
        .call_id
        .clone();
    assert!(!node.is_empty());
    let partials: Vec<(String, String, String)> = events
        .iter()
        .filter_map(|event| match &event.event {
            Some(Event::PartialResult(partial)) => Some((
                partial.call_id.clone(),
                partial.tool.clone(),
                partial.key.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        partials,
        vec![
            (node, "file 1".to_owned(), "sha256".to_owned()),
            (String::new(), String::new(), "files".to_owned()),
        ]
    );
}

/// Prints its result and exits 0, leaving a `sleep 60` in a session of its own (out of reach of
/// the group kill) that holds its stdout and stderr. That process writes its pid to the file named
/// by the tool's first argument once it is in its new session, and the tool waits for it (through
/// a FIFO) before it prints its result and exits.
const DAEMONIZING_TOOL: &str = r#"read -r arguments
mkfifo "$1.ready"
setsid sh -c 'echo "$$" > "$1"; echo > "$1.ready"; exec sleep 60' orphan "$1" &
read -r ready < "$1.ready"
echo '{"result": 42}'
exit 0
"#;

/// The run succeeds with the printed result once the tool exited 0, although a process it left
/// in its own session keeps the pipes open (toolstream waits for them only the grace period).
/// That process is out of toolstream's reach and runs on (docs/command-tools.md): the test kills it.
#[tokio::test]
async fn a_result_counts_when_the_tool_exits_0_while_a_setsid_child_holds_its_stdout() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("daemonizes.sh");
    std::fs::write(&script, DAEMONIZING_TOOL).unwrap();
    let pid_file = scripts.path().join("orphan.pid");
    let entries = format!(
        "[[tools]]\nkind = \"command\"\nname = \"daemonizes\"\n\
         command = [\"sh\", {:?}, {:?}]\n",
        script.display().to_string(),
        pid_file.display().to_string()
    );
    let (_dir, registry) = registry_from(&entries).await;
    let server = TestServer::start_with(registry.unwrap(), Default::default()).await;

    let (events, status) = common::run_tool(&server, "daemonizes", json!({})).await;
    let orphan: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_alive(orphan as u32), "the setsid child still runs");
    // SAFETY: kill(2) with plain integers: the test's own leftover process.
    unsafe { libc::kill(orphan, libc::SIGKILL) };
    assert!(status.is_none(), "{status:?}");
    assert_eq!(events.iter().find_map(result_value), Some(json!(42)));
}
