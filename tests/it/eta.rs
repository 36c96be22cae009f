//! The server's estimate of the time left (`Progress.eta_seconds`): absent until there is a
//! rate, close to the truth for a tool progressing steadily, absent for indeterminate progress,
//! and made for every node of a progress tree.

use std::sync::Arc;

use crate::common::{TestServer, collect, nested_tool, registry_with, run_request};
use serde_json::json;
use toolstream::config::Limits;
use toolstream::pb;
use toolstream::pb::run_event::Event;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

async fn run(server: &TestServer, tool: &str, arguments: serde_json::Value) -> Vec<pb::Progress> {
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
    assert!(status.is_none(), "{status:?}");
    events
        .into_iter()
        .filter_map(|event| match event.event {
            Some(Event::Progress(progress)) => Some(progress),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn eta_is_absent_at_first_then_near_the_time_left_at_a_steady_rate() {
    let server = TestServer::start().await;
    let (count, interval_ms) = (40u32, 25u32);
    let progress = run(
        &server,
        "ticks",
        json!({"count": count, "interval_ms": interval_ms}),
    )
    .await;
    assert_eq!(
        progress.len(),
        count as usize,
        "a fast reader gets every tick"
    );
    assert_eq!(
        progress[0].eta_seconds, None,
        "no rate at the first fraction"
    );
    for (index, report) in progress.iter().enumerate().skip(1) {
        let tick = index as u32 + 1;
        let eta = report
            .eta_seconds
            .unwrap_or_else(|| panic!("tick {tick} has an estimate"));
        // Ticks come at least `interval_ms` apart, later on a busy machine: a loose bound.
        let expected = f64::from(count - tick) * f64::from(interval_ms) / 1000.0;
        if (count / 4..=3 * count / 4).contains(&tick) {
            assert!(
                eta >= 0.5 * expected && eta <= 4.0 * expected,
                "tick {tick}: {eta} s left, expected about {expected} s"
            );
        }
    }
    assert_eq!(progress.last().unwrap().eta_seconds, Some(0.0));
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Steps {
    steps: u32,
}

/// A tool named `statuses` that only ever says what it does, with no fraction.
fn statuses() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "statuses",
        "Reports statuses only.",
        |args: Steps, progress: Progress| async move {
            for step in 1..=args.steps {
                progress.status(format!("step {step}"));
                tokio::task::yield_now().await;
            }
            Ok::<_, ToolError>(json!(null))
        },
    ))
}

#[tokio::test]
async fn eta_is_absent_for_indeterminate_progress() {
    let root = std::env::current_dir().unwrap();
    let server =
        TestServer::start_with(registry_with(&root, vec![statuses()]), Limits::default()).await;
    let progress = run(&server, "statuses", json!({"steps": 20})).await;
    assert_eq!(progress.len(), 20);
    assert!(
        progress
            .iter()
            .all(|p| p.progress.is_none() && p.eta_seconds.is_none()),
        "{progress:?}"
    );
}

#[tokio::test]
async fn every_node_of_a_tree_gets_its_own_estimate() {
    let root = std::env::current_dir().unwrap();
    let server =
        TestServer::start_with(registry_with(&root, vec![nested_tool()]), Limits::default()).await;
    let progress = run(&server, "nested", json!({"items": 2})).await;
    for id in ["", "1", "2"] {
        let mine: Vec<&pb::Progress> = progress.iter().filter(|p| p.call_id == id).collect();
        // The announcement of a sub-task has no fraction, hence no estimate.
        let with_fraction: Vec<&&pb::Progress> =
            mine.iter().filter(|p| p.progress.is_some()).collect();
        assert_eq!(
            with_fraction[0].eta_seconds, None,
            "node {id:?}: no rate at first"
        );
        assert!(
            mine.iter()
                .filter(|p| p.progress.is_none())
                .all(|p| p.eta_seconds.is_none())
        );
        assert_eq!(
            with_fraction.last().unwrap().eta_seconds,
            Some(0.0),
            "node {id:?} ends with nothing left"
        );
    }
}
