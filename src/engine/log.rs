//! A run's log: the one place a run's events live, read by any number of readers.
//!
//! The run appends; the log numbers and timestamps each event and keeps it as an `Arc`, so an
//! event is made (and converted for the wire, see [`RunEvent::wire`]) once however many readers
//! it has. Appending never waits: a slow reader never slows the run or another reader.
//!
//! What the log keeps is bounded, so memory does not grow with a stalled reader, a chatty tool or
//! a tool with many sub-tasks, and every append costs the same (amortised) however many events and
//! calls the run has:
//! - **Superseded progress.** A progress event is *superseded* once the same call reported newer
//!   progress. The log keeps about the most recent `progress_buffer` superseded ones (a reader that
//!   keeps up sees every progress event) and drops older ones in batches, each batch a walk of the
//!   log that removes at least an eighth of it: a reader that fell further behind gets the newest
//!   progress of each call instead, and the gap in `sequence` shows it. This is coalescing. Whether
//!   an event is superseded is marked on the event itself (no lookup), and the count of held
//!   superseded events is exact: an evicted event is never counted.
//! - **`max_events`.** Past it the oldest events are evicted; a reader that still needed them gets
//!   one `Gap` event naming the range (never a silent hole). The run's `started` event and its last
//!   event are never evicted.
//! - **Live calls.** The log remembers the latest progress of each *live* call (for readers that
//!   start from the latest state and for GetRun). A sub-task (a call other than the top level)
//!   whose progress reaches 1.0 is finished, and an agent's tool call is finished by its
//!   `tool_call_finished`: a finished call is folded into its parent (whose fraction already
//!   counts it, as the CLI draws it) and no longer remembered, so what a run holds per call does
//!   not grow with the calls it made. At most `max_live_calls` calls are live at once: progress of
//!   one more is refused, and the run fails with an error naming the limit
//!   ([`RunError::TooManyLiveCalls`](super::RunError::TooManyLiveCalls); see
//!   [`RunLog::refused`]).
//!
//! Progress is also where the server estimates the time each call has left ([`super::eta`]): the
//! estimate is made once, as a report enters the log, and travels with the event.
//!
//! A log is also how a replica follows a run that executes on another replica (see
//! [`super::store`]): the events read from the run store are [`replicate`](RunLog::replicate)d
//! into a log of its own, with their original sequences and timestamps, and its readers work
//! exactly as they do for a local run.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::eta::Eta;
use super::event::{CallTag, EventKind, RunEvent};
use super::open_requests::{InputLimits, Inputs};
use super::partial::HeldPartial;
use super::{Limits, RunError};
use crate::tools::{
    Answer, PartialOutput, PartialRefused, ProgressSink, ProgressUpdate, Question, SubTask,
};
use futures::future::BoxFuture;

/// How a run ended.
#[derive(Debug, Clone)]
pub(crate) enum RunEnd {
    /// With a result: the last event in the log.
    Succeeded,
    /// With an error; no event follows the last one logged.
    Failed(RunError),
}

/// A run's events and its end.
pub(crate) struct RunLog {
    run_id: Arc<str>,
    /// Superseded progress events kept for readers that are only a little behind.
    progress_buffer: usize,
    /// The most events held.
    max_events: usize,
    /// The most calls live at once (see the module docs).
    max_live_calls: usize,
    /// The largest message the server sends: a larger partial result is refused to its tool.
    max_message_bytes: usize,
    state: Mutex<LogState>,
    /// Woken when the run ends.
    ended: Notify,
    /// Cancelled when the log refused an event that would pass a limit: the run must fail.
    refused: CancellationToken,
    /// When the run's input requests lapse (set as the run starts; none on a replica's copy).
    input_limits: OnceLock<InputLimits>,
}

pub(crate) struct LogState {
    /// Held events, in sequence order (not contiguous once progress is coalesced).
    pub(crate) events: VecDeque<Arc<RunEvent>>,
    /// The sequence the next event gets.
    pub(crate) next_sequence: u64,
    /// Every sequence up to this one that is not held (the started event is) was evicted past
    /// `max_events`.
    pub(crate) evicted_through: u64,
    /// The run's first event, kept for readers that start from the latest state.
    pub(crate) started: Option<Arc<RunEvent>>,
    /// The latest progress of the top level.
    top_progress: Option<Arc<RunEvent>>,
    /// The top level's rate of progress, for its estimate of the time left.
    top_eta: Eta,
    /// The live tool calls and sub-tasks, by call id (finished ones are folded, see the module
    /// docs).
    calls: HashMap<Arc<str>, LiveCall>,
    /// Held progress events that a newer one of the same call supersedes: exactly those held
    /// events marked superseded.
    superseded: usize,
    /// The run's input requests (see [`super::input`]).
    pub(crate) inputs: Inputs,
    pub(crate) end: Option<RunEnd>,
    pub(crate) end_time: Option<SystemTime>,
    /// The run's work is over and its end is being published: nothing but the end is logged.
    sealed: bool,
    /// Readers waiting for the next event; a reader remembers its slot for the current
    /// generation, so re-registering is O(1) however many readers there are.
    wakers: Wakers,
    pub(crate) generation: u64,
}

/// A live call: its latest progress, and its rate of progress for its estimate of the time left.
struct LiveCall {
    latest: Arc<RunEvent>,
    eta: Eta,
}

/// The run already ended; nothing more is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run has already ended")]
pub struct RunEnded;

impl RunLog {
    /// A log with no limit on live calls (a replica's copy of a run executing elsewhere, where
    /// the limit is enforced).
    pub(crate) fn new(run_id: Arc<str>, progress_buffer: usize, max_events: usize) -> Arc<Self> {
        Self::with_live_call_limit(run_id, progress_buffer, max_events, usize::MAX)
    }

    /// The log of a run executing here, within `limits`.
    pub(crate) fn for_run(run_id: Arc<str>, limits: &Limits) -> Arc<Self> {
        Self::with_limits(
            run_id,
            limits.event_buffer,
            limits.max_events_per_run,
            limits.max_live_calls_per_run,
            limits.max_message_bytes,
        )
    }

    pub(crate) fn with_live_call_limit(
        run_id: Arc<str>,
        progress_buffer: usize,
        max_events: usize,
        max_live_calls: usize,
    ) -> Arc<Self> {
        Self::with_limits(
            run_id,
            progress_buffer,
            max_events,
            max_live_calls,
            usize::MAX,
        )
    }

    fn with_limits(
        run_id: Arc<str>,
        progress_buffer: usize,
        max_events: usize,
        max_live_calls: usize,
        max_message_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(RunLog {
            run_id,
            progress_buffer: progress_buffer.max(1),
            max_events: max_events.max(2),
            max_live_calls: max_live_calls.max(1),
            max_message_bytes,
            state: Mutex::new(LogState {
                events: VecDeque::new(),
                next_sequence: 1,
                evicted_through: 0,
                started: None,
                top_progress: None,
                top_eta: Eta::default(),
                calls: HashMap::new(),
                superseded: 0,
                inputs: Inputs::default(),
                end: None,
                end_time: None,
                sealed: false,
                wakers: Wakers::default(),
                generation: 0,
            }),
            ended: Notify::new(),
            refused: CancellationToken::new(),
            input_limits: OnceLock::new(),
        })
    }

    /// Sets when the run's input requests lapse; only the first call counts.
    pub(crate) fn set_input_limits(&self, limits: InputLimits) {
        let _ = self.input_limits.set(limits);
    }

    /// When the run's input requests lapse.
    pub(crate) fn input_limits(&self) -> InputLimits {
        self.input_limits.get().cloned().unwrap_or_default()
    }

    pub(crate) fn run_id(&self) -> &Arc<str> {
        &self.run_id
    }

    pub(crate) fn max_events(&self) -> usize {
        self.max_events
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LogState> {
        // Every update below leaves the state consistent before anything can panic, so a
        // poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs progress of `call`, with the time it has left estimated from its reports so far
    /// ([`Eta`]). Never waits. Progress that would make one call more live than the limit is
    /// refused, and the run is told to fail ([`refused`](Self::refused)).
    pub(crate) fn push_progress(&self, call: &Arc<CallTag>, update: ProgressUpdate) {
        let _ = self.append_with(
            |state, at| {
                let fraction = update.fraction;
                let (eta_seconds, new_eta) = if call.call_id.is_empty() {
                    (state.top_eta.observe(at, fraction), None)
                } else if let Some(live) = state.calls.get_mut(&call.call_id) {
                    (live.eta.observe(at, fraction), None)
                } else {
                    if !finishes(call, &update) && state.calls.len() >= self.max_live_calls {
                        self.refused.cancel();
                        return None;
                    }
                    let mut eta = Eta::default();
                    (eta.observe(at, fraction), Some(eta))
                };
                let kind = EventKind::Progress {
                    call: Arc::clone(call),
                    eta_seconds,
                    update,
                };
                Some((kind, new_eta))
            },
            None,
            None,
        );
    }

    /// Logs a partial result of `call`, never coalesced. Never waits. One whose event would be
    /// larger than the message limit is refused (and not logged); after the run's end it is
    /// dropped, as progress is.
    pub(crate) fn push_partial(
        &self,
        call: &Arc<CallTag>,
        output: PartialOutput,
    ) -> Result<(), PartialRefused> {
        let output = HeldPartial::new(output);
        let bytes = partial_event_len(&self.run_id, call, &output);
        if bytes > self.max_message_bytes {
            return Err(PartialRefused::TooLarge {
                bytes,
                limit: self.max_message_bytes,
            });
        }
        let _ = self.push(EventKind::PartialResult {
            call: Arc::clone(call),
            output,
        });
        Ok(())
    }

    /// Completes once the log refused progress of one call more than its limit of live calls,
    /// with that limit: the run must then fail (its tool broke the limit).
    pub(crate) async fn refused(&self) -> usize {
        self.refused.cancelled().await;
        self.max_live_calls
    }

    /// Logs an event; fails once the run ended. Never waits.
    pub(crate) fn push(&self, kind: EventKind) -> Result<(), RunEnded> {
        self.append(kind, None, None)
    }

    /// Ends the run: with its result as the last event, or with an error after the logged events.
    /// Only the first call counts.
    pub(crate) fn finish(&self, outcome: Result<Value, RunError>) {
        self.finish_at(outcome, SystemTime::now());
    }

    /// [`finish`](Self::finish) with the end's timestamp chosen by the caller (the one already
    /// published to the run store).
    pub(crate) fn finish_at(&self, outcome: Result<Value, RunError>, timestamp: SystemTime) {
        match outcome {
            Ok(value) => {
                let _ = self.append(
                    EventKind::Result(value),
                    Some(RunEnd::Succeeded),
                    Some(timestamp),
                );
            }
            Err(error) => {
                let wakers = {
                    let mut state = self.lock();
                    if state.end.is_some() {
                        return;
                    }
                    state.end = Some(RunEnd::Failed(error));
                    state.end_time = Some(timestamp);
                    state.take_wakers()
                };
                wakers.wake();
                self.ended.notify_waiters();
            }
        }
    }

    /// Stops logging anything but the end, and returns the sequence the end's `result` event will
    /// have (`None` when the run already ended). The run's work is over; its end is published to
    /// the run store before readers see it, so that whoever saw the end finds it in the store.
    pub(crate) fn seal(&self) -> Option<u64> {
        let mut state = self.lock();
        if state.end.is_some() {
            return None;
        }
        state.sealed = true;
        Some(state.next_sequence)
    }

    /// Adds an event of a run executing on another replica, with the sequence and timestamp it
    /// got there; a `result` event ends the run. Events at or below the last one held are
    /// ignored (a replayed read), so are events after the end.
    pub(crate) fn replicate(&self, event: RunEvent) {
        let end = matches!(event.kind, EventKind::Result(_)).then_some(RunEnd::Succeeded);
        let ends = end.is_some();
        let wakers = {
            let mut state = self.lock();
            if state.end.is_some() || event.sequence < state.next_sequence {
                return;
            }
            state.next_sequence = event.sequence + 1;
            let timestamp = event.timestamp;
            self.log_event(&mut state, Arc::new(event), end, timestamp, None);
            state.take_wakers()
        };
        wakers.wake();
        if ends {
            self.ended.notify_waiters();
        }
    }

    /// Notes that every event up to `sequence` that the log does not hold is gone for good (a
    /// replica following a run learns it from the run store), so readers get a `Gap` for them.
    pub(crate) fn mark_evicted(&self, sequence: u64) {
        let wakers = {
            let mut state = self.lock();
            if sequence <= state.evicted_through {
                return;
            }
            state.evicted_through = sequence;
            if sequence >= state.next_sequence {
                state.next_sequence = sequence + 1;
            }
            state.take_wakers()
        };
        wakers.wake();
    }

    /// Completes once the run has ended.
    pub(crate) async fn wait_end(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.lock().end.is_some() {
                return;
            }
            ended.await;
        }
    }

    fn append(
        &self,
        kind: EventKind,
        end: Option<RunEnd>,
        timestamp: Option<SystemTime>,
    ) -> Result<(), RunEnded> {
        self.append_with(|_, _| Some((kind, None)), end, timestamp)
    }

    /// Logs the event `make` makes, under the lock, from the log's state and the event's time
    /// (`timestamp`, or now), with the rate of progress to keep for a call it makes live; `make`
    /// returning `None` logs nothing (the event was refused).
    pub(super) fn append_with(
        &self,
        make: impl FnOnce(&mut LogState, SystemTime) -> Option<(EventKind, Option<Eta>)>,
        end: Option<RunEnd>,
        timestamp: Option<SystemTime>,
    ) -> Result<(), RunEnded> {
        let ends = end.is_some();
        let wakers = {
            let mut state = self.lock();
            // A sealed run takes only its end.
            if state.end.is_some() || (state.sealed && !ends) {
                return Err(RunEnded);
            }
            let timestamp = timestamp.unwrap_or_else(SystemTime::now);
            let Some((kind, eta)) = make(&mut state, timestamp) else {
                return Ok(());
            };
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            let event = Arc::new(RunEvent::new(
                Arc::clone(&self.run_id),
                sequence,
                timestamp,
                kind,
            ));
            self.log_event(&mut state, event, end, timestamp, eta);
            state.take_wakers()
        };
        wakers.wake();
        if ends {
            self.ended.notify_waiters();
        }
        Ok(())
    }

    /// Holds a numbered event: remembers the started event and the latest progress of each
    /// live call (`eta`: the rate of progress of a call it makes live), folds finished calls,
    /// notes the end, and keeps the log within its bounds.
    #[inline]
    fn log_event(
        &self,
        state: &mut LogState,
        event: Arc<RunEvent>,
        end: Option<RunEnd>,
        timestamp: SystemTime,
        eta: Option<Eta>,
    ) {
        match &event.kind {
            EventKind::Started(_) => state.started = Some(Arc::clone(&event)),
            EventKind::Progress { call, update, .. } => {
                let previous = if call.call_id.is_empty() {
                    state.top_progress.replace(Arc::clone(&event))
                } else if finishes(call, update) {
                    // Folded into its parent: its last event stays in the log for readers, final.
                    event.mark_final();
                    state.calls.remove(&call.call_id).map(|live| live.latest)
                } else {
                    match state.calls.entry(Arc::clone(&call.call_id)) {
                        Entry::Occupied(mut live) => Some(std::mem::replace(
                            &mut live.get_mut().latest,
                            Arc::clone(&event),
                        )),
                        Entry::Vacant(vacant) => {
                            vacant.insert(LiveCall {
                                latest: Arc::clone(&event),
                                eta: eta.unwrap_or_default(),
                            });
                            None
                        }
                    }
                };
                // The previous latest was not superseded (it was the latest); it may be gone.
                if let Some(previous) = previous
                    && !previous.is_gone()
                {
                    previous.mark_superseded();
                    state.superseded += 1;
                }
            }
            EventKind::ToolCallFinished { call, .. } => {
                if let Some(live) = state.calls.remove(&call.call_id) {
                    live.latest.mark_final();
                }
            }
            EventKind::InputRequested(_) | EventKind::InputResolved { .. } => {
                state.inputs.observe(&event);
            }
            _ => {}
        }
        state.events.push_back(event);
        if end.is_some() {
            state.end = end;
            state.end_time = Some(timestamp);
        }
        self.compact(state);
    }

    /// Keeps the log within its bounds (see the module docs). Superseded progress is dropped in
    /// batches, each a walk of the log that drops at least an eighth of what it holds, so the
    /// cost per event stays constant however long the log is.
    fn compact(&self, state: &mut LogState) {
        let excess = state.superseded.saturating_sub(self.progress_buffer);
        if state.superseded > 2 * self.progress_buffer && excess >= state.events.len() / 8 {
            // Events are in sequence order: the oldest superseded go first. Usually (one call
            // reporting, readers keeping up) they are the events right after the started one:
            // then they are drained as a range, without walking the rest of the log.
            let first = usize::from(
                state
                    .events
                    .front()
                    .is_some_and(|front| matches!(front.kind, EventKind::Started(_))),
            );
            let oldest_are_superseded = state.events.len() >= first + excess
                && state
                    .events
                    .range(first..first + excess)
                    .all(|event| event.is_superseded());
            if oldest_are_superseded {
                state.events.drain(first..first + excess);
                state.superseded -= excess;
            } else {
                let mut to_drop = excess;
                state.events.retain(|event| {
                    if to_drop > 0 && event.is_superseded() {
                        to_drop -= 1;
                        false
                    } else {
                        true
                    }
                });
                state.superseded -= excess - to_drop;
            }
        }
        while state.events.len() > self.max_events {
            // The started event stays: it is always a run's first event, for every reader.
            let oldest = match state.events.front() {
                Some(front) if matches!(front.kind, EventKind::Started(_)) => 1,
                _ => 0,
            };
            let Some(evicted) = state.events.remove(oldest) else {
                break;
            };
            if evicted.is_superseded() {
                state.superseded -= 1;
            }
            evicted.mark_gone();
            state.evicted_through = evicted.sequence;
        }
    }

    /// Registers `waker` to be woken by the next append or the end. `slot` is the reader's
    /// registration: `(generation, index)`.
    pub(crate) fn register(state: &mut LogState, slot: &mut Option<(u64, usize)>, waker: &Waker) {
        match *slot {
            Some((generation, index)) if generation == state.generation => {
                if let Some(registered) = state.wakers.get_mut(index)
                    && !registered.will_wake(waker)
                {
                    registered.clone_from(waker);
                }
            }
            _ => {
                *slot = Some((state.generation, state.wakers.push(waker.clone())));
            }
        }
    }
}

impl LogState {
    fn take_wakers(&mut self) -> Wakers {
        if self.wakers.first.is_none() {
            return Wakers::default();
        }
        self.generation += 1;
        std::mem::take(&mut self.wakers)
    }

    /// The sequence of the last event the run produced.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Index of the first held event with a sequence of at least `sequence`.
    pub(crate) fn position_from(&self, sequence: u64) -> usize {
        let len = self.events.len();
        match (self.events.front(), self.events.back()) {
            (Some(front), _) if front.sequence >= sequence => 0,
            (_, Some(back)) if back.sequence < sequence => len,
            (Some(_), Some(back)) => {
                // A reader that keeps up wants one of the last events, and the log's tail is
                // usually contiguous (nothing dropped there yet): try where it would be first.
                let behind = back.sequence - sequence;
                let guess = usize::try_from(behind)
                    .ok()
                    .and_then(|behind| (len - 1).checked_sub(behind));
                match guess {
                    Some(at) if self.events[at].sequence == sequence => at,
                    _ => self.events.partition_point(|e| e.sequence < sequence),
                }
            }
            _ => 0,
        }
    }

    /// The latest progress of the top level and of each live call, in sequence order.
    pub(crate) fn latest_progress(&self) -> Vec<Arc<RunEvent>> {
        self.latest_progress_of(usize::MAX)
    }

    /// The latest progress of the top level and of the `calls` live calls that reported last,
    /// in sequence order.
    pub(crate) fn latest_progress_of(&self, calls: usize) -> Vec<Arc<RunEvent>> {
        let mut latest: Vec<Arc<RunEvent>> = self
            .calls
            .values()
            .map(|live| Arc::clone(&live.latest))
            .collect();
        if latest.len() > calls {
            let first_kept = latest.len() - calls;
            latest.select_nth_unstable_by_key(first_kept, |e| e.sequence);
            latest.drain(..first_kept);
        }
        latest.extend(self.top_progress.iter().cloned());
        latest.sort_by_key(|e| e.sequence);
        latest
    }

    /// Calls live now (for tests and diagnostics).
    pub(crate) fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// Held events marked superseded, as counted (for tests of the count).
    #[cfg(test)]
    pub(crate) fn superseded_count(&self) -> usize {
        self.superseded
    }

    /// The result, when the run succeeded.
    pub(crate) fn result(&self) -> Option<&Arc<RunEvent>> {
        match self.end {
            Some(RunEnd::Succeeded) => self.events.back(),
            _ => None,
        }
    }
}

/// The wakers of waiting readers. The first has a place of its own, so the common case (one
/// reader: the caller) never allocates when readers are woken and register again.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakers {
    /// Adds a waker; returns its index.
    fn push(&mut self, waker: Waker) -> usize {
        if self.first.is_none() {
            self.first = Some(waker);
            0
        } else {
            self.rest.push(waker);
            self.rest.len()
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Waker> {
        match index {
            0 => self.first.as_mut(),
            n => self.rest.get_mut(n - 1),
        }
    }

    fn wake(self) {
        self.first
            .into_iter()
            .chain(self.rest)
            .for_each(Waker::wake);
    }
}

/// Whether this progress finishes its call: a call other than the top level reaching 1.0 (a
/// sub-task finishing reports exactly that; the CLI draws such a node as done).
fn finishes(call: &CallTag, update: &ProgressUpdate) -> bool {
    !call.call_id.is_empty() && update.fraction.is_some_and(|fraction| fraction >= 1.0)
}

/// The most bytes the `RunEvent` carrying this partial result encodes to: exact for the partial
/// result, with room for the largest sequence number and timestamp.
fn partial_event_len(run_id: &str, call: &CallTag, output: &HeldPartial) -> usize {
    use prost::encoding::encoded_len_varint;
    // A length-delimited field with a one-byte key, left out when empty.
    let text = |text: &str| {
        if text.is_empty() {
            0
        } else {
            1 + encoded_len_varint(text.len() as u64) + text.len()
        }
    };
    let value = output.value_bytes().len();
    let partial = text(&call.call_id)
        + text(&call.tool)
        + text(&call.parent_call_id)
        + text(&output.key)
        + 1
        + encoded_len_varint(value as u64)
        + value
        + if output.append { 2 } else { 0 };
    // The run id; the sequence (a key and at most ten bytes of varint); the timestamp (a key, a
    // length, and at most eleven bytes of seconds and six of nanoseconds); the partial result
    // (field 20: a two-byte key).
    text(run_id) + 11 + 19 + 2 + encoded_len_varint(partial as u64) + partial
}

/// Progress reported by a tool, tagged with the call (or sub-task) it belongs to.
pub(crate) struct CallProgress {
    pub(crate) log: Arc<RunLog>,
    pub(crate) call: Arc<CallTag>,
}

impl ProgressSink for CallProgress {
    fn task(&self, task: &SubTask) -> Arc<dyn ProgressSink> {
        Arc::new(CallProgress {
            log: Arc::clone(&self.log),
            call: Arc::new(self.call.sub_task(task)),
        })
    }

    fn ask(&self, question: Question) -> BoxFuture<'static, Answer> {
        self.log.ask(Arc::clone(&self.call), question, None)
    }

    fn ask_until(
        &self,
        question: Question,
        settled: BoxFuture<'static, Answer>,
    ) -> BoxFuture<'static, Answer> {
        self.log
            .ask(Arc::clone(&self.call), question, Some(settled))
    }

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
        self.log.push_progress(&self.call, update);
    }

    fn partial(&self, output: PartialOutput) -> Result<(), PartialRefused> {
        self.log.push_partial(&self.call, output)
    }
}
