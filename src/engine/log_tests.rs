//! The run log and its readers, without a server: coalescing, gaps, ends, per-call throttling,
//! and property tests of the invariants under random interleavings.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use proptest::prelude::*;
use serde_json::json;

use super::event::{CallTag, EventKind, RunOptions};
use super::log::RunLog;
use super::reader::{EventStream, ReadFrom};
use super::{RunError, RunEvent, RunKind, RunStarted};
use crate::tools::ProgressUpdate;

fn progress(fraction: f64) -> ProgressUpdate {
    ProgressUpdate {
        fraction: Some(fraction),
        ..ProgressUpdate::default()
    }
}

fn reader(log: &Arc<RunLog>, budget: usize) -> EventStream {
    EventStream::new(
        Arc::clone(log),
        ReadFrom::After(0),
        &RunOptions::default(),
        budget,
        None,
    )
}

fn fraction(event: &RunEvent) -> Option<f64> {
    match &event.kind {
        EventKind::Progress { update, .. } => update.fraction,
        _ => None,
    }
}

#[tokio::test]
async fn a_reader_behind_gets_the_newest_progress_and_the_gap_shows_in_sequence() {
    let log = RunLog::new("r".into(), 8, 1000);
    let top = Arc::new(CallTag::top());
    log.push(EventKind::Message("hello".into())).unwrap();
    for i in 1..=100 {
        log.push_progress(&top, progress(i as f64 / 100.0));
    }
    log.finish(Ok(json!(1)));
    let events: Vec<_> = reader(&log, 8).collect().await;
    let events: Vec<Arc<RunEvent>> = events.into_iter().map(Result::unwrap).collect();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences.first(), Some(&1));
    assert_eq!(sequences.last(), Some(&102));
    assert!(events.len() < 30, "not coalesced: {sequences:?}");
    assert!(sequences.windows(2).all(|w| w[0] < w[1]));
    // The newest progress wins.
    assert_eq!(fraction(&events[events.len() - 2]), Some(1.0));
}

#[tokio::test]
async fn a_reader_that_keeps_up_sees_every_event() {
    let log = RunLog::new("r".into(), 8, 1000);
    let top = Arc::new(CallTag::top());
    let mut stream = reader(&log, 8);
    for i in 1..=100u64 {
        log.push_progress(&top, progress(i as f64 / 100.0));
        let event = stream.next().await.unwrap().unwrap();
        assert_eq!(event.sequence, i);
    }
}

#[tokio::test]
async fn progress_of_different_calls_is_coalesced_apart() {
    let log = RunLog::new("r".into(), 1, 1000);
    let a = Arc::new(CallTag::call("a", "t"));
    let b = Arc::new(CallTag::call("b", "t"));
    log.push_progress(&a, progress(0.1));
    log.push_progress(&b, progress(0.2));
    log.push_progress(&a, progress(0.3));
    log.finish(Ok(json!(null)));
    let sequences: Vec<u64> = reader(&log, 1).map(|e| e.unwrap().sequence).collect().await;
    assert_eq!(sequences, vec![2, 3, 4]);
}

#[tokio::test]
async fn an_error_follows_the_logged_events_for_every_reader_then_the_stream_ends() {
    let log = RunLog::new("r".into(), 8, 100);
    log.push(EventKind::Message("x".into())).unwrap();
    log.finish(Err(RunError::CancelRequested));
    assert!(log.push(EventKind::Message("late".into())).is_err());
    log.finish(Ok(json!("ignored: the first end counts")));
    for _ in 0..2 {
        let mut events = reader(&log, 8);
        assert_eq!(events.next().await.unwrap().unwrap().sequence, 1);
        assert!(matches!(
            events.next().await,
            Some(Err(RunError::CancelRequested))
        ));
        assert!(events.next().await.is_none());
    }
}

#[tokio::test]
async fn a_sealed_log_takes_only_its_end_which_has_the_sequence_seal_gave() {
    let log = RunLog::new("r".into(), 8, 100);
    log.push(EventKind::Message("x".into())).unwrap();
    assert_eq!(log.seal(), Some(2));
    assert!(
        log.push(EventKind::Message("after the work ended".into()))
            .is_err()
    );
    log.push_progress(&Arc::new(CallTag::top()), progress(0.5));
    let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(7);
    log.finish_at(Ok(json!("done")), at);
    let events: Vec<Arc<RunEvent>> = reader(&log, 8).map(Result::unwrap).collect().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].sequence, 2);
    assert_eq!(events[1].timestamp, at);
    assert_eq!(log.seal(), None);
}

#[tokio::test]
async fn a_replicated_log_keeps_the_sequences_it_is_given_and_says_what_is_gone() {
    let log = RunLog::new("r".into(), 8, 100);
    let event = |sequence: u64, kind: EventKind| {
        RunEvent::new("r".into(), sequence, std::time::SystemTime::now(), kind)
    };
    log.replicate(event(
        1,
        EventKind::Started(Box::new(RunStarted::new(RunKind::Agent))),
    ));
    log.mark_evicted(9);
    log.replicate(event(10, EventKind::Message("ten".into())));
    // Coalesced away by the writer: not a gap.
    log.replicate(event(12, EventKind::Message("twelve".into())));
    // A replayed read adds nothing.
    log.replicate(event(10, EventKind::Message("ten again".into())));
    let mut late = reader(&log, 8);
    log.replicate(event(13, EventKind::Result(json!(1))));
    let mut seen = Vec::new();
    while let Some(event) = late.next().await {
        seen.push(event.unwrap());
    }
    let kinds: Vec<(u64, bool)> = seen
        .iter()
        .map(|e| (e.sequence, matches!(e.kind, EventKind::Gap { .. })))
        .collect();
    assert_eq!(
        kinds,
        vec![(1, false), (0, true), (10, false), (12, false), (13, false)]
    );
    let EventKind::Gap { from, to, .. } = &seen[1].kind else {
        unreachable!()
    };
    assert_eq!((*from, *to), (2, 9));
}

#[tokio::test]
async fn a_cursor_past_a_followed_log_still_ends_with_the_result() {
    // A follower's log may lag behind a cursor taken from the run's own stream.
    let log = RunLog::new("r".into(), 8, 100);
    log.replicate(RunEvent::new(
        "r".into(),
        1,
        std::time::SystemTime::now(),
        EventKind::Started(Box::new(RunStarted::new(RunKind::Agent))),
    ));
    let mut stream = EventStream::new(
        Arc::clone(&log),
        ReadFrom::After(5),
        &RunOptions::default(),
        8,
        None,
    );
    for sequence in 2..=5 {
        log.replicate(RunEvent::new(
            "r".into(),
            sequence,
            std::time::SystemTime::now(),
            EventKind::Message(format!("{sequence}")),
        ));
    }
    log.replicate(RunEvent::new(
        "r".into(),
        6,
        std::time::SystemTime::now(),
        EventKind::Result(json!(null)),
    ));
    let events: Vec<u64> = (&mut stream).map(|e| e.unwrap().sequence).collect().await;
    assert_eq!(events, vec![6]);
}

#[tokio::test]
async fn evicted_events_are_announced_by_one_gap() {
    let log = RunLog::new("r".into(), 4, 5);
    for i in 0..20 {
        log.push(EventKind::Message(format!("{i}"))).unwrap();
    }
    log.finish(Ok(json!(null)));
    let events: Vec<Arc<RunEvent>> = reader(&log, 100).map(Result::unwrap).collect().await;
    let EventKind::Gap { from, to, .. } = &events[0].kind else {
        panic!("a gap first: {events:?}");
    };
    assert_eq!((*from, *to), (1, 16));
    // A started event is never evicted: it stays first, and the gap follows it.
    let log = RunLog::new("r".into(), 4, 5);
    log.push(EventKind::Started(Box::new(RunStarted::new(
        RunKind::Agent,
    ))))
    .unwrap();
    for i in 0..20 {
        log.push(EventKind::Message(format!("{i}"))).unwrap();
    }
    let with_started: Vec<Arc<RunEvent>> = reader(&log, 100)
        .take(3)
        .map(Result::unwrap)
        .collect()
        .await;
    assert!(matches!(with_started[0].kind, EventKind::Started(_)));
    assert!(matches!(
        with_started[1].kind,
        EventKind::Gap {
            from: 2,
            to: 17,
            ..
        }
    ));
    assert_eq!(with_started[2].sequence, 18);
    assert_eq!(events[0].sequence, 0);
    let rest: Vec<u64> = events[1..].iter().map(|e| e.sequence).collect();
    assert_eq!(rest, vec![17, 18, 19, 20, 21]);
}

#[tokio::test]
async fn from_latest_gives_started_then_the_latest_progress_of_each_call() {
    let log = RunLog::new("r".into(), 8, 100);
    log.push(EventKind::Started(Box::new(RunStarted::new(
        RunKind::Agent,
    ))))
    .unwrap();
    let a = Arc::new(CallTag::call("a", "t"));
    for i in 1..=10 {
        log.push_progress(&Arc::new(CallTag::top()), progress(i as f64 / 10.0));
        log.push_progress(&a, progress(i as f64 / 20.0));
    }
    let mut stream = EventStream::new(
        Arc::clone(&log),
        ReadFrom::Latest,
        &RunOptions::default(),
        8,
        None,
    );
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first.kind, EventKind::Started(_)));
    let top = stream.next().await.unwrap().unwrap();
    let call = stream.next().await.unwrap().unwrap();
    assert_eq!((top.sequence, fraction(&top)), (20, Some(1.0)));
    assert_eq!((call.sequence, fraction(&call)), (21, Some(0.5)));
    assert!(
        stream.next().now_or_never().is_none(),
        "then live: nothing yet"
    );
    log.finish(Ok(json!(2)));
    assert_eq!(stream.next().await.unwrap().unwrap().sequence, 22);
    assert!(stream.next().await.is_none());
}

fn throttled(log: &Arc<RunLog>, interval_ms: u64) -> EventStream {
    EventStream::new(
        Arc::clone(log),
        ReadFrom::After(0),
        &RunOptions {
            min_progress_interval: Some(Duration::from_millis(interval_ms)),
            ..RunOptions::default()
        },
        64,
        None,
    )
}

/// Drains what the stream can deliver within `advance` of (paused) time.
async fn drain_for(stream: &mut EventStream, advance: Duration) -> Vec<Arc<RunEvent>> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + advance;
    loop {
        tokio::select! {
            biased;
            item = stream.next() => match item {
                Some(Ok(event)) => out.push(event),
                _ => return out,
            },
            _ = tokio::time::sleep_until(until) => return out,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn throttling_is_per_call_and_keeps_each_calls_last_progress_before_it_finishes() {
    let log = RunLog::new("r".into(), 64, 10_000);
    let mut stream = throttled(&log, 100);
    let busy = Arc::new(CallTag::call("busy", "t"));
    let rare = Arc::new(CallTag::call("rare", "t"));
    log.push(EventKind::ToolCallStarted {
        call: (*busy).clone(),
        arguments: super::CallArguments::Raw(String::new()),
    })
    .unwrap();
    let mut delivered = Vec::new();
    // `busy` reports every 5 ms for a second; `rare` reports once, in the middle.
    for i in 1..=200 {
        log.push_progress(&busy, progress(i as f64 / 200.0));
        if i == 100 {
            log.push_progress(&rare, progress(0.5));
        }
        delivered.extend(drain_for(&mut stream, Duration::from_millis(5)).await);
    }
    log.push(EventKind::ToolCallFinished {
        call: (*busy).clone(),
        outcome: Ok(json!(1)),
    })
    .unwrap();
    log.finish(Ok(json!("done")));
    delivered.extend(drain_for(&mut stream, Duration::from_secs(1)).await);

    let of = |call: &str| -> Vec<&Arc<RunEvent>> {
        delivered
            .iter()
            .filter(
                |e| matches!(&e.kind, EventKind::Progress { call: c, .. } if &*c.call_id == call),
            )
            .collect()
    };
    let busy_events = of("busy");
    // About one per 100 ms over one second: never the 200 produced.
    assert!(
        (5..=13).contains(&busy_events.len()),
        "{} progress events of the busy call",
        busy_events.len()
    );
    assert_eq!(
        fraction(busy_events.last().unwrap()),
        Some(1.0),
        "its final progress"
    );
    assert_eq!(
        of("rare").len(),
        1,
        "a call that reports rarely is never drowned out"
    );
    let sequences: Vec<u64> = delivered.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]));
    let finished_at = delivered
        .iter()
        .position(|e| matches!(e.kind, EventKind::ToolCallFinished { .. }))
        .expect("tool_call_finished delivered");
    assert!(
        delivered[..finished_at]
            .iter()
            .any(|e| fraction(e) == Some(1.0))
    );
    assert!(matches!(
        delivered.last().unwrap().kind,
        EventKind::Result(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_silent_run_gets_heartbeats_and_they_are_not_logged() {
    let log = RunLog::new("r".into(), 8, 100);
    log.push(EventKind::Started(Box::new(RunStarted::new(
        RunKind::Agent,
    ))))
    .unwrap();
    let mut stream = EventStream::new(
        Arc::clone(&log),
        ReadFrom::After(0),
        &RunOptions {
            heartbeat_interval: Some(Duration::from_millis(100)),
            ..RunOptions::default()
        },
        8,
        None,
    );
    assert_eq!(stream.next().await.unwrap().unwrap().sequence, 1);
    let beats = drain_for(&mut stream, Duration::from_millis(350)).await;
    assert_eq!(beats.len(), 3);
    for beat in &beats {
        assert!(matches!(
            beat.kind,
            EventKind::Heartbeat { last_sequence: 1 }
        ));
        assert_eq!(beat.sequence, 0);
    }
    assert_eq!(log.lock().events.len(), 1);
}

/// One step of a random interleaving.
#[derive(Debug, Clone)]
enum Op {
    /// Progress of call `0..3` (0 is the top level).
    Progress(u8),
    /// An event readers never skip.
    Message,
    /// Reader `0..3` takes up to `n` events.
    Read(u8, u8),
    /// A new reader joins from sequence `after`.
    Join(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3).prop_map(Op::Progress),
        1 => Just(Op::Message),
        3 => (0u8..6, 1u8..20).prop_map(|(r, n)| Op::Read(r, n)),
        1 => (0u8..30).prop_map(Op::Join),
    ]
}

struct Observed {
    start_after: u64,
    items: Vec<Result<Arc<RunEvent>, RunError>>,
    ended: bool,
}

impl Observed {
    fn take(&mut self, stream: &mut EventStream, n: usize) {
        for _ in 0..n {
            match stream.next().now_or_never() {
                Some(Some(item)) => self.items.push(item),
                Some(None) => {
                    self.ended = true;
                    return;
                }
                None => return,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn log_invariants_hold_under_random_interleavings(
        ops in proptest::collection::vec(op(), 1..400),
        budget in 1usize..8,
        max_events in 2usize..40,
        succeed in any::<bool>(),
    ) {
        let log = RunLog::new("r".into(), budget, max_events);
        let calls = [Arc::new(CallTag::top()), Arc::new(CallTag::call("a", "t")), Arc::new(CallTag::call("b", "t"))];
        let mut readers: Vec<(EventStream, Observed)> = (0..3)
            .map(|_| (reader(&log, budget), Observed { start_after: 0, items: Vec::new(), ended: false }))
            .collect();
        let mut messages = Vec::new();
        let mut latest: HashMap<usize, u64> = HashMap::new();
        let mut next_sequence = 1u64;
        for op in &ops {
            match op {
                Op::Progress(call) => {
                    log.push_progress(&calls[*call as usize], progress(0.5));
                    latest.insert(*call as usize, next_sequence);
                    next_sequence += 1;
                }
                Op::Message => {
                    log.push(EventKind::Message(String::new())).unwrap();
                    messages.push(next_sequence);
                    next_sequence += 1;
                }
                Op::Read(r, n) => {
                    let index = *r as usize % readers.len();
                    let (stream, seen) = &mut readers[index];
                    seen.take(stream, *n as usize);
                }
                Op::Join(after) => {
                    let after = u64::from(*after).min(next_sequence - 1);
                    let stream = EventStream::new(
                        Arc::clone(&log), ReadFrom::After(after), &RunOptions::default(), budget, None,
                    );
                    readers.push((stream, Observed { start_after: after, items: Vec::new(), ended: false }));
                }
            }
            // Memory is bounded whatever the readers do.
            prop_assert!(log.lock().events.len() <= max_events);
        }
        let result_sequence = next_sequence;
        if succeed {
            log.finish(Ok(json!("done")));
        } else {
            log.finish(Err(RunError::Internal("broke".into())));
        }
        for (stream, seen) in &mut readers {
            seen.take(stream, usize::MAX);
            prop_assert!(seen.ended, "every reader ends");
            prop_assert!(matches!(stream.next().now_or_never(), Some(None)), "nothing after the end");

            let mut gaps: Vec<(u64, u64)> = Vec::new();
            let mut sequences = Vec::new();
            let mut terminals = 0;
            for (i, item) in seen.items.iter().enumerate() {
                match item {
                    Ok(event) => match &event.kind {
                        EventKind::Gap { from, to, .. } => gaps.push((*from, *to)),
                        kind => {
                            sequences.push(event.sequence);
                            if matches!(kind, EventKind::Result(_)) {
                                terminals += 1;
                                prop_assert_eq!(i, seen.items.len() - 1, "the result is last");
                            }
                        }
                    },
                    Err(_) => {
                        terminals += 1;
                        prop_assert_eq!(i, seen.items.len() - 1, "the error is last");
                    }
                }
            }
            prop_assert_eq!(terminals, 1, "exactly one terminal event per reader");
            prop_assert!(sequences.windows(2).all(|w| w[0] < w[1]), "sequences increase: {:?}", sequences);
            prop_assert!(sequences.iter().all(|s| *s > seen.start_after && *s <= result_sequence));
            let delivered: HashSet<u64> = sequences.iter().copied().collect();
            let in_gap = |s: u64| gaps.iter().any(|(from, to)| (*from..=*to).contains(&s));
            for message in &messages {
                if *message > seen.start_after {
                    prop_assert!(
                        delivered.contains(message) || in_gap(*message),
                        "message {} lost without a gap", message
                    );
                }
            }
            // The newest progress of each call is never coalesced away.
            for sequence in latest.values() {
                if *sequence > seen.start_after {
                    prop_assert!(delivered.contains(sequence) || in_gap(*sequence));
                }
            }
            prop_assert!(gaps.len() <= 1 || gaps.windows(2).all(|w| w[0].1 < w[1].0));
        }
    }
}

/// The log's own bookkeeping: the count of held superseded events is exact, and no evicted
/// event is held or counted.
fn check_bookkeeping(log: &RunLog) -> Result<(), TestCaseError> {
    let state = log.lock();
    let marked = state.events.iter().filter(|e| e.is_superseded()).count();
    prop_assert_eq!(
        state.superseded_count(),
        marked,
        "the superseded count is exact"
    );
    prop_assert!(
        state.events.iter().all(|e| !e.is_gone()),
        "no held event is marked gone"
    );
    Ok(())
}

#[test]
fn an_evicted_event_is_not_held_and_superseding_it_counts_nothing() {
    let log = RunLog::new("r".into(), 4, 10);
    let call = Arc::new(CallTag::call("a", "t"));
    log.push(EventKind::Started(Box::new(RunStarted::new(
        RunKind::Agent,
    ))))
    .unwrap();
    log.push_progress(&call, progress(0.1));
    // The call's progress is evicted behind twenty messages.
    for _ in 0..20 {
        log.push(EventKind::Message(String::new())).unwrap();
    }
    assert!(log.lock().evicted_through >= 2);
    log.push_progress(&call, progress(0.2));
    assert_eq!(
        log.lock().superseded_count(),
        0,
        "the superseded event is gone, not held"
    );
    log.push_progress(&call, progress(0.3));
    assert_eq!(log.lock().superseded_count(), 1);
    check_bookkeeping(&log).unwrap();
}

#[test]
fn finished_sub_tasks_are_folded_and_the_log_stays_within_its_bounds() {
    let log = RunLog::new("r".into(), 8, 500);
    let top = Arc::new(CallTag::top());
    log.push(EventKind::Started(Box::new(RunStarted::new(
        RunKind::Agent,
    ))))
    .unwrap();
    for i in 0..20_000 {
        let task = Arc::new(CallTag::call(format!("{i}"), "item"));
        log.push_progress(&task, ProgressUpdate::default());
        log.push_progress(&task, progress(0.5));
        log.push_progress(&task, progress(1.0));
        log.push_progress(&top, progress(f64::from(i) / 20_000.0));
    }
    let state = log.lock();
    assert_eq!(state.live_calls(), 0, "every finished sub-task is folded");
    assert!(state.events.len() <= 500);
    assert_eq!(
        state.latest_progress().len(),
        1,
        "only the top level is remembered"
    );
    drop(state);
    check_bookkeeping(&log).unwrap();
}

#[tokio::test]
async fn a_call_past_the_live_limit_is_refused_and_the_run_told_why() {
    let log = RunLog::with_live_call_limit("r".into(), 8, 100, 2);
    let call = |id: &str| Arc::new(CallTag::call(id, "t"));
    log.push_progress(&call("a"), progress(0.1));
    log.push_progress(&call("b"), progress(0.1));
    // A call finishing at once never counts as live.
    log.push_progress(&call("done"), progress(1.0));
    assert!(log.refused().now_or_never().is_none());
    let before = log.lock().last_sequence();
    log.push_progress(&call("c"), progress(0.1));
    assert_eq!(log.lock().last_sequence(), before, "the event is refused");
    assert_eq!(log.refused().await, 2, "the run is told the limit it broke");
    // A live call goes on; once one finished, a new one fits.
    log.push_progress(&call("a"), progress(1.0));
    log.push_progress(&call("c"), progress(0.1));
    assert_eq!(log.lock().live_calls(), 2);
}

/// An operation on a log of many sub-tasks.
#[derive(Debug, Clone)]
enum CallOp {
    /// Progress of sub-task n at this fraction (1.0 finishes it).
    Progress(u8, f64),
    /// Progress of the top level.
    Top,
    /// A message.
    Message,
}

fn call_op() -> impl Strategy<Value = CallOp> {
    prop_oneof![
        (0u8..20, prop_oneof![Just(0.5), Just(1.0), Just(0.2)])
            .prop_map(|(n, f)| CallOp::Progress(n, f)),
        Just(CallOp::Top),
        Just(CallOp::Message),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_superseded_count_is_exact_and_live_calls_are_those_not_finished(
        ops in proptest::collection::vec(call_op(), 1..600),
        budget in 1usize..8,
        max_events in 2usize..60,
    ) {
        let log = RunLog::new("r".into(), budget, max_events);
        log.push(EventKind::Started(Box::new(RunStarted::new(RunKind::Agent)))).unwrap();
        let top = Arc::new(CallTag::top());
        let tasks: Vec<Arc<CallTag>> =
            (0..20).map(|n| Arc::new(CallTag::call(format!("{n}"), "item"))).collect();
        let mut live: HashSet<u8> = HashSet::new();
        for op in &ops {
            match op {
                CallOp::Progress(n, f) => {
                    log.push_progress(&tasks[*n as usize], progress(*f));
                    if *f >= 1.0 {
                        live.remove(n);
                    } else {
                        live.insert(*n);
                    }
                }
                CallOp::Top => log.push_progress(&top, progress(0.5)),
                CallOp::Message => log.push(EventKind::Message(String::new())).unwrap(),
            }
            check_bookkeeping(&log)?;
            prop_assert!(log.lock().events.len() <= max_events);
            prop_assert_eq!(log.lock().live_calls(), live.len());
        }
    }
}
