//! A slow client never slows the tool: progress is coalesced (newest wins), the gap shows in
//! `sequence`, the result always arrives, and what the server holds per run stays bounded.

use crate::common;
use std::time::Duration;

use crate::common::{TestServer, collect, result_value, run_request};
use serde_json::json;
use toolstream::pb::{RunOptions, run_event::Event};

#[tokio::test]
async fn a_stalled_reader_leaves_the_run_log_within_its_bound() {
    let server = TestServer::start().await;
    let count = 300_000u64;
    let response = server
        .client()
        .await
        .run_tool(run_request(
            "ticks",
            json!({"count": count, "interval_ms": 0}),
        ))
        .await
        .unwrap();
    let run_id = response
        .metadata()
        .get("x-run-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut stream = response.into_inner();
    stream.message().await.unwrap().unwrap();
    // The reader stops reading. The run goes on to its end without waiting for it...
    let limits = toolstream::config::Limits::default();
    let bound = 2 * limits.event_buffer + 3;
    let mut most_held = 0;
    let start = tokio::time::Instant::now();
    while server.engine.active_runs() > 0 {
        let held = server
            .engine
            .held_events(&run_id)
            .expect("the run is known");
        most_held = most_held.max(held);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never finished"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // ...and its log never held more than the superseded-progress buffer plus the latest
    // progress, the started event and the result, however far behind the reader was.
    let held = server.engine.held_events(&run_id).unwrap();
    assert!(
        most_held <= bound && held <= bound,
        "the log held {most_held} events (now {held}); bound {bound}"
    );
    let run = server.engine.get_run(&run_id).await.unwrap();
    assert_eq!(run.last_sequence, count + 2);
    // The stalled reader still gets the result.
    let (events, status) = collect(stream).await;
    assert!(status.is_none());
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": count}))
    );
}

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
    common::eventually(Duration::from_secs(30), "the run to finish", async || {
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
    let progress: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Progress(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    // At most one per 250 ms of the run's own duration (from its events' timestamps), plus the
    // first and the final one; never the hundred produced.
    let seconds = |e: &toolstream::pb::RunEvent| {
        let t = e.timestamp.unwrap();
        t.seconds as f64 + f64::from(t.nanos) / 1e9
    };
    let duration = seconds(events.last().unwrap()) - seconds(&events[0]);
    let allowed = (duration / 0.25).ceil() as usize + 2;
    assert!(
        !progress.is_empty() && progress.len() <= allowed,
        "{} progress events in {duration:.2} s",
        progress.len()
    );
    assert!(progress.len() < 100);
    // The final progress is never dropped by the throttle.
    assert_eq!(progress.last().unwrap().progress, Some(1.0));
    let last = events.last().unwrap();
    assert_eq!(last.sequence, 102);
    let Some(Event::Started(started)) = &events[0].event else {
        panic!("started first")
    };
    assert_eq!(
        started.options.as_ref().unwrap().min_progress_interval_ms,
        250
    );
}
