//! A reader of a run's log: one stream of the run (the caller's or a watcher's), with its own
//! cursor, pace and options.
//!
//! A reader that keeps up gets every event. One that falls behind (more than `lag_budget` events
//! between its cursor and the newest) skips progress that a newer progress of the same call
//! supersedes, so it catches up on the latest state; the gap in `sequence` shows it. Non-progress
//! events are never skipped while the log holds them; events the log evicted are announced by
//! one `Gap` event. With a minimum progress interval, each call gets at most one progress event
//! per interval: superseded progress inside the interval is skipped, and the latest progress of a
//! call waits (holding the stream, to keep `sequence` increasing) until the interval passes,
//! unless its call's next event or the run's end is already logged; so a call's final progress is
//! never lost. With a heartbeat interval, a stream silent that long gets a heartbeat event.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use tokio::time::{Instant, Sleep};

use super::RunError;
use super::event::{EventKind, RunEvent, RunOptions};
use super::log::{RunEnd, RunLog};
use super::observe::RunObserver;
use super::runs::{CancelReason, RunRecord};

/// Events taken from the log per lock: the run and its readers contend once per batch, not once
/// per event.
const BATCH: usize = 64;

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The events after this sequence (0: from the first).
    After(u64),
    /// The started event, the latest progress of each call, then what comes next.
    Latest,
}

/// One stream of a run's events, then its end: `Ok` events, then either nothing more (after the
/// `result` event) or one `Err` with the run's error.
pub struct EventStream {
    log: Arc<RunLog>,
    /// The sequence this reader wants next.
    next: u64,
    /// Events taken from the log, to hand out without taking the lock again.
    taken: VecDeque<Arc<RunEvent>>,
    lag_budget: u64,
    throttle: Option<Throttle>,
    heartbeat: Option<Heartbeat>,
    /// The caller's stream of a run that ends with its caller: dropping it cancels the run.
    cancel_on_drop: Option<Arc<RunRecord>>,
    waker_slot: Option<(u64, usize)>,
    done: bool,
    /// Told once, when the stream is dropped, what it delivered and skipped (streams the engine
    /// hands out have one; the store's own readers do not count).
    observer: Option<Arc<dyn RunObserver>>,
    /// The run's events this stream handed out (gaps and heartbeats are not the run's).
    delivered: u64,
    /// Progress events this stream passed over because newer progress replaced them.
    coalesced: u64,
}

struct Throttle {
    interval: Duration,
    /// When each call's progress was last sent, by call id, while that matters (until its
    /// interval passed or the call finished).
    last_sent: HashMap<Arc<str>, Instant>,
    /// `last_sent` is pruned when it grows past this (twice what a pruning left).
    prune_at: usize,
    sleep: Pin<Box<Sleep>>,
}

impl Throttle {
    /// Notes that progress of `call_id` was sent `now`. Entries whose interval passed say
    /// nothing and are pruned in batches, so the map holds about the calls sent to within one
    /// interval, not every call the run ever had.
    fn sent(&mut self, call_id: &Arc<str>, now: Instant) {
        self.last_sent.insert(Arc::clone(call_id), now);
        if self.last_sent.len() > self.prune_at {
            let interval = self.interval;
            self.last_sent.retain(|_, last| *last + interval > now);
            self.prune_at = (2 * self.last_sent.len()).max(MIN_PRUNE_AT);
        }
    }
}

/// The least size of a throttle's map before it is pruned.
const MIN_PRUNE_AT: usize = 64;

struct Heartbeat {
    interval: Duration,
    last_sent: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl EventStream {
    pub(crate) fn new(
        log: Arc<RunLog>,
        from: ReadFrom,
        options: &RunOptions,
        lag_budget: usize,
        cancel_on_drop: Option<Arc<RunRecord>>,
    ) -> Self {
        let mut taken = VecDeque::new();
        let next = {
            let state = log.lock();
            let after_last = state.last_sequence() + 1;
            // A stream always ends with the run's terminal event, even for a cursor past it.
            let limit = state.result().map_or(after_last, |result| result.sequence);
            match from {
                // A live log of a run executing elsewhere may lag behind a cursor from the run's
                // own stream: the events it has not read yet are still to come.
                ReadFrom::After(sequence) if state.end.is_none() => sequence.saturating_add(1),
                ReadFrom::After(sequence) => sequence.saturating_add(1).min(limit),
                ReadFrom::Latest => {
                    taken.extend(state.started.iter().cloned());
                    // The latest progress of each call and the open input requests, in the
                    // order they were logged.
                    let mut latest = state.latest_progress();
                    latest.extend(state.inputs.open.iter().cloned());
                    latest.sort_by_key(|event| event.sequence);
                    taken.extend(latest.into_iter().filter(|event| event.sequence < limit));
                    limit
                }
            }
        };
        let now = Instant::now();
        EventStream {
            log,
            next,
            taken,
            lag_budget: lag_budget.max(1) as u64,
            throttle: options
                .min_progress_interval
                .filter(|interval| !interval.is_zero())
                .map(|interval| Throttle {
                    interval,
                    last_sent: HashMap::new(),
                    prune_at: MIN_PRUNE_AT,
                    sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                }),
            heartbeat: options
                .heartbeat_interval
                .filter(|interval| !interval.is_zero())
                .map(|interval| Heartbeat {
                    interval,
                    last_sent: now,
                    sleep: Box::pin(tokio::time::sleep_until(now + interval)),
                }),
            cancel_on_drop,
            waker_slot: None,
            done: false,
            observer: None,
            delivered: 0,
            coalesced: 0,
        }
    }

    /// The stream, telling `observer` at its end what it delivered and skipped.
    pub(crate) fn observed(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// From now on, dropping this stream leaves the run going (as if it had been started with
    /// `OnDisconnect::Continue`): for a face that hands the run to a later request.
    pub fn keep_run_when_dropped(&mut self) {
        self.cancel_on_drop = None;
    }

    /// The run this stream reads.
    pub fn run_id(&self) -> &Arc<str> {
        self.log.run_id()
    }

    fn deliver(&mut self, event: Arc<RunEvent>) -> Poll<Option<Result<Arc<RunEvent>, RunError>>> {
        if matches!(event.kind, EventKind::Result(_)) {
            self.done = true;
        }
        self.delivered += u64::from(event.sequence != 0);
        if let Some(heartbeat) = &mut self.heartbeat {
            heartbeat.last_sent = Instant::now();
        }
        Poll::Ready(Some(Ok(event)))
    }

    /// Nothing to send now: a heartbeat when the stream has been silent long enough.
    fn idle(
        &mut self,
        cx: &mut Context<'_>,
        last_sequence: u64,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        let Some(heartbeat) = &mut self.heartbeat else {
            return Poll::Pending;
        };
        let due = heartbeat.last_sent + heartbeat.interval;
        if heartbeat.sleep.deadline() != due {
            heartbeat.sleep.as_mut().reset(due);
        }
        if heartbeat.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        heartbeat.last_sent = Instant::now();
        let event = RunEvent::new(
            Arc::clone(self.log.run_id()),
            0,
            SystemTime::now(),
            EventKind::Heartbeat { last_sequence },
        );
        Poll::Ready(Some(Ok(Arc::new(event))))
    }
}

impl Stream for EventStream {
    type Item = Result<Arc<RunEvent>, RunError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(event) = this.taken.pop_front() {
                return this.deliver(event);
            }
            let log = Arc::clone(&this.log);
            let mut state = log.lock();
            let start = state.position_from(this.next);
            let next_held = state.events.get(start).map(|event| event.sequence);
            if this.next <= state.evicted_through && next_held != Some(this.next) {
                let from = this.next;
                let to = next_held.map_or(state.evicted_through, |held| {
                    (held - 1).min(state.evicted_through)
                });
                this.next = to + 1;
                drop(state);
                let gap = RunEvent::new(
                    Arc::clone(log.run_id()),
                    0,
                    SystemTime::now(),
                    EventKind::Gap {
                        from,
                        to,
                        reason: format!(
                            "the run's log holds at most its last {} events",
                            log.max_events()
                        ),
                    },
                );
                return this.deliver(Arc::new(gap));
            }
            let last_sequence = state.last_sequence();
            if start >= state.events.len() {
                return match &state.end {
                    Some(RunEnd::Failed(error)) => {
                        this.done = true;
                        Poll::Ready(Some(Err(error.clone())))
                    }
                    Some(RunEnd::Succeeded) => {
                        // Here the result was not delivered (delivering it ends the stream): the
                        // cursor was past it. The stream still ends with it.
                        if let Some(result) = state.result().cloned() {
                            drop(state);
                            return this.deliver(result);
                        }
                        this.done = true;
                        Poll::Ready(None)
                    }
                    None => {
                        RunLog::register(&mut state, &mut this.waker_slot, cx.waker());
                        drop(state);
                        this.idle(cx, last_sequence)
                    }
                };
            }
            let lagging = last_sequence + 1 - this.next > this.lag_budget;
            let Some(throttle) = this.throttle.as_mut() else {
                for event in state.events.range(start..).take(BATCH) {
                    if event.sequence != this.next && this.next <= state.evicted_through {
                        break; // evicted events lie between: the gap comes first
                    }
                    // Sequences between are progress the log already dropped as superseded.
                    this.coalesced += event.sequence - this.next;
                    this.next = event.sequence + 1;
                    if lagging && event.is_superseded() {
                        this.coalesced += 1;
                        continue;
                    }
                    this.taken.push_back(Arc::clone(event));
                }
                continue;
            };
            // Throttled: one event at a time, each judged against its call's interval.
            let now = Instant::now();
            let mut chosen = None;
            for index in start..state.events.len() {
                let event = &state.events[index];
                if event.sequence != this.next && this.next <= state.evicted_through {
                    break; // evicted events lie between: the gap comes first
                }
                let EventKind::Progress { call, .. } = &event.kind else {
                    chosen = Some(Arc::clone(event));
                    break;
                };
                let due = throttle
                    .last_sent
                    .get(&call.call_id)
                    .map(|last| *last + throttle.interval)
                    .filter(|due| *due > now);
                let superseded = event.is_superseded();
                if superseded && (lagging || due.is_some()) {
                    this.coalesced += event.sequence + 1 - this.next;
                    this.next = event.sequence + 1;
                    continue;
                }
                if let Some(due) = due {
                    // A call that finished with this event (or whose next event is logged: then
                    // this one is superseded, or it is final) sends it now.
                    let call_moves_on = state.end.is_some() || event.is_final();
                    if !call_moves_on {
                        // The latest progress of its call, too early: wait for its time.
                        RunLog::register(&mut state, &mut this.waker_slot, cx.waker());
                        drop(state);
                        throttle.sleep.as_mut().reset(due);
                        if throttle.sleep.as_mut().poll(cx).is_pending() {
                            return this.idle(cx, last_sequence);
                        }
                        break;
                    }
                }
                if event.is_final() {
                    // Nothing more of the call comes: its interval is over.
                    throttle.last_sent.remove(&call.call_id);
                } else {
                    throttle.sent(&call.call_id, now);
                }
                chosen = Some(Arc::clone(event));
                break;
            }
            if let Some(event) = chosen {
                this.coalesced += event.sequence - this.next;
                this.next = event.sequence + 1;
                return this.deliver(event);
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(observer) = &self.observer
            && (self.delivered > 0 || self.coalesced > 0)
        {
            observer.stream_ended(self.delivered, self.coalesced);
        }
        if let Some(record) = &self.cancel_on_drop {
            // The caller went away: a run still going ends with it.
            if record.log.lock().end.is_none() {
                record.cancel(CancelReason::CallerLeft);
            }
        }
    }
}
