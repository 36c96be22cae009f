//! The client going away (cancel, disconnect, deadline) stops the run: nothing keeps running for
//! nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{TestServer, collect, endless_tool, eventually, registry_with, run_request};
use serde_json::json;
use tonic::Code;
use toolstream::config::Limits;
use toolstream::pb::run_event::Event;

async fn server_with_endless() -> (TestServer, Arc<AtomicBool>) {
    let stopped = Arc::new(AtomicBool::new(false));
    let root = std::env::current_dir().unwrap();
    let registry = registry_with(&root, vec![endless_tool(Arc::clone(&stopped))]);
    (
        TestServer::start_with(registry, Limits::default()).await,
        stopped,
    )
}

#[tokio::test]
async fn dropping_the_stream_stops_the_tool() {
    let (server, stopped) = server_with_endless().await;
    let mut client = server.client().await;
    let mut stream = client
        .run_tool(run_request("endless", json!({})))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        stream.message().await.unwrap().unwrap();
    }
    assert!(!stopped.load(Ordering::SeqCst));
    assert_eq!(server.engine.active_runs(), 1);
    drop(stream);
    eventually(
        Duration::from_secs(10),
        "the tool to be stopped",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;
    eventually(Duration::from_secs(10), "no active runs", async || {
        server.engine.active_runs() == 0
    })
    .await;
}

#[tokio::test]
async fn closing_the_connection_stops_the_tool() {
    let (server, stopped) = server_with_endless().await;
    let mut client = server.client().await;
    let mut stream = client
        .run_tool(run_request("endless", json!({})))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    drop(stream);
    drop(client);
    eventually(
        Duration::from_secs(10),
        "the tool to be stopped",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;
    eventually(Duration::from_secs(10), "no active runs", async || {
        server.engine.active_runs() == 0
    })
    .await;
}

#[tokio::test]
async fn a_passed_deadline_ends_the_run_with_deadline_exceeded() {
    let (server, stopped) = server_with_endless().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(run_request("endless", json!({})));
    request.set_timeout(Duration::from_millis(300));
    let (events, status) = match client.run_tool(request).await {
        Ok(response) => collect(response.into_inner()).await,
        Err(status) => (Vec::new(), Some(status)),
    };
    assert_eq!(status.unwrap().code(), Code::DeadlineExceeded);
    let Some(Event::Started(started)) = &events[0].event else {
        panic!("started first");
    };
    assert_eq!(started.deadline_ms, 300);
    assert!(events.len() > 1, "progress arrived before the deadline");
    eventually(
        Duration::from_secs(10),
        "the tool to be stopped",
        async || stopped.load(Ordering::SeqCst),
    )
    .await;
    eventually(Duration::from_secs(10), "no active runs", async || {
        server.engine.active_runs() == 0
    })
    .await;
}
