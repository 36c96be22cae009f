//! Graceful shutdown: health turns NOT_SERVING, new runs get UNAVAILABLE, runs in progress finish
//! within the grace period, and the rest are cancelled when it is over.

use crate::common;
use std::time::Duration;

use crate::common::alone::in_own_process;
use crate::common::{TestServer, collect, eventually, registry_with, result_value, run_request};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use toolstream::config::Limits;

fn server_limits(grace: Duration) -> Limits {
    Limits {
        grace_period: grace,
        ..Limits::default()
    }
}

#[tokio::test]
async fn runs_in_progress_finish_while_new_runs_are_refused() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process("shutdown::runs_in_progress_finish_while_new_runs_are_refused") {
        return;
    }
    let root = std::env::current_dir().unwrap();
    let mut server = TestServer::start_with(
        registry_with(&root, vec![]),
        server_limits(Duration::from_secs(30)),
    )
    .await;
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    let mut running = client
        .run_tool(run_request(
            "ticks",
            json!({"count": 10, "interval_ms": 100}),
        ))
        .await
        .unwrap()
        .into_inner();
    running.message().await.unwrap().unwrap();

    let serve_task = server.begin_shutdown();
    common::eventually(
        Duration::from_secs(5),
        "health to turn NOT_SERVING",
        async || !server.engine_accepting(),
    )
    .await;
    let status = health
        .check(HealthCheckRequest {
            service: "toolstream.v1.ToolService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::NotServing);

    let refused = client
        .run_tool(run_request("ticks", json!({"count": 1})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("shutting down"),
        "{}",
        refused.message()
    );

    let (events, status) = collect(running).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": 10}))
    );
    drop((client, health));
    serve_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn runs_still_going_after_the_grace_period_end_unavailable() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process("shutdown::runs_still_going_after_the_grace_period_end_unavailable") {
        return;
    }
    let root = std::env::current_dir().unwrap();
    let mut server = TestServer::start_with(
        registry_with(&root, vec![]),
        server_limits(Duration::from_millis(200)),
    )
    .await;
    let mut client = server.client().await;
    let mut running = client
        .run_tool(run_request(
            "ticks",
            json!({"count": 5, "interval_ms": 60_000}),
        ))
        .await
        .unwrap()
        .into_inner();
    running.message().await.unwrap().unwrap();
    let serve_task = server.begin_shutdown();
    let (_, status) = collect(running).await;
    let status = status.expect("the run must end with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("shut down"),
        "{}",
        status.message()
    );
    drop(client);
    serve_task.await.unwrap().unwrap();
    assert_eq!(server.engine.active_runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stopped_reading_does_not_hold_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut served =
        common::binary::serve(dir.path(), &["--grace-period-secs", "1"], &[]).serving();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = toolstream::pb::tool_service_client::ToolServiceClient::new(channel);
    let mut stream = client
        .run_tool(run_request(
            "ticks",
            json!({"count": 5_000_000, "interval_ms": 0}),
        ))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    // The client holds its stream and never reads again; the server's window fills up.

    // SAFETY: kill(2) with the pid of a child this test started.
    let pid = served.child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = eventually(
        Duration::from_secs(60),
        "toolstream to exit after SIGTERM",
        async || served.child.try_wait().unwrap(),
    )
    .await;
    assert!(status.success(), "exit status {status}");
    drop(stream);
}

#[tokio::test]
async fn a_detached_run_is_cancelled_after_the_grace_period_and_its_state_says_why() {
    // It shuts its server down, which stops every tool process of the process.
    if !in_own_process(
        "shutdown::a_detached_run_is_cancelled_after_the_grace_period_and_its_state_says_why",
    ) {
        return;
    }
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let root = std::env::current_dir().unwrap();
    let mut server = TestServer::start_with(
        registry_with(
            &root,
            vec![common::endless_tool(std::sync::Arc::clone(&stopped))],
        ),
        server_limits(Duration::from_millis(200)),
    )
    .await;
    let mut request = run_request("endless", json!({}));
    request.options = Some(toolstream::pb::RunOptions {
        on_disconnect: toolstream::pb::OnDisconnect::Continue as i32,
        ..Default::default()
    });
    let response = server.client().await.run_tool(request).await.unwrap();
    let run_id = response
        .metadata()
        .get("x-run-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    drop(response);
    let run = server.engine.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.state,
        toolstream::engine::RunState::Running,
        "detached: the caller leaving did not end it"
    );

    let serve_task = server.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(30), serve_task)
        .await
        .expect("shutdown ends")
        .unwrap()
        .unwrap();
    let run = server.engine.get_run(&run_id).await.unwrap();
    assert_eq!(run.state, toolstream::engine::RunState::Cancelled);
    let error = run.error.expect("the reason");
    assert!(error.to_string().contains("shut down"), "{error}");
    assert!(
        stopped.load(std::sync::atomic::Ordering::SeqCst),
        "the tool was stopped"
    );
}
