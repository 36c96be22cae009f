//! The page answers runs that ask (input requests), in a real headless Chromium
//! (tests/python/browser_page_inputs.py; as web_page.rs, `TOOLSTREAM_SKIP_BROWSER_TESTS=1` skips
//! on a machine that cannot have a browser): the run view's form made from a request's schema, a
//! refused answer's error beside it, a valid answer resolving the request and the run ending with
//! it, a request answered elsewhere leaving the form, and an agent's approval approved from the
//! runs list.

use std::sync::Arc;

use crate::common::model::{StandIn, text, tool_calls};
use crate::common::{TestServer, registry_with};
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, DEFAULT_MAX_PARALLEL_CALLS};
use toolstream::config::Limits;
use toolstream::server::Server;

/// Runs the browser script in `mode` against `url`; false when the browser tests are skipped.
async fn browse(mode: &'static str, url: String) -> Option<String> {
    if std::env::var_os("TOOLSTREAM_SKIP_BROWSER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: TOOLSTREAM_SKIP_BROWSER_TESTS=1");
        return None;
    }
    let screenshots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/page-screenshots");
    std::fs::create_dir_all(&screenshots).expect("create the screenshot directory");
    let screenshots = screenshots.to_string_lossy().into_owned();
    let output = tokio::task::spawn_blocking(move || {
        crate::common::run_python_with_env(
            "browser_page_inputs.py",
            &[mode, &url],
            &[("TOOLSTREAM_SCREENSHOTS", &screenshots)],
        )
    })
    .await
    .expect("the browser script's thread");
    Some(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_view_answers_a_request_from_a_form_made_from_its_schema() {
    let server = crate::input_requests::server().await;
    if let Some(output) = browse("form", server.url()).await {
        assert!(
            output.contains("browser page inputs (form): all checks passed"),
            "{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_approval_is_approved_from_the_runs_list() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 2, "interval_ms": 1}"#)]),
        text(&["Two ticks."]),
    ])
    .await;
    let root = std::env::current_dir().expect("cwd");
    let settings = AgentSettings {
        provider: Some(Arc::new(
            OpenAiProvider::new(&model.url, None).expect("provider"),
        )),
        default_model: Some("standin-model".into()),
        default_max_steps: 4,
        max_parallel_calls: DEFAULT_MAX_PARALLEL_CALLS,
    };
    let server = TestServer::serve(
        Server::new(registry_with(&root, Vec::new()), Limits::default()).with_agent(settings),
    )
    .await;
    if let Some(output) = browse("approval", server.url()).await {
        assert!(
            output.contains("browser page inputs (approval): all checks passed"),
            "{output}"
        );
    }
}
