//! A run's event queue: the only place events wait between the run and its client.
//!
//! Progress never waits. Up to `capacity` progress events queue as they come, so a client that
//! keeps up gets every one and the transport can send them in batches. Beyond that the client is
//! behind: a new progress event replaces the newest unsent progress of the same call (that one is
//! removed and the new one appended, so sequence numbers stay in order), which keeps the queue
//! bounded however slow the client is, and shows as a gap in `sequence`. Every other event is kept;
//! a producer of those waits for room when `capacity` of them are queued. The lock is per run, so
//! runs never contend with each other.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use futures::Stream;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::event::{CallTag, EventKind, RunEvent};
use crate::tools::{ProgressSink, ProgressUpdate};

/// The producing side of a run's queue, shared by the run's task and its progress handles.
pub(crate) struct RunQueue {
    run_id: Arc<str>,
    capacity: usize,
    state: Mutex<State>,
    room: Notify,
}

#[derive(Default)]
struct State {
    events: VecDeque<RunEvent>,
    next_sequence: u64,
    /// Events in `events` that are not progress (these count against the capacity).
    kept: usize,
    /// Progress events in `events`.
    progress: usize,
    /// Set once the run ended; nothing is accepted after it.
    end: Option<End>,
    /// The client stopped reading: events are dropped from then on.
    closed: bool,
    waker: Option<Waker>,
}

enum End {
    /// The result is the last queued event.
    Finished,
    /// The run failed; the error follows the queued events.
    Failed(RunError),
    /// Already reported to the client.
    Reported,
}

/// The client went away; there is no one to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl RunQueue {
    pub(crate) fn new(run_id: Arc<str>, capacity: usize) -> Arc<Self> {
        Arc::new(RunQueue {
            run_id,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                next_sequence: 1,
                ..State::default()
            }),
            room: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the run, so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, state: &mut State, kind: EventKind) -> Option<Waker> {
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        state.events.push_back(RunEvent {
            run_id: Arc::clone(&self.run_id),
            sequence,
            timestamp: SystemTime::now(),
            kind,
        });
        state.waker.take()
    }

    /// Queues progress of `call`; when the client is behind, it replaces the newest unsent progress
    /// of that call. Never waits.
    pub(crate) fn push_progress(&self, call: &CallTag, update: ProgressUpdate) {
        let waker = {
            let mut state = self.lock();
            if state.end.is_some() || state.closed {
                return;
            }
            if state.progress >= self.capacity {
                let stale = state.events.iter().rposition(
                    |event| matches!(&event.kind, EventKind::Progress { call: c, .. } if c == call),
                );
                if let Some(index) = stale {
                    state.events.remove(index);
                    state.progress -= 1;
                }
            }
            state.progress += 1;
            let kind = EventKind::Progress {
                call: call.clone(),
                update,
            };
            self.append(&mut state, kind)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues an event that must not be dropped, waiting while the queue holds `capacity` of them.
    pub(crate) async fn push(&self, kind: EventKind) -> Result<(), Closed> {
        let mut kind = Some(kind);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let waker = {
                let mut state = self.lock();
                if state.closed || state.end.is_some() {
                    return Err(Closed);
                }
                match kind.take() {
                    Some(event) if state.kept < self.capacity => {
                        state.kept += 1;
                        Some(self.append(&mut state, event))
                    }
                    other => {
                        kind = other;
                        None
                    }
                }
            };
            match waker {
                Some(waker) => {
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return Ok(());
                }
                None => room.await,
            }
        }
    }

    /// Queues an event without waiting for room; for the first event of a run.
    pub(crate) fn push_now(&self, kind: EventKind) {
        let waker = {
            let mut state = self.lock();
            if state.closed || state.end.is_some() {
                return;
            }
            state.kept += 1;
            self.append(&mut state, kind)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the run: with its result as the last event, or with an error after the queued events.
    /// Only the first call counts.
    pub(crate) fn finish(&self, outcome: Result<Value, RunError>) {
        let waker = {
            let mut state = self.lock();
            if state.end.is_some() {
                return;
            }
            match outcome {
                Ok(value) => {
                    state.kept += 1;
                    let waker = self.append(&mut state, EventKind::Result(value));
                    state.end = Some(End::Finished);
                    waker
                }
                Err(error) => {
                    state.end = Some(End::Failed(error));
                    state.waker.take()
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the client stopped reading.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Progress reported by a tool, tagged with the call it belongs to.
pub(crate) struct CallProgress {
    pub(crate) queue: Arc<RunQueue>,
    pub(crate) call: CallTag,
}

impl ProgressSink for CallProgress {
    fn report(&self, mut update: ProgressUpdate) {
        if let Some(fraction) = update.fraction {
            // Out-of-range progress is a tool bug: clamp it rather than forward garbage.
            if fraction.is_nan() {
                tracing::warn!(tool = %self.call.tool, "tool reported NaN progress; dropped the fraction");
                update.fraction = None;
            } else if !(0.0..=1.0).contains(&fraction) {
                tracing::warn!(tool = %self.call.tool, fraction, "tool reported progress outside [0, 1]; clamped");
                update.fraction = Some(fraction.clamp(0.0, 1.0));
            }
        }
        self.queue.push_progress(&self.call, update);
    }
}

/// The consuming side: the run's events in order, then its end. Dropping it cancels the run.
pub struct EventStream {
    queue: Arc<RunQueue>,
    cancel: CancellationToken,
    throttle: Option<Throttle>,
    /// Events taken from the queue in one go, to be handed out without taking the lock again: the
    /// run and its client then contend for the lock once per batch, not once per event.
    taken: VecDeque<RunEvent>,
    done: bool,
}

struct Throttle {
    interval: Duration,
    last_sent: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl EventStream {
    pub(crate) fn new(
        queue: Arc<RunQueue>,
        cancel: CancellationToken,
        min_progress_interval: Option<Duration>,
    ) -> Self {
        let throttle = min_progress_interval
            .filter(|interval| !interval.is_zero())
            .map(|interval| Throttle {
                interval,
                last_sent: None,
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            });
        EventStream {
            queue,
            cancel,
            throttle,
            taken: VecDeque::new(),
            done: false,
        }
    }
}

impl Stream for EventStream {
    type Item = Result<RunEvent, RunError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(event) = this.taken.pop_front() {
                if matches!(event.kind, EventKind::Result(_)) {
                    this.finish_after_result();
                }
                return Poll::Ready(Some(Ok(event)));
            }
            let mut state = this.queue.lock();
            let Some(front) = state.events.front() else {
                return match state.end.take() {
                    Some(End::Failed(error)) => {
                        state.end = Some(End::Reported);
                        this.done = true;
                        Poll::Ready(Some(Err(error)))
                    }
                    Some(End::Finished | End::Reported) => {
                        state.end = Some(End::Reported);
                        this.done = true;
                        Poll::Ready(None)
                    }
                    None => {
                        state.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                };
            };
            if this.throttle.is_none() {
                // Take everything queued; coalescing goes on among what arrives after.
                std::mem::swap(&mut state.events, &mut this.taken);
                state.progress = 0;
                let freed_room = std::mem::take(&mut state.kept) > 0;
                drop(state);
                if freed_room {
                    this.queue.room.notify_waiters();
                }
                continue;
            }
            if front.kind.is_progress()
                && let Some(throttle) = this.throttle.as_mut()
            {
                let now = Instant::now();
                if let Some(next) = throttle.last_sent.map(|last| last + throttle.interval)
                    && now < next
                {
                    if state.events.len() > 1 {
                        // Something newer is waiting behind it: this progress is stale.
                        state.events.pop_front();
                        state.progress -= 1;
                        continue;
                    }
                    state.waker = Some(cx.waker().clone());
                    drop(state);
                    throttle.sleep.as_mut().reset(next);
                    if throttle.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    continue;
                }
                throttle.last_sent = Some(now);
            }
            let Some(event) = state.events.pop_front() else {
                continue;
            };
            let freed_room = !event.kind.is_progress();
            if freed_room {
                state.kept -= 1;
            } else {
                state.progress -= 1;
            }
            drop(state);
            if freed_room {
                this.queue.room.notify_waiters();
            }
            if matches!(event.kind, EventKind::Result(_)) {
                this.finish_after_result();
            }
            return Poll::Ready(Some(Ok(event)));
        }
    }
}

impl EventStream {
    /// Nothing follows a result.
    fn finish_after_result(&mut self) {
        let mut state = self.queue.lock();
        state.end = Some(End::Reported);
        state.events.clear();
        state.progress = 0;
        self.taken.clear();
        self.done = true;
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        {
            let mut state = self.queue.lock();
            state.closed = true;
            state.events.clear();
            state.kept = 0;
            state.progress = 0;
        }
        self.queue.room.notify_waiters();
        // The client went away (or the run is over): stop whatever still runs for it.
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;

    fn progress(fraction: f64) -> ProgressUpdate {
        ProgressUpdate {
            fraction: Some(fraction),
            ..ProgressUpdate::default()
        }
    }

    fn stream(queue: &Arc<RunQueue>) -> EventStream {
        EventStream::new(Arc::clone(queue), CancellationToken::new(), None)
    }

    #[tokio::test]
    async fn unread_progress_is_coalesced_and_sequence_shows_the_gap() {
        let queue = RunQueue::new("r".into(), 8);
        let top = CallTag::top();
        queue.push_now(EventKind::Message("hello".into()));
        for i in 1..=100 {
            queue.push_progress(&top, progress(i as f64 / 100.0));
        }
        queue.finish(Ok(json!(1)));
        let events: Vec<_> = stream(&queue).collect().await;
        let sequences: Vec<u64> = events
            .iter()
            .map(|e| e.as_ref().unwrap().sequence)
            .collect();
        // The first `capacity` progress events queue; then each new one replaces the newest.
        assert_eq!(sequences, vec![1, 2, 3, 4, 5, 6, 7, 8, 101, 102]);
        let last_progress = events[8].as_ref().unwrap();
        assert!(
            matches!(&last_progress.kind, EventKind::Progress { update, .. } if update.fraction == Some(1.0))
        );
    }

    #[tokio::test]
    async fn progress_of_different_calls_is_kept_apart() {
        let queue = RunQueue::new("r".into(), 2);
        let a = CallTag::call("a", "t");
        let b = CallTag::call("b", "t");
        queue.push_progress(&a, progress(0.1));
        queue.push_progress(&b, progress(0.2));
        queue.push_progress(&a, progress(0.3));
        queue.finish(Ok(json!(null)));
        let sequences: Vec<u64> = stream(&queue).map(|e| e.unwrap().sequence).collect().await;
        assert_eq!(sequences, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn error_follows_queued_events_and_ends_the_stream() {
        let queue = RunQueue::new("r".into(), 8);
        queue.push_now(EventKind::Message("x".into()));
        queue.finish(Err(RunError::Cancelled));
        let mut events = stream(&queue);
        assert!(events.next().await.unwrap().is_ok());
        assert!(matches!(
            events.next().await,
            Some(Err(RunError::Cancelled))
        ));
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn kept_events_wait_for_room_and_fail_once_the_client_is_gone() {
        let queue = RunQueue::new("r".into(), 1);
        queue.push(EventKind::Message("1".into())).await.unwrap();
        let blocked = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.push(EventKind::Message("2".into())).await })
        };
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        drop(stream(&queue));
        assert_eq!(blocked.await.unwrap(), Err(Closed));
    }
}
