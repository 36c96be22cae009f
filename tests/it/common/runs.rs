//! RunService from a test's side: detached requests, GetRun and WatchRun calls, and waiting
//! until a run reaches a state (RunService tests on one server and on several replicas).

use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::transport::Channel;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{
    self, CancelRunRequest, GetRunRequest, OnDisconnect, RunOptions, RunState, RunToolRequest,
    WatchRunRequest,
};

use super::{collect, eventually, run_request};

/// The limit of the wait-until loops below (generous: never a timing assertion).
pub const RUN_WAIT: Duration = Duration::from_secs(30);

/// A `RunToolRequest` whose run goes on without its caller (`ON_DISCONNECT_CONTINUE`).
pub fn detached(tool: &str, arguments: serde_json::Value) -> RunToolRequest {
    let mut request = run_request(tool, arguments);
    request.options = Some(RunOptions {
        on_disconnect: OnDisconnect::Continue as i32,
        ..RunOptions::default()
    });
    request
}

/// The run id a RunTool response carries in its initial metadata (`x-run-id`).
pub fn run_id_of(response: &tonic::Response<tonic::Streaming<pb::RunEvent>>) -> String {
    super::x_run_id(response.metadata())
}

/// GetRun.
pub async fn get(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
) -> Result<pb::Run, tonic::Status> {
    client
        .get_run(GetRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// CancelRun.
pub async fn cancel(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
) -> Result<pb::Run, tonic::Status> {
    client
        .cancel_run(CancelRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// WatchRun from `after_sequence` (0: the whole history).
pub async fn watch(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
    after_sequence: u64,
) -> tonic::Streaming<pb::RunEvent> {
    client
        .watch_run(WatchRunRequest {
            run_id: run_id.to_owned(),
            after_sequence,
            ..WatchRunRequest::default()
        })
        .await
        .expect("WatchRun")
        .into_inner()
}

/// Watches the run from its start, waits for its first event (`started`), and reads the rest in
/// a task whose output is what [`collect`] returns.
pub async fn watch_in_background(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
) -> JoinHandle<(Vec<pb::RunEvent>, Option<tonic::Status>)> {
    let mut watcher = watch(client, run_id, 0).await;
    watcher
        .message()
        .await
        .expect("the watch stream")
        .expect("the started event");
    tokio::spawn(collect(watcher))
}

/// Polls GetRun until the run is in `state`; GetRun must answer every time.
pub async fn wait_for_state(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
    state: RunState,
) -> pb::Run {
    eventually(
        RUN_WAIT,
        &format!("run {run_id} to reach {state:?}"),
        async || {
            let run = get(client, run_id).await.expect("GetRun");
            if run.state() == state {
                Ok(run)
            } else {
                Err(format!("{run:?}"))
            }
        },
    )
    .await
}

/// Polls GetRun until `check` accepts the run (an error answer counts as not yet).
pub async fn wait_for_run(
    client: &mut RunServiceClient<Channel>,
    run_id: &str,
    what: &str,
    check: impl Fn(&pb::Run) -> bool,
) -> pb::Run {
    eventually(RUN_WAIT, &format!("run {run_id} {what}"), async || {
        get(client, run_id).await.ok().filter(|run| check(run))
    })
    .await
}
