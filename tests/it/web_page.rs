//! The page at `/` in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! by selenium; `scripts/test` installs them): the tools' forms, a `ticks` run reaching 100% with its
//! result, the browser's own `EventSource` reading a run's SSE, an error shown, the runs list
//! with resume and cancel, and an agent run with its streamed text and a bar per tool call
//! (against the stand-in model of the agent tests). With auth on, the page asks for a token and
//! then works as before (its WebSocket and an `EventSource` carry it as `?access_token=`).
//!
//! Without a browser the test fails and says how to install one; set
//! `TOOLSTREAM_SKIP_BROWSER_TESTS=1` to skip it on a machine that cannot have one.

use crate::common;
use std::sync::Arc;
use std::time::Duration;

use crate::common::model::{StandIn, text, tool_calls};
use crate::common::{TestServer, registry_with};
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, DEFAULT_MAX_PARALLEL_CALLS};
use toolstream::config::Limits;
use toolstream::server::Server;

/// Where the browser tests save their screenshots (every state at 1280 and 390 px wide), to be
/// looked at: `target/page-screenshots/`.
fn screenshot_dir() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/page-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir.to_string_lossy().into_owned()
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ReportArgs {
    /// How many sources to fetch (a sub-task each, under `fetch`).
    sources: u32,
    /// Milliseconds each step takes.
    step_ms: u64,
}

/// A tool named `build_report` whose progress is a tree: `fetch` (a sub-task per source), then
/// `parse` and `render`, each step `step_ms` long. The page draws it nested, with ETAs.
fn report_tool() -> Arc<dyn toolstream::tools::Tool> {
    use toolstream::tools::ToolError;
    use toolstream::tools::native::tool_fn;
    Arc::new(tool_fn(
        "build_report",
        "Fetches `sources` sources, parses them and renders one report; each stage is a \
         sub-task, and `fetch` has one per source.",
        |args: ReportArgs, progress: toolstream::tools::Progress| async move {
            let step = Duration::from_millis(args.step_ms);
            let sources = args.sources.max(1);
            let fetch = progress.child("fetch", 0.5);
            for i in 1..=sources {
                let source = fetch.child(format!("source {i}"), 1.0 / f64::from(sources));
                for j in 1..=4 {
                    tokio::time::sleep(step).await;
                    source.report(f64::from(j) / 4.0, format!("source {i}: part {j} of 4"));
                }
                source.finish();
            }
            fetch.finish();
            for (label, weight) in [("parse", 0.3), ("render", 0.2)] {
                let stage = progress.child(label, weight);
                for j in 1..=4 {
                    tokio::time::sleep(step).await;
                    stage.report(f64::from(j) / 4.0, format!("{label}: {j} of 4"));
                }
                stage.finish();
            }
            Ok::<_, ToolError>(serde_json::json!({"sources": sources, "pages": sources * 3}))
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_runs_a_tool_from_its_form_and_shows_progress_results_errors_and_agents() {
    if std::env::var_os("TOOLSTREAM_SKIP_BROWSER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: TOOLSTREAM_SKIP_BROWSER_TESTS=1");
        return;
    }
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: `apt-get install -y chromium chromium-driver` (scripts/test does), \
             or set TOOLSTREAM_SKIP_BROWSER_TESTS=1"
        );
    }
    let model = StandIn::start(vec![
        tool_calls(&[
            ("call_1", "ticks", r#"{"count": 3, "interval_ms": 50}"#),
            ("call_2", "build_report", r#"{"sources": 2, "step_ms": 5}"#),
        ]),
        text(&["Three ", "ticks ", "done."]),
    ])
    .await;
    let root = std::env::current_dir().unwrap();
    let settings = AgentSettings {
        provider: Some(Arc::new(OpenAiProvider::new(&model.url, None).unwrap())),
        default_model: Some("standin-model".into()),
        default_max_steps: 4,
        max_parallel_calls: DEFAULT_MAX_PARALLEL_CALLS,
    };
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![report_tool()]), Limits::default())
            .with_agent(settings),
    )
    .await;
    let url = server.url();
    let screenshots = screenshot_dir();
    let output = tokio::task::spawn_blocking(move || {
        common::run_python_with_env(
            "browser_page.py",
            &[&url],
            &[
                ("TOOLSTREAM_AGENT_TEST", "1"),
                ("TOOLSTREAM_SCREENSHOTS", &screenshots),
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        output.contains("browser page: all checks passed"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_the_page_asks_for_a_token_and_then_runs_tools_over_its_websocket() {
    use toolstream::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
    if std::env::var_os("TOOLSTREAM_SKIP_BROWSER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: TOOLSTREAM_SKIP_BROWSER_TESTS=1");
        return;
    }
    let token = "page-token-0f9e8d";
    let auth = AuthConfig {
        tokens: vec![TokenEntry {
            sha256: token_digest(token),
            principal: Arc::new(Principal {
                name: Arc::from("page"),
                tools: ToolScope::All,
            }),
        }],
        ..AuthConfig::default()
    };
    let root = std::env::current_dir().unwrap();
    let server = TestServer::serve(
        Server::new(registry_with(&root, vec![]), Limits::default()).with_auth(auth),
    )
    .await;
    let url = server.url();
    let screenshots = screenshot_dir();
    let output = tokio::task::spawn_blocking(move || {
        common::run_python_with_env(
            "browser_page_auth.py",
            &[&url, token],
            &[("TOOLSTREAM_SCREENSHOTS", &screenshots)],
        )
    })
    .await
    .unwrap();
    assert!(
        output.contains("browser page with auth: all checks passed"),
        "{output}"
    );
}
