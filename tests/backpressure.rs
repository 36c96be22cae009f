//! A slow client never slows the tool: progress is coalesced (newest wins), the gap shows in
//! `sequence`, the result always arrives, and the buffer per run stays bounded.

mod common;

use std::time::Duration;

use common::{TestServer, collect, result_value, run_request};
use serde_json::json;
use toolstream::pb::{RunOptions, run_event::Event};

#[tokio::test]
async fn slow_reader_gets_result_and_coalesced_progress() {
    let server = TestServer::start().await;
    let count = 200_000u64;
    let mut stream = server
        .client()
        .await
        .run_tool(run_request(
            "ticks",
            json!({"count": count, "interval_ms": 0}),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    for _ in 0..10 {
        events.push(stream.message().await.unwrap().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tool finishes while its reader is still far behind: it never waited for the reader.
    common::eventually(Duration::from_secs(30), "the run to finish", || {
        server.engine.active_runs() == 0
    })
    .await;
    // The run is over: what is left to read is what the bounded queue and the transport held.
    while let Some(event) = stream.message().await.unwrap() {
        events.push(event);
    }
    let last = events.last().unwrap();
    assert_eq!(result_value(last), Some(json!({"count": count})));
    assert_eq!(
        last.sequence,
        count + 2,
        "every produced event was numbered"
    );
    assert!(
        (events.len() as u64) < count / 2,
        "a slow reader gets coalesced progress, got {} events",
        events.len()
    );
    assert!(events.windows(2).any(|w| w[1].sequence > w[0].sequence + 1));
    assert!(events.windows(2).all(|w| w[1].sequence > w[0].sequence));
    // The newest progress wins: the last progress before the result is the final tick.
    let last_progress = events
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Some(Event::Progress(p)) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(last_progress.progress, Some(1.0));
}

#[tokio::test]
async fn min_progress_interval_limits_progress_events() {
    let server = TestServer::start().await;
    let mut request = run_request("ticks", json!({"count": 100, "interval_ms": 10}));
    request.options = Some(RunOptions {
        min_progress_interval_ms: 250,
        ..RunOptions::default()
    });
    let (events, status) = collect(
        server
            .client()
            .await
            .run_tool(request)
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(status.is_none());
    let progress = events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Progress(_))))
        .count();
    // A run of about one second at one event per 250 ms: a handful, never the hundred produced.
    assert!((1..=20).contains(&progress), "{progress} progress events");
    let last = events.last().unwrap();
    assert_eq!(last.sequence, 102);
    let Some(Event::Started(started)) = &events[0].event else {
        panic!("started first")
    };
    assert_eq!(started.options.unwrap().min_progress_interval_ms, 250);
}
