//! Every error a client can meet ends the stream with the right status and a message a person
//! understands, and the server keeps serving.

use crate::common;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestServer, collect, registry_with, result_value, run_request};
use serde_json::json;
use tonic::Code;
use toolstream::config::Limits;
use toolstream::tools::native::tool_fn;
use toolstream::tools::{Progress, Tool, ToolError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

fn failing_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "fails",
        "Always fails.",
        |_: NoArgs, progress: Progress| async move {
            progress.report(0.5, "about to fail");
            Err::<(), _>(ToolError::Failed("the disk is full".into()))
        },
    ))
}

fn panicking_tool() -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "panics",
        "Always panics.",
        |_: NoArgs, _: Progress| async move {
            if true {
                panic!("index out of bounds in the tool");
            }
            Ok::<(), ToolError>(())
        },
    ))
}

async fn run_status(
    server: &TestServer,
    tool: &str,
    arguments: serde_json::Value,
) -> tonic::Status {
    let (_, status) = common::run_tool(server, tool, arguments).await;
    status.expect("the run should have failed")
}

async fn still_serves(server: &TestServer) {
    let (events, status) = collect(
        server
            .client()
            .await
            .run_tool(run_request("ticks", json!({"count": 2, "interval_ms": 0})))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none());
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": 2}))
    );
}

#[tokio::test]
async fn unknown_tool_is_not_found() {
    let server = TestServer::start().await;
    let status = run_status(&server, "no_such_tool", json!({})).await;
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("no_such_tool"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn schema_violations_are_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let status = run_status(&server, "ticks", json!({"count": "x"})).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("field count"),
        "{}",
        status.message()
    );

    let status = run_status(&server, "ticks", json!({})).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("\"count\" is a required property"),
        "{}",
        status.message()
    );

    let status = run_status(&server, "ticks", json!({"count": 1, "colour": "red"})).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("colour"), "{}", status.message());

    let status = run_status(&server, "ticks", json!({"count": -1})).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    still_serves(&server).await;
}

#[tokio::test]
async fn paths_outside_the_root_are_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), Limits::default()).await;

    for path in ["../secret.txt", "/etc/hostname", "sub/../../secret.txt"] {
        let status = run_status(&server, "checksum", json!({"paths": [path]})).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
        assert!(
            status.message().contains("outside the root"),
            "{}",
            status.message()
        );
    }
    // A symlink is followed nowhere (tests/it/checksum_confinement.rs has the rest).
    let status = run_status(&server, "checksum", json!({"paths": ["link.txt"]})).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("symbolic link"),
        "{}",
        status.message()
    );
    let status = run_status(&server, "checksum", json!({"paths": ["missing.txt"]})).await;
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("missing.txt"));
}

#[tokio::test]
async fn a_failing_tool_is_aborted_with_its_message_after_its_progress() {
    let root = std::env::current_dir().unwrap();
    let server = TestServer::start_with(
        registry_with(&root, vec![failing_tool()]),
        Limits::default(),
    )
    .await;
    let response = server
        .client()
        .await
        .run_tool(run_request("fails", json!({})))
        .await
        .unwrap();
    let (events, status) = collect(response.into_inner()).await;
    let status = status.unwrap();
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("the disk is full"),
        "{}",
        status.message()
    );
    // Progress already sent stays sent: started and the progress came before the status.
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn a_panicking_tool_is_internal_and_the_server_keeps_serving() {
    let root = std::env::current_dir().unwrap();
    let server = TestServer::start_with(
        registry_with(&root, vec![panicking_tool()]),
        Limits::default(),
    )
    .await;
    for _ in 0..3 {
        let status = run_status(&server, "panics", json!({})).await;
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("index out of bounds"),
            "{}",
            status.message()
        );
    }
    still_serves(&server).await;
    assert_eq!(server.engine.active_runs(), 0);
}

#[tokio::test]
async fn runs_beyond_the_limit_are_resource_exhausted() {
    let limits = Limits {
        max_concurrent_runs: 2,
        ..Limits::default()
    };
    let root = std::env::current_dir().unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), limits).await;
    let mut client = server.client().await;
    let slow = json!({"count": 1, "interval_ms": 60_000});
    let first = client
        .run_tool(run_request("ticks", slow.clone()))
        .await
        .unwrap();
    let second = client
        .run_tool(run_request("ticks", slow.clone()))
        .await
        .unwrap();
    let status = run_status(&server, "ticks", slow).await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limit of 2"),
        "{}",
        status.message()
    );
    drop((first, second));
    common::eventually(Duration::from_secs(5), "runs to end", async || {
        server.engine.active_runs() == 0
    })
    .await;
    still_serves(&server).await;
}

#[tokio::test]
async fn oversized_requests_are_refused_and_the_server_keeps_serving() {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        ..Limits::default()
    };
    let root = std::env::current_dir().unwrap();
    let server = TestServer::start_with(registry_with(&root, vec![]), limits).await;
    let huge = "x".repeat(200 * 1024);
    let status = run_status(&server, "checksum", json!({"paths": [huge]})).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    still_serves(&server).await;
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_invalid_argument_naming_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for bad in ["12x", "+5S", "123456789S", "soon"] {
        let mut request = tonic::Request::new(run_request("ticks", json!({"count": 1})));
        request
            .metadata_mut()
            .insert("grpc-timeout", bad.parse().unwrap());
        let status = client.run_tool(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert!(
            status.message().contains("grpc-timeout") && status.message().contains(bad),
            "the message names the header and the value: {status:?}"
        );

        let response = common::web::http()
            .post(format!("{}/v1/tools/ticks/runs", server.url()))
            .header("content-type", "application/json")
            .header("grpc-timeout", bad)
            .body(r#"{"arguments": {"count": 1}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("grpc-timeout") && body.contains(bad),
            "{body}"
        );
    }
    // A valid one still sets the run's deadline: the run ends DEADLINE_EXCEEDED.
    let mut request = tonic::Request::new(run_request(
        "ticks",
        json!({"count": 1000, "interval_ms": 50}),
    ));
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let (_, status) = collect(client.run_tool(request).await.unwrap().into_inner()).await;
    assert_eq!(status.map(|s| s.code()), Some(Code::DeadlineExceeded));
    still_serves(&server).await;
}
