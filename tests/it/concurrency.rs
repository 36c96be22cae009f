//! Many runs at once each get their own complete, correctly numbered stream.

use crate::common::{TestServer, collect, result_value, run_request};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_streams_all_get_their_result() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.client().await);
    }
    let mut runs = Vec::new();
    for i in 0..500usize {
        let mut client = clients[i % clients.len()].clone();
        runs.push(tokio::spawn(async move {
            let response = client
                .run_tool(run_request("ticks", json!({"count": 20, "interval_ms": 5})))
                .await?;
            Ok::<_, tonic::Status>(collect(response.into_inner()).await)
        }));
    }
    let mut run_ids = std::collections::HashSet::new();
    for run in runs {
        let (events, status) = run.await.unwrap().unwrap();
        assert!(status.is_none(), "{status:?}");
        let last = events.last().unwrap();
        assert_eq!(result_value(last), Some(json!({"count": 20})));
        assert_eq!(last.sequence, 22);
        assert!(run_ids.insert(last.run_id.clone()), "run ids are unique");
    }
    assert_eq!(run_ids.len(), 500);
    assert_eq!(server.engine.active_runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_no_longer_counts_as_active_once_its_end_is_visible() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for _ in 0..300 {
        let stream = client
            .run_tool(run_request("ticks", json!({"count": 1, "interval_ms": 0})))
            .await
            .unwrap()
            .into_inner();
        let (events, status) = collect(stream).await;
        assert!(status.is_none());
        assert!(result_value(events.last().unwrap()).is_some());
        // No waiting: whoever sees a run's end also sees it released its slot.
        assert_eq!(server.engine.active_runs(), 0);
    }
}
