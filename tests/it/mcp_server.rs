//! The registry as an MCP server: `/mcp` (Streamable HTTP) and `toolstream mcp-stdio`, driven by
//! the official Python MCP SDK client (tests/python/mcp_client.py). Tools are listed with the
//! registry's schemas; a call is a real run (GetRun sees it, its id in the result's `_meta`) whose
//! top-level progress arrives as progress notifications; results are structured, tool failures
//! `isError`, bad requests JSON-RPC errors; `notifications/cancelled` cancels the run; auth and
//! scopes hold; `[mcp] enabled = false` is a 404; and a toolstream that uses another's stdio
//! bridge as an MCP tool source streams the other's progress.

#[allow(dead_code)] // the stand-in model has more than these tests use
use crate::common::model;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::binary::BIN;
use crate::common::{
    DropFlag, TestServer, collect, eventually, registry_with, result_value, run_python_with_env,
    run_request, with_token,
};
use serde_json::{Value, json};
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, ModelProvider};
use toolstream::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
use toolstream::config::{HttpConfig, Limits, McpConfig};
use toolstream::pb;
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::server::Server;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

/// A bound on waits that should end by themselves, so a regression fails instead of hanging.
const GENEROUS: Duration = Duration::from_secs(60);

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct StepsArgs {
    /// How many steps.
    steps: u32,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct StepsOutput {
    steps: u32,
}

/// `steps`: reports `k/n` with status "step k of n" for each step, returns `{"steps": n}`, and
/// declares that output's schema.
fn steps_tool() -> Arc<dyn Tool> {
    Arc::new(
        tool_fn(
            "steps",
            "Takes steps, reporting each.",
            |args: StepsArgs, progress: Progress| async move {
                let n = args.steps.max(1);
                for k in 1..=n {
                    progress.report(f64::from(k) / f64::from(n), format!("step {k} of {n}"));
                    tokio::task::yield_now().await;
                }
                Ok::<_, ToolError>(StepsOutput { steps: n })
            },
        )
        .with_output::<StepsOutput>(),
    )
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// `fails`: reports half, then fails with "the disk is full".
fn failing_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "fails",
        "Fails halfway.",
        |_: NoArgs, progress: Progress| async move {
            progress.report(0.5, "halfway");
            Err::<Value, _>(ToolError::Failed("the disk is full".into()))
        },
    ))
}

/// `crawl`: progress that creeps towards 1 forever (every 5 ms); sets `stopped` when its run
/// drops it.
fn crawl_tool(stopped: Arc<AtomicBool>) -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "crawl",
        "Never ends.",
        move |_: NoArgs, progress: Progress| {
            let guard = DropFlag(Arc::clone(&stopped));
            async move {
                let _guard = guard;
                let mut page = 0u32;
                loop {
                    page += 1;
                    let fraction = f64::from(page) / f64::from(page + 1);
                    progress.report(fraction, format!("page {page}"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                #[allow(unreachable_code)]
                Ok::<(), ToolError>(())
            }
        },
    ))
}

fn tools(stopped: &Arc<AtomicBool>) -> Vec<Arc<dyn Tool>> {
    vec![
        steps_tool(),
        failing_tool(),
        crawl_tool(Arc::clone(stopped)),
    ]
}

async fn server_from(server: Server) -> TestServer {
    TestServer::serve(server).await
}

fn base_server(stopped: &Arc<AtomicBool>) -> Server {
    let root = std::env::current_dir().unwrap();
    Server::new(registry_with(&root, tools(stopped)), Limits::default())
}

/// `tests/python/mcp_client.py http <server>/mcp <args>`, its JSON output; `token` as the bearer
/// token. Run off the runtime: the server answers on it meanwhile.
pub(crate) async fn mcp_http(server: &TestServer, args: &[&str], token: Option<&str>) -> Value {
    let mut all = vec!["http".to_owned(), format!("{}/mcp", server.url())];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    python(all, token).await
}

/// `tests/python/mcp_client.py stdio <toolstream> <server> <args>`: a session with
/// `toolstream mcp-stdio` launched as a process, its JSON output.
pub(crate) async fn mcp_stdio(server: &TestServer, args: &[&str], token: Option<&str>) -> Value {
    let mut all = vec!["stdio".to_owned(), BIN.to_owned(), server.url()];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    python(all, token).await
}

async fn python(args: Vec<String>, token: Option<&str>) -> Value {
    let token = token.unwrap_or_default().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_python_with_env("mcp_client.py", &args, &[("MCP_TEST_TOKEN", &token)])
    })
    .await
    .unwrap();
    serde_json::from_str(output.trim()).unwrap_or_else(|e| panic!("{e}: {output}"))
}

/// The run `run_id` as GetRun answers it over gRPC.
pub(crate) async fn get_run(server: &TestServer, run_id: &str, token: Option<&str>) -> pb::Run {
    RunServiceClient::new(server.channel().await)
        .get_run(with_token(
            token,
            pb::GetRunRequest {
                run_id: run_id.to_owned(),
            },
        ))
        .await
        .expect("GetRun")
        .into_inner()
}

pub(crate) fn run_id_of(call: &Value) -> String {
    call["meta"]["toolstream/runId"]
        .as_str()
        .unwrap_or_else(|| panic!("the result's _meta names the run: {call}"))
        .to_owned()
}

/// Fails unless `progress` is non-empty, increasing, within (0, 1], each with total 1 and a
/// message.
fn assert_progress_increases(progress: &[Value]) {
    assert!(!progress.is_empty(), "no progress notification arrived");
    let fractions: Vec<f64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap())
        .collect();
    assert!(
        fractions.windows(2).all(|pair| pair[0] < pair[1]),
        "progress must increase: {fractions:?}"
    );
    for notification in progress {
        let fraction = notification["progress"].as_f64().unwrap();
        assert!(fraction > 0.0 && fraction <= 1.0, "{notification}");
        assert_eq!(notification["total"].as_f64(), Some(1.0), "{notification}");
        assert!(notification["message"].is_string(), "{notification}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_lists_the_registry_tools_with_their_schemas() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let listed = mcp_http(&server, &["list"], None).await;
    let grpc = crate::common::list_tools(&server).await;
    let tools = listed["tools"].as_array().unwrap();
    assert_eq!(tools.len(), grpc.len(), "{listed}");
    for tool in &grpc {
        let mcp = tools
            .iter()
            .find(|t| t["name"] == tool.name.as_str())
            .unwrap_or_else(|| panic!("{} is listed over MCP: {listed}", tool.name));
        let input = toolstream::json_proto::struct_to_json(tool.input_schema.clone().unwrap());
        assert_eq!(mcp["inputSchema"], Value::Object(input), "{}", tool.name);
        assert_eq!(mcp["description"], tool.description.as_str());
    }
    let steps = tools.iter().find(|t| t["name"] == "steps").unwrap();
    assert_eq!(steps["outputSchema"]["type"], "object", "{steps}");
    assert!(steps["outputSchema"]["properties"]["steps"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_call_streams_progress_and_answers_a_structured_result_naming_its_run() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let call = mcp_http(&server, &["call", "steps", r#"{"steps": 4}"#], None).await;
    assert_eq!(call["isError"], json!(false), "{call}");
    assert_eq!(call["structuredContent"], json!({"steps": 4}));
    let text = call["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"steps": 4})
    );
    let progress = call["progress"].as_array().unwrap();
    assert_progress_increases(progress);
    // The last report is never coalesced away.
    assert_eq!(
        progress.last().unwrap()["progress"].as_f64(),
        Some(1.0),
        "{call}"
    );
    assert_eq!(progress.last().unwrap()["message"], "step 4 of 4");

    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);
    assert_eq!(run.tool, "steps");

    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"toolstream_mcp_requests_total{method="tools/call",outcome="ok"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_is_an_is_error_result_and_bad_calls_are_json_rpc_errors() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let call = mcp_http(&server, &["call", "fails", "{}"], None).await;
    assert_eq!(call["isError"], json!(true), "{call}");
    let text = call["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("the disk is full"), "{call}");
    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(run.state(), pb::RunState::Failed);

    let unknown = mcp_http(&server, &["error", "no_such_tool", "{}"], None).await;
    assert_eq!(unknown["code"], json!(-32602), "{unknown}");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("no_such_tool")
    );
    let invalid = mcp_http(&server, &["error", "steps", r#"{"steps": "many"}"#], None).await;
    assert_eq!(invalid["code"], json!(-32602), "{invalid}");
    assert!(invalid["message"].as_str().unwrap().contains("steps"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_notification_cancels_the_run() {
    let stopped: Arc<AtomicBool> = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let outcome = mcp_http(&server, &["cancel", "crawl", "{}", &server.url()], None).await;
    assert!(outcome.get("unexpected").is_none(), "{outcome}");
    let run_id = outcome["run_id"].as_str().unwrap();
    let run = get_run(&server, run_id, None).await;
    assert_eq!(run.state(), pb::RunState::Cancelled);
    eventually(GENEROUS, "the cancelled tool stops", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
}

const ALPHA: &str = "alpha-mcp-token-51c2";
const BETA: &str = "beta-mcp-token-9e07";

fn token(name: &str, secret: &str, tools: Option<Vec<String>>) -> TokenEntry {
    TokenEntry {
        sha256: token_digest(secret),
        principal: Arc::new(Principal {
            name: Arc::from(name),
            tools: ToolScope::from_list(tools),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_needs_a_bearer_token_and_keeps_to_its_scope() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped).with_auth(AuthConfig {
        tokens: vec![
            token("alpha", ALPHA, None),
            token("beta", BETA, Some(vec!["steps".into()])),
        ],
        ..AuthConfig::default()
    }))
    .await;
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", server.url()))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    let listed = mcp_http(&server, &["list"], Some(BETA)).await;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["steps"], "beta sees only its tools");
    let refused = mcp_http(&server, &["error", "fails", "{}"], Some(BETA)).await;
    assert_eq!(refused["code"], json!(-32602), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("may not run"));

    // The run belongs to its caller: beta's run is NOT_FOUND to alpha.
    let call = mcp_http(&server, &["call", "steps", r#"{"steps": 2}"#], Some(BETA)).await;
    let run_id = run_id_of(&call);
    assert_eq!(
        get_run(&server, &run_id, Some(BETA)).await.state(),
        pb::RunState::Succeeded
    );
    let status = RunServiceClient::new(server.channel().await)
        .get_run(with_token(Some(ALPHA), pb::GetRunRequest { run_id }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_disabled_is_not_found() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped).with_http(HttpConfig {
        mcp: McpConfig {
            enabled: false,
            ..McpConfig::default()
        },
        ..HttpConfig::default()
    }))
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", server.url()))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_bridge_lists_calls_with_progress_and_cancels() {
    let stopped: Arc<AtomicBool> = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let listed = mcp_stdio(&server, &["list"], None).await;
    let steps = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "steps")
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(steps["outputSchema"]["type"], "object", "{steps}");

    let call = mcp_stdio(&server, &["call", "steps", r#"{"steps": 3}"#], None).await;
    assert_eq!(call["structuredContent"], json!({"steps": 3}), "{call}");
    assert_progress_increases(call["progress"].as_array().unwrap());
    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);

    let failed = mcp_stdio(&server, &["call", "fails", "{}"], None).await;
    assert_eq!(failed["isError"], json!(true), "{failed}");
    let unknown = mcp_stdio(&server, &["error", "no_such_tool", "{}"], None).await;
    assert_eq!(unknown["code"], json!(-32602), "{unknown}");

    // Cancelling the MCP call ends the bridge's RunTool stream, which cancels the run.
    let url = server.url();
    let cancelled = mcp_stdio(&server, &["cancel", "crawl", "{}", &url], None).await;
    let run_id = cancelled["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{cancelled}"));
    assert_cancelled(&server, run_id, &stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toolstream_using_anothers_bridge_as_an_mcp_source_streams_its_progress() {
    let stopped = Arc::default();
    let a = server_from(base_server(&stopped)).await;
    let mut entry = toml::Table::new();
    entry.insert("kind".into(), "mcp".into());
    entry.insert(
        "command".into(),
        toml::Value::Array(vec![
            BIN.into(),
            "mcp-stdio".into(),
            "--addr".into(),
            a.url().into(),
        ]),
    );
    entry.insert("prefix".into(), "a.".into());
    let root = std::env::current_dir().unwrap();
    let mut registry = registry_with(&root, vec![]);
    toolstream::configured_tools::load_entries(&[entry], &root, &Limits::default(), &mut registry)
        .await
        .unwrap();
    let b = TestServer::start_with(registry, Limits::default()).await;

    let stream = b
        .client()
        .await
        .run_tool(run_request("a.steps", json!({"steps": 5})))
        .await
        .expect("RunTool on B")
        .into_inner();
    let (events, status) = collect(stream).await;
    assert!(status.is_none(), "{status:?}");
    let progress: Vec<(f64, String)> = events
        .iter()
        .filter_map(|event| match &event.event {
            Some(Event::Progress(p)) => Some((p.progress?, p.status.clone()?)),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "A's progress reaches B: {events:?}");
    assert!(progress.windows(2).all(|pair| pair[0].0 < pair[1].0));
    assert_eq!(
        progress.last(),
        Some(&(1.0, "step 5 of 5".to_owned())),
        "{progress:?}"
    );
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"steps": 5}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_model_the_agent_is_a_tool() {
    let stopped = Arc::default();
    let model = model::StandIn::start(vec![
        model::tool_calls(&[("call_1", "steps", r#"{"steps": 2}"#)]),
        model::text(&["took ", "2 steps"]),
    ])
    .await;
    let provider: Arc<dyn ModelProvider> =
        Arc::new(OpenAiProvider::new(&model.url, Some("model-key".into())).unwrap());
    let server = server_from(base_server(&stopped).with_agent(AgentSettings {
        provider: Some(provider),
        default_model: Some("standin".into()),
        ..AgentSettings::default()
    }))
    .await;
    let listed = mcp_http(&server, &["list"], None).await;
    let agent = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "agent")
        .unwrap_or_else(|| panic!("the agent is listed: {listed}"))
        .clone();
    assert_eq!(agent["inputSchema"]["required"], json!(["prompt"]));

    let call = mcp_http(
        &server,
        &[
            "call",
            "agent",
            r#"{"prompt": "take two steps", "tools": ["steps"]}"#,
        ],
        None,
    )
    .await;
    assert_eq!(call["isError"], json!(false), "{call}");
    assert_eq!(call["content"][0]["text"], "took 2 steps", "{call}");
    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);
    assert!(run.tool.is_empty(), "an agent run: {run:?}");
}

/// Starts `crawl` with a raw `tools/call` POST carrying `headers` and `meta` (besides the
/// progress token), reads the response's event stream until the first progress notification,
/// then closes the connection; returns the run id the notification named.
async fn call_crawl_and_close(
    server: &TestServer,
    headers: &[(&str, &str)],
    meta: Value,
) -> String {
    let mut meta = meta;
    meta["progressToken"] = json!("crawling");
    let mut request = reqwest::Client::new()
        .post(format!("{}/mcp", server.url()))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "crawl", "arguments": {}, "_meta": meta}}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout(GENEROUS, response.chunk())
            .await
            .expect("a progress notification within the bound")
            .unwrap()
            .expect("the stream stays open while the tool runs");
        text.push_str(&String::from_utf8_lossy(&chunk));
        let notification = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message["method"] == "notifications/progress");
        if let Some(notification) = notification {
            drop(response);
            return notification["params"]["_meta"]["toolstream/runId"]
                .as_str()
                .unwrap_or_else(|| panic!("{notification}"))
                .to_owned();
        }
    }
}

/// Waits until run `run_id` of `server` is CANCELLED and its tool stopped.
async fn assert_cancelled(server: &TestServer, run_id: &str, stopped: &AtomicBool) {
    crate::common::eventually(GENEROUS, "the run ends CANCELLED", || async {
        get_run(server, run_id, None).await.state() == pb::RunState::Cancelled
    })
    .await;
    eventually(GENEROUS, "the cancelled tool stops", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_2026_revision_closing_the_request_stream_cancels_the_run() {
    let stopped: Arc<AtomicBool> = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let run_id = call_crawl_and_close(
        &server,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "crawl"),
        ],
        json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}),
    )
    .await;
    assert_cancelled(&server, &run_id, &stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sessions_closing_the_request_stream_cancels_the_run() {
    let stopped: Arc<AtomicBool> = Arc::default();
    let server = server_from(base_server(&stopped).with_http(HttpConfig {
        mcp: McpConfig {
            sessions: false,
            ..McpConfig::default()
        },
        ..HttpConfig::default()
    }))
    .await;
    let run_id = call_crawl_and_close(
        &server,
        &[("mcp-protocol-version", "2025-06-18")],
        json!({}),
    )
    .await;
    assert_cancelled(&server, &run_id, &stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_in_meta_ends_the_run() {
    let stopped: Arc<AtomicBool> = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let call = mcp_http(
        &server,
        &["call", "crawl", "{}", r#"{"toolstream/timeoutMs": 300}"#],
        None,
    )
    .await;
    assert_eq!(call["isError"], json!(true), "{call}");
    let text = call["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("deadline"), "{call}");
    let run = get_run(&server, &run_id_of(&call), None).await;
    assert_eq!(
        run.error_code,
        tonic::Code::DeadlineExceeded as i32,
        "{run:?}"
    );
    eventually(GENEROUS, "the tool past its deadline stops", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;

    let bad = mcp_http(
        &server,
        &[
            "error",
            "crawl",
            "{}",
            r#"{"toolstream/timeoutMs": "soon"}"#,
        ],
        None,
    )
    .await;
    assert_eq!(bad["code"], json!(-32602), "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("toolstream/timeoutMs")
    );
}

/// `program args…` (another MCP client, a script that prints one JSON object), its JSON output;
/// `setup` says what makes `program` available when it is missing. Run off the runtime.
pub(crate) async fn client_json(program: String, args: Vec<String>, setup: &'static str) -> Value {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {setup}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the client failed ({}); {setup}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_lists_and_calls_with_onprogress() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/mcp_client.mjs");
    let seen = client_json(
        "node".into(),
        vec![
            script.into(),
            format!("{}/mcp", server.url()),
            "steps".into(),
            r#"{"steps": 3}"#.into(),
        ],
        "scripts/test installs node and tests/node's packages (npm ci --prefix tests/node)",
    )
    .await;
    let tools = seen["tools"].as_array().unwrap();
    assert!(tools.contains(&json!("steps")), "{seen}");
    let progress = seen["progress"].as_array().unwrap();
    assert_progress_increases(progress);
    assert_eq!(progress.last().unwrap()["message"], "step 3 of 3", "{seen}");
    assert_eq!(seen["result"]["structuredContent"], json!({"steps": 3}));
    let run_id = seen["result"]["_meta"]["toolstream/runId"]
        .as_str()
        .unwrap();
    let run = get_run(&server, run_id, None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_2_negotiates_2026_07_28_and_calls_with_progress() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped)).await;
    let manifest = env!("CARGO_MANIFEST_DIR");
    let seen = client_json(
        format!("{manifest}/target/mcp2-venv/bin/python"),
        vec![
            format!("{manifest}/tests/python/mcp2_client.py"),
            format!("{}/mcp", server.url()),
            "steps".into(),
            r#"{"steps": 3}"#.into(),
        ],
        "scripts/test makes target/mcp2-venv with the Python MCP SDK 2.x",
    )
    .await;
    assert_eq!(seen["protocolVersion"], "2026-07-28", "{seen}");
    assert_progress_increases(seen["progress"].as_array().unwrap());
    assert_eq!(seen["structuredContent"], json!({"steps": 3}), "{seen}");
    let run = get_run(&server, &run_id_of(&seen), None).await;
    assert_eq!(run.state(), pb::RunState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_refuse_other_host_names() {
    let stopped = Arc::default();
    let server = server_from(base_server(&stopped).with_http(HttpConfig {
        mcp: McpConfig {
            allowed_hosts: vec!["tools.example.com".into()],
            ..McpConfig::default()
        },
        ..HttpConfig::default()
    }))
    .await;
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let post = |host: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/mcp", server.url()))
            .header("host", host)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    let named = post("tools.example.com").await.unwrap();
    assert_eq!(named.status(), 200);
    let rebound = post("attacker.example").await.unwrap();
    assert_eq!(rebound.status(), 403);
}
