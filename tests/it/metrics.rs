//! `GET /metrics`: the gRPC server metrics of go-grpc-middleware and toolstream's own, in the
//! Prometheus text format, read by the Prometheus project's parser (tests/python/metrics_check.py).

use crate::common;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::web::http;
use crate::common::{
    TestServer, endless_tool, eventually, registry_with, run_python, run_request, run_tool,
};
use serde_json::json;
use toolstream::config::Limits;

const UNKNOWN_TOOL: &str = "no-such-tool-made-up-by-a-client";

async fn metrics_text(server: &TestServer) -> String {
    let response = http()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .expect("GET /metrics");
    assert!(response.status().is_success(), "{}", response.status());
    response.text().await.expect("metrics body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_runs_and_events_by_method_tool_and_code() {
    let stopped = Arc::new(AtomicBool::new(false));
    let root = std::env::current_dir().unwrap();
    let server = TestServer::start_with(
        registry_with(&root, vec![endless_tool(Arc::clone(&stopped))]),
        Limits::default(),
    )
    .await;

    for _ in 0..3 {
        let (events, status) = run_tool(&server, "ticks", json!({"count": 20})).await;
        assert!(status.is_none(), "{status:?}");
        assert!(common::result_value(events.last().unwrap()).is_some());
    }
    let (_, status) = run_tool(&server, UNKNOWN_TOOL, json!({})).await;
    assert_eq!(status.expect("an error").code(), tonic::Code::NotFound);

    // A caller that leaves after the first event cancels its run.
    let mut stream = server
        .client()
        .await
        .run_tool(run_request("endless", json!({})))
        .await
        .expect("RunTool endless")
        .into_inner();
    stream
        .message()
        .await
        .expect("first event")
        .expect("an event");
    drop(stream);
    eventually(
        Duration::from_secs(10),
        "the endless tool stopped",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;

    // One unary call over gRPC-Web (an empty ListToolsRequest in one frame).
    let reply = http()
        .post(format!(
            "{}/toolstream.v1.ToolService/ListTools",
            server.url()
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("accept", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("gRPC-Web ListTools");
    assert!(reply.status().is_success());
    reply.bytes().await.expect("gRPC-Web body");

    // The abandoned run and its stream end in the background: wait for both to be counted.
    let cancelled = r#"toolstream_runs_finished_total{tool="endless",code="Canceled"} 1"#;
    let handled = r#"grpc_server_handled_total{grpc_type="server_stream",grpc_service="toolstream.v1.ToolService",grpc_method="RunTool",grpc_code="Canceled"} 1"#;
    eventually(
        Duration::from_secs(10),
        "the cancelled run to be counted",
        async || {
            let text = metrics_text(&server).await;
            if text.contains(cancelled) && text.contains(handled) {
                Ok(())
            } else {
                Err(format!("\n{text}"))
            }
        },
    )
    .await;

    let url = format!("{}/metrics", server.url());
    let output =
        tokio::task::spawn_blocking(move || run_python("metrics_check.py", &[&url, UNKNOWN_TOOL]))
            .await
            .unwrap();
    assert!(
        output.contains("ok: the unknown tool's name is no label value"),
        "{output}"
    );
}

#[tokio::test]
async fn metrics_are_plain_text_beside_the_other_routes() {
    let server = TestServer::start().await;
    let response = http()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE toolstream_runs_active gauge"),
        "{text}"
    );
    assert!(text.contains("toolstream_runs_active 0"), "{text}");
}

#[tokio::test]
async fn the_grafana_dashboard_reads_only_metrics_the_server_serves() {
    let server = TestServer::start().await;
    // A call and a run, so that labelled families have samples.
    let (_, status) = run_tool(&server, "ticks", json!({"count": 1})).await;
    assert!(status.is_none(), "{status:?}");
    let text = metrics_text(&server).await;
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("toolstream_") || word.starts_with("grpc_server_") {
                    names.push(word.to_owned());
                }
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            text.lines().any(|line| line.starts_with(&name)),
            "the dashboard reads {name}, which /metrics does not serve"
        );
    }
}
