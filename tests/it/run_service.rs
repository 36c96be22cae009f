//! RunService: runs outlive their connection; anyone can look one up, list, watch from a cursor or
//! the latest state, and cancel it; the log behind it is bounded and says when events are gone.
//!
//! A conformance suite: every case runs against each run store (`memory::…` and `redis::…`).
//! With Redis, runs execute on one replica and every RunService call goes to another replica
//! sharing the same redis-server, so the cases hold for the fleet, not just for one process;
//! `redis_cluster::…` runs them once more with a Redis Cluster of three primaries.

use crate::common;
use crate::common::model;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::runs::{cancel, detached, get, run_id_of, wait_for_run, wait_for_state, watch};
use crate::common::{
    Backend, Fleet, TestServer, collect, endless_tool, eventually, registry_with, result_value,
    run_request,
};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use toolstream::config::Limits;
use toolstream::pb::run_event::Event;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{
    self, CancelRunRequest, ListRunsRequest, RunOptions, RunState, WatchRunRequest,
};

const WAIT: Duration = Duration::from_secs(20);

/// The servers of a case with the built-in tools.
async fn fleet(backend: Backend) -> Fleet {
    let root = std::env::current_dir().unwrap();
    Fleet::start(backend, || registry_with(&root, vec![]), Limits::default()).await
}

/// A RunService client (on another replica than the runs' with Redis).
async fn runs(fleet: &Fleet) -> RunServiceClient<Channel> {
    RunServiceClient::new(fleet.observer().channel().await)
}

fn kinds(events: &[pb::RunEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|event| match event.event.as_ref() {
            Some(Event::Started(_)) => "started",
            Some(Event::Progress(_)) => "progress",
            Some(Event::Result(_)) => "result",
            Some(Event::Gap(_)) => "gap",
            Some(Event::Heartbeat(_)) => "heartbeat",
            Some(_) => "other",
            None => "none",
        })
        .collect()
}

/// The servers of a case with the `endless` test tool, and the flag it sets once a run stopped it.
async fn endless_fleet(backend: Backend) -> (Fleet, Arc<AtomicBool>) {
    let stopped = Arc::new(AtomicBool::new(false));
    let root = std::env::current_dir().unwrap();
    let server = Fleet::start(
        backend,
        || registry_with(&root, vec![endless_tool(Arc::clone(&stopped))]),
        Limits::default(),
    )
    .await;
    (server, stopped)
}

async fn a_detached_run_finishes_after_its_caller_left_and_get_run_has_its_result(
    backend: Backend,
) {
    let server = fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(detached("ticks", json!({"count": 30, "interval_ms": 10})))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let mut stream = response.into_inner();
    stream.message().await.unwrap().unwrap();
    drop(stream);

    let mut client = runs(&server).await;
    let run = wait_for_state(&mut client, &run_id, RunState::Succeeded).await;
    assert_eq!(run.run_id, run_id);
    assert_eq!(run.tool, "ticks");
    assert!(!run.agent);
    let result = toolstream::json_proto::value_to_json(run.result.expect("result"));
    assert_eq!(result, json!({"count": 30}));
    assert_eq!(run.last_sequence, 32, "started + 30 progress + result");
    assert!(run.create_time.is_some() && run.end_time.is_some());
    assert_eq!(run.progress.len(), 1);
    assert_eq!(run.progress[0].progress, Some(1.0));
    assert_eq!(run.error_code, 0);
}

async fn by_default_the_caller_leaving_cancels_the_run(backend: Backend) {
    let (server, stopped) = endless_fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(run_request("endless", json!({})))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let mut stream = response.into_inner();
    // The tool is running once its first progress arrived (with a shared store the run starts
    // once it is recorded, so `started` alone does not say so).
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Started(_))));
    let progress = stream.message().await.unwrap().unwrap();
    assert!(matches!(progress.event, Some(Event::Progress(_))));
    drop(stream);

    let mut client = runs(&server).await;
    let run = wait_for_state(&mut client, &run_id, RunState::Cancelled).await;
    assert_eq!(run.error_code, Code::Cancelled as i32);
    assert!(run.end_time.is_some());
    eventually(WAIT, "the tool to stop", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
}

async fn watching_from_a_cursor_completes_the_history_without_duplicates(backend: Backend) {
    let server = fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(detached("ticks", json!({"count": 200, "interval_ms": 1})))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let mut first = response.into_inner();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(first.message().await.unwrap().unwrap());
    }
    drop(first);
    let cursor = seen.last().unwrap().sequence;

    let mut client = runs(&server).await;
    let (rest, status) = collect(watch(&mut client, &run_id, cursor).await).await;
    assert!(status.is_none(), "{status:?}");
    let all: Vec<pb::RunEvent> = seen.into_iter().chain(rest).collect();
    let sequences: Vec<u64> = all.iter().map(|e| e.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {sequences:?}"
    );
    let kinds = kinds(&all);
    assert_eq!(kinds.iter().filter(|k| **k == "started").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "result").count(), 1);
    assert_eq!(kinds.last(), Some(&"result"));
    assert_eq!(
        result_value(all.last().unwrap()),
        Some(json!({"count": 200}))
    );
    assert!(all.iter().all(|e| e.run_id == run_id));
}

async fn a_finished_run_replays_in_full_and_a_failed_run_ends_with_its_status(backend: Backend) {
    let server = fleet(backend).await;
    let (events, status) =
        common::run_tool(&server, "ticks", json!({"count": 5, "interval_ms": 0})).await;
    assert!(status.is_none());
    let run_id = events[0].run_id.clone();
    let mut client = runs(&server).await;
    let (replay, status) = collect(watch(&mut client, &run_id, 0).await).await;
    assert!(status.is_none());
    let original: Vec<(u64, &'static str)> = events
        .iter()
        .map(|e| e.sequence)
        .zip(kinds(&events))
        .collect();
    let replayed: Vec<(u64, &'static str)> = replay
        .iter()
        .map(|e| e.sequence)
        .zip(kinds(&replay))
        .collect();
    // Every event but progress, and the last progress (the newest of a call is never coalesced
    // away), with the sequences the run gave them.
    let kept = |events: &[(u64, &'static str)]| -> Vec<(u64, &'static str)> {
        let last_progress = events.iter().rev().find(|(_, k)| *k == "progress").copied();
        events
            .iter()
            .copied()
            .filter(|e| e.1 != "progress" || Some(*e) == last_progress)
            .collect()
    };
    assert_eq!(kept(&original), kept(&replayed));
    assert!(
        replayed.iter().all(|e| original.contains(e)),
        "{replayed:?}"
    );
    if backend == Backend::Memory {
        // One process holds every event; a shared store may coalesce progress it is sent.
        assert_eq!(original, replayed);
    }

    // A cursor at the end still gets the terminal event; one past it is refused.
    let last = events.last().unwrap().sequence;
    let (tail, status) = collect(watch(&mut client, &run_id, last).await).await;
    assert!(status.is_none());
    assert_eq!(kinds(&tail), vec!["result"]);
    let past = client
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            after_sequence: last + 1,
            ..WatchRunRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(past.code(), Code::OutOfRange);
    assert!(
        past.message().contains("past the run's last event"),
        "{}",
        past.message()
    );

    let (_, original_status) = common::run_tool(
        &server,
        "checksum",
        json!({"paths": ["does-not-exist.txt"]}),
    )
    .await;
    let original_status = original_status.expect("checksum of a missing file fails");
    let failed = client
        .list_runs(ListRunsRequest {
            state: RunState::Failed as i32,
            ..ListRunsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(failed.len(), 1);
    let failed = &failed[0];
    assert_eq!(failed.error_code, original_status.code() as i32);
    assert_eq!(failed.error_message, original_status.message());
    let (replay, status) = collect(watch(&mut client, &failed.run_id, 0).await).await;
    let status = status.expect("the replay ends with the run's status");
    assert_eq!(status.code(), original_status.code());
    assert_eq!(status.message(), original_status.message());
    assert_eq!(kinds(&replay)[0], "started");
}

async fn from_latest_starts_with_started_and_the_latest_progress_then_goes_live(backend: Backend) {
    let server = fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(detached(
            "ticks",
            json!({"count": 100000, "interval_ms": 1}),
        ))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    drop(response);
    let mut client = runs(&server).await;
    wait_for_run(&mut client, &run_id, "logged 20 events", |run| {
        run.last_sequence > 20
    })
    .await;
    let mut stream = client
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            from_latest: true,
            ..WatchRunRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let started = stream.message().await.unwrap().unwrap();
    assert_eq!(started.sequence, 1);
    assert!(matches!(started.event, Some(Event::Started(_))));
    let latest = stream.message().await.unwrap().unwrap();
    assert!(matches!(latest.event, Some(Event::Progress(_))));
    assert!(
        latest.sequence > 20,
        "history was skipped: {}",
        latest.sequence
    );
    let live = stream.message().await.unwrap().unwrap();
    assert!(live.sequence > latest.sequence);
    drop(stream);

    let cancelled = cancel(&mut client, &run_id).await.unwrap();
    assert_eq!(cancelled.state(), RunState::Cancelled);
}

async fn cancel_run_ends_every_watcher_with_cancelled_and_is_idempotent(backend: Backend) {
    let (server, stopped) = endless_fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(detached("endless", json!({})))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let mut caller = response.into_inner();
    caller.message().await.unwrap().unwrap();
    // The tool runs: its first progress arrived.
    let progress = caller.message().await.unwrap().unwrap();
    assert!(matches!(progress.event, Some(Event::Progress(_))));

    let mut watchers = Vec::new();
    for _ in 0..3 {
        let mut client = runs(&server).await;
        let mut stream = watch(&mut client, &run_id, 0).await;
        stream.message().await.unwrap().unwrap();
        watchers.push(tokio::spawn(collect(stream)));
    }
    let mut client = runs(&server).await;
    let run = cancel(&mut client, &run_id).await.unwrap();
    assert_eq!(run.state(), RunState::Cancelled);
    assert_eq!(run.error_code, Code::Cancelled as i32);
    assert!(
        run.error_message.contains("CancelRun"),
        "{}",
        run.error_message
    );

    for watcher in watchers {
        let (_, status) = watcher.await.unwrap();
        assert_eq!(status.expect("a status").code(), Code::Cancelled);
    }
    let (_, status) = collect(caller).await;
    assert_eq!(status.expect("a status").code(), Code::Cancelled);
    eventually(WAIT, "the tool to stop", async || {
        stopped.load(Ordering::SeqCst)
    })
    .await;

    let again = cancel(&mut client, &run_id).await.unwrap();
    assert_eq!(again, run, "a second CancelRun changes nothing");

    // A run that already succeeded stays SUCCEEDED.
    let (events, _) =
        common::run_tool(&server, "ticks", json!({"count": 1, "interval_ms": 0})).await;
    let done = cancel(&mut client, &events[0].run_id).await.unwrap();
    assert_eq!(done.state(), RunState::Succeeded);

    let unknown = client
        .cancel_run(CancelRunRequest {
            run_id: "no-such-run".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains("no-such-run"),
        "{}",
        unknown.message()
    );
}

async fn a_watcher_leaving_does_not_cancel_the_run(backend: Backend) {
    let server = fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(run_request("ticks", json!({"count": 50, "interval_ms": 5})))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let caller = response.into_inner();
    let mut client = runs(&server).await;
    let mut watcher = watch(&mut client, &run_id, 0).await;
    watcher.message().await.unwrap().unwrap();
    drop(watcher);
    let (events, status) = collect(caller).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(
        result_value(events.last().unwrap()),
        Some(json!({"count": 50}))
    );
}

async fn unknown_runs_are_not_found_naming_the_id(backend: Backend) {
    let server = fleet(backend).await;
    let mut client = runs(&server).await;
    let status = get(&mut client, "nope-123").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope-123"));
    let status = client
        .watch_run(WatchRunRequest {
            run_id: "nope-456".into(),
            ..WatchRunRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope-456"));
    let status = get(&mut client, "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// `text` as one URL path segment (every byte but the unreserved ones percent-encoded).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

async fn texts_that_are_no_run_id_are_not_found_on_every_face(backend: Backend) {
    let server = fleet(backend).await;
    let (events, _) =
        common::run_tool(&server, "ticks", json!({"count": 1, "interval_ms": 0})).await;
    let real = events[0].run_id.clone();
    let mut client = runs(&server).await;
    wait_for_state(&mut client, &real, RunState::Succeeded).await;
    // A real id with a suffix of the Redis store's key names, and texts no id looks like.
    let odd = [
        format!("{real}:events"),
        format!("{real}:"),
        real.to_uppercase(),
        "*".to_owned(),
        "../x".to_owned(),
        "{}".to_owned(),
        format!("{{{real}}}"),
        "x".repeat(5000),
    ];
    let http = common::web::http();
    let base = server.observer().url();
    for id in &odd {
        let shown: String = id.chars().take(40).collect();
        let status = get(&mut client, id).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "GetRun {shown}: {status:?}");
        assert!(
            status.message().contains(&shown),
            "the message names the id: {status:?}"
        );
        let status = client
            .watch_run(WatchRunRequest {
                run_id: id.clone(),
                ..WatchRunRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "WatchRun {shown}: {status:?}"
        );
        let status = cancel(&mut client, id).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "CancelRun {shown}: {status:?}"
        );

        let segment = path_segment(id);
        for (method, path) in [
            (reqwest::Method::GET, format!("/v1/runs/{segment}")),
            (reqwest::Method::GET, format!("/v1/runs/{segment}/events")),
            (reqwest::Method::POST, format!("/v1/runs/{segment}/cancel")),
        ] {
            let response = http
                .request(method.clone(), format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{method} /v1/runs/{shown}…");
        }
    }
    let response = http.get(format!("{base}/v1/runs/")).send().await.unwrap();
    assert_eq!(response.status(), 404, "GET /v1/runs/ (an empty id)");

    // The server goes on serving the real run, on every face.
    let run = get(&mut client, &real).await.unwrap();
    assert_eq!(run.state(), RunState::Succeeded);
    let response = http
        .get(format!("{base}/v1/runs/{real}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn list_runs_is_newest_first_paged_and_filtered(backend: Backend) {
    let server = fleet(backend).await;
    let mut ids = Vec::new();
    for count in 1..=5 {
        let (events, _) =
            common::run_tool(&server, "ticks", json!({"count": count, "interval_ms": 0})).await;
        ids.push(events[0].run_id.clone());
    }
    let (_, status) = common::run_tool(&server, "checksum", json!({"paths": ["Cargo.toml"]})).await;
    assert!(status.is_none());
    let mut client = runs(&server).await;

    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_runs(ListRunsRequest {
                page_size: 2,
                page_token: token.clone(),
                tool: "ticks".into(),
                ..ListRunsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.runs.len() <= 2);
        listed.extend(page.runs.into_iter().map(|r| r.run_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    let all = client
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.runs.len(), 6);
    assert_eq!(all.runs[0].tool, "checksum");
    assert!(all.next_page_token.is_empty());
    let running = client
        .list_runs(ListRunsRequest {
            state: RunState::Running as i32,
            ..ListRunsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(running.runs.is_empty());

    let bad = client
        .list_runs(ListRunsRequest {
            page_token: "garbage".into(),
            ..ListRunsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

async fn paging_while_runs_start_neither_repeats_nor_skips_and_tokens_work_on_any_replica(
    backend: Backend,
) {
    let server = fleet(backend).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (events, _) =
            common::run_tool(&server, "ticks", json!({"count": 1, "interval_ms": 0})).await;
        ids.push(events[0].run_id.clone());
    }
    // With Redis, pages alternate between the replica that runs the runs and the other one.
    let mut clients = [
        runs(&server).await,
        RunServiceClient::new(server.channel().await),
    ];
    let mut listed = Vec::new();
    let mut token = String::new();
    for page_number in 0.. {
        let page = clients[page_number % 2]
            .list_runs(ListRunsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..ListRunsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.runs.into_iter().map(|run| run.run_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // New runs between pages come before the first page: none shows up in later ones.
        for _ in 0..2 {
            common::run_tool(&server, "ticks", json!({"count": 1, "interval_ms": 0})).await;
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    let all = clients[0]
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.runs.len(),
        6 + 2 * 2,
        "two pages were followed by new runs"
    );
}

async fn finished_runs_expire_after_the_retention_time_and_beyond_max_runs(backend: Backend) {
    let root = std::env::current_dir().unwrap();
    let limits = Limits {
        retention: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = Fleet::start(backend, || registry_with(&root, vec![]), limits).await;
    let (events, _) =
        common::run_tool(&server, "ticks", json!({"count": 1, "interval_ms": 0})).await;
    let run_id = events[0].run_id.clone();
    let mut client = runs(&server).await;
    get(&mut client, &run_id).await.expect("kept for a while");
    eventually(WAIT, "the run to expire", || {
        let mut client = client.clone();
        let run_id = run_id.clone();
        async move { get(&mut client, &run_id).await.is_err() }
    })
    .await;
    assert_eq!(
        get(&mut client, &run_id).await.unwrap_err().code(),
        Code::NotFound
    );

    let limits = Limits {
        max_runs: 2,
        ..Limits::default()
    };
    let server = Fleet::start(backend, || registry_with(&root, vec![]), limits).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (events, _) =
            common::run_tool(&server, "ticks", json!({"count": 1, "interval_ms": 0})).await;
        ids.push(events[0].run_id.clone());
    }
    let mut client = runs(&server).await;
    assert_eq!(
        get(&mut client, &ids[0]).await.unwrap_err().code(),
        Code::NotFound
    );
    get(&mut client, &ids[1]).await.expect("kept");
    get(&mut client, &ids[2]).await.expect("kept");
}

async fn a_log_past_its_bound_tells_a_late_reader_with_one_gap(backend: Backend) {
    let root = std::env::current_dir().unwrap();
    let limits = Limits {
        max_events_per_run: 4,
        event_buffer: 4,
        ..Limits::default()
    };
    let server = Fleet::start(backend, || registry_with(&root, vec![]), limits).await;
    let (events, status) =
        common::run_tool(&server, "ticks", json!({"count": 500, "interval_ms": 0})).await;
    assert!(status.is_none());
    let run_id = events[0].run_id.clone();
    let mut client = runs(&server).await;
    let (replay, status) = collect(watch(&mut client, &run_id, 0).await).await;
    assert!(status.is_none());
    // The started event is never evicted: always the first event, then the gap.
    assert_eq!(kinds(&replay)[0], "started");
    let Some(Event::Gap(gap)) = &replay[1].event else {
        panic!("expected a gap after started: {:?}", kinds(&replay));
    };
    assert_eq!(replay[1].sequence, 0);
    assert_eq!(gap.from_sequence, 2);
    assert!(gap.to_sequence > 1 && gap.to_sequence < 502);
    assert!(!gap.reason.is_empty());
    let after: Vec<u64> = replay[2..].iter().map(|e| e.sequence).collect();
    assert!(after.iter().all(|s| *s > gap.to_sequence));
    assert!(after.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(kinds(&replay).iter().filter(|k| **k == "gap").count(), 1);
    assert_eq!(
        result_value(replay.last().unwrap()),
        Some(json!({"count": 500}))
    );
    assert!(
        replay.len() <= 5,
        "the log held more than its bound: {}",
        replay.len()
    );
}

async fn a_silent_tool_gets_heartbeats_that_are_not_stored(backend: Backend) {
    let server = fleet(backend).await;
    let mut request = run_request("ticks", json!({"count": 2, "interval_ms": 600}));
    request.options = Some(RunOptions {
        heartbeat_interval_ms: 50,
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
    let heartbeats: Vec<&pb::RunEvent> = events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Heartbeat(_))))
        .collect();
    assert!(
        !heartbeats.is_empty(),
        "no heartbeat in {:?}",
        kinds(&events)
    );
    for heartbeat in &heartbeats {
        assert_eq!(heartbeat.sequence, 0);
        let Some(Event::Heartbeat(beat)) = &heartbeat.event else {
            unreachable!()
        };
        assert!(beat.last_sequence >= 1);
    }
    let real: Vec<u64> = events
        .iter()
        .map(|e| e.sequence)
        .filter(|s| *s > 0)
        .collect();
    assert_eq!(real, vec![1, 2, 3, 4]);

    // Heartbeats are not stored: a replay has none.
    let mut client = runs(&server).await;
    let (replay, _) = collect(watch(&mut client, &events[0].run_id, 0).await).await;
    assert_eq!(
        kinds(&replay),
        vec!["started", "progress", "progress", "result"]
    );
}

async fn a_slow_watcher_beside_a_fast_one_gets_coalesced_progress_and_the_result(backend: Backend) {
    let server = fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(detached(
            "ticks",
            json!({"count": 200000, "interval_ms": 0}),
        ))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    let caller = response.into_inner();
    let mut client = runs(&server).await;
    let mut slow = watch(&mut client, &run_id, 0).await;
    let fast = tokio::spawn(collect(caller));
    let (fast_events, status) = fast.await.unwrap();
    assert!(status.is_none());
    assert_eq!(
        result_value(fast_events.last().unwrap()),
        Some(json!({"count": 200000}))
    );
    let fast_sequences: Vec<u64> = fast_events.iter().map(|e| e.sequence).collect();
    assert!(fast_sequences.windows(2).all(|w| w[0] < w[1]));

    // The slow watcher read nothing while the run went on (HTTP/2 flow control let the server
    // send what fits in the stream's 1 MiB window); it still ends with the result.
    let first = slow.message().await.unwrap().unwrap();
    assert_eq!(first.sequence, 1);
    let (rest, status) = collect(slow).await;
    assert!(status.is_none());
    assert_eq!(
        result_value(rest.last().unwrap()),
        Some(json!({"count": 200000}))
    );
    assert!(
        rest.len() < 100_000,
        "the slow watcher got {} events: progress was not coalesced",
        rest.len()
    );
    let sequences: Vec<u64> = rest.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]));
}

async fn a_thousand_watchers_of_one_run_all_get_the_result(backend: Backend) {
    let server = fleet(backend).await;
    let response = server
        .client()
        .await
        .run_tool(detached("ticks", json!({"count": 200, "interval_ms": 10})))
        .await
        .unwrap();
    let run_id = run_id_of(&response);
    drop(response);
    // Ten connections, a hundred streams each.
    let mut watchers = Vec::new();
    for _ in 0..10 {
        let channel = server.observer().channel().await;
        for _ in 0..100 {
            let mut client = RunServiceClient::new(channel.clone());
            let run_id = run_id.clone();
            watchers.push(tokio::spawn(async move {
                let stream = watch(&mut client, &run_id, 0).await;
                collect(stream).await
            }));
        }
    }
    for watcher in watchers {
        let (events, status) = watcher.await.unwrap();
        assert!(status.is_none(), "{status:?}");
        assert_eq!(
            result_value(events.last().unwrap()),
            Some(json!({"count": 200}))
        );
        let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]));
    }
}

/// The servers of a case whose runner also runs agents, against the stand-in `model`.
async fn agent_fleet(backend: Backend, model: &model::StandIn) -> Fleet {
    use toolstream::agent::openai::OpenAiProvider;
    use toolstream::agent::{AgentSettings, DEFAULT_MAX_PARALLEL_CALLS};
    use toolstream::server::Server;
    let root = std::env::current_dir().unwrap();
    let limits = Limits::default();
    let settings = AgentSettings {
        provider: Some(Arc::new(OpenAiProvider::new(&model.url, None).unwrap())),
        default_model: Some("standin-model".into()),
        default_max_steps: 4,
        max_parallel_calls: DEFAULT_MAX_PARALLEL_CALLS,
    };
    let server = |store: Option<toolstream::engine::Store>| {
        let server = Server::new(registry_with(&root, vec![]), limits);
        match store {
            Some(store) => server.with_store(store),
            None => server,
        }
    };
    match backend {
        Backend::Memory => Fleet {
            runner: TestServer::serve(server(None).with_agent(settings)).await,
            other: None,
            _redis: None,
        },
        Backend::Redis | Backend::RedisCluster => {
            let redis = crate::common::SharedRedis::start(backend).expect("a shared Redis");
            let open = |name| {
                let config = redis.store(name);
                async move {
                    toolstream::engine::Store::open(&config, &limits)
                        .await
                        .expect("open the run store")
                }
            };
            let runner = server(Some(open("a").await)).with_agent(settings);
            let other = server(Some(open("b").await));
            Fleet {
                runner: TestServer::serve(runner).await,
                other: Some(TestServer::serve(other).await),
                _redis: Some(redis),
            }
        }
    }
}

async fn get_run_and_list_runs_show_what_a_run_was_called_with(backend: Backend) {
    let model = model::StandIn::start(vec![model::text(&["Nothing ", "to do."])]).await;
    let server = agent_fleet(backend, &model).await;
    let arguments = json!({"count": 2, "interval_ms": 5});
    let tool_run = server
        .client()
        .await
        .run_tool(detached("ticks", arguments.clone()))
        .await
        .unwrap();
    let tool_run = run_id_of(&tool_run);
    let agent_run = server
        .client()
        .await
        .run_agent(pb::RunAgentRequest {
            prompt: "Say there is nothing to do".into(),
            options: Some(RunOptions {
                on_disconnect: pb::OnDisconnect::Continue as i32,
                ..RunOptions::default()
            }),
            ..pb::RunAgentRequest::default()
        })
        .await
        .unwrap();
    let agent_run = run_id_of(&agent_run);

    // gRPC, on the other replica with Redis.
    let mut client = runs(&server).await;
    let run = wait_for_state(&mut client, &tool_run, RunState::Succeeded).await;
    let recorded = run.arguments.map(toolstream::json_proto::struct_to_json);
    assert_eq!(
        recorded.map(serde_json::Value::Object),
        Some(arguments.clone())
    );
    assert_eq!(run.prompt, "");
    let run = wait_for_state(&mut client, &agent_run, RunState::Succeeded).await;
    assert_eq!(run.prompt, "Say there is nothing to do");
    assert!(run.arguments.is_none(), "{:?}", run.arguments);
    let listed = client
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs;
    let prompts: Vec<&str> = listed.iter().map(|run| run.prompt.as_str()).collect();
    assert_eq!(prompts, ["Say there is nothing to do", ""]);
    assert!(listed[1].arguments.is_some());

    // HTTP JSON.
    let http = common::web::http();
    let base = server.observer().url();
    let get_json = |path: String| {
        let http = http.clone();
        async move {
            let response = http.get(path).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    // The same numbers (a Struct's are doubles, which JSON may write as `2.0`).
    let same_arguments = |recorded: &serde_json::Value| {
        ["count", "interval_ms"]
            .iter()
            .all(|key| recorded[key].as_f64() == arguments[key].as_f64())
            && recorded.as_object().map(|o| o.len()) == Some(2)
    };
    let run = get_json(format!("{base}/v1/runs/{tool_run}")).await;
    assert!(same_arguments(&run["arguments"]), "{run}");
    assert!(run.get("prompt").is_none(), "{run}");
    let run = get_json(format!("{base}/v1/runs/{agent_run}")).await;
    assert_eq!(run["prompt"], "Say there is nothing to do");
    assert!(run.get("arguments").is_none(), "{run}");
    let page = get_json(format!("{base}/v1/runs")).await;
    assert!(same_arguments(&page["runs"][1]["arguments"]), "{page}");
    assert_eq!(page["runs"][0]["prompt"], "Say there is nothing to do");
}

async fn health_and_reflection_know_the_run_service(backend: Backend) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let server = fleet(backend).await;
    let mut health = HealthClient::new(server.observer().channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: "toolstream.v1.RunService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
}

/// Each case, once per run store.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Redis).await
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::RedisCluster).await
                }
            )*
        }
    };
}

conformance!(
    a_detached_run_finishes_after_its_caller_left_and_get_run_has_its_result,
    by_default_the_caller_leaving_cancels_the_run,
    watching_from_a_cursor_completes_the_history_without_duplicates,
    a_finished_run_replays_in_full_and_a_failed_run_ends_with_its_status,
    from_latest_starts_with_started_and_the_latest_progress_then_goes_live,
    cancel_run_ends_every_watcher_with_cancelled_and_is_idempotent,
    a_watcher_leaving_does_not_cancel_the_run,
    unknown_runs_are_not_found_naming_the_id,
    texts_that_are_no_run_id_are_not_found_on_every_face,
    list_runs_is_newest_first_paged_and_filtered,
    paging_while_runs_start_neither_repeats_nor_skips_and_tokens_work_on_any_replica,
    finished_runs_expire_after_the_retention_time_and_beyond_max_runs,
    a_log_past_its_bound_tells_a_late_reader_with_one_gap,
    a_silent_tool_gets_heartbeats_that_are_not_stored,
    a_slow_watcher_beside_a_fast_one_gets_coalesced_progress_and_the_result,
    a_thousand_watchers_of_one_run_all_get_the_result,
    health_and_reflection_know_the_run_service,
    get_run_and_list_runs_show_what_a_run_was_called_with,
);
