//! `[auth] max_runs_per_principal` across a fleet, as two served replicas sharing a Redis show
//! it: the scenario the Redis store's tests run against each kind of Redis (one server, a
//! cluster). The replicas' config holds [`AUTH`] and they run with [`ENV`].

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::tool_service_client::ToolServiceClient;
use toolstream::pb::{GetRunRequest, RunState};

use super::binary::Served;
use super::runs::{detached, run_id_of};
use super::{eventually, with_token};

/// The `[auth]` section: ann may have two runs in progress, fleet-wide.
pub const AUTH: &str = "[auth]\nmax_runs_per_principal = 2\n\n[[auth.tokens]]\nname = \"ann\"\n\
                        token_env = \"TEST_ANN_TOKEN\"\n";
/// The environment holding ann's token.
pub const ENV: [(&str, &str); 1] = [("TEST_ANN_TOKEN", "ann-token")];

/// Generous: the limit of the wait-until loop (never a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

/// Starts a detached endless `ticks` run of ann's on `served`: its id, or the status refusing it.
pub async fn start_for_ann(served: &Served) -> Result<String, tonic::Status> {
    let mut tools = ToolServiceClient::connect(format!("http://{}", served.addr))
        .await
        .expect("connect to the replica");
    let response = tools
        .run_tool(with_token(
            Some("ann-token"),
            detached("ticks", json!({"count": 1_000_000, "interval_ms": 20})),
        ))
        .await?;
    let run_id = run_id_of(&response);
    let mut stream = response.into_inner();
    stream.message().await?.expect("the started event");
    Ok(run_id)
}

/// Ann gets two runs, one on each replica, and a third is refused on either; then `a` is
/// killed with its run, which `b` ends UNAVAILABLE naming `a_name`, freeing its place.
pub async fn holds_across_replicas_and_a_killed_replica_frees_its_runs(
    mut a: Served,
    b: &Served,
    a_name: &str,
) {
    let on_a = start_for_ann(&a).await.expect("ann's first run, on A");
    start_for_ann(b).await.expect("ann's second run, on B");
    for (replica, served) in [("A", &a), ("B", b)] {
        let refused = start_for_ann(served)
            .await
            .expect_err("a third run of ann's, anywhere");
        assert_eq!(refused.code(), Code::ResourceExhausted, "on {replica}");
        assert!(
            refused.message().contains("max_runs_per_principal"),
            "{}",
            refused.message()
        );
    }

    // A dies with ann's run: B's lease sweep ends it, and its place is free again.
    a.child.kill().expect("kill replica A");
    a.child.wait().unwrap();
    eventually(WAIT, "a new run of ann's to be taken on B", || async {
        start_for_ann(b).await.is_ok()
    })
    .await;
    let mut runs = RunServiceClient::connect(format!("http://{}", b.addr))
        .await
        .unwrap();
    let lost = runs
        .get_run(with_token(
            Some("ann-token"),
            GetRunRequest { run_id: on_a },
        ))
        .await
        .expect("ann's GetRun on B")
        .into_inner();
    assert_eq!(lost.state(), RunState::Failed);
    assert_eq!(lost.error_code, Code::Unavailable as i32);
    assert!(
        lost.error_message.contains(a_name),
        "{}",
        lost.error_message
    );
}
